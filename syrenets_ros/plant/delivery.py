"""What feed-forward the controller actually got (issue 13), measured inside the simulator.

A learned model can be exact while the torque the controller applies is not: an answer that
arrives late is replaced by an older one (stale) or by none (missing). Every step with the
feed-forward on, the simulator records which it was, how old, and the error of the applied
feed-forward against the true inverse dynamics of the system in force at the desired point
(a missing answer applies zero). The tallies restart per report window and also accumulate
over the run, so transport loss shows next to model error. No ROS.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from syrenets_ros.plant.feedforward import Answer, Use


@dataclass
class DeliveryTally:
    """Counts and squared errors over a span of steps."""

    exact: int = 0
    stale: int = 0
    missing: int = 0
    stale_age_sum: int = 0
    stale_age_max: int = 0
    squared_error: float = 0.0  # Σ_k |τ_applied,k − τ_true,k|²
    max_error: float = 0.0

    @property
    def steps(self) -> int:
        return self.exact + self.stale + self.missing

    def add(self, answer: Answer, error: float) -> None:
        if answer.use is Use.EXACT:
            self.exact += 1
        elif answer.use is Use.STALE:
            self.stale += 1
            self.stale_age_sum += answer.age
            self.stale_age_max = max(self.stale_age_max, answer.age)
        else:
            self.missing += 1
        self.squared_error += error * error
        self.max_error = max(self.max_error, error)

    def merge(self, other: "DeliveryTally") -> None:
        """Add ``other``'s steps to these."""
        self.exact += other.exact
        self.stale += other.stale
        self.missing += other.missing
        self.stale_age_sum += other.stale_age_sum
        self.stale_age_max = max(self.stale_age_max, other.stale_age_max)
        self.squared_error += other.squared_error
        self.max_error = max(self.max_error, other.max_error)

    def rate(self, use: Use) -> float:
        count = {Use.EXACT: self.exact, Use.STALE: self.stale, Use.NONE: self.missing}[use]
        return count / self.steps if self.steps else math.nan

    @property
    def rms_error(self) -> float:
        """RMS over steps of the Euclidean error |τ_applied − τ_true| [N·m]."""
        return math.sqrt(self.squared_error / self.steps) if self.steps else math.nan

    @property
    def mean_stale_age(self) -> float:
        return self.stale_age_sum / self.stale if self.stale else 0.0


class DeliveryAudit:
    """The simulator's record of delivered feed-forward: a window (since the last report)
    and the whole run up to the last report (the window joins it at each report, so a step
    costs one tally update). The run's split is also given from the first answered step on:
    before the predictor has a model every step is missing, which says nothing about transport,
    so those leading steps are counted apart."""

    def __init__(self) -> None:
        self.window = DeliveryTally()
        self.total = DeliveryTally()
        self.unanswered_at_start = 0  # missing steps before the first answered one
        self._answered = False

    def record(self, answer: Answer, truth: Sequence[float]) -> None:
        """One step: the answer used (its torque is None when missing) and the true inverse
        dynamics at the desired point of that step."""
        applied = answer.torque if answer.torque is not None else (0.0,) * len(truth)
        self.window.add(answer, math.dist(applied, truth))
        if answer.use is not Use.NONE:
            self._answered = True
        elif not self._answered:
            self.unanswered_at_start += 1

    def report(self) -> dict[str, str]:
        """The /diagnostics values of this window and the run; restarts the window."""
        window, total = self.window, self.total
        total.merge(window)
        served = total.steps - self.unanswered_at_start  # all recorded steps are in total now
        late_missing = total.missing - self.unanswered_at_start

        def since_first_answer(count: int) -> str:
            return f"{count / served:.4f}" if served else "nan"
        values = {
            "delivered_ff_steps_window": str(window.steps),
            "delivered_ff_exact_window": str(window.exact),
            "delivered_ff_stale_window": str(window.stale),
            "delivered_ff_missing_window": str(window.missing),
            "delivered_ff_exact_rate_window": f"{window.rate(Use.EXACT):.4f}",
            "delivered_ff_stale_rate_window": f"{window.rate(Use.STALE):.4f}",
            "delivered_ff_missing_rate_window": f"{window.rate(Use.NONE):.4f}",
            "delivered_ff_stale_age_mean_steps_window": f"{window.mean_stale_age:.3g}",
            "delivered_ff_stale_age_max_steps_window": str(window.stale_age_max),
            "delivered_ff_error_rms_window": f"{window.rms_error:.6g}",
            "delivered_ff_error_max_window": f"{window.max_error:.6g}",
            "delivered_ff_steps_total": str(total.steps),
            "steps_feedforward_exact": str(total.exact),
            "steps_feedforward_stale": str(total.stale),
            "steps_feedforward_missing": str(total.missing),
            "delivered_ff_exact_rate_total": f"{total.rate(Use.EXACT):.4f}",
            "delivered_ff_stale_rate_total": f"{total.rate(Use.STALE):.4f}",
            "delivered_ff_missing_rate_total": f"{total.rate(Use.NONE):.4f}",
            "delivered_ff_stale_age_mean_steps_total": f"{total.mean_stale_age:.3g}",
            "delivered_ff_stale_age_max_steps_total": str(total.stale_age_max),
            "delivered_ff_error_rms_total": f"{total.rms_error:.6g}",
            "delivered_ff_steps_since_first_answer": str(served),
            "delivered_ff_exact_rate_since_first_answer": since_first_answer(total.exact),
            "delivered_ff_stale_rate_since_first_answer": since_first_answer(total.stale),
            "delivered_ff_missing_rate_since_first_answer": since_first_answer(late_missing),
        }
        self.window = DeliveryTally()
        return values
