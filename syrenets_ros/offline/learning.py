"""Learning from a recording, with no ROS import: the learner node's own core — sample
assembly with its rejection reasons, replay buffer, change detection, coefficient tracking,
refits and held-out selection — driven by a bag or a table instead of a subscription.

The learner is paced by the recording's clock (receive times), so its periods (snapshot
period, training rate) mean what they mean live: a replay makes the decisions the node
would have made on the same stream.
"""

from __future__ import annotations

import dataclasses
import math
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Protocol

import torch

from syrenets_ros.offline.bag import NANOSECONDS, BagError, JointStateBag, estimate_period
from syrenets_ros.offline.table import JointTable
from syrenets_ros.learning.integral import RowForm, regular_steps
from syrenets_ros.online.learner import LEARNER_PARAMETERS, LearnerConfig, OnlineLearner, Publication, Stats
from syrenets_ros.online.rows import Sizes
from syrenets_ros.online.stream import REJECT_REASONS, Batch, JointStateSample, SampleAssembler, StreamChecks
from syrenets_ros.plotting import saved_figure

# The live worker loops continuously, one training step per pass at most. Offline the learner
# is stepped every training period of recording (at most every 0.1 s: fewer, larger ingests
# cost less per sample, and the tracker updates in full blocks).
MAX_STEP_PERIOD = 0.1
PERIOD_PROBE = 1000  # messages used to estimate the sampling period
# Selections when the snapshot period is automatic: on a short recording many (the structure
# search grows the model over several selections: a 4 s recording with viscous damping needed
# one every 0.5 s), on a long one one per refit window, so that the refits tile the recording
# (every sample is in one) and the CPU per recorded second stays bounded (a selection every
# recorded 2.5 s took ~0.33 s CPU at 1 kHz: half the cost of learning 100 s).
SELECTIONS = 40
MIN_SELECTIONS = 10
MIN_SNAPSHOT_PERIOD, MAX_SNAPSHOT_PERIOD = 0.25, 10.0
REPORT_POINTS = 20_000  # samples kept (evenly spread over the recording) for the report
REPORT_BLOCK = 3  # consecutive samples kept together, so each middle one has its neighbours


@dataclass
class Progress:
    """What a progress callback is told, at each step of the learner."""

    messages: int
    total: int
    accepted: int


@dataclass
class OfflineResult:
    publication: Publication
    model: object  # the served model object (TermModel, FrozenSyReNet, ...)
    joint_names: tuple[str, ...]
    period: float
    messages: int
    accepted: int
    rejected: dict[str, int]
    undecodable: int
    stats: Stats
    report: Batch  # accepted samples spread evenly over the recording, for plots
    notes: list[str] = field(default_factory=list)  # what the learner logged (changes, refusals)
    sizes: Sizes | None = None  # the windows and data sizes the learner used, in samples
    rows: RowForm | None = None  # how its integral rows were formed
    snapshot_period: float = math.nan  # recorded seconds between selections


class Recording(Protocol):
    """What the replay needs of a recording (a bag topic or a table)."""

    name: str  # what error messages call it
    message_count: int
    duration: float  # seconds of data
    start: float  # receive time of the first message [s]
    undecodable: int  # messages whose bytes did not decode (counted, skipped)
    measured_acceleration: bool  # its samples carry a measured q̈, not a stream's forward difference

    def period(self) -> float: ...

    def samples(self, assembler: SampleAssembler) -> Iterator[tuple[float, JointStateSample | None]]: ...


@dataclass
class BagRecording:
    """A bag's JointState topic as a :class:`Recording`."""

    bag: JointStateBag
    measured_acceleration: bool = False  # JointState has no acceleration

    @property
    def name(self) -> str:
        return self.bag.topic

    @property
    def message_count(self) -> int:
        return self.bag.message_count

    @property
    def duration(self) -> float:
        return self.bag.duration

    @property
    def start(self) -> float:
        return self.bag.start_time / NANOSECONDS

    @property
    def undecodable(self) -> int:
        return self.bag.undecodable

    def period(self) -> float:
        return bag_period(self.bag)

    def samples(self, assembler: SampleAssembler) -> Iterator[tuple[float, JointStateSample | None]]:
        for received, message in self.bag.timed_messages():
            yield received / NANOSECONDS, assembler.add(message.stamp, message.names, message.position,
                                                        message.velocity, message.effort)


