"""Variational (and explicit baseline) rollouts of any Lagrangian, batched over initial states.

Why variational: a learned Lagrangian rolled forward with explicit Euler or RK4 drifts in
energy and eventually diverges; discretising the *action* instead gives a symplectic,
momentum-preserving map whose energy error stays bounded (SPEC §4).

Scheme (position–momentum form of the discrete Euler–Lagrange equations, forced by the
discrete Lagrange–d'Alembert principle):

    L_d(q_k, q_{k+1}) = h·L((q_k+q_{k+1})/2, (q_{k+1}−q_k)/h)                 (midpoint)
                      = h/2·[L(q_k, v) + L(q_{k+1}, v)],  v = (q_{k+1}−q_k)/h   (trapezoid)
    p_k     = −D₁L_d(q_k, q_{k+1}) − F⁻_k      → solved for q_{k+1} by Newton
    p_{k+1} =  D₂L_d(q_k, q_{k+1}) + F⁺_k      → explicit
    F⁻_k = F⁺_k = (h/2)·τ_k                       (τ_k held constant over [t_k, t_{k+1}])

The rollout starts from (q₀, q̇₀) through the continuous Legendre transform
p₀ = ∂L/∂q̇(q₀, q̇₀). The reported velocities q̇_k are the *node* velocities obtained by the
inverse Legendre transform, i.e. solving p_k = ∂L/∂q̇(q_k, q̇_k) for q̇_k (Newton on the mass
matrix ∂²L/∂q̇²), not the midpoint velocities (q_{k+1}−q_k)/h; energy computed from them has
the O(h²) bounded error theory predicts.

The Newton unknown is the discrete velocity v = (q_{k+1}−q_k)/h (well scaled at any h), warm
started by linear extrapolation of the previous two steps; its Jacobian is taken by
reverse-over-reverse autograd (torch.func.jacrev, several times faster than forward-over-
reverse here), vmapped over trajectories. A trajectory whose Newton solve does not reach
``‖r‖∞ ≤ tol·(1 + ‖p_k‖∞)`` within ``max_iter`` updates (or turns non-finite) stops there:
its later points are NaN and ``valid_length`` says how many leading points are usable.

Structure: one rollout loop (``FixedStepIntegrator.rollout``: buffers, per-trajectory early
stop and its reason, progress, the ``Rollout``), as torchdiffeq's fixed-grid solvers have one
integrate loop; each scheme supplies only its start state, one step and the read-back of what
it recorded (the variational scheme's node velocities).

Speed: torch.func transforms cost milliseconds of Python dispatch per call for a 2-DoF
system, so the per-step functions are traced once per batch shape into a flat ATen graph
(``accelerate="trace"``, ~3x faster, checked against the eager result) or additionally
compiled by TorchInductor (``accelerate="compile"``, ~50x faster, seconds to compile). Traced
graphs capture the tensors ``L`` closes over by value: build a new integrator when the model
changes (a frozen snapshot per integrator).
"""

from __future__ import annotations

import abc
import linecache
import logging
import math
import weakref
from dataclasses import dataclass
from typing import Callable, Literal, Sequence

import torch
from torch.func import grad, jacrev, vmap
from torch.fx.experimental.proxy_tensor import make_fx

from . import euler_lagrange
from .euler_lagrange import LagrangianFn

