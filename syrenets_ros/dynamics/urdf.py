"""Rigid-body dynamics of a robot described by a URDF, through Pinocchio (issue 21).

Why: a real arm's Lagrangian has thousands of trig-monomial terms, but its URDF already fixes
the kinematics; what is unknown is the links' inertial parameters (and friction, springs and
what the URDF leaves out). Pinocchio (``pin`` on PyPI) is the field's rigid-body library: its
joint-torque regressor is linear in each body's 10 inertial parameters, so the grey box is a
linear fit, the same kind of problem as the term library. This module is the one place the
project reads URDFs for dynamics; the simulator and the learner share it.
"""

from __future__ import annotations

import functools
import hashlib
import re
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# Joints with one degree of freedom and nq == nv; Pinocchio names them JointModelR{X,Y,Z},
# JointModelRevoluteUnaligned, JointModelP{X,Y,Z}, JointModelPrismaticUnaligned. Continuous
# joints (nq 2, nv 1) and floating bases need a different state than (q, q̇) per joint.
_ONE_DOF_JOINT = re.compile(r"JointModel(R[XYZ]|P[XYZ]|RevoluteUnaligned|PrismaticUnaligned)$")
MAX_URDF_BYTES = 4_000_000  # the largest robot_description accepted (the Panda's is 20 kB)
INERTIAL_PARAMETERS = 10  # per body: m, m·c (3), the inertia about the joint frame (6)


class UrdfError(ValueError):
    """A URDF the project cannot model, with the reason in one line."""


@dataclass(frozen=True)
class RigidBodyRobot:
    """A fixed-base robot with one-DoF joints: inverse dynamics and its inertial regressor."""

    urdf: str
    model: object  # pinocchio.Model; kept untyped so importing this module does not need pin

    @classmethod
    def from_urdf(cls, text: str) -> "RigidBodyRobot":
        """Parse URDF text; raise UrdfError naming what is unsupported or malformed."""
        import pinocchio

        if not isinstance(text, str) or not text.strip():
            raise UrdfError("robot_description is empty")
        if len(text.encode()) > MAX_URDF_BYTES:
            raise UrdfError(f"robot_description is {len(text.encode())} bytes (at most {MAX_URDF_BYTES})")
        try:
            ElementTree.fromstring(text)
            model = pinocchio.buildModelFromXML(text)
        except Exception as error:  # noqa: BLE001 - the parser's own message is the reason
            raise UrdfError(f"robot_description is not a URDF Pinocchio can read: {error}") from error
        for index in range(1, model.njoints):
            kind = model.joints[index].shortname()
            if not _ONE_DOF_JOINT.match(kind):
                raise UrdfError(f"joint {model.names[index]!r} is {kind}: only revolute and prismatic "
                                f"joints are supported")
        if model.nv == 0:
            raise UrdfError("robot_description has no movable joint")
        return cls(text, model)

    @property
    def joint_names(self) -> tuple[str, ...]:
        """Movable joints, root first: the order of q, q̇ and τ everywhere."""
        return tuple(self.model.names[index] for index in range(1, self.model.njoints))

    @property
    def n_joints(self) -> int:
        return int(self.model.nv)

    @functools.cached_property
    def digest(self) -> str:
        """SHA-256 of the URDF's canonical XML (C14N 2.0, comments dropped, text stripped): a
        snapshot names the robot it was learned on. Canonical, because the same description
        reaches nodes differently formatted: `-p robot_description:="$(cat arm.urdf)"` folds
        its line breaks (YAML), a file keeps them."""
        return hashlib.sha256(ElementTree.canonicalize(self.urdf, strip_text=True).encode()).hexdigest()

    @property
    def position_limits(self) -> tuple[np.ndarray, np.ndarray]:
        return np.asarray(self.model.lowerPositionLimit), np.asarray(self.model.upperPositionLimit)

    def inertial_parameters(self) -> np.ndarray:
        """The URDF's inertial parameters, 10 per body (Pinocchio's order), root body first."""
        return np.concatenate([self.model.inertias[index].toDynamicParameters()
                               for index in range(1, self.model.njoints)])

    def _rows(self, function, q: np.ndarray, *vectors: np.ndarray) -> np.ndarray:
        import pinocchio

        data = self.model.createData()
        q = np.atleast_2d(np.asarray(q, dtype=float))
        vectors = [np.atleast_2d(np.asarray(v, dtype=float)) for v in vectors]
        return np.stack([np.array(function(self.model, data, q[k], *(v[k] for v in vectors)))
                         for k in range(q.shape[0])]) if q.shape[0] else np.zeros((0,))

    def inverse_dynamics(self, q: np.ndarray, qd: np.ndarray, qdd: np.ndarray) -> np.ndarray:
        """τ = M(q) q̈ + C(q, q̇) q̇ + g(q) per row (N, n), with the URDF's inertias."""
        import pinocchio

        return self._rows(pinocchio.rnea, q, qd, qdd)

    def regressor(self, q: np.ndarray, qd: np.ndarray, qdd: np.ndarray) -> np.ndarray:
        """Y with τ = Y · inertial_parameters(), shape (N, n, 10·n)."""
        import pinocchio

        return self._rows(pinocchio.computeJointTorqueRegressor, q, qd, qdd)

    def mass_matrix(self, q: np.ndarray) -> np.ndarray:
        """M(q) per row, (N, n, n), symmetric (Pinocchio fills the upper triangle only)."""
        import pinocchio

        def crba(model, data, q_k):
            upper = np.triu(pinocchio.crba(model, data, q_k))
            return upper + np.triu(upper, 1).T

        return self._rows(crba, q)


