"""Planar n-link rod chain (issue 21): its Lagrangian's Euler–Lagrange torque is its closed-form
inverse dynamics, two links are exactly the double pendulum, and a record is continuous motion
sampled with its exact derivatives and inverse dynamics."""

import math

import pytest
import torch

from syrenets_ros.dynamics import chain, pendulum
from syrenets_ros.dynamics import euler_lagrange as el
from syrenets_ros.plant.excitation import MultiSine

PENDULUM = pendulum.PendulumParams()
CHAINS = {3: chain.ChainParams((3.0, 1.0, 0.5), (2.67, 1.67, 1.2)),
          4: chain.ChainParams((3.0, 1.0, 0.5, 0.4), (2.67, 1.67, 1.2, 1.0))}


def _states(batch: int, n: int, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    return [(torch.rand(batch, n, generator=gen, dtype=torch.float64) * 2 - 1) * torch.pi for _ in range(3)]


def test_two_links_are_the_double_pendulum():
    two = chain.ChainParams.from_pendulum(PENDULUM)
    a, b, c = PENDULUM.inertia_coefficients
    inertia = two.inertia_coefficients
    assert [*inertia[0], *inertia[1]] == pytest.approx([a, c, c, b])
    assert two.gravity_coefficients == pytest.approx(PENDULUM.gravity_coefficients)
    q, qd, qdd = _states(256, 2)
    assert torch.allclose(chain.lagrangian(q, qd, two), pendulum.lagrangian(q, qd, PENDULUM), rtol=0, atol=1e-12)
    expected = pendulum.inverse_dynamics(q, qd, qdd, PENDULUM)
    assert torch.allclose(chain.inverse_dynamics(q, qd, qdd, two), expected, rtol=0, atol=1e-12)
    assert torch.allclose(el.torque(lambda x, v: chain.lagrangian(x, v, two), q, qd, qdd), expected,
                          rtol=0, atol=1e-12)


@pytest.mark.parametrize("n", [3, 4])
def test_euler_lagrange_of_the_chain_lagrangian_is_its_inverse_dynamics(n):
    params = CHAINS[n]
    q, qd, qdd = _states(256, n, seed=n)
    tau = chain.inverse_dynamics(q, qd, qdd, params)
    assert torch.allclose(el.torque(lambda x, v: chain.lagrangian(x, v, params), q, qd, qdd), tau,
                          rtol=0, atol=1e-11)
    # ... and the outermost rod matters: a lighter one changes every joint's torque.
    lighter = chain.ChainParams(params.masses[:-1] + (0.5 * params.masses[-1],), params.lengths)
    assert (chain.inverse_dynamics(q, qd, qdd, lighter) - tau).abs().amin(0).min() > 0


def test_record_is_the_motion_sampled_with_its_inverse_dynamics():
    params = CHAINS[3]
    excitation = MultiSine.from_seed(0, 1.0, 0.2, joints=3)
    record = chain.multisine_record(params, excitation, 2.0)
    assert record.q.shape == (2000, 3) and float(record.stamp[-1]) == pytest.approx(1.999)
    q, qd, qdd = excitation.sample(1.234)
    assert record.q[1234].tolist() == pytest.approx(q, abs=1e-12)
    assert record.qd[1234].tolist() == pytest.approx(qd, abs=1e-12)
    assert record.qdd[1234].tolist() == pytest.approx(qdd, abs=1e-12)
    tau = chain.inverse_dynamics(record.q, record.qd, record.qdd, params)
    assert torch.equal(record.tau, tau)


@pytest.mark.parametrize("params, reason", [
    (chain.ChainParams((1.0, 1.0), (1.0,)), "one mass per length"),
    (chain.ChainParams((), ()), "one mass per length"),
    (chain.ChainParams((1.0, -1.0), (1.0, 1.0)), "masses"),
    (chain.ChainParams((1.0,), (math.nan,)), "lengths"),
    (chain.ChainParams((1.0,), (1.0,), math.inf), "g must be finite"),
])
def test_invalid_chains_are_refused_with_a_reason(params, reason):
    with pytest.raises(ValueError, match=reason):
        params.validate()


def test_record_needs_one_excitation_per_joint():
    with pytest.raises(ValueError, match="drives 2 joints"):
        chain.multisine_record(CHAINS[3], MultiSine.from_seed(0), 1.0)
