"""Ground truth of a planar vertical chain of n uniform rods (issue 21), in the pendulum's
coordinates: q1 is the first rod from the downward vertical, every further q_i is rod i
*relative* to rod i − 1 (:mod:`syrenets_ros.dynamics.pendulum` is the case n = 2).

Why: every robot with more than two joints needs angles the double pendulum never shows —
the kinetic energy of rods a < b couples through cos(q_{a+1} + … + q_b) and the potential of
rod j carries cos(q_1 + … + q_j) — so the term grammar and the learner are checked against
this exact reference. In absolute angles θ_a = q_1 + … + q_a,

    T = ½ Σ_ab H_ab θ̇_a θ̇_b cos(θ_a − θ_b),    V = −Σ_j G_j cos θ_j,

with H and G from the rods' masses and lengths (:class:`ChainParams`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from syrenets_ros.dynamics.pendulum import JointVector, PendulumParams
from syrenets_ros.plant.excitation import MultiSine


@dataclass(frozen=True)
class ChainParams:
    """Masses [kg] and lengths [m] of the rods, root first, and gravity [m/s²]."""

    masses: JointVector
    lengths: JointVector
    g: float = 9.81

    @classmethod
    def from_pendulum(cls, p: PendulumParams) -> "ChainParams":
        """The double pendulum as a 2-link chain."""
        return cls((p.m1, p.m2), (p.l1, p.l2), p.g)

    def validate(self) -> None:
        """Raise ValueError naming the first non-physical value."""
        if not self.masses or len(self.masses) != len(self.lengths):
            raise ValueError(f"need one mass per length, got {len(self.masses)} and {len(self.lengths)}")
        for name, values in (("masses", self.masses), ("lengths", self.lengths)):
            if not all(math.isfinite(v) and v > 0.0 for v in values):
                raise ValueError(f"{name} must be finite and > 0, got {values!r}")
        if not math.isfinite(self.g):
            raise ValueError(f"g must be finite, got {self.g!r}")

    @property
    def n_links(self) -> int:
        return len(self.masses)

    def _outboard(self, j: int) -> float:
        """Mass beyond rod j: it hangs from rod j's tip."""
        return sum(self.masses[j + 1:])

    @property
    def inertia_coefficients(self) -> tuple[tuple[float, ...], ...]:
        """Symmetric H with T = ½ Σ_ab H_ab θ̇_a θ̇_b cos(θ_a − θ_b): rod a's own inertia about
        its joint plus the outboard mass at its tip on the diagonal; off it (a < b), rod a's tip
        carries rod b's centre and everything beyond. For n = 2: [[A, C], [C, B]]."""
        m, l = self.masses, self.lengths
        return tuple(tuple((m[a] / 3.0 + self._outboard(a)) * l[a] ** 2 if a == b
                           else l[a] * l[b] * (m[max(a, b)] / 2.0 + self._outboard(max(a, b)))
                           for b in range(self.n_links)) for a in range(self.n_links))

    @property
    def gravity_coefficients(self) -> JointVector:
        """G with V = −Σ_j G_j cos θ_j (rod j's centre plus the outboard mass at its tip)."""
        return tuple(self.g * l * (m / 2.0 + self._outboard(j))
                     for j, (m, l) in enumerate(zip(self.masses, self.lengths)))


def _coefficients(p: ChainParams, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return (torch.tensor(p.inertia_coefficients, dtype=like.dtype, device=like.device),
            torch.tensor(p.gravity_coefficients, dtype=like.dtype, device=like.device))


def lagrangian(q: torch.Tensor, qd: torch.Tensor, p: ChainParams) -> torch.Tensor:
    """L = T − V for inputs (..., n); returns (...). Per-sample use under torch.func works too."""
    inertia, gravity = _coefficients(p, q)
    theta, omega = q.cumsum(-1), qd.cumsum(-1)
    coupling = inertia * torch.cos(theta[..., :, None] - theta[..., None, :])
    kinetic = 0.5 * (omega[..., :, None] * coupling * omega[..., None, :]).sum((-1, -2))
    return kinetic + (gravity * torch.cos(theta)).sum(-1)


def inverse_dynamics(q: torch.Tensor, qd: torch.Tensor, qdd: torch.Tensor, p: ChainParams) -> torch.Tensor:
    """Closed-form τ(q, q̇, q̈), shape (..., n).

    In absolute angles τ_θa = Σ_b H_ab [cos(θ_a − θ_b) θ̈_b + sin(θ_a − θ_b) θ̇_b²] + G_a sin θ_a;
    joint i moves every rod from i on, so its torque is the sum of τ_θ over those rods."""
    inertia, gravity = _coefficients(p, q)
    theta, omega, alpha = q.cumsum(-1), qd.cumsum(-1), qdd.cumsum(-1)
    difference = theta[..., :, None] - theta[..., None, :]
    absolute = ((inertia * torch.cos(difference)) @ alpha[..., None]
                + (inertia * torch.sin(difference)) @ omega.square()[..., None])[..., 0]
    absolute = absolute + gravity * torch.sin(theta)
    return absolute.flip(-1).cumsum(-1).flip(-1)


@dataclass(frozen=True)
class ChainRecord:
    """A clean record of continuous motion sampled every ``period``: q, q̇, q̈ exact."""

    stamp: torch.Tensor  # (B,) s
    q: torch.Tensor  # (B, n)
    qd: torch.Tensor
    qdd: torch.Tensor  # exact (a table's q̈; a bag has none, and the learner takes weak rows)
    tau: torch.Tensor  # ID(q_k, q̇_k, q̈_k)


def multisine_record(p: ChainParams, excitation: MultiSine, seconds: float, period: float = 1e-3) -> ChainRecord:
    """The chain moving exactly along ``excitation`` for ``seconds``, sampled every ``period``,
    τ its inverse dynamics: a recording of a continuous-time robot, consistent in every
    convention (rows with the given q̈, and the weak form of a bag without it, are exact to
    rounding and to their quadrature)."""
    if len(excitation.amplitudes) != p.n_links:
        raise ValueError(f"the excitation drives {len(excitation.amplitudes)} joints, the chain has {p.n_links}")
    t = np.arange(round(seconds / period)) * period
    q, qd, qdd = (torch.from_numpy(v) for v in excitation.trajectory(t))
    return ChainRecord(torch.from_numpy(t), q, qd, qdd, inverse_dynamics(q, qd, qdd, p))
