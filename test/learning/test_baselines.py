"""The paper's baselines: short training lowers the loss; SysId's structure is the true one."""

import math

import pytest
import torch

from syrenets_ros.learning import baselines

from syrenets_ros.dynamics import pendulum
from syrenets_ros.learning.training import TorqueData, uniform_dataset

PARAMS = pendulum.PendulumParams()


def _data(count: int, seed: int, dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    q, qd, qdd = ((torch.rand(count, 2, generator=gen, dtype=dtype) * 2 - 1) * math.pi / 2 for _ in range(3))
    return q, qd, qdd, pendulum.inverse_dynamics(q, qd, qdd, PARAMS), pendulum.lagrangian(q, qd, PARAMS)


def _loss_on(model, data: TorqueData, direct: bool) -> float:
    with torch.no_grad():
        loss, _ = model.direct_loss(data.q, data.qd, data.lagrangian) if direct else model.loss(*data[:4])
    return float(loss)


@pytest.mark.parametrize("direct", [False, True])
def test_nn_short_training_lowers_loss(direct):
    torch.manual_seed(0)
    data = uniform_dataset(1000, seed=0, dtype=torch.float32)
    model = baselines.TorqueNN(direct=direct)
    before = _loss_on(model, data, direct)
    history = baselines.train_baseline(model, data, budget_s=math.inf, max_steps=300, validate_every=100,
                                       target="lagrangian" if direct else "torque")
    assert [h["step"] for h in history] == [0, 100, 200, 300]
    assert _loss_on(model, data, direct) < 0.5 * before


def test_nn_direct_mode_gives_torque_through_euler_lagrange():
    model = baselines.TorqueNN(direct=True).double()
    q, qd, qdd, _, _ = _data(8, 1)
    assert model.torque(q, qd, qdd).shape == (8, 2)
    with pytest.raises(ValueError):
        baselines.TorqueNN().lagrangian(q, qd)


def test_sysid_with_true_parameters_reproduces_the_physics():
    model = baselines.SysId().double()
    with torch.no_grad():  # make the net output the true parameters exactly
        model.net[2].weight.zero_()
        model.net[2].bias.copy_(torch.tensor([PARAMS.m1, PARAMS.l1, PARAMS.m2, PARAMS.l2], dtype=torch.float64))
    q, qd, qdd, tau, lagrangian = _data(64, 2)
    assert torch.allclose(model.torque(q, qd, qdd), tau, rtol=0, atol=1e-10)
    assert torch.allclose(model.lagrangian(q, qd), lagrangian, rtol=0, atol=1e-10)
    assert model.estimate() == pytest.approx({"m1": 3.0, "l1": 2.67, "m2": 1.0, "l2": 1.67})


@pytest.mark.parametrize("direct", [False, True])
def test_sysid_short_training_lowers_loss_at_constant_lr(direct):
    torch.manual_seed(0)
    data = uniform_dataset(1000, seed=3)
    model = baselines.SysId().double()
    before = _loss_on(model, data, direct)
    history = baselines.train_baseline(model, data, budget_s=math.inf, max_steps=300, patience=None,
                                       validate_every=50, target="lagrangian" if direct else "torque")
    assert {h["lr"] for h in history} == {1e-3}
    assert _loss_on(model, data, direct) < 0.5 * before
