"""Serving a learned model, with no ROS import: validate a snapshot before swapping it in,
answer inverse-dynamics queries, and forecast passive motion with the variational integrator.

A snapshot arrives from the network and is hostile until proven otherwise: it is decoded
against the allow-list, checked for the right joints and evaluated on probe states before it
replaces the model being served. A refused snapshot leaves the served model untouched.
"""

from __future__ import annotations

import os
import threading
from collections import Counter
from dataclasses import dataclass
from typing import Sequence

import torch

from syrenets_ros.dynamics import euler_lagrange
from syrenets_ros.dynamics.pendulum import JOINT_NAMES
from syrenets_ros.online.snapshot import DecodedModel, SnapshotError, decode_model
from syrenets_ros.schema import NodeSchema, Param

PROBE_STATES = 64

PREDICTOR_PARAMETERS = NodeSchema("syrenets_predictor", (
    Param("joint_names", JOINT_NAMES, "joints served, in this order; snapshots for other joints are refused",
          read_only=True),
    Param("max_payload_bytes", 8_000_000, "larger model payloads are refused", "bytes", 1024, 64_000_000,
          read_only=True),
    Param("forecast_rate", 1.0, "passive-motion forecasts per second (0 = off)", "Hz", 0.0, 50.0),
    Param("forecast_horizon", 2.0, "length of each forecast", "s", 0.05, 20.0),
    Param("forecast_step", 0.01, "variational integrator time step", "s", 0.0005, 0.1),
))


class _Cancelled(Exception):
    """Raised from the integrator's progress hook to abandon a forecast."""


@dataclass(frozen=True)
class Forecast:
    """A passive-motion forecast; `reason` says why it is shorter than asked, if it is."""

    times: list[float]
    q: list[list[float]]
    qd: list[list[float]]
    reason: str = ""


