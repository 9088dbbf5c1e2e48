"""PyBullet core of the double pendulum (no ROS): exact, torque-controlled, swappable.

Exactness (SPEC §2). Bullet's multibody world integrates with semi-implicit Euler:
``q̇_{k+1} = q̇_k + Δt·q̈(q_k, q̇_k, τ_k)`` and then ``q_{k+1} = q_k + Δt·q̇_{k+1}``, where
q̈ is the articulated-body forward dynamics of the URDF. So the finite difference
``(q̇_{k+1} − q̇_k)/Δt`` *is* the true forward dynamics at (q_k, q̇_k, τ_k), and inverse
dynamics reproduces τ_k to round-off (~1e-12 N·m) — provided nothing else acts on the body:
the default velocity motors are switched off (VELOCITY_CONTROL with zero force), link
linear/angular damping (Bullet's default is 0.04) and joint damping are zeroed, there are no
collision shapes, the inertia is taken from the URDF (not recomputed from shapes), the joint
velocity clamp is lifted far above any reachable speed, and the torque command is re-sent
before every step (Bullet clears applied forces after a step).

Springs, viscous damping and Coulomb friction (SPEC §2b) are applied by this class, not by
Bullet (whose joint damping is not the exact b·q̇ of the step): the torque handed to Bullet
for step k is ``τ_k − k⊙(q_k − r) − b⊙q̇_k − c⊙sign(q̇_k)``, all evaluated at the state at
the start of the step — the same (q_k, q̇_k) at which the forward dynamics is evaluated. So
the motor torque τ_k obeys the extended inverse dynamics exactly, to round-off:
``τ_k = EL(L_rigid)(q_k, q̇_k, q̈_k) + k⊙(q_k − r) + b⊙q̇_k + c⊙sign(q̇_k)``. (Explicit in
the step, like a discrete controller: stable while k·Δt² and b·Δt stay well below the
joint's inertia.) Coulomb friction is c·sign(q̇) exactly as written, with sign(0) = 0 and no
stiction: a joint that friction should hold still chatters around q̇ = 0 at |q̇| ~ c·Δt/M.
Changing the elements needs no rebuild; they act from the next step on.

A parameter change rebuilds the body from the xacro with the new values and restores
(q, q̇) with ``resetJointState``, which sets them exactly; the step count (sim time) runs on.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import pybullet
import xacro
from pybullet_utils import bullet_client

from syrenets_ros.dynamics.pendulum import JOINT_NAMES, RIGID, JointElements, PendulumParams
from syrenets_ros.resources import urdf_xacro

JointVector = tuple[float, float]
MAX_JOINT_VELOCITY = 1.0e4  # rad/s; Bullet clamps at 100 rad/s by default


def expand_urdf(params: PendulumParams, xacro_path: Path | None = None) -> str:
    """The URDF text of the pendulum with these masses and lengths (xacro at run time)."""
    mappings = {
        "link1_mass": repr(float(params.m1)),
        "link1_length": repr(float(params.l1)),
        "link2_mass": repr(float(params.m2)),
        "link2_length": repr(float(params.l2)),
    }
    document = xacro.process_file(str(xacro_path or urdf_xacro()), mappings=mappings)
    return document.toxml()


def _as_pair(values: Sequence[float], what: str) -> JointVector:
    if len(values) != 2:
        raise ValueError(f"{what} needs 2 values (joint1, joint2), got {len(values)}")
    pair = (float(values[0]), float(values[1]))
    if not all(math.isfinite(v) for v in pair):
        raise ValueError(f"{what} must be finite, got {pair}")
    return pair


class Simulator:
    """One PyBullet DIRECT-mode world holding the pendulum; time t_k = k·time_step."""

    def __init__(
        self,
        params: PendulumParams,
        time_step: float = 1.0e-3,
        q0: Sequence[float] = (0.0, 0.0),
        qd0: Sequence[float] = (0.0, 0.0),
        xacro_path: Path | None = None,
        joints: JointElements = RIGID,
    ) -> None:
        params.validate()
        joints.validate()
        if not (math.isfinite(time_step) and time_step > 0.0):
            raise ValueError(f"time_step must be a positive finite number, got {time_step!r}")
        self._time_step = float(time_step)
        self._xacro_path = xacro_path
        self._client = bullet_client.BulletClient(connection_mode=pybullet.DIRECT)
        self._client.setTimeStep(self._time_step)
        self._body = -1
        self._joints: tuple[int, int] = (0, 1)
        self._params = params
        self._elements = joints
        self._steps = 0
        self._build(params, _as_pair(q0, "q0"), _as_pair(qd0, "qd0"))

    @property
    def params(self) -> PendulumParams:
        return self._params

    @property
    def joint_elements(self) -> JointElements:
        return self._elements

    @property
    def time_step(self) -> float:
        return self._time_step

    @property
    def step_count(self) -> int:
        """k: number of steps taken so far; the current state is the state at t_k."""
        return self._steps

    def state(self) -> tuple[JointVector, JointVector]:
        """(q, q̇) of (joint1, joint2) now, in radians and rad/s."""
        joint1, joint2 = self._client.getJointStates(self._body, self._joints)
        return (joint1[0], joint2[0]), (joint1[1], joint2[1])

    def link_inertia(self, joint_name: str) -> tuple[float, tuple[float, float, float]]:
        """(mass, principal inertia) Bullet actually simulates for the link after a joint —
        read back from the engine, to verify it took the URDF values unchanged."""
        joint = self._joints[JOINT_NAMES.index(joint_name)]
        info = self._client.getDynamicsInfo(self._body, joint)
        return info[0], tuple(info[2])

    def step(self, tau: Sequence[float]) -> None:
        """Apply the motor torque τ (N·m per joint) during one time step; springs, damping
        and friction act on the joints besides it."""
        torque = _as_pair(tau, "tau")
        if not self._elements.is_rigid:
            passive = self._elements.torque_at(*self.state())
            torque = (torque[0] - passive[0], torque[1] - passive[1])
        self._client.setJointMotorControlArray(
            self._body, self._joints, pybullet.TORQUE_CONTROL, forces=torque
        )
        self._client.stepSimulation()
        self._steps += 1

    def reset_state(self, q: Sequence[float], qd: Sequence[float]) -> None:
        """Put the joints at (q, q̇) exactly, without stepping."""
        q_pair, qd_pair = _as_pair(q, "q"), _as_pair(qd, "qd")
        for joint, position, velocity in zip(self._joints, q_pair, qd_pair):
            self._client.resetJointState(self._body, joint, position, velocity)

    def set_params(self, params: PendulumParams) -> None:
        """Swap the physical parameters at this step boundary; (q, q̇) carry over exactly."""
        params.validate()
        q, qd = self.state()
        self._build(params, q, qd)

    def set_joint_elements(self, joints: JointElements) -> None:
        """Swap springs, damping and friction at this step boundary; the state is untouched."""
        joints.validate()
        self._elements = joints

    def close(self) -> None:
        if self._client is not None:
            self._client.disconnect()
            self._client = None

    def __enter__(self) -> "Simulator":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _build(self, params: PendulumParams, q: JointVector, qd: JointVector) -> None:
        urdf_text = expand_urdf(params, self._xacro_path)
        handle, path = tempfile.mkstemp(prefix="double_pendulum_", suffix=".urdf")
        try:
            with os.fdopen(handle, "w") as file:
                file.write(urdf_text)
            body = self._client.loadURDF(
                path, useFixedBase=True, flags=pybullet.URDF_USE_INERTIA_FROM_FILE
            )
        finally:
            os.unlink(path)
        if self._body >= 0:
            self._client.removeBody(self._body)
        self._body = body
        self._joints = self._joint_indices(body)
        self._client.setGravity(0.0, 0.0, -params.g)
        for link in (-1, *self._joints):
            self._client.changeDynamics(
                body, link, linearDamping=0.0, angularDamping=0.0, jointDamping=0.0,
                lateralFriction=0.0, maxJointVelocity=MAX_JOINT_VELOCITY,
                activationState=pybullet.ACTIVATION_STATE_DISABLE_SLEEPING,
            )
        self._client.setJointMotorControlArray(
            body, self._joints, pybullet.VELOCITY_CONTROL, forces=(0.0, 0.0)
        )
        self._params = params
        self.reset_state(q, qd)

    def _joint_indices(self, body: int) -> tuple[int, int]:
        by_name = {
            self._client.getJointInfo(body, index)[1].decode(): index
            for index in range(self._client.getNumJoints(body))
        }
        missing = [name for name in JOINT_NAMES if name not in by_name]
        if missing:
            raise ValueError(f"URDF lacks joints {missing}")
        return by_name[JOINT_NAMES[0]], by_name[JOINT_NAMES[1]]
