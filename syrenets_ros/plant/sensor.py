"""Seeded Gaussian sensor noise (SPEC §2b): what the robot's sensors report, never the physics.

The noise at a step is σ ⊙ z, where z is the next draw of standard normals (3 channels × joints)
since the last (re)seeding; steps with σ = 0 draw nothing and report the truth untouched. So
the noise of a run is a function of the seed and the noisy steps since seeding alone:
reproducible, and a change between non-zero σ scales the same sequence instead of shifting it.
Draws come in blocks (one numpy call per block, the same sequence as one call per step): the
step loop runs at 1 kHz and a per-step numpy call costs more than the rest of this class.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from syrenets_ros.dynamics.pendulum import JOINT_NAMES, JointVector

BLOCK_STEPS = 1024


class SensorNoise:
    """Noise on (q, q̇, τ) of each of ``joints`` joints with standard deviations ``sigma`` =
    [σ_q, σ_q̇, σ_τ]."""

    def __init__(self, sigma: Sequence[float], seed: int, joints: int = len(JOINT_NAMES)) -> None:
        self._joints = joints
        self.sigma = sigma
        self.reseed(seed)

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
        self._on = any(values)
        self._noise: list[list[float]] = [[0.0] * self._joints] * 3

    def reseed(self, seed: int) -> None:
        """Restart the noise sequence from ``seed``."""
        self._rng = np.random.default_rng(seed)
        self._block = np.empty((0, 3, self._joints))
        self._next = 0

    def next_step(self) -> None:
        """Draw this step's noise (nothing when σ = 0); :meth:`state` and :meth:`effort` read it."""
        if not self._on:
            return
        if self._next == len(self._block):
            self._block = self._rng.standard_normal((BLOCK_STEPS, 3, self._joints))
            self._next = 0
        self._noise = (self._block[self._next] * self._scale).tolist()
        self._next += 1

    def state(self, q: Sequence[float], qd: Sequence[float]) -> tuple[JointVector, JointVector]:
        """(q, q̇) as the sensors report them this step."""
        if not self._on:
            return tuple(q), tuple(qd)
        noise_q, noise_qd, _ = self._noise
        return (tuple(v + n for v, n in zip(q, noise_q)), tuple(v + n for v, n in zip(qd, noise_qd)))

    def effort(self, tau: Sequence[float]) -> JointVector:
        """The applied torque as the sensors report it this step."""
        if not self._on:
            return tuple(tau)
        return tuple(v + n for v, n in zip(tau, self._noise[2]))
