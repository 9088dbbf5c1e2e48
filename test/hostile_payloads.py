"""The hostile inputs of issues 12 and 23, shared by the core tests, the real-DDS tests and the
CLI tests."""

from __future__ import annotations

import json
import struct

import torch

from syrenets_ros.dynamics.pendulum import JOINT_NAMES, PendulumParams, inverse_dynamics
from syrenets_ros.learning.syrenet import SyReNetConfig
from syrenets_ros.learning.terms import Term, TermModel, true_pendulum_terms
from syrenets_ros.online import snapshot
from syrenets_ros.online.snapshot import RunId
from syrenets_ros.tools.bench import hostile

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
    """The true Lagrangian with gravity upside down (issue 23)."""
    return hostile.flipped_gravity(TRUE)


def bump() -> TermModel:
    """The true Lagrangian wrong at one spot only: > 500 N·m on 2.1 % of the q plane, exact on
    smooth_motion's range and within the limit on the 64 fixed probes (issue 23)."""
    return hostile.bump(TRUE)


def cut_mcap_at(folder, message: int) -> None:
    """Damage an unchunked MCAP as a bad sector would: the record of message ``message``
    (stamp message ms) gets an unknown opcode and a huge length, so the reader skips to the
    end silently (issue 23: 'exits 0 after reading 3330 of 6000 declared messages')."""
    [mcap] = folder.glob("*.mcap")
    data = bytearray(mcap.read_bytes())
    stamp = struct.pack("<QQ", message * 1_000_000, message * 1_000_000)  # log and publish time
    record = data.index(stamp) - 15  # opcode, length (8), channel (2), sequence (4)
    assert data[record] == 0x05, "a message record"
    data[record:record + 9] = b"\x7f" + struct.pack("<Q", 2**40)
    mcap.write_bytes(bytes(data))
