"""Grey-box models of a robot from its URDF (issue 21): base inertial parameters plus friction.

Why: a 7-joint arm's Lagrangian has thousands of trig-monomial terms a flat grammar cannot
search, but its URDF fixes the kinematics. Pinocchio's joint-torque regressor Y(q, q̇, q̈) is
linear in each body's 10 inertial parameters π, so τ = Y π + b ⊙ q̇ + c ⊙ sign(q̇) + k ⊙ q + o
(friction, and joint springs k(q − r) with o = −k r: SPEC §2b) is a linear model like the term
library's. Not every π is identifiable (a body's inertia about its own
joint axis adds to its parent's, a base link's mass never shows): the identifiable
combinations, the *base parameters* β = P π, come from a rank check on regressors stacked at
random states (as in classical identification), and the model is fitted in β. The columns are
evaluated like a :class:`TermLibrary`'s (``el_images``), so the project's integral rows
(:class:`integral.RowForm`), its fits and its scores apply unchanged.

A model travels as data: the URDF text and its SHA-256, the base-parameter definition P, the
forces, the sprung joints and the coefficients, all validated on decode (the URDF must parse, the digest match,
P have the base's identity columns, every number be finite). Never code, never pickle.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar, Sequence

import numpy as np
import torch

from syrenets_ros.dynamics.urdf import INERTIAL_PARAMETERS, MAX_URDF_BYTES, RigidBodyRobot, UrdfError
from syrenets_ros.learning import integral
from syrenets_ros.learning.payload import SnapshotError, tensor_from_json, tensor_to_json
from syrenets_ros.learning.terms import FORCE_LAWS, MAX_JOINTS, Force, LinearModel

# Pinocchio's order of a body's dynamic parameters (Inertia.toDynamicParameters).
PARAMETER_NAMES = ("m", "mcx", "mcy", "mcz", "Ixx", "Ixy", "Iyy", "Ixz", "Iyz", "Izz")
BASE_STATES = 256  # random states whose stacked regressors define the base parameters
BASE_TOLERANCE = 1e-8  # a column this close (sine of the angle) to the span of earlier ones is dependent
BASE_VELOCITY, BASE_ACCELERATION = 3.0, 10.0  # rad/s, rad/s² of those states
BASE_SEED = 0
MAX_ROBOT_JOINTS = 64  # beyond MAX_JOINTS of the term grammar: the regressor scales linearly
WEAK_ROWS_UNSUPPORTED = "rigid-body models need rows with q̈ (acceleration or central integral rows), not weak rows"


def _random_states(robot: RigidBodyRobot, count: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(q, q̇, q̈) over the joint limits (±π where a limit is missing or wider)."""
    rng = np.random.default_rng(seed)
    lower, upper = robot.position_limits
    lower = np.where(np.isfinite(lower), np.maximum(lower, -math.pi), -math.pi)
    upper = np.where(np.isfinite(upper), np.minimum(upper, math.pi), math.pi)
    n = robot.n_joints
    return (rng.uniform(lower, upper, size=(count, n)), rng.uniform(-BASE_VELOCITY, BASE_VELOCITY, size=(count, n)),
            rng.uniform(-BASE_ACCELERATION, BASE_ACCELERATION, size=(count, n)))


@dataclass(frozen=True)
class BaseParameters:
    """β = combination @ π: ``columns`` are the independent inertial parameters (indices into
    the 10·n of :meth:`RigidBodyRobot.inertial_parameters`), and ``combination`` (b, 10·n)
    adds each dependent parameter to the base parameters its column is a combination of, so
    Y π = Y[..., columns] β for every π."""

    columns: tuple[int, ...]
    combination: np.ndarray

    @classmethod
    def identify(cls, robot: RigidBodyRobot, seed: int = BASE_SEED) -> "BaseParameters":
        """The first independent columns, in Pinocchio's order (root body first), by one
        unpivoted QR of the column-normalised stacked regressor: |R_jj| is the sine of the
        angle between column j and the span of the columns before it."""
        rows = robot.regressor(*_random_states(robot, BASE_STATES, seed)).reshape(-1, INERTIAL_PARAMETERS * robot.n_joints)
        norms = np.linalg.norm(rows, axis=0)
        nonzero = norms > BASE_TOLERANCE * norms.max()
        r = np.linalg.qr(rows / np.where(nonzero, norms, 1.0), mode="r")
        independent = nonzero & (np.abs(np.diag(r)) > BASE_TOLERANCE)
        columns = np.flatnonzero(independent)
        if columns.size == 0:
            raise UrdfError("no inertial parameter of this robot has an effect on its joint torques")
        combination = np.zeros((columns.size, rows.shape[1]))
        combination[:, columns] = np.eye(columns.size)
        dependent = np.flatnonzero(~independent)
        if dependent.size:
            solution, *_ = np.linalg.lstsq(rows[:, columns], rows[:, dependent], rcond=None)
            combination[:, dependent] = solution
        return cls(tuple(int(c) for c in columns), combination)

    def __len__(self) -> int:
        return len(self.columns)

    def of(self, inertial: np.ndarray) -> np.ndarray:
        """The base parameters of full inertial parameters π (e.g. the URDF's)."""
        return self.combination @ np.asarray(inertial, dtype=float)

    def names(self, joint_names: Sequence[str]) -> list[str]:
        """'m[panda_joint7]'-style names: the independent parameter of each base parameter,
        '+' when others are folded into it."""
        out = []
        for row, column in zip(self.combination, self.columns):
            body, parameter = divmod(column, INERTIAL_PARAMETERS)
            folded = int(np.count_nonzero(np.abs(row) > 1e-12)) > 1
            out.append(f"{PARAMETER_NAMES[parameter]}[{joint_names[body]}]" + ("+" if folded else ""))
        return out


