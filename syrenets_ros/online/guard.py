"""What the learner may serve: the score that ranks candidates, the gate a predictor applies
too, the rule that lets a candidate replace the served model, and how far the models that fit
equally well disagree where no data were seen.

A better score on the holdout is not enough to be served: after a structural change the best
fits on a second of data are often stand-ins (a trig series for a spring) whose coefficients
the data barely fix, right in range and newtons off outside it. Kept apart from the loop so
each rule can be tested on models and data alone.
"""

from __future__ import annotations

import math
from typing import Callable

import torch

from syrenets_ros.learning import integral
from syrenets_ros.learning.regression import fit_integral
from syrenets_ros.learning.terms import LinearModel, TermModel
from syrenets_ros.online.serving import implausibility, probe_states
from syrenets_ros.online.stream import Batch

# Candidates whose held-out RMSE is within this factor of the best fit it equally well.
EQUAL_FIT = 2.0
# Models agreeing to this share of their RMS torque outside the data agree (the exactness of a
# model on clean data is ~1e-13; 1e-6 is what the benchmarks call exact).
AGREEMENT = 1e-6
# A coefficient whose standard error is this share of its value is ill-determined, and a model
# holding one replaces the served model only when the served one's held-out RMSE is
# CLEARLY_BETTER times its own or more.
ILL_DETERMINED = 0.5
CLEARLY_BETTER = 2.0


def _integral_residual(model, batch: Batch, rows: integral.RowForm) -> torch.Tensor:
    """Integral-row residuals (J, n) of a model on a batch: noise-robust (SPEC §2b), so a score
    built on them is not biased towards wrong models by differentiated sensor noise."""
    starts = rows.starts(batch.stamp)
    if len(starts) == 0:
        return torch.zeros(0, batch.q.shape[-1], dtype=torch.float64)
    stamp, q, qd, qdd, tau = (x.to(torch.float64).cpu() for x in (batch.stamp, batch.q, batch.qd, batch.qdd, batch.tau))
    return rows.predicted(model, stamp, q, qd, qdd, starts) - rows.target(stamp, tau, starts)


def integral_rmse(model, batch: Batch, rows: integral.RowForm) -> float:
    """RMSE of a model's integral-row residuals on a batch: the score that picks the served
    model (inf when the batch holds no gap-free window or the model diverges)."""
    residual = _integral_residual(model, batch, rows)
    if residual.numel() == 0:
        return math.inf
    value = float(residual.square().mean().sqrt())
    return value if math.isfinite(value) else math.inf


