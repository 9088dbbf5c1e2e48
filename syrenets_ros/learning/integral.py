"""Integral (momentum) form of the Euler–Lagrange rows (SPEC §2b): learning through noise.

Why: q̈ = Δq̇/Δt turns sensor noise on q̇ into acceleration noise as large as the signal, and
least squares on noisy regressors is biased. A weighted sum of the per-sample rows over a
window [t_a, t_b],

    Σ_k w_k τ_k  =  Σ_k w_k [∂²L/∂q̇² (q̇_{k+1} − q̇_k)/Δt + ∂²L/∂q̇∂q q̇_k − ∂L/∂q + D]_k,

is the same linear map of the coefficients (so it is exact on clean data, summed with the
simulator's own discrete scheme), but the velocity differences telescope: summed by parts, the
acceleration never appears and only the slowly varying weights w_k ∂²L/∂q̇² multiply the
velocity noise (∫τ = p(t_b) − p(t_a) − ∫∂L/∂q + ∫D for a flat window; a smooth window that
vanishes at both ends removes the endpoint noise too, as in weak-form SINDy). Noise then
averages over the window instead of being amplified by 1/Δt.

Everything that compares a model with data — the refit, sparse term selection, the held-out
score that picks the served model, recursive tracking, change detection and the
insufficiency check — uses these rows, never per-sample q̈.

Three ways to form a row (:class:`RowForm`), because recordings differ in how their q̇, q̈ and
τ relate, and each way is exact for one kind and approximate for the others:

- ``acceleration``: window sums of per-sample rows with the sample's q̈ — the forward
  difference (q̇_{k+1} − q̇_k)/Δt of a stream, exact for a simulator that holds τ over a step
  and integrates semi-implicitly (ours, Bullet), first order in Δt for sampled continuous
  motion; or the q̈ a table carries (exact where the table's q̈ is);
- ``central``: the same with q̈ = (q̇_{k+1} − q̇_{k−1})/(t_{k+1} − t_{k−1}): exact for data whose
  velocities and accelerations were made by central differences (numpy.gradient, as in public
  data sets), second order for sampled continuous motion;
- ``weak``: the Euler–Lagrange equation integrated against a smooth test function φ that
  vanishes with its first derivatives at the window's ends and integrated by parts,
  ∫φτ = −∫φ̇ ∂L/∂q̇ − ∫φ ∂L/∂q + ∫φ D (weak-form SINDy): no acceleration at all, and with
  φ = (1 − x²)^WEAK_ORDER the trapezoid rule over the samples converges at high order, so
  sampled continuous motion at 25 Hz gives rows accurate to ~1e-7 relative.

:func:`kinematic_form` says which discretisation a record's q and q̇ follow, and
:func:`regression.choose_rows` checks it against which rows a sparse fit of the library
explains best; the simulator's own scheme is the default.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from syrenets_ros.dynamics import euler_lagrange

DEFAULT_WINDOW = 100  # samples per window (0.1 s at 1 kHz): noise ∝ window^-1.5
DEFAULT_STRIDE = 25  # window starts for fitting; overlapping windows reuse the data
FORMS = ("acceleration", "central", "weak")
# Exponent of the weak form's test function (1 − x²)^k. Measured on sampled continuous motion
# (harmonics up to 1 Hz), relative row error of a library fit with 16-sample windows at 25 Hz:
# k = 4: 4e-5, 6: 2e-6, 8: 8e-8; at 100 Hz and 64 samples: 1e-7, 5e-10, 3e-12.
WEAK_ORDER = 8
# Samples a weak-form window holds at least: the steep test function needs them more than the
# motion does. Relative row error of the true model at 25, 50 and 100 Hz alike (amplitude 1 rad,
# harmonics to 1 Hz): 16 samples 2e-6, 24: 5e-8 to 9e-8, 32: 4e-9 to 8e-9, 48: 1e-10 to 3e-10 —
# with 16, selection took a stand-in (cos 2q1) for the quadrature error.
WEAK_MIN_WINDOW = 32
# Relative residual below which weak-form fits count as exact (:func:`select`'s floor): its
# quadrature leaves ~1e-8 (above), and a selection that sees that as signal takes stand-ins
# (measured at 100 Hz: cos 2q1 at −4e-8 beside the seven true terms).
WEAK_FLOOR = 1e-7
# Relative: below this, residuals are rounding, not signal. Integral rows of clean data agree
# to ~5e-14, but short records of a slow reference (2 s of the 0.1 Hz default) left ~1e-12:
# with a floor of 1e-12 a Coulomb column (constant while q̇1 kept its sign) fitted that
# rounding and stayed in the served model at 1e-15 N·m.
NUMERICAL_FLOOR = 1e-11
FOLDS = 5  # blocked cross-validation folds for term selection
# Non-overlapping windows' worth of data a cross-validated selection needs at least: two per
# fold (fit_integral's test), and one more for the stride's rounding.
MIN_FIT_WINDOWS = 2 * FOLDS + 1
MIN_WINDOWS = 200  # a refit on fewer windows than this uses a denser stride


def sample_period(stamps: torch.Tensor) -> float:
    """The stream's sample period: the median stamp step (robust to a few gaps)."""
    if stamps.shape[0] < 2:
        return math.nan
    return float((stamps[1:] - stamps[:-1]).median())


