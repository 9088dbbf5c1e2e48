"""The PyBullet core is exact: the Euler–Lagrange torque of the true relative-coordinate
Lagrangian (SPEC §2) on the simulator's own states reproduces the applied torque, before and
after a parameter swap; the expanded URDF carries the exact inertias."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET

import numpy as np
import pytest
import torch

from syrenets_ros.dynamics import euler_lagrange

from syrenets_ros.dynamics import pendulum
from syrenets_ros.plant.excitation import MultiSine
from syrenets_ros.plant.simulator import Simulator, expand_urdf

DT = 1.0e-3
SWAPPED = pendulum.PendulumParams().with_changes(m2=2.0, l2=1.2)


def _el_torque(states: np.ndarray, p: pendulum.PendulumParams) -> torch.Tensor:
    """EL torque at each state k from q̈_k = (q̇_{k+1} − q̇_k)/Δt; states rows are (q, q̇)."""
    x = torch.as_tensor(states, dtype=torch.float64)
    q, qd = x[:-1, :2], x[:-1, 2:]
    qdd = (x[1:, 2:] - x[:-1, 2:]) / DT

    def lagrangian(q1: torch.Tensor, qd1: torch.Tensor) -> torch.Tensor:
        return pendulum.lagrangian(q1, qd1, p)

    return euler_lagrange.torque(lagrangian, q, qd, qdd)


def _run(sim: Simulator, excitation: MultiSine, steps: int, rng: np.random.Generator
         ) -> tuple[np.ndarray, np.ndarray]:
    """PD tracking plus random torque noise; returns (states incl. the final one, torques)."""
    states, torques = [], []
    for _ in range(steps):
        q, qd = sim.state()
        q_d, qd_d, _ = excitation.sample(sim.step_count * DT)
        tau = [300.0 * (q_d[0] - q[0]) + 60.0 * (qd_d[0] - qd[0]),
               100.0 * (q_d[1] - q[1]) + 10.0 * (qd_d[1] - qd[1])] + rng.normal(0.0, 5.0, 2)
        states.append((*q, *qd))
        torques.append(tau)
        sim.step(tau)
    q, qd = sim.state()
    states.append((*q, *qd))
    return np.array(states), np.array(torques)


def test_el_torque_reproduces_applied_torque_before_and_after_swap():
    excitation = MultiSine.from_seed(3)
    q0, qd0, _ = excitation.sample(0.0)
    rng = np.random.default_rng(0)
    with Simulator(pendulum.PendulumParams(), DT, q0, qd0) as sim:
        before, tau_before = _run(sim, excitation, 2500, rng)
        sim.set_params(SWAPPED)
        q, qd = sim.state()
        assert (*q, *qd) == tuple(before[-1]), "state must carry over the swap exactly"
        assert sim.step_count == 2500 and sim.params == SWAPPED
        after, tau_after = _run(sim, excitation, 2500, rng)

    assert np.ptp(before[:, :2], axis=0).min() > 0.5, "trajectory too small to test anything"
    error_before = (_el_torque(before, pendulum.PendulumParams()) - torch.as_tensor(tau_before))
    error_after = (_el_torque(after, SWAPPED) - torch.as_tensor(tau_after))
    assert error_before.abs().max().item() <= 1e-6
    assert error_after.abs().max().item() <= 1e-6
    # The check has teeth: the old parameters do not explain the new data.
    wrong = _el_torque(after, pendulum.PendulumParams()) - torch.as_tensor(tau_after)
    assert wrong.abs().max().item() > 1e-2


def _extended_error(states: np.ndarray, torques: np.ndarray, p: pendulum.PendulumParams,
                    joints: pendulum.JointElements) -> float:
    """Max |τ_k − extended inverse dynamics(q_k, q̇_k, (q̇_{k+1} − q̇_k)/Δt)| over a run."""
    x = torch.as_tensor(states, dtype=torch.float64)
    qdd = (x[1:, 2:] - x[:-1, 2:]) / DT
    truth = pendulum.inverse_dynamics(x[:-1, :2], x[:-1, 2:], qdd, p, joints)
    return (truth - torch.as_tensor(torques)).abs().max().item()


def test_springs_damping_friction_switched_on_mid_run_are_exact():
    """Each element switched on at a step boundary: the state carries over untouched, the
    motor torque obeys the extended inverse dynamics to round-off before and after, and the
    elements of the previous segment no longer explain the data."""
    excitation = MultiSine.from_seed(5)
    q0, qd0, _ = excitation.sample(0.0)
    rng = np.random.default_rng(1)
    segments = [pendulum.JointElements(),
                pendulum.JointElements(stiffness=(0.0, 50.0), rest_angle=(0.0, 0.4)),
                pendulum.JointElements(stiffness=(0.0, 50.0), rest_angle=(0.0, 0.4), damping=(2.0, 2.0)),
                pendulum.JointElements(stiffness=(0.0, 50.0), rest_angle=(0.0, 0.4), damping=(2.0, 2.0),
                                       friction=(3.0, 1.0)),
                pendulum.JointElements(stiffness=(0.0, 50.0), rest_angle=(0.0, 0.4), damping=(2.0, 2.0),
                                       friction=(3.0, 1.0), cogging=(0.2, 0.4))]
    with Simulator(pendulum.PendulumParams(), DT, q0, qd0) as sim:
        previous = None
        for joints in segments:
            before = sim.state()
            sim.set_joint_elements(joints)
            assert sim.state() == before and sim.joint_elements == joints
            states, torques = _run(sim, excitation, 1000, rng)
            assert _extended_error(states, torques, sim.params, joints) <= 1e-10
            if previous is not None:
                assert _extended_error(states, torques, sim.params, previous) > 1e-2
            previous = joints
        assert sim.step_count == 5000
        with pytest.raises(ValueError, match=">= 0"):
            sim.set_joint_elements(pendulum.JointElements(damping=(-1.0, 0.0)))
        assert sim.joint_elements == segments[-1], "a refused change leaves the elements as they were"


def test_gravity_swap_is_applied():
    with Simulator(pendulum.PendulumParams(), DT, (0.5, 0.0), (0.0, 0.0)) as sim:
        sim.set_params(pendulum.PendulumParams(g=0.0))
        sim.step((0.0, 0.0))
        _, qd = sim.state()
        assert qd == (0.0, 0.0), "without gravity a resting pendulum stays at rest"


@pytest.mark.parametrize("params", [pendulum.PendulumParams(), SWAPPED,
                                    pendulum.PendulumParams(m1=0.3, l1=0.1 + 0.2, m2=7.0, l2=3.3)])
def test_expanded_urdf_has_exact_inertia_and_geometry(params):
    root = ET.fromstring(expand_urdf(params))
    links = {link.get("name"): link for link in root.findall("link")}
    for name, mass, length in (("link1", params.m1, params.l1), ("link2", params.m2, params.l2)):
        inertial = links[name].find("inertial")
        assert float(inertial.find("mass").get("value")) == mass
        inertia = inertial.find("inertia")
        assert float(inertia.get("iyy")) == mass * length * length / 12.0
        assert float(inertia.get("ixx")) == mass * length * length / 12.0
        assert [float(inertia.get(k)) for k in ("ixy", "ixz", "iyz", "izz")] == [0.0] * 4
        assert [float(v) for v in inertial.find("origin").get("xyz").split()] == [0, 0, -length / 2]
    joints = {joint.get("name"): joint for joint in root.findall("joint")}
    assert set(joints) == {"joint1", "joint2"}
    for joint in joints.values():
        assert joint.get("type") == "revolute"
        assert joint.find("axis").get("xyz").split() == ["0", "1", "0"]
        assert float(joint.find("limit").get("upper")) > 1e6
        assert float(joint.find("dynamics").get("damping")) == 0.0
    joint2_origin = [float(v) for v in joints["joint2"].find("origin").get("xyz").split()]
    assert joint2_origin == [0, 0, -params.l1]


def test_pybullet_uses_the_urdf_inertia():
    params = SWAPPED
    with Simulator(params, DT) as sim:
        for joint, mass, length in (("joint1", params.m1, params.l1),
                                    ("joint2", params.m2, params.l2)):
            simulated_mass, inertia_diagonal = sim.link_inertia(joint)
            assert simulated_mass == mass
            assert inertia_diagonal[1] == mass * length * length / 12.0


def test_invalid_input_is_refused_with_a_reason():
    with Simulator(pendulum.PendulumParams(), DT) as sim:
        with pytest.raises(ValueError, match="finite"):
            sim.step((math.nan, 0.0))
        with pytest.raises(ValueError, match="2 values"):
            sim.step((1.0,))
        with pytest.raises(ValueError, match="m2 must be > 0"):
            sim.set_params(pendulum.PendulumParams(m2=-1.0))
        assert sim.step_count == 0 and sim.params == pendulum.PendulumParams()
    with pytest.raises(ValueError, match="time_step"):
        Simulator(pendulum.PendulumParams(), 0.0)


def test_excitation_is_bounded_seeded_and_its_derivatives_are_exact():
    excitation = MultiSine.from_seed(7, amplitude=1.2, base_frequency=0.2)
    assert excitation == MultiSine.from_seed(7, amplitude=1.2, base_frequency=0.2)
    assert excitation != MultiSine.from_seed(8, amplitude=1.2, base_frequency=0.2)
    times = np.linspace(0.0, 20.0, 2001)
    samples = np.array([excitation.sample(t) for t in times])  # (T, 3, joints)
    assert np.abs(samples[:, 0]).max() <= 1.2
    assert np.abs(samples[:, 0]).max() > 0.5, "the reference should use its range"
    h = 1e-5
    for t in (0.3, 4.1, 17.7):
        q_minus, qd_minus, _ = excitation.sample(t - h)
        q_plus, qd_plus, _ = excitation.sample(t + h)
        _, qd, qdd = excitation.sample(t)
        np.testing.assert_allclose((np.array(q_plus) - q_minus) / (2 * h), qd, atol=1e-8)
        np.testing.assert_allclose((np.array(qd_plus) - qd_minus) / (2 * h), qdd, atol=1e-8)
    with pytest.raises(ValueError, match="amplitude"):
        MultiSine.from_seed(0, amplitude=2.0)
    with pytest.raises(ValueError, match="base_frequency"):
        MultiSine.from_seed(0, base_frequency=math.nan)
