"""Recursive least squares: online tracking of a linear model's coefficients (SPEC §3): a term
model's, or a URDF rigid body's base parameters and friction."""

from __future__ import annotations

import math

import torch

from syrenets_ros.learning.rigid_body import RigidBodyLibrary, RigidBodyModel
from syrenets_ros.learning.terms import TermLibrary, TermModel


class RecursiveLeastSquares:
    """Online coefficient tracking on a fixed term set, O(p²) per sample.

    A batch is one block update equivalent to feeding its samples one by one with forgetting
    factor λ per sample. After a detected change, :meth:`reset` re-opens the covariance while
    keeping the current estimate, so the fit re-converges quickly.
    """

    def __init__(self, library: TermLibrary | RigidBodyLibrary, *, forgetting: float = 0.999,
                 covariance_scale: float = 1e6, initial: torch.Tensor | None = None,
                 residual_smoothing: float = 0.05) -> None:
        if not 0.0 < forgetting <= 1.0:
            raise ValueError("forgetting factor must be in (0, 1]")
        self.library = library
        self.forgetting = forgetting
        self.residual_smoothing = residual_smoothing
        p = len(library)
        self.theta = (torch.zeros(p, dtype=torch.float64) if initial is None
                      else torch.as_tensor(initial, dtype=torch.float64).clone())
        self.covariance = torch.eye(p, dtype=torch.float64) * covariance_scale
        self.residual_mse = math.nan
        self.samples = 0  # rows absorbed since the start or the last reset
        self.weighted = False  # rows weighted by their noise scale: covariance = coefficient covariance

    def reset(self, covariance_scale: float = 1e6) -> None:
        """Forget the certainty, keep the estimate (used after a detected change)."""
        self.covariance = torch.eye(len(self.library), dtype=torch.float64) * covariance_scale
        self.residual_mse = math.nan
        self.samples = 0

    def update(self, q: torch.Tensor, qd: torch.Tensor, qdd: torch.Tensor, tau: torch.Tensor) -> float:
        """Absorb a batch of samples (B, n); returns the a-priori (prediction) residual MSE."""
        q, qd, qdd, tau = (t.detach().to(torch.float64).cpu().reshape(-1, self.library.n_joints)
                           for t in (q, qd, qdd, tau))
        return self.update_rows(self.library.el_images(q, qd, qdd), tau)

    def update_rows(self, images: torch.Tensor, target: torch.Tensor,
                    scale: torch.Tensor | None = None) -> float:
        """Absorb B rows of n joint equations: images (B, n, p), target (B, n) — per-sample
        rows or integral rows (SPEC §2b). ``scale`` (n,) is each joint row's noise scale: rows
        are weighted by 1/scale (noisier joints count less). Returns the a-priori residual MSE
        (unweighted, in the target's units)."""
        batch = images.shape[0]
        phi = images.detach().to(torch.float64).cpu().reshape(-1, len(self.library))
        target = target.detach().to(torch.float64).cpu().reshape(-1)
        residual = target - phi @ self.theta
        self.weighted = scale is not None
        weights = (torch.ones_like(target) if scale is None
                   else (1.0 / scale.to(torch.float64)).repeat(batch))
        lam = self.forgetting
        # Row s of B is worth λ^(B−1−s) at the end of the batch; the prior is worth λ^B.
        ages = torch.arange(batch - 1, -1, -1, dtype=torch.float64).repeat_interleave(self.library.n_joints)
        prior = self.covariance / lam**batch
        weighted = phi * weights[:, None]
        gain_denominator = torch.diag(lam ** (-ages)) + weighted @ prior @ weighted.T
        gain = torch.linalg.solve(gain_denominator, weighted @ prior).T
        self.theta = self.theta + gain @ (residual * weights)
        covariance = prior - gain @ weighted @ prior
        self.covariance = 0.5 * (covariance + covariance.T)
        batch_mse = float(residual.square().mean())
        a = self.residual_smoothing
        self.residual_mse = batch_mse if math.isnan(self.residual_mse) else (1 - a) * self.residual_mse + a * batch_mse
        self.samples += batch
        return batch_mse

    def model(self) -> TermModel | RigidBodyModel:
        """The tracked coefficients; standard errors from the RLS covariance when rows were
        weighted by their noise scale (the covariance is then in coefficient units²)."""
        stderr = self.covariance.diagonal().clamp_min(0.0).sqrt() if self.weighted else None
        kind = RigidBodyModel if isinstance(self.library, RigidBodyLibrary) else TermModel
        return kind(self.library, self.theta.clone(), stderr=stderr)
