"""Stream plumbing for online learning, with no ROS import: turning a joint-state stream into
(q, q̇, q̈, τ) samples and a bounded replay buffer.

The stream is untrusted: anything malformed, reordered, with a gap, stamped away from the
node's clock or from the stream's own timeline, or kinematically impossible is skipped and
counted by reason, and never reaches the buffer. (A publisher that forges well-formed,
consistent states is stopped only by DDS security, SROS2: see the README's threat model.)
"""

from __future__ import annotations

import math
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from syrenets_ros.learning import integral

# Reasons a joint-state message does not become a sample; counted and reported.
REJECT_REASONS = (
    "malformed",  # wrong lengths, missing fields
    "non_finite",
    "missing_joint",  # a joint we learn is not in the message (extra joints are ignored)
    "duplicate_stamp",
    "out_of_order",
    "gap",  # a dropped message between two states: q̈ would be wrong
    "time_reset",  # stamps jumped back a lot: a new run (e.g. sim restarted)
    "off_clock",  # stamp further from the node's clock than the tolerance: forged or stale
    "off_timeline",  # a jump from the stream's timeline the clock does not confirm: forged ahead/behind
    "inconsistent_kinematics",  # q_{k+1} − q_k disagrees with Δt·q̇ beyond the noise
)
# Standard deviations of honest sensor noise within which kinematic consistency holds.
KINEMATIC_SIGMAS = 6.0
# Round-off allowance of the kinematic check [rad] (noise-free data).
KINEMATIC_FLOOR = 1e-9
# A live stream's stamps move as the node's clock does: after a jump (a gap, a restart) the new
# timeline is taken only if, from the last state to the jump, the stamps moved by what the clock
# moved, within this [s] (queue latency changing), or once the old timeline stayed silent for
# ``reset_after`` of the clock. A state stamped ahead of (or behind) the live stream, inside
# stamp_tolerance, would otherwise move the timeline and make the honest states after it "out
# of order" (issue 23: one forged state every 0.9 s cut accepted samples from 591/s to 6/s).
TIMELINE_LEAD = 0.1


@dataclass(frozen=True)
class StreamChecks:
    """Plausibility of a live stream. ``clock``: the node's time in seconds (sim time under
    use_sim_time); a state whose stamp is more than ``stamp_tolerance`` seconds from it is
    refused (0: no stamp check). ``position_noise``/``velocity_noise``: the sensor noise
    σ_q [rad], σ_q̇ [rad/s] that honest data may carry; they size the kinematic tolerance."""

    clock: Callable[[], float]
    stamp_tolerance: float
    position_noise: float
    velocity_noise: float

    @property
    def live(self) -> bool:
        """A stream with a clock to judge it by (recordings have none: stamp_tolerance 0)."""
        return self.stamp_tolerance > 0

    def on_clock(self, stamp: float, now: float) -> bool:
        """``now``: the node's clock (``clock()``), read once per state."""
        return not self.live or abs(stamp - now) <= self.stamp_tolerance

    def kinematic_tolerance(self, dt: float, qd_change: float) -> float:
        """Bound on |q_{k+1} − q_k − Δt(q̇_k + q̇_{k+1})/2|. The trapezoid is exact to O(Δt³)
        for smooth motion; explicit and semi-implicit Euler (Bullet) differ from it by
        Δt/2·|Δq̇|; each difference carries √2 times the noise of its terms."""
        noise = math.sqrt(2.0) * (self.position_noise + dt * self.velocity_noise)
        return 0.5 * dt * qd_change + KINEMATIC_SIGMAS * noise + KINEMATIC_FLOOR


@dataclass(frozen=True)
class JointStateSample:
    """One Euler–Lagrange sample; τ is the torque applied between the two states."""

    stamp: float
    q: tuple[float, ...]
    qd: tuple[float, ...]
    qdd: tuple[float, ...]
    tau: tuple[float, ...]


@dataclass
class _State:
    stamp: float
    q: tuple[float, ...]
    qd: tuple[float, ...]
    tau: tuple[float, ...]


@dataclass
class _Candidate:
    """States continuing each other off the stream's timeline, waiting to be confirmed."""

    head: _State
    jump: float  # its first stamp − the timeline's newest [s]
    reason: str  # what its first state counts as once it is the timeline ("gap", "time_reset", "out_of_order")


