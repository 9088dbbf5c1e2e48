"""Sparse regression of torque (or L) on the term library: the exact refit of SPEC §3.

Euler–Lagrange is linear in L, so a fitted L = Σ c_m φ_m follows from linear least squares on
the EL images of the terms. Unidentifiable terms go first (rank check), then sequentially
thresholded least squares (STLSQ) keeps the terms that carry weight. The network only ranks;
the data decides.
"""

from __future__ import annotations

import cmath
import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import sympy
import torch

from syrenets_ros.dynamics import euler_lagrange
from syrenets_ros.dynamics.euler_lagrange import LagrangianFn
from syrenets_ros.learning import integral
from syrenets_ros.learning.rigid_body import RigidBodyLibrary, RigidBodyModel, fit_rigid_body
from syrenets_ros.learning.terms import (MAX_FREQUENCY, MAX_POSITION_DEGREE, MAX_VELOCITY_DEGREE, Force, Term,
                                         TermLibrary, TermModel, polynomial_terms)


def _stlsq(matrix: torch.Tensor, target: torch.Tensor, threshold: float,
           max_iter: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Sequentially thresholded least squares on unit-norm columns.

    A term is dropped when its scaled coefficient is below ``threshold`` × the largest one, then
    the rest is refitted; returns (active mask, coefficients in the unscaled columns).
    """
    norms = matrix.norm(dim=0).clamp_min(torch.finfo(matrix.dtype).tiny)
    scaled = matrix / norms
    active = torch.ones(matrix.shape[1], dtype=torch.bool)
    xi = torch.zeros(matrix.shape[1], dtype=matrix.dtype)
    for _ in range(max_iter):
        xi = torch.zeros_like(xi)
        xi[active] = torch.linalg.lstsq(scaled[:, active], target[:, None]).solution[:, 0]
        small = active & (xi.abs() < threshold * xi.abs().max())
        if not small.any():
            break
        active &= ~small
    return active, xi / norms


def _model_from_fit(library: TermLibrary, active: torch.Tensor, coefficients: torch.Tensor,
                    report: dict[str, Any], stderr: torch.Tensor | None = None) -> TermModel:
    columns = torch.nonzero(active)[:, 0].tolist()
    return TermModel(library.subset(columns), coefficients[active], report,
                     None if stderr is None else stderr[active])


def _candidate_library(library: TermLibrary, candidates: Sequence[Term | Force] | None) -> TermLibrary:
    if candidates is None:
        return library
    return TermLibrary([c for c in candidates if isinstance(c, Term)], [c for c in candidates if isinstance(c, Force)])


def fit_terms(library: TermLibrary, q: torch.Tensor, qd: torch.Tensor, qdd: torch.Tensor,
              tau: torch.Tensor, *, candidates: Sequence[Term | Force] | None = None,
              threshold: float = 1e-3, rank_tol: float = 1e-8, max_iter: int = 25) -> TermModel:
    """Sparse refit of torque on EL images of the (candidate) terms: exact on exact data.

    Unidentifiable terms are removed first (rank check), then STLSQ with column scaling and a
    threshold relative to the largest scaled coefficient. Float64 throughout.
    """
    q, qd, qdd, tau = (t.detach().to(torch.float64).cpu() for t in (q, qd, qdd, tau))
    lib = _candidate_library(library, candidates)
    images = lib.el_images(q, qd, qdd)
    base, dropped = lib._independent_columns(images.reshape(-1, len(lib)), rank_tol)
    keep = [lib.index(t) for t in base.columns]
    matrix = images[..., keep].reshape(-1, len(base))
    active, coefs = _stlsq(matrix, tau.reshape(-1), threshold, max_iter)
    residual = matrix[:, active] @ coefs[active] - tau.reshape(-1)
    report = {"mse": float(residual.square().mean()), "candidates": len(lib),
              "identifiable": len(base), "unidentifiable": dropped, "selected": int(active.sum())}
    return _model_from_fit(base, active, coefs, report)


def fit_integral(library: TermLibrary | RigidBodyLibrary, stamps: torch.Tensor, q: torch.Tensor, qd: torch.Tensor,
                 qdd: torch.Tensor, tau: torch.Tensor, *, candidates: Sequence[Term | Force] | None = None,
                 rows: integral.RowForm = integral.RowForm(), rank_tol: float = 1e-8, select_terms: bool = True,
                 simplify: bool = True) -> TermModel | RigidBodyModel:
    """Sparse refit on integral rows (SPEC §2b): exact on clean data, unbiased under sensor noise.

    ``rows`` says how rows are formed (:class:`integral.RowForm`). Unidentifiable columns are
    removed first (rank check on the rows themselves), then terms are selected by
    cross-validation (:func:`integral.select`, no noise-tuned threshold; with ``select_terms``
    False every identifiable candidate is kept; with ``simplify`` False without Occam's razor:
    the support that explains most within one standard error). The model carries each
    coefficient's standard error; the report carries the per-joint noise scale of one row,
    which calibrates change detection and the insufficiency check, and as "equivalent" the
    models of the other supports cross-validation cannot tell from it (their disagreement
    outside the data is what extrapolation may be off by). Raises
    :class:`integral.TooFewWindows` when the record holds too few gap-free windows.

    A URDF's rigid body (:class:`RigidBodyLibrary`) is fitted whole, whatever ``candidates`` and
    the selection options say (:func:`rigid_body.fit_rigid_body`): its base parameters are a
    complete, non-redundant description, so every caller (the learner's candidates, its change
    test, its served refit) treats both model classes alike.
    """
    if isinstance(library, RigidBodyLibrary):
        return fit_rigid_body(library, stamps, q, qd, qdd, tau, rows=rows)
    stamps, q, qd, qdd, tau = (t.detach().to(torch.float64).cpu() for t in (stamps, q, qd, qdd, tau))
    lib = _candidate_library(library, candidates)
    starts, stride_ratio = rows.fit_starts(stamps)
    matrix = rows.columns(lib, stamps, q, qd, qdd, starts)
    target = rows.target(stamps, tau, starts)
    base, dropped = lib._independent_columns(matrix.reshape(-1, len(lib)), rank_tol)
    keep = [lib.index(c) for c in base.columns]
    fit = integral.select(matrix[..., keep], target, stride_ratio=stride_ratio, fixed=not select_terms,
                          complexity=[c.complexity for c in base.columns] if simplify else None,
                          relative_floor=rows.floor)
    report = {"cv_rmse": fit.cv_rmse, "noise": fit.noise.tolist(), "candidates": len(lib),
              "identifiable": len(base), "unidentifiable": dropped, "selected": len(fit.support),
              "windows": len(starts), "rows": rows.form,
              "unsimplified_columns": [base.columns[i] for i in fit.unsimplified],
              "equivalent": [_model_from_fit(base, _mask(len(base), support), coefficients, {})
                             for support, coefficients in fit.equivalent]}
    return _model_from_fit(base, _mask(len(base), fit.support), fit.coefficients, report, fit.stderr)


def _mask(width: int, support: Sequence[int]) -> torch.Tensor:
    active = torch.zeros(width, dtype=torch.bool)
    active[list(support)] = True
    return active


# A form other than the default is chosen only when its rows are explained this much better:
# under sensor noise every form's residual is the noise, and the default is kept.
FORM_MARGIN = 0.5


def choose_rows(library: TermLibrary, stamps: torch.Tensor, q: torch.Tensor, qd: torch.Tensor,
                qdd: torch.Tensor, tau: torch.Tensor, window: int, default: str = "acceleration"
                ) -> tuple[str, dict[str, float], dict[str, float]]:
    """The row form for a record, with each form's kinematic residual (:func:`integral.kinematic_form`)
    and the relative RMS residual of its sparse library fit (the selection cross-validates, so
    a wrong form keeps the error of its discretisation however many stand-ins it takes). The
    discretisation q and q̇ follow proposes; a proposal is refused when the default's fit is
    better by :data:`FORM_MARGIN` (the torque may follow another convention than the
    kinematics); the default proposed is taken as it is, and so is a default whose fit is exact
    to rounding. Without a proposal (sensor noise hides the kinematics) a form replaces the
    default only when its fit is better by that margin. Full-library least squares could not
    tell: on smooth records it absorbs a discretisation error into spurious terms."""
    proposal, motion = integral.kinematic_form(stamps, q, qd)
    if proposal == default:  # the simulator's own steps: nothing to check against (and cheap)
        return default, motion, {}
    scores: dict[str, float] = {}
    for form in integral.FORMS:
        rows = integral.RowForm(form, window, max(1, window // 4))
        try:
            model = fit_integral(library, stamps, q, qd, qdd, tau, rows=rows, simplify=False)
        except ValueError:
            scores[form] = math.inf
            continue
        starts = rows.starts(stamps)
        target = rows.target(stamps, tau.to(torch.float64), starts)
        residual = rows.predicted(model, stamps, q, qd, qdd, starts) - target
        scores[form] = float(residual.norm() / target.norm().clamp_min(torch.finfo(target.dtype).tiny))
    best = min(scores, key=scores.get)
    if scores[default] <= integral.NUMERICAL_FLOOR:
        # The default's fit is exact: other forms that fit to rounding too are no better, and
        # which rounding error is smaller depends on the machine (measured: 8.4e-16 against
        # 1.3e-15 on one CPU, the other way round on another).
        return default, motion, scores
    if proposal is not None and not scores[default] < FORM_MARGIN * scores[proposal]:
        return proposal, motion, scores
    if scores[best] < FORM_MARGIN * scores[default]:
        return best, motion, scores
    return default, motion, scores


def fit_lagrangian(library: TermLibrary, q: torch.Tensor, qd: torch.Tensor, lagrangian: torch.Tensor, *,
                   candidates: Sequence[Term] | None = None, threshold: float = 1e-3,
                   max_iter: int = 25) -> TermModel:
    """Direct mode (paper Table 1): STLSQ of measured L on the features themselves."""
    q, qd, lagrangian = (t.detach().to(torch.float64).cpu() for t in (q, qd, lagrangian))
    lib = TermLibrary(list(candidates)) if candidates is not None else library
    matrix = lib.features(q, qd)
    active, coefs = _stlsq(matrix, lagrangian.reshape(-1), threshold, max_iter)
    residual = matrix[:, active] @ coefs[active] - lagrangian.reshape(-1)
    report = {"mse": float(residual.square().mean()), "candidates": len(lib), "selected": int(active.sum())}
    return _model_from_fit(lib, active, coefs, report)


@dataclass
class NetworkRanking:
    """The library terms ordered by how much of the network's behaviour they carry."""

    ranked: list[tuple[Term, float]]
    proposed: list[Term]
    explained: float  # R² of the network's torques (or L) by the whole library


def rank_terms_by_network(lagrangian_fn: LagrangianFn, library: TermLibrary, q: torch.Tensor,
                          qd: torch.Tensor, qdd: torch.Tensor, *, target: str = "torque",
                          threshold: float = 1e-2, rank_tol: float = 1e-8) -> NetworkRanking:
    """Project a trained network onto the library and propose the terms it actually uses.

    ``target="torque"`` fits the network's EL torques on the EL images (gauge-free);
    ``"lagrangian"`` fits its L values on the features. The sparse projection (STLSQ at the
    coarse ``threshold``) is the proposal; ``explained`` tells how much of the network the
    library can express at all — a low value means the network found structure the library
    lacks. Refit the proposal on measured data with :func:`fit_terms` to make it exact.
    """
    q, qd, qdd = (t.detach() for t in (q, qd, qdd))
    if target == "torque":
        y = euler_lagrange.torque(lagrangian_fn, q, qd, qdd).detach().to(torch.float64).cpu()
        q64, qd64, qdd64 = (t.to(torch.float64).cpu() for t in (q, qd, qdd))
        base, _ = library.identifiable(q64, qd64, qdd64, tol=rank_tol)
        matrix = base.el_images(q64, qd64, qdd64).reshape(-1, len(base))
    elif target == "lagrangian":
        y = torch.func.vmap(lagrangian_fn)(q, qd).detach().to(torch.float64).cpu()
        base = library
        matrix = base.features(q.to(torch.float64).cpu(), qd.to(torch.float64).cpu())
    else:
        raise ValueError(f"target must be 'torque' or 'lagrangian', got {target!r}")
    y = y.reshape(-1)
    dense = torch.linalg.lstsq(matrix, y[:, None]).solution[:, 0]
    explained = 1.0 - float((matrix @ dense - y).square().sum() / (y - y.mean()).square().sum())
    score = (dense * matrix.norm(dim=0)).abs()
    order = torch.argsort(score, descending=True).tolist()
    active, _ = _stlsq(matrix, y, threshold, 25)
    # A constant carries no dynamics (in L mode it only absorbs the network's gauge offset).
    constant = Term((0,) * library.n_joints, "one", (0,) * library.n_joints)
    proposed = [t for t, a in zip(base.columns, active.tolist()) if a and t != constant]
    ranked = [(base.columns[i], float(score[i])) for i in order if base.columns[i] != constant]
    return NetworkRanking(ranked, proposed, explained)


# A piece c·q̇^v·q^p·e^{iω·q} of an expanded expression, keyed by (v, p, ω).
_Pieces = dict[tuple[tuple[int, ...], tuple[int, ...], tuple[float, ...]], complex]
# A network's frequency within this of an integer is read as that integer (sin 4.97q2 → sin 5q2).
FREQUENCY_TOLERANCE = 0.25
# Pieces kept while multiplying out a dense expression (the largest), and terms proposed at most.
MAX_PIECES = 4096
MAX_PARSED_TERMS = 32


def _times(left: _Pieces, right: _Pieces) -> _Pieces:
    """The product of two expansions, without pieces past the Term degrees (products only raise them)."""
    out: _Pieces = {}
    for (v1, p1, w1), c1 in left.items():
        for (v2, p2, w2), c2 in right.items():
            v, p = tuple(a + b for a, b in zip(v1, v2)), tuple(a + b for a, b in zip(p1, p2))
            if sum(v) > MAX_VELOCITY_DEGREE or sum(p) > MAX_POSITION_DEGREE:
                continue
            key = (v, p, tuple(round(a + b, 9) for a, b in zip(w1, w2)))
            out[key] = out.get(key, 0j) + c1 * c2
    if len(out) > MAX_PIECES:
        out = dict(sorted(out.items(), key=lambda item: -abs(item[1]))[:MAX_PIECES])
    return out


def _expand(expr: sympy.Expr, q: dict[str, int], qd: dict[str, int], memo: dict) -> _Pieces | None:
    """``expr`` as pieces c·q̇^v·q^p·e^{iω·q} (cos and sin as exponentials, so products of trig
    factors become sums of frequencies), None when it has a factor of no such form (a trig
    function of q̇ or of a non-linear argument, another function, a negative power). A sum
    keeps the summands that have the form. Powers up to :data:`terms.MAX_FREQUENCY` (cos^k q
    reaches frequency k)."""
    if expr in memo:
        return memo[expr]
    n = len(q)
    zero = (0,) * n
    unit = [tuple(int(i == j) for j in range(n)) for i in range(n)]
    out: _Pieces | None = None
    if expr.is_Number:
        out = {(zero, zero, (0.0,) * n): complex(expr)}
    elif expr.is_Symbol and (expr.name in q or expr.name in qd):
        out = ({(zero, unit[q[expr.name]], (0.0,) * n): 1 + 0j} if expr.name in q
               else {(unit[qd[expr.name]], zero, (0.0,) * n): 1 + 0j})
    elif expr.is_Add:
        out = {}
        for arg in expr.args:
            for key, c in (_expand(arg, q, qd, memo) or {}).items():
                out[key] = out.get(key, 0j) + c
    elif expr.is_Mul or (expr.is_Pow and expr.exp.is_Integer and 0 <= int(expr.exp) <= MAX_FREQUENCY):
        factors = expr.args if expr.is_Mul else (expr.base,) * int(expr.exp)
        out = {(zero, zero, (0.0,) * n): 1 + 0j}
        for factor in factors:
            pieces = _expand(factor, q, qd, memo)
            if pieces is None:
                out = None
                break
            out = _times(out, pieces)
    elif isinstance(expr, (sympy.cos, sympy.sin)):
        linear = sympy.expand(expr.args[0]).as_coefficients_dict()
        if all(key == 1 or (key.is_Symbol and key.name in q) for key in linear):
            omega = [0.0] * n
            for key, value in linear.items():
                if key != 1:
                    omega[q[key.name]] = float(value)
            phase = cmath.exp(1j * float(linear.get(sympy.Integer(1), 0)))
            plus, minus = (phase / 2, phase.conjugate() / 2) if isinstance(expr, sympy.cos) else (
                phase / 2j, -phase.conjugate() / 2j)
            out = {(zero, zero, tuple(omega)): plus}
            negative = (zero, zero, tuple(-w for w in omega))
            out[negative] = out.get(negative, 0j) + minus
    memo[expr] = out
    return out


def expression_terms(expr: sympy.Expr, n_joints: int, tolerance: float = FREQUENCY_TOLERANCE,
                     max_terms: int = MAX_PARSED_TERMS) -> list[Term]:
    """The :class:`Term` s a network's frozen expression (:meth:`FrozenSyReNet.expression`, in
    q1.., qd1..) is made of, the largest first: it is multiplied out into velocity monomial ×
    position monomial × cos/sin of a combination of q; frequencies within ``tolerance`` of an
    integer are rounded (4.97 q2 → 5 q2), and each trig piece proposes both cos and sin (a phase
    the network carries mixes them). Pieces past the Term bounds (:data:`terms.MAX_FREQUENCY`,
    the degrees) or with no such form (sin q̇1, cos q1q2, frequency 2.5) are dropped, so are
    constants; what remains goes to a refit, which decides."""
    q = {f"q{i + 1}": i for i in range(n_joints)}
    qd = {f"qd{i + 1}": i for i in range(n_joints)}
    merged: dict[tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]], complex] = {}
    for (velocity, position, omega), c in (_expand(expr, q, qd, {}) or {}).items():
        angle = tuple(round(w) for w in omega)
        nonzero = [k for k in angle if k]
        if (any(abs(w - k) > tolerance for w, k in zip(omega, angle)) or any(abs(k) > MAX_FREQUENCY for k in angle)
                or (nonzero and nonzero[0] < 0) or not (nonzero or any(velocity) or any(position))):
            continue  # off the integers, too fast, the conjugate of a kept piece, or a constant
        key = (velocity, position, angle)
        merged[key] = merged.get(key, 0j) + c
    largest = sorted(merged.items(), key=lambda item: -abs(item[1]))
    proposed: dict[Term, None] = {}
    for (velocity, position, angle), c in largest:
        if abs(c) == 0.0:
            continue
        functions = ("cos", "sin") if any(angle) else ("one",)
        proposed.update(dict.fromkeys(Term(velocity, f, angle, position) for f in functions))
    return list(proposed)[:max_terms]


