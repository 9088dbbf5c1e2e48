"""How the learner forms integral rows and how long its windows are, in samples.

Every fit, score and check compares models with data on integral (momentum-form) rows (SPEC
§2b). Their window and form are decided once, on the first data that can tell: a window short
enough that the record's gap-free runs hold the windows a selection needs, and the row form
whose rows the library explains best. Kept apart from the loop so the decision can be tested
on a record alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import torch

from syrenets_ros.learning import integral
from syrenets_ros.learning.regression import choose_rows

if TYPE_CHECKING:
    from syrenets_ros.online.learner import LearnerConfig
    from syrenets_ros.online.stream import Batch


# Samples an integral window holds at least, whatever the rate: the weak form's quadrature is
# accurate to ~1e-7 from 16 samples on (integral.WEAK_ORDER), and fewer average little noise.
MIN_WINDOW_SAMPLES = 16
HOLDOUT_WINDOWS = 2  # non-overlapping windows the holdout holds at least, to score anything
# Samples a refit uses at least: at 1 kHz fit_duration holds more; at 25 Hz 8 s would be 200
# samples, too few to select among ~90 columns.
FIT_MIN_SAMPLES = 4000


@dataclass(frozen=True)
class Sizes:
    """The learner's windows and data sizes in samples: its durations divided by the sample
    period, with the floors that keep every fit and score possible at coarse rates (so the same
    defaults work from 25 Hz to 2 kHz)."""

    period: float
    window: int
    stride: int
    holdout: int
    fit: int
    min_fit: int
    recent: int
    train_window: int

    @classmethod
    def derive(cls, config: LearnerConfig, period: float, window: int | None = None) -> Sizes:
        """``window`` [samples] overrides the configured one (shortened for short runs)."""
        def samples(seconds: float) -> int:
            return max(1, round(seconds / period))

        window = window or max(MIN_WINDOW_SAMPLES, samples(config.integral_window))
        min_fit = max(samples(config.min_fit_duration), integral.MIN_FIT_WINDOWS * window)
        return cls(period, window, min(window, samples(config.integral_stride)),
                   max(samples(config.holdout), HOLDOUT_WINDOWS * window),
                   min(config.buffer_capacity, max(samples(config.fit_duration), FIT_MIN_SAMPLES, min_fit)),
                   min_fit, samples(config.recent_window), max(2, samples(config.train_window)))

    def describe(self) -> str:
        def seconds(count: int) -> str:
            return f"{count} samples ({count * self.period:.3g} s)"

        return (f"period {self.period:.6g} s; integral window {seconds(self.window)}, stride {self.stride}; "
                f"holdout {seconds(self.holdout)}; refit on {seconds(self.fit)}; first model after "
                f"{seconds(self.min_fit)} + the holdout")


def runs_window(runs: list[int], needed: int) -> int:
    """The longest window (MIN_WINDOW_SAMPLES at least) of which the gap-free runs hold
    ``needed`` (each with room for central rows' two neighbours)."""
    longest = max(runs, default=0)
    while longest > MIN_WINDOW_SAMPLES and sum(r // (longest + 2) for r in runs) < needed:
        longest -= max(1, longest // 8)
    return max(MIN_WINDOW_SAMPLES, longest)


class RowPlan:
    """The row form and the sizes in use (:attr:`rows`, :attr:`sizes`): configured, or decided
    once on the first data (:meth:`decide`), and shortened when a refit finds too few windows
    (:meth:`shorten_for`). The caller restarts what depends on the rows (cut windows, the change
    detector's baseline) whenever they change."""

    def __init__(self, config: LearnerConfig, measured_acceleration: bool = False) -> None:
        """``measured_acceleration``: the samples carry a measured q̈ (a table's), not the
        forward difference of a stream; with ``integral_rows`` auto their own rows are used."""
        self.config = config
        self.measured_acceleration = measured_acceleration
        self.sizes = Sizes.derive(config, config.joint_state_period)
        form = "acceleration" if config.integral_rows == "auto" else config.integral_rows
        self.rows = integral.RowForm(form, self.sizes.window, self.sizes.stride)
        self.decided = config.integral_rows != "auto"

    def decide(self, data: Batch, library, log: Callable[[str], None]) -> str:
        """Decide on ``data`` (the newest samples): an integral window short enough that the
        record's gap-free runs hold the windows a selection needs (short segments, messages lost
        every few samples), and, with ``integral_rows`` auto, the row form whose rows a sparse
        fit of ``library`` explains best (:func:`regression.choose_rows`). Returns "" once
        decided, else why not yet (with the numbers)."""
        runs = integral.run_lengths(data.stamp, self.sizes.period)
        needed = integral.MIN_FIT_WINDOWS + HOLDOUT_WINDOWS
        window = min(self.sizes.window, runs_window(runs, needed))
        held = sum(r // (window + 2) for r in runs)
        if held < needed:
            return (f"the {len(data)} samples lie in {len(runs)} gap-free runs (longest {max(runs, default=0)} "
                    f"samples) holding {held} integral windows of {window} samples "
                    f"({window * self.sizes.period:.3g} s); a model needs {needed}: record longer gap-free runs "
                    f"or more of them")
        if window != self.sizes.window:
            self._shorten(window, runs, log)
        form, scores, basis = self.rows.form, {}, ""
        if self.config.integral_rows == "auto" and self.measured_acceleration:
            form, basis = "acceleration", "the record's own q̈"
        elif self.config.integral_rows == "auto":
            form, motion, scores = choose_rows(library, data.stamp, data.q, data.qd, data.qdd, data.tau, window)
            basis = ("relative residual of the discretisations q and q̇ follow: "
                     + ", ".join(f"{name} {score:.2g}" for name, score in motion.items())
                     + ("; relative residual of a sparse library fit" if scores else ""))
        if form == "weak" and self.sizes.window < integral.WEAK_MIN_WINDOW <= max(runs) - 2:
            # Its quadrature needs the longer window; the first model then waits for its data (a
            # refit that finds too few windows of it shortens it again: :meth:`shorten_for`).
            self.sizes = Sizes.derive(self.config, self.sizes.period, integral.WEAK_MIN_WINDOW)
        self.rows = integral.RowForm(form, self.sizes.window, self.sizes.stride)
        self.decided = True
        compared = ", ".join(f"{name} {score:.2g}" for name, score in scores.items())
        log(f"integral rows: {form}" + (f" (by {basis}{': ' + compared if compared else ''})" if basis else "")
            + f"; {self.sizes.describe()}")
        return ""

    def shorten_for(self, stamp: torch.Tensor, log: Callable[[str], None]) -> bool:
        """After a refit found too few windows in samples stamped ``stamp``: shorten the window
        to what their runs hold, if that is shorter (True when it did)."""
        runs = integral.run_lengths(stamp, self.sizes.period)
        window = runs_window(runs, integral.MIN_FIT_WINDOWS)
        if window >= self.rows.window:
            return False
        self._shorten(window, runs, log)
        return True

    def _shorten(self, window: int, runs: list[int], log: Callable[[str], None]) -> None:
        log(f"integral window shortened from {self.sizes.window} to {window} samples: the record's gap-free "
            f"runs are short (median {sorted(runs)[len(runs) // 2]} samples)")
        self.sizes = Sizes.derive(self.config, self.sizes.period, window)
        self.rows = integral.RowForm(self.rows.form, self.sizes.window, self.sizes.stride)
