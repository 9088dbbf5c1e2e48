"""Seeded multi-sine (Fourier) excitation: the desired trajectory the pendulum tracks.

Each joint follows q_d,i(t) = Σ_h a_ih sin(h·ω0·t + φ_ih) for harmonics h = 1..H of the base
frequency. Several harmonics with random phases make the data rich enough to identify the
dynamics (positions, velocities and accelerations vary independently), and the amplitudes
are normalised so Σ_h |a_ih| equals the requested amplitude: |q_d,i − c_i| never exceeds it,
about a centre c_i (0 = the hanging pendulum; the middle of the range for a robot with limits).
Derivatives are analytic, so q̇_d and q̈_d are exact at any time (no finite differences).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

MAX_AMPLITUDE = math.pi / 2.0


@dataclass(frozen=True)
class MultiSine:
    """Reference trajectory; ``sample(t)`` gives (q_d, q̇_d, q̈_d) per joint."""

    amplitudes: tuple[tuple[float, ...], ...]  # [joint][harmonic], rad
    phases: tuple[tuple[float, ...], ...]  # [joint][harmonic], rad
    base_frequency: float  # Hz
    centre: tuple[float, ...] = ()  # per joint, rad; () = all 0

    @classmethod
    def from_seed(
        cls,
        seed: int,
        amplitude: float | Sequence[float] = 1.0,
        base_frequency: float = 0.1,
        harmonics: int = 5,
        joints: int = 2,
        centre: Sequence[float] = (),
    ) -> "MultiSine":
        """Random phases and 1/h-decaying random weights, reproducible from ``seed``; one
        amplitude for all joints or one per joint."""
        bounds = [amplitude] if isinstance(amplitude, (int, float)) else list(amplitude)
        if not all(math.isfinite(a) and 0.0 <= a <= MAX_AMPLITUDE for a in bounds):
            raise ValueError(f"amplitude must be in [0, π/2], got {amplitude!r}")
        if not (math.isfinite(base_frequency) and base_frequency > 0.0):
            raise ValueError(f"base_frequency must be > 0 Hz, got {base_frequency!r}")
        if harmonics < 1 or joints < 1:
            raise ValueError("need at least one harmonic and one joint")
        if len(bounds) not in (1, joints) or len(centre) not in (0, joints):
            raise ValueError(f"need one amplitude and centre per joint ({joints}), got {amplitude!r}, {centre!r}")
        rng = np.random.default_rng(seed)
        weights = rng.uniform(0.5, 1.0, size=(joints, harmonics)) / np.arange(1, harmonics + 1)
        scale = bounds[0] if len(bounds) == 1 else np.asarray(bounds)[:, None]
        amplitudes = scale * weights / weights.sum(axis=1, keepdims=True)
        phases = rng.uniform(0.0, 2.0 * math.pi, size=(joints, harmonics))
        return cls(
            amplitudes=tuple(tuple(float(a) for a in row) for row in amplitudes),
            phases=tuple(tuple(float(p) for p in row) for row in phases),
            base_frequency=float(base_frequency),
            centre=tuple(float(c) for c in centre) if any(centre) else (),
        )

    def sample(self, t: float) -> tuple[list[float], list[float], list[float]]:
        """(q_d, q̇_d, q̈_d) at time t (s), one value per joint."""
        omega0 = 2.0 * math.pi * self.base_frequency
        positions, velocities, accelerations = [], [], []
        for amplitudes, phases, centre in zip(self.amplitudes, self.phases, self.centre or (0.0,) * len(self.phases)):
            q, qd, qdd = centre, 0.0, 0.0
            for harmonic, (a, phi) in enumerate(zip(amplitudes, phases), start=1):
                omega = harmonic * omega0
                s = math.sin(omega * t + phi)
                c = math.cos(omega * t + phi)
                q += a * s
                qd += a * omega * c
                qdd -= a * omega * omega * s
            positions.append(q)
            velocities.append(qd)
            accelerations.append(qdd)
        return positions, velocities, accelerations

    def trajectory(self, t: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(q_d, q̇_d, q̈_d) at the times ``t`` (s, shape (T,)), each of shape (T, joints): the
        vectorised :meth:`sample` for generating whole records at once."""
        amplitudes, phases = np.asarray(self.amplitudes), np.asarray(self.phases)
        omega = 2.0 * math.pi * self.base_frequency * np.arange(1, amplitudes.shape[1] + 1)
        angle = omega * np.asarray(t, dtype=np.float64)[:, None, None] + phases
        centre = np.asarray(self.centre or (0.0,) * len(self.phases))
        return (centre + (amplitudes * np.sin(angle)).sum(-1), (amplitudes * omega * np.cos(angle)).sum(-1),
                (-amplitudes * omega**2 * np.sin(angle)).sum(-1))