def propose_terms(lagrangian_fn: LagrangianFn, library: TermLibrary, q: torch.Tensor, qd: torch.Tensor,
                  qdd: torch.Tensor, expression: sympy.Expr | None = None) -> list[Term]:
    """Terms outside ``library`` that a network's frozen expression puts weight on: project its
    torques on the library's Lagrangian terms plus :func:`polynomial_terms` (the grammar the
    network can grow into) and, given its ``expression``, the terms it is made of
    (:func:`expression_terms`: frequencies no grammar enumerates), and keep the new terms of
    the sparse projection (a term the expression holds but its torques do not use is not proposed)."""
    parsed = expression_terms(expression, library.n_joints) if expression is not None else []
    grown = TermLibrary(list(library.terms)).extended(polynomial_terms(library.n_joints) + parsed)
    ranking = rank_terms_by_network(lagrangian_fn, grown, q, qd, qdd)
    return [t for t in ranking.proposed if t not in library.columns]


def refit_by_rank(ranking: NetworkRanking, fit: Callable[[list[Term]], TermModel], target_power: float, *,
                  rel_tol: float = 1e-12, growth: float = 1.5) -> TermModel:
    """The network ranks, the data cuts: refit on the proposal, then on ever longer prefixes
    of the network's ranking, until the refit explains the data to ``rel_tol`` × mean(target²)
    (or the whole ranked library was tried). ``fit(candidates)`` is e.g. a :func:`fit_terms`
    closure; the report records how much of the ranking had to be searched.
    """
    ordered = [t for t, _ in ranking.ranked]
    size = max(1, len(ranking.proposed))
    while True:
        candidates = list(dict.fromkeys(ranking.proposed + ordered[:size]))
        model = fit(candidates)
        if model.fit_report["mse"] <= rel_tol * target_power or size >= len(ordered):
            model.fit_report.update(searched=len(candidates), ranked=len(ordered))
            return model
        size = min(len(ordered), math.ceil(size * growth))