@dataclass
class TableRecording:
    """A table (CSV, NPZ) as a :class:`Recording`: its rows are its messages."""

    table: JointTable
    undecodable: int = 0  # a table's cells are numbers or the table is refused

    @property
    def name(self) -> str:
        return str(self.table.path)

    @property
    def message_count(self) -> int:
        return self.table.rows

    @property
    def measured_acceleration(self) -> bool:
        return self.table.qdd is not None

    @property
    def duration(self) -> float:
        return self.table.duration

    @property
    def start(self) -> float:
        return float(self.table.stamp[0])

    def period(self) -> float:
        period = self.table.period()
        if not math.isfinite(period):
            raise BagError(f"cannot tell the sampling period of {self.name}: no segment has two increasing stamps")
        return period

    def samples(self, assembler: SampleAssembler) -> Iterator[tuple[float, JointStateSample | None]]:
        return self.table.samples(assembler)


def bag_period(bag: JointStateBag) -> float:
    """The joint-state period of the recording, from the stamps of its first messages."""
    stamps = []
    for message in bag:
        stamps.append(message.stamp)
        if len(stamps) >= PERIOD_PROBE:
            break
    period = estimate_period(stamps)
    if not math.isfinite(period):
        raise BagError(f"cannot tell the sampling period of {bag.topic}: fewer than two distinct stamps")
    return period


def auto_snapshot_period(duration: float, sizes: Sizes) -> float:
    """Recorded seconds between selections when not given (see :data:`SELECTIONS`)."""
    per_refit = min(sizes.fit * sizes.period, duration / MIN_SELECTIONS)
    return min(MAX_SNAPSHOT_PERIOD, max(MIN_SNAPSHOT_PERIOD, duration / SELECTIONS, per_refit))


