"""The robot the simulator holds (no ROS): the double pendulum of SPEC §2 (closed form, its URDF
expanded from the xacro) or any fixed-base robot from its URDF (issue 21: Pinocchio is the
truth), optionally carrying a payload at the flange.

Both give the simulator, its settings and the node the same few things: the URDF text PyBullet
loads, the joint names, gravity, the true inverse dynamics at one point (every step: the
feed-forward audit and the true-model feed-forward), the inverse mass matrix over the workspace
(the step-stability check), a reference trajectory that stays inside the joint limits, and
tracking gains sized to the robot's inertia.

A URDF robot is loaded into PyBullet as :func:`bullet_urdf` prepares it, so that Bullet's step
agrees with Pinocchio's inverse dynamics of the original text to round-off (measured 4e-13 N·m
on the Panda): inertias rotated onto their principal axes here (Bullet's own diagonalisation
stops at ~1e-8 relative: 3e-8 N·m on the Panda's first joint), no ``<dynamics>`` (Bullet applies
the URDF's joint damping whatever ``changeDynamics`` says: 5e-3 N·m), no joint stops (the truth
has none; the reference keeps the arm inside the limits) and no geometry (no collisions).
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path

import numpy as np
import xacro

from syrenets_ros.dynamics.pendulum import JOINT_NAMES, JointElements, PendulumParams, inverse_dynamics_at
from syrenets_ros.dynamics.urdf import RigidBodyRobot, panda_urdf, strip_geometry, with_payload
from syrenets_ros.plant.excitation import MultiSine
from syrenets_ros.resources import urdf_xacro

JointVector = tuple[float, ...]
NO_STOP = 1.0e9  # joint limits PyBullet gets (the pendulum's xacro uses the same)
LIMIT_MARGIN = 0.8  # the reference uses this fraction of each joint's half range and speed limit
WORKSPACE_SAMPLES = 64  # poses M(q) is sampled at for the step-stability check and the gains
TRACKING_BANDWIDTH = 30.0  # rad/s: a URDF robot's default PD gains, critically damped per joint


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


def flange_link(urdf: str) -> str:
    """Where a payload sits: the child link of the last movable joint, followed down rigid
    (fixed) joints while they form a single chain — the Panda's flange and hand, not its fingers."""
    last = RigidBodyRobot.from_urdf(urdf).joint_names[-1]
    joints = list(ElementTree.fromstring(urdf).iter("joint"))
    link = next(j.find("child").get("link") for j in joints if j.get("name") == last)
    while True:
        below = [j for j in joints if j.find("parent").get("link") == link]
        if len(below) != 1 or below[0].get("type") != "fixed":
            return link
        link = below[0].find("child").get("link")


def payload_urdf(urdf: str, mass: float) -> str:
    """The URDF with a payload of ``mass`` kg at its :func:`flange_link` (a 5 cm solid sphere
    centred on the flange frame; :func:`~syrenets_ros.dynamics.urdf.with_payload`); 0 kg =
    unchanged. The simulator loads this text and the ground truth is the inverse dynamics of it."""
    return with_payload(urdf, flange_link(urdf), mass) if mass else urdf


def bullet_urdf(urdf: str) -> str:
    """The URDF as PyBullet must read it to step exactly the dynamics Pinocchio reads from
    ``urdf`` (see the module docstring): principal-axis inertias, no dynamics, no stops, no geometry."""
    import pinocchio

    root = ElementTree.fromstring(strip_geometry(urdf))
    for joint in root.iter("joint"):
        for dynamics in joint.findall("dynamics"):
            joint.remove(dynamics)
        limit = joint.find("limit")
        if limit is not None:
            limit.set("lower", repr(-NO_STOP))
            limit.set("upper", repr(NO_STOP))
    for inertial in root.iter("inertial"):
        inertia = inertial.find("inertia")
        if inertia is None:
            continue
        xx, xy, xz, yy, yz, zz = (float(inertia.get(k, "0")) for k in ("ixx", "ixy", "ixz", "iyy", "iyz", "izz"))
        if xy == xz == yz == 0.0:
            continue
        principal, axes = np.linalg.eigh(np.array([[xx, xy, xz], [xy, yy, yz], [xz, yz, zz]]))
        if np.linalg.det(axes) < 0.0:
            axes[:, 2] *= -1.0
        origin = inertial.find("origin")
        if origin is None:
            origin = ElementTree.SubElement(inertial, "origin", xyz="0 0 0")
        rpy = [float(v) for v in origin.get("rpy", "0 0 0").split()]
        rotation = pinocchio.rpy.rpyToMatrix(*rpy) @ axes
        origin.set("rpy", " ".join(repr(float(v)) for v in pinocchio.rpy.matrixToRpy(rotation)))
        for key, value in zip(("ixx", "iyy", "izz", "ixy", "ixz", "iyz"), (*principal, 0.0, 0.0, 0.0)):
            inertia.set(key, repr(float(value)))
    return ElementTree.tostring(root, encoding="unicode")


