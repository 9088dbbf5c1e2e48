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

from syrenets_ros.dynamics.euler_lagrange import LagrangianFn
from syrenets_ros.dynamics.pendulum import PendulumParams
from syrenets_ros.learning.payload import SnapshotError, tensor_from_json, tensor_to_json

FUNCTIONS: tuple[str, ...] = ("one", "cos", "sin")
MAX_JOINTS = 8
MAX_VELOCITY_DEGREE = 4
MAX_FREQUENCY = 8
MAX_TERMS = 4096


@dataclass(frozen=True, order=True)
class Term:
    """φ(q, q̇) = Π_i q̇_i^velocity[i] · function(Σ_i angle[i] q_i).

    Canonical form (so that distinct terms are distinct functions): "one" has a zero angle;
    cos/sin have a non-zero angle whose first non-zero entry is positive.
    """

    velocity: tuple[int, ...]
    function: str
    angle: tuple[int, ...]

    def __post_init__(self) -> None:
        n = len(self.velocity)
        if not 1 <= n <= MAX_JOINTS or len(self.angle) != n:
            raise ValueError(f"velocity and angle must both have 1..{MAX_JOINTS} equal lengths")
        for name, values in (("velocity", self.velocity), ("angle", self.angle)):
            if not all(type(v) is int for v in values):
                raise ValueError(f"{name} entries must be integers, got {values!r}")
        if any(e < 0 for e in self.velocity) or sum(self.velocity) > MAX_VELOCITY_DEGREE:
            raise ValueError(f"velocity exponents must be >= 0 with total <= {MAX_VELOCITY_DEGREE}")
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

    def to_sympy(self) -> sp.Expr:
        n = len(self.velocity)
        q, qd = _symbols(n)
        monomial = sp.Mul(*(qd[i] ** e for i, e in enumerate(self.velocity)))
        if self.function == "one":
            return monomial
        angle = sp.Add(*(k * q[i] for i, k in enumerate(self.angle)))
        return monomial * (sp.cos(angle) if self.function == "cos" else sp.sin(angle))

    @property
    def name(self) -> str:
        return sp.sstr(self.to_sympy())

    def to_json(self) -> dict[str, Any]:
        return {"velocity": list(self.velocity), "function": self.function, "angle": list(self.angle)}

    @classmethod
    def from_json(cls, obj: object, n_joints: int) -> "Term":
        if not isinstance(obj, dict) or set(obj) != {"velocity", "function", "angle"}:
            raise ValueError("expected keys velocity, function, angle")
        velocity, function, angle = obj["velocity"], obj["function"], obj["angle"]
        if not isinstance(velocity, list) or not isinstance(angle, list) or not isinstance(function, str):
            raise ValueError("velocity and angle must be lists, function a string")
        if len(velocity) != n_joints or len(angle) != n_joints:
            raise ValueError(f"velocity and angle must have {n_joints} entries")
        return cls(tuple(velocity), function, tuple(angle))


def _symbols(n: int) -> tuple[list[sp.Symbol], list[sp.Symbol]]:
    q = list(sp.symbols(" ".join(f"q{i + 1}" for i in range(n)) + " ", real=True))
    qd = list(sp.symbols(" ".join(f"qd{i + 1}" for i in range(n)) + " ", real=True))
    return q, qd


def _sort_key(term: Term) -> tuple:
    """Simpler terms first: the rank check keeps the first of a collinear group."""
    return (term.degree, FUNCTIONS.index(term.function) > 0, sum(map(abs, term.angle)),
            [-e for e in term.velocity], FUNCTIONS.index(term.function), [-k for k in term.angle])