def learn_from_recording(recording: Recording, config: LearnerConfig, period: float | None = None,
                         progress: Callable[[Progress], None] | None = None,
                         log: Callable[[str], None] | None = None, auto_snapshot: bool = False
                         ) -> OfflineResult:
    """Replay the recording through the learner; BagError if too little of it is usable, with
    the unmet condition and its numbers. ``log`` hears what the learner says as it says it;
    ``auto_snapshot``: the config's snapshot period replaced by :func:`auto_snapshot_period`."""
    period = recording.period() if period is None else period
    config = dataclasses.replace(config, joint_state_period=period)
    if auto_snapshot:
        config.snapshot_period = auto_snapshot_period(recording.duration, Sizes.derive(config, period))
    # The node's stream checks, less the stamp-vs-clock one: a recording's stamps are history
    # (and sim-time stamps were recorded against wall receive times).
    position_noise, velocity_noise = LEARNER_PARAMETERS.default("sensor_noise")
    checks = StreamChecks(clock=lambda: math.nan, stamp_tolerance=0.0, position_noise=position_noise,
                          velocity_noise=velocity_noise)
    assembler = SampleAssembler(config.joint_names, period, checks=checks)
    now = [recording.start]
    notes: list[str] = []

    def note(text: str) -> None:
        notes.append(text)
        if log is not None:
            log(text)

    learner = OnlineLearner(config, log=note, clock=lambda: now[0],
                            measured_acceleration=recording.measured_acceleration)
    stride = max(1, math.ceil(recording.message_count / REPORT_POINTS))
    kept: list[JointStateSample] = []
    publication: Publication | None = None
    step_period = min(MAX_STEP_PERIOD, 1.0 / config.max_train_rate) if config.network_enabled else MAX_STEP_PERIOD
    next_step = -math.inf

    def step() -> None:
        nonlocal publication
        learner.observe()
        learner.train_step()
        publication = learner.maybe_select() or publication

    for received, sample in recording.samples(assembler):
        now[0] = received
        if sample is not None:
            learner.buffer.push(sample)
            if (assembler.accepted // REPORT_BLOCK) % stride == 0:  # blocks: central differences inside
                kept.append(sample)
        if now[0] >= next_step:
            next_step = now[0] + step_period
            step()
            if progress is not None:
                progress(Progress(assembler.received, recording.message_count, assembler.accepted))
    learner.observe()
    publication = learner.select_now() or publication
    rejected = {reason: assembler.rejected[reason] for reason in REJECT_REASONS if assembler.rejected[reason]}
    if publication is None:
        reasons = ", ".join(f"{n} {r}" for r, n in rejected.items()) or "none rejected"
        why = learner.waiting or "no candidate model was plausible"
        raise BagError(f"no model from {recording.name}: {why} ({assembler.received} messages gave "
                       f"{assembler.accepted} samples; rejected: {reasons}; period {period:.6g} s, joints "
                       f"{','.join(config.joint_names)})"
                       + ("; a message needs position, velocity and effort of every joint" if "malformed" in rejected
                          else ""))
    return OfflineResult(publication, learner.served, tuple(config.joint_names), period, assembler.received,
                         assembler.accepted, rejected, recording.undecodable,
                         learner.stats, Batch.from_samples(kept), notes, learner.sizes, learner.rows,
                         config.snapshot_period)


def learn_from_bag(bag: JointStateBag, config: LearnerConfig, period: float | None = None,
                   progress: Callable[[Progress], None] | None = None) -> OfflineResult:
    """Replay a bag's JointState topic through the learner (:func:`learn_from_recording`)."""
    return learn_from_recording(BagRecording(bag), config, period, progress)


def report_residuals(result: OfflineResult) -> tuple[Batch, torch.Tensor]:
    """The report samples and the served model's predicted minus measured torque on them,
    (B, n). Data from before a detected change is included, so it shows there. Per sample,
    q̈ is the record's own for acceleration rows; for the other forms the record's q̈ is a
    forward difference it does not obey, and the central difference of q̇ (samples with both
    neighbours kept) is the best per-sample estimate."""
    batch = result.report
    if result.rows is not None and result.rows.form != "acceleration" and len(batch) > 2:
        regular = regular_steps(batch.stamp, result.period)
        inner = torch.zeros(len(batch), dtype=torch.bool)
        inner[1:-1] = regular[:-1] & regular[1:]
        qdd = RowForm("central").acceleration(batch.stamp, batch.qd, batch.qdd)
        batch = Batch(batch.stamp[inner], batch.q[inner], batch.qd[inner], qdd[inner], batch.tau[inner])
    with torch.no_grad():
        return batch, result.model.torque(batch.q, batch.qd, batch.qdd) - batch.tau


def plot_report(result: OfflineResult, path: Path, title: str = "") -> Path:
    """PNG: measured vs predicted torque over the recording per joint, and the residual
    histogram, with the change detections marked."""
    batch, residual = report_residuals(result)
    names = result.joint_names
    origin = float(batch.stamp.min())
    t = (batch.stamp - origin).numpy()
    with saved_figure(path, 100, len(names) + 1, 1, figsize=(11, 3.2 * (len(names) + 1))) as (fig, axes):
        for j, (ax, name) in enumerate(zip(axes, names)):
            # Points, not lines: a recording may hold restarts and reordered stamps.
            ax.plot(t, batch.tau[:, j].numpy(), ".", ms=1.5, label="measured (effort)")
            ax.plot(t, (batch.tau[:, j] + residual[:, j]).numpy(), ".", ms=1.0, label="predicted (learned model)")
            for k, stamp in enumerate(result.stats.change_stamps):
                ax.axvline(stamp - origin, color="red", ls=":", label="change detected" if k == 0 else None)
            ax.set_ylabel(f"τ {name} [N·m]")
            ax.grid(alpha=0.3)
            ax.legend(loc="upper right", fontsize=8, markerscale=8)
        axes[len(names) - 1].set_xlabel("stamp − earliest stamp [s]")
        ax = axes[-1]
        for j, name in enumerate(names):
            ax.hist(residual[:, j].numpy(), bins=100, alpha=0.6, label=name)
        rmse = float(residual.square().mean().sqrt())
        ax.set_xlabel(f"predicted − measured torque [N·m]  (RMSE over the recording {rmse:.3g})")
        ax.set_ylabel("samples")
        ax.legend(fontsize=8)
        if title:
            fig.suptitle(textwrap.shorten(title, 600), fontsize=8, wrap=True)
    return path
