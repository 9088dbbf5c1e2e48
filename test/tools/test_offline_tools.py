"""`syrenets-ros record`, `learn` and `predict` as a user runs them: a round trip from the
real pendulum_sim node recorded over DDS to torques of states in a CSV; and every unusable
input ends in one line and exit code 2, never a traceback."""

from __future__ import annotations

import csv
import subprocess
import sys

import pytest
import torch
from rclpy.parameter import Parameter
from ros_helpers import spinning, wait_until

from syrenets_ros.dynamics import pendulum
from syrenets_ros.offline.bag import JOINT_STATE, TYPESTORE, JointStateBag, add_topic, open_writer, write_joint_states
from syrenets_ros.online.serving import load_model_file
from syrenets_ros.tools import cli

STATES = 200


def _states_csv(path, seed: int = 3) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    q, qd, qdd = [(torch.rand(STATES, 2, generator=gen, dtype=torch.float64) - 0.5) * 3 for _ in range(3)]
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["time", "q1", "q2", "qd1", "qd2", "qdd1", "qdd2"])  # an extra column is fine
        writer.writerows([k * 0.01, *map(repr, row)] for k, row in enumerate(torch.cat((q, qd, qdd), 1).tolist()))
    return q, qd, qdd


def _read_torques(path) -> torch.Tensor:
    with open(path, newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["tau1", "tau2"]
    return torch.tensor([[float(v) for v in row] for row in rows[1:]], dtype=torch.float64)


def test_round_trip_record_learn_predict(ros_context, tmp_path, capsys):
    from syrenets_ros.ros.recorder import Recorder
    from syrenets_ros.ros.sim_node import PendulumSimNode

    sim = PendulumSimNode(context=ros_context, start=False,
                          parameter_overrides=[Parameter("real_time_factor", value=1.0)])
    recorder = Recorder(tmp_path / "bag", context=ros_context)
    try:
        with spinning(ros_context, sim), spinning(ros_context, recorder):
            assert wait_until(lambda: sim.count_subscribers("/joint_states") > 0, 10.0)
            sim.start()
            assert wait_until(lambda: recorder.counts["/joint_states"] >= 4000, 120.0), recorder.counts
            sim.stop()
    finally:
        recorder.destroy_node()
        sim.destroy_node()

    model = tmp_path / "robot.json"
    assert cli.main(["learn", str(tmp_path / "bag"), "--no-network", "-o", str(model)]) == 0
    printed = capsys.readouterr().out
    assert "L = " in printed and "held-out torque RMSE" in printed, printed
    assert (tmp_path / "robot.png").stat().st_size > 10_000
    assert load_model_file(model).joint_names == list(pendulum.JOINT_NAMES)

    q, qd, qdd = _states_csv(tmp_path / "states.csv")
    assert cli.main(["predict", str(model), str(tmp_path / "states.csv"), "-o", str(tmp_path / "tau.csv")]) == 0
    tau = _read_torques(tmp_path / "tau.csv")
    truth = pendulum.inverse_dynamics(q, qd, qdd, pendulum.PendulumParams())
    assert float((tau - truth).abs().max() / truth.abs().max()) < 1e-6


def _learnable_bag(path, storage: str = "mcap", joints: pendulum.JointElements = pendulum.RIGID) -> None:
    """Exact samples of the true pendulum along a smooth trajectory: τ_k is the inverse
    dynamics at (q_k, q̇_k) with q̈_k the forward difference the learner forms."""
    t = torch.arange(0, 4.0, 1e-3, dtype=torch.float64)[:, None]
    q = torch.cat((torch.sin(1.3 * t), 0.8 * torch.cos(2.1 * t + 0.4)), 1)
    qd = torch.cat((1.3 * torch.cos(1.3 * t), -1.68 * torch.sin(2.1 * t + 0.4)), 1)
    qdd = (qd[1:] - qd[:-1]) / 1e-3
    tau = pendulum.inverse_dynamics(q[:-1], qd[:-1], qdd, pendulum.PendulumParams(), joints)
    write_joint_states(path, [(k * 1_000_000, ["joint1", "joint2"], q[k].tolist(), qd[k].tolist(), tau[k].tolist())
                              for k in range(len(tau))], storage=storage)


def test_learn_reads_sqlite3_and_predict_reproduces_inverse_dynamics(tmp_path, capsys):
    _learnable_bag(tmp_path / "bag", storage="sqlite3")
    model = tmp_path / "m.json"
    assert cli.main(["learn", str(tmp_path / "bag"), "--no-network", "--start", "0.5", "-o", str(model)]) == 0
    q, qd, qdd = _states_csv(tmp_path / "states.csv")
    capsys.readouterr()
    assert cli.main(["predict", str(model), str(tmp_path / "states.csv")]) == 0
    lines = capsys.readouterr().out.splitlines()
    tau = torch.tensor([[float(v) for v in line.split(",")] for line in lines[1:]], dtype=torch.float64)
    assert lines[0] == "tau1,tau2" and len(tau) == STATES
    truth = pendulum.inverse_dynamics(q, qd, qdd, pendulum.PendulumParams())
    assert float((tau - truth).abs().max() / truth.abs().max()) < 1e-6


def test_predict_includes_the_learned_dissipation(tmp_path, capsys):
    damped = pendulum.JointElements(damping=(0.8, 0.3))
    _learnable_bag(tmp_path / "bag", joints=damped)
    model = tmp_path / "m.json"
    assert cli.main(["learn", str(tmp_path / "bag"), "--no-network", "-o", str(model)]) == 0
    q, qd, qdd = _states_csv(tmp_path / "states.csv")
    assert cli.main(["predict", str(model), str(tmp_path / "states.csv"), "-o", str(tmp_path / "tau.csv")]) == 0
    truth = pendulum.inverse_dynamics(q, qd, qdd, pendulum.PendulumParams(), damped)
    rigid = pendulum.inverse_dynamics(q, qd, qdd, pendulum.PendulumParams())
    error = (_read_torques(tmp_path / "tau.csv") - truth).abs().max()
    assert float(error) < 1e-6 * float(truth.abs().max()) < float((truth - rigid).abs().max())


def _one_line_error(capsys, argv) -> str:
    assert cli.main(argv) == 2, argv
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and "error: " in lines[0] and "Traceback" not in captured.err, captured.err
    return lines[0]


def test_unusable_bags_end_in_one_line_and_exit_code_2(tmp_path, capsys):
    empty = open_writer(tmp_path / "empty")
    add_topic(empty, "/joint_states", JOINT_STATE)
    empty.close()
    assert "holds no messages" in _one_line_error(capsys, ["learn", str(tmp_path / "empty")])

    wrong = open_writer(tmp_path / "wrong")
    connection = add_topic(wrong, "/joint_states", "std_msgs/msg/String")
    wrong.write(connection, 1, TYPESTORE.serialize_cdr(TYPESTORE.types["std_msgs/msg/String"](data="hi"),
                                                       "std_msgs/msg/String"))
    wrong.close()
    assert "not sensor_msgs/msg/JointState" in _one_line_error(capsys, ["learn", str(tmp_path / "wrong")])

    _learnable_bag(tmp_path / "cut")
    [mcap] = (tmp_path / "cut").glob("*.mcap")
    mcap.write_bytes(mcap.read_bytes()[:mcap.stat().st_size // 2])
    truncated = _one_line_error(capsys, ["learn", str(tmp_path / "cut")])
    assert "not a readable rosbag2" in truncated or "damaged or truncated" in truncated
    assert "no topic /arm/joint_states" in _one_line_error(
        capsys, ["learn", str(tmp_path / "wrong"), "--topic", "/arm/joint_states"])

    # As a separate process too: the exit code and no traceback reach the shell.
    result = subprocess.run([sys.executable, "-m", "syrenets_ros.tools.cli", "learn", str(mcap)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1, result.stderr


def test_too_little_data_and_unmatched_joints_are_clear_errors(tmp_path, capsys):
    _learnable_bag(tmp_path / "bag")
    assert "a first model needs" in _one_line_error(capsys, ["learn", str(tmp_path / "bag"), "--end", "0.2"])
    message = _one_line_error(capsys, ["learn", str(tmp_path / "bag"), "--joints", "shoulder,elbow", "--no-network"])
    assert "missing_joint" in message


def test_predict_refuses_bad_models_and_bad_csv(tmp_path, capsys):
    _learnable_bag(tmp_path / "bag")
    model = tmp_path / "m.json"
    assert cli.main(["learn", str(tmp_path / "bag"), "--no-network", "-o", str(model)]) == 0
    _states_csv(tmp_path / "states.csv")
    tampered = tmp_path / "tampered.json"
    tampered.write_text(model.read_text().replace('"kind":"terms"', '"kind":"pickle"'))
    assert "unknown model kind" in _one_line_error(capsys, ["predict", str(tampered), str(tmp_path / "states.csv")])
    bad = tmp_path / "bad.csv"
    bad.write_text("q1,q2,qd1,qd2,qdd1,qdd2\n0,0,0,0,0,0\n0,nan,0,0,0,0\n")
    assert "line 3: non-finite" in _one_line_error(capsys, ["predict", str(model), str(bad), "-o", str(tmp_path / "o.csv")])
    assert not (tmp_path / "o.csv").exists(), "no half-written result"
    (tmp_path / "few.csv").write_text("q1,qd1,qdd1\n0,0,0\n")
    assert "lacks q2, qd2, qdd2" in _one_line_error(capsys, ["predict", str(model), str(tmp_path / "few.csv")])
    (tmp_path / "text.csv").write_text("q1,q2,qd1,qd2,qdd1,qdd2\n0,0,zero,0,0,0\n")
    assert "line 2: expected numbers" in _one_line_error(capsys, ["predict", str(model), str(tmp_path / "text.csv")])


@pytest.mark.parametrize("argv, reason", [
    (["record", "{tmp}/exists"], "exists"),
    (["record", "{tmp}/new", "--duration", "0"], "positive"),
])
def test_record_refuses_to_overwrite_or_run_for_nothing(tmp_path, capsys, argv, reason):
    (tmp_path / "exists").mkdir()
    assert reason in _one_line_error(capsys, [a.format(tmp=tmp_path) for a in argv])


def test_record_runs_for_its_duration_and_leaves_a_complete_bag(ros_context, tmp_path):
    """`syrenets-ros record OUT --duration S` as a user runs it, beside a publishing node."""
    import time

    from rclpy.node import Node
    from sensor_msgs.msg import JointState

    talker = Node("talker", context=ros_context)
    publisher = talker.create_publisher(JointState, "/joint_states", 100)
    process = subprocess.Popen([sys.executable, "-m", "syrenets_ros.tools.cli", "record", str(tmp_path / "bag"),
                                "--duration", "3"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120.0
        k = 0
        while process.poll() is None and time.monotonic() < deadline:
            msg = JointState(name=["joint1", "joint2"], position=[0.0, 0.0], velocity=[0.0, 0.0], effort=[0.0, 0.0])
            msg.header.stamp.nanosec = k
            publisher.publish(msg)
            k += 1
            time.sleep(0.005)
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
        talker.destroy_node()
    assert process.returncode == 0, err
    with JointStateBag(tmp_path / "bag") as bag:
        recorded = sum(1 for _ in bag)
    assert recorded > 0 and f"/joint_states {recorded}" in out, out


def test_learn_grows_past_quadratic_for_a_hardening_spring(tmp_path, capsys):
    """`learn` on a table of a pendulum with a hardening joint-2 spring (k₃q2³ is 31 % of the
    spring torque at the visited edge): the same growth as the node's, to a quartic potential;
    predict reproduces the truth at twice the visited angles, and the report says that no
    equally good model disagrees outside the data."""
    from syrenets_ros.tools.streams import Plant, simulate_structure

    plant = Plant(stiffness=(0.0, 10.0), hardening=(0.0, 8.0))
    stream = simulate_structure(10.0, stiffness=plant.stiffness, hardening=plant.hardening)
    table = tmp_path / "hardening.csv"
    with open(table, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["t", "q1", "q2", "qd1", "qd2", "tau1", "tau2"])
        writer.writerows(map(repr, row) for row in torch.cat(
            (stream.stamp[:, None], stream.q, stream.qd, stream.tau), 1).tolist())
    model = tmp_path / "m.json"
    assert cli.main(["learn", str(table), "--no-network", "-o", str(model)]) == 0
    out = capsys.readouterr().out
    assert "q2**4" in out and "extrapolation_uncertain: 0 N·m" in out
    q, qd, qdd = _states_csv(tmp_path / "states.csv")
    assert cli.main(["predict", str(model), str(tmp_path / "states.csv"), "-o", str(tmp_path / "tau.csv")]) == 0
    truth = plant.inverse_dynamics(q, qd, qdd)
    assert float((_read_torques(tmp_path / "tau.csv") - truth).abs().max()) < 1e-6 * float(truth.abs().max())