@dataclass(frozen=True)
class PendulumRobot:
    """The rod double pendulum of SPEC §2 with these masses and lengths."""

    params: PendulumParams
    xacro_path: Path | None = None

    name = "double_pendulum"
    joint_names = JOINT_NAMES
    payload_mass = 0.0

    @property
    def gravity(self) -> float:
        return self.params.g

    def urdf(self) -> str:
        return expand_urdf(self.params, self.xacro_path)

    def inverse_dynamics_at(self, q: JointVector, qd: JointVector, qdd: JointVector,
                            joints: JointElements) -> JointVector:
        """The closed form (~50× cheaper than a tensor call), springs and friction included."""
        return inverse_dynamics_at(q, qd, qdd, self.params, joints)

    @cached_property
    def inverse_mass_samples(self) -> np.ndarray:
        """M⁻¹ over the workspace: M depends on the pose through cos q2 only."""
        a, b, c = self.params.inertia_coefficients
        return np.stack([np.linalg.inv(np.array([[a + b + 2 * c * cos2, b + c * cos2], [b + c * cos2, b]]))
                         for cos2 in np.linspace(-1.0, 1.0, 201)])

    def excitation(self, seed: int, amplitude: float, base_frequency: float) -> MultiSine:
        """The multi-sine about the hanging pose; the pendulum has no joint limits."""
        return MultiSine.from_seed(seed, amplitude, base_frequency)


