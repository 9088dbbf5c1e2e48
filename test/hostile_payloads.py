"""The hostile inputs of issue 12, shared by the core tests and the real-DDS tests."""

from __future__ import annotations

import json
import math

import torch

from syrenets_ros.dynamics.pendulum import JOINT_NAMES, PendulumParams, inverse_dynamics
from syrenets_ros.learning.syrenet import SyReNetConfig
from syrenets_ros.learning.terms import Term, TermLibrary, TermModel, true_pendulum_terms
from syrenets_ros.online import snapshot
from syrenets_ros.online.snapshot import RunId

TRUE = true_pendulum_terms(PendulumParams())
KINETIC_QD1 = Term((2, 0), "one", (0, 0))  # the q̇1² term of L


def nested_payload(levels: int = 10_000) -> str:
    """~20 kB of nesting: RecursionError out of json.loads before issue 12."""
    return '{"format":' + "[" * levels + "]" * levels + "}"


def amplification_payload() -> str:
    """~500 bytes declaring the largest network the config validator allows (~2.7e9
    parameters, ~20 GiB), carrying no parameters at all."""
    config = SyReNetConfig(layers=8, heads=64, ae_hidden=1024, latent=256, head_hidden=1024).to_json()
    return json.dumps({"format": snapshot.FORMAT, "schema_version": snapshot.SCHEMA_VERSION, "kind": "syrenet",
                       "run_id": str(RunId.new()), "model_version": 1, "joint_names": list(JOINT_NAMES),
                       "metrics": {}, "model": {"config": config, "parameters": {}}})


def scaled(factor: float) -> TermModel:
    """The true Lagrangian times ``factor`` (×1000: finite, absurd)."""
    return TermModel(TRUE.library, TRUE.coefficients * factor)


def with_coefficient(term: Term, value: float) -> TermModel:
    """The true Lagrangian with one coefficient replaced (1e307: still finite on the probes)."""
    coefficients = TRUE.coefficients.clone()
    coefficients[TRUE.terms.index(term)] = value
    return TermModel(TRUE.library, coefficients)


def smooth_motion(count: int, start: float = 1.0, dt: float = 1e-3, params: PendulumParams = PendulumParams()):
    """Exact (stamp, q, q̇, τ) rows of a two-sine motion rich enough to identify the
    Lagrangian in one second, stepped like Bullet (semi-implicit Euler), so that the forward
    difference of q̇ is the q̈ each τ was computed with."""
    amplitude, omega, phase = (torch.tensor(v, dtype=torch.float64) for v in ((1.2, 1.5), (3.0, 5.0), (0.3, 1.0)))
    q = amplitude * torch.sin(omega * start + phase)
    qd = amplitude * omega * torch.cos(omega * start + phase)
    rows = []
    for k in range(count):
        t = start + k * dt
        qdd = -amplitude * omega**2 * torch.sin(omega * t + phase)
        tau = inverse_dynamics(q, qd, qdd, params)
        rows.append((t, q.tolist(), qd.tolist(), tau.tolist()))
        qd = qd + dt * qdd
        q = q + dt * qd
    return rows


def flipped_gravity() -> TermModel:
    """The true Lagrangian with its potential's sign flipped: exact inertia, gravity upside down."""
    coefficients = TRUE.coefficients.clone()
    for i, term in enumerate(TRUE.terms):
        if sum(term.velocity) == 0:
            coefficients[i] = -coefficients[i]
    return TermModel(TRUE.library, coefficients)


def bump(center: tuple[float, float] = (math.pi, math.pi), height: float = 500.0) -> TermModel:
    """The true Lagrangian plus ``height`` · Π_i ((1 + cos(q_i − c_i))/2)^8, a potential bump
    of frequencies ≤ 8 (the grammar's limit) around ``center`` (issue 23's model that is wrong at
    one spot only): |τ| reaches ~620 N·m there and exceeds 500 N·m on 2.1 % of the q plane, yet
    it is within 1e-3 N·m of the truth on smooth_motion's range and passes the 64 fixed probes."""
    half = 8
    # cos^16(x/2) = 2^-16 [C(16,8) + 2 Σ_k C(16, 8 - k) cos(k x)]
    weights = [math.comb(2 * half, half - k) * (1 if k == 0 else 2) / 2 ** (2 * half) for k in range(half + 1)]
    coefficients = dict(zip(TRUE.terms, TRUE.coefficients.tolist()))

    def add(function: str, angle: tuple[int, int], value: float) -> None:
        if angle[0] < 0 or (angle[0] == 0 and angle[1] < 0):  # canonical: first non-zero entry positive
            angle, value = (-angle[0], -angle[1]), value if function == "cos" else -value
        term = Term((0, 0), function, angle)
        coefficients[term] = coefficients.get(term, 0.0) + value

    for k, wk in enumerate(weights):
        for m, wm in enumerate(weights):
            for sign in ((1,) if m == 0 or k == 0 else (1, -1)):
                if k == 0 and m == 0:
                    continue  # a constant: no torque
                # cos(k(x1 − c1)) cos(m(x2 − c2)) = ½ Σ± cos(k x1 ± m x2 − (k c1 ± m c2))
                share = 0.5 if k and m else 1.0
                phase = k * center[0] + sign * m * center[1]
                add("cos", (k, sign * m), height * wk * wm * share * math.cos(phase))
                add("sin", (k, sign * m), height * wk * wm * share * math.sin(phase))
    terms = [t for t, v in coefficients.items() if v != 0.0 or t in TRUE.terms]
    return TermModel(TermLibrary(terms), torch.tensor([coefficients[t] for t in terms], dtype=torch.float64))
