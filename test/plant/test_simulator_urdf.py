"""A robot from its URDF in the PyBullet core (issue 21): the Franka Panda of example-robot-data
steps exactly the inverse dynamics Pinocchio computes from the same URDF — before and after a
payload is added at the flange mid-run, and with springs, damping and friction on its 7 joints —
while tracking a reference that keeps it inside its joint and velocity limits. The settings
size every per-joint array to the robot and refuse what does not fit it, with the reason."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ElementTree

import numpy as np
import pytest

from syrenets_ros.dynamics.pendulum import JointElements
from syrenets_ros.dynamics.urdf import RigidBodyRobot, panda_urdf
from syrenets_ros.plant.control import pd_torque
from syrenets_ros.plant.robot import LIMIT_MARGIN, flange_link, payload_urdf
from syrenets_ros.plant.settings import SIM_PARAMETERS, STEP_BOUND, SimSettings, initial_settings, settings_with, \
    step_load
from syrenets_ros.plant.simulator import Simulator

DT = 1.0e-3
PANDA = panda_urdf()


def _run(sim: Simulator, settings: SimSettings, steps: int, rng: np.random.Generator
         ) -> tuple[np.ndarray, np.ndarray]:
    """The node's control law (PD + the true feed-forward) plus random torque; returns the
    states (with the final one) and the applied torques."""
    excitation = settings.robot.excitation(settings.excitation_seed, settings.excitation_amplitude,
                                           settings.excitation_base_frequency)
    states, torques = [], []
    for _ in range(steps):
        q, qd = sim.state()
        desired = excitation.sample(sim.step_count * DT)
        feedforward = settings.robot.inverse_dynamics_at(*desired, settings.joint_elements)
        tau = np.array(pd_torque(settings, q, qd, desired[0], desired[1], feedforward)) + rng.normal(0.0, 0.5, 7)
        states.append((*q, *qd))
        torques.append(tau)
        sim.step(tau)
    q, qd = sim.state()
    states.append((*q, *qd))
    return np.array(states), np.array(torques)


def _error(states: np.ndarray, torques: np.ndarray, urdf: str, joints: JointElements) -> float:
    """Max |τ_k − ID(q_k, q̇_k, (q̇_{k+1} − q̇_k)/Δt) − passive(q_k, q̇_k)| with Pinocchio's ID."""
    q, qd = states[:-1, :7], states[:-1, 7:]
    qdd = (states[1:, 7:] - qd) / DT
    truth = RigidBodyRobot.from_urdf(urdf).inverse_dynamics(q, qd, qdd)
    passive = np.array([joints.torque_at(a, b) for a, b in zip(q.tolist(), qd.tolist())])
    return float(np.abs(truth + passive - torques).max())


def test_panda_steps_pinocchio_inverse_dynamics_exactly_across_a_payload_change():
    settings = initial_settings({"robot_description": PANDA})
    loaded = settings_with(settings, {"payload_mass": 1.0})
    start = settings.robot.excitation(0, 1.0, 0.1).sample(0.0)
    rng = np.random.default_rng(0)
    with Simulator(settings.robot, DT, start[0], start[1], joints=settings.joint_elements) as sim:
        assert sim.joint_names == tuple(f"panda_joint{i}" for i in range(1, 8))
        before, tau_before = _run(sim, settings, 1500, rng)
        sim.set_robot(loaded.robot)
        assert sim.state() == (tuple(before[-1, :7]), tuple(before[-1, 7:])), "the state carries over exactly"
        assert sim.step_count == 1500 and sim.robot.payload_mass == 1.0
        after, tau_after = _run(sim, loaded, 1500, rng)

    rigid = settings.joint_elements
    assert np.ptp(before[:, :7], axis=0).min() > 0.1, "the arm must move on every joint"
    assert _error(before, tau_before, PANDA, rigid) <= 1e-9
    assert _error(after, tau_after, payload_urdf(PANDA, 1.0), rigid) <= 1e-9
    # The check has teeth: without the payload the truth misses the new data by newtons.
    assert _error(after, tau_after, PANDA, rigid) > 0.1


def test_panda_springs_damping_friction_on_seven_joints_are_exact():
    elements = {"joint_stiffness": [5.0, 20.0, 5.0, 10.0, 1.0, 1.0, 0.1],
                "joint_rest_angle": [0.0, 0.3, 0.0, -1.5, 0.0, 1.5, 0.0],
                "joint_damping": [1.0, 1.0, 0.5, 0.5, 0.1, 0.1, 0.01],
                "joint_friction": [2.0, 2.0, 1.0, 1.0, 0.5, 0.5, 0.1]}
    settings = settings_with(initial_settings({"robot_description": PANDA}), elements)
    joints = settings.joint_elements
    assert not joints.is_rigid and len(joints.stiffness) == 7
    start = settings.robot.excitation(0, 1.0, 0.1).sample(0.0)
    with Simulator(settings.robot, DT, start[0], start[1], joints=joints) as sim:
        states, torques = _run(sim, settings, 1000, np.random.default_rng(1))
    assert _error(states, torques, PANDA, joints) <= 1e-9
    assert _error(states, torques, PANDA, JointElements.rigid(7)) > 0.1