Rule = Literal["midpoint", "trapezoid"]
Accelerate = Literal["eager", "trace", "compile"]
Progress = Callable[[int, int], None]
# What a scheme carries from step to step, per trajectory, as (B, n) tensors: [0] is q, [1] the
# scheme's second recorded coordinate (q̇, or the discrete momentum p), the rest private to it.
State = tuple[torch.Tensor, ...]
RULES: tuple[str, ...] = ("midpoint", "trapezoid")
ACCELERATIONS: tuple[str, ...] = ("eager", "trace", "compile")
_READBACK_CHUNK = 32_768
_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Rollout:
    """A batch of trajectories on the common time grid ``t``.

    Points at index ≥ ``valid_length[b]`` of trajectory b are NaN (the step that should have
    produced them failed); callers must use only the valid prefix.
    """

    scheme: str
    t: torch.Tensor  # (steps+1,)
    q: torch.Tensor  # (B, steps+1, n)
    qd: torch.Tensor  # (B, steps+1, n)
    p: torch.Tensor | None  # (B, steps+1, n) discrete momenta (variational scheme only)
    converged_steps: torch.Tensor  # (B,) steps completed before the first failure
    valid_length: torch.Tensor  # (B,) = converged_steps + 1 leading finite points
    newton_iterations: torch.Tensor  # (B, steps) Newton updates per step (0: explicit/not run)
    failures: tuple[str, ...]  # per trajectory: "" if complete, else why it stopped

    @property
    def steps(self) -> int:
        return self.t.numel() - 1

    @property
    def complete(self) -> torch.Tensor:
        """(B,) bool: the trajectory reached the horizon."""
        return self.converged_steps == self.steps

    def newton_stats(self) -> dict[str, float]:
        """Mean and max Newton updates per completed step, over all trajectories."""
        steps = torch.arange(self.steps, device=self.q.device).unsqueeze(0)
        done = steps < self.converged_steps.unsqueeze(1)
        counts = self.newton_iterations[done].to(torch.float64)
        if counts.numel() == 0:
            return {"mean": math.nan, "max": math.nan}
        return {"mean": float(counts.mean()), "max": float(counts.max())}

    def valid_prefix(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(t, q, qd) of trajectory ``index`` up to its last valid point (all finite)."""
        length = int(self.valid_length[index])
        return self.t[:length], self.q[index, :length], self.qd[index, :length]


# ----------------------------------------------------------------------------- helpers


def discrete_lagrangian(L: LagrangianFn, h: float, rule: Rule = "midpoint") -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """L_d(q_k, q_{k+1}) ≈ ∫ L dt over one step, per sample (shapes (n,), (n,) -> scalar)."""
    if rule == "midpoint":
        return lambda q0, q1: h * L(0.5 * (q0 + q1), (q1 - q0) / h)
    if rule == "trapezoid":
        return lambda q0, q1: 0.5 * h * (L(q0, (q1 - q0) / h) + L(q1, (q1 - q0) / h))
    raise ValueError(f"rule must be one of {RULES}, got {rule!r}")


def _check_step(h: float) -> float:
    if not isinstance(h, (int, float)) or not math.isfinite(h) or h <= 0.0:
        raise ValueError(f"time step h must be a finite number > 0, got {h!r}")
    return float(h)


def _prepare(
    q0: torch.Tensor, qd0: torch.Tensor, steps: int, tau: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Validate and promote inputs to float64 (B, n) states and a (steps, B, n) torque."""
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 0:
        raise ValueError(f"steps must be a non-negative int, got {steps!r}")
    q0 = torch.as_tensor(q0, dtype=torch.float64)
    qd0 = torch.as_tensor(qd0, dtype=torch.float64, device=q0.device)
    if q0.dim() == 1:
        q0 = q0.unsqueeze(0)
    if qd0.dim() == 1:
        qd0 = qd0.unsqueeze(0)
    if q0.dim() != 2 or q0.shape != qd0.shape or q0.shape[1] == 0:
        raise ValueError(f"q0 and qd0 must both have shape (n,) or (B, n); got {tuple(q0.shape)} and {tuple(qd0.shape)}")
    if not (torch.isfinite(q0).all() and torch.isfinite(qd0).all()):
        raise ValueError("q0 and qd0 must be finite")
    batch, n = q0.shape
    if tau is None:
        forcing = torch.zeros(batch, steps, n, dtype=torch.float64, device=q0.device)
    else:
        tau = torch.as_tensor(tau, dtype=torch.float64, device=q0.device)
        if tau.shape in ((n,), (batch, n)):
            forcing = tau.expand(batch, n).unsqueeze(1).expand(batch, steps, n)
        elif tau.shape == (batch, steps, n):
            forcing = tau
        else:
            raise ValueError(f"tau must have shape ({n},), ({batch}, {n}) or ({batch}, {steps}, {n}); got {tuple(tau.shape)}")
        if not torch.isfinite(forcing).all():
            raise ValueError("tau must be finite")
    return q0, qd0, forcing.transpose(0, 1)  # step-major: forcing[k] is (B, n)


class _ShapeCache:
    """A per-sample-batched function, traced/compiled once per input signature.

    Tracing replays the function's ATen ops without the torch.func dispatch layers; the
    traced result is compared with the eager one on the first inputs and discarded (with a
    warning) if they differ, e.g. for an L with data-dependent Python control flow.
    """

    def __init__(self, fn: Callable[..., tuple[torch.Tensor, ...]], accelerate: Accelerate) -> None:
        if accelerate not in ACCELERATIONS:
            raise ValueError(f"accelerate must be one of {ACCELERATIONS}, got {accelerate!r}")
        self._fn = fn
        self._accelerate = accelerate
        self._cache: dict[tuple, Callable[..., tuple[torch.Tensor, ...]]] = {}

    def __call__(self, *args: torch.Tensor) -> tuple[torch.Tensor, ...]:
        args = tuple(map(_standard_layout, args))
        key = tuple((a.shape, a.dtype, a.device) for a in args)
        fn = self._cache.get(key)
        if fn is None:
            fn = self._cache[key] = self._build(args)
        return fn(*args)

    def _build(self, args: tuple[torch.Tensor, ...]) -> Callable[..., tuple[torch.Tensor, ...]]:
        if self._accelerate == "eager":
            return self._fn
        traced = make_fx(self._fn)(*args)
        _forget_source_when_freed(traced)
        expected, got = self._fn(*args), traced(*args)
        if not all(_same(e, g) for e, g in zip(expected, got)):
            _log.warning("traced integrator step disagrees with eager evaluation; using eager mode")
            return self._fn
        if self._accelerate == "compile":
            compiled = torch.compile(traced, dynamic=False, fullgraph=True)
            try:
                compiled(*args)
            except Exception as exc:  # noqa: BLE001 - no C++ toolchain etc.: still usable traced
                _log.warning("torch.compile of the integrator step failed (%s); using the traced graph", exc)
                return traced
            return compiled
        return traced


def _forget_source_when_freed(traced: torch.fx.GraphModule) -> None:
    """torch.fx keeps the Python source it generates for every GraphModule (for tracebacks) in
    a module-level cache and in linecache, and never drops it: ~30 kB per traced step, and a
    predictor traces afresh for each model it serves, ~17 a minute while learning (issue 23:
    its RSS grew 0.5 MB/min). Dropped here once the graph itself is freed."""
    from torch.fx import graph_module

    key = type(traced).forward.__code__.co_filename
    cache = getattr(getattr(graph_module, "_loader", None), "eval_cache", None)

    def forget() -> None:
        if isinstance(cache, dict):
            cache.pop(key, None)
        linecache.cache.pop(key, None)

    weakref.finalize(traced, forget)


def _standard_layout(tensor: torch.Tensor) -> torch.Tensor:
    """The tensor with row-major strides: compiled graphs are specialised on strides, and
    ``Tensor.contiguous()`` leaves odd strides on size-1 dimensions in place."""
    expected, size = [], 1
    for extent in reversed(tensor.shape):
        expected.insert(0, size)
        size *= extent
    if tensor.stride() == tuple(expected):
        return tensor
    return torch.empty(tensor.shape, dtype=tensor.dtype, device=tensor.device).copy_(tensor)


def _same(expected: torch.Tensor, got: torch.Tensor) -> bool:
    if expected.is_floating_point():
        return torch.allclose(expected, got, rtol=1e-9, atol=1e-12, equal_nan=True)
    return torch.equal(expected, got)


def _inf_norm(x: torch.Tensor) -> torch.Tensor:
    return x.abs().amax(dim=-1)


def _extrapolate(history: Sequence[torch.Tensor], known: int) -> torch.Tensor:
    """Newton warm start: polynomial extrapolation of the last midpoint velocities (newest
    first; only the first ``known`` are real, the seed q̇₀ stands in before any), O(h³)
    accurate once three are known, so one update usually converges."""
    if known >= 3:
        return 3.0 * history[0] - 3.0 * history[1] + history[2]
    if known == 2:
        return 2.0 * history[0] - history[1]
    return history[0]


def _nan_after(values: torch.Tensor, valid_length: torch.Tensor) -> torch.Tensor:
    """Set points at index ≥ valid_length to NaN, (B, T, n)."""
    index = torch.arange(values.shape[1], device=values.device).unsqueeze(0)
    return values.masked_fill((index >= valid_length.unsqueeze(1)).unsqueeze(-1), math.nan)


# ------------------------------------------------------------------- the one rollout loop


class FixedStepIntegrator(abc.ABC):
    """The rollout loop every fixed-step scheme shares (like torchdiffeq's FixedGridODESolver):
    input checks, output buffers, per-trajectory early stop with its reason, progress and the
    :class:`Rollout` live here once; a scheme supplies its start state, one step and the
    read-back of what it recorded."""

    #: why a trajectory whose start state is not finite never moves
    start_failure = "initial state is not finite"

    def __init__(self, h: float, name: str, step_failure: str) -> None:
        self.h = _check_step(h)
        self.name = name  # Rollout.scheme
        self.step_failure = step_failure  # why a step's ``ok`` is False, "at step k (t = …)" follows

    @abc.abstractmethod
    def _initial(self, q0: torch.Tensor, qd0: torch.Tensor) -> State:
        """The state at t = 0 of (B, n) initial positions and velocities."""

    @abc.abstractmethod
    def _step(self, state: State, tau: torch.Tensor, alive: torch.Tensor, k: int) -> tuple[State, torch.Tensor, torch.Tensor | int]:
        """Advance every trajectory by one step under torque ``tau`` (B, n) (only those
        ``alive`` need be right); returns (next state, (B,) ok, (B,) Newton updates or 0)."""

    @abc.abstractmethod
    def _finish(
        self, q: torch.Tensor, second: torch.Tensor, qd0: torch.Tensor, valid_length: torch.Tensor, failures: list[str]
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """(q̇, p or None, valid lengths) from the recorded (B, T, n) q and second coordinate;
        may shorten a valid length, then says why in ``failures``."""

    def rollout(
        self, q0: torch.Tensor, qd0: torch.Tensor, steps: int, tau: torch.Tensor | None = None, progress: Progress | None = None
    ) -> Rollout:
        """Roll (B, n) initial states forward ``steps`` steps under torque ``tau`` (ZOH);
        ``progress(steps_done, trajectories_alive)`` is called after every step taken, the
        loop ends early once no trajectory is alive."""
        q0, qd0, forcing = _prepare(q0, qd0, steps, tau)
        batch, n = q0.shape
        device = q0.device
        state = self._initial(q0, qd0)
        recorded = [torch.empty(batch, steps + 1, n, dtype=torch.float64, device=device) for _ in range(2)]
        for points, value in zip(recorded, state):
            points[:, 0] = value
        iterations = torch.zeros(batch, steps, dtype=torch.int32, device=device)
        alive = torch.stack([torch.isfinite(value).all(dim=-1) for value in state]).all(dim=0)
        converged_steps = torch.zeros(batch, dtype=torch.int64, device=device)
        failures = ["" if bool(a) else self.start_failure for a in alive]
        for k in range(steps):
            if not bool(alive.any()):
                break
            candidate, ok, newton_updates = self._step(state, forcing[k], alive, k)
            iterations[:, k] = newton_updates
            for b in (alive & ~ok).nonzero().flatten().tolist():
                failures[b] = f"{self.step_failure} at step {k} (t = {k * self.h:.6g} s)"
            alive = alive & ok
            converged_steps += alive.to(torch.int64)
            keep = alive.unsqueeze(-1)
            state = tuple(torch.where(keep, new, old) for new, old in zip(candidate, state))
            for points, value in zip(recorded, state):
                points[:, k + 1] = value
            if progress is not None:
                progress(k + 1, int(alive.sum()))
        qd, p, valid_length = self._finish(*recorded, qd0, converged_steps + 1, failures)
        return Rollout(
            scheme=self.name,
            t=torch.arange(steps + 1, dtype=torch.float64, device=device) * self.h,
            q=_nan_after(recorded[0], valid_length),
            qd=_nan_after(qd, valid_length),
            p=None if p is None else _nan_after(p, valid_length),
            converged_steps=valid_length - 1,
            valid_length=valid_length,
            newton_iterations=iterations,
            failures=tuple(failures),
        )


# ----------------------------------------------------------------------- variational


class VariationalIntegrator(FixedStepIntegrator):
    """Midpoint/trapezoid variational integrator for one Lagrangian and one step size.

    Keep one instance per (model, h) to reuse its traced step functions across forecasts.
    """

    start_failure = "initial momentum ∂L/∂q̇(q0, q̇0) is not finite"

    def __init__(
        self,
        L: LagrangianFn,
        h: float,
        rule: Rule = "midpoint",
        tol: float = 1e-12,
        max_iter: int = 20,
        accelerate: Accelerate = "trace",
        dissipation: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        """``dissipation(v)`` is a generalised force the motion works against (e.g. viscous
        b·v, Coulomb c·sign v); it enters the forced discrete Lagrange–d'Alembert equations
        at the step's discrete velocity v = (q_{k+1} − q_k)/h, split half and half like τ."""
        super().__init__(h, f"variational-{rule}", f"Newton did not converge within {max_iter} iterations")
        if not (isinstance(tol, (int, float)) and tol > 0.0):
            raise ValueError(f"tol must be > 0, got {tol!r}")
        if not isinstance(max_iter, int) or max_iter < 1:
            raise ValueError(f"max_iter must be an int ≥ 1, got {max_iter!r}")
        self.L, self.rule, self.tol, self.max_iter = L, rule, float(tol), max_iter
        Ld = discrete_lagrangian(L, self.h, rule)
        d1, d2 = grad(Ld, argnums=0), grad(Ld, argnums=1)
        half_h = 0.5 * self.h

        def residual(v: torch.Tensor, q: torch.Tensor, p: torch.Tensor, tau: torch.Tensor):
            q_next = q + self.h * v
            force = tau if dissipation is None else tau - dissipation(v)
            r = p + d1(q, q_next) + half_h * force
            return r, (r, d2(q, q_next) + half_h * force)

        tol = self.tol

        def newton_iteration(v: torch.Tensor, q: torch.Tensor, p: torch.Tensor, tau: torch.Tensor, active: torch.Tensor):
            """One Newton update for the still-active trajectories (fused so it traces whole)."""
            jac, (r, p_next) = vmap(jacrev(residual, has_aux=True))(v, q, p, tau)
            dv, info = torch.linalg.solve_ex(jac, r.unsqueeze(-1))
            dv = dv.squeeze(-1)
            residual_norm = _inf_norm(r)
            converged = (residual_norm <= tol * (1.0 + _inf_norm(p))) | (_inf_norm(dv) <= tol * (1.0 + _inf_norm(v)))
            done = converged & torch.isfinite(p_next).all(dim=-1)
            hopeless = ~torch.isfinite(residual_norm) | (info != 0) | ~torch.isfinite(dv).all(dim=-1)
            pending = active & ~done & ~hopeless
            return torch.where(pending.unsqueeze(-1), v - dv, v), p_next, done, pending

        self._newton_iteration = _ShapeCache(newton_iteration, accelerate)

    def momentum(self, q: torch.Tensor, qd: torch.Tensor) -> torch.Tensor:
        """Continuous Legendre transform p = ∂L/∂q̇, batched (B, n)."""
        return vmap(grad(self.L, argnums=1))(q, qd)

    def velocity(self, q: torch.Tensor, p: torch.Tensor, guess: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Inverse Legendre transform: q̇ with ∂L/∂q̇(q, q̇) = p by Newton; (q̇, converged)."""
        pieces = [self._velocity_chunk(*chunk) for chunk in zip(q.split(_READBACK_CHUNK), p.split(_READBACK_CHUNK), guess.split(_READBACK_CHUNK))]
        return torch.cat([v for v, _ in pieces]), torch.cat([c for _, c in pieces])

    def _velocity_chunk(self, q: torch.Tensor, p: torch.Tensor, qd: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        dl_dqd = grad(self.L, argnums=1)

        def residual(w: torch.Tensor, a: torch.Tensor, b: torch.Tensor):
            r = dl_dqd(a, w) - b
            return r, r

        evaluate = vmap(jacrev(residual, has_aux=True))
        scale = self.tol * (1.0 + _inf_norm(p))
        for _ in range(self.max_iter + 1):
            mass, r = evaluate(qd, q, p)
            step = torch.linalg.solve_ex(mass, r.unsqueeze(-1))[0].squeeze(-1)
            done = (_inf_norm(r) <= scale) | (_inf_norm(step) <= self.tol * (1.0 + _inf_norm(qd)))
            if bool(done.all()):
                break
            qd = torch.where(done.unsqueeze(-1), qd, qd - step)
        return qd, done

    def _initial(self, q0: torch.Tensor, qd0: torch.Tensor) -> State:
        """(q, p, the last three midpoint velocities, newest first): p by the continuous
        Legendre transform; q̇₀ seeds the warm-start history."""
        return q0, self.momentum(q0, qd0), qd0, qd0, qd0

    def _step(self, state: State, tau: torch.Tensor, alive: torch.Tensor, k: int) -> tuple[State, torch.Tensor, torch.Tensor]:
        q, p, *history = state
        v, p_next, done, count = self._solve_step(_extrapolate(history, known=min(k, 3)), q, p, tau, alive)
        return (q + self.h * v, p_next, v, history[0], history[1]), done, count

    def _solve_step(
        self, v: torch.Tensor, q: torch.Tensor, p: torch.Tensor, tau: torch.Tensor, alive: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Newton on p + D₁L_d(q, q + h v) + F⁻ = 0 for v; returns (v, p_next, converged, updates)."""
        count = torch.zeros(v.shape[0], dtype=torch.int32, device=v.device)
        for iteration in range(self.max_iter + 1):
            v_next, p_next, done, pending = self._newton_iteration(v, q, p, tau, alive)
            if iteration == self.max_iter or not bool(pending.any()):
                break
            v = v_next
            count += pending.to(torch.int32)
        return v, p_next, done, count

    def _finish(
        self, q: torch.Tensor, p: torch.Tensor, qd0: torch.Tensor, valid_length: torch.Tensor, failures: list[str]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Node velocities by the inverse Legendre transform, warm started from the average of
        the adjacent midpoint velocities; returns (q̇ (B, T, n), p, new valid lengths)."""
        batch, points, n = q.shape
        qd = torch.full_like(q, math.nan)
        qd[:, 0] = qd0
        if points == 1 or not bool((valid_length > 1).any()):
            return qd, p, valid_length
        mid = (q[:, 1:] - q[:, :-1]) / self.h
        guess = torch.cat((0.5 * (mid[:, :-1] + mid[:, 1:]), mid[:, -1:]), dim=1)
        valid_nodes = torch.arange(1, points, device=q.device).unsqueeze(0) < valid_length.unsqueeze(1)
        solved, ok = self.velocity(q[:, 1:][valid_nodes], p[:, 1:][valid_nodes], guess[valid_nodes])
        ok = ok & torch.isfinite(solved).all(dim=-1)
        qd[:, 1:][valid_nodes] = solved
        node_ok = torch.ones(batch, points - 1, dtype=torch.bool, device=q.device)
        node_ok[valid_nodes] = ok
        first_bad = torch.where(node_ok.all(dim=1), points - 1, (~node_ok).to(torch.int64).argmax(dim=1))
        new_length = torch.minimum(valid_length, first_bad + 1)
        for b in (new_length < valid_length).nonzero().flatten().tolist():
            failures[b] = f"velocity read-back (inverse Legendre transform) failed at point {int(new_length[b])}"
        return qd, p, new_length


def variational_rollout(
    L: LagrangianFn,
    q0: torch.Tensor,
    qd0: torch.Tensor,
    h: float,
    steps: int,
    tau: torch.Tensor | None = None,
    rule: Rule = "midpoint",
    tol: float = 1e-12,
    max_iter: int = 20,
    accelerate: Accelerate = "trace",
) -> Rollout:
    """One-off variational rollout; see :class:`VariationalIntegrator` (reuse it for speed)."""
    return VariationalIntegrator(L, h, rule, tol, max_iter, accelerate).rollout(q0, qd0, steps, tau)


# -------------------------------------------------------------------------- explicit


class ExplicitIntegrator(FixedStepIntegrator):
    """Explicit Euler or classic RK4 on (q, q̇) with q̈ = M⁻¹(τ − bias) from the Euler–Lagrange
    equations of L (``euler_lagrange.acceleration``, per sample).

    The baselines the variational scheme is compared against; a trajectory that turns
    non-finite stops there, like a Newton failure.
    """

    def __init__(self, L: LagrangianFn, h: float, scheme: Literal["euler", "rk4"] = "rk4", accelerate: Accelerate = "trace") -> None:
        if scheme not in ("euler", "rk4"):
            raise ValueError(f"scheme must be 'euler' or 'rk4', got {scheme!r}")
        super().__init__(h, f"explicit-{scheme}", "state became non-finite")
        self.L, self.scheme = L, scheme
        h = self.h

        def acceleration(q: torch.Tensor, qd: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
            return vmap(lambda a, b, c: euler_lagrange.acceleration(L, a, b, c))(q, qd, tau)

        def euler(q: torch.Tensor, qd: torch.Tensor, tau: torch.Tensor):
            return q + h * qd, qd + h * acceleration(q, qd, tau)

        def rk4(q: torch.Tensor, qd: torch.Tensor, tau: torch.Tensor):
            a1 = acceleration(q, qd, tau)
            q2, v2 = q + 0.5 * h * qd, qd + 0.5 * h * a1
            a2 = acceleration(q2, v2, tau)
            q3, v3 = q + 0.5 * h * v2, qd + 0.5 * h * a2
            a3 = acceleration(q3, v3, tau)
            q4, v4 = q + h * v3, qd + h * a3
            a4 = acceleration(q4, v4, tau)
            return q + h / 6.0 * (qd + 2.0 * v2 + 2.0 * v3 + v4), qd + h / 6.0 * (a1 + 2.0 * a2 + 2.0 * a3 + a4)

        self._advance = _ShapeCache(euler if scheme == "euler" else rk4, accelerate)

    def _initial(self, q0: torch.Tensor, qd0: torch.Tensor) -> State:
        return q0, qd0

    def _step(self, state: State, tau: torch.Tensor, alive: torch.Tensor, k: int) -> tuple[State, torch.Tensor, int]:
        q, qd = self._advance(*state, tau)
        return (q, qd), torch.isfinite(q).all(dim=-1) & torch.isfinite(qd).all(dim=-1), 0

    def _finish(
        self, q: torch.Tensor, qd: torch.Tensor, qd0: torch.Tensor, valid_length: torch.Tensor, failures: list[str]
    ) -> tuple[torch.Tensor, None, torch.Tensor]:
        return qd, None, valid_length


def explicit_euler_rollout(
    L: LagrangianFn, q0: torch.Tensor, qd0: torch.Tensor, h: float, steps: int, tau: torch.Tensor | None = None, accelerate: Accelerate = "trace"
) -> Rollout:
    """Explicit (forward) Euler baseline: drifts in energy at O(h) per unit time."""
    return ExplicitIntegrator(L, h, "euler", accelerate).rollout(q0, qd0, steps, tau)


def rk4_rollout(
    L: LagrangianFn, q0: torch.Tensor, qd0: torch.Tensor, h: float, steps: int, tau: torch.Tensor | None = None, accelerate: Accelerate = "trace"
) -> Rollout:
    """Classic RK4 baseline: accurate per step, but not symplectic (slow energy drift)."""
    return ExplicitIntegrator(L, h, "rk4", accelerate).rollout(q0, qd0, steps, tau)