class ModelServer:
    """Holds the served model; thread-safe swap, per-sample torque, forecasts."""

    def __init__(self, joint_names: Sequence[str], max_payload_bytes: int = 8_000_000) -> None:
        self.joint_names = tuple(joint_names)
        self.max_payload_bytes = max_payload_bytes
        self.refused: Counter[str] = Counter()
        self.accepted = 0
        self._current: DecodedModel | None = None
        self._forecastable = False
        self._integrator = None  # VariationalIntegrator of the current model, built on first use
        self._lock = threading.Lock()
        generator = torch.Generator().manual_seed(0)
        n = len(self.joint_names)
        self._probe = [(torch.rand(PROBE_STATES, n, generator=generator, dtype=torch.float64) - 0.5) * torch.pi
                       for _ in range(3)]

    @property
    def current(self) -> DecodedModel | None:
        return self._current

    def offer(self, payload: str | bytes) -> tuple[bool, str]:
        """Validate a snapshot and swap it in; returns (accepted, reason or summary)."""
        try:
            decoded = decode_model(payload, max_bytes=self.max_payload_bytes)
            if tuple(decoded.joint_names) != self.joint_names:
                raise SnapshotError(f"joint names {list(decoded.joint_names)} != served {list(self.joint_names)}")
            forecastable = self._sanity_check(decoded)
        except SnapshotError as exc:
            reason = str(exc)
            self.refused[reason.split(":")[0][:60]] += 1
            return False, reason
        with self._lock:
            self._current = decoded
            self._forecastable = forecastable
            self._integrator = None
        self.accepted += 1
        note = "" if forecastable else " (mass matrix not positive definite: forecasts off)"
        return True, f"model v{decoded.model_version} ({decoded.model.kind}){note}"

    def _sanity_check(self, decoded: DecodedModel) -> bool:
        """Refuse a model whose torque is non-finite on probe states; report whether its mass
        matrix is positive definite (needed to integrate it forward)."""
        q, qd, qdd = self._probe
        try:
            tau = decoded.model.torque(q, qd, qdd)
            mass = euler_lagrange.mass_matrix(decoded.model.lagrangian_fn(), q, qd)
        except (RuntimeError, ValueError, TypeError, IndexError) as exc:
            raise SnapshotError(f"sanity evaluation failed: {exc}") from exc
        if tau.shape != q.shape or not torch.isfinite(tau).all():
            raise SnapshotError("sanity evaluation failed: non-finite or misshapen torque on probe states")
        if not torch.isfinite(mass).all():
            raise SnapshotError("sanity evaluation failed: non-finite mass matrix on probe states")
        return bool(torch.linalg.eigvalsh(0.5 * (mass + mass.transpose(1, 2))).min() > 0)

    def torque(self, q: Sequence[Sequence[float]], qd: Sequence[Sequence[float]],
               qdd: Sequence[Sequence[float]]) -> list[list[float]] | None:
        """Inverse-dynamics torques of the served model for a batch of points (one call, so
        a message with many points costs about as much as one); None without a model."""
        model = self._current
        if model is None:
            return None
        rows = [torch.tensor(values, dtype=torch.float64).reshape(-1, len(self.joint_names))
                for values in (q, qd, qdd)]
        return model.model.torque(*rows).tolist()

    def forecast(self, q: Sequence[float], qd: Sequence[float], horizon: float, step: float,
                 cancel: threading.Event | None = None) -> Forecast | None:
        """Passive motion from (q, q̇) with the variational integrator; None without a
        forecastable model, or when `cancel` is set meanwhile (shutdown). Only finite,
        converged points are returned."""
        from syrenets_ros.dynamics.integrator import VariationalIntegrator

        with self._lock:
            model, forecastable, integrator = self._current, self._forecastable, self._integrator
        if model is None or not forecastable:
            return None
        if integrator is None or integrator.h != step:
            # One traced integrator per (model, step), reused by every forecast.
            dissipation = getattr(model.model, "dissipation_fn", lambda: None)()
            integrator = VariationalIntegrator(model.model.lagrangian_fn(), step, tol=1e-10, dissipation=dissipation)
            with self._lock:
                if self._current is model:
                    self._integrator = integrator
        steps = max(1, int(round(horizon / step)))

        def stop_when_cancelled(_done: int, _alive: int) -> None:
            if cancel is not None and cancel.is_set():
                raise _Cancelled

        try:
            rollout = integrator.rollout(torch.tensor([q], dtype=torch.float64),
                                         torch.tensor([qd], dtype=torch.float64), steps, progress=stop_when_cancelled)
        except _Cancelled:
            return None
        valid = int(rollout.valid_length[0])
        positions, velocities = rollout.q[0, :valid], rollout.qd[0, :valid]
        finite = torch.isfinite(positions).all(-1) & torch.isfinite(velocities).all(-1)
        valid = int(finite.int().cumprod(0).sum())  # belt and braces: never publish non-finite
        reason = rollout.failures[0] or ("" if valid == steps + 1 else "non-finite state")
        return Forecast(rollout.t[:valid].tolist(), positions[:valid].tolist(), velocities[:valid].tolist(), reason)


def load_model_file(path: str | os.PathLike, joint_names: Sequence[str] | None = None,
                    max_payload_bytes: int = PREDICTOR_PARAMETERS.default("max_payload_bytes")) -> DecodedModel:
    """A saved snapshot, validated exactly as the predictor validates one from the topic
    (allow-list decode, joint names, probe evaluation); SnapshotError with the reason if
    refused. ``joint_names`` None takes the snapshot's own (offline use, no robot to match)."""
    try:
        size = os.path.getsize(path)
        if size > max_payload_bytes:
            raise SnapshotError(f"{path}: {size} bytes exceeds the limit of {max_payload_bytes} bytes")
        with open(path, "rb") as handle:
            payload = handle.read(max_payload_bytes + 1)
    except OSError as exc:
        raise SnapshotError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        if joint_names is None:
            joint_names = decode_model(payload, max_bytes=max_payload_bytes).joint_names
    except SnapshotError as exc:
        raise SnapshotError(f"{path}: {exc}") from None
    server = ModelServer(joint_names, max_payload_bytes)
    accepted, reason = server.offer(payload)
    if not accepted:
        raise SnapshotError(f"{path}: {reason}")
    return server.current
