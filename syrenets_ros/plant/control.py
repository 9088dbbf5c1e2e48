"""The pendulum's tracking controller: PD on the reference plus the feed-forward torque,
clamped per joint. One function, so the node, benchmarks and tests apply the same law."""

from __future__ import annotations

from collections.abc import Sequence

from syrenets_ros.plant.settings import SimSettings


def pd_torque(settings: SimSettings, q: Sequence[float], qd: Sequence[float], q_d: Sequence[float],
              qd_d: Sequence[float], feedforward: Sequence[float] | None) -> list[float]:
    """τ = clamp(τ_ff + Kp(q_d − q) + Kd(q̇_d − q̇), ±torque_limit); no feed-forward = PD only."""
    limit = settings.torque_limit
    tau = []
    for i in range(len(q)):
        total = settings.kp[i] * (q_d[i] - q[i]) + settings.kd[i] * (qd_d[i] - qd[i])
        if feedforward is not None:
            total += feedforward[i]
        tau.append(min(max(total, -limit), limit))
    return tau
