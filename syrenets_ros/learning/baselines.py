"""The paper's baselines (Valle & Haddadin 2021, §4) in the same harness as SyReNet.

- :class:`TorqueNN`: a black-box MLP (5 hidden × 300 softplus). Inverse-dynamics mode predicts
  τ from (q, q̇, q̈); direct mode predicts L from (q, q̇).
- :class:`SysId`: the known structure of SPEC §2 with m1, l1, m2, l2 produced by a small net
  from a constant input (1 hidden layer of 64 softplus), as the paper does; torque through the
  Euler–Lagrange operator, L directly in direct mode.

Every model exposes ``loss(q, qd, qdd, tau)`` and ``torque(...)`` (and ``direct_loss(q, qd, L)``
and ``lagrangian(...)``); :func:`train_baseline` runs the paper's minibatch Adam with plateau
decay through the same :class:`~syrenets_ros.training.Trainer` as SyReNet.
"""

from __future__ import annotations

import time
from typing import Callable

import torch
from torch import nn

from syrenets_ros.dynamics import euler_lagrange

from syrenets_ros.dynamics import pendulum
from syrenets_ros.learning.training import TorqueData, Trainer


def _mlp(inputs: int, outputs: int, hidden: int, layers: int) -> nn.Sequential:
    modules: list[nn.Module] = []
    width = inputs
    for _ in range(layers):
        modules += [nn.Linear(width, hidden), nn.Softplus()]
        width = hidden
    modules.append(nn.Linear(width, outputs))
    return nn.Sequential(*modules)


class _Baseline(nn.Module):
    """Losses shared by the baselines; subclasses provide ``torque`` and ``lagrangian``."""

    def torque(self, q: torch.Tensor, qd: torch.Tensor, qdd: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def lagrangian(self, q: torch.Tensor, qd: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def loss(self, q: torch.Tensor, qd: torch.Tensor, qdd: torch.Tensor,
             tau: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        """Torque MSE, as (total, parts) like SyReNet.loss so the shared Trainer drives it."""
        mse = (self.torque(q, qd, qdd) - tau).square().mean()
        return mse, {"torque_mse": float(mse.detach())}

    def direct_loss(self, q: torch.Tensor, qd: torch.Tensor,
                    lagrangian: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        mse = (self.lagrangian(q, qd) - lagrangian).square().mean()
        return mse, {"lagrangian_mse": float(mse.detach())}


class TorqueNN(_Baseline):
    """The paper's NN baseline. ``direct=False``: τ = f(q, q̇, q̈); ``direct=True``: L = f(q, q̇)."""

    def __init__(self, n_joints: int = 2, *, direct: bool = False, hidden: int = 300, layers: int = 5) -> None:
        super().__init__()
        self.direct = direct
        self.net = _mlp((2 if direct else 3) * n_joints, 1 if direct else n_joints, hidden, layers)

    def torque(self, q: torch.Tensor, qd: torch.Tensor, qdd: torch.Tensor) -> torch.Tensor:
        if self.direct:
            return euler_lagrange.torque(lambda a, b: self.net(torch.cat((a, b)))[0], q, qd, qdd)
        return self.net(torch.cat((q, qd, qdd), -1))

    def lagrangian(self, q: torch.Tensor, qd: torch.Tensor) -> torch.Tensor:
        if not self.direct:
            raise ValueError("an inverse-dynamics NN has no Lagrangian")
        return self.net(torch.cat((q, qd), -1))[..., 0]


class SysId(_Baseline):
    """Known structure, unknown (m1, l1, m2, l2) = net(1); g stays 9.81 (the paper's setup)."""

    def __init__(self, hidden: int = 64, g: float = 9.81) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(1, hidden), nn.Softplus(), nn.Linear(hidden, 4))
        self.g = g

    def params(self) -> pendulum.PendulumParams:
        """The current estimate; its fields are tensors so gradients reach the net."""
        one = next(self.net.parameters()).new_ones(1)
        m1, l1, m2, l2 = self.net(one)
        return pendulum.PendulumParams(m1=m1, l1=l1, m2=m2, l2=l2, g=self.g)  # type: ignore[arg-type]

    def lagrangian(self, q: torch.Tensor, qd: torch.Tensor) -> torch.Tensor:
        return pendulum.lagrangian(q, qd, self.params())

    def torque(self, q: torch.Tensor, qd: torch.Tensor, qdd: torch.Tensor) -> torch.Tensor:
        params = self.params()
        return euler_lagrange.torque(lambda a, b: pendulum.lagrangian(a, b, params), q, qd, qdd)

    @torch.no_grad()
    def estimate(self) -> dict[str, float]:
        p = self.params()
        return {name: float(getattr(p, name)) for name in ("m1", "l1", "m2", "l2")}


def train_baseline(model: nn.Module, train_data: TorqueData, budget_s: float, seed: int = 0, *,
                   target: str = "torque", patience: int | None = 2000, lr: float = 1e-3,
                   batch_size: int = 32, validation_size: int = 1000, validate_every: int = 250,
                   max_steps: int | None = None,
                   progress_cb: Callable[[dict], None] | None = None) -> list[dict]:
    """Minibatch Adam (the shared :class:`Trainer`) for ``budget_s`` seconds or ``max_steps``.

    ``patience=None`` keeps the learning rate constant (the paper's SysId); otherwise it is
    divided by 10 after ``patience`` steps without validation improvement, down to 1e-5. The
    best state on a validation split carved from ``train_data`` is restored at the end.
    Returns the validation history.
    """
    if target not in ("torque", "lagrangian"):
        raise ValueError(f"target must be 'torque' or 'lagrangian', got {target!r}")
    parameter = next(model.parameters())
    data = train_data.to(parameter.device).to(parameter.dtype)
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(data), generator=generator).to(parameter.device)
    held_out = min(validation_size, len(data) // 5)  # small data sets still keep most for training
    validation, train = data.subset(order[:held_out]), data.subset(order[held_out:])
    if target == "torque":
        loss_fn = model.loss
        batch_of = lambda d: (d.q, d.qd, d.qdd, d.tau)  # noqa: E731
    else:
        loss_fn = model.direct_loss
        batch_of = lambda d: (d.q, d.qd, d.lagrangian)  # noqa: E731
    trainer = Trainer(model, lr=lr, patience=patience or 1, min_lr=1e-5 if patience else lr, loss_fn=loss_fn)
    history: list[dict] = []
    start = time.perf_counter()
    while True:
        elapsed = time.perf_counter() - start
        done = elapsed >= budget_s or (max_steps is not None and trainer.steps >= max_steps)
        if trainer.steps % validate_every == 0 or done:
            with torch.no_grad():  # torch.func transforms inside still differentiate
                metric = float(loss_fn(*batch_of(validation))[0])
            trainer.validate(metric)
            history.append({"step": trainer.steps, "time_s": elapsed, "lr": trainer.lr, "val_mse": metric})
            if progress_cb is not None:
                progress_cb(history[-1])
        if done:
            break
        index = torch.randint(len(train), (batch_size,), generator=generator).to(parameter.device)
        trainer.step(*batch_of(train.subset(index)))
    trainer.restore_best()
    return history
