"""Serving a learned model, with no ROS import: validate a snapshot before swapping it in,
answer inverse-dynamics queries, and forecast passive motion with the variational integrator.

A snapshot arrives from the network and is hostile until proven otherwise. Before it replaces
the served model it must (cheapest first): decode against the allow-list for the served joints;
be newer than the served one (its learner run started later, or the same run with a higher
version: a replayed snapshot is refused); be physically plausible on probe states drawn afresh
for every check from os.urandom over the whole configuration space (finite torque within the
feed-forward limit, positive-definite mass matrix, gravity not pointing against the served
model's); and explain the torques measured over a history of checked joint states (seconds,
not one moment an attacker can time) within the tolerance or at least as well as the served
model does. A model that cannot be checked yet (no served model, or no informative history,
e.g. right after a restart) is held, not served, until it can. A refused snapshot leaves the
served model untouched; every refusal is counted by its reason.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any, Protocol, Sequence

import torch

from syrenets_ros.dynamics import euler_lagrange
from syrenets_ros.dynamics.pendulum import JOINT_NAMES
from syrenets_ros.files import read_regular
from syrenets_ros.online.snapshot import SERVABLE_KINDS, DecodedModel, SnapshotError, decode_model
from syrenets_ros.online.stream import Batch, WindowCutter
from syrenets_ros.schema import NodeSchema, Param

PROBE_STATES = 64  # the fixed probes of the learner's pre-publication check
# Fresh random probes per snapshot check: a model with |τ| > 500 N·m on 2.5 % of the q plane
# escapes 1024 of them with probability 0.975^1024 ≈ 5e-12 (the fixed, public 64 probes let
# one through, issue 23).
RANDOM_PROBE_STATES = 1024
# Probe envelope: every joint angle, and speeds and accelerations a tracking run reaches.
PROBE_VELOCITY = 2.0  # rad/s
PROBE_ACCELERATION = 5.0  # rad/s²
# A snapshot whose run claims to start further ahead of this host's clock is refused: a
# forged far-future run would otherwise shut out every genuine run after it.
MAX_RUN_CLOCK_SKEW_NS = 300 * 1_000_000_000
# A history shorter than this many consistency windows checks nothing: the model waits.
MIN_HISTORY_WINDOWS = 4
# A history is informative when its measured window-mean torques have an RMS of at least this
# many times consistency_tolerance: a model off by a factor (3× too heavy, gravity flipped) then
# shows an error well beyond the tolerance. A robot at rest tells no model from its multiple.
INFORMATIVE_TORQUE = 2.0


PREDICTOR_PARAMETERS = NodeSchema("syrenets_predictor", (
    Param("joint_names", JOINT_NAMES, "joints served, in this order; snapshots for other joints are refused "
          "(with a robot_description: its movable joints, whatever this says)", read_only=True),
    Param("robot_description", "", "URDF text of the robot served (the ROS convention): a rigid-body snapshot "
          "learned on another URDF (its SHA-256 differs) is refused; '' = no such check", read_only=True),
    Param("max_payload_bytes", 8_000_000, "larger model payloads are refused", "bytes", 1024, 64_000_000,
          read_only=True),
    Param("forecast_rate", 1.0, "passive-motion forecasts per second at most (0 = off); a slow "
          "forecast waits 9 times its CPU time before the next (forecasts use <= 10 % of a core)",
          "Hz", 0.0, 50.0),
    Param("forecast_horizon", 2.0, "length of each forecast", "s", 0.05, 20.0),
    Param("forecast_step", 0.01, "variational integrator time step", "s", 0.0005, 0.1),
    Param("max_feedforward_torque", 500.0, "feed-forward bound: a model whose |τ| exceeds it on 1024 probe "
          "states drawn afresh for each check (q any, |q̇| ≤ 2 rad/s, |q̈| ≤ 5 rad/s²) is refused, and an "
          "answer beyond it is withheld",
          "N·m", 1.0, 1.0e5, read_only=True),
    Param("consistency_tolerance", 5.0, "torque error (window means, RMS over the history and on the newest "
          "window) a new model may show on measured joint states without having to beat the served model "
          "there (the true model shows ~0.7 at σ_q̇ = 1e-3 rad/s)", "N·m", 0.0, 1.0e4, read_only=True),
    Param("consistency_window", 128, "consecutive samples per window mean of the consistency check",
          "samples", 16, 4096, read_only=True),
    Param("consistency_history", 2.0, "seconds of checked joint states (stamps, order, kinematics, as the "
          "learner checks them) a new model must explain; a model waits until 4 windows of moving states "
          "are there (no model is better than an unchecked one)", "s", 0.1, 60.0, read_only=True),
    Param("joint_state_period", 1.0e-3, "expected stamp spacing of /joint_states (= pendulum_sim time_step)",
          "s", 1.0e-5, 1.0, read_only=True),
    Param("stamp_tolerance", 10.0, "a joint state stamped further than this from the node's clock (sim time "
          "under use_sim_time) does not enter the history (as the learner's); 0 = no check", "s", 0.0, 1.0e6,
          read_only=True),
    Param("sensor_noise", (1.0e-4, 1.0e-3), "σ of q [rad] and q̇ [rad/s] that honest joint states may carry; "
          "sizes the kinematic check of the history (as the learner's)", "", 0.0, 1.0, length=2, read_only=True),
))


class TorqueSamples(Protocol):
    """Measured (q, q̇, q̈, τ) rows, e.g. a stream Batch."""

    stamp: torch.Tensor
    q: torch.Tensor
    qd: torch.Tensor
    qdd: torch.Tensor
    tau: torch.Tensor

    def __len__(self) -> int: ...


def probe_states(n_joints: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Fixed pseudo-random (q, q̇, q̈) over the probe envelope, shape (PROBE_STATES, n) each."""
    generator = torch.Generator().manual_seed(seed)

    def uniform(half_width: float) -> torch.Tensor:
        return (2 * torch.rand(PROBE_STATES, n_joints, generator=generator, dtype=torch.float64) - 1) * half_width

    return uniform(math.pi), uniform(PROBE_VELOCITY), uniform(PROBE_ACCELERATION)


