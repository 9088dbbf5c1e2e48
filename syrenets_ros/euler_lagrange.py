"""Euler–Lagrange operator for any per-sample Lagrangian, batched with torch.func.

A Lagrangian here is a function ``L(q, qd) -> scalar`` of *one* sample (q and q̇ of shape
(n,)). Everything is vmapped over the batch, so a sample's torque never depends on the other
samples in the batch (a defect of the public SyReNet code). Derivatives are taken by
forward-over-reverse mode: one ``jvp`` of ``grad L`` along (q̇, q̈) gives d/dt ∂L/∂q̇ in the
correct index order

    τ_k = Σ_i ∂²L/∂q̇_k∂q̇_i q̈_i + Σ_i ∂²L/∂q̇_k∂q_i q̇_i − ∂L/∂q_k.

Gradients with respect to tensors captured by ``L`` (network parameters) flow through the
result, so the same call serves training and inference.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch.func import grad, jacfwd, jvp, vmap

LagrangianFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _torque_one(L: LagrangianFn, q: torch.Tensor, qd: torch.Tensor, qdd: torch.Tensor) -> torch.Tensor:
    gradients = grad(L, argnums=(0, 1))
    (dl_dq, _), (_, ddt_dl_dqd) = jvp(gradients, (q, qd), (qd, qdd))
    return ddt_dl_dqd - dl_dq


def torque(L: LagrangianFn, q: torch.Tensor, qd: torch.Tensor, qdd: torch.Tensor) -> torch.Tensor:
    """Inverse dynamics τ(q, q̇, q̈) of L for batches of shape (B, n); returns (B, n)."""
    return vmap(lambda a, b, c: _torque_one(L, a, b, c))(q, qd, qdd)


def mass_matrix(L: LagrangianFn, q: torch.Tensor, qd: torch.Tensor) -> torch.Tensor:
    """Generalised mass matrix ∂²L/∂q̇², shape (B, n, n)."""
    return vmap(jacfwd(grad(L, argnums=1), argnums=1))(q, qd)


def forward_dynamics(
    L: LagrangianFn, q: torch.Tensor, qd: torch.Tensor, tau: torch.Tensor
) -> torch.Tensor:
    """q̈ = M⁻¹(τ − bias) with bias the torque at zero acceleration; shape (B, n)."""
    bias = torque(L, q, qd, torch.zeros_like(qd))
    rhs = (tau - bias).unsqueeze(-1)
    return torch.linalg.solve(mass_matrix(L, q, qd), rhs).squeeze(-1)


def energy(L: LagrangianFn, q: torch.Tensor, qd: torch.Tensor) -> torch.Tensor:
    """Energy function E = q̇·∂L/∂q̇ − L (conserved for a time-invariant L); shape (B,)."""

    def one(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.dot(b, grad(L, argnums=1)(a, b)) - L(a, b)

    return vmap(one)(q, qd)