def test_panda_reference_and_default_gains_keep_it_inside_its_limits():
    settings = initial_settings({"robot_description": PANDA})
    robot = settings.robot
    lower, upper = robot.dynamics.position_limits
    speed = np.asarray(robot.dynamics.model.velocityLimit)
    excitation = robot.excitation(settings.excitation_seed, settings.excitation_amplitude,
                                  settings.excitation_base_frequency)
    q_d, qd_d, _ = excitation.trajectory(np.arange(0.0, 1.0 / settings.excitation_base_frequency, 0.01))
    half = (upper - lower) / 2.0
    assert np.all(np.abs(q_d - (lower + upper) / 2.0) <= LIMIT_MARGIN * half + 1e-12)
    assert np.all(np.abs(qd_d) <= LIMIT_MARGIN * speed + 1e-12)
    assert len(settings.kp) == len(settings.kd) == 7 and min(settings.kp) > 0.0
    assert step_load(settings)[0] <= STEP_BOUND / 2.0, "default gains leave the step half its margin"
    start = excitation.sample(0.0)
    with Simulator(robot, DT, start[0], start[1]) as sim:
        states, _ = _run(sim, settings, 3000, np.random.default_rng(2))
    assert np.all((states[:, :7] > lower) & (states[:, :7] < upper)), "the arm left its joint range"
    assert np.all(np.abs(states[:, 7:]) < speed), "the arm exceeded a velocity limit"


def test_payload_sits_at_the_flange_and_changes_only_what_it_should():
    assert flange_link(PANDA) == "panda_hand"  # link7 → link8 (flange) → hand; the fingers branch
    loaded = payload_urdf(PANDA, 2.0)
    root = ElementTree.fromstring(loaded)
    [joint] = [j for j in root.iter("joint") if j.find("child").get("link") == "payload"]
    assert joint.get("type") == "fixed" and joint.find("parent").get("link") == "panda_hand"
    base, heavy = RigidBodyRobot.from_urdf(PANDA), RigidBodyRobot.from_urdf(loaded)
    assert heavy.joint_names == base.joint_names
    assert math.isclose(heavy.inertial_parameters()[-10] - base.inertial_parameters()[-10], 2.0)
    assert payload_urdf(PANDA, 0.0) == PANDA


@pytest.mark.parametrize("changes, reason", [
    ({"link2_mass": 2.0}, "belong to the double pendulum"),
    ({"kp": [100.0, 10.0]}, "kp needs 7 values, one per joint"),
    ({"joint_friction": [0.0] * 6}, "joint_friction needs 7 values"),
    ({"payload_mass": -1.0}, "payload_mass must be in"),
    ({"kd": [1.0e4] * 7}, "cannot integrate"),
])
def test_a_urdf_robot_refuses_what_does_not_fit_it(changes, reason):
    settings = initial_settings({"robot_description": PANDA})
    with pytest.raises(ValueError, match=reason):
        settings_with(settings, changes)


def test_the_pendulum_refuses_a_payload_and_keeps_its_defaults():
    with pytest.raises(ValueError, match="payload_mass needs a robot_description"):
        settings_with(SimSettings(), {"payload_mass": 1.0})
    assert initial_settings(SIM_PARAMETERS.defaults()) == SimSettings()
    assert SimSettings().robot.joint_names == ("joint1", "joint2")


@pytest.mark.parametrize("text, reason", [
    ("<robot name='x'>", "not a URDF"),
    ("<robot name='x'><link name='a'/></robot>", "no movable joint"),
])
def test_a_bad_robot_description_is_refused_with_the_reason(text, reason):
    with pytest.raises(ValueError, match=reason):
        initial_settings({"robot_description": text})


def test_a_gravity_change_reaches_the_urdf_truth():
    settings = settings_with(initial_settings({"robot_description": PANDA}), {"gravity": 0.0})
    rigid = settings.joint_elements
    centre = tuple(settings.robot.ranges[0].tolist())
    assert settings.robot.inverse_dynamics_at(centre, (0.0,) * 7, (0.0,) * 7, rigid) == (0.0,) * 7
    with Simulator(settings.robot, DT, centre) as sim:
        sim.step((0.0,) * 7)
        assert sim.state()[1] == (0.0,) * 7, "without gravity an arm at rest stays at rest"