def random_probe_states(n_joints: int, count: int = RANDOM_PROBE_STATES
                        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``count`` (q, q̇, q̈) over the probe envelope from a generator seeded by os.urandom:
    drawn afresh for each check, so no one can shape a model around them."""
    generator = torch.Generator().manual_seed(int.from_bytes(os.urandom(8), "little"))

    def uniform(half_width: float) -> torch.Tensor:
        return (2 * torch.rand(count, n_joints, generator=generator, dtype=torch.float64) - 1) * half_width

    return uniform(math.pi), uniform(PROBE_VELOCITY), uniform(PROBE_ACCELERATION)


def warm_up() -> None:
    """Load what the first snapshot check would load, before any answer is due: torch.func's
    first gradient imports torch._dynamo (~1 s of Python imports holding the GIL), which held up
    the predictor's 1 kHz answers for ~120 steps right after its first model."""
    def quadratic(q: torch.Tensor, qd: torch.Tensor) -> torch.Tensor:
        return 0.5 * (qd * qd).sum() + 0.0 * q.sum()

    zeros = torch.zeros(1, 1, dtype=torch.float64)
    euler_lagrange.mass_matrix(quadratic, zeros, zeros)


def implausibility(model: Any, probes: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
                   max_torque: float) -> str | None:
    """Why ``model`` must not be served, or None. On the probe states its torque must be
    finite and within ``max_torque`` (the feed-forward limit), and its mass matrix finite and
    positive definite: a physical inertia, which the forecasts also need."""
    q, qd, qdd = probes
    try:
        with torch.no_grad():
            tau = model.torque(q, qd, qdd)
        # A grey-box model has its own M(q); a Lagrangian one is differentiated.
        mass = (model.mass_matrix(q) if hasattr(model, "mass_matrix")
                else euler_lagrange.mass_matrix(model.lagrangian_fn(), q, qd)).detach()
    except (RuntimeError, ValueError, TypeError, IndexError) as exc:
        return f"implausible: evaluation on probe states failed: {exc}"
    if tau.shape != q.shape or not torch.isfinite(tau).all():
        return "implausible: non-finite or misshapen torque on probe states"
    peak = float(tau.abs().max())
    if peak > max_torque:
        return f"implausible: torque {peak:.3g} N·m on probe states exceeds the limit {max_torque:g} N·m"
    if mass.shape != (q.shape[0], q.shape[1], q.shape[1]) or not torch.isfinite(mass).all():
        return "implausible: non-finite or misshapen mass matrix on probe states"
    eigenvalues = torch.linalg.eigvalsh(0.5 * (mass + mass.transpose(1, 2)))
    smallest, largest = float(eigenvalues.min()), float(eigenvalues.max())
    if smallest <= 1e-9 * max(1.0, largest):
        return f"implausible: mass matrix not positive definite on probe states (eigenvalue {smallest:.3g})"
    return None


def gravity_disagreement(model: Any, reference: Any, q: torch.Tensor) -> str | None:
    """Why ``model``'s gravity (τ at rest, over the positions ``q``) contradicts
    ``reference``'s, or None: a cosine below zero means it points the other way (a sign flip),
    which a change of the robot's masses or springs does not do."""
    zeros = torch.zeros_like(q)
    with torch.no_grad():
        new, old = model.torque(q, zeros, zeros).flatten(), reference.torque(q, zeros, zeros).flatten()
    cosine = float(new @ old) / max(float(new.norm() * old.norm()), 1e-300)
    if cosine < 0:
        return (f"implausible: gravity points against the served model's (cosine {cosine:.2f} over "
                f"{q.shape[0]} random positions)")
    return None


def robot_mismatch(model: Any, digest: str) -> str | None:
    """Why a model that names its URDF (a rigid body) is not for the robot whose URDF has
    SHA-256 ``digest``, or None ('' = no robot to match)."""
    robot = getattr(model, "robot", None)
    if digest and robot is not None and robot.digest != digest:
        return f"learned on another URDF: SHA-256 {robot.digest[:12]}… is not the robot's {digest[:12]}…"
    return None


def window_errors(model: Any, windows: TorqueSamples, window: int) -> torch.Tensor:
    """Per window of ``window`` consecutive samples (``windows`` holds whole windows, one after
    the other), the largest per-joint |mean predicted − mean measured torque|; inf where the
    model fails or is non-finite.

    The means, not per-sample errors: q̈ differenced from noisy q̇ is as noisy as the signal
    (SPEC §2b), but its window mean telescopes, so the noise shrinks with the window length
    (measured: 0.7 N·m for the true model at σ_q̇ = 1e-3 rad/s over 64 samples)."""
    count = len(windows) // window
    try:
        with torch.no_grad():
            predicted = model.torque(windows.q, windows.qd, windows.qdd)
        error = (predicted - windows.tau).reshape(count, window, -1).mean(1).abs().amax(1)
    except (RuntimeError, ValueError, TypeError, IndexError):
        return torch.full((count,), math.inf, dtype=torch.float64)
    return torch.where(torch.isfinite(error), error, torch.full_like(error, math.inf))


def history_windows(samples: Batch, window: int) -> Batch | None:
    """The whole windows of ``window`` gap-free consecutive samples in ``samples`` (time order),
    one after the other; None when there is none."""
    windows = WindowCutter(window).push(samples)
    if not windows:
        return None
    return Batch(*(torch.cat(columns) for columns in zip(
        *((w.stamp, w.q, w.qd, w.qdd, w.tau) for w in windows))))


def window_torque_error(model: Any, samples: TorqueSamples) -> float:
    """Largest per-joint |mean predicted − mean measured torque| over consecutive samples (one
    window; see window_errors)."""
    return float(window_errors(model, samples, len(samples))[0])


class _Cancelled(Exception):
    """Raised from the integrator's progress hook to abandon a forecast."""


@dataclass(frozen=True)
class Forecast:
    """A passive-motion forecast; `reason` says why it is shorter than asked, if it is."""

    times: list[float]
    q: list[list[float]]
    qd: list[list[float]]
    reason: str = ""


class ModelServer:
    """Holds the served model; thread-safe swap, bounded per-sample torque, forecasts.

    ``max_torque`` [N·m] bounds the feed-forward: on probe states before a model is served,
    and on every answer (an answer beyond it is withheld). ``consistency_tolerance`` [N·m] is
    the torque error on measured states (window means of ``window`` samples: RMS over the
    history, and the newest window) that a new model may show without having to beat the
    served model there. With ``require_measurements`` (a server that drives motors) a model is
    served only after that check; without (a saved file offline, no robot) the probe checks
    and the run order are all there is. With ``robot_digest``, a model that names its URDF
    (a rigid body) must name this one."""

    def __init__(self, joint_names: Sequence[str] = JOINT_NAMES,
                 max_payload_bytes: int = PREDICTOR_PARAMETERS.default("max_payload_bytes"), *,
                 max_torque: float = PREDICTOR_PARAMETERS.default("max_feedforward_torque"),
                 consistency_tolerance: float = PREDICTOR_PARAMETERS.default("consistency_tolerance"),
                 window: int = PREDICTOR_PARAMETERS.default("consistency_window"),
                 require_measurements: bool = True, robot_digest: str = "") -> None:
        self.joint_names = tuple(joint_names)
        self.robot_digest = robot_digest  # SHA-256 of the served robot's URDF ('' = unchecked)
        self.max_payload_bytes = max_payload_bytes
        self.max_torque = max_torque
        self.consistency_tolerance = consistency_tolerance
        self.window = window
        self.require_measurements = require_measurements
        self.refused: Counter[str] = Counter()
        self.last_refusal = ""
        self.accepted = 0
        self.withheld = 0  # answers not given: non-finite or beyond max_torque
        self.probe_cpu_s = 0.0  # CPU time of the newest random-probe check
        self._current: DecodedModel | None = None
        self._pending: DecodedModel | None = None  # plausible, waiting for a history to check it on
        self._integrator = None  # VariationalIntegrator of the current model, built on first use
        self._lock = threading.Lock()

    @property
    def current(self) -> DecodedModel | None:
        return self._current

    @property
    def pending(self) -> DecodedModel | None:
        """A plausible model held until measured states can check it (it drives nothing)."""
        return self._pending

    def offer(self, payload: str | bytes, measured: Batch | None = None) -> tuple[bool, str]:
        """Validate a snapshot and swap it in; returns (accepted, reason or summary).
        ``measured``: checked samples of the last seconds, oldest first (gaps allowed). A model
        that passes everything but cannot be checked on them yet is held (see ``pending``)."""
        self.probe_cpu_s = 0.0
        try:
            decoded = decode_model(payload, max_bytes=self.max_payload_bytes, kinds=SERVABLE_KINDS,
                                   joint_names=self.joint_names)
            self._check_robot(decoded)
            self._check_newer(decoded, self._pending or self._current)
            self._check_plausible(decoded, self._current)
        except SnapshotError as exc:
            return self._refuse(str(exc))
        if self.require_measurements:
            self._pending = decoded
            return self.check_pending(measured)
        return self._serve(decoded, "not checked against measurements (offline)")

    def check_pending(self, measured: Batch | None) -> tuple[bool, str]:
        """Check the held model on ``measured``: served, refused, or still held (False,
        reason starting "held")."""
        decoded = self._pending
        if decoded is None:
            return False, "no model held"
        try:
            checked = self._check_consistent(decoded, self._current, measured)
        except SnapshotError as exc:
            self._pending = None
            return self._refuse(str(exc))
        if checked is None:
            return False, (f"held v{decoded.model_version} of run {decoded.run_id}: it drives nothing until "
                           f"{MIN_HISTORY_WINDOWS} windows of {self.window} measured moving states check it")
        self._pending = None
        return self._serve(decoded, checked)

    def _serve(self, decoded: DecodedModel, checked: str) -> tuple[bool, str]:
        with self._lock:
            self._current = decoded
            self._integrator = None
        self.accepted += 1
        return True, f"model v{decoded.model_version} of run {decoded.run_id} ({decoded.model.kind}); {checked}"

    def _refuse(self, reason: str) -> tuple[bool, str]:
        self.refused[reason.split(":")[0][:60]] += 1
        self.last_refusal = reason
        return False, reason

    @staticmethod
    def _check_newer(decoded: DecodedModel, newest: DecodedModel | None) -> None:
        if decoded.run_id.started_ns > time.time_ns() + MAX_RUN_CLOCK_SKEW_NS:
            raise SnapshotError(f"replay or forgery: run {decoded.run_id} starts in the future of this host's clock")
        if newest is None:
            return
        if decoded.run_id < newest.run_id:
            raise SnapshotError(f"replay: run {decoded.run_id} is older than the served run {newest.run_id}")
        if decoded.run_id == newest.run_id and decoded.model_version <= newest.model_version:
            raise SnapshotError(f"replay: version {decoded.model_version} is not newer than the served "
                                f"version {newest.model_version} of run {newest.run_id}")

    def _check_robot(self, decoded: DecodedModel) -> None:
        reason = robot_mismatch(decoded.model, self.robot_digest)
        if reason:
            raise SnapshotError(reason)

    def _check_plausible(self, decoded: DecodedModel, current: DecodedModel | None) -> None:
        """Random probes drawn now (see RANDOM_PROBE_STATES), gravity against the served model."""
        started = time.process_time()
        probes = random_probe_states(len(self.joint_names))
        reason = implausibility(decoded.model, probes, self.max_torque)
        if reason is None and current is not None:
            reason = gravity_disagreement(decoded.model, current.model, probes[0])
        self.probe_cpu_s = time.process_time() - started
        if reason:
            raise SnapshotError(reason)

    def _check_consistent(self, decoded: DecodedModel, current: DecodedModel | None,
                          measured: Batch | None) -> str | None:
        """Refuse a model that explains the measured torques (RMS over the history's windows, or
        the newest window) worse than both the tolerance and the served model, or whose torques
        oppose them; returns what was checked, None when the history cannot check it yet."""
        windows = history_windows(measured, self.window) if measured is not None else None
        count = len(windows) // self.window if windows is not None else 0
        if count < MIN_HISTORY_WINDOWS:
            return None
        measured_means = windows.tau.reshape(count, self.window, -1).mean(1).abs().amax(1)
        if float(measured_means.square().mean().sqrt()) < INFORMATIVE_TORQUE * self.consistency_tolerance:
            return None
        new = window_errors(decoded.model, windows, self.window)
        served = window_errors(current.model, windows, self.window) if current else torch.zeros_like(new)
        history, history_served = (float(e.square().mean().sqrt()) for e in (new, served))
        newest, newest_served = float(new[-1]), float(served[-1])
        span = f"{count} windows over {float(windows.stamp[-1] - windows.stamp[0]):.2g} s"
        for label, error, reference in (("RMS", history, history_served), ("newest-window", newest, newest_served)):
            if error > self.consistency_tolerance and (current is None or error > reference):
                raise SnapshotError(
                    f"inconsistent with measured torques: {label} window-mean error {error:.3g} N·m ({span}) "
                    f"exceeds {self.consistency_tolerance:g} N·m (served model: "
                    f"{f'{reference:.3g} N·m' if current else 'none'})")
        return f"window-mean torque error {history:.3g} N·m RMS, {newest:.3g} newest ({span})"

    def torque(self, q: Sequence[Sequence[float]], qd: Sequence[Sequence[float]],
               qdd: Sequence[Sequence[float]]) -> list[list[float] | None] | None:
        """Inverse-dynamics torques of the served model for a batch of points (one call, so
        a message with many points costs about as much as one); None without a model. A row
        is None where the torque is non-finite or beyond ``max_torque``: withheld, counted."""
        model = self._current
        if model is None:
            return None
        rows = [torch.tensor(values, dtype=torch.float64).reshape(-1, len(self.joint_names))
                for values in (q, qd, qdd)]
        with torch.no_grad():
            torques = model.model.torque(*rows)
        safe = torch.isfinite(torques).all(-1) & (torques.abs() <= self.max_torque).all(-1)
        self.withheld += int((~safe).sum())
        return [row if ok else None for row, ok in zip(torques.tolist(), safe.tolist())]

    def forecast(self, q: Sequence[float], qd: Sequence[float], horizon: float, step: float,
                 cancel: threading.Event | None = None) -> Forecast | None:
        """Passive motion from (q, q̇) with the variational integrator; None without a
        model, with a model that has no Lagrangian to integrate (a URDF's rigid body), or when
        `cancel` is set meanwhile (shutdown). Only finite, converged points are returned (every
        served model has a positive-definite mass matrix on the probes)."""
        from syrenets_ros.dynamics.integrator import VariationalIntegrator

        with self._lock:
            model, integrator = self._current, self._integrator
        if model is None or not hasattr(model.model, "lagrangian_fn"):
            return None
        if integrator is None or integrator.h != step:
            # One traced integrator per (model, step), reused by every forecast.
            dissipation = getattr(model.model, "dissipation_fn", lambda: None)()
            integrator = VariationalIntegrator(model.model.lagrangian_fn(), step, tol=1e-10, dissipation=dissipation)
            with self._lock:
                if self._current is model:
                    self._integrator = integrator
        steps = max(1, int(round(horizon / step)))

        def stop_when_cancelled(_done: int, _alive: int) -> None:
            if cancel is not None and cancel.is_set():
                raise _Cancelled

        try:
            rollout = integrator.rollout(torch.tensor([q], dtype=torch.float64),
                                         torch.tensor([qd], dtype=torch.float64), steps, progress=stop_when_cancelled)
        except _Cancelled:
            return None
        valid = int(rollout.valid_length[0])
        positions, velocities = rollout.q[0, :valid], rollout.qd[0, :valid]
        finite = torch.isfinite(positions).all(-1) & torch.isfinite(velocities).all(-1)
        valid = int(finite.int().cumprod(0).sum())  # belt and braces: never publish non-finite
        reason = rollout.failures[0] or ("" if valid == steps + 1 else "non-finite state")
        return Forecast(rollout.t[:valid].tolist(), positions[:valid].tolist(), velocities[:valid].tolist(), reason)


def load_model_file(path: str | os.PathLike, joint_names: Sequence[str] | None = None,
                    max_payload_bytes: int = PREDICTOR_PARAMETERS.default("max_payload_bytes")) -> DecodedModel:
    """A saved snapshot, validated as the predictor validates one from the topic (allow-list
    decode, joint names, probe evaluation) except for measured torques, which a file has none
    of (a predictor checks them before the model drives motors); SnapshotError with the reason if
    refused. ``joint_names`` None takes the snapshot's own (offline use, no robot to match)."""
    try:  # a FIFO or device as the file would block for ever: refused before reading
        payload = read_regular(path, max_payload_bytes)
    except OSError as exc:
        raise SnapshotError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        if joint_names is None:
            joint_names = decode_model(payload, max_bytes=max_payload_bytes).joint_names
    except SnapshotError as exc:
        raise SnapshotError(f"{path}: {exc}") from None
    server = ModelServer(joint_names, max_payload_bytes, require_measurements=False)
    accepted, reason = server.offer(payload)
    if not accepted:
        raise SnapshotError(f"{path}: {reason}")
    return server.current
