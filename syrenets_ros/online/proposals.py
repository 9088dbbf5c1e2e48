"""The network's part in learning (SPEC §3): the SyReNet keeps training on the stream and
*proposes* structure — terms the grammar lacks — which an exact refit then carries or not.

Once a term model is served the network learns what that model misses (the residual torque),
so its frozen expression is the open-ended source of the structure no enumeration reaches
(a frequency the grammar lacks, compositions like q̇²·P(q)): the terms it is made of and those
its torques project on are proposed to the refit (:meth:`NetworkProposals.candidates`).
Off by default since issue 22 (3x the CPU of `learn`); kept apart from the loop so that the
loop reads the same with it on or off.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Callable

import torch

from syrenets_ros.dynamics.euler_lagrange import LagrangianFn
from syrenets_ros.learning import integral
from syrenets_ros.learning.regression import propose_terms
from syrenets_ros.learning.syrenet import FrozenSyReNet, SyReNet, SyReNetConfig
from syrenets_ros.learning.terms import TermModel
from syrenets_ros.learning.training import StepResult, Trainer
from syrenets_ros.online.guard import integral_rmse, outside_states
from syrenets_ros.online.stream import Batch

# The network is consulted (its terms proposed, one refit each time) only when what it predicts
# has a held-out RMSE this factor below the model it must beat. A residual network always fits
# some noise, but noise it fitted does not recur on the holdout: to lower the RMSE by 1.5x its
# prediction must correlate 0.75 with held-out noise it never saw, ~3σ on the ~20 independent
# rows of a 1 s holdout. Structure the served model misses lowers it for good.
CONSULTED_WHEN_BETTER = 1.5
SAMPLES = 256  # states the network is frozen at and projected on, spread over the fit data


class WithResidual:
    """A served term model plus the network trained on its residual: what both predict
    together, scored on integral rows like any model (never served: it has no payload)."""

    def __init__(self, served: TermModel, residual: FrozenSyReNet) -> None:
        self.served = served
        self.residual = residual

    def torque(self, q: torch.Tensor, qd: torch.Tensor, qdd: torch.Tensor) -> torch.Tensor:
        base = self.served.torque(q, qd, qdd)
        return base + self.residual.torque(q, qd, qdd).to(base)

    def lagrangian(self, q: torch.Tensor, qd: torch.Tensor) -> torch.Tensor:
        base = self.served.lagrangian(q, qd)
        return base + self.residual.lagrangian(q, qd).to(base)

    def lagrangian_fn(self) -> LagrangianFn:
        """The sum of both Lagrangians (weak-form rows differentiate it)."""
        return self.lagrangian

    def dissipation_fn(self):
        """The served model's dissipation (the network's L has none)."""
        return self.served.dissipation_fn()


def closer_outside(grown, base, reference, fit: Batch, generator: torch.Generator) -> bool:
    """Admit network-proposed terms only if the refit carrying them agrees with ``reference``
    (the network, or the served model plus its residual network) better than the plain refit
    does on states outside the recently visited envelope (:func:`guard.outside_states`)."""
    q, qd, qdd = outside_states(fit, generator)
    with torch.no_grad():
        target = reference.torque(q, qd, qdd).to(torch.float64)
    distance = [float((m.torque(q, qd, qdd) - target).square().mean()) for m in (grown, base)]
    return distance[0] < distance[1]


class NetworkProposals:
    """The SyReNet of ``n_joints`` on ``device``, trained on integral rows of
    ``train_window`` samples with ``batch_size`` samples per selector step (:meth:`step`), and
    the candidates it adds at a selection (:meth:`candidates`). Built when first needed, from ``seed``."""

    def __init__(self, n_joints: int, device: torch.device, seed: int, train_window: int, batch_size: int) -> None:
        self.n_joints = n_joints
        self.device = device
        self.seed = seed
        self.train_window = train_window
        self.batch_size = batch_size

    @functools.cached_property
    def network(self) -> SyReNet:
        """The SyReNet, built when first needed (1.7 s of a 25 s `learn` without it), from the
        seed however late."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            return SyReNet(SyReNetConfig(n_joints=self.n_joints)).to(self.device)

    @functools.cached_property
    def trainer(self) -> Trainer:
        # Trained on integral rows (SPEC §2b): per-sample q̈ under sensor noise is as large as
        # the signal, and a per-sample torque MSE would mostly fit that noise.
        return Trainer(self.network, loss_fn=lambda *batch: self.network.integral_loss(
            *batch, window=self.train_window, selection_size=self.batch_size))

    def step(self, batch: Batch, served: TermModel | None) -> StepResult:
        """One training step on ``batch`` (windows of the buffer, on the CPU): on the residual
        τ − τ_served(q, q̇, q̈) that the ``served`` term model leaves, so the network models
        only what that model misses; on τ itself before one is served."""
        if served is not None:
            with torch.no_grad():
                batch = dataclasses.replace(batch, tau=batch.tau - served.torque(batch.q, batch.qd, batch.qdd))
        batch = batch.to(self.device)
        return self.trainer.step(batch.q, batch.qd, batch.qdd, batch.tau)

    def candidates(self, fit: Batch, holdout: Batch, library_model, served: TermModel | None, library,
                   rows: integral.RowForm, refit: Callable[[list], object], generator: torch.Generator, stats
                   ) -> list[tuple[str, object]]:
        """("network_guided") the refit of ``library`` plus the terms the network proposes
        when that refit agrees with what the network predicts outside the data better than
        ``library_model`` does (else ``library_model``); before a model is ``served``, also the
        raw network ("network"). What the network predicts is the served model plus its
        residual, or itself before one is served; it is consulted only when that predicts the
        holdout :data:`CONSULTED_WHEN_BETTER` times better than the served model (than ``library_model`` before
        one is served): an untrained network's projection proposes noise, and each proposal
        costs a refit. ``refit`` fits given columns on ``fit``. The admitted terms go to
        ``stats.admitted_terms``, the two held-out RMSEs to ``stats.network_rmse`` and
        ``stats.network_rival_rmse``."""
        index = torch.linspace(0, len(fit) - 1, min(SAMPLES, len(fit))).round().long()
        q, qd, qdd = (t[index] for t in (fit.q, fit.qd, fit.qdd))
        frozen = self.network.freeze(q.to(self.device), qd.to(self.device)).to(torch.device("cpu"))
        predicted, rival = (frozen, library_model) if served is None else (WithResidual(served, frozen), served)
        stats.network_rmse = integral_rmse(predicted, holdout, rows)
        stats.network_rival_rmse = integral_rmse(rival, holdout, rows)
        guided = library_model
        if CONSULTED_WHEN_BETTER * stats.network_rmse < stats.network_rival_rmse:
            proposed = propose_terms(frozen.lagrangian_fn(), library, q, qd, qdd, expression=frozen.expression())
            if proposed:
                grown = refit(list(library.columns) + proposed)
                if closer_outside(grown, library_model, predicted, fit, generator):
                    guided = grown
                    stats.admitted_terms = [t.name for t in proposed if t in grown.terms]
        return ([("network", frozen)] if served is None else []) + [("network_guided", guided)]
