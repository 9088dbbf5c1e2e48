"""The paper's baselines (Valle & Haddadin 2021, §4) in the same harness as SyReNet.

- :class:`TorqueNN`: a black-box MLP (5 hidden × 300 softplus). Inverse-dynamics mode predicts
  τ from (q, q̇, q̈); direct mode predicts L from (q, q̇).
- :class:`SysId`: the known structure of SPEC §2 with m1, l1, m2, l2 produced by a small net
  from a constant input (1 hidden layer of 64 softplus), as the paper does; torque through the
  Euler–Lagrange operator, L directly in direct mode.

Every model exposes ``loss(q, qd, qdd, tau)`` and ``torque(...)`` (or ``direct_loss(q, qd, L)``
and ``lagrangian(...)``); :func:`train` runs the paper's minibatch Adam with plateau decay.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from syrenets_ros import euler_lagrange, physics


def _mlp(inputs: int, outputs: int, hidden: int, layers: int) -> nn.Sequential:
    modules: list[nn.Module] = []
    width = inputs
    for _ in range(layers):
        modules += [nn.Linear(width, hidden), nn.Softplus()]
        width = hidden
    modules.append(nn.Linear(width, outputs))
    return nn.Sequential(*modules)


class TorqueNN(nn.Module):
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

    def loss(self, q: torch.Tensor, qd: torch.Tensor, qdd: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
        return (self.torque(q, qd, qdd) - tau).square().mean()

    def direct_loss(self, q: torch.Tensor, qd: torch.Tensor, lagrangian: torch.Tensor) -> torch.Tensor:
        return (self.lagrangian(q, qd) - lagrangian).square().mean()


class SysId(nn.Module):
    """Known structure, unknown (m1, l1, m2, l2) = net(1); g stays 9.81 (the paper's setup)."""

    def __init__(self, hidden: int = 64, g: float = 9.81) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(1, hidden), nn.Softplus(), nn.Linear(hidden, 4))
        self.g = g

    def params(self) -> physics.PendulumParams:
        """The current estimate; its fields are tensors so gradients reach the net."""
        one = next(self.net.parameters()).new_ones(1)
        m1, l1, m2, l2 = self.net(one)
        return physics.PendulumParams(m1=m1, l1=l1, m2=m2, l2=l2, g=self.g)  # type: ignore[arg-type]

    def lagrangian(self, q: torch.Tensor, qd: torch.Tensor) -> torch.Tensor:
        return physics.lagrangian(q, qd, self.params())

    def torque(self, q: torch.Tensor, qd: torch.Tensor, qdd: torch.Tensor) -> torch.Tensor:
        params = self.params()
        return euler_lagrange.torque(lambda a, b: physics.lagrangian(a, b, params), q, qd, qdd)

    def loss(self, q: torch.Tensor, qd: torch.Tensor, qdd: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
        return (self.torque(q, qd, qdd) - tau).square().mean()

    def direct_loss(self, q: torch.Tensor, qd: torch.Tensor, lagrangian: torch.Tensor) -> torch.Tensor:
        return (self.lagrangian(q, qd) - lagrangian).square().mean()

    @torch.no_grad()
    def estimate(self) -> dict[str, float]:
        p = self.params()
        return {name: float(getattr(p, name)) for name in ("m1", "l1", "m2", "l2")}


@dataclass
class TrainSettings:
    """The paper's optimiser: Adam, lr ÷10 after ``patience`` non-improving steps, floor 1e-5."""

    lr: float = 1e-3
    batch_size: int = 32
    patience: int | None = 2000  # None: constant learning rate (the paper's SysId)
    min_lr: float = 1e-5
    eval_every: int = 500
    eval_samples: int = 2000


def train(model: nn.Module, loss_fn: Callable[..., torch.Tensor], data: tuple[torch.Tensor, ...],
          budget_s: float, *, seed: int = 0, settings: TrainSettings = TrainSettings(),
          max_steps: int | None = None,
          progress_cb: Callable[[dict], None] | None = None) -> list[dict]:
    """Minibatch training for ``budget_s`` seconds (or ``max_steps``), keeping the best state.

    The plateau counter follows the smoothed training loss; the kept state is the one with the
    lowest loss on a fixed slice of the training data, evaluated every ``eval_every`` steps.
    Returns the evaluation history.
    """
    generator = torch.Generator().manual_seed(seed)
    n = data[0].shape[0]
    evaluation = tuple(t[: settings.eval_samples] for t in data)
    optimiser = torch.optim.Adam(model.parameters(), lr=settings.lr, betas=(0.9, 0.999))
    best_state, best_eval = copy.deepcopy(model.state_dict()), math.inf
    smoothed, best_smoothed, since_best = math.nan, math.inf, 0
    history: list[dict] = []
    start, step = time.monotonic(), 0
    while time.monotonic() - start < budget_s and (max_steps is None or step < max_steps):
        index = torch.randint(n, (settings.batch_size,), generator=generator)
        loss = loss_fn(*(t[index] for t in data))
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        step += 1
        value = float(loss.detach())
        smoothed = value if math.isnan(smoothed) else 0.99 * smoothed + 0.01 * value
        if smoothed < best_smoothed:
            best_smoothed, since_best = smoothed, 0
        else:
            since_best += 1
        if settings.patience is not None and since_best >= settings.patience:
            for group in optimiser.param_groups:
                group["lr"] = max(group["lr"] / 10.0, settings.min_lr)
            since_best, best_smoothed = 0, smoothed
        if step % settings.eval_every == 0:
            with torch.no_grad():  # torch.func transforms still differentiate inside
                current = float(loss_fn(*evaluation))
            if math.isfinite(current) and current < best_eval:
                best_eval, best_state = current, copy.deepcopy(model.state_dict())
            record = {"step": step, "time_s": time.monotonic() - start, "eval_loss": current,
                      "lr": optimiser.param_groups[0]["lr"]}
            history.append(record)
            if progress_cb is not None:
                progress_cb(record)
    with torch.no_grad():
        final = float(loss_fn(*evaluation))
    if math.isfinite(final) and final < best_eval:
        best_state = copy.deepcopy(model.state_dict())
    model.load_state_dict(best_state)
    return history
