"""The sufficiency test and growth: whether the model class lacks structure the data show,
said out loud, and the term library widened by what it lacks.

A model that does not fit may merely have missed terms on little, noisy data, or its class may
lack what the data need (dissipation, a potential or an inertia the trig grammar cannot hold).
Only the second is worth a warning. The search widens step by step and boundedly: polynomial
potentials of degree 2, then 4 (springs, hardening springs); when no narrower group is found,
the broad groups — harmonics and angle combinations the grammar lacks (cogging), inertia
terms q̇_i q̇_j·P(q) — each at most :data:`WIDE_GROUP_COLUMNS` columns, and
:data:`GROWTH_LIMIT` columns in all. Cross-validation with Occam's razor then decides which
terms enter, as for the grammar's own; the grammar grows from the data as well as from the
network's proposals. Kept apart from the loop so the test and the staged growth can be
checked on a record alone.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch

from syrenets_ros.learning import integral
from syrenets_ros.learning.terms import (FORCE_LAWS, MAX_POSITION_DEGREE, MAX_TERMS, Force, Term, TermLibrary,
                                         TermModel, inertia_terms, periodic_terms, polynomial_terms)
from syrenets_ros.online.stream import Batch

MISSING_POTENTIAL = "missing potential (residual follows a polynomial in q)"
MISSING_DISSIPATION = "dissipation the model lacks (residual follows q̇)"
MISSING_PERIODIC = "missing periodic potential (residual follows cos/sin of k·q at angles the grammar lacks)"
MISSING_INERTIA = "position-dependent inertia the model lacks (residual follows q̇_i q̇_j·P(q))"
# Broad groups: looked for beside the narrow ones, named when they account for everything found
# (:func:`integral.missing_structure`'s ``wide``).
WIDE = frozenset({MISSING_PERIODIC, MISSING_INERTIA})
# The most columns a broad group brings (its simplest), and the most the library may grow by in
# all: each column costs every refit and every check (measured in `bench structure`).
WIDE_GROUP_COLUMNS = 48
GROWTH_LIMIT = 160


def potential_terms(library: TermLibrary, n_joints: int) -> list[Term]:
    """The polynomial potentials the structure test looks for and a verdict grows ``library``
    by, in stages: degree ≤ 2 first (a linear spring), then, once those are in the library,
    degree ≤ 4 (a hardening spring's quartic; cubic terms for an asymmetric one). Staged so
    that a plain spring costs no more columns than before, and bounded by
    :data:`terms.MAX_POSITION_DEGREE`; past it the residual test still speaks, and the
    model is served as the least-bad one."""
    grown = max((sum(t.position) for t in library.terms if not any(t.velocity)), default=0)
    degree = min(MAX_POSITION_DEGREE, 2 if grown < 2 else grown + 2)
    return polynomial_terms(n_joints, max_velocity_degree=0, position_degree=degree)


def periodic_group(library: TermLibrary, n_joints: int) -> list[Term]:
    """The periodic potentials the library lacks, simplest first (:func:`terms.periodic_terms`)."""
    return periodic_terms(n_joints, [t.angle for t in library.terms], WIDE_GROUP_COLUMNS)


def inertia_group(library: TermLibrary, n_joints: int) -> list[Term]:
    """The position-dependent inertia terms the library lacks (:func:`terms.inertia_terms`)."""
    return [t for t in inertia_terms(n_joints) if t not in library.columns][:WIDE_GROUP_COLUMNS]


# What a verdict grows the library by: the structure the data ask for, by kind.
GROWTH: dict[str, Callable[[TermLibrary, int], list[Term]]] = {
    MISSING_POTENTIAL: potential_terms, MISSING_PERIODIC: periodic_group, MISSING_INERTIA: inertia_group}


def lacks(model_columns: Sequence[Term | Force], recent: Batch, library: TermLibrary, rows: integral.RowForm,
          whole_class: bool) -> str:
    """Which structure a model of ``model_columns`` (with ``whole_class``: the model and
    ``library``) lacks on ``recent`` ("" = none found): polynomial potential terms, dissipative
    forces, periodic potentials at new angles or position-dependent inertia, by the
    likelihood-ratio test of :func:`integral.missing_structure` on non-overlapping integral
    rows (full-width ones: shorter rows carry enough differentiated velocity noise that a
    polynomial in q fits the inertia terms' attenuation, measured)."""
    n = recent.q.shape[-1]
    known = set(model_columns) | (set(library.columns) if whole_class else set())
    wanted = {cause: [t for t in grow(library, n) if t not in known] for cause, grow in GROWTH.items()}
    wanted[MISSING_DISSIPATION] = [Force(j, law) for law in FORCE_LAWS for j in range(n) if Force(j, law) not in known]
    starts = rows.starts(recent.stamp, rows.span)
    if len(starts) < 8 or not any(wanted.values()):
        return ""

    complement = [c for c in library.columns if c not in model_columns] if whole_class else []
    # Every column's rows at once (one evaluation of the samples), then split.
    every = list(dict.fromkeys([*model_columns, *(c for group in wanted.values() for c in group), *complement]))
    columns = TermLibrary([c for c in every if isinstance(c, Term)] or [Term((0,) * n, "one", (0,) * n)],
                          [c for c in every if isinstance(c, Force)])
    images = rows.columns(columns, recent.stamp, recent.q, recent.qd, recent.qdd, starts)

    def of(chosen: Sequence[Term | Force]) -> torch.Tensor:
        return images[..., [columns.index(c) for c in chosen]]

    groups = {name: of(chosen) for name, chosen in wanted.items() if chosen}
    target = rows.target(recent.stamp, recent.tau.to(torch.float64), starts)
    return integral.missing_structure(of(model_columns), target, groups,
                                      complement=of(complement) if complement else None, wide=WIDE) or ""


class StructureCheck:
    """Says when a model does not fit for want of structure (``stats.insufficiency``, a warning
    when it changes) and grows the term library by the potential it lacks
    (``stats.grown_terms``). Holds the one finding at a selection that waits to be found again
    on newer data before it counts (:meth:`found_again`)."""

    def __init__(self, stats, log: Callable[[str], None], warn: Callable[[str], None]) -> None:
        """``stats``: the learner's :class:`learner.Stats` (its insufficiency and grown_terms)."""
        self.stats = stats
        self.log = log
        self.warn = warn
        # A structure finding (cause, newest stamp of its record) waiting to be found again on
        # newer data before a selection says and acts on it.
        self.unconfirmed: tuple[str, float] | None = None

    def check_served(self, served, recent: Batch, suspected: float | None, guard: int, library,
                     rows: integral.RowForm, holdout: int) -> TermLibrary | None:
        """Check the served model's structure on the data since the newest (suspected) change
        only, while no selection can judge it: after a confirmed change until enough data for
        a refit (so the cause is said until a new model adapts), and while a change is suspected
        (from ``suspected``), when the fit data mix both sides of the jump (no single model fits
        them, and the mismatch would pass for dissipation). Never clears. Returns the grown
        library, if it grew."""
        if suspected is not None:
            # The flagged window may straddle the change: one detection window (``guard``) is left out.
            after = int((recent.stamp < suspected).sum()) + guard
            recent = recent.slice(min(after, len(recent)), len(recent))
        return self.check(served, recent, library, rows, holdout, may_clear=False, whole_class=False)

    def check(self, model, recent: Batch, library, rows: integral.RowForm, holdout: int,
              may_clear: bool = True, whole_class: bool = True) -> TermLibrary | None:
        """Say out loud when a model does not fit for want of structure (:func:`lacks`). At a
        selection the verdict is on the whole model class (the best model may first take the
        library terms that explain most of its residual): a model that merely missed library
        terms on little, noisy data lacks nothing the class cannot give. For the served model
        after a change it is on its own terms: what the new data ask of it, said until a new
        model is adapted. A potential or inertia the whole class lacks grows the library by
        its group (:data:`GROWTH`), so the next refits can carry it and cross-validation decides
        which terms enter: the grammar grows by what the data ask for, besides what the network
        proposes.
        A verdict at a selection counts once the cause is found again (by either check) on an
        overlapping record with at least a ``holdout`` of newer data: the first fits, on two
        seconds of noisy, weakly exciting data, can be wrong enough to pass the test (measured
        in the demo under noise: a missing potential said and the library grown at the first
        selection, with no spring). Returns the grown library, if it grew."""
        cause, grown = "", None
        if isinstance(model, TermModel):
            own = model.library.columns
            # At a selection: the cross-validated pick before Occam's razor, which explains more
            # (measured: with the simplest equivalent the check missed a spring + friction).
            columns = model.fit_report.get("unsimplified_columns", own) if whole_class else own
            cause = lacks(columns, recent, library, rows, whole_class)
            found_again = bool(cause) and self.found_again(cause, recent, holdout, remember=whole_class)
            if cause and whole_class and not found_again:
                return None
            if cause in GROWTH and (whole_class or lacks(own, recent, library, rows, True) == cause):
                grown = self._grow(library, GROWTH[cause](library, recent.q.shape[-1]), cause)
        if not cause and not may_clear:
            return grown
        if cause and cause != self.stats.insufficiency:
            self.warn(f"model insufficient: {cause}; serving the least-bad model and searching on")
        self.stats.insufficiency = cause
        return grown

    def found_again(self, cause: str, recent: Batch, holdout: int, remember: bool = True) -> bool:
        """Whether ``cause`` was found before on a record that ended inside ``recent``, at least
        ``holdout`` samples before it ends; otherwise, with ``remember``, this finding is kept
        as the first. The served model's check confirms a selection's finding but never
        replaces it: its own terms can lack another group than the whole class does (measured:
        cogging, the served rigid model lacking a potential between selections that found a
        periodic one, reset the periodic finding each time and the library never grew)."""
        first = self.unconfirmed
        if first is not None and first[0] == cause and float(recent.stamp[0]) <= first[1]:
            if int((recent.stamp > first[1]).sum()) < holdout:
                return False
            self.unconfirmed = None
            return True
        if remember:
            self.unconfirmed = (cause, float(recent.stamp[-1]))
        return False

    def _grow(self, library: TermLibrary, terms: Sequence[Term], cause: str) -> TermLibrary | None:
        """``library`` with ``terms`` added (None when none is new or it would grow past
        :data:`GROWTH_LIMIT` columns in all); refits carry them from the next selection on."""
        new = [t for t in terms if t not in library.columns]
        if not new:
            return None
        if len(self.stats.grown_terms) + len(new) > GROWTH_LIMIT or len(library) + len(new) > MAX_TERMS:
            self.log(f"term library not grown by {len(new)} terms ({cause}): it has grown by "
                     f"{len(self.stats.grown_terms)} and may grow by {GROWTH_LIMIT} columns in all")
            return None
        self.stats.grown_terms += [t.name for t in new]
        self.log(f"term library grown by {len(new)} terms ({', '.join(t.name for t in new)}): {cause}; "
                 f"cross-validation decides which enter")
        return library.extended(new)