def grammar_angles(n_joints: int) -> list[tuple[int, ...]]:
    """Frequencies of the default library: q_i, 2q_i, q_i + q_j, q_i − q_j (i < j)."""
    unit = [tuple(int(i == j) for j in range(n_joints)) for i in range(n_joints)]
    angles = list(unit) + [tuple(2 * v for v in u) for u in unit]
    for i, j in itertools.combinations(range(n_joints), 2):
        angles.append(tuple(a + b for a, b in zip(unit[i], unit[j])))
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
    """An ordered set of terms, evaluated vectorised: features and Euler–Lagrange images."""

    def __init__(self, terms: Sequence[Term]) -> None:
        if not terms:
            raise ValueError("a term library needs at least one term")
        n = len(terms[0].velocity)
        if any(len(t.velocity) != n for t in terms):
            raise ValueError("all terms must have the same number of joints")
        if len(set(terms)) != len(terms):
            raise ValueError("duplicate terms")
        if len(terms) > MAX_TERMS:
            raise ValueError(f"{len(terms)} terms exceed the limit {MAX_TERMS}")
        self.terms: tuple[Term, ...] = tuple(terms)
        self.n_joints = n
        width = max(1, max(t.degree for t in terms))
        eye = [[int(i == k) for i in range(n)] for k in range(n)]
        idx0, d1_coef, d1_idx, d2_coef, d2_idx = [], [], [], [], []
        for t in terms:
            e = list(t.velocity)
            idx0.append(_monomial_indices(e, width))
            row_c, row_i, mat_c, mat_i = [], [], [], []
            for k in range(n):
                ek = [max(a - b, 0) for a, b in zip(e, eye[k])]
                row_c.append(e[k])
                row_i.append(_monomial_indices(ek, width))
                mat_c.append([e[k] * (ek[i] if e[k] else 0) for i in range(n)])
                mat_i.append([_monomial_indices([max(a - b, 0) for a, b in zip(ek, eye[i])], width)
                              for i in range(n)])
            d1_coef.append(row_c)
            d1_idx.append(row_i)
            d2_coef.append(mat_c)
            d2_idx.append(mat_i)
        self._idx0 = torch.tensor(idx0)
        self._d1_coef = torch.tensor(d1_coef, dtype=torch.float64)
        self._d1_idx = torch.tensor(d1_idx)
        self._d2_coef = torch.tensor(d2_coef, dtype=torch.float64)
        self._d2_idx = torch.tensor(d2_idx)
        self._angles = torch.tensor([t.angle for t in terms], dtype=torch.float64)
        self._function = torch.tensor([FUNCTIONS.index(t.function) for t in terms])

    @classmethod
    def grammar(cls, n_joints: int = 2, *, max_velocity_degree: int = 2,
                extra_angles: Sequence[tuple[int, ...]] = ()) -> "TermLibrary":
        """Velocity monomials up to ``max_velocity_degree`` × {1, cos, sin of the grammar angles}."""
        angles = list(dict.fromkeys(list(grammar_angles(n_joints)) + [tuple(a) for a in extra_angles]))
        terms = []
        for e in _velocity_exponents(n_joints, max_velocity_degree):
            terms.append(Term(e, "one", (0,) * n_joints))
            terms += [Term(e, f, a) for a in angles for f in ("cos", "sin")]
        return cls(sorted(terms, key=_sort_key))

    def __len__(self) -> int:
        return len(self.terms)

    @property
    def names(self) -> list[str]:
        return [t.name for t in self.terms]

    def index(self, term: Term) -> int:
        return self.terms.index(term)

    def to_sympy(self) -> list[sp.Expr]:
        return [t.to_sympy() for t in self.terms]

    def _trig(self, q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """g(angle), dg/dangle and the (…, p) angles for every term."""
        angle = q @ self._angles.to(q).T
        cos, sin = torch.cos(angle), torch.sin(angle)
        f = self._function.to(q.device)
        one = torch.ones_like(angle)
        g = torch.where(f == 1, cos, torch.where(f == 2, sin, one))
        dg = torch.where(f == 1, -sin, torch.where(f == 2, cos, torch.zeros_like(angle)))
        return g, dg, angle

    @staticmethod
    def _monomials(qd: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """Products of gathered velocity columns; a gather-product keeps gradients finite at 0."""
        ext = torch.cat((torch.ones_like(qd[..., :1]), qd), -1)
        flat = idx.to(qd.device).reshape(-1, idx.shape[-1])
        out = ext[..., flat[:, 0]]
        for d in range(1, flat.shape[1]):
            out = out * ext[..., flat[:, d]]
        return out.reshape(*qd.shape[:-1], *idx.shape[:-1])

    def features(self, q: torch.Tensor, qd: torch.Tensor) -> torch.Tensor:
        """φ_m(q, q̇) for inputs (..., n); returns (..., p). Works per sample (n,) too."""
        g, _, _ = self._trig(q)
        return self._monomials(qd, self._idx0) * g

    def el_images(self, q: torch.Tensor, qd: torch.Tensor, qdd: torch.Tensor) -> torch.Tensor:
        """Euler–Lagrange torque of every term, closed form; inputs (B, n), returns (B, n, p).

        For φ = m(q̇) g(q): τ_k = Σ_i ∂²m/∂q̇_k∂q̇_i q̈_i g + ∂m/∂q̇_k ġ − m ∂g/∂q_k.
        """
        g, dg, _ = self._trig(q)
        m0 = self._monomials(qd, self._idx0)
        m1 = self._d1_coef.to(qd) * self._monomials(qd, self._d1_idx)
        m2 = self._d2_coef.to(qd) * self._monomials(qd, self._d2_idx)
        angles = self._angles.to(q)
        g_dot = dg * (qd @ angles.T)
        acc = (m2 * qdd[..., None, None, :]).sum(-1)
        tau = acc * g[..., None] + m1 * g_dot[..., None] - (m0 * dg)[..., None] * angles
        return tau.transpose(-1, -2)

    def identifiable(self, q: torch.Tensor, qd: torch.Tensor, qdd: torch.Tensor, *,
                     tol: float = 1e-8) -> tuple["TermLibrary", list[str]]:
        """Keep terms whose EL image is independent of the (simpler) terms before them.

        One unpivoted QR of the column-normalised image matrix: |R_jj| is the sine of the angle
        between column j and the span of columns < j. Returns the kept library and the names of
        the dropped terms (zero images: constants, total derivatives; collinear ones).
        """
        images = self.el_images(q, qd, qdd).reshape(-1, len(self))
        return self._independent_columns(images, tol)

    def _independent_columns(self, matrix: torch.Tensor, tol: float) -> tuple["TermLibrary", list[str]]:
        norms = matrix.norm(dim=0)
        nonzero = norms > tol * norms.max().clamp_min(torch.finfo(matrix.dtype).tiny)
        r = torch.linalg.qr(matrix / norms.clamp_min(torch.finfo(matrix.dtype).tiny), mode="r")[1]
        keep = nonzero & (r.diagonal().abs() > tol)
        kept = [t for t, k in zip(self.terms, keep.tolist()) if k]
        dropped = [t.name for t, k in zip(self.terms, keep.tolist()) if not k]
        if not kept:
            raise ValueError("no term has an identifiable effect on these data")
        return TermLibrary(kept), dropped


class TermModel:
    """L = Σ c_m φ_m: the distilled, servable model (Model protocol, kind "terms")."""

    kind: ClassVar[str] = "terms"

    def __init__(self, library: TermLibrary, coefficients: torch.Tensor,
                 fit_report: dict[str, Any] | None = None) -> None:
        coefficients = torch.as_tensor(coefficients, dtype=torch.float64).detach().cpu()
        if coefficients.shape != (len(library),):
            raise ValueError(f"{len(library)} terms need {len(library)} coefficients, got {tuple(coefficients.shape)}")
        if not torch.isfinite(coefficients).all():
            raise ValueError("coefficients must be finite")
        self.library = library
        self.coefficients = coefficients
        self.fit_report: dict[str, Any] = dict(fit_report or {})

    @property
    def terms(self) -> tuple[Term, ...]:
        return self.library.terms

    def coefficient_of(self, term: Term) -> float:
        """The coefficient of ``term`` (0 when the model does not contain it)."""
        return float(self.coefficients[self.terms.index(term)]) if term in self.terms else 0.0

    def lagrangian(self, q: torch.Tensor, qd: torch.Tensor) -> torch.Tensor:
        return self.library.features(q, qd) @ self.coefficients.to(q)

    def lagrangian_fn(self) -> LagrangianFn:
        """Per-sample L(q, q̇) for euler_lagrange and the integrator."""
        return self.lagrangian

    def torque(self, q: torch.Tensor, qd: torch.Tensor, qdd: torch.Tensor) -> torch.Tensor:
        """τ = EL images · c: linear in the coefficients, no autodiff."""
        return self.library.el_images(q, qd, qdd) @ self.coefficients.to(q)

    def to_sympy(self, digits: int | None = None) -> sp.Expr:
        """L as a sympy expression; ``digits`` rounds the coefficients (significant digits)."""
        return sp.Add(*[sp.Float(float(f"{c:.{digits}g}") if digits else c) * t.to_sympy()
                        for c, t in zip(self.coefficients.tolist(), self.terms)])

    def equation(self, digits: int = 4) -> str:
        """Readable L in q1.., qd1..: coefficients rounded, grouped by trig factor."""
        expr = self.to_sympy(digits)
        trig = sorted(expr.atoms(sp.cos, sp.sin), key=sp.default_sort_key)
        return "L = " + sp.sstr(sp.collect(expr, trig) if trig else expr)

    def to_payload(self) -> dict[str, Any]:
        return {"n_joints": self.library.n_joints, "terms": [t.to_json() for t in self.terms],
                "coefficients": tensor_to_json(self.coefficients)}

    @classmethod
    def from_payload(cls, payload: dict) -> "TermModel":
        """Parse against the allow-list; any deviation raises SnapshotError with the reason."""
        if not isinstance(payload, dict) or set(payload) != {"n_joints", "terms", "coefficients"}:
            raise SnapshotError("terms model: expected keys n_joints, terms, coefficients")
        n, terms = payload["n_joints"], payload["terms"]
        if type(n) is not int or not 1 <= n <= MAX_JOINTS:
            raise SnapshotError(f"terms model: n_joints must be an integer in 1..{MAX_JOINTS}")
        if not isinstance(terms, list) or not 1 <= len(terms) <= MAX_TERMS:
            raise SnapshotError(f"terms model: terms must be a list of 1..{MAX_TERMS} entries")
        parsed = []
        for i, obj in enumerate(terms):
            try:
                parsed.append(Term.from_json(obj, n))
            except ValueError as exc:
                raise SnapshotError(f"terms model: terms[{i}]: {exc}") from exc
        if len(set(parsed)) != len(parsed):
            raise SnapshotError("terms model: duplicate terms")
        coefficients = tensor_from_json(payload["coefficients"], "terms model coefficients")
        if coefficients.shape != (len(parsed),):
            raise SnapshotError(f"terms model: coefficients must have shape ({len(parsed)},)")
        return cls(TermLibrary(parsed), coefficients)


def true_pendulum_terms(params: PendulumParams) -> TermModel:
    """SPEC §2's L expanded in library terms (relative coordinates): the distillation target.

    ½A q̇1² + ½B(q̇1+q̇2)² + C q̇1(q̇1+q̇2) cos q2 + D cos q1 + E cos(q1+q2) has 7 terms.
    """
    a, b, c = params.inertia_coefficients
    d, e = params.gravity_coefficients
    one, cos = "one", "cos"
    terms = {
        Term((2, 0), one, (0, 0)): 0.5 * (a + b), Term((1, 1), one, (0, 0)): b,
        Term((0, 2), one, (0, 0)): 0.5 * b, Term((2, 0), cos, (0, 1)): c,
        Term((1, 1), cos, (0, 1)): c, Term((0, 0), cos, (1, 0)): d, Term((0, 0), cos, (1, 1)): e,
    }
    return TermModel(TermLibrary(list(terms)), torch.tensor(list(terms.values()), dtype=torch.float64))
