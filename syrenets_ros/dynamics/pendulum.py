"""Ground-truth dynamics of the rod double pendulum (SPEC §2), in the simulator's coordinates.

Angles are URDF joint angles: q1 is the first rod from the downward vertical, q2 is the
second rod *relative* to the first. Everything here is plain PyTorch so it can serve as the
reference the Euler–Lagrange operator, the simulator and the learner are checked against.

Beyond the rigid pendulum (SPEC §2b), :class:`JointElements` adds per-joint springs (a
potential, so part of L), viscous damping and Coulomb friction (generalised forces no
Lagrangian holds). The closed forms are written once over plain arithmetic, so the batched
PyTorch functions and the per-point float function the simulator calls 1000 times a second
(``inverse_dynamics_at``, ~50× cheaper than a one-sample tensor call) share every formula.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields, replace
from functools import cached_property

import torch

JOINT_NAMES: tuple[str, str] = ("joint1", "joint2")
JointVector = tuple[float, ...]


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


@dataclass(frozen=True)
class JointElements:
    """Per-joint passive elements (SPEC §2b); all zeros = the rigid pendulum. The motor must
    add ``k⊙(q − r) + b⊙q̇ + c⊙sign(q̇)`` to the rigid inverse dynamics."""

    stiffness: JointVector = (0.0, 0.0)  # k [N·m/rad]: spring potential ½k(q − r)²
    rest_angle: JointVector = (0.0, 0.0)  # r [rad]: where the spring is relaxed
    damping: JointVector = (0.0, 0.0)  # b [N·m·s/rad]: viscous
    friction: JointVector = (0.0, 0.0)  # c [N·m]: Coulomb

    @classmethod
    def rigid(cls, joints: int) -> "JointElements":
        """No element on any of ``joints`` joints (a robot from a URDF has n of them)."""
        zeros = (0.0,) * joints
        return cls(zeros, zeros, zeros, zeros)

    def validate(self, joints: int | None = None) -> None:
        """Raise ValueError naming the first bad field: one finite value per joint (``joints``
        of them; by default as many as the longest field), and k, b, c ≥ 0 (a negative one
        feeds energy in)."""
        count = joints if joints is not None else max(len(getattr(self, item.name)) for item in fields(self))
        for item in fields(self):
            values = getattr(self, item.name)
            if len(values) != count:
                raise ValueError(f"{item.name} needs {count} values, got {len(values)}")
            if not all(math.isfinite(v) for v in values):
                raise ValueError(f"{item.name} must be finite, got {values!r}")
            if item.name != "rest_angle" and min(values) < 0.0:
                raise ValueError(f"{item.name} must be >= 0, got {values!r}")

    @cached_property
    def is_rigid(self) -> bool:
        """No element acts (checked once: the simulator asks every step)."""
        return not any(self.stiffness) and not any(self.damping) and not any(self.friction)

    def torque_at(self, q: Sequence[float], qd: Sequence[float]) -> JointVector:
        """k⊙(q − r) + b⊙q̇ + c⊙sign(q̇) at one state, as floats (sign(0) = 0)."""
        return tuple(k * (qi - r) + b * w + c * ((w > 0.0) - (w < 0.0))
                     for k, r, b, c, qi, w in zip(self.stiffness, self.rest_angle, self.damping,
                                                  self.friction, q, qd))

    def torque(self, q: torch.Tensor, qd: torch.Tensor) -> torch.Tensor:
        """The same for tensors of shape (..., n)."""
        k, r, b, c = (torch.tensor(v, dtype=q.dtype, device=q.device)
                      for v in (self.stiffness, self.rest_angle, self.damping, self.friction))
        return k * (q - r) + b * qd + c * torch.sign(qd)

    def spring_potential(self, q: torch.Tensor) -> torch.Tensor:
        """Σ ½k(q − r)², shape (...)."""
        k, r = (torch.tensor(v, dtype=q.dtype, device=q.device) for v in (self.stiffness, self.rest_angle))
        return (0.5 * k * (q - r) ** 2).sum(-1)


RIGID = JointElements()


def lagrangian(q: torch.Tensor, qd: torch.Tensor, p: PendulumParams,
               joints: JointElements = RIGID) -> torch.Tensor:
    """L(q, q̇) = T − V − Σ½k(q − r)² for inputs of shape (..., 2); returns shape (...).
    Damping and friction are not part of any L: see :func:`inverse_dynamics`."""
    return _kinetic(q, qd, p) - _gravity_potential(q, p) - joints.spring_potential(q)


def energy(q: torch.Tensor, qd: torch.Tensor, p: PendulumParams,
           joints: JointElements = RIGID) -> torch.Tensor:
    """Total mechanical energy T + V + Σ½k(q − r)², shape (...)."""
    return _kinetic(q, qd, p) + _gravity_potential(q, p) + joints.spring_potential(q)


def _kinetic(q: torch.Tensor, qd: torch.Tensor, p: PendulumParams) -> torch.Tensor:
    a, b, c = p.inertia_coefficients
    w1, w2 = qd[..., 0], qd[..., 1]
    return 0.5 * a * w1**2 + 0.5 * b * (w1 + w2) ** 2 + c * w1 * (w1 + w2) * torch.cos(q[..., 1])


def _gravity_potential(q: torch.Tensor, p: PendulumParams) -> torch.Tensor:
    d, e = p.gravity_coefficients
    return -d * torch.cos(q[..., 0]) - e * torch.cos(q[..., 0] + q[..., 1])


def _mass_entries(cos2, p: PendulumParams):
    """(M11, M12, M22) from cos q2: plain arithmetic, for floats and tensors alike."""
    a, b, c = p.inertia_coefficients
    return a + b + 2.0 * c * cos2, b + c * cos2, b


def _bias_entries(sin1, sin2, sin12, w1, w2, p: PendulumParams):
    """C(q, q̇)q̇ + G(q) per joint from sin q1, sin q2, sin(q1+q2) and q̇: plain arithmetic."""
    _, _, c = p.inertia_coefficients
    d, e = p.gravity_coefficients
    gravity2 = e * sin12
    return (-c * sin2 * (2.0 * w1 * w2 + w2**2) + d * sin1 + gravity2,
            c * sin2 * w1**2 + gravity2)


def mass_matrix(q: torch.Tensor, p: PendulumParams) -> torch.Tensor:
    """Closed-form M(q), shape (..., 2, 2)."""
    cos2 = torch.cos(q[..., 1])
    m11, m12, b = _mass_entries(cos2, p)
    m22 = torch.full_like(cos2, b)
    return torch.stack((torch.stack((m11, m12), -1), torch.stack((m12, m22), -1)), -2)


def bias_torque(q: torch.Tensor, qd: torch.Tensor, p: PendulumParams) -> torch.Tensor:
    """Coriolis/centrifugal plus gravity torque C(q, q̇)q̇ + G(q), shape (..., 2)."""
    q1, q2 = q[..., 0], q[..., 1]
    entries = _bias_entries(torch.sin(q1), torch.sin(q2), torch.sin(q1 + q2), qd[..., 0], qd[..., 1], p)
    return torch.stack(entries, -1)


def inverse_dynamics(
    q: torch.Tensor, qd: torch.Tensor, qdd: torch.Tensor, p: PendulumParams,
    joints: JointElements = RIGID,
) -> torch.Tensor:
    """Closed-form τ = M(q)q̈ + C(q, q̇)q̇ + G(q) + k⊙(q − r) + b⊙q̇ + c⊙sign(q̇), shape (..., 2)."""
    rigid = (mass_matrix(q, p) @ qdd.unsqueeze(-1)).squeeze(-1) + bias_torque(q, qd, p)
    return rigid if joints.is_rigid else rigid + joints.torque(q, qd)


def inverse_dynamics_at(q: Sequence[float], qd: Sequence[float], qdd: Sequence[float],
                        p: PendulumParams, joints: JointElements = RIGID) -> JointVector:
    """:func:`inverse_dynamics` at one point, in floats: the simulator's per-step truth."""
    q1, q2 = q
    m11, m12, m22 = _mass_entries(math.cos(q2), p)
    bias1, bias2 = _bias_entries(math.sin(q1), math.sin(q2), math.sin(q1 + q2), qd[0], qd[1], p)
    tau = (m11 * qdd[0] + m12 * qdd[1] + bias1, m12 * qdd[0] + m22 * qdd[1] + bias2)
    if joints.is_rigid:
        return tau
    passive1, passive2 = joints.torque_at(q, qd)
    return tau[0] + passive1, tau[1] + passive2


def forward_dynamics(
    q: torch.Tensor, qd: torch.Tensor, tau: torch.Tensor, p: PendulumParams,
    joints: JointElements = RIGID,
) -> torch.Tensor:
    """Closed-form q̈ = M(q)⁻¹(τ − C q̇ − G − k⊙(q − r) − b⊙q̇ − c⊙sign(q̇)), shape (..., 2)."""
    rhs = tau - bias_torque(q, qd, p)
    if not joints.is_rigid:
        rhs = rhs - joints.torque(q, qd)
    return torch.linalg.solve(mass_matrix(q, p), rhs.unsqueeze(-1)).squeeze(-1)
