"""PyBullet core of the simulated robot (no ROS): exact, torque-controlled, swappable. The robot
is the double pendulum or any fixed-base URDF robot (:mod:`syrenets_ros.plant.robot`).

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

A parameter change (the pendulum's masses and lengths, a URDF robot's payload, gravity)
rebuilds the body from the robot's new URDF and restores (q, q̇) with ``resetJointState``,
which sets them exactly; the step count (sim time) runs on.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import pybullet
from pybullet_utils import bullet_client

from syrenets_ros.dynamics.pendulum import JointElements, PendulumParams
from syrenets_ros.plant.robot import PendulumRobot, Robot, expand_urdf

__all__ = ["JointVector", "MAX_JOINT_VELOCITY", "Simulator", "expand_urdf"]

JointVector = tuple[float, ...]
MAX_JOINT_VELOCITY = 1.0e4  # rad/s; Bullet clamps at 100 rad/s by default


def _as_vector(values: Sequence[float], names: Sequence[str], what: str) -> JointVector:
    if len(values) != len(names):
        raise ValueError(f"{what} needs {len(names)} values ({', '.join(names)}), got {len(values)}")
    vector = tuple(float(v) for v in values)
    if not all(math.isfinite(v) for v in vector):
        raise ValueError(f"{what} must be finite, got {vector}")
    return vector


class Simulator:
    """One PyBullet DIRECT-mode world holding the robot; time t_k = k·time_step. ``robot`` is
    a :class:`~syrenets_ros.plant.robot.Robot` or, for the double pendulum, its parameters."""

    def __init__(
        self,
        robot: Robot | PendulumParams,
        time_step: float = 1.0e-3,
        q0: Sequence[float] | None = None,
        qd0: Sequence[float] | None = None,
        xacro_path: Path | None = None,
        joints: JointElements | None = None,
    ) -> None:
        robot = PendulumRobot(robot, xacro_path) if isinstance(robot, PendulumParams) else robot
        if not (math.isfinite(time_step) and time_step > 0.0):
            raise ValueError(f"time_step must be a positive finite number, got {time_step!r}")
        self._time_step = float(time_step)
        self._xacro_path = xacro_path
        self._client = bullet_client.BulletClient(connection_mode=pybullet.DIRECT)
        self._client.setTimeStep(self._time_step)
        self._body = -1
        self._joints: tuple[int, ...] = ()
        self._robot = robot
        joints = JointElements.rigid(len(robot.joint_names)) if joints is None else joints
        self._check_elements(joints)
        self._elements = joints
        self._steps = 0
        zeros = (0.0,) * len(robot.joint_names)
        self._build(robot, _as_vector(zeros if q0 is None else q0, robot.joint_names, "q0"),
                    _as_vector(zeros if qd0 is None else qd0, robot.joint_names, "qd0"))

    @property
    def robot(self) -> Robot:
        return self._robot

    @property
    def joint_names(self) -> tuple[str, ...]:
        return self._robot.joint_names

    @property
    def params(self) -> PendulumParams | None:
        """The double pendulum's masses and lengths; None for a URDF robot."""
        return getattr(self._robot, "params", None)

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
        """(q, q̇) per joint now, in radians and rad/s."""
        states = self._client.getJointStates(self._body, self._joints)
        return tuple(s[0] for s in states), tuple(s[1] for s in states)

    def link_inertia(self, joint_name: str) -> tuple[float, tuple[float, float, float]]:
        """(mass, principal inertia) Bullet actually simulates for the link after a joint —
        read back from the engine, to verify it took the URDF values unchanged."""
        joint = self._joints[self._robot.joint_names.index(joint_name)]
        info = self._client.getDynamicsInfo(self._body, joint)
        return info[0], tuple(info[2])

    def step(self, tau: Sequence[float]) -> None:
        """Apply the motor torque τ (N·m per joint) during one time step; springs, damping
        and friction act on the joints besides it."""
        torque = _as_vector(tau, self._robot.joint_names, "tau")
        if not self._elements.is_rigid:
            passive = self._elements.torque_at(*self.state())
            torque = tuple(t - p for t, p in zip(torque, passive))
        self._client.setJointMotorControlArray(
            self._body, self._joints, pybullet.TORQUE_CONTROL, forces=torque
        )
        self._client.stepSimulation()
        self._steps += 1

    def reset_state(self, q: Sequence[float], qd: Sequence[float]) -> None:
        """Put the joints at (q, q̇) exactly, without stepping."""
        names = self._robot.joint_names
        for joint, position, velocity in zip(self._joints, _as_vector(q, names, "q"), _as_vector(qd, names, "qd")):
            self._client.resetJointState(self._body, joint, position, velocity)

    def set_params(self, params: PendulumParams) -> None:
        """Swap the double pendulum's parameters at this step boundary; (q, q̇) carry over exactly."""
        self.set_robot(PendulumRobot(params, self._xacro_path))

    def set_robot(self, robot: Robot) -> None:
        """Swap the robot (new masses, payload or gravity; the same joints) at this step
        boundary; (q, q̇) carry over exactly."""
        if robot.joint_names != self._robot.joint_names:
            raise ValueError(f"a swap keeps the joints {list(self._robot.joint_names)}, got {list(robot.joint_names)}")
        q, qd = self.state()
        self._build(robot, q, qd)

    def set_joint_elements(self, joints: JointElements) -> None:
        """Swap springs, damping and friction at this step boundary; the state is untouched."""
        self._check_elements(joints)
        self._elements = joints

    def _check_elements(self, joints: JointElements) -> None:
        joints.validate(len(self._robot.joint_names))

    def close(self) -> None:
        if self._client is not None:
            self._client.disconnect()
            self._client = None

    def __enter__(self) -> "Simulator":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _build(self, robot: Robot, q: JointVector, qd: JointVector) -> None:
        if isinstance(robot, PendulumRobot):
            robot.params.validate()
        urdf_text = robot.urdf()
        handle, path = tempfile.mkstemp(prefix="syrenets_robot_", suffix=".urdf")
        try:
            with os.fdopen(handle, "w") as file:
                file.write(urdf_text)
            body = self._client.loadURDF(
                path, useFixedBase=True, flags=pybullet.URDF_USE_INERTIA_FROM_FILE
            )
        finally:
            os.unlink(path)
        joints = self._joint_indices(body, robot.joint_names)
        if self._body >= 0:
            self._client.removeBody(self._body)
        self._body = body
        self._joints = joints
        self._client.setGravity(0.0, 0.0, -robot.gravity)
        for link in range(-1, self._client.getNumJoints(body)):
            self._client.changeDynamics(
                body, link, linearDamping=0.0, angularDamping=0.0, jointDamping=0.0,
                lateralFriction=0.0, maxJointVelocity=MAX_JOINT_VELOCITY,
                activationState=pybullet.ACTIVATION_STATE_DISABLE_SLEEPING,
            )
        self._client.setJointMotorControlArray(
            body, self._joints, pybullet.VELOCITY_CONTROL, forces=(0.0,) * len(self._joints)
        )
        self._robot = robot
        self.reset_state(q, qd)

    def _joint_indices(self, body: int, names: Sequence[str]) -> tuple[int, ...]:
        by_name = {
            self._client.getJointInfo(body, index)[1].decode(): index
            for index in range(self._client.getNumJoints(body))
        }
        missing = [name for name in names if name not in by_name]
        if missing:
            self._client.removeBody(body)
            raise ValueError(f"URDF lacks joints {missing}")
        return tuple(by_name[name] for name in names)
