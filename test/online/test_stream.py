"""Stream plumbing: sample assembly from joint states, replay buffer, change detection."""

import math

import pytest
import torch

from syrenets_ros.dynamics import pendulum
from syrenets_ros.online.change import ChangeDetector
from syrenets_ros.online.stream import Batch, JointStateSample, ReplayBuffer, SampleAssembler

NAMES = ("joint1", "joint2")
DT = 0.001


def _feed(assembler, stamp, names=NAMES, q=(0.1, 0.2), qd=(1.0, 2.0), tau=(3.0, 4.0)):
    return assembler.add(stamp, list(names), list(q), list(qd), list(tau))


def test_consecutive_states_form_forward_difference_samples():
    assembler = SampleAssembler(NAMES, DT)
    assert _feed(assembler, 0.0, qd=(1.0, 2.0), tau=(5.0, 6.0)) is None
    sample = _feed(assembler, DT, qd=(1.5, 1.0), tau=(7.0, 8.0))
    assert sample.stamp == 0.0
    assert sample.tau == (5.0, 6.0), "τ is the first state's effort (applied during the step)"
    assert sample.qdd == pytest.approx((500.0, -1000.0))
    assert assembler.accepted == 1


def test_joints_are_matched_by_name_not_position():
    assembler = SampleAssembler(NAMES, DT)
    _feed(assembler, 0.0, names=("joint2", "joint1"), q=(0.2, 0.1), qd=(2.0, 1.0), tau=(4.0, 3.0))
    sample = _feed(assembler, DT)
    assert sample.q == (0.1, 0.2) and sample.qd == (1.0, 2.0) and sample.tau == (3.0, 4.0)


def test_joints_that_are_not_learned_are_ignored():
    """A robot publishes all its joints; the learner picks its own by name."""
    assembler = SampleAssembler(NAMES, DT)
    _feed(assembler, 0.0, names=("gripper", "joint2", "joint1"), q=(9.0, 0.2, 0.1), qd=(9.0, 2.0, 1.0),
          tau=(9.0, 4.0, 3.0))
    sample = _feed(assembler, DT, names=("joint1", "joint2", "gripper"), q=(0.1, 0.2, 9.0), qd=(1.0, 2.0, 9.0),
                   tau=(3.0, 4.0, 9.0))
    assert sample.q == (0.1, 0.2) and sample.qd == (1.0, 2.0) and sample.tau == (3.0, 4.0)
    assert sample.qdd == (0.0, 0.0) and not assembler.rejected


@pytest.mark.parametrize("kwargs, reason", [
    (dict(q=(math.nan, 0.0)), "non_finite"),
    (dict(tau=(math.inf, 0.0)), "non_finite"),
    (dict(names=("joint1", "elbow")), "missing_joint"),
    (dict(names=("joint1",), q=(0.0,), qd=(0.0,), tau=(0.0,)), "missing_joint"),
    (dict(q=(0.0,)), "malformed"),
    (dict(names=("joint1", "joint1")), "malformed"),
])
def test_bad_messages_are_counted_and_do_not_break_the_stream(kwargs, reason):
    assembler = SampleAssembler(NAMES, DT)
    _feed(assembler, 0.0)
    assert _feed(assembler, DT, **kwargs) is None
    assert assembler.rejected[reason] == 1
    # The bad message did not replace the previous good state: the next one pairs with it
    # only if contiguous, so a state 2·Δt later is a gap, and then the stream resumes.
    assert _feed(assembler, 2 * DT) is None and assembler.rejected["gap"] == 1
    assert _feed(assembler, 3 * DT) is not None


def test_reordering_duplicates_gaps_and_restarts():
    assembler = SampleAssembler(NAMES, DT)
    _feed(assembler, 1.0)
    assert _feed(assembler, 1.0) is None and assembler.rejected["duplicate_stamp"] == 1
    assert _feed(assembler, 1.0 - DT) is None and assembler.rejected["out_of_order"] == 1
    assert _feed(assembler, 1.0 + 3 * DT) is None and assembler.rejected["gap"] == 1
    assert _feed(assembler, 1.0 + 4 * DT) is not None
    assert _feed(assembler, 0.0) is None and assembler.rejected["time_reset"] == 1
    assert _feed(assembler, DT) is not None, "a new run pairs with its own first state"
    assert assembler.received == 7 and assembler.accepted == 2


