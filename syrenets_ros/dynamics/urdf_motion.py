"""Exact recordings of a URDF robot tracking a multisine, with no simulator (issue 21).

Why: the grey-box learner is held to ~1e-6 relative torque error, so its test data must obey
the rigid-body equations exactly in the discretisation the learner assumes. This integrates
Pinocchio's forward dynamics with the simulator's own semi-implicit step at the recording's
period, τ_k held over the step: then q̈_k = (q̇_{k+1} − q̇_k)/Δt and the recorded torque is
inverse dynamics (plus friction) of (q_k, q̇_k, q̈_k) to rounding, like the PyBullet pendulum
(SPEC §2). The reference stays inside the joint limits.
"""

from __future__ import annotations

import math
import numpy as np
import torch

from syrenets_ros.dynamics.chain import ChainRecord
from syrenets_ros.dynamics.pendulum import JointElements
from syrenets_ros.dynamics.urdf import RigidBodyRobot
from syrenets_ros.plant.excitation import MAX_AMPLITUDE, MultiSine


def reference_within_limits(robot: RigidBodyRobot, seed: int, base_frequency: float = 0.2,
                            harmonics: int = 5, fill: float = 0.8) -> tuple[MultiSine, np.ndarray]:
    """A multisine per joint about the middle of its limits, reaching ``fill`` of the half range
    (at most π/2): (the excitation, its centre). Unlimited joints swing ±π/2 about zero."""
    lower, upper = robot.position_limits
    finite = np.isfinite(lower) & np.isfinite(upper) & (upper > lower)
    centre = np.where(finite, 0.5 * (lower + upper), 0.0)
    reach = np.where(finite, np.minimum(fill * 0.5 * (upper - lower), MAX_AMPLITUDE), MAX_AMPLITUDE)
    unit = MultiSine.from_seed(seed, 1.0, base_frequency, harmonics, robot.n_joints)
    scaled = tuple(tuple(float(a * r) for a in row) for row, r in zip(unit.amplitudes, reach))
    return MultiSine(scaled, unit.phases, unit.base_frequency), centre


def tracking_record(robot: RigidBodyRobot, seconds: float, *, period: float = 1e-3, seed: int = 0,
                    elements: JointElements | None = None, stiffness: float = 400.0, damping: float = 40.0,
                    switch: tuple[float, RigidBodyRobot] | None = None) -> ChainRecord:
    """``robot`` tracking :func:`reference_within_limits` with computed torque (its own
    inverse dynamics of the reference acceleration plus a PD correction), integrated
    semi-implicitly every ``period`` from rest at the reference; ``elements`` (one value per joint)
    are springs and friction the motor overcomes (SPEC §2b), compensated exactly. ``switch`` = (t, other): from
    time t on the plant is ``other`` (e.g. a payload added at the flange), with the state
    continuous; the controller keeps the first robot's model. q̈ is the record's
    forward difference of q̇, which the step makes exact."""
    import pinocchio

    excitation, centre = reference_within_limits(robot, seed)
    steps = round(seconds / period)
    t = np.arange(steps) * period
    q_ref, qd_ref, qdd_ref = excitation.trajectory(t)
    q_ref = q_ref + centre
    n = robot.n_joints
    q, qd = q_ref[0].copy(), qd_ref[0].copy()
    out_q, out_qd, out_qdd, out_tau = (np.zeros((steps, n)) for _ in range(4))
    plant = robot
    data = {id(robot): robot.model.createData()}
    for k in range(steps):
        if switch is not None and plant is robot and t[k] >= switch[0]:
            plant = switch[1]
            data[id(plant)] = plant.model.createData()
        wanted = qdd_ref[k] + stiffness * (q_ref[k] - q) + damping * (qd_ref[k] - qd)
        passive = np.array(elements.torque_at(q.tolist(), qd.tolist())) if elements is not None else 0.0
        tau = np.array(pinocchio.rnea(robot.model, data[id(robot)], q, qd, wanted)) + passive
        acceleration = np.array(pinocchio.aba(plant.model, data[id(plant)], q, qd, tau - passive))
        out_q[k], out_qd[k], out_qdd[k], out_tau[k] = q, qd, acceleration, tau
        qd = qd + period * acceleration
        q = q + period * qd
        if not (np.isfinite(q).all() and np.abs(q).max() < 100.0 * math.pi):
            raise ValueError(f"the tracking diverged at t = {t[k]:.3f} s")
    return ChainRecord(*(torch.from_numpy(v) for v in (t, out_q, out_qd, out_qdd, out_tau)))
