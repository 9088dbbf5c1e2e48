"""Ground-truth dynamics of the rod double pendulum (SPEC §2), in the simulator's coordinates.

Angles are URDF joint angles: q1 is the first rod from the downward vertical, q2 is the
second rod *relative* to the first. Everything here is plain PyTorch so it can serve as the
reference the Euler–Lagrange operator, the simulator and the learner are checked against.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

import torch

JOINT_NAMES: tuple[str, str] = ("joint1", "joint2")


@dataclass(frozen=True)
class PendulumParams:
    """Physical parameters; defaults are the paper's (Valle & Haddadin 2021)."""

    m1: float = 3.0
    l1: float = 2.67
    m2: float = 1.0
    l2: float = 1.67
    g: float = 9.81

    def validate(self) -> None:
        """Raise ValueError naming the first non-physical value."""
        for name, value in asdict(self).items():
            if not math.isfinite(value):
                raise ValueError(f"{name} must be finite, got {value!r}")
            if name != "g" and value <= 0.0:
                raise ValueError(f"{name} must be > 0, got {value!r}")

    def with_changes(self, **changes: float) -> "PendulumParams":
        new = replace(self, **changes)
        new.validate()
        return new

    @property
    def inertia_coefficients(self) -> tuple[float, float, float]:
        """(A, B, C) with T = ½A q̇1² + ½B (q̇1+q̇2)² + C q̇1(q̇1+q̇2) cos q2."""
        a = (self.m1 / 3.0 + self.m2) * self.l1**2
        b = (self.m2 / 3.0) * self.l2**2
        c = 0.5 * self.m2 * self.l1 * self.l2
        return a, b, c

    @property
    def gravity_coefficients(self) -> tuple[float, float]:
        """(D, E) with potential V = −D cos q1 − E cos(q1+q2)."""
        return (self.m1 / 2.0 + self.m2) * self.g * self.l1, (self.m2 / 2.0) * self.g * self.l2


def lagrangian(q: torch.Tensor, qd: torch.Tensor, p: PendulumParams) -> torch.Tensor:
    """L(q, q̇) for inputs of shape (..., 2); returns shape (...)."""
    a, b, c = p.inertia_coefficients
    d, e = p.gravity_coefficients
    q1, q2 = q[..., 0], q[..., 1]
    w1, w2 = qd[..., 0], qd[..., 1]
    kinetic = 0.5 * a * w1**2 + 0.5 * b * (w1 + w2) ** 2 + c * w1 * (w1 + w2) * torch.cos(q2)
    return kinetic + d * torch.cos(q1) + e * torch.cos(q1 + q2)


def energy(q: torch.Tensor, qd: torch.Tensor, p: PendulumParams) -> torch.Tensor:
    """Total mechanical energy T + V, shape (...)."""
    a, b, c = p.inertia_coefficients
    d, e = p.gravity_coefficients
    q1, q2 = q[..., 0], q[..., 1]
    w1, w2 = qd[..., 0], qd[..., 1]
    kinetic = 0.5 * a * w1**2 + 0.5 * b * (w1 + w2) ** 2 + c * w1 * (w1 + w2) * torch.cos(q2)
    return kinetic - d * torch.cos(q1) - e * torch.cos(q1 + q2)


def mass_matrix(q: torch.Tensor, p: PendulumParams) -> torch.Tensor:
    """Closed-form M(q), shape (..., 2, 2)."""
    a, b, c = p.inertia_coefficients
    cos2 = torch.cos(q[..., 1])
    m11 = a + b + 2.0 * c * cos2
    m12 = b + c * cos2
    m22 = torch.full_like(cos2, b)
    return torch.stack((torch.stack((m11, m12), -1), torch.stack((m12, m22), -1)), -2)


def bias_torque(q: torch.Tensor, qd: torch.Tensor, p: PendulumParams) -> torch.Tensor:
    """Coriolis/centrifugal plus gravity torque C(q, q̇)q̇ + G(q), shape (..., 2)."""
    _, _, c = p.inertia_coefficients
    d, e = p.gravity_coefficients
    q1, q2 = q[..., 0], q[..., 1]
    w1, w2 = qd[..., 0], qd[..., 1]
    s2 = torch.sin(q2)
    coriolis1 = -c * s2 * (2.0 * w1 * w2 + w2**2)
    coriolis2 = c * s2 * w1**2
    gravity2 = e * torch.sin(q1 + q2)
    gravity1 = d * torch.sin(q1) + gravity2
    return torch.stack((coriolis1 + gravity1, coriolis2 + gravity2), -1)


def inverse_dynamics(
    q: torch.Tensor, qd: torch.Tensor, qdd: torch.Tensor, p: PendulumParams
) -> torch.Tensor:
    """Closed-form τ = M(q)q̈ + C(q, q̇)q̇ + G(q), shape (..., 2)."""
    return (mass_matrix(q, p) @ qdd.unsqueeze(-1)).squeeze(-1) + bias_torque(q, qd, p)


def forward_dynamics(
    q: torch.Tensor, qd: torch.Tensor, tau: torch.Tensor, p: PendulumParams
) -> torch.Tensor:
    """Closed-form q̈ = M(q)⁻¹(τ − C q̇ − G), shape (..., 2)."""
    rhs = (tau - bias_torque(q, qd, p)).unsqueeze(-1)
    return torch.linalg.solve(mass_matrix(q, p), rhs).squeeze(-1)