class SampleAssembler:
    """Forms samples from consecutive joint states of the same run.

    q̈ is the forward difference of q̇ over the stamped Δt, τ the first state's effort
    (the sim publishes, with each state, the torque applied during the following step).
    With ``checks`` (a live stream; recordings have no clock to agree with), states off the
    clock or kinematically inconsistent are refused too, and a live stream's timeline moves
    to a jump (a gap, a restart) only when the jump is confirmed (see TIMELINE_LEAD): a forged
    state stamped ahead neither becomes a sample nor makes the honest ones after it "out of
    order". ``missing`` estimates the states lost in gaps (dropped by the transport or the queue).
    """

    def __init__(self, joint_names: Sequence[str], period: float, gap_tolerance: float = 0.5,
                 reset_after: float = 1.0, checks: StreamChecks | None = None) -> None:
        if period <= 0 or not math.isfinite(period):
            raise ValueError(f"period must be a positive finite number, got {period!r}")
        self.joint_names = tuple(joint_names)
        self.period = period
        self.gap_tolerance = gap_tolerance
        self.reset_after = reset_after
        self.checks = checks
        self.rejected: Counter[str] = Counter()
        self.accepted = 0
        self.received = 0
        self.missing = 0
        self._previous: _State | None = None
        self._previous_clock = math.nan  # node clock when the previous state was taken
        # At most one candidate timeline whose jump moved with the clock and one that did not, so
        # that states forged beside an honest jump (a gap) cannot displace it.
        self._candidates: dict[bool, _Candidate] = {}

    def _parse(self, names: Sequence[str], position: Sequence[float], velocity: Sequence[float],
               effort: Sequence[float]) -> tuple[tuple[float, ...], ...] | str:
        count = len(names)
        if count == 0 or len(set(names)) != count or any(len(a) != count for a in (position, velocity, effort)):
            return "malformed"
        index = {name: i for i, name in enumerate(names)}
        # A robot publishes all its joints; only the learned ones must be present.
        if not all(name in index for name in self.joint_names):
            return "missing_joint"
        order = [index[name] for name in self.joint_names]
        fields = tuple(tuple(float(values[i]) for i in order) for values in (position, velocity, effort))
        if not all(math.isfinite(v) for values in fields for v in values):
            return "non_finite"
        return fields

    def add(self, stamp: float, names: Sequence[str], position: Sequence[float],
            velocity: Sequence[float], effort: Sequence[float]) -> JointStateSample | None:
        """Feed one message; returns a sample when this message completes one."""
        self.received += 1
        if not math.isfinite(stamp):
            return self._reject("non_finite")
        parsed = self._parse(names, position, velocity, effort)
        if isinstance(parsed, str):
            return self._reject(parsed)
        now = self.checks.clock() if self.checks else math.nan
        if self.checks and not self.checks.on_clock(stamp, now):
            return self._reject("off_clock")
        current = _State(stamp, *parsed)
        previous = self._previous
        if previous is None:
            self._take(current, now)
            return None
        dt = current.stamp - previous.stamp
        if dt == 0.0:
            return self._reject("duplicate_stamp")
        if not self._continues(previous, dt):
            return self._off_timeline(current, dt, now)
        self._candidates.clear()  # the timeline goes on: whatever jumped away from it was not the stream
        self._take(current, now)
        return self._sample(previous, current, dt)

    def _continues(self, previous: _State, dt: float) -> bool:
        return abs(dt - self.period) <= self.gap_tolerance * self.period

    def _take(self, state: _State, now: float) -> None:
        self._previous, self._previous_clock = state, now

    def _sample(self, previous: _State, current: _State, dt: float) -> JointStateSample | None:
        if self.checks and not self._kinematically_consistent(previous, current, dt):
            return self._reject("inconsistent_kinematics")
        self.accepted += 1
        qdd = tuple((b - a) / dt for a, b in zip(previous.qd, current.qd))
        return JointStateSample(previous.stamp, previous.q, previous.qd, qdd, previous.tau)

    def _jump(self, dt: float) -> str:
        return ("gap" if dt > 0 else "out_of_order" if -dt < self.reset_after else "time_reset")

    def _count_missing(self, dt: float) -> None:
        if 0 < dt < self.reset_after:  # longer: a pause or a new run, not lost states
            self.missing += max(0, round(dt / self.period) - 1)

    def _off_timeline(self, current: _State, dt: float, now: float) -> JointStateSample | None:
        """A state that does not continue the timeline. A recording (no clock) takes a gap or a
        reset at once. A live stream keeps it as a candidate that states continuing it extend
        and that becomes the timeline once confirmed; the honest stream continuing the
        timeline drops it."""
        reason = self._jump(dt)
        if not (self.checks and self.checks.live):
            if reason != "out_of_order":
                self._count_missing(dt)
                self._take(current, now)
            return self._reject(reason)
        for candidate in self._candidates.values():
            step = current.stamp - candidate.head.stamp
            if not (self._continues(candidate.head, step) and
                    self._kinematically_consistent(candidate.head, current, step)):
                continue
            head, candidate.head = candidate.head, current
            if not self._confirmed(candidate.head.stamp, now):
                return self._reject("off_timeline")
            self._candidates.clear()
            if candidate.reason != "out_of_order":  # its first state counted off_timeline until now
                self.rejected["off_timeline"] -= 1
                self.rejected[candidate.reason] += 1
            self._count_missing(candidate.jump)
            self._take(current, now)
            return self._sample(head, current, step)
        self._candidates[self._moves_with_clock(current.stamp, now)] = _Candidate(current, dt, reason)
        return self._reject("out_of_order" if reason == "out_of_order" else "off_timeline")

    def _moves_with_clock(self, stamp: float, now: float) -> bool:
        """From the timeline's newest state to ``stamp`` the stamps moved as far as the clock."""
        return abs((stamp - self._previous.stamp) - (now - self._previous_clock)) <= TIMELINE_LEAD

    def _confirmed(self, stamp: float, now: float) -> bool:
        """A candidate reaching ``stamp`` moved with the clock (a gap, a restart of sim time), or
        the old timeline has been silent for ``reset_after`` of the clock."""
        return self._moves_with_clock(stamp, now) or abs(now - self._previous_clock) >= self.reset_after

    def restart(self) -> None:
        """Forget the previous state: the next message starts a new run (a recording's next
        segment), so no sample spans two runs."""
        self._previous = None
        self._candidates.clear()

    def add_measured(self, stamp: float, position: Sequence[float], velocity: Sequence[float],
                     acceleration: Sequence[float], effort: Sequence[float]) -> JointStateSample | None:
        """One sample from a record that carries q̈ itself (a table): checked like a message
        (finite, stamped after the previous row of its run), and complete on its own."""
        self.received += 1
        values = (position, velocity, acceleration, effort)
        if any(len(v) != len(self.joint_names) for v in values):
            return self._reject("malformed")
        fields = tuple(tuple(float(x) for x in v) for v in values)
        if not math.isfinite(stamp) or not all(math.isfinite(x) for v in fields for x in v):
            return self._reject("non_finite")
        previous = self._previous
        if previous is not None and stamp <= previous.stamp:
            return self._reject("duplicate_stamp" if stamp == previous.stamp else "out_of_order")
        self._previous = _State(stamp, fields[0], fields[1], fields[3])
        self.accepted += 1
        return JointStateSample(stamp, *fields)

    def _kinematically_consistent(self, previous: _State, current: _State, dt: float) -> bool:
        for q0, q1, v0, v1 in zip(previous.q, current.q, previous.qd, current.qd):
            residual = q1 - q0 - 0.5 * dt * (v0 + v1)
            if abs(residual) > self.checks.kinematic_tolerance(dt, abs(v1 - v0)):
                return False
        return True

    def _reject(self, reason: str) -> None:
        self.rejected[reason] += 1
        return None