@dataclass(frozen=True)
class UrdfRobot:
    """A fixed-base robot with one-DoF joints from its URDF, a payload of ``payload_mass`` kg at
    its flange (:func:`payload_urdf`), under gravity ``gravity``
    along −z. Build it with :func:`urdf_robot` (cached: parsing a URDF costs milliseconds).
    ``inverse_dynamics_at`` shares one Pinocchio workspace: call it from one thread."""

    description: str
    payload_mass: float = 0.0
    gravity: float = 9.81

    @cached_property
    def dynamics(self) -> RigidBodyRobot:
        """The ground truth: Pinocchio on the URDF with the payload, under this gravity."""
        robot = RigidBodyRobot.from_urdf(payload_urdf(self.description, self.payload_mass))
        robot.model.gravity.linear = np.array([0.0, 0.0, -self.gravity])
        return robot

    @cached_property
    def name(self) -> str:
        return ElementTree.fromstring(self.description).get("name") or "robot"

    @property
    def joint_names(self) -> tuple[str, ...]:
        return self.dynamics.joint_names

    def urdf(self) -> str:
        return bullet_urdf(self.dynamics.urdf)

    @cached_property
    def _workspace(self):
        return self.dynamics.model.createData()

    def inverse_dynamics_at(self, q: JointVector, qd: JointVector, qdd: JointVector,
                            joints: JointElements) -> JointVector:
        """RNEA at one point (a few µs for 7 joints), plus k⊙(q − r) + b⊙q̇ + c⊙sign(q̇)."""
        import pinocchio

        tau = pinocchio.rnea(self.dynamics.model, self._workspace, np.asarray(q, dtype=float),
                             np.asarray(qd, dtype=float), np.asarray(qdd, dtype=float))
        if joints.is_rigid:
            return tuple(tau.tolist())
        return tuple(t + p for t, p in zip(tau.tolist(), joints.torque_at(q, qd)))

    @cached_property
    def ranges(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(centre, half range, speed limit) per joint; inf where the URDF sets no usable limit."""
        lower, upper = self.dynamics.position_limits
        bounded = np.isfinite(lower) & np.isfinite(upper) & (upper > lower) & (upper - lower < 2 * NO_STOP)
        centre = np.where(bounded, (lower + upper) / 2.0, 0.0)
        half = np.where(bounded, (upper - lower) / 2.0, np.inf)
        speed = np.asarray(self.dynamics.model.velocityLimit, dtype=float)
        return centre, half, np.where(np.isfinite(speed) & (speed > 0.0), speed, np.inf)

    @cached_property
    def workspace_poses(self) -> np.ndarray:
        """Seeded poses inside the joint limits (the centre first): where M(q) is sampled."""
        centre, half, _ = self.ranges
        spread = np.where(np.isfinite(half), half, math.pi)
        rng = np.random.default_rng(0)
        return np.vstack([centre, centre + spread * rng.uniform(-1.0, 1.0, (WORKSPACE_SAMPLES - 1, len(centre)))])

    @cached_property
    def inverse_mass_samples(self) -> np.ndarray:
        return np.linalg.inv(self.dynamics.mass_matrix(self.workspace_poses))

    def default_gains(self, time_step: float, load_limit: float) -> tuple[JointVector, JointVector]:
        """(kp, kd) = (ω², 2ω) × the smallest M_ii over the workspace (a critically damped joint
        at its lightest pose, whatever the link sizes), at the highest ω ≤ :data:`TRACKING_BANDWIDTH`
        whose explicit step load max λ(M⁻¹(2Δt·Kd + Δt²·Kp)) stays ≤ ``load_limit``. (Sized to
        the largest M_ii instead, the Panda's coupled inertias allow only ω ≈ 2 rad/s at 1 kHz.)"""
        inertia = np.linalg.inv(self.inverse_mass_samples).diagonal(axis1=1, axis2=2).min(axis=0)

        def load(omega: float) -> float:
            return step_load(self.inverse_mass_samples, np.diag(
                2.0 * time_step * 2.0 * omega * inertia + time_step**2 * omega**2 * inertia))

        low, high = 0.0, TRACKING_BANDWIDTH
        if load(high) > load_limit:
            for _ in range(30):
                middle = (low + high) / 2.0
                low, high = (middle, high) if load(middle) <= load_limit else (low, middle)
            high = low
        return tuple((high**2 * inertia).tolist()), tuple((2.0 * high * inertia).tolist())

    def excitation(self, seed: int, amplitude: float, base_frequency: float) -> MultiSine:
        """The multi-sine about the middle of each joint's range, its amplitude per joint cut so
        that |q_d − centre| ≤ LIMIT_MARGIN × half range and |q̇_d| ≤ LIMIT_MARGIN × speed limit."""
        centre, half, speed = self.ranges
        unit = MultiSine.from_seed(seed, 1.0, base_frequency, joints=len(centre))
        omega = 2.0 * math.pi * base_frequency * np.arange(1, len(unit.amplitudes[0]) + 1)
        peak_speed = np.asarray(unit.amplitudes) @ omega  # |q̇_d| bound per unit amplitude
        amplitudes = np.minimum(amplitude, LIMIT_MARGIN * np.minimum(half, speed / peak_speed))
        return MultiSine.from_seed(seed, tuple(amplitudes.tolist()), base_frequency, joints=len(centre),
                                   centre=tuple(centre.tolist()))


Robot = PendulumRobot | UrdfRobot


def step_load(inverse_mass: np.ndarray, load: np.ndarray) -> float:
    """max over the sampled poses of the largest eigenvalue of M⁻¹(q)·load, load = 2Δt·D + Δt²·K:
    the matrix form of semi-implicit Euler's 2Δt·b/I + Δt²·k/I (stable below 4)."""
    return float(np.linalg.eigvals(inverse_mass @ load).real.max())


@lru_cache(maxsize=16)
def urdf_robot(description: str, payload_mass: float = 0.0, gravity: float = 9.81) -> UrdfRobot:
    """The URDF robot, parsed once per (description, payload, gravity); raises UrdfError
    (a ValueError) with the reason when the text is not a robot the simulator can hold."""
    robot = UrdfRobot(description, float(payload_mass), float(gravity))
    robot.dynamics  # noqa: B018 — parse now, so a bad description is refused here
    return robot


# Robots the tools know by name (``demo --robot``, ``bench sim --robot``): their URDF text, "" for
# the simulator's own double pendulum.
NAMED_ROBOTS = {"double_pendulum": lambda: "", "panda": panda_urdf}


def named_robot_description(name: str) -> str:
    """The robot_description of a robot known by name."""
    return NAMED_ROBOTS[name]()
