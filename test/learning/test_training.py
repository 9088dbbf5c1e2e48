"""Trainer and train_syrenet: learning happens, bad steps are dropped, plateaus decay."""

import math

import pytest
import torch
from torch import nn

from syrenets_ros.dynamics import pendulum
from syrenets_ros.learning.syrenet import FrozenSyReNet, SyReNet, SyReNetConfig
from syrenets_ros.learning.training import Trainer, TorqueData, frozen_mse, select_device, train_syrenet, uniform_dataset

SMALL = SyReNetConfig(layers=2, heads=4, ae_hidden=32, latent=8, head_hidden=16)


def test_cuda_request_without_cuda_is_a_clear_error():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ValueError, match="CUDA is not available"):
        select_device("cuda")
    assert select_device("auto") == torch.device("cpu")
    assert select_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="unknown device|unsupported device"):
        select_device("tpu")


def test_uniform_dataset_is_the_papers_distribution():
    data = uniform_dataset(2000, seed=3)
    assert data.q.abs().max() <= math.pi / 2 and data.qdd.abs().max() <= math.pi / 2
    params = pendulum.PendulumParams()
    assert torch.allclose(data.tau, pendulum.inverse_dynamics(data.q, data.qd, data.qdd, params))
    assert torch.allclose(data.lagrangian, pendulum.lagrangian(data.q, data.qd, params))


def test_short_training_lowers_the_torque_error():
    torch.manual_seed(0)
    data = uniform_dataset(512, seed=1)
    model = SyReNet(SMALL)
    trainer = Trainer(model, lr=3e-3)
    before = model.loss(data.q, data.qd, data.qdd, data.tau)[1]["torque_mse"]
    gen = torch.Generator().manual_seed(0)
    for _ in range(60):
        index = torch.randint(512, (32,), generator=gen)
        result = trainer.step(data.q[index], data.qd[index], data.qdd[index], data.tau[index])
        assert result.applied
    after = model.loss(data.q, data.qd, data.qdd, data.tau)[1]["torque_mse"]
    assert after < 0.5 * before
    assert trainer.steps == 60 and trainer.dropped == 0


def test_non_finite_batch_is_dropped_and_nothing_changes():
    torch.manual_seed(0)
    data = uniform_dataset(64, seed=2)
    model = SyReNet(SMALL)
    trainer = Trainer(model)
    trainer.step(data.q[:32], data.qd[:32], data.qdd[:32], data.tau[:32])
    params = {k: v.clone() for k, v in model.state_dict().items()}
    optimiser = {k: v.clone() for k, v in trainer.optimizer.state[model.layers[0].scale].items()}
    bad_tau = data.tau[32:].clone()
    bad_tau[3, 1] = float("nan")
    result = trainer.step(data.q[32:], data.qd[32:], data.qdd[32:], bad_tau)
    assert not result.applied and result.reason == "non-finite loss"
    huge = data.qdd[32:] * 1e300
    result = trainer.step(data.q[32:], data.qd[32:], huge, data.tau[32:])
    assert not result.applied and result.reason.startswith("non-finite")
    assert trainer.dropped == 2 and trainer.steps == 1
    assert all(torch.equal(params[k], v) for k, v in model.state_dict().items())
    state = trainer.optimizer.state[model.layers[0].scale]
    assert all(torch.equal(optimiser[k], state[k]) for k in optimiser)
    assert trainer.step(data.q[:32], data.qd[:32], data.qdd[:32], data.tau[:32]).applied


class _Line(nn.Module):
    """Any module with a .loss works with the Trainer (the distillation baselines do this)."""

    def __init__(self):
        super().__init__()
        self.slope = nn.Parameter(torch.zeros(()))

    def loss(self, x, y):
        error = ((self.slope * x - y) ** 2).mean()
        return error, {"mse": error.item()}


def test_plateau_decays_the_rate_and_best_state_is_restored():
    model = _Line()
    trainer = Trainer(model, lr=0.1, patience=3, decay=0.1, min_lr=1e-3)
    x = torch.linspace(-1, 1, 16)
    for _ in range(5):
        trainer.step(x, 2.0 * x)
    assert trainer.validate(1.0)
    best = model.slope.item()
    for _ in range(3):
        trainer.step(x, 2.0 * x)
    assert not trainer.validate(2.0)
    assert trainer.lr == pytest.approx(0.01) and trainer.decays == 1
    for _ in range(30):
        trainer.step(x, 2.0 * x)
        trainer.validate(5.0)
    assert trainer.lr == pytest.approx(1e-3)  # floored at min_lr
    assert trainer.restore_best() and model.slope.item() == best
    assert trainer.best_state()["slope"].item() == best


def test_train_syrenet_returns_a_frozen_model_and_history():
    train = uniform_dataset(1200, seed=4)
    test = uniform_dataset(300, seed=5)
    seen = []
    model, frozen, history = train_syrenet(train, test, budget_s=120.0, seed=0, device="cpu",
                                           progress_cb=seen.append, config=SMALL, max_steps=40,
                                           validation_size=200, validate_every=20)
    assert isinstance(model, SyReNet) and isinstance(frozen, FrozenSyReNet)
    assert [h["step"] for h in history] == [0, 20, 40] and seen == history
    assert history[-1]["best_val_mse"] < history[0]["val_mse"]
    assert history[-1]["best_test_mse"] == frozen_mse(frozen, test) < history[0]["test_mse"]
    assert history[-1]["lr"] < 1e-3  # annealed within the step budget
    with pytest.raises(ValueError, match="needs train_data.lagrangian"):
        train_syrenet(TorqueData(*train[:4]), None, 1.0, target="lagrangian")


def test_direct_mode_learns_the_lagrangian_value():
    train = uniform_dataset(1200, seed=6)
    _, frozen, history = train_syrenet(tuple(train), train.subset(slice(0, 300)), budget_s=120.0, config=SMALL,
                                       target="lagrangian", lr=1e-2, max_steps=30, validation_size=200,
                                       validate_every=10)
    assert history[-1]["best_val_mse"] < 0.5 * history[0]["val_mse"]
    assert history[-1]["best_test_mse"] == pytest.approx(
        (frozen.lagrangian(train.q[:300], train.qd[:300]) - train.lagrangian[:300]).square().mean().item())
