"""`syrenets-ros learn --urdf` (issue 21) as a user runs it: a bag of a 7-joint arm (the Panda
of example-robot-data, 1 kg heavier at the flange than its URDF says, with joint friction)
gives its exact rigid body, which `predict` serves; bad URDFs, joints and a model of another
robot are refused in one line."""

from __future__ import annotations

import contextlib
import csv
import io
import subprocess
import sys

import numpy as np
import pytest
import torch

from syrenets_ros.dynamics.urdf import RigidBodyRobot, panda_urdf, with_payload
from syrenets_ros.dynamics.urdf_motion import tracking_record
from syrenets_ros.offline.bag import write_joint_states
from syrenets_ros.online.serving import load_model_file
from syrenets_ros.tools import cli
from syrenets_ros.tools.bench.urdf import ELEMENTS, wide_states
SECONDS = 12.0


@pytest.fixture(scope="module")
def robots() -> tuple[RigidBodyRobot, RigidBodyRobot]:
    panda = RigidBodyRobot.from_urdf(panda_urdf())
    return panda, RigidBodyRobot.from_urdf(with_payload(panda.urdf, "panda_link8", 1.0, (0.0, 0.0, 0.05)))


@pytest.fixture(scope="module")
def files(tmp_path_factory, robots):
    """The URDF file and an MCAP bag whose messages also carry the (locked) finger joints,
    listed first: the learner matches the URDF's joints by name."""
    panda, loaded = robots
    folder = tmp_path_factory.mktemp("panda")
    (folder / "panda.urdf").write_text(panda.urdf)
    record = tracking_record(loaded, SECONDS, seed=5, elements=ELEMENTS)
    names = ["panda_finger_joint1"] + list(panda.joint_names)

    def messages():
        for t, q, qd, tau in zip(record.stamp.tolist(), record.q.tolist(), record.qd.tolist(), record.tau.tolist()):
            yield round(t * 1e9), names, [0.0] + q, [0.0] + qd, [0.0] + tau

    write_joint_states(folder / "bag", messages())
    return folder


@pytest.fixture(scope="module")
def learned(files) -> tuple[object, str]:
    """`learn BAG --urdf FILE` in this process: the snapshot's path and what it printed."""
    model, out = files / "model.json", io.StringIO()
    with contextlib.redirect_stdout(out):
        assert cli.main(["learn", str(files / "bag"), "--urdf", str(files / "panda.urdf"), "-o", str(model)]) == 0
    return model, out.getvalue()


def test_learn_urdf_gives_the_exact_arm_and_predict_serves_it(files, robots, learned):
    panda, loaded = robots
    model, printed = learned
    assert "43 base parameters" in printed and "URDF" in printed and "held-out torque RMSE" in printed, printed
    assert "Abs(qd7) 0.35(" in printed and "stiffness[panda_joint1] 4(" in printed  # friction, a spring
    decoded = load_model_file(model)
    assert decoded.model.kind == "rigid_body" and decoded.joint_names == list(panda.joint_names)
    assert decoded.model.robot.digest == panda.digest

    q, qd, qdd = wide_states(panda, 500, seed=11)
    with open(files / "states.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([f"{kind}{i + 1}" for kind in ("q", "qd", "qdd") for i in range(7)])
        writer.writerows(np.concatenate((q, qd, qdd), 1).tolist())
    assert cli.main(["predict", str(model), str(files / "states.csv"), "--urdf", str(files / "panda.urdf"),
                     "-o", str(files / "tau.csv")]) == 0
    tau = np.loadtxt(files / "tau.csv", delimiter=",", skiprows=1)
    truth = loaded.inverse_dynamics(q, qd, qdd) + ELEMENTS.torque(torch.from_numpy(q), torch.from_numpy(qd)).numpy()
    assert np.linalg.norm(tau - truth) / np.linalg.norm(truth) <= 1e-6
    urdf_only = panda.inverse_dynamics(q, qd, qdd)
    assert np.linalg.norm(urdf_only - truth) / np.linalg.norm(truth) > 1e-2  # the data taught it


def _cli(*argv) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "syrenets_ros.tools.cli", *map(str, argv)],
                          capture_output=True, text=True, timeout=300)


def _refused(result: subprocess.CompletedProcess, command: str) -> str:
    lines = result.stderr.splitlines()
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert lines[0].startswith(f"syrenets-ros {command}: error: ") and "Traceback" not in result.stderr
    return lines[0]


def test_bad_urdfs_and_joints_are_refused_in_one_line(files, tmp_path):
    bag = files / "bag"
    (tmp_path / "broken.urdf").write_text("<robot name='x'><link")
    assert "not a URDF Pinocchio can read" in _refused(_cli("learn", bag, "--urdf", tmp_path / "broken.urdf"), "learn")
    (tmp_path / "wheel.urdf").write_text(
        "<robot name='r'><link name='a'/><link name='b'><inertial><mass value='1'/><inertia ixx='1' ixy='0' "
        "ixz='0' iyy='1' iyz='0' izz='1'/></inertial></link><joint name='wheel' type='continuous'>"
        "<parent link='a'/><child link='b'/><axis xyz='0 0 1'/></joint></robot>")
    assert "'wheel'" in _refused(_cli("learn", bag, "--urdf", tmp_path / "wheel.urdf"), "learn")
    assert "cannot read" in _refused(_cli("learn", bag, "--urdf", tmp_path / "missing.urdf"), "learn")
    line = _refused(_cli("learn", bag, "--urdf", files / "panda.urdf", "--joints", "panda_joint2,panda_joint1"),
                    "learn")
    assert "movable joints in order" in line
    # A robot whose joints the bag does not carry: nothing learnable, said with the joints.
    renamed = (files / "panda.urdf").read_text().replace('name="panda_joint7"', 'name="wrist"')
    (tmp_path / "renamed.urdf").write_text(renamed)
    line = _refused(_cli("learn", bag, "--urdf", tmp_path / "renamed.urdf", "-o", tmp_path / "m.json"), "learn")
    assert "no model from" in line and "wrist" in line
    assert not (tmp_path / "m.json").exists()


def test_predict_refuses_a_model_of_another_urdf(files, learned, tmp_path):
    model, _ = learned
    (tmp_path / "heavier.urdf").write_text(with_payload((files / "panda.urdf").read_text(), "panda_link8", 2.0))
    line = _refused(_cli("predict", model, files / "states.csv", "--urdf", tmp_path / "heavier.urdf"), "predict")
    assert "learned on another URDF" in line