@dataclass
class Batch:
    """Column tensors of a set of samples, shape (B, n) each, stamps (B,)."""

    stamp: torch.Tensor
    q: torch.Tensor
    qd: torch.Tensor
    qdd: torch.Tensor
    tau: torch.Tensor

    def __len__(self) -> int:
        return int(self.stamp.shape[0])

    def slice(self, start: int, stop: int) -> "Batch":
        return Batch(*(t[start:stop] for t in (self.stamp, self.q, self.qd, self.qdd, self.tau)))

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> "Batch":
        return Batch(*(t.to(device=device, dtype=dtype or t.dtype) for t in
                       (self.stamp, self.q, self.qd, self.qdd, self.tau)))

    @staticmethod
    def from_samples(samples: Sequence[JointStateSample], dtype: torch.dtype = torch.float64) -> "Batch":
        def column(attr: str) -> torch.Tensor:
            return torch.tensor([getattr(s, attr) for s in samples], dtype=dtype)

        return Batch(column("stamp"), column("q"), column("qd"), column("qdd"), column("tau"))


class ReplayBuffer:
    """Bounded, thread-safe buffer of samples in arrival (= time) order.

    Producers (subscription callbacks) only append to a pending queue; the learner's intake
    moves pending samples into preallocated tensors, while selection reads them from another
    thread: one lock guards both. When the intake did not run for ``max_lag`` seconds while
    more than ``max_lag`` seconds of stream waited (a starved CPU), the oldest pending samples
    are dropped and counted (``dropped_behind``), so what the learner sees stays current
    (issue 20).
    """

    def __init__(self, capacity: int, n_joints: int, dtype: torch.dtype = torch.float64,
                 max_lag: float = math.inf) -> None:
        if capacity < 2:
            raise ValueError("capacity must be at least 2")
        self.capacity = capacity
        self.max_lag = max_lag
        self._data = torch.zeros(capacity, 1 + 4 * n_joints, dtype=dtype)
        self._n = n_joints
        self._start = 0  # logical index of the oldest kept sample
        self._end = 0  # logical index one past the newest
        self._pending: deque[JointStateSample] = deque()
        self._pending_since = math.inf  # monotonic time the oldest waiting sample was handed over
        self._lock = threading.RLock()
        self.total_added = 0
        self.dropped_behind = 0  # pending samples dropped because the intake fell behind
        self.newest_pushed = math.nan  # stamp of the newest sample handed over
        self.newest_ingested = math.nan  # ... and of the newest moved into the buffer

    def push(self, sample: JointStateSample) -> None:
        with self._lock:
            if not self._pending:
                self._pending_since = time.monotonic()
            self._pending.append(sample)
            self.newest_pushed = sample.stamp

    @property
    def lag(self) -> float:
        """Seconds of stream handed over but not yet in the buffer (0 when caught up)."""
        with self._lock:
            if not self._pending:
                return 0.0
            processed = self.newest_ingested if not math.isnan(self.newest_ingested) else self._pending[0].stamp
            return self.newest_pushed - processed

    def _drain(self) -> list[JointStateSample]:
        with self._lock:
            pending = list(self._pending)
            self._pending.clear()
            # Behind = the oldest waiting sample waited longer than max_lag (wall) for an intake
            # that did not run, not merely a long span of stamps: a burst faster than real time
            # (the start-up backlog, a replay) is caught up, not dropped.
            waited = time.monotonic() - self._pending_since
            if pending and waited > self.max_lag and pending[-1].stamp - pending[0].stamp > self.max_lag:
                oldest_kept = pending[-1].stamp - self.max_lag
                behind = next(i for i, s in enumerate(pending) if s.stamp >= oldest_kept)
                self.dropped_behind += behind
                pending = pending[behind:]
            if pending:
                rows = torch.tensor([(s.stamp, *s.q, *s.qd, *s.qdd, *s.tau) for s in pending], dtype=self._data.dtype)
                slots = torch.arange(self._end, self._end + len(pending)) % self.capacity
                self._data[slots[-self.capacity:]] = rows[-self.capacity:]
                self._end += len(pending)
                self._start = max(self._start, self._end - self.capacity)
                self.total_added += len(pending)
                self.newest_ingested = pending[-1].stamp
        return pending

    def ingest(self) -> Batch | None:
        """Move pending samples into the buffer; returns them as a batch (None if none)."""
        new = self._drain()
        return Batch.from_samples(new, self._data.dtype) if new else None

    def __len__(self) -> int:
        with self._lock:
            return self._end - self._start

    def _rows(self, logical: torch.Tensor) -> Batch:
        with self._lock:
            rows = self._data[logical % self.capacity]
        n = self._n
        return Batch(rows[:, 0], rows[:, 1:1 + n], rows[:, 1 + n:1 + 2 * n],
                     rows[:, 1 + 2 * n:1 + 3 * n], rows[:, 1 + 3 * n:1 + 4 * n])

    def newest(self, count: int, skip_newest: int = 0) -> Batch:
        """The `count` newest samples after leaving out the `skip_newest` newest."""
        with self._lock:
            end = max(self._start, self._end - skip_newest)
            start = max(self._start, end - count)
            return self._rows(torch.arange(start, end))

    def sample(self, batch_size: int, generator: torch.Generator, recent_fraction: float = 0.5,
               recent_window: int = 2000, exclude_newest: int = 0) -> Batch:
        """Minibatch favouring recent data: `recent_fraction` of it from the newest
        `recent_window` samples, the rest uniform over the buffer; the `exclude_newest`
        samples are held out."""
        with self._lock:
            return self._sample(batch_size, generator, recent_fraction, recent_window, exclude_newest)

    def _sample(self, batch_size: int, generator: torch.Generator, recent_fraction: float, recent_window: int,
                exclude_newest: int) -> Batch:
        end = self._end - exclude_newest
        available = end - self._start
        if available <= 0:
            raise ValueError("buffer holds no samples to draw from")
        n_recent = int(round(batch_size * recent_fraction))
        window = min(recent_window, available)
        recent = end - 1 - torch.randint(window, (n_recent,), generator=generator)
        uniform = self._start + torch.randint(available, (batch_size - n_recent,), generator=generator)
        return self._rows(torch.cat((recent, uniform)))

    def sample_windows(self, count: int, window: int, generator: torch.Generator, recent_fraction: float = 0.5,
                       recent_window: int = 2000, exclude_newest: int = 0, attempts: int = 4) -> Batch | None:
        """``count`` runs of ``window`` consecutive, gap-free samples, one after the other (for
        integral rows, SPEC §2b); each run lies within the newest ``recent_window`` samples
        with probability ``recent_fraction``, else anywhere; the ``exclude_newest`` samples are
        held out. A run across a gap (dropped messages, a change) is drawn again, ``attempts``
        times at most; None when no gap-free run was found."""
        with self._lock:
            return self._sample_windows(count, window, generator, recent_fraction, recent_window, exclude_newest,
                                        attempts)

    def _sample_windows(self, count: int, window: int, generator: torch.Generator, recent_fraction: float,
                        recent_window: int, exclude_newest: int, attempts: int) -> Batch | None:
        end = self._end - exclude_newest
        possible = end - self._start - window + 1  # start positions
        if possible <= 0:
            return None
        offsets = torch.arange(window)
        kept: list[torch.Tensor] = []
        for _ in range(attempts):
            wanted = count - sum(len(k) for k in kept)
            if wanted <= 0:
                break
            recent = torch.rand(wanted, generator=generator) < recent_fraction
            back = torch.where(recent, torch.randint(min(recent_window, possible), (wanted,), generator=generator),
                               torch.randint(possible, (wanted,), generator=generator))
            logical = (end - window - back)[:, None] + offsets
            stamps = self._data[logical % self.capacity, 0]
            steps = stamps[:, 1:] - stamps[:, :-1]
            period = float(steps.median())
            clean = ((steps - period).abs() <= 0.5 * period).all(1)
            kept.append(logical[clean])
        logical = torch.cat(kept)[:count]
        return self._rows(logical.reshape(-1)) if len(logical) else None

    def drop_before(self, stamp: float) -> int:
        """Forget samples older than `stamp` (data from before a detected change)."""
        dropped = 0
        with self._lock:
            while self._start < self._end and float(self._data[self._start % self.capacity, 0]) < stamp:
                self._start += 1
                dropped += 1
        return dropped