def read_urdf(path: str | Path) -> RigidBodyRobot:
    """A URDF file a user names (a regular file of at most MAX_URDF_BYTES, UTF-8), parsed;
    UrdfError with the reason otherwise."""
    from syrenets_ros.files import read_regular

    try:
        text = read_regular(path, MAX_URDF_BYTES).decode("utf-8")
    except OSError as error:
        raise UrdfError(f"cannot read {path}: {error.strerror or error}") from None
    except UnicodeDecodeError as error:
        raise UrdfError(f"{path} is not UTF-8 text: {error}") from None
    return RigidBodyRobot.from_urdf(text)


def strip_geometry(urdf: str, lock: tuple[str, ...] = ()) -> str:
    """The URDF without visual and collision elements (meshes need files and a package path
    that dynamics never uses), with the joints in ``lock`` made fixed (e.g. a gripper's fingers)."""
    root = ElementTree.fromstring(urdf)
    for link in root.iter("link"):
        for child in [c for c in link if c.tag in ("visual", "collision")]:
            link.remove(child)
    for joint in root.iter("joint"):
        if joint.get("name") in lock:
            joint.set("type", "fixed")
            for child in [c for c in joint if c.tag in ("limit", "axis", "dynamics", "mimic")]:
                joint.remove(child)
    return ElementTree.tostring(root, encoding="unicode")


def panda_urdf() -> str:
    """The Franka Emika Panda of ``example-robot-data`` (on PyPI) as a 7-joint arm: the hand
    and fingers stay as rigid bodies at the flange, the finger joints are locked."""
    from importlib import metadata

    relative = "cmeel.prefix/share/example-robot-data/robots/panda_description/urdf/panda.urdf"
    try:
        path = Path(metadata.distribution("example-robot-data").locate_file(relative))
    except metadata.PackageNotFoundError as error:
        raise UrdfError("the Panda needs the example-robot-data package (pip install example-robot-data)") from error
    if not path.is_file():
        raise UrdfError(f"example-robot-data is installed but {path} is missing")
    return strip_geometry(path.read_text(), lock=("panda_finger_joint1", "panda_finger_joint2"))


def with_payload(urdf: str, parent: str, mass: float, offset: tuple[float, float, float] = (0.0, 0.0, 0.0),
                 radius: float = 0.05, name: str = "payload") -> str:
    """The URDF with a solid sphere of ``mass`` [kg] and ``radius`` [m] fixed to link ``parent``
    at ``offset`` [m] (e.g. a load at the flange): the same kinematics, other inertias."""
    root = ElementTree.fromstring(urdf)
    if parent not in {link.get("name") for link in root.iter("link")}:
        raise UrdfError(f"the URDF has no link {parent!r} to fix a payload to")
    if not (mass > 0 and radius > 0 and all(np.isfinite(offset))):
        raise UrdfError("a payload needs a positive mass and radius and a finite offset")
    inertia = 0.4 * mass * radius**2
    link = ElementTree.SubElement(root, "link", name=name)
    inertial = ElementTree.SubElement(link, "inertial")
    ElementTree.SubElement(inertial, "origin", xyz=" ".join(map(repr, offset)), rpy="0 0 0")
    ElementTree.SubElement(inertial, "mass", value=repr(float(mass)))
    ElementTree.SubElement(inertial, "inertia", ixx=repr(inertia), ixy="0", ixz="0", iyy=repr(inertia), iyz="0",
                           izz=repr(inertia))
    joint = ElementTree.SubElement(root, "joint", name=f"{name}_joint", type="fixed")
    ElementTree.SubElement(joint, "parent", link=parent)
    ElementTree.SubElement(joint, "child", link=name)
    return ElementTree.tostring(root, encoding="unicode")
