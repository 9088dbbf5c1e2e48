"""The Euler–Lagrange operator against the closed-form double-pendulum dynamics (SPEC §2)."""

import pytest
import torch

from syrenets_ros.dynamics import euler_lagrange as el
from syrenets_ros.dynamics import pendulum

PARAMS = pendulum.PendulumParams()


def _true_lagrangian(q, qd):
    return pendulum.lagrangian(q, qd, PARAMS)


def _states(batch: int, seed: int = 0, dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    return [(torch.rand(batch, 2, generator=gen, dtype=dtype) * 2 - 1) * torch.pi for _ in range(3)]


def test_torque_matches_closed_form_inverse_dynamics():
    q, qd, qdd = _states(512)
    tau = el.torque(_true_lagrangian, q, qd, qdd)
    expected = pendulum.inverse_dynamics(q, qd, qdd, PARAMS)
    assert torch.allclose(tau, expected, rtol=0, atol=1e-10)


def test_transposed_hessian_would_be_detected():
    """The reference code's transposed ∂²L/∂q̇∂q differs from physics: our check can tell."""
    q, qd, qdd = _states(64, seed=1)
    hessian = torch.func.vmap(torch.func.jacfwd(torch.func.grad(_true_lagrangian, 1), 0))(q, qd)
    wrong = el.torque(_true_lagrangian, q, qd, qdd) - (hessian @ qd[..., None])[..., 0] \
        + (hessian.transpose(1, 2) @ qd[..., None])[..., 0]
    assert (wrong - pendulum.inverse_dynamics(q, qd, qdd, PARAMS)).abs().max() > 1e-3


def test_sample_alone_equals_sample_in_batch():
    q, qd, qdd = _states(100, seed=2)
    batch = el.torque(_true_lagrangian, q, qd, qdd)
    for i in (0, 37, 99):
        alone = el.torque(_true_lagrangian, q[i:i + 1], qd[i:i + 1], qdd[i:i + 1])
        assert torch.allclose(alone[0], batch[i], rtol=0, atol=1e-12)


def test_mass_matrix_forward_dynamics_and_energy():
    q, qd, qdd = _states(128, seed=3)
    assert torch.allclose(el.mass_matrix(_true_lagrangian, q, qd), pendulum.mass_matrix(q, PARAMS), atol=1e-12)
    tau = pendulum.inverse_dynamics(q, qd, qdd, PARAMS)
    assert torch.allclose(el.forward_dynamics(_true_lagrangian, q, qd, tau), qdd, atol=1e-10)
    assert torch.allclose(el.energy(_true_lagrangian, q, qd), pendulum.energy(q, qd, PARAMS), atol=1e-10)


def test_gradient_flows_to_captured_parameters():
    q, qd, qdd = _states(16, seed=4)
    scale = torch.tensor(1.5, dtype=torch.float64, requires_grad=True)
    tau = el.torque(lambda a, b: scale * _true_lagrangian(a, b), q, qd, qdd)
    tau.square().sum().backward()
    reference = pendulum.inverse_dynamics(q, qd, qdd, PARAMS)
    assert scale.grad == pytest.approx((2 * 1.5 * reference.square()).sum().item(), rel=1e-10)


def test_invalid_parameters_are_refused_with_a_reason():
    with pytest.raises(ValueError, match="m2 must be > 0"):
        PARAMS.with_changes(m2=-1.0)
    with pytest.raises(ValueError, match="l1 must be finite"):
        PARAMS.with_changes(l1=float("nan"))