def window_weights(length: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Smooth bump (1 − x²)² on (−1, 1), normalised to sum 1: a row is a weighted mean torque."""
    x = (torch.arange(length, dtype=dtype) + 0.5) / length * 2.0 - 1.0
    w = (1.0 - x.square()).square()
    return w / w.sum()


def regular_steps(stamps: torch.Tensor, period: float, tolerance: float = 0.5) -> torch.Tensor:
    """Which steps between consecutive stamps are one period (within ``tolerance`` of it),
    shape (B − 1,): the others are gaps, segment ends or reversals."""
    return ((stamps[1:] - stamps[:-1]) - period).abs() <= tolerance * period


def run_lengths(stamps: torch.Tensor, period: float) -> list[int]:
    """Lengths of the gap-free runs of samples in a record, in order."""
    if len(stamps) == 0:
        return []
    breaks = torch.nonzero(~regular_steps(stamps, period))[:, 0] + 1
    edges = [0] + breaks.tolist() + [len(stamps)]
    return [b - a for a, b in zip(edges[:-1], edges[1:])]


def window_starts(stamps: torch.Tensor, window: int, stride: int, period: float,
                  tolerance: float = 0.5) -> torch.Tensor:
    """Start indices of windows of ``window`` consecutive samples that contain no gap, every
    ``stride`` samples from the start of each gap-free run.

    A window across a gap (dropped messages, a change boundary after pre-change data was
    dropped, a segment's end) would sum rows that do not telescope; it is never formed. Starts
    count from each run's own first sample, so a short run holds as many windows as fit in it
    (a grid common to the record would miss most windows of runs barely longer than one)."""
    count = int(stamps.shape[0])
    if count < window:
        return torch.zeros(0, dtype=torch.long)
    first = torch.cat((torch.ones(1, dtype=torch.bool), ~regular_steps(stamps, period, tolerance)))
    run = first.to(torch.long).cumsum(0) - 1
    run_start = torch.nonzero(first)[:, 0]
    index = torch.arange(count)
    offset = index - run_start[run]
    remaining = torch.bincount(run)[run] - offset  # samples from here to the run's end
    return index[(offset % stride == 0) & (remaining >= window)]


def integrate(per_sample: torch.Tensor, starts: torch.Tensor, window: int,
              weights: torch.Tensor | None = None) -> torch.Tensor:
    """Window-weighted sums of per-sample rows: (B, ...) → (J, ...) for J window starts;
    ``weights`` (window,) default to :func:`window_weights` (a weighted mean).

    One grouped convolution over time (memory of the output only, however dense the starts);
    windows that together cover at most the samples once (non-overlapping rows, one row) are
    weighed directly instead, since the convolution would evaluate every start."""
    shape = per_sample.shape[1:]
    weights = (window_weights(window, per_sample.dtype) if weights is None else weights).to(
        device=per_sample.device, dtype=per_sample.dtype)
    if len(starts) * window <= per_sample.shape[0]:
        index = starts.to(per_sample.device)[:, None] + torch.arange(window, device=per_sample.device)
        return torch.einsum("w,jwc->jc", weights,
                            per_sample.reshape(per_sample.shape[0], -1)[index]).reshape(len(starts), *shape)
    # Starts on a common grid (every stride-th sample from the first): the convolution is
    # evaluated on that grid only, not at every sample.
    first = int(starts[0])
    grid = int(np.gcd.reduce((starts - first).numpy())) or 1
    channels = per_sample[first:].reshape(per_sample.shape[0] - first, -1).T[None]  # (1, C, B − first)
    # conv1d is a correlation, out[s] = Σ_k kernel[k]·x[s+k]: the weights as they are (the weak
    # form's φ̇ weights are odd, so a flip would negate them).
    kernel = weights.expand(channels.shape[1], 1, window).contiguous()
    full = torch.nn.functional.conv1d(channels, kernel, stride=grid, groups=channels.shape[1])[0]
    return full[:, ((starts - first) // grid).to(per_sample.device)].T.reshape(len(starts), *shape)


def torque_rows(lagrangian: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], q: torch.Tensor,
                qd: torch.Tensor, qdd: torch.Tensor, tau: torch.Tensor, window: int) -> torch.Tensor:
    """Integral rows (J, n) of the Euler–Lagrange residual τ_L − τ of a row-wise batched
    Lagrangian (B, n) → (B,) on a batch of J consecutive gap-free windows of ``window``
    samples (B = J·window): the noise-robust quantity a network trains on. Gradients with
    respect to what ``lagrangian`` captures flow through."""
    if q.shape[0] < window or q.shape[0] % window:
        raise ValueError(f"the batch ({q.shape[0]} samples) must be whole windows of {window} samples")
    predicted = euler_lagrange.batched_torque(lagrangian, q, qd, qdd)
    starts = torch.arange(0, q.shape[0], window, device=q.device)
    return integrate(predicted - tau, starts, window)


def weak_weights(window: int, period: float, order: int = WEAK_ORDER,
                 dtype: torch.dtype = torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    """Quadrature weights of φ and φ̇ [1/s] for ``window`` samples ``period`` apart, with
    φ = (1 − x²)^order on x ∈ [−1, 1] from the first sample to the last. φ vanishes at both
    ends (so the trapezoid rule is a plain sum), and both are normalised by Σφ: a row is a
    weighted mean torque, in N·m like the other forms."""
    if window < 3:
        raise ValueError("a weak-form window needs at least 3 samples")
    x = torch.linspace(-1.0, 1.0, window, dtype=dtype)
    phi = (1.0 - x.square()).pow(order)
    dphi = order * (1.0 - x.square()).pow(order - 1) * (-2.0 * x) * (2.0 / ((window - 1) * period))
    return phi / phi.sum(), dphi / phi.sum()


class TooFewWindows(ValueError):
    """A record holds too few gap-free integral windows for the asked fit; says the numbers."""

    def __init__(self, found: int, needed: int, window: int, period: float, samples: int) -> None:
        super().__init__(f"{found} gap-free integral windows of {window} samples ({window * period:.3g} s) in "
                         f"{samples} samples; term selection needs {needed}")


def _weak_parts(model, q: torch.Tensor, qd: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(∂L/∂q̇, −∂L/∂q + dissipative force) per sample, (B, n) each: closed form for a term
    model, autograd on ``lagrangian_fn`` for any other (the network)."""
    if hasattr(model, "weak_parts"):
        return model.weak_parts(q, qd)
    with torch.enable_grad():  # row-wise batched L (B, n) → (B,): rows do not interact
        q_in, qd_in = q.detach().requires_grad_(True), qd.detach().requires_grad_(True)
        dl_dq, dl_dqd = torch.autograd.grad(model.lagrangian_fn()(q_in, qd_in).sum(), (q_in, qd_in))
    static = -dl_dq
    dissipation = getattr(model, "dissipation_fn", lambda: None)()
    if dissipation is not None:
        static = static + dissipation(qd)
    return dl_dqd, static


@dataclass(frozen=True)
class RowForm:
    """How integral rows are formed from a record (the module docstring says why there are
    three): ``form`` in :data:`FORMS`, ``window`` samples per row, window starts every
    ``stride`` samples. Every fit, score, tracker row and structure test of one learner uses
    one form, so that they compare like with like."""

    form: str = "acceleration"
    window: int = DEFAULT_WINDOW
    stride: int = DEFAULT_STRIDE

    def __post_init__(self) -> None:
        if self.form not in FORMS:
            raise ValueError(f"row form {self.form!r} not in {FORMS}")
        if self.window < (3 if self.form == "weak" else 2) or self.stride < 1:
            raise ValueError(f"window {self.window} / stride {self.stride} samples too small for {self.form} rows")

    @property
    def floor(self) -> float:
        """Relative residual that is rounding or quadrature error, not signal."""
        return WEAK_FLOOR if self.form == "weak" else NUMERICAL_FLOOR

    @property
    def span(self) -> int:
        """Samples one row reads: its window, and for central rows the two neighbours."""
        return self.window + 2 if self.form == "central" else self.window

    def starts(self, stamps: torch.Tensor, stride: int | None = None) -> torch.Tensor:
        """Starts of gap-free windows; central rows also need each window's two neighbours."""
        starts = window_starts(stamps, self.span, self.stride if stride is None else stride, sample_period(stamps))
        return starts + 1 if self.form == "central" else starts

    def fit_starts(self, stamps: torch.Tensor) -> tuple[torch.Tensor, int]:
        """The window starts a refit uses and its stride ratio (window // stride, at least 1).
        Short records get denser windows: cross-validation needs enough of them (measured: 1.8 s
        of data at stride 25 selected wrong terms, at stride 5 the exact ones). Raises
        :class:`TooFewWindows` when the record holds too few gap-free windows."""
        stride = max(1, min(self.stride, (len(stamps) - self.window) // MIN_WINDOWS))
        starts = self.starts(stamps, stride)
        ratio = max(1, self.window // stride)
        needed = 2 * FOLDS * ratio
        if len(starts) < needed:
            raise TooFewWindows(len(starts), needed, self.window, sample_period(stamps), len(stamps))
        return starts, ratio

    def acceleration(self, stamps: torch.Tensor, qd: torch.Tensor, qdd: torch.Tensor) -> torch.Tensor:
        """The per-sample q̈ the rows use (the record's own, or central differences of q̇;
        meaningless at a run's first and last sample, which central windows never use)."""
        if self.form != "central" or len(stamps) < 3:
            return qdd
        central = qdd.clone()
        central[1:-1] = (qd[2:] - qd[:-2]) / (stamps[2:] - stamps[:-2])[:, None].to(qd)
        return central

    def columns(self, library, stamps: torch.Tensor, q: torch.Tensor, qd: torch.Tensor, qdd: torch.Tensor,
                starts: torch.Tensor) -> torch.Tensor:
        """Rows (J, n, p) of every column of a term library."""
        if self.form == "weak":
            return self._weak_rows(*library.weak_images(q, qd), stamps, starts)
        return integrate(library.el_images(q, qd, self.acceleration(stamps, qd, qdd)), starts, self.window)

    def target(self, stamps: torch.Tensor, tau: torch.Tensor, starts: torch.Tensor) -> torch.Tensor:
        """Rows (J, n) of the measured torque."""
        weights = weak_weights(self.window, sample_period(stamps), dtype=tau.dtype)[0] if self.form == "weak" else None
        return integrate(tau, starts, self.window, weights)

    def predicted(self, model, stamps: torch.Tensor, q: torch.Tensor, qd: torch.Tensor, qdd: torch.Tensor,
                  starts: torch.Tensor) -> torch.Tensor:
        """Rows (J, n) of any model's torque (float64, CPU)."""
        if self.form == "weak":
            return self._weak_rows(*(x.detach().to(torch.float64).cpu() for x in _weak_parts(model, q, qd)),
                                   stamps, starts)
        with torch.no_grad():
            torque = model.torque(q, qd, self.acceleration(stamps, qd, qdd)).to(torch.float64).cpu()
        return integrate(torque, starts, self.window)

    def _weak_rows(self, momentum: torch.Tensor, static: torch.Tensor, stamps: torch.Tensor,
                   starts: torch.Tensor) -> torch.Tensor:
        """∫φ·static − ∫φ̇·momentum over each window (the time derivative moved onto φ)."""
        phi, dphi = weak_weights(self.window, sample_period(stamps), dtype=static.dtype)
        return integrate(static, starts, self.window, phi) - integrate(momentum, starts, self.window, dphi)


# The discretisation a record's positions and velocities follow decides the form when one
# holds this much better than every other (rounding against a discretisation error).
KINEMATIC_MARGIN = 1e-2


def kinematic_form(stamps: torch.Tensor, q: torch.Tensor, qd: torch.Tensor) -> tuple[str | None, dict[str, float]]:
    """Which row form the record's own kinematics call for, or None when none clearly holds
    (sensor noise hides them all), and each relation's relative residual:

    - semi-implicit steps, q_{k+1} = q_k + Δt q̇_{k+1} (our simulator, Bullet): acceleration;
    - central differences, q̇_k = (q_{k+1} − q_{k−1})/(t_{k+1} − t_{k−1}) (numpy.gradient): central;
    - smooth motion, Simpson's rule q_{k+1} − q_{k−1} = Δt/3 (q̇_{k−1} + 4q̇_k + q̇_{k+1}), error
      O(Δt⁵) where the others are O(Δt²): weak.

    Residuals are relative to the RMS displacement per step; only steps within half a period
    of the median count (no relation spans a gap)."""
    if len(stamps) < 3:
        return None, {}
    regular = regular_steps(stamps, sample_period(stamps))
    inner = regular[:-1] & regular[1:]  # triples k−1, k, k+1
    if not bool(inner.any()):
        return None, {}
    h = (stamps[1:] - stamps[:-1])[:, None].to(q)
    scale = float((h[:-1][inner] * qd[1:-1][inner]).square().mean().sqrt()) or 1.0
    span = (q[2:] - q[:-2])[inner]
    residuals = {
        "acceleration": (q[1:] - q[:-1] - h * qd[1:])[regular],
        "central": span - ((stamps[2:] - stamps[:-2])[:, None].to(q) * qd[1:-1])[inner],
        "weak": span - (h[:-1] / 3.0 * (qd[:-2] + 4.0 * qd[1:-1] + qd[2:]))[inner],
    }
    scores = {form: float(r.square().mean().sqrt()) / scale for form, r in residuals.items()}
    ordered = sorted(scores, key=scores.get)
    return (ordered[0] if scores[ordered[0]] <= KINEMATIC_MARGIN * scores[ordered[1]] else None), scores


@dataclass(frozen=True)
class RowFit:
    """A least-squares fit on integral rows, with what is needed to trust it."""

    support: list[int]  # selected columns
    coefficients: torch.Tensor  # (p,) zeros outside the support
    stderr: torch.Tensor  # (p,) coefficient standard errors (zeros outside the support)
    noise: torch.Tensor  # (n,) per-joint residual scale of one non-overlapping row [N·m]
    cv_rmse: float  # cross-validated RMSE of the chosen support on the weighted rows
    # The cross-validated pick before Occam's razor (:func:`_simplify`): it explains more of
    # the data than the simplest equivalent, so a test for structure the class lacks uses it.
    unsimplified: list[int]
    # Other supports the data cannot tell apart from the chosen one (cross-validated error within
    # its one standard error), each with its least-squares coefficients (p,): where they part
    # ways outside the visited states, the served model's extrapolation is a guess.
    equivalent: list[tuple[list[int], torch.Tensor]] = field(default_factory=list)


# On a record the whole library explains to rounding, held-out errors within this factor of the
# floor (mean squares; 10x in RMS) tie.
EXACT_TIE = 100.0
EQUIVALENT_LIMIT = 8  # equivalent supports a selection keeps at most (the largest ones of its path)


def _lstsq(matrix: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return torch.linalg.lstsq(matrix, target[:, None], driver="gelsd").solution[:, 0]


def _forward_path(scaled: torch.Tensor, target: torch.Tensor, limit: int) -> list[int]:
    """Greedy forward selection (orthogonal matching pursuit with exact RSS reduction)."""
    basis = scaled.new_zeros(scaled.shape[0], 0)
    residual = target.clone()
    chosen: list[int] = []
    for _ in range(min(limit, scaled.shape[1])):
        projected = scaled - basis @ (basis.T @ scaled)
        norms = projected.norm(dim=0)
        gain = (projected.T @ residual).square() / norms.square().clamp_min(torch.finfo(norms.dtype).tiny)
        gain[norms < 1e-9] = -1.0  # (numerically) inside the span already
        gain[chosen] = -1.0
        best = int(gain.argmax())
        if gain[best] < 0:
            break
        chosen.append(best)
        vector = projected[:, best] / norms[best]
        vector = vector - basis @ (basis.T @ vector)
        basis = torch.cat((basis, (vector / vector.norm())[:, None]), 1)
        residual = residual - basis[:, -1] * (basis[:, -1] @ residual)
    return chosen


def _backward_path(scaled: torch.Tensor, target: torch.Tensor, support: list[int]) -> list[int]:
    """Backward elimination by the smallest |t| statistic; returns ``support`` ordered from the
    most to the least significant term (the last one eliminated comes first)."""
    columns = scaled[:, support]
    if columns.shape[0] > len(support):
        # Only R and Qᵀy of the support enter the t statistics: eliminating on them costs
        # k×k factorisations instead of rows×k ones (the whole library, below, has ~70 columns).
        q, columns = torch.linalg.qr(columns)
        target = q.T @ target
    active = list(range(len(support)))  # positions in ``support``
    eliminated: list[int] = []
    while active:
        q, r = torch.linalg.qr(columns[:, active])
        coef = torch.linalg.solve_triangular(r, (q.T @ target)[:, None], upper=True)[:, 0]
        inverse = torch.linalg.solve_triangular(r, torch.eye(len(active), dtype=r.dtype), upper=True)
        t = coef.abs() / inverse.square().sum(1).sqrt()
        eliminated.append(support[active.pop(int(t.argmin()))])
    return eliminated[::-1]


def _cross_validate(matrix: torch.Tensor, target: torch.Tensor, supports: list[list[int]], folds: int,
                    guard: int, floor: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Blocked K-fold CV over windows (contiguous blocks in time; ``guard`` windows next to the
    test block are left out of training because overlapping windows share samples).
    Returns the mean and standard error of the held-out MSE per support.

    Each fold's normal equations are formed once; a support's fit solves its sub-block (cheap
    enough to score every support of a path). Squaring the condition number only blurs errors
    far below the noise floor of any real record, and the served coefficients come from a
    least-squares solve, not from here."""
    windows, width = matrix.shape[0], matrix.shape[-1]
    fold = torch.arange(windows) * folds // windows
    prepared = []
    for f in range(folds):
        test = fold == f
        index = torch.nonzero(test)[:, 0]
        train = (torch.arange(windows)[:, None] - index[None, :]).abs().min(1).values > guard
        x = matrix[train].reshape(-1, width)
        y = target[train].reshape(-1)
        prepared.append((x.T @ x, x.T @ y, matrix[test].reshape(-1, width), target[test].reshape(-1)))
    means, errors = [], []
    for support in supports:
        scores = []
        for gram, moment, x_test, y_test in prepared:
            block = gram[support][:, support]
            c = torch.linalg.lstsq(block, moment[support][:, None], driver="gelsd").solution[:, 0]
            scores.append(float((x_test[:, support] @ c - y_test).square().mean()))
        values = torch.tensor(scores, dtype=torch.float64)
        means.append(max(float(values.mean()), floor))
        errors.append(float(values.std() / math.sqrt(folds)))
    return torch.tensor(means), torch.tensor(errors)


SWAPS_PER_TERM = 4  # simpler stand-ins scored per term in each simplification round


def _simplify(weighted: torch.Tensor, aim: torch.Tensor, scaled: torch.Tensor, support: list[int],
              columns: list[int], complexity: list[int], folds: int, guard: int, floor: float,
              bound: float) -> list[int]:
    """Occam's razor among the supports the data cannot tell apart: while dropping a term, or
    replacing it by a simpler column, keeps the cross-validated error within ``bound`` (the
    best support's error plus one standard error), take the change that lowers the total
    complexity most.

    Why: forward selection is greedy, so on weakly exciting or noisy records it can take
    collinear stand-ins (cos 2q1 + q1² for cos q1, q̇1q̇2·cos 2q2 for q̇1q̇2) that fit the
    visited states within the noise and extrapolate by newtons outside them (measured on the
    demo's own 0.1 Hz trajectory at realistic noise: 22 of 26 selections wrong, 5–57 N·m on
    the wide range). Only the columns most aligned with what a term adds beyond the rest of
    the support are tried as its stand-ins, so a round costs a few dozen cross-validations."""
    def cost(chosen: list[int]) -> int:
        return sum(complexity[c] for c in chosen)

    while True:
        options: list[list[int]] = []
        for term in support:
            rest = [c for c in support if c != term]
            if rest:
                options.append(rest)
            simpler = [c for c in columns if c not in support and complexity[c] < complexity[term]]
            if not simpler:
                continue
            basis = torch.linalg.qr(scaled[:, rest]).Q if rest else scaled.new_zeros(scaled.shape[0], 0)
            own = scaled[:, term] - basis @ (basis.T @ scaled[:, term])
            others = scaled[:, simpler] - basis @ (basis.T @ scaled[:, simpler])
            tiny = torch.finfo(scaled.dtype).tiny
            alignment = (others.T @ own).abs() / (others.norm(dim=0) * own.norm()).clamp_min(tiny)
            best = alignment.topk(min(SWAPS_PER_TERM, len(simpler))).indices.tolist()
            options += [rest + [simpler[i]] for i in best]
        if not options:
            return support
        means, _ = _cross_validate(weighted, aim, options, folds, guard, floor)
        current = cost(support)
        eligible = [(cost(o), float(m), o) for o, m in zip(options, means) if float(m) <= bound and cost(o) < current]
        if not eligible:
            return support
        support = min(eligible, key=lambda item: (item[0], item[1]))[2]


def _joint_scale(residual: torch.Tensor, fitted: int, floor: float) -> torch.Tensor:
    """Per-joint RMS of residual rows (J, n), corrected for ``fitted`` coefficients."""
    equations = residual.numel()
    correction = equations / max(equations - fitted, 1)
    return (residual.square().mean(0) * correction).sqrt().clamp_min(floor)


def select(matrix: torch.Tensor, target: torch.Tensor, *, stride_ratio: int, folds: int = FOLDS,
           max_terms: int = 40, candidates: list[int] | None = None, fixed: bool = False,
           complexity: list[int] | None = None, relative_floor: float = NUMERICAL_FLOOR) -> RowFit:
    """Sparse term selection on integral rows, with no threshold tuned to a noise level.

    ``matrix`` (J, n, p) and ``target`` (J, n) are overlapping rows (window starts every
    window/``stride_ratio`` samples). Steps:
    1. per-joint noise scale from a full fit on the non-overlapping rows; rows are weighted by
       it (joint rows differ several-fold in noise, and an unweighted criterion overfits);
    2. forward selection proposes an ordering; blocked cross-validation picks its best size;
    3. backward elimination by |t| within that support; blocked cross-validation with the
       one-standard-error rule picks the sparsest support whose held-out error is within one
       standard error of the best. On clean data every superset of the truth scores at the
       numerical floor, so the sparsest — the true terms — wins; under noise the CV error is
       in the noise's own units, so the same rule holds at every σ;
    4. with ``complexity`` (per column), Occam's razor among the supports within that one
       standard error (:func:`_simplify`).
    Coefficient standard errors come from the non-overlapping rows (independent noise), which
    makes them conservative for the overlapping-row estimate. ``fixed``: no selection, every
    candidate is kept (a support already chosen and validated, refitted on more data).
    ``relative_floor``: residuals below it (relative to the target) are rounding or quadrature
    error, and supports that reach it tie (so the sparsest wins).
    """
    windows, joints, width = matrix.shape
    columns = list(range(width)) if candidates is None else list(candidates)
    disjoint = slice(None, None, stride_ratio)
    scale_floor = relative_floor * float(target.abs().max().clamp_min(1.0))
    # Step 1 only weighs the joints against each other. On a few seconds of data the disjoint
    # rows have no more equations than columns, and a full fit on them leaves no residual: the
    # scale fell to its floor and both joints weighed alike (measured on clean data with a
    # spring and friction: found at 7 s instead of 3 s). The overlapping rows, window/stride
    # times as many, still leave a residual whose ratio between joints is what counts.
    short = target[disjoint].numel() <= len(columns)
    rows, aims = (matrix, target) if short else (matrix[disjoint], target[disjoint])
    full = _lstsq(rows[..., columns].reshape(-1, len(columns)), aims.reshape(-1))
    noise = _joint_scale(aims - rows[..., columns] @ full, len(columns), scale_floor)
    exact = bool((noise <= scale_floor).all())  # the whole library explains the rows to rounding
    weighted = matrix / noise[None, :, None]
    aim = target / noise
    flat = weighted.reshape(-1, width)
    scaled = flat / flat.norm(dim=0).clamp_min(torch.finfo(flat.dtype).tiny)
    floor = relative_floor**2 * float(aim.square().mean())
    guard = stride_ratio
    if fixed:
        supports = [columns]
    else:
        order = [columns[i] for i in _forward_path(scaled[:, columns], aim.reshape(-1), max_terms)]
        supports = [order[:k] for k in range(1, len(order) + 1)]
        means, _ = _cross_validate(weighted, aim, supports, folds, guard, floor)
        best = supports[int(means.argmin())]
        order = _backward_path(scaled, aim.reshape(-1), best)
        supports = [order[:k] for k in range(1, len(order) + 1)]
        if exact and float(means.min()) > EXACT_TIE * floor and flat.shape[0] > len(columns):
            # The library holds an exact model and greedy forward selection missed it, as it can
            # on a short, weakly exciting record (measured: 4 s of two sinusoids, the truth never
            # among 40 forward steps); eliminating from the whole library keeps it: every other
            # term's coefficient is zero to rounding.
            whole = _backward_path(scaled, aim.reshape(-1), columns)
            known = {frozenset(s) for s in supports}
            supports += [whole[:k] for k in range(1, min(len(whole), max_terms) + 1)
                         if frozenset(whole[:k]) not in known]
    means, errors = _cross_validate(weighted, aim, supports, folds, guard, floor)
    best = int(means.argmin())
    # The one-standard-error rule: the sparsest support within one standard error of the best.
    bound = float(means[best] + errors[best])
    if exact:
        # Supports that fit to a few times the floor are exact too: which of them rounds better
        # depends on the record and the machine (measured: the truth 2.5x the floor, a superset
        # of it 1.1x, on 1.2 s of a clean simulator record).
        bound = max(bound, EXACT_TIE * floor)
    pick = min((k for k in range(len(supports)) if means[k] <= bound), key=lambda k: (len(supports[k]), k))
    support = supports[pick]
    if not fixed and complexity is not None:
        support = _simplify(weighted, aim, scaled, support, columns, complexity, folds, guard, floor, bound)
    support = sorted(support)

    def solved(chosen: list[int]) -> torch.Tensor:
        values = torch.zeros(width, dtype=matrix.dtype)
        values[chosen] = _lstsq(flat[:, chosen], aim.reshape(-1))
        return values

    coefficients = solved(support)
    tied = [sorted(s) for s, m in zip(supports, means.tolist()) if m <= bound]
    tied = list(dict.fromkeys(tuple(s) for s in tied[-EQUIVALENT_LIMIT:] if s != support))
    equivalent = [(list(s), solved(list(s))) for s in tied]
    stderr = torch.zeros(width, dtype=matrix.dtype)
    disjoint_rows = weighted[disjoint][..., support].reshape(-1, len(support))
    dof = max(disjoint_rows.shape[0] - len(support), 1)
    sigma2 = float((disjoint_rows @ coefficients[support] - aim[disjoint].reshape(-1)).square().sum()) / dof
    covariance = max(sigma2, floor) * torch.linalg.pinv(disjoint_rows.T @ disjoint_rows)
    stderr[support] = covariance.diagonal().clamp_min(0.0).sqrt()
    # The noise scale callers calibrate on (change detection, tracking) comes from the chosen
    # support's residual on the disjoint rows, corrected for the fitted coefficients. The
    # full-library fit above only weights the joints: on a short record it has about as many
    # columns as disjoint rows and its residual vanishes (measured 2.9 s after a swap: the
    # scale fell to the floor, and the next window's residual read as a change).
    noise = _joint_scale(target[disjoint] - matrix[disjoint] @ coefficients, len(support), scale_floor)
    return RowFit(support, coefficients, stderr, noise, math.sqrt(float(means[pick])), sorted(supports[pick]),
                  equivalent)


def _chi2_quantile(dof: int, tail: float) -> float:
    """Upper ``tail`` quantile of χ²_dof (Wilson–Hilferty; accurate to a few % at these tails)."""
    z = float(torch.special.ndtri(torch.tensor(1.0 - tail, dtype=torch.float64)))
    a = 2.0 / (9.0 * dof)
    return dof * (1.0 - a + z * math.sqrt(a)) ** 3


STRUCTURE_TAIL = 1e-9  # false-alarm probability per check of the missing-structure test
# Explained torque below this share of the RMS target row is rounding, not physics: an exact
# model's integral rows agree to ~1e-13 relative (SPEC §2b). Relative, so that a small missing
# term (a spring a trig series nearly absorbs in range) still counts on a strongly driven arm.
STRUCTURE_FLOOR = 1e-9
# Explained RMS per row a missing group must reach, in units of the residual's own scale.
# Measured: a wrong early fit on 3 s of realistically noisy data passed the χ² test with 0.3;
# a spring, friction or a swap on clean data explain 1e2–1e13 times the residual.
STRUCTURE_EFFECT = 1.0
# Rows per fitted column the structure test keeps at least: with fewer (e.g. the whole library
# on a few seconds of data) realistic sensor noise, which is neither white nor alike across
# joints and states, passes the χ² test (measured: 50 for a χ²_5 at 2 rows per column).
ROWS_PER_COLUMN = 8
# Columns a broad group is tested by (its strongest; see :func:`missing_structure`): enough for
# a harmonic's cos and sin beside another's, few enough for the rows of a few seconds.
WIDE_TEST_COLUMNS = 4


def missing_structure(model_rows: torch.Tensor, target: torch.Tensor, groups: dict[str, torch.Tensor],
                      relative_floor: float = STRUCTURE_FLOOR, complement: torch.Tensor | None = None,
                      wide: frozenset[str] = frozenset()) -> str | None:
    """Which kind of physics a term model lacks, or None: a nested likelihood-ratio test.

    ``model_rows`` (J, n, p) are the model's own columns on non-overlapping integral rows,
    ``target`` (J, n) the measured rows, ``groups`` name → (J, n, g) candidate columns the model
    does not have (e.g. polynomial potential terms, dissipative forces). A group counts when
    adding it to the model's columns lowers the residual sum of squares beyond the χ² quantile
    at ``STRUCTURE_TAIL``, in units of the residual variance of the model grown by every group
    (so the test holds at every noise level; each joint's rows weighted by its own residual
    scale, as joints differ several-fold in noise; no verdict with fewer rows than twice the
    columns), *and* the explained RMS per row exceeds
    ``relative_floor`` × the RMS target row (rounding residuals of an exact model are not
    physics) and ``STRUCTURE_EFFECT`` × the residual scale: under sensor noise the columns
    carry the noise the residual carries (errors in variables), and a fit on little data can
    be wrong enough that the χ² test alone names structure that is not there.

    ``complement`` (J, n, c): columns of the model class the model does not use. The model is
    first granted those of them that explain most of its residual (forward selection: as many
    as keep ``ROWS_PER_COLUMN`` rows per column, and at least as many as the widest group
    has), so that only structure the whole class lacks counts — not a term a sparse fit on
    little, noisy data missed. (The whole class at once would leave too few rows per column
    for the test to hold under noise.)

    ``wide`` names broad groups (dozens of harmonics, say): each is tested by its
    ``WIDE_TEST_COLUMNS`` columns that explain most of the residual (forward selection, with
    the χ² quantile of the whole group: picking the best few from noise gains no more than all
    of them would), since a few seconds of rows cannot carry all of them. The group explaining
    most is named, a broad one only when no narrower one is found: a broad group explains a
    share of almost anything in a visited range (a hardening spring's quartic, on 4 s of clean
    rows, to 5e-8 N·m by four harmonics beside the library's), and the narrow ladder
    (polynomial potentials of degree 2, then 4) comes first by Occam's razor.
    """
    rows = target.numel()
    own_rows = model_rows
    narrow_width = max((g.shape[-1] for name, g in groups.items() if name not in wide), default=0)
    widest = max(narrow_width, WIDE_TEST_COLUMNS if wide & set(groups) else 0)

    def beyond(columns: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
        """Columns made orthogonal to the model's span (orthonormal ``basis``) and unit-norm
        (zero when inside it)."""
        flat = columns.reshape(rows, -1)
        rest = flat - basis @ (basis.T @ flat)
        norms = rest.norm(dim=0)
        inside = norms <= 1e-9 * flat.norm(dim=0)  # (numerically) in the model's span already
        return torch.where(inside, 0.0, rest / norms.clamp_min(torch.finfo(flat.dtype).tiny))

    if complement is not None and complement.shape[-1]:
        room = max(widest, rows // ROWS_PER_COLUMN - model_rows.shape[-1] - widest)
        if room > 0:
            # Selected by what each column adds beyond the model's own span.
            residual = (target - _fitted(model_rows, target)).reshape(-1)
            span = torch.linalg.qr(model_rows.reshape(rows, -1)).Q
            granted = _forward_path(beyond(complement, span), residual, room)
            model_rows = torch.cat((model_rows, complement[..., granted]), -1)
    residual = (target - _fitted(model_rows, target)).reshape(-1)
    searched = {name: columns.shape[-1] for name, columns in groups.items()}
    if wide & set(groups):
        basis = torch.linalg.qr(model_rows.reshape(rows, -1)).Q
        groups = {name: columns[..., _forward_path(beyond(columns, basis), residual, WIDE_TEST_COLUMNS)]
                  if name in wide else columns for name, columns in groups.items()}
    everything = torch.cat((model_rows, *groups.values()), -1)
    if rows < 2 * everything.shape[-1]:
        narrow = {name: columns for name, columns in groups.items() if name not in wide}
        if len(narrow) < len(groups):  # the broad groups wait for a longer record
            return missing_structure(own_rows, target, narrow, relative_floor, complement)
        return None  # too few rows to tell structure from noise
    noise = target - _fitted(everything, target)
    # Explained torque must stand out of the rounding and out of the noise itself.
    floor = max(relative_floor * float(target.square().mean().sqrt()),
                STRUCTURE_EFFECT * float(noise.square().sum() / (rows - everything.shape[-1])) ** 0.5)
    scale = noise.square().mean(0).sqrt()
    scale = scale.clamp_min(max(float(scale.max()), torch.finfo(torch.float64).tiny) * 1e-6)[None, :, None]

    def rss(matrix: torch.Tensor, weighted: bool) -> float:
        y = target / scale[..., 0] if weighted else target
        return float((y - _fitted(matrix / scale if weighted else matrix, y)).square().sum())

    reduced, reduced_raw = rss(model_rows, True), rss(model_rows, False)
    causes = []
    for name, columns in groups.items():
        grown = torch.cat((model_rows, columns), -1)
        dof = rows - grown.shape[-1]
        if dof < 2:
            continue
        full = rss(grown, True)
        gain = reduced - full
        explained = max(reduced_raw - rss(grown, False), 0.0) / rows
        # A broad group's best few columns gain at most what all of it would: tested against
        # the quantile of all (measured: against the few only, 3x realistic noise on a rigid
        # pendulum grew the library by harmonics in 1 of 6 one-minute runs).
        significant = gain / max(full / dof, torch.finfo(torch.float64).tiny) > _chi2_quantile(
            searched[name], STRUCTURE_TAIL)
        if significant and math.sqrt(explained) > floor:
            causes.append((name not in wide, gain, name))
    return max(causes)[-1] if causes else None


def _fitted(matrix: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Least-squares fit of ``target`` (J, n) on the columns of ``matrix`` (J, n, p)."""
    flat = matrix.reshape(-1, matrix.shape[-1])
    solution = torch.linalg.lstsq(flat, target.reshape(-1, 1), driver="gelsd").solution[:, 0]
    return (flat @ solution).reshape(target.shape)
