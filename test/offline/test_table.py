"""Anyone's recordings: a coarse rate, short segments, tables with or without q̈ — learned
exactly through the learner's own core, and every refusal names its condition and the option
that changes it. The data are continuous-time motion sampled at the stated rate (not our
simulator's steps), with velocities and accelerations either exact or made by numpy.gradient
as public robot data sets make them."""

from __future__ import annotations

import csv
import os

import numpy as np
import pytest
import torch

from syrenets_ros.dynamics import pendulum
from syrenets_ros.offline.bag import NANOSECONDS, BagError, JointStateBag, write_joint_states
from syrenets_ros.offline.learning import BagRecording, TableRecording, learn_from_recording
from syrenets_ros.offline.table import TableError, read_table
from syrenets_ros.online.learner import LearnerConfig
from syrenets_ros.tools import cli
from syrenets_ros.tools.streams import Stream, sampled_motion

# 17 segments of 81–191 samples at 25 Hz, as the public handwriting data set has (3.2–7.6 s).
SEGMENTS = tuple(float(n) / 25.0 for n in np.linspace(81, 191, 17).round())
# Few selections: each costs a refit, and the model is decided at the end of the recording.
CONFIG = LearnerConfig(network_enabled=False, snapshot_period=60.0)
PARAMS = pendulum.PendulumParams()


def _write_table(path, stream: Stream, with_acceleration: bool) -> None:
    """t restarts in every segment (as in the data set); a segment column tells them apart."""
    steps = torch.diff(stream.stamp)
    segment = torch.cat((torch.zeros(1), (steps > 0.5).cumsum(0))).long()
    starts = {int(s): float(stream.stamp[segment == s][0]) for s in segment.unique()}
    columns = {"t": [float(t) - starts[int(s)] for t, s in zip(stream.stamp, segment)], "segment": segment.tolist()}
    kinds = (("q", stream.q), ("qd", stream.qd)) + ((("qdd", stream.qdd),) if with_acceleration else ()) + (
        ("tau", stream.tau),)
    for kind, values in kinds:
        for j in range(2):
            columns[f"{kind}{j + 1}"] = values[:, j].tolist()
    if path.suffix == ".npz":
        np.savez(path, **{name: np.asarray(v) for name, v in columns.items()})
        return
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(list(columns))
        writer.writerows(zip(*(map(repr, v) for v in columns.values())))


def _write_bag(path, stream: Stream) -> None:
    names = list(pendulum.JOINT_NAMES)
    write_joint_states(path, ((round(float(t) * NANOSECONDS), names, q, qd, tau) for t, q, qd, tau in zip(
        stream.stamp.tolist(), stream.q.tolist(), stream.qd.tolist(), stream.tau.tolist())))


def _held_out_mse(model) -> float:
    """Torque MSE (squared error summed over joints, averaged over samples) on other motion
    with its true q̈: the data set's held-out measure."""
    other = sampled_motion(25.0, (6.0, 6.0, 6.0), seed=100)
    truth = pendulum.inverse_dynamics(other.q, other.qd, other.qdd, PARAMS)
    return float((model.torque(other.q, other.qd, other.qdd) - truth).square().sum(-1).mean())


@pytest.fixture(scope="module")
def characters():
    """The data set's shape: 25 Hz, 17 short segments, derivatives by numpy.gradient."""
    return sampled_motion(25.0, SEGMENTS, derivatives="gradient")


def test_a_25_hz_table_in_short_segments_with_accelerations_is_learned_exactly(tmp_path, characters):
    _write_table(tmp_path / "chars.npz", characters, with_acceleration=True)
    table = read_table(tmp_path / "chars.npz")
    assert table.runs == 17 and table.qdd is not None
    result = learn_from_recording(TableRecording(table), CONFIG)
    assert result.rows.form == "acceleration", "the table's own q̈ is used where it is exact"
    assert _held_out_mse(result.model) <= 1e-9
    assert result.accepted == table.rows, "every row is a sample: no segment lost its last row"


def test_the_same_recording_as_a_bag_without_accelerations_is_learned_exactly(tmp_path, characters):
    _write_bag(tmp_path / "bag", characters)
    with JointStateBag(tmp_path / "bag") as bag:
        result = learn_from_recording(BagRecording(bag), CONFIG)
    assert result.rows.form == "central", "numpy.gradient data obey central differences"
    assert result.rejected == {"gap": 16}, "only the segment boundaries"
    assert _held_out_mse(result.model) <= 1e-6


