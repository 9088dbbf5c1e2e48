"""Ground truth with springs, damping and friction (SPEC §2b): the Euler–Lagrange torque of L
with the spring potential plus the dissipative forces equals the closed-form inverse dynamics;
the per-point float path equals the batched tensor path; forward dynamics inverts it."""

import pytest
import torch

from syrenets_ros.dynamics import euler_lagrange as el
from syrenets_ros.dynamics import pendulum

PARAMS = pendulum.PendulumParams()
ELEMENTS = pendulum.JointElements(stiffness=(20.0, 50.0), rest_angle=(0.3, -0.5),
                                  damping=(2.0, 0.7), friction=(1.5, 3.0), cogging=(0.3, 0.4), cogging_periods=6)


def _states(batch: int, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    return [(torch.rand(batch, 2, generator=gen, dtype=torch.float64) * 2 - 1) * torch.pi for _ in range(3)]


def test_euler_lagrange_of_spring_lagrangian_plus_dissipation_is_inverse_dynamics():
    q, qd, qdd = _states(256)
    conservative = el.torque(lambda a, b: pendulum.lagrangian(a, b, PARAMS, ELEMENTS), q, qd, qdd)
    b, c = (torch.tensor(v, dtype=torch.float64) for v in (ELEMENTS.damping, ELEMENTS.friction))
    expected = conservative + b * qd + c * torch.sign(qd)
    tau = pendulum.inverse_dynamics(q, qd, qdd, PARAMS, ELEMENTS)
    assert torch.allclose(tau, expected, rtol=0, atol=1e-10)
    rigid = pendulum.inverse_dynamics(q, qd, qdd, PARAMS)
    assert (tau - rigid).abs().min() > 1e-3, "the elements must change every torque here"


def test_point_function_equals_tensor_function():
    q, qd, qdd = _states(50, seed=1)
    qd[0] = 0.0  # sign(0) = 0 on both paths
    batched = pendulum.inverse_dynamics(q, qd, qdd, PARAMS, ELEMENTS)
    for i in range(len(q)):
        point = pendulum.inverse_dynamics_at(q[i].tolist(), qd[i].tolist(), qdd[i].tolist(), PARAMS, ELEMENTS)
        assert point == pytest.approx(batched[i].tolist(), abs=1e-12)


def test_forward_dynamics_inverts_inverse_dynamics_and_energy_holds_the_spring_and_the_cogging():
    q, qd, qdd = _states(64, seed=2)
    tau = pendulum.inverse_dynamics(q, qd, qdd, PARAMS, ELEMENTS)
    assert torch.allclose(pendulum.forward_dynamics(q, qd, tau, PARAMS, ELEMENTS), qdd, atol=1e-10)
    k, r, a = (torch.tensor(v, dtype=torch.float64) for v in (ELEMENTS.stiffness, ELEMENTS.rest_angle,
                                                                ELEMENTS.cogging))
    potential = (0.5 * k * (q - r) ** 2 + a * (1.0 - torch.cos(ELEMENTS.cogging_periods * q))).sum(-1)
    delta = pendulum.energy(q, qd, PARAMS, ELEMENTS) - pendulum.energy(q, qd, PARAMS)
    assert torch.allclose(delta, potential, atol=1e-12)


@pytest.mark.parametrize("changes, reason", [
    ({"stiffness": (1.0,)}, "needs 2 values"),
    ({"damping": (-1.0, 0.0)}, ">= 0"),
    ({"friction": (float("nan"), 0.0)}, "finite"),
    ({"rest_angle": (float("inf"), 0.0)}, "finite"),
    ({"cogging": (0.0, -0.1)}, ">= 0"),
    ({"cogging_periods": 0}, "cogging_periods must be an integer in 1..8"),
    ({"cogging_periods": 5.0}, "cogging_periods must be an integer"),
])
def test_invalid_elements_are_refused_with_a_reason(changes, reason):
    with pytest.raises(ValueError, match=reason):
        pendulum.JointElements(**changes).validate()


def test_elements_without_cogging_keep_the_width_of_their_joints():
    """A 7-joint arm's springs written without cogging stay 7 joints wide: a two-joint default
    would cut every per-joint sum to two joints."""
    arm = pendulum.JointElements(stiffness=(1.0,) * 7, rest_angle=(0.0,) * 7, damping=(0.5,) * 7,
                                 friction=(0.0,) * 7)
    arm.validate(7)
    assert arm.cogging == (0.0,) * 7 and len(arm.torque_at([0.1] * 7, [0.2] * 7)) == 7
    assert pendulum.JointElements() == pendulum.JointElements(cogging=(0.0, 0.0))
