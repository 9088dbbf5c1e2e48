"""Predicted feed-forward torques keyed by the simulation step they apply to (no ROS).

A predictor answers each reference point with τ_ff stamped for the time it applies to. The
simulator uses, at step k, the answer stamped for t_k (any stamp within half a step of it);
failing that, the newest earlier answer no older than the timeout — the feed-forward torque
varies slowly, so a recent answer beats none — and otherwise none (PD only). Storage is
bounded: answers older than the timeout are dropped as time moves on, and a flood of
future-stamped ones cannot grow it past ``capacity``.
"""

from __future__ import annotations

import bisect
from enum import Enum
from typing import NamedTuple

Torque = tuple[float, ...]


class Use(Enum):
    EXACT = "exact"  # the answer for this very step
    STALE = "stale"  # the newest earlier answer within the timeout
    NONE = "none"  # nothing usable: PD only


class Answer(NamedTuple):
    """What :meth:`FeedForwardBuffer.select` found for a step; ``age`` is how many steps
    before it the used answer was stamped (0 when exact or none)."""

    torque: Torque | None
    use: Use
    age: int = 0


class FeedForwardBuffer:
    """Answers by step index; not thread-safe (the node guards it with its lock)."""

    def __init__(self, step_ns: int, capacity: int = 4096, horizon_steps: int = 5000) -> None:
        if step_ns <= 0 or capacity <= 0 or horizon_steps <= 0:
            raise ValueError("step_ns, capacity and horizon_steps must be positive")
        self._step_ns = step_ns
        self._capacity = capacity
        self._horizon_steps = horizon_steps
        self._torques: dict[int, Torque] = {}
        self._steps: list[int] = []  # sorted keys of _torques

    def __len__(self) -> int:
        return len(self._steps)

    def step_of(self, stamp_ns: int) -> int:
        """The step an answer stamped ``stamp_ns`` applies to (nearest step)."""
        return (stamp_ns + self._step_ns // 2) // self._step_ns

    def add(self, stamp_ns: int, torque: Torque, current_step: int) -> str:
        """Store an answer; returns "" or why it was refused. A repeated stamp replaces the
        earlier answer (the newest model wins)."""
        if stamp_ns < 0:
            return "negative stamp"
        step = self.step_of(stamp_ns)
        if step > current_step + self._horizon_steps:
            return f"stamped {step - current_step} steps ahead, more than {self._horizon_steps}"
        if step not in self._torques:
            bisect.insort(self._steps, step)
        self._torques[step] = torque
        while len(self._steps) > self._capacity:
            del self._torques[self._steps.pop()]  # drop the farthest-future answer
        return ""

    def select(self, step: int, timeout_steps: int) -> Answer:
        """The torque to use at ``step``, and which kind it is; drops answers that can no
        longer be used (older than ``timeout_steps`` before ``step``)."""
        cut = bisect.bisect_left(self._steps, step - timeout_steps)
        for old in self._steps[:cut]:
            del self._torques[old]
        del self._steps[:cut]
        exact = self._torques.get(step)
        if exact is not None:
            return Answer(exact, Use.EXACT)
        earlier = bisect.bisect_right(self._steps, step)
        if earlier > 0:
            stamped = self._steps[earlier - 1]
            return Answer(self._torques[stamped], Use.STALE, step - stamped)
        return Answer(None, Use.NONE)