def _samples(count, start=0.0):
    gen = torch.Generator().manual_seed(0)
    assembler = SampleAssembler(NAMES, DT)
    out = []
    for k in range(count + 1):
        s = _feed(assembler, start + k * DT, q=torch.rand(2, generator=gen).tolist(),
                  qd=torch.rand(2, generator=gen).tolist(), tau=torch.rand(2, generator=gen).tolist())
        if s is not None:
            out.append(s)
    return out


def test_replay_buffer_is_bounded_and_keeps_the_newest():
    buffer = ReplayBuffer(capacity=50, n_joints=2)
    samples = _samples(120)
    for s in samples:
        buffer.push(s)
    new = buffer.ingest()
    assert len(new) == 120 and len(buffer) == 50
    newest = buffer.newest(50)
    assert torch.equal(newest.stamp, Batch.from_samples(samples[-50:]).stamp)
    assert buffer.ingest() is None


def test_minibatches_favour_recent_data_and_respect_holdout():
    buffer = ReplayBuffer(capacity=10_000, n_joints=2)
    for s in _samples(5000):
        buffer.push(s)
    buffer.ingest()
    gen = torch.Generator().manual_seed(1)
    batch = buffer.sample(1000, gen, recent_fraction=0.5, recent_window=500, exclude_newest=100)
    newest_allowed = buffer.newest(1, skip_newest=100).stamp.item()
    assert batch.stamp.max().item() <= newest_allowed
    recent_cut = buffer.newest(500, skip_newest=100).stamp.min().item()
    share_recent = (batch.stamp >= recent_cut).double().mean().item()
    assert share_recent > 0.5, "about half from the recent window plus its share of the uniform half"


def test_training_windows_are_consecutive_gap_free_and_respect_holdout():
    """Integral rows need runs of consecutive samples: a run never spans a gap (here 40 lost
    states in the middle) and never reaches into the held-out newest samples."""
    buffer = ReplayBuffer(capacity=10_000, n_joints=2)
    samples = _samples(3000)
    for s in samples[:1500] + samples[1540:]:
        buffer.push(s)
    buffer.ingest()
    gen = torch.Generator().manual_seed(2)
    batch = buffer.sample_windows(400, 10, gen, recent_fraction=0.5, recent_window=200, exclude_newest=100)
    runs = batch.stamp.reshape(400, 10)
    steps = runs[:, 1:] - runs[:, :-1]
    assert torch.allclose(steps, torch.full_like(steps, DT)), "each run is consecutive, none across the gap"
    assert batch.stamp.max().item() <= buffer.newest(1, skip_newest=100).stamp.item()
    assert (runs[:, 0] < 1.5).any() and (runs[:, 0] > 1.54).any(), "runs come from both sides of the gap"
    recent_cut = buffer.newest(200, skip_newest=100).stamp.min().item()
    assert (runs[:, 0] >= recent_cut).double().mean().item() > 0.4


def test_training_windows_need_one_whole_run():
    buffer = ReplayBuffer(capacity=1000, n_joints=2)
    for s in _samples(60):
        buffer.push(s)
    buffer.ingest()
    gen = torch.Generator().manual_seed(0)
    assert buffer.sample_windows(4, 50, gen, exclude_newest=20) is None
    assert len(buffer.sample_windows(4, 40, gen, exclude_newest=20)) == 160


def test_drop_before_forgets_pre_change_data():
    buffer = ReplayBuffer(capacity=1000, n_joints=2)
    for s in _samples(300):
        buffer.push(s)
    buffer.ingest()
    assert buffer.drop_before(0.2) == 200
    assert len(buffer) == 100 and buffer.newest(100).stamp.min().item() >= 0.2


def test_change_detector_fires_on_a_sustained_jump_only():
    detector = ChangeDetector(window=50, ratio=10.0, hold=2, floor=1e-6)
    stamps = torch.arange(2000) * DT
    quiet = torch.full((2000,), 1e-3)
    assert detector.update(stamps, quiet) is None
    blip = quiet.clone()
    blip[100:140] = 1.0  # shorter than two windows: one window high at most
    assert detector.update(stamps + 2.0, blip) is None
    jump = quiet.clone()
    jump[1000:] = 1.0
    detected = detector.update(stamps + 4.0, jump)
    assert detected == pytest.approx(4.0 + 1000 * DT)
    assert detector.detections == 1


