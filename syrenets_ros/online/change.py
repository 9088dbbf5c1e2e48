"""Change detection on the served model's torque residual (no ROS): when the residual jumps and
stays up, a change is suspected; it is confirmed (the system changed and pre-change data must
go) only when no single model fits the data on both sides of the jump."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import torch

from syrenets_ros.learning import integral
from syrenets_ros.learning.regression import fit_integral
from syrenets_ros.learning.terms import Force, Term
from syrenets_ros.online.guard import integral_rmse
from syrenets_ros.online.stream import Batch


@dataclass
class ChangeDetector:
    """Flags a system change when the model's windowed torque residual jumps well above its
    running baseline and stays up for `hold` consecutive windows. The baseline drops with the
    residual at once (a better model was served) and rises only slowly.

    `floor` keeps a near-exact model (residual ~1e-12) from flagging numerical noise.
    """

    window: int = 100
    ratio: float = 10.0
    hold: int = 2
    floor: float = 1e-4  # mean squared torque residual, (N·m)²
    baseline_decay: float = 0.9
    baseline: float | None = None
    detections: int = 0
    _acc: list[float] = field(default_factory=list)
    _window_start: float = 0.0
    _above: int = 0
    _first_high_stamp: float | None = None

    def update(self, stamps: torch.Tensor, squared_residuals: torch.Tensor) -> float | None:
        """Feed per-sample squared residuals (time order); returns the stamp where a newly
        confirmed change began, else None."""
        detected: float | None = None
        for stamp, value in zip(stamps.tolist(), squared_residuals.tolist()):
            if not self._acc:
                self._window_start = stamp
            self._acc.append(value)
            if len(self._acc) < self.window:
                continue
            level = sum(self._acc) / len(self._acc)
            self._acc.clear()
            threshold = self.ratio * max(self.baseline if self.baseline is not None else level, self.floor)
            if self.baseline is not None and level > threshold:
                self._above += 1
                if self._first_high_stamp is None:
                    self._first_high_stamp = self._window_start
                if self._above >= self.hold:
                    detected = self._first_high_stamp
                    self.detections += 1
                    self.reset()
            else:
                self._above = 0
                self._first_high_stamp = None
                # Follow an improving model at once, a worsening one only slowly.
                self.baseline = level if self.baseline is None else min(
                    level, self.baseline_decay * self.baseline + (1 - self.baseline_decay) * level)
        return detected

    def reset(self) -> None:
        """Forget the baseline (after a change, or when a new model is served)."""
        self.baseline = None
        self._acc.clear()
        self._above = 0
        self._first_high_stamp = None


def library_fit_rmse(library, rows: integral.RowForm, *parts: Batch, columns: Sequence[Term | Force] | None = None
                     ) -> tuple[float, Sequence[Term | Force] | None]:
    """Held-in integral-row RMSE of one refit (:func:`fit_integral`) of ``library`` on the parts
    together (no window spans two parts: their stamps have a gap) and its columns: a sparse one
    of the library, or ``columns`` all kept; (0, None) when the parts are too short. Without
    Occam's razor: the comparison needs the best fit, and on the ~1 s after a jump the razor
    trades much held-in fit for simplicity (measured: with it a swap under noise read as "one
    model fits before and after")."""
    both = Batch(*(torch.cat(columns) for columns in zip(
        *((p.stamp, p.q, p.qd, p.qdd, p.tau) for p in parts))))
    try:
        model = fit_integral(library, both.stamp, both.q, both.qd, both.qdd, both.tau, candidates=columns,
                             rows=rows, select_terms=columns is None, simplify=False)
    except ValueError:
        return 0.0, None
    return integral_rmse(model, both, rows), model.library.columns


def confirm_change(recent: Batch, stamp: float, library, rows: integral.RowForm, fit_samples: int, guard: int,
                   noise: torch.Tensor) -> tuple[float | None, float]:
    """A residual jump at ``stamp`` means the system changed *or* the served model extrapolates
    badly. Tell them apart on ``recent``: if one sparse refit of the library explains the data
    before (its newest ``fit_samples``) and after the jump together about as well as each part
    alone is explained, nothing changed. The flagged window may straddle the change, so
    ``guard`` samples (one detection window) on each side are left out. The part after the jump
    is explained by the better of its own sparse refit and the terms chosen before it,
    refitted: a second of post-change data on a slow reference selects poorly alone (measured
    4.3 N·m held-in against 0.85 for the joint fit), and a link-2 swap under noise then read as
    "one model fits before and after" (offline, at a half-second cadence: confirmed 3.5 s late
    or never). ``noise``: the per-joint noise scale of one row; a joint fit within it fits.

    Returns the stamp from which data is trusted (None if nothing changed) and the joint fit's
    RMSE [N·m] (0 when it was not needed)."""
    split = int((recent.stamp < stamp).sum())
    pre = recent.slice(max(0, split - guard - fit_samples), max(0, split - guard))
    post = recent.slice(split + guard, len(recent))
    if len(post) == 0:
        return stamp, 0.0
    trusted_from = float(post.stamp[0])
    if len(pre) < guard:
        return trusted_from, 0.0
    joint = library_fit_rmse(library, rows, pre, post)[0]
    before, terms = library_fit_rmse(library, rows, pre)
    noise_floor = float(noise.square().mean())

    def changed(after: float) -> bool:
        return joint > 3.0 * max(before, after) and joint ** 2 > noise_floor

    # The refit of known terms first: it needs no selection (cheap), and explains a swap.
    if (terms is not None and changed(library_fit_rmse(library, rows, post, columns=terms)[0])
            or changed(library_fit_rmse(library, rows, post)[0])):
        return trusted_from, joint
    return None, joint


class ChangeWatch:
    """The suspected-change state between detection and confirmation. A jump of the served
    model's noise-normalised residual (:class:`ChangeDetector`) is only suspected; once a
    holdout of data followed it (:meth:`due`) it is confirmed or dismissed
    (:meth:`confirm`, :func:`confirm_change`). After a confirmed change the served model is
    known to be wrong: watching it again would only raise the same suspicion, so watching stops
    until the next model is served (:meth:`arm`)."""

    def __init__(self, window: int, ratio: float) -> None:
        """``window``: integral rows per detection window; ``ratio``: the jump that flags."""
        self.window = window
        # Detection runs on integral rows normalised by the estimated noise: a level of 1 is
        # the noise floor, so one ratio works at every noise level.
        self.detector = ChangeDetector(window=window, ratio=ratio, floor=1.0)
        self.suspected: float | None = None  # the stamp where a suspected change began
        self.armed = True

    def guard(self, rows: integral.RowForm) -> int:
        """Samples of one detection window, left out on each side of a jump (it may straddle it)."""
        return self.window * rows.span

    def watch(self, stamp: torch.Tensor, level: torch.Tensor, ratio: float) -> None:
        """Feed the served model's normalised residual level of one row; ``ratio`` is live."""
        if not self.armed:
            return
        self.detector.ratio = ratio
        change = self.detector.update(stamp, level)
        if change is not None and self.suspected is None:
            self.suspected = change

    def due(self, newest: Batch, needed: int) -> bool:
        """Whether ``newest`` (the newest ``needed`` samples, fewer if the buffer holds fewer)
        all follow the suspected change: then it can be decided."""
        return self.suspected is not None and len(newest) >= needed and float(newest.stamp[0]) >= self.suspected

    def decide(self, recent: Batch, library, rows: integral.RowForm, fit_samples: int, noise: torch.Tensor
               ) -> tuple[float, float | None, float]:
        """Decide the suspected change on ``recent`` (:func:`confirm_change`): its stamp, the
        stamp from which data is trusted (None if nothing changed) and the joint fit's RMSE. The
        suspicion stays until :meth:`settle`, so a selection thread can fit while the intake
        watches on without raising a second suspicion of the same jump."""
        stamp = self.suspected
        trusted_from, joint = confirm_change(recent, stamp, library, rows, fit_samples, self.guard(rows), noise)
        return stamp, trusted_from, joint

    def settle(self, trusted_from: float | None) -> None:
        """End the suspicion decided by :meth:`decide`; when nothing changed the detector starts again."""
        self.suspected = None
        if trusted_from is None:
            self.detector.reset()

    def disarm(self) -> None:
        """A change was confirmed: forget the baseline and stop watching the served model."""
        self.detector.reset()
        self.armed = False

    def arm(self) -> None:
        """A new model is served: watch it."""
        self.armed = True
