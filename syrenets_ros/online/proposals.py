"""The network's part in learning (SPEC §3): the SyReNet keeps training on the stream and
*proposes* structure — terms the grammar lacks — which an exact refit then carries or not.

Off by default since issue 22 (never needed so far, 3x the CPU of `learn`); kept apart from the
loop so that the loop reads the same with it on or off.
"""

from __future__ import annotations

import functools
from typing import Callable

import torch

from syrenets_ros.learning import integral
from syrenets_ros.learning.regression import propose_terms
from syrenets_ros.learning.syrenet import SyReNet, SyReNetConfig
from syrenets_ros.learning.training import Trainer
from syrenets_ros.online.guard import integral_rmse, outside_states
from syrenets_ros.online.stream import Batch


def closer_outside(grown, base, network, fit: Batch, generator: torch.Generator) -> bool:
    """Admit network-proposed terms only if the refit carrying them agrees with the network
    better than the plain refit does on states outside the recently visited envelope
    (:func:`guard.outside_states`)."""
    q, qd, qdd = outside_states(fit, generator)
    with torch.no_grad():
        reference = network.torque(q, qd, qdd).to(torch.float64)
    distance = [float((m.torque(q, qd, qdd) - reference).square().mean()) for m in (grown, base)]
    return distance[0] < distance[1]


class NetworkProposals:
    """The SyReNet of ``n_joints`` on ``device``, trained on integral rows of
    ``train_window`` samples with ``batch_size`` samples per selector step, and the candidates
    it adds at a selection (:meth:`candidates`). Built when first needed, from ``seed``."""

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

    def candidates(self, fit: Batch, holdout: Batch, library_model, library, rows: integral.RowForm,
                   refit: Callable[[list], object], generator: torch.Generator, stats
                   ) -> list[tuple[str, object]]:
        """The raw network ("network"), and ("network_guided") the refit of ``library`` plus the
        terms the network proposes when that refit agrees with the network outside the data
        better than ``library_model`` does (else ``library_model``); ``refit`` fits given
        columns on ``fit``. The admitted terms go to ``stats.admitted_terms``."""
        reference = fit.to(self.device)
        frozen = self.network.freeze(reference.q[-256:], reference.qd[-256:]).to(torch.device("cpu"))
        guided = library_model
        # The network proposes structure only once it predicts held-out torques better than
        # the library can: then it found something the grammar lacks (an untrained
        # network's projection proposes noise, and each proposal costs a refit).
        proposed = []
        if integral_rmse(frozen, holdout, rows) < integral_rmse(library_model, holdout, rows):
            proposed = propose_terms(frozen.lagrangian_fn(), library, fit.q[-256:], fit.qd[-256:], fit.qdd[-256:])
        if proposed:
            grown = refit(list(library.columns) + proposed)
            if closer_outside(grown, library_model, frozen, fit, generator):
                guided = grown
                stats.admitted_terms = [t.name for t in proposed if t in grown.terms]
        return [("network", frozen), ("network_guided", guided)]