def test_the_same_motion_gives_the_same_model_at_25_100_and_1000_hz(tmp_path):
    """Continuous motion with exact derivatives as a table without q̈ (so the weak form at
    coarse rates): the same terms at every rate, coefficients equal to 1e-4."""
    models = {}
    for rate in (25.0, 100.0, 1000.0):
        path = tmp_path / f"motion_{int(rate)}.csv"
        _write_table(path, sampled_motion(rate, (8.0, 8.0, 8.0, 8.0), seed=7), with_acceleration=False)
        result = learn_from_recording(TableRecording(read_table(path)), CONFIG)
        models[rate] = result.model
        assert _held_out_mse(result.model) <= 1e-6, rate
    reference = models[1000.0]
    for rate, model in models.items():
        assert set(model.library.columns) == set(reference.library.columns), rate
        assert torch.allclose(model.coefficients, reference.coefficients, rtol=1e-4, atol=1e-6), rate


def test_segments_too_short_for_any_window_are_a_clear_refusal(tmp_path):
    short = sampled_motion(25.0, (0.4,) * 30)  # 10 samples each: less than one 16-sample window
    _write_table(tmp_path / "short.csv", short, with_acceleration=False)
    with pytest.raises(BagError, match=r"gap-free runs \(longest 9 samples\) holding 0 integral windows"):
        learn_from_recording(TableRecording(read_table(tmp_path / "short.csv")), CONFIG)


def _one_line_error(capsys, argv) -> str:
    assert cli.main(argv) == 2, argv
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in captured.err, captured.err
    return lines[0]


def test_learn_refusals_name_the_condition_and_the_option(tmp_path, capsys):
    motion = sampled_motion(25.0, (8.0,))
    _write_table(tmp_path / "one.csv", motion, with_acceleration=False)
    refusal = _one_line_error(capsys, ["learn", str(tmp_path / "one.csv"), "--no-network", "--holdout", "20"])
    assert "a first model needs" in refusal and "--min-fit-duration" in refusal and "--holdout" in refusal
    assert "joints" in _one_line_error(capsys, ["learn", str(tmp_path / "one.csv"), "--joints", "a,b,c"])
    assert "--integral-window must be in" in _one_line_error(
        capsys, ["learn", str(tmp_path / "one.csv"), "--integral-window", "0"])

    header = "t,q1,q2,qd1,qd2,qdd1,tau1,tau2\n0,0,0,0,0,0,0,0\n0.1,0,0,0,0,0,0,0\n"
    (tmp_path / "partial.csv").write_text(header)
    assert "qdd1, qdd2 or none" in _one_line_error(capsys, ["learn", str(tmp_path / "partial.csv")])
    (tmp_path / "lacking.csv").write_text("t,q1,qd1\n0,0,0\n0.1,0,0\n")
    assert "lacks tau1" in _one_line_error(capsys, ["learn", str(tmp_path / "lacking.csv")])
    (tmp_path / "words.csv").write_text("t,q1,qd1,tau1\n0,0,zero,0\n")
    assert "line 2: a cell is not a number" in _one_line_error(capsys, ["learn", str(tmp_path / "words.csv")])
    (tmp_path / "huge.csv").write_text("t,q1,qd1,tau1\n" + "1" * (1 << 18) + ",0,0,0\n")
    assert "not a readable CSV" in _one_line_error(capsys, ["learn", str(tmp_path / "huge.csv")])
    (tmp_path / "pickled.npz").write_bytes(b"not a zip archive")
    assert "not a readable .npz" in _one_line_error(capsys, ["learn", str(tmp_path / "pickled.npz")])
    os.mkfifo(tmp_path / "fifo.csv")
    assert "not a regular file" in _one_line_error(capsys, ["learn", str(tmp_path / "fifo.csv")])


def test_a_table_of_objects_is_refused_without_unpickling(tmp_path):
    np.savez(tmp_path / "objects.npz", t=np.array([{"x": 1}, {"x": 2}], dtype=object))
    with pytest.raises(TableError, match="not a readable .npz"):
        read_table(tmp_path / "objects.npz")


def test_learn_sets_the_torch_threads_it_is_given(tmp_path, capsys):
    _write_table(tmp_path / "one.csv", sampled_motion(25.0, (2.0,)), with_acceleration=False)
    try:
        cli.main(["learn", str(tmp_path / "one.csv"), "--no-network", "--threads", "2", "-o", str(tmp_path / "m")])
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(1)
