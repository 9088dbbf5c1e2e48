"""Symbolic distillation (SPEC §3): exact, sparse Lagrangians from torque data.

Euler–Lagrange is linear in L, so with L = Σ c_m φ_m(q, q̇) the torque is τ = Σ c_m EL(φ_m)
and the coefficients follow from linear least squares. The basis comes from the SyReNet
grammar (products of + × sin cos of the inputs) in a *non-redundant* form — velocity monomials
× {1, cos, sin of integer combinations of q} — because naive products of trig functions are
rank-deficient through trig identities. Terms whose EL image is zero or collinear with simpler
terms (constants, total time derivatives) are removed by a rank check on data, as in classical
base-parameter identification. A term is structured data (exponents, an allow-listed function
name, integer frequencies), never code, so a fitted model can travel as a safe payload.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, ClassVar, Sequence

import sympy as sp
import torch

from syrenets_ros.dynamics.chain import ChainParams
from syrenets_ros.dynamics.euler_lagrange import LagrangianFn
from syrenets_ros.dynamics.pendulum import RIGID, JointElements, PendulumParams
from syrenets_ros.learning.payload import SnapshotError, tensor_from_json, tensor_to_json

FUNCTIONS: tuple[str, ...] = ("one", "cos", "sin")
FORCE_LAWS: tuple[str, ...] = ("viscous", "coulomb")
MAX_JOINTS = 8
MAX_VELOCITY_DEGREE = 4
# Polynomial factors in q up to degree 4: a hardening spring −k q − k₃ q³ is a quartic
# potential; the library grows to it by stages (:func:`polynomial_terms`).
MAX_POSITION_DEGREE = 4
MAX_FREQUENCY = 8
MAX_TERMS = 4096


@dataclass(frozen=True, order=True)
class Term:
    """φ(q, q̇) = Π_i q̇_i^velocity[i] · Π_i q_i^position[i] · function(Σ_i angle[i] q_i).

    Canonical form (so that distinct terms are distinct functions): "one" has a zero angle;
    cos/sin have a non-zero angle whose first non-zero entry is positive. The polynomial factor
    in q (empty = none) carries what no trig library holds, e.g. a spring's ½k(q−r)²; the
    default grammar leaves it out and the network proposes it (SPEC §3).
    """

    velocity: tuple[int, ...]
    function: str
    angle: tuple[int, ...]
    position: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        n = len(self.velocity)
        if not 1 <= n <= MAX_JOINTS or len(self.angle) != n:
            raise ValueError(f"velocity and angle must both have 1..{MAX_JOINTS} equal lengths")
        if self.position == ():
            object.__setattr__(self, "position", (0,) * n)
        if len(self.position) != n:
            raise ValueError(f"position must have {n} entries")
        for name, values in (("velocity", self.velocity), ("angle", self.angle), ("position", self.position)):
            if not all(type(v) is int for v in values):
                raise ValueError(f"{name} entries must be integers, got {values!r}")
        if any(e < 0 for e in self.velocity) or sum(self.velocity) > MAX_VELOCITY_DEGREE:
            raise ValueError(f"velocity exponents must be >= 0 with total <= {MAX_VELOCITY_DEGREE}")
        if any(e < 0 for e in self.position) or sum(self.position) > MAX_POSITION_DEGREE:
            raise ValueError(f"position exponents must be >= 0 with total <= {MAX_POSITION_DEGREE}")
        if any(abs(k) > MAX_FREQUENCY for k in self.angle):
            raise ValueError(f"angle coefficients must be within ±{MAX_FREQUENCY}")
        if self.function not in FUNCTIONS:
            raise ValueError(f"function {self.function!r} not in {FUNCTIONS}")
        nonzero = [k for k in self.angle if k != 0]
        if self.function == "one" and nonzero:
            raise ValueError("function 'one' takes a zero angle")
        if self.function != "one" and (not nonzero or nonzero[0] < 0):
            raise ValueError("cos/sin need a non-zero angle whose first non-zero entry is positive")

    @property
    def degree(self) -> int:
        return sum(self.velocity)

    @property
    def complexity(self) -> int:
        """Size of the expression: velocity and position degrees plus the trig frequency
        (cos q1: 1, cos 2q1: 2, q1²: 2, q̇1q̇2: 2, q̇1q̇2·cos 2q2: 4). Among models the data
        cannot tell apart, selection keeps the simplest (Occam's razor)."""
        trig = sum(abs(k) for k in self.angle) if self.function != "one" else 0
        return sum(self.velocity) + sum(self.position) + trig

    def to_sympy(self) -> sp.Expr:
        n = len(self.velocity)
        q, qd = _symbols(n)
        monomial = sp.Mul(*(qd[i] ** e for i, e in enumerate(self.velocity)),
                          *(q[i] ** e for i, e in enumerate(self.position)))
        if self.function == "one":
            return monomial
        angle = sp.Add(*(k * q[i] for i, k in enumerate(self.angle)))
        return monomial * (sp.cos(angle) if self.function == "cos" else sp.sin(angle))

    @property
    def name(self) -> str:
        return sp.sstr(self.to_sympy())

    def to_json(self) -> dict[str, Any]:
        """Structured data; the polynomial factor only when present (older readers agree)."""
        obj: dict[str, Any] = {"velocity": list(self.velocity), "function": self.function, "angle": list(self.angle)}
        if any(self.position):
            obj["position"] = list(self.position)
        return obj

    @classmethod
    def from_json(cls, obj: object, n_joints: int) -> "Term":
        required = {"velocity", "function", "angle"}
        if not isinstance(obj, dict) or not required <= set(obj) <= required | {"position"}:
            raise ValueError("expected keys velocity, function, angle (and optionally position)")
        velocity, function, angle = obj["velocity"], obj["function"], obj["angle"]
        position = obj.get("position", [0] * n_joints)
        if not all(isinstance(v, list) for v in (velocity, angle, position)) or not isinstance(function, str):
            raise ValueError("velocity, angle and position must be lists, function a string")
        if len(velocity) != n_joints or len(angle) != n_joints or len(position) != n_joints:
            raise ValueError(f"velocity, angle and position must have {n_joints} entries")
        return cls(tuple(velocity), function, tuple(angle), tuple(position))


@dataclass(frozen=True, order=True)
class Force:
    """A dissipative generalised force on one joint, linear in its coefficient (SPEC §2b).

    "viscous": b·q̇_j (Rayleigh function ½b q̇_j²); "coulomb": c·sign(q̇_j) (D = c|q̇_j|).
    No Lagrangian produces these; the model class carries them beside L.
    """

    joint: int
    law: str

    def __post_init__(self) -> None:
        if type(self.joint) is not int or not 0 <= self.joint < MAX_JOINTS:
            raise ValueError(f"force joint must be an integer in 0..{MAX_JOINTS - 1}")
        if self.law not in FORCE_LAWS:
            raise ValueError(f"force law {self.law!r} not in {FORCE_LAWS}")

    @property
    def complexity(self) -> int:
        """As simple as the simplest Lagrangian term (:attr:`Term.complexity`)."""
        return 1

    @property
    def name(self) -> str:
        """The dissipation function's term whose gradient is this force."""
        velocity = f"qd{self.joint + 1}"
        return f"{velocity}**2/2" if self.law == "viscous" else f"Abs({velocity})"

    def generalised_force(self, qd: torch.Tensor) -> torch.Tensor:
        """(..., n) velocities → (..., n) force with one non-zero entry."""
        column = qd[..., self.joint]
        value = column if self.law == "viscous" else torch.sign(column)
        zero = torch.zeros_like(value)
        # Built without in-place writes, so torch.func transforms (the integrator) can trace it.
        return torch.stack([value if j == self.joint else zero for j in range(qd.shape[-1])], -1)

    def to_json(self) -> dict[str, Any]:
        return {"joint": self.joint, "law": self.law}

    @classmethod
    def from_json(cls, obj: object, n_joints: int) -> "Force":
        if not isinstance(obj, dict) or set(obj) != {"joint", "law"}:
            raise ValueError("expected keys joint, law")
        if type(obj["joint"]) is not int or not 0 <= obj["joint"] < n_joints:
            raise ValueError(f"force joint must be an integer in 0..{n_joints - 1}")
        if not isinstance(obj["law"], str):
            raise ValueError("force law must be a string")
        return cls(obj["joint"], obj["law"])


def _symbols(n: int) -> tuple[list[sp.Symbol], list[sp.Symbol]]:
    q = list(sp.symbols(" ".join(f"q{i + 1}" for i in range(n)) + " ", real=True))
    qd = list(sp.symbols(" ".join(f"qd{i + 1}" for i in range(n)) + " ", real=True))
    return q, qd


def _sort_key(term: Term) -> tuple:
    """Simpler terms first: the rank check keeps the first of a collinear group."""
    return (term.degree, sum(term.position), FUNCTIONS.index(term.function) > 0, sum(map(abs, term.angle)),
            [-e for e in term.velocity], [-e for e in term.position], FUNCTIONS.index(term.function),
            [-k for k in term.angle])


def grammar_angles(n_joints: int) -> list[tuple[int, ...]]:
    """Frequencies of the default library: q_i, 2q_i, the sums along the chain
    q_i + q_{i+1} + … + q_j and the differences q_i − q_j (i < j).

    Why these: in relative coordinates every rod's absolute angle and every angle between two
    rods of a planar chain is a contiguous sum (its L needs cos(q_1+q_2+q_3) for three
    links); in absolute coordinates the angles between rods are differences. A sum of joints
    that are not neighbours (q_1 + q_3) appears in neither, and dropping it keeps the angle
    count at n² + n, as before; for two joints the set is unchanged."""
    unit = [tuple(int(i == j) for j in range(n_joints)) for i in range(n_joints)]
    angles = list(unit) + [tuple(2 * v for v in u) for u in unit]
    for i, j in itertools.combinations(range(n_joints), 2):
        angles.append(tuple(int(i <= k <= j) for k in range(n_joints)))
        angles.append(tuple(a - b for a, b in zip(unit[i], unit[j])))
    return angles


def _velocity_exponents(n_joints: int, max_degree: int) -> list[tuple[int, ...]]:
    exps = []
    for degree in range(max_degree + 1):
        for combo in itertools.combinations_with_replacement(range(n_joints), degree):
            exps.append(tuple(combo.count(i) for i in range(n_joints)))
    return exps


def _monomial_indices(exponent: Sequence[int], width: int) -> list[int]:
    """Columns of [1, q̇_1..q̇_n] whose product is the monomial, padded with the 1-column."""
    idx = [i + 1 for i, e in enumerate(exponent) for _ in range(e)]
    return idx + [0] * (width - len(idx))


class TermLibrary:
    """An ordered set of Lagrangian terms and dissipative forces, evaluated vectorised.

    Columns of :meth:`el_images` are the Lagrangian terms' Euler–Lagrange images followed by
    the forces' generalised forces: τ = images · c is linear in every coefficient.
    """

    def __init__(self, terms: Sequence[Term], forces: Sequence[Force] = ()) -> None:
        if not terms and not forces:
            raise ValueError("a term library needs at least one term")
        n = len(terms[0].velocity) if terms else None
        if n is None:
            raise ValueError("a term library needs at least one Lagrangian term")
        if any(len(t.velocity) != n for t in terms):
            raise ValueError("all terms must have the same number of joints")
        if any(f.joint >= n for f in forces):
            raise ValueError(f"force joints must be < {n}")
        if len(set(terms)) != len(terms) or len(set(forces)) != len(forces):
            raise ValueError("duplicate terms")
        if len(terms) + len(forces) > MAX_TERMS:
            raise ValueError(f"{len(terms) + len(forces)} terms exceed the limit {MAX_TERMS}")
        self.terms: tuple[Term, ...] = tuple(terms)
        self.forces: tuple[Force, ...] = tuple(forces)
        self.n_joints = n
        # Columns are products of a velocity monomial and a trig factor P(q)·g(angle·q), and a
        # library has far fewer distinct ones of each than columns (2 joints: 6 monomials and 15
        # factors for 78 terms): each is evaluated once per sample and the columns gathered.
        velocities = list(dict.fromkeys(t.velocity for t in terms))
        factors = list(dict.fromkeys((t.function, t.angle, t.position) for t in terms))
        self._velocity_of = torch.tensor([velocities.index(t.velocity) for t in terms])
        self._factor_of = torch.tensor([factors.index((t.function, t.angle, t.position)) for t in terms])
        width = max(1, max(sum(v) for v in velocities))
        eye = [[int(i == k) for i in range(n)] for k in range(n)]

        def lowered(exponent: Sequence[int], k: int) -> list[int]:
            return [max(a - b, 0) for a, b in zip(exponent, eye[k])]

        self._idx0 = torch.tensor([_monomial_indices(e, width) for e in velocities])
        self._d1_coef = torch.tensor([[e[k] for k in range(n)] for e in velocities], dtype=torch.float64)
        self._d1_idx = torch.tensor([[_monomial_indices(lowered(e, k), width) for k in range(n)] for e in velocities])
        self._d2_coef = torch.tensor([[[e[k] * lowered(e, k)[i] for i in range(n)] for k in range(n)]
                                      for e in velocities], dtype=torch.float64)
        self._d2_idx = torch.tensor([[[_monomial_indices(lowered(lowered(e, k), i), width) for i in range(n)]
                                      for k in range(n)] for e in velocities])
        # The polynomial factor P(q) = Π q_i^a_i and its gradient, by the same gather-product.
        positions = [position for _, _, position in factors]
        position_width = max(1, max(sum(a) for a in positions))
        self._polynomial = any(any(a) for a in positions)
        self._p0_idx = torch.tensor([_monomial_indices(a, position_width) for a in positions])
        self._p1_coef = torch.tensor([list(a) for a in positions], dtype=torch.float64)
        self._p1_idx = torch.tensor([[_monomial_indices(lowered(a, k), position_width) for k in range(n)]
                                     for a in positions])
        self._angles = torch.tensor([angle for _, angle, _ in factors], dtype=torch.float64)
        self._function = torch.tensor([FUNCTIONS.index(function) for function, _, _ in factors])

    @classmethod
    def grammar(cls, n_joints: int = 2, *, max_velocity_degree: int = 2,
                extra_angles: Sequence[tuple[int, ...]] = (), dissipation: bool = False) -> "TermLibrary":
        """Velocity monomials up to ``max_velocity_degree`` × {1, cos, sin of the grammar angles};
        with ``dissipation``, viscous and Coulomb forces on every joint."""
        angles = list(dict.fromkeys(list(grammar_angles(n_joints)) + [tuple(a) for a in extra_angles]))
        terms = []
        for e in _velocity_exponents(n_joints, max_velocity_degree):
            terms.append(Term(e, "one", (0,) * n_joints))
            terms += [Term(e, f, a) for a in angles for f in ("cos", "sin")]
        forces = [Force(j, law) for law in FORCE_LAWS for j in range(n_joints)] if dissipation else []
        return cls(sorted(terms, key=_sort_key), forces)

    def __len__(self) -> int:
        return len(self.terms) + len(self.forces)

    @property
    def names(self) -> list[str]:
        return [t.name for t in self.terms] + [f.name for f in self.forces]

    @property
    def columns(self) -> tuple[Term | Force, ...]:
        return self.terms + self.forces

    def index(self, term: Term | Force) -> int:
        return self.columns.index(term)

    def extended(self, terms: Sequence[Term] = (), forces: Sequence[Force] = ()) -> "TermLibrary":
        """This library plus new terms/forces (kept in grammar order, duplicates ignored)."""
        all_terms = sorted(set(self.terms) | set(terms), key=_sort_key)
        all_forces = sorted(set(self.forces) | set(forces))
        return TermLibrary(all_terms, all_forces)

    def subset(self, columns: Sequence[int]) -> "TermLibrary":
        chosen = [self.columns[i] for i in sorted(columns)]
        return TermLibrary([c for c in chosen if isinstance(c, Term)], [c for c in chosen if isinstance(c, Force)])

    def to_sympy(self) -> list[sp.Expr]:
        return [t.to_sympy() for t in self.terms]

    def _position_factor(self, q: torch.Tensor, g: torch.Tensor, dg_dq: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """h = P(q)·g and ∂h/∂q for the polynomial factor P (identity when no term has one)."""
        if not self._polynomial:
            return g, dg_dq
        p0 = self._monomials(q, self._p0_idx)
        p1 = self._p1_coef.to(q) * self._monomials(q, self._p1_idx)
        return p0 * g, p1 * g[..., None] + p0[..., None] * dg_dq

    def _trig(self, q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The distinct trig factors h(q) = P(q)·g(angle) and their gradients ∂h/∂q, shapes
        (…, T) and (…, T, n)."""
        angle = q @ self._angles.to(q).T
        cos, sin = torch.cos(angle), torch.sin(angle)
        f = self._function.to(q.device)
        one = torch.ones_like(angle)
        g = torch.where(f == 1, cos, torch.where(f == 2, sin, one))
        dg = torch.where(f == 1, -sin, torch.where(f == 2, cos, torch.zeros_like(angle)))
        return self._position_factor(q, g, dg[..., None] * self._angles.to(q))

    @staticmethod
    def _monomials(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """Products of gathered columns of [1, x]; a gather-product keeps gradients finite at 0."""
        ext = torch.cat((torch.ones_like(x[..., :1]), x), -1)
        flat = idx.to(x.device).reshape(-1, idx.shape[-1])
        out = ext[..., flat[:, 0]]
        for d in range(1, flat.shape[1]):
            out = out * ext[..., flat[:, d]]
        return out.reshape(*x.shape[:-1], *idx.shape[:-1])

    def _velocity_parts(self, qd: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Each distinct velocity monomial m and its gradient ∂m/∂q̇, (…, V) and (…, V, n)."""
        return (self._monomials(qd, self._idx0),
                self._d1_coef.to(qd) * self._monomials(qd, self._d1_idx))

    def features(self, q: torch.Tensor, qd: torch.Tensor) -> torch.Tensor:
        """φ_m(q, q̇) of the Lagrangian terms for inputs (..., n); returns (..., p_L)."""
        h, _ = self._trig(q)
        m0 = self._monomials(qd, self._idx0)
        return m0[..., self._velocity_of.to(q.device)] * h[..., self._factor_of.to(q.device)]

    def el_images(self, q: torch.Tensor, qd: torch.Tensor, qdd: torch.Tensor) -> torch.Tensor:
        """Euler–Lagrange torque of every column, closed form; inputs (B, n), returns (B, n, p).

        For φ = m(q̇) h(q): τ_k = Σ_i ∂²m/∂q̇_k∂q̇_i q̈_i h + ∂m/∂q̇_k ḣ − m ∂h/∂q_k; a force
        column is its generalised force.
        """
        h, dh = self._trig(q)
        m0, m1 = self._velocity_parts(qd)
        m2 = self._d2_coef.to(qd) * self._monomials(qd, self._d2_idx)
        acc = (m2 * qdd[..., None, None, :]).sum(-1)  # (…, V, n)
        h_dot = (dh * qd[..., None, :]).sum(-1)  # (…, T)
        v, f = self._velocity_of.to(q.device), self._factor_of.to(q.device)
        tau = (acc[..., v, :] * h[..., f, None] + m1[..., v, :] * h_dot[..., f, None]
               - m0[..., v, None] * dh[..., f, :]).transpose(-1, -2)
        if not self.forces:
            return tau
        forces = torch.stack([force.generalised_force(qd) for force in self.forces], -1)
        return torch.cat((tau, forces), -1)

    def weak_images(self, q: torch.Tensor, qd: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Each column's momentum ∂φ/∂q̇ and static force −∂φ/∂q (a force column: zero momentum,
        its generalised force), (B, n, p) each: el_images = d/dt momentum + static. The weak
        form integrates the time derivative by parts, so it needs no q̈ (SPEC §2b)."""
        h, dh = self._trig(q)
        m0, m1 = self._velocity_parts(qd)
        v, f = self._velocity_of.to(q.device), self._factor_of.to(q.device)
        momentum = (m1[..., v, :] * h[..., f, None]).transpose(-1, -2)
        static = (-m0[..., v, None] * dh[..., f, :]).transpose(-1, -2)
        if not self.forces:
            return momentum, static
        forces = torch.stack([f.generalised_force(qd) for f in self.forces], -1)
        return torch.cat((momentum, torch.zeros_like(forces)), -1), torch.cat((static, forces), -1)

    def identifiable(self, q: torch.Tensor, qd: torch.Tensor, qdd: torch.Tensor, *,
                     tol: float = 1e-8) -> tuple["TermLibrary", list[str]]:
        """Keep columns whose EL image is independent of the (simpler) columns before them.

        One unpivoted QR of the column-normalised image matrix: |R_jj| is the sine of the angle
        between column j and the span of columns < j. Returns the kept library and the names of
        the dropped terms (zero images: constants, total derivatives; collinear ones).
        """
        images = self.el_images(q, qd, qdd).reshape(-1, len(self))
        return self._independent_columns(images, tol)

    def _independent_columns(self, matrix: torch.Tensor, tol: float) -> tuple["TermLibrary", list[str]]:
        # Forces first: on little or smooth data a viscous force can lie in the span of many
        # trig terms, and the physical, simpler column is the one to keep.
        order = list(range(len(self.terms), len(self))) + list(range(len(self.terms)))
        matrix = matrix[:, order]
        norms = matrix.norm(dim=0)
        nonzero = norms > tol * norms.max().clamp_min(torch.finfo(matrix.dtype).tiny)
        r = torch.linalg.qr(matrix / norms.clamp_min(torch.finfo(matrix.dtype).tiny), mode="r")[1]
        # With fewer rows than columns, the columns past the rows are in the span already.
        diagonal = torch.zeros(matrix.shape[1], dtype=matrix.dtype)
        diagonal[:min(matrix.shape)] = r.diagonal()
        kept_in_order = (nonzero & (diagonal.abs() > tol)).tolist()
        keep = [False] * len(self)
        for position, column in enumerate(order):
            keep[column] = kept_in_order[position]
        if not any(k for k, c in zip(keep, self.columns) if isinstance(c, Term)):
            raise ValueError("no term has an identifiable effect on these data")
        dropped = [c.name for c, k in zip(self.columns, keep) if not k]
        return self.subset([i for i, k in enumerate(keep) if k]), dropped


class LinearModel:
    """A model linear in its coefficients over a library's columns (term or rigid-body): the
    coefficients, their standard errors from the fit (zeros when unknown, e.g. an exact
    construction) and the fit's report, checked once here for every such kind."""

    def __init__(self, library: Any, coefficients: torch.Tensor,
                 fit_report: dict[str, Any] | None = None, stderr: torch.Tensor | None = None) -> None:
        coefficients = torch.as_tensor(coefficients, dtype=torch.float64).detach().cpu()
        if coefficients.shape != (len(library),):
            raise ValueError(f"{len(library)} columns need {len(library)} coefficients, got {tuple(coefficients.shape)}")
        if not torch.isfinite(coefficients).all():
            raise ValueError("coefficients must be finite")
        stderr = (torch.zeros_like(coefficients) if stderr is None
                  else torch.as_tensor(stderr, dtype=torch.float64).detach().cpu())
        if stderr.shape != coefficients.shape or not (torch.isfinite(stderr).all() and (stderr >= 0).all()):
            raise ValueError("stderr must be finite, non-negative, one per coefficient")
        self.library = library
        self.coefficients = coefficients
        self.stderr = stderr
        self.fit_report: dict[str, Any] = dict(fit_report or {})


class TermModel(LinearModel):
    """L = Σ c_m φ_m plus dissipative forces Σ c_f F_f: the distilled, servable model
    (Model protocol, kind "terms"). ``stderr`` holds the coefficients' standard errors from
    the fit's covariance (zeros when unknown, e.g. for an exact construction)."""

    kind: ClassVar[str] = "terms"

    @property
    def terms(self) -> tuple[Term, ...]:
        return self.library.terms

    @property
    def forces(self) -> tuple[Force, ...]:
        return self.library.forces

    def coefficient_of(self, term: Term | Force) -> float:
        """The coefficient of ``term`` (0 when the model does not contain it)."""
        columns = self.library.columns
        return float(self.coefficients[columns.index(term)]) if term in columns else 0.0

    def lagrangian(self, q: torch.Tensor, qd: torch.Tensor) -> torch.Tensor:
        return self.library.features(q, qd) @ self.coefficients[:len(self.terms)].to(q)

    def lagrangian_fn(self) -> LagrangianFn:
        """Per-sample L(q, q̇) for euler_lagrange and the integrator."""
        return self.lagrangian

    def dissipative_force(self, qd: torch.Tensor) -> torch.Tensor:
        """Σ c_f F_f(q̇), shape (..., n): what the motor must add against friction."""
        out = torch.zeros_like(qd)
        for force, c in zip(self.forces, self.coefficients[len(self.terms):].tolist()):
            out = out + c * force.generalised_force(qd)
        return out

    def dissipation_fn(self):
        """q̇ ↦ dissipative force for the forced variational integrator, or None if there is none."""
        return self.dissipative_force if self.forces else None

    def torque(self, q: torch.Tensor, qd: torch.Tensor, qdd: torch.Tensor) -> torch.Tensor:
        """τ = EL images · c (dissipation included): linear in the coefficients, no autodiff."""
        return self.library.el_images(q, qd, qdd) @ self.coefficients.to(q)

    def weak_parts(self, q: torch.Tensor, qd: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Momentum ∂L/∂q̇ and static force −∂L/∂q + D(q̇), (B, n) each, for weak-form rows."""
        momentum, static = self.library.weak_images(q, qd)
        coefficients = self.coefficients.to(q)
        return momentum @ coefficients, static @ coefficients

    def to_sympy(self, digits: int | None = None) -> sp.Expr:
        """L as a sympy expression; ``digits`` rounds the coefficients (significant digits)."""
        return sp.Add(*[sp.Float(float(f"{c:.{digits}g}") if digits else c) * t.to_sympy()
                        for c, t in zip(self.coefficients.tolist(), self.terms)])

    def _with_uncertainty(self, names: Sequence[str], offset: int, digits: int) -> str:
        """Σ c(±σ)*name: each coefficient with its standard error, e.g. 7.594(±0.003)*qd1**2."""
        parts = []
        for i, name in enumerate(names):
            c, s = float(self.coefficients[offset + i]), float(self.stderr[offset + i])
            parts.append(f"{c:.{digits}g}(±{s:.1g})*{name}" if s > 0 else f"{c:.{digits}g}*{name}")
        return " + ".join(parts).replace("+ -", "- ") if parts else "0"

    def equation(self, digits: int = 4) -> str:
        """Readable L (and D when the model dissipates) in q1.., qd1..: coefficients rounded
        and, when the fit estimated them, with their standard errors; otherwise L is grouped
        by trig factor."""
        if bool((self.stderr[:len(self.terms)] > 0).any()):
            text = "L = " + self._with_uncertainty([t.name for t in self.terms], 0, digits)
        else:
            expr = self.to_sympy(digits)
            trig = sorted(expr.atoms(sp.cos, sp.sin), key=sp.default_sort_key)
            text = "L = " + sp.sstr(sp.collect(expr, trig) if trig else expr)
        if self.forces:
            text += "; D = " + self._with_uncertainty([f.name for f in self.forces], len(self.terms), digits)
        return text

    def to_payload(self) -> dict[str, Any]:
        payload = {"n_joints": self.library.n_joints, "terms": [t.to_json() for t in self.terms],
                   "coefficients": tensor_to_json(self.coefficients)}
        if self.forces:
            payload["forces"] = [f.to_json() for f in self.forces]
        if bool((self.stderr > 0).any()):
            payload["stderr"] = tensor_to_json(self.stderr)
        return payload

    @classmethod
    def from_payload(cls, payload: dict) -> "TermModel":
        """Parse against the allow-list; any deviation raises SnapshotError with the reason."""
        required = {"n_joints", "terms", "coefficients"}
        if not isinstance(payload, dict) or not required <= set(payload) <= required | {"forces", "stderr"}:
            raise SnapshotError("terms model: expected keys n_joints, terms, coefficients (optional forces, stderr)")
        n, terms, forces = payload["n_joints"], payload["terms"], payload.get("forces", [])
        if type(n) is not int or not 1 <= n <= MAX_JOINTS:
            raise SnapshotError(f"terms model: n_joints must be an integer in 1..{MAX_JOINTS}")
        if not isinstance(terms, list) or not 1 <= len(terms) <= MAX_TERMS:
            raise SnapshotError(f"terms model: terms must be a list of 1..{MAX_TERMS} entries")
        if not isinstance(forces, list) or len(forces) > 2 * n * len(FORCE_LAWS):
            raise SnapshotError("terms model: forces must be a short list")
        parsed_terms, parsed_forces = [], []
        for kind, items, parse, out in (("terms", terms, Term.from_json, parsed_terms),
                                        ("forces", forces, Force.from_json, parsed_forces)):
            for i, obj in enumerate(items):
                try:
                    out.append(parse(obj, n))
                except ValueError as exc:
                    raise SnapshotError(f"terms model: {kind}[{i}]: {exc}") from exc
        if len(set(parsed_terms)) != len(parsed_terms) or len(set(parsed_forces)) != len(parsed_forces):
            raise SnapshotError("terms model: duplicate terms")
        width = len(parsed_terms) + len(parsed_forces)
        coefficients = tensor_from_json(payload["coefficients"], "terms model coefficients")
        if coefficients.shape != (width,):
            raise SnapshotError(f"terms model: coefficients must have shape ({width},)")
        stderr = None
        if "stderr" in payload:
            stderr = tensor_from_json(payload["stderr"], "terms model stderr")
            if stderr.shape != (width,) or not bool((stderr >= 0).all()):
                raise SnapshotError(f"terms model: stderr must have shape ({width},) and be >= 0")
        try:
            return cls(TermLibrary(parsed_terms, parsed_forces), coefficients, stderr=stderr)
        except ValueError as exc:
            raise SnapshotError(f"terms model: {exc}") from exc


def polynomial_terms(n_joints: int, max_velocity_degree: int = 2, position_degree: int = 2) -> list[Term]:
    """Terms with a polynomial factor in q of degree 1..``position_degree`` (q_i, q_i², q_i·q_j,
    … q_i⁴) times the even velocity monomials (1, q̇_i q̇_j): what the network's products build
    and the trig grammar lacks — a spring ½k(q_i − r)² is k/2·q_i² − k r·q_i, a hardening one
    adds k₃/4·q_i⁴ (SPEC §2b). Odd velocity degrees are left out: q̇_i·P(q) is a total
    derivative or a gyroscopic term no pendulum has."""
    if not 1 <= position_degree <= MAX_POSITION_DEGREE:
        raise ValueError(f"position_degree must be in 1..{MAX_POSITION_DEGREE}, got {position_degree}")
    positions = [e for e in _velocity_exponents(n_joints, position_degree) if sum(e) > 0]
    velocities = [e for e in _velocity_exponents(n_joints, max_velocity_degree) if sum(e) % 2 == 0]
    return sorted((Term(v, "one", (0,) * n_joints, p) for v in velocities for p in positions), key=_sort_key)


def periodic_terms(n_joints: int, known: Sequence[tuple[int, ...]], budget: int) -> list[Term]:
    """Potential terms cos/sin(k·q) at frequencies outside ``known`` (the angles a library
    already holds), simplest first and at most ``budget`` columns: each joint's harmonics
    3q_i … MAX_FREQUENCY·q_i (a motor's cogging, a cam), then the integer combinations of two
    or three joints with entries within ±2 (longer angle sums than the chain's, e.g.
    q1 + 2q2, q1 − q2 + q3) by total frequency. Bounded because every column costs each
    refit; potentials only, since a kinetic term at a new frequency is a new inertia
    coupling no rigid chain has."""
    known_set = set(map(tuple, known))
    angles = [a for a in (tuple(k * int(i == j) for i in range(n_joints))
                          for j in range(n_joints) for k in range(3, MAX_FREQUENCY + 1)) if a not in known_set]
    # Combinations one total frequency at a time, only while the budget has room: a 7-joint
    # arm's harmonics alone fill it, and its three-joint combinations number over two thousand.
    for total in range(2, 7):  # up to three entries of ±2
        if 2 * len(angles) >= budget:
            break
        level = sorted(_combinations_of_total(n_joints, total), key=lambda a: [-abs(k) for k in a])
        angles += [a for a in level if a not in known_set]
    zero = (0,) * n_joints
    terms = [Term(zero, function, angle) for angle in angles for function in ("cos", "sin")]
    return terms[:max(0, budget)]


def _combinations_of_total(n_joints: int, total: int) -> list[tuple[int, ...]]:
    """Angles with entries within ±2 on two or three joints, the first positive, whose absolute
    entries sum to ``total`` (in a fixed order: ties in the caller's sort keep it)."""
    return [tuple(entries[joints.index(i)] if i in joints else 0 for i in range(n_joints))
            for width in (2, 3) for joints in itertools.combinations(range(n_joints), width)
            for entries in itertools.product((1, 2, -1, -2), repeat=width)
            if entries[0] > 0 and sum(map(abs, entries)) == total]


def inertia_terms(n_joints: int) -> list[Term]:
    """Kinetic terms q̇_i q̇_j · P(q) with a polynomial P of degree 1..2: an inertia that depends
    on position in a way no trig factor holds (a sliding or telescoping mass, a cable reel)."""
    return [t for t in polynomial_terms(n_joints, max_velocity_degree=2, position_degree=2) if t.degree == 2]


def true_pendulum_terms(params: PendulumParams, joints: JointElements = RIGID) -> TermModel:
    """SPEC §2's L expanded in library terms (relative coordinates): the distillation target.

    ½A q̇1² + ½B(q̇1+q̇2)² + C q̇1(q̇1+q̇2) cos q2 + D cos q1 + E cos(q1+q2) has 7 terms; the
    joints' springs add −½k q_i² + k r q_i (the constant dropped), cogging a·cos(p q_i), their
    viscous and Coulomb friction the forces of D (SPEC §2b).
    """
    a, b, c = params.inertia_coefficients
    d, e = params.gravity_coefficients
    one, cos = "one", "cos"
    terms = {
        Term((2, 0), one, (0, 0)): 0.5 * (a + b), Term((1, 1), one, (0, 0)): b,
        Term((0, 2), one, (0, 0)): 0.5 * b, Term((2, 0), cos, (0, 1)): c,
        Term((1, 1), cos, (0, 1)): c, Term((0, 0), cos, (1, 0)): d, Term((0, 0), cos, (1, 1)): e,
    }
    for i, (k, r) in enumerate(zip(joints.stiffness, joints.rest_angle)):
        power = [tuple(degree * int(j == i) for j in range(2)) for degree in (1, 2)]
        if k and r:
            terms[Term((0, 0), one, (0, 0), power[0])] = k * r
        if k:
            terms[Term((0, 0), one, (0, 0), power[1])] = -0.5 * k
    for i, amplitude in enumerate(joints.cogging):
        if amplitude:  # −a(1 − cos p·q_i), the constant dropped
            terms[Term((0, 0), cos, tuple(joints.cogging_periods * int(j == i) for j in range(2)))] = amplitude
    forces = {Force(i, law): v for law, values in (("viscous", joints.damping), ("coulomb", joints.friction))
              for i, v in enumerate(values) if v}
    return TermModel(TermLibrary(list(terms), list(forces)),
                     torch.tensor(list(terms.values()) + list(forces.values()), dtype=torch.float64))


def true_chain_terms(params: ChainParams) -> TermModel:
    """The planar chain's L expanded in library terms (relative coordinates): the target of
    learning a chain. With ω_a = q̇_1 + … + q̇_a, T = ½ Σ_a H_aa ω_a² + Σ_{a<b} H_ab ω_a ω_b
    cos(q_{a+1} + … + q_b) multiplies out into velocity monomials, and −V = Σ_j G_j
    cos(q_1 + … + q_j); for two links these are :func:`true_pendulum_terms`' 7 rigid terms."""
    n = params.n_links
    inertia, gravity = params.inertia_coefficients, params.gravity_coefficients
    coefficients: dict[Term, float] = {}
    for a, b in itertools.combinations_with_replacement(range(n), 2):
        weight = 0.5 * inertia[a][a] if a == b else inertia[a][b]
        angle = tuple(int(a < k <= b) for k in range(n))
        for k, l in itertools.product(range(a + 1), range(b + 1)):
            velocity = tuple(int(i == k) + int(i == l) for i in range(n))
            term = Term(velocity, "cos", angle) if a != b else Term(velocity, "one", angle)
            coefficients[term] = coefficients.get(term, 0.0) + weight
    for j, value in enumerate(gravity):
        coefficients[Term((0,) * n, "cos", tuple(int(k <= j) for k in range(n)))] = value
    terms = sorted(coefficients, key=_sort_key)
    return TermModel(TermLibrary(terms), torch.tensor([coefficients[t] for t in terms], dtype=torch.float64))