class RigidBodyLibrary:
    """The columns of a grey-box model: base inertial parameters, dissipative forces, then
    for each sprung joint j its stiffness (τ_j = q_j) and its spring offset (τ_j = 1): a spring
    k(q_j − r) is stiffness k and offset −k r. By default every joint has viscous and Coulomb
    friction (up to the term grammar's MAX_JOINTS joints) and a spring.

    The same evaluation interface as :class:`TermLibrary` (``el_images``, ``names``,
    ``n_joints``, ``len``), so integral rows, fits and trackers treat it alike."""

    def __init__(self, robot: RigidBodyRobot, base: BaseParameters | None = None,
                 forces: Sequence[Force] | None = None, springs: Sequence[int] | None = None) -> None:
        self.robot = robot
        self.base = BaseParameters.identify(robot) if base is None else base
        n = robot.n_joints
        default = [Force(j, law) for law in FORCE_LAWS for j in range(n)] if n <= MAX_JOINTS else []
        self.forces: tuple[Force, ...] = tuple(default if forces is None else forces)
        if any(f.joint >= n for f in self.forces) or len(set(self.forces)) != len(self.forces):
            raise ValueError(f"forces must be distinct and act on joints < {n}")
        self.springs: tuple[int, ...] = tuple(range(n)) if springs is None else tuple(springs)
        if list(self.springs) != sorted(set(self.springs)) or not all(0 <= j < n for j in self.springs):
            raise ValueError(f"sprung joints must be increasing indices < {n}")
        self.n_joints = n
        self._columns = np.asarray(self.base.columns)
        # The forces' and springs' columns as one gather and a one-hot placement per joint: a
        # Python loop over forces cost most of a single-state answer (0.25 of 0.41 ms).
        self._force_joints = [f.joint for f in self.forces]
        self._viscous = torch.tensor([f.law == "viscous" for f in self.forces], dtype=torch.bool)
        self._force_unit = torch.eye(n, dtype=torch.float64)[:, self._force_joints]  # (n, f)
        self._spring_unit = torch.eye(n, dtype=torch.float64)[:, list(self.springs)]  # (n, s)

    def __len__(self) -> int:
        return len(self.base) + len(self.forces) + 2 * len(self.springs)

    @property
    def names(self) -> list[str]:
        joints = self.robot.joint_names
        return (self.base.names(joints) + [f.name for f in self.forces]
                + [f"stiffness[{joints[j]}]" for j in self.springs] + [f"spring_offset[{joints[j]}]" for j in self.springs])

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(self.names)

    def inertial_images(self, q: torch.Tensor, qd: torch.Tensor, qdd: torch.Tensor) -> torch.Tensor:
        """Y[..., base columns] per sample, (B, n, b)."""
        rows = self.robot.regressor(*(x.detach().to(torch.float64).cpu().numpy() for x in (q, qd, qdd)))
        return torch.from_numpy(np.ascontiguousarray(rows[..., self._columns]).reshape(q.shape[0], self.n_joints, -1))

    def el_images(self, q: torch.Tensor, qd: torch.Tensor, qdd: torch.Tensor) -> torch.Tensor:
        """Torque of every column, (B, n, p): base-parameter regressor, generalised forces, springs."""
        q, qd, qdd = (torch.atleast_2d(x.to(torch.float64).cpu()) for x in (q, qd, qdd))
        columns = [self.inertial_images(q, qd, qdd)]
        if self.forces:
            velocity = qd[:, self._force_joints]
            columns.append(torch.where(self._viscous, velocity, torch.sign(velocity))[:, None, :] * self._force_unit)
        if self.springs:
            columns += [q[:, list(self.springs)][:, None, :] * self._spring_unit,
                        self._spring_unit.expand(q.shape[0], -1, -1)]
        return torch.cat(columns, -1)

    def weak_images(self, q: torch.Tensor, qd: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Not available: the weak form needs ∂L/∂q per inertial parameter, which Pinocchio's
        regressors do not give exactly."""
        raise ValueError(WEAK_ROWS_UNSUPPORTED)

    def mass_images(self, q: torch.Tensor) -> torch.Tensor:
        """∂τ/∂q̈ per base column, (B, n, n, b): M(q) = mass_images @ β."""
        q = torch.atleast_2d(q.to(torch.float64))
        zeros = torch.zeros_like(q)
        gravity = self.inertial_images(q, zeros, zeros)
        columns = [self.inertial_images(q, zeros, torch.eye(self.n_joints, dtype=q.dtype)[j].expand_as(q)) - gravity
                   for j in range(self.n_joints)]
        return torch.stack(columns, 2)


class RigidBodyModel(LinearModel):
    """A robot's URDF kinematics with fitted base parameters, friction and springs (Model
    protocol, kind "rigid_body"): τ = Y_b(q, q̇, q̈) β + Σ c_f F_f(q̇) + k ⊙ q + o. ``stderr``: the coefficients'
    standard errors from the fit (zeros when unknown)."""

    kind: ClassVar[str] = "rigid_body"

    @classmethod
    def from_urdf(cls, robot: RigidBodyRobot, library: RigidBodyLibrary | None = None) -> "RigidBodyModel":
        """The URDF's own inertias, no friction and no springs: what the description claims."""
        library = library or RigidBodyLibrary(robot)
        beta = library.base.of(robot.inertial_parameters())
        return cls(library, torch.cat((torch.from_numpy(beta), torch.zeros(len(library) - beta.size, dtype=torch.float64))))

    @property
    def robot(self) -> RigidBodyRobot:
        return self.library.robot

    @property
    def joint_names(self) -> tuple[str, ...]:
        return self.robot.joint_names

    @property
    def base_parameters(self) -> torch.Tensor:
        return self.coefficients[:len(self.library.base)]

    @property
    def forces(self) -> tuple[Force, ...]:
        return self.library.forces

    def torque(self, q: torch.Tensor, qd: torch.Tensor, qdd: torch.Tensor) -> torch.Tensor:
        """Inverse dynamics, friction and springs included, (B, n)."""
        return self.library.el_images(q, qd, qdd) @ self.coefficients

    def weak_parts(self, q: torch.Tensor, qd: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """See :meth:`RigidBodyLibrary.weak_images`."""
        raise ValueError(WEAK_ROWS_UNSUPPORTED)

    def mass_matrix(self, q: torch.Tensor, qd: torch.Tensor | None = None) -> torch.Tensor:
        """M(q) of the fitted base parameters, (B, n, n) (``qd`` unused: M depends on q only)."""
        return self.library.mass_images(q) @ self.base_parameters

    def equation(self, digits: int = 4) -> str:
        """The robot, its base parameters (with standard errors when fitted) and friction."""
        parts = []
        for name, c, s in zip(self.library.names, self.coefficients.tolist(), self.stderr.tolist()):
            parts.append(f"{name}={c:.{digits}g}" + (f"(±{s:.1g})" if s > 0 else ""))
        return (f"rigid body of URDF {self.robot.digest[:12]} ({self.library.n_joints} joints, "
                f"{len(self.library.base)} base parameters): " + ", ".join(parts))

    def to_payload(self) -> dict[str, Any]:
        payload = {"urdf": self.robot.urdf, "sha256": self.robot.digest,
                   "base_columns": list(self.library.base.columns),
                   "base_combination": tensor_to_json(torch.from_numpy(self.library.base.combination)),
                   "forces": [f.to_json() for f in self.forces], "springs": list(self.library.springs),
                   "coefficients": tensor_to_json(self.coefficients)}
        if bool((self.stderr > 0).any()):
            payload["stderr"] = tensor_to_json(self.stderr)
        return payload

    @classmethod
    def from_payload(cls, payload: dict) -> "RigidBodyModel":
        """Parse against the allow-list; any deviation raises SnapshotError with the reason."""
        required = {"urdf", "sha256", "base_columns", "base_combination", "forces", "springs", "coefficients"}
        if not isinstance(payload, dict) or not required <= set(payload) <= required | {"stderr"}:
            raise SnapshotError(f"rigid_body model: expected keys {sorted(required)} (optional stderr)")
        urdf, digest = payload["urdf"], payload["sha256"]
        if not isinstance(urdf, str) or len(urdf) > MAX_URDF_BYTES:
            raise SnapshotError(f"rigid_body model: urdf must be a string of at most {MAX_URDF_BYTES} characters")
        if not isinstance(digest, str):
            raise SnapshotError("rigid_body model: sha256 must be a string")
        try:
            robot = RigidBodyRobot.from_urdf(urdf)
        except UrdfError as exc:
            raise SnapshotError(f"rigid_body model: {exc}") from exc
        if robot.digest != digest:
            raise SnapshotError(f"rigid_body model: the URDF's SHA-256 {robot.digest[:12]}… is not the "
                                f"payload's {digest[:12]}…")
        n, width = robot.n_joints, INERTIAL_PARAMETERS * robot.n_joints
        if n > MAX_ROBOT_JOINTS:
            raise SnapshotError(f"rigid_body model: {n} joints exceed the limit {MAX_ROBOT_JOINTS}")
        columns = payload["base_columns"]
        if (not isinstance(columns, list) or not 1 <= len(columns) <= width
                or not all(type(c) is int and 0 <= c < width for c in columns) or columns != sorted(set(columns))):
            raise SnapshotError(f"rigid_body model: base_columns must be increasing integers in 0..{width - 1}")
        combination = tensor_from_json(payload["base_combination"], "rigid_body base_combination").to(torch.float64)
        if combination.shape != (len(columns), width):
            raise SnapshotError(f"rigid_body model: base_combination must have shape ({len(columns)}, {width})")
        if not torch.equal(combination[:, columns], torch.eye(len(columns), dtype=torch.float64)):
            raise SnapshotError("rigid_body model: base_combination must be the identity on base_columns")
        forces = payload["forces"]
        if not isinstance(forces, list) or len(forces) > n * len(FORCE_LAWS):
            raise SnapshotError("rigid_body model: forces must be a short list")
        parsed = []
        for i, obj in enumerate(forces):
            try:
                parsed.append(Force.from_json(obj, n))
            except ValueError as exc:
                raise SnapshotError(f"rigid_body model: forces[{i}]: {exc}") from exc
        springs = payload["springs"]
        if (not isinstance(springs, list) or not all(type(j) is int and 0 <= j < n for j in springs)
                or springs != sorted(set(springs))):
            raise SnapshotError(f"rigid_body model: springs must be increasing joint indices in 0..{n - 1}")
        coefficients = tensor_from_json(payload["coefficients"], "rigid_body coefficients")
        stderr = tensor_from_json(payload["stderr"], "rigid_body stderr") if "stderr" in payload else None
        try:
            library = RigidBodyLibrary(robot, BaseParameters(tuple(columns), combination.numpy()), parsed, springs)
            return cls(library, coefficients, stderr=stderr)
        except ValueError as exc:
            raise SnapshotError(f"rigid_body model: {exc}") from exc


def fit_rigid_body(library: RigidBodyLibrary, stamps: torch.Tensor, q: torch.Tensor, qd: torch.Tensor,
                   qdd: torch.Tensor, tau: torch.Tensor, *,
                   rows: integral.RowForm = integral.RowForm()) -> RigidBodyModel:
    """Least squares of every column (base parameters and friction, none selected away: the
    URDF says they are there) on integral rows (SPEC §2b), with standard errors and the
    per-joint noise scale of one row in the report, as :func:`regression.fit_integral`.

    Why no sparse selection: the base parameters are a complete, non-redundant description of
    the rigid body, so dropping one biases the rest. Raises :class:`integral.TooFewWindows` when
    the record holds too few gap-free windows."""
    stamps, q, qd, qdd, tau = (t.detach().to(torch.float64).cpu() for t in (stamps, q, qd, qdd, tau))
    starts, stride_ratio = rows.fit_starts(stamps)
    matrix = rows.columns(library, stamps, q, qd, qdd, starts)
    target = rows.target(stamps, tau, starts)
    fit = integral.select(matrix, target, stride_ratio=stride_ratio, fixed=True,
                          relative_floor=rows.floor)
    report = {"cv_rmse": fit.cv_rmse, "noise": fit.noise.tolist(), "candidates": len(library),
              "identifiable": len(library), "unidentifiable": [], "selected": len(library),
              "windows": len(starts), "rows": rows.form}
    return RigidBodyModel(library, fit.coefficients, report, fit.stderr)