def outside_states(fit: Batch, generator: torch.Generator, count: int = 512
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(q, q̇, q̈) drawn over the recently visited envelope widened by its width on both sides
    (each joint's range three times as wide): where a series that merely fits the visited
    range (e.g. a trig stand-in for a spring) and the true structure part ways."""
    def widened(x: torch.Tensor) -> torch.Tensor:
        low, high = x.min(0).values.to(torch.float64), x.max(0).values.to(torch.float64)
        span = (high - low).clamp_min(1e-3)
        u = torch.rand(count, x.shape[1], generator=generator, dtype=torch.float64)
        return low - span + u * 3.0 * span

    return widened(fit.q), widened(fit.qd), widened(fit.qdd)


def ill_determined(model) -> bool:
    """Whether a term model has a coefficient whose standard error is :data:`ILL_DETERMINED` of
    its value or more: the data barely fix it (a stand-in trading off against its neighbours)."""
    if not isinstance(model, TermModel):
        return False
    known = model.stderr > 0
    return bool((known & (model.stderr >= ILL_DETERMINED * model.coefficients.abs())).any())


def disagreement_outside(chosen: tuple[float, str, object], scored: list, fit: Batch, seed: int) -> float:
    """RMS torque [N·m] by which the models that fit as well as ``chosen`` disagree with it
    outside the visited envelope (:func:`outside_states`): the candidates within
    :data:`EQUAL_FIT` of its held-out RMSE and, for each term refit among them, the other
    supports its cross-validation could not tell apart. 0 when none disagrees beyond
    :data:`AGREEMENT` of its torque there. Equal fits that part ways outside mean the data
    do not determine the structure: a Taylor stand-in for a stiffer potential agrees in
    range with the truth and with other stand-ins, and not beyond it."""
    rmse, _, model = chosen
    tiny = torch.finfo(torch.float64).tiny
    equal = [m for r, _, m in scored if math.isfinite(r) and r <= EQUAL_FIT * max(rmse, tiny)]
    rivals = [m for m in equal if m is not model]
    rivals += [e for m in equal if isinstance(m, TermModel) for e in m.fit_report.get("equivalent", ())]
    if not rivals:
        return 0.0
    states = outside_states(fit, torch.Generator().manual_seed(seed))
    with torch.no_grad():
        reference = model.torque(*states).to(torch.float64)
        worst = max(float((rival.torque(*states).to(torch.float64) - reference).square().mean().sqrt())
                    for rival in rivals)
    scale = float(reference.square().mean().sqrt())
    return worst if worst > AGREEMENT * scale else 0.0


def replaces(model, served, rmse: float, fitted_on: float, served_samples: float, holdout: Batch,
             rows: integral.RowForm, since_change: Batch | None = None) -> bool:
    """Whether ``model`` (held-out RMSE ``rmse``, fitted on ``fitted_on`` samples) may replace
    ``served`` (fitted on ``served_samples``): it is judged against the served model on the
    holdout, which neither has seen. ``since_change``: the record since a change the served
    model predates, on which the candidate must not be worse either."""
    if served is None or model is served:
        return True
    # The served model's own terms refitted on more samples than it was fitted on are a
    # coefficient update (what the tracker does continuously): the holdout cannot tell two
    # fits of one structure on nearly the same data apart, and refusing them would freeze a
    # post-change model at its first, shortest fit. Not across a change: there the served
    # structure may lack what the new system needs, and its refit is then a local stand-in.
    # Nor for an ill-determined refit (measured: tracked coefficients right but ±90 on each,
    # from a fresh tracker's covariance, would have replaced a refit known to ±1e-10).
    if (since_change is None and isinstance(model, LinearModel) and type(model) is type(served)
            and set(model.library.columns) == set(served.library.columns) and fitted_on > served_samples
            and not ill_determined(model)):
        return True
    # An ill-determined candidate (a stand-in whose coefficients the data barely fix) must be
    # clearly better: measured after a combined change, such stand-ins (±10–90 on coefficients
    # of that order) were served for ~12 s, 16–22 N·m off on probe states.
    if not integral_rmse(served, holdout, rows) > (CLEARLY_BETTER if ill_determined(model) else 1.0) * rmse:
        return False
    # The newest second can flatter a stand-in that tracked it (measured: cogging the rigid
    # terms cannot hold, tracked coefficients 0.68 N·m on the holdout against the old model's
    # ~1.4, served, and 2x worse than the old model on other post-change motion): it must not
    # be worse on everything since the change, which it has partly been fitted on — worse
    # even there is worse.
    return since_change is None or integral_rmse(model, since_change, rows) <= integral_rmse(served, since_change, rows)


class PublishGate:
    """Nothing is published that a predictor would refuse, or that is unsafe if it would not
    (:func:`serving.implausibility` on the probe states); also what a validated candidate is
    served as (:meth:`served_fit`). Counts refusals by candidate source in ``implausible``."""

    def __init__(self, n_joints: int, max_torque: float, implausible: dict[str, int],
                 log: Callable[[str], None]) -> None:
        self.probes = probe_states(n_joints)
        self.max_torque = max_torque
        self.implausible = implausible
        self.log = log

    def plausible(self, rmse: float, source: str, model) -> bool:
        """The gate a predictor applies too (serving.implausibility): publish nothing it
        would refuse, and nothing unsafe if it would not."""
        reason = implausibility(model, self.probes, self.max_torque)
        if reason:
            self.implausible[source] = self.implausible.get(source, 0) + 1
            count = self.implausible[source]
            if count & (count - 1) == 0:  # the 1st, 2nd, 4th, 8th...: a bounded log, every one counted
                self.log(f"not publishing the {source} candidate (refusal {count}, held-out RMSE {rmse:.3g} N·m): "
                         f"{reason}")
        return reason is None

    def served_fit(self, model, source: str, fitted_on: float, recent: Batch, rows: integral.RowForm,
                   fit_samples: int, tracked_samples: float) -> tuple[object, float]:
        """What to serve for a validated candidate, and how many samples it is fitted on: a term
        model's terms refitted on ``recent`` (the newest ``fit_samples`` samples, holdout
        included), when that is more than it was fitted on (``tracked_samples`` for the tracker's).

        The holdout has done its job once the terms were chosen and judged on it; withholding
        it from the served fit as well would, after a change, serve a model fitted on a third
        less post-change data (errors scale ~1/√samples). A tracker that has absorbed less than
        a refit's worth of non-overlapping rows is less precise than a refit of its terms on
        overlapping rows (measured 2.9 s after a swap at realistic noise: 0.013 vs 0.003 N·m).
        The candidate itself is served when the refit is impossible or implausible."""
        if not isinstance(model, LinearModel):
            return model, fitted_on
        if source == "tracked":
            fitted_on = tracked_samples
            if fitted_on >= fit_samples:
                return model, fitted_on
        elif len(recent) <= fitted_on:
            return model, fitted_on
        try:
            refit = fit_integral(model.library, recent.stamp, recent.q, recent.qd, recent.qdd, recent.tau,
                                 rows=rows, select_terms=False)
        except ValueError:
            return model, fitted_on
        if implausibility(refit, self.probes, self.max_torque):
            return model, fitted_on
        return refit, len(recent)