class WindowCutter:
    """Cuts the sample stream into consecutive, non-overlapping, gap-free integral windows
    (SPEC §2b) for tracking and change detection; a partial window waits for more samples."""

    def __init__(self, window: int) -> None:
        if window < 2:
            raise ValueError("an integral window needs at least 2 samples")
        self.window = window
        self._pending: Batch | None = None

    def reset(self) -> None:
        self._pending = None

    def push(self, new: Batch) -> list[Batch]:
        """Add samples (time order); returns the windows they complete. After a gap the next
        window starts at the first sample after it."""
        batch = new if self._pending is None else Batch(*(torch.cat(pair) for pair in zip(
            (self._pending.stamp, self._pending.q, self._pending.qd, self._pending.qdd, self._pending.tau),
            (new.stamp, new.q, new.qd, new.qdd, new.tau))))
        period = integral.sample_period(batch.stamp)
        steps = batch.stamp[1:] - batch.stamp[:-1]
        gaps = (torch.nonzero((steps - period).abs() > 0.5 * period)[:, 0] + 1).tolist() if math.isfinite(period) else []
        windows, position = [], 0
        while position + self.window <= len(batch):
            inside = [g for g in gaps if position < g < position + self.window]
            if inside:
                position = inside[-1]
                continue
            windows.append(batch.slice(position, position + self.window))
            position += self.window
        self._pending = batch.slice(position, len(batch))
        return windows
