"""Change detection on the served model's torque residual (no ROS): when the residual jumps and
stays up, the system changed and pre-change data must go."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


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
