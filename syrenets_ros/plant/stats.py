"""Counters of the simulator's step loop (no ROS); the node reports them on /diagnostics."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class SimStats:
    """Counters of the step loop; windows restart at each diagnostics report."""

    late_steps: int = 0
    schedule_slips: int = 0
    paced_steps: int = 0
    pd_only: int = 0
    predictions_received: int = 0
    predictions_rejected: int = 0
    predictions_too_late: int = 0
    rebuild_failures: int = 0
    parameter_version: int = 0
    window_squared_error: float = 0.0
    window_steps: int = 0
    window_feedforward: int = 0
    window_late: int = 0
    window_paced: int = 0
    window_wall_start: float = 0.0
    window_first_step: int = 0
    last_rejection: str = ""