def test_change_detector_learns_on_physical_residuals():
    """Residual of the old model on data after a mass swap triggers; before it does not."""
    gen = torch.Generator().manual_seed(2)
    q, qd, qdd = [(torch.rand(4000, 2, generator=gen, dtype=torch.float64) - 0.5) * 3 for _ in range(3)]
    before, after = pendulum.PendulumParams(), pendulum.PendulumParams(m2=2.0, l2=1.2)
    model = pendulum.inverse_dynamics(q, qd, qdd, before)
    truth = torch.cat((model[:2000], pendulum.inverse_dynamics(q[2000:], qd[2000:], qdd[2000:], after)))
    noisy = truth + 0.01 * torch.randn(truth.shape, generator=gen, dtype=torch.float64)
    residual = (noisy - model).square().mean(-1)
    detector = ChangeDetector(window=100)
    assert detector.update(torch.arange(4000) * DT, residual) == pytest.approx(2.0)


def test_window_cutter_emits_whole_gap_free_windows_across_pushes():
    from syrenets_ros.online.stream import WindowCutter

    def batch(steps):
        t = torch.tensor(list(steps), dtype=torch.float64) * DT
        column = torch.zeros(len(t), 2, dtype=torch.float64)
        return Batch(t, column, column, column, column)

    def first_steps(windows):
        assert all(len(w) == 100 for w in windows)
        return [round(float(w.stamp[0]) / DT) for w in windows]

    cutter = WindowCutter(100)
    assert first_steps(cutter.push(batch(range(0, 150)))) == [0]
    assert first_steps(cutter.push(batch(range(150, 260)))) == [100]
    # A gap (steps 260..399 never arrived): the partial window before it is dropped and the
    # next window starts right after it, even across pushes.
    assert first_steps(cutter.push(batch(range(400, 480)))) == []
    assert first_steps(cutter.push(batch(range(480, 620)))) == [400, 500]


def test_the_buffer_says_how_far_behind_the_stream_it_is():
    """lag: stamps handed over but not yet moved into the buffer (the learner's /diagnostics
    lag_s), 0 once it caught up."""
    buffer = ReplayBuffer(100, 2)
    assert buffer.lag == 0.0
    for k in range(5):
        buffer.push(JointStateSample(k * 0.5, (0.0, 0.0), (0.0, 0.0), (0.0, 0.0), (0.0, 0.0)))
    assert buffer.lag == 2.0  # nothing ingested yet: from the first handed-over stamp
    buffer.ingest()
    assert buffer.lag == 0.0
    buffer.push(JointStateSample(3.0, (0.0, 0.0), (0.0, 0.0), (0.0, 0.0), (0.0, 0.0)))
    assert buffer.lag == 1.0


def test_a_starved_intake_drops_the_oldest_unprocessed_samples_and_counts_them():
    """When the intake did not run for max_lag while more than max_lag of stream waited, the
    oldest pending samples are dropped (counted), so what the learner reads next is the newest
    stream, not a backlog (issue 20); a burst faster than real time (the start-up backlog) that
    the intake takes at once is caught up, not dropped."""
    import time

    buffer = ReplayBuffer(10_000, 2, max_lag=0.05)
    backlog = _samples(200, start=-1.0)  # 0.2 s of stream handed over at once
    for s in backlog:
        buffer.push(s)
    assert len(buffer.ingest()) == len(backlog) and buffer.dropped_behind == 0
    samples = _samples(200)
    for s in samples:
        buffer.push(s)
    time.sleep(0.06)  # the intake starved longer than max_lag
    new = buffer.ingest()
    kept = [s for s in samples if s.stamp >= samples[-1].stamp - 0.05]
    assert len(new) == len(kept) and buffer.dropped_behind == len(samples) - len(kept) > 100
    assert float(new.stamp[0]) == pytest.approx(kept[0].stamp)
    for s in _samples(20, start=1.0):  # keeping up: nothing dropped
        buffer.push(s)
    assert len(buffer.ingest()) == 20 and buffer.dropped_behind == len(samples) - len(kept)
