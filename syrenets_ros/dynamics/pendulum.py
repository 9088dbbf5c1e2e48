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
# Detents per revolution a cogging element may have: the learner's terms hold frequencies up to
# this (terms.MAX_FREQUENCY).
MAX_COGGING_PERIODS = 8
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
    add ``k⊙(q − r) + b⊙q̇ + c⊙sign(q̇) + a⊙p·sin(p·q)`` to the rigid inverse dynamics.

    The last is cogging: a detent potential a(1 − cos p·q) with p detents per revolution, as a
    direct-drive motor's magnets give (beyond SPEC §2b: a periodic potential whose frequency
    the learner's default grammar lacks)."""

    stiffness: JointVector = (0.0, 0.0)  # k [N·m/rad]: spring potential ½k(q − r)²
    rest_angle: JointVector = (0.0, 0.0)  # r [rad]: where the spring is relaxed
    damping: JointVector = (0.0, 0.0)  # b [N·m·s/rad]: viscous
    friction: JointVector = (0.0, 0.0)  # c [N·m]: Coulomb
    cogging: JointVector = ()  # a [J]: detent potential a(1 − cos p·q); () = none on any joint
    cogging_periods: int = 5  # p: detents per revolution, every joint alike

    def __post_init__(self) -> None:
        # No cogging given: none on each of the joints the springs are given for (a 7-joint
        # arm's elements written before cogging existed stay 7 joints wide, not zip-cut to 2).
        if not self.cogging:
            object.__setattr__(self, "cogging", (0.0,) * len(self.stiffness))

    @classmethod
    def rigid(cls, joints: int) -> "JointElements":
        """No element on any of ``joints`` joints (a robot from a URDF has n of them)."""
        zeros = (0.0,) * joints
        return cls(zeros, zeros, zeros, zeros, zeros)

    def validate(self, joints: int | None = None) -> None:
        """Raise ValueError naming the first bad field: one finite value per joint (``joints``
        of them; by default as many as the longest field), k, b, c, a ≥ 0 (a negative one
        feeds energy in or turns a detent into a hump), and p an integer in
        1..:data:`MAX_COGGING_PERIODS`."""
        vectors = [item.name for item in fields(self) if item.name != "cogging_periods"]
        count = joints if joints is not None else max(len(getattr(self, name)) for name in vectors)
        for name in vectors:
            values = getattr(self, name)
            if len(values) != count:
                raise ValueError(f"{name} needs {count} values, got {len(values)}")
            if not all(math.isfinite(v) for v in values):
                raise ValueError(f"{name} must be finite, got {values!r}")
            if name != "rest_angle" and min(values) < 0.0:
                raise ValueError(f"{name} must be >= 0, got {values!r}")
        if type(self.cogging_periods) is not int or not 1 <= self.cogging_periods <= MAX_COGGING_PERIODS:
            raise ValueError(f"cogging_periods must be an integer in 1..{MAX_COGGING_PERIODS}, "
                             f"got {self.cogging_periods!r}")

    @cached_property
    def is_rigid(self) -> bool:
        """No element acts (checked once: the simulator asks every step)."""
        return not any(any(values) for values in (self.stiffness, self.damping, self.friction, self.cogging))

    def torque_at(self, q: Sequence[float], qd: Sequence[float]) -> JointVector:
        """k⊙(q − r) + b⊙q̇ + c⊙sign(q̇) + a⊙p·sin(p·q) at one state, as floats (sign(0) = 0)."""
        p = self.cogging_periods
        return tuple(k * (qi - r) + b * w + c * ((w > 0.0) - (w < 0.0)) + a * p * math.sin(p * qi)
                     for k, r, b, c, a, qi, w in zip(self.stiffness, self.rest_angle, self.damping,
                                                     self.friction, self.cogging, q, qd))

    def torque(self, q: torch.Tensor, qd: torch.Tensor) -> torch.Tensor:
        """The same for tensors of shape (..., n)."""
        k, r, b, c, a = (torch.tensor(v, dtype=q.dtype, device=q.device)
                         for v in (self.stiffness, self.rest_angle, self.damping, self.friction, self.cogging))
        p = self.cogging_periods
        return k * (q - r) + b * qd + c * torch.sign(qd) + a * p * torch.sin(p * q)

    def potential(self, q: torch.Tensor) -> torch.Tensor:
        """Σ ½k(q − r)² + a(1 − cos p·q), shape (...)."""
        k, r, a = (torch.tensor(v, dtype=q.dtype, device=q.device)
                   for v in (self.stiffness, self.rest_angle, self.cogging))
        return (0.5 * k * (q - r) ** 2 + a * (1.0 - torch.cos(self.cogging_periods * q))).sum(-1)


RIGID = JointElements()


def lagrangian(q: torch.Tensor, qd: torch.Tensor, p: PendulumParams,
               joints: JointElements = RIGID) -> torch.Tensor:
    """L(q, q̇) = T − V − Σ[½k(q − r)² + a(1 − cos p·q)] for inputs of shape (..., 2); returns
    shape (...). Damping and friction are not part of any L: see :func:`inverse_dynamics`."""
    return _kinetic(q, qd, p) - _gravity_potential(q, p) - joints.potential(q)


def energy(q: torch.Tensor, qd: torch.Tensor, p: PendulumParams,
           joints: JointElements = RIGID) -> torch.Tensor:
    """Total mechanical energy T + V + Σ[½k(q − r)² + a(1 − cos p·q)], shape (...)."""
    return _kinetic(q, qd, p) + _gravity_potential(q, p) + joints.potential(q)


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
    """Closed-form τ = M(q)q̈ + C(q, q̇)q̇ + G(q) + k⊙(q − r) + b⊙q̇ + c⊙sign(q̇) + a⊙p·sin(p·q),
    shape (..., 2)."""
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
    """Closed-form q̈ = M(q)⁻¹(τ − C q̇ − G − k⊙(q − r) − b⊙q̇ − c⊙sign(q̇) − a⊙p·sin(p·q)),
    shape (..., 2)."""
    rhs = tau - bias_torque(q, qd, p)
    if not joints.is_rigid:
        rhs = rhs - joints.torque(q, qd)
    return torch.linalg.solve(mass_matrix(q, p), rhs.unsqueeze(-1)).squeeze(-1)
