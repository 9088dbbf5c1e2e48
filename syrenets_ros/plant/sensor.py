"""Seeded Gaussian sensor noise (SPEC §2b): what the robot's sensors report, never the physics.

The noise at step k is σ ⊙ z_k, where z_k is the k-th draw of standard normals since the last
(re)seeding, drawn every step whatever σ is. So the noise of a run is a function of the seed
and the steps since seeding alone: reproducible, and a σ change scales the same sequence
instead of shifting it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from syrenets_ros.dynamics.pendulum import JOINT_NAMES, JointVector


class SensorNoise:
    """Noise on (q, q̇, τ) per joint with standard deviations ``sigma`` = [σ_q, σ_q̇, σ_τ]."""

    def __init__(self, sigma: Sequence[float], seed: int) -> None:
        self.sigma = sigma
        self.reseed(seed)
        self._draw = np.zeros((3, len(JOINT_NAMES)))

    @property
    def sigma(self) -> tuple[float, float, float]:
        return self._sigma

    @sigma.setter
    def sigma(self, sigma: Sequence[float]) -> None:
        values = tuple(float(s) for s in sigma)
        if len(values) != 3 or not all(np.isfinite(values)) or min(values) < 0.0:
            raise ValueError(f"sigma must be 3 finite values >= 0 [σ_q, σ_q̇, σ_τ], got {sigma!r}")
        self._sigma = values
        self._scale = np.array(values)[:, None]

    def reseed(self, seed: int) -> None:
        """Restart the noise sequence from ``seed``."""
        self._rng = np.random.default_rng(seed)

    def next_step(self) -> None:
        """Draw this step's noise; :meth:`state` and :meth:`effort` read it."""
        self._draw = self._rng.standard_normal((3, len(JOINT_NAMES))) * self._scale

    def state(self, q: Sequence[float], qd: Sequence[float]) -> tuple[JointVector, JointVector]:
        """(q, q̇) as the sensors report them this step."""
        noise_q, noise_qd = self._draw[0].tolist(), self._draw[1].tolist()
        return (tuple(v + n for v, n in zip(q, noise_q)), tuple(v + n for v, n in zip(qd, noise_qd)))

    def effort(self, tau: Sequence[float]) -> JointVector:
        """The applied torque as the sensors report it this step."""
        return tuple(v + n for v, n in zip(tau, self._draw[2].tolist()))
