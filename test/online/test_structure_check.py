"""The sufficiency test and growth (online/structure.py) on real fits of exact records: the
structure a model lacks is named, a verdict at a selection waits to be found again on newer
data, a missing potential grows the library by degree-2, then degree-4 polynomials, and past
them the broad groups (harmonics, position-dependent inertia) are named."""


from syrenets_ros.dynamics import pendulum
from syrenets_ros.learning import integral
from syrenets_ros.learning.regression import fit_integral
import torch

from syrenets_ros.learning.terms import (MAX_POSITION_DEGREE, Term, TermLibrary, TermModel, polynomial_terms,
                                         true_pendulum_terms)
from syrenets_ros.online.learner import Stats
from syrenets_ros.online.stream import Batch
from syrenets_ros.online.structure import (MISSING_DISSIPATION, MISSING_INERTIA, MISSING_PERIODIC, MISSING_POTENTIAL,
                                           WIDE_GROUP_COLUMNS, StructureCheck, inertia_group, lacks, potential_terms)
from syrenets_ros.tools.streams import Plant, simulate_structure

ROWS = integral.RowForm("acceleration", 100, 25)
GRAMMAR = TermLibrary.grammar(2, dissipation=True)
HOLDOUT = 1000


def _batch(stream, start: int = 0, stop: int | None = None) -> Batch:
    stop = len(stream.stamp) if stop is None else stop
    return Batch(stream.stamp, stream.q, stream.qd, stream.qdd, stream.tau).slice(start, stop)


def _fit(library, batch: Batch):
    return fit_integral(library, batch.stamp, batch.q, batch.qd, batch.qdd, batch.tau, rows=ROWS)


def _degree(terms) -> int:
    return max(sum(t.position) for t in terms)


def test_potentials_are_looked_for_in_stages_up_to_the_bound():
    quadratic = potential_terms(GRAMMAR, 2)
    assert _degree(quadratic) == 2 and all(not any(t.velocity) for t in quadratic)
    quartic = potential_terms(GRAMMAR.extended(quadratic), 2)
    assert _degree(quartic) == 4 and set(quadratic) < set(quartic)
    assert _degree(potential_terms(GRAMMAR.extended(quartic), 2)) == MAX_POSITION_DEGREE


def test_what_a_rigid_model_lacks_is_named_by_its_physics():
    """The rigid pendulum's columns on a spring's data lack a potential, on viscous friction's a
    dissipation; the plant's own columns lack nothing."""
    rigid = list(true_pendulum_terms(pendulum.PendulumParams()).library.columns)
    for plant, cause in ((Plant(stiffness=(0.0, 50.0)), MISSING_POTENTIAL),
                         (Plant(viscous=(2.0, 2.0)), MISSING_DISSIPATION)):
        recent = _batch(simulate_structure(3.0, stiffness=plant.stiffness, viscous=plant.viscous))
        assert lacks(rigid, recent, GRAMMAR, ROWS, whole_class=False) == cause
        assert lacks(list(plant.true_terms().library.columns), recent, GRAMMAR, ROWS, whole_class=False) == ""


def test_a_finding_counts_once_found_again_with_a_holdout_of_newer_data():
    check = StructureCheck(Stats(), lambda _: None, lambda _: None)
    stream = simulate_structure(4.0)
    assert not check.found_again(MISSING_POTENTIAL, _batch(stream, 0, 2000), HOLDOUT)
    assert not check.found_again(MISSING_POTENTIAL, _batch(stream, 500, 2500), HOLDOUT), "too little newer data"
    assert check.found_again(MISSING_POTENTIAL, _batch(stream, 500, 3000), HOLDOUT)
    assert check.unconfirmed is None
    assert not check.found_again(MISSING_POTENTIAL, _batch(stream, 2500, 4000), HOLDOUT), "a first finding again"
    assert not check.found_again(MISSING_DISSIPATION, _batch(stream, 2600, 4000), HOLDOUT), "another cause"


def test_the_served_models_check_confirms_a_finding_but_never_replaces_it():
    """Between two selections that find a periodic potential the served model's own check finds
    a polynomial one (its terms lack more than the class does): that must not reset the first
    finding, or the class's verdict never counts."""
    check = StructureCheck(Stats(), lambda _: None, lambda _: None)
    stream = simulate_structure(4.0)
    assert not check.found_again(MISSING_PERIODIC, _batch(stream, 0, 2000), HOLDOUT)
    assert not check.found_again(MISSING_POTENTIAL, _batch(stream, 500, 3000), HOLDOUT, remember=False)
    assert check.unconfirmed is not None and check.unconfirmed[0] == MISSING_PERIODIC
    assert check.found_again(MISSING_PERIODIC, _batch(stream, 500, 3000), HOLDOUT)


def test_a_hardening_spring_grows_the_library_by_quadratic_then_quartic_potentials():
    """A hardening spring at joint 2 the trig grammar cannot hold: the first verdict at a
    selection is only remembered; found again on newer data it is said and grows the library
    by degree-2 potentials; a model of the grown library still lacks a potential (a quadratic
    cannot hold the quartic), which grows it by degree-4 ones. The exact model clears the
    warning."""
    plant = Plant(stiffness=(0.0, 10.0), hardening=(0.0, 8.0))
    stream = simulate_structure(10.0, stiffness=plant.stiffness, hardening=plant.hardening)
    stats, warnings = Stats(), []
    check = StructureCheck(stats, lambda _: None, warnings.append)
    library = GRAMMAR
    first, again = _batch(stream, 0, 4000), _batch(stream, 1000, 6000)
    assert check.check(_fit(library, first), first, library, ROWS, HOLDOUT) is None
    assert warnings == [] and stats.insufficiency == ""

    grown = check.check(_fit(library, again), again, library, ROWS, HOLDOUT)
    assert grown is not None and _degree(set(grown.columns) - set(library.columns)) == 2
    assert "q2**2" in stats.grown_terms and stats.insufficiency == MISSING_POTENTIAL
    assert len(warnings) == 1 and MISSING_POTENTIAL in warnings[0]

    library = grown
    first, again = _batch(stream, 0, 6000), _batch(stream, 2000, 10000)
    assert check.check(_fit(library, first), first, library, ROWS, HOLDOUT) is None
    quartic = check.check(_fit(library, again), again, library, ROWS, HOLDOUT)
    assert quartic is not None and "q2**4" in stats.grown_terms
    assert stats.grown_terms.index("q2**2") < stats.grown_terms.index("q2**4")
    assert len(warnings) == 1, "the same cause is said once"

    assert check.check(plant.true_terms(), again, quartic, ROWS, HOLDOUT) is None
    assert stats.insufficiency == ""


def test_the_served_model_is_judged_on_the_data_after_a_suspected_change_only():
    """The rigid model served; a spring appears at 3 s. Checked on the data since the suspected
    change the spring is said (and, on the model's own terms, grows the library); on data from
    before it nothing is, and the served check never clears a warning."""
    spring = Plant(stiffness=(0.0, 50.0))
    stream = simulate_structure(6.0, change_at=3.0, changed=spring)
    served = true_pendulum_terms(pendulum.PendulumParams())
    stats = Stats()
    check = StructureCheck(stats, lambda _: None, lambda _: None)
    before = _batch(stream, 0, 3000)
    assert check.check_served(served, before, None, 200, GRAMMAR, ROWS, HOLDOUT) is None
    assert stats.insufficiency == ""
    grown = check.check_served(served, _batch(stream), 3.0, 200, GRAMMAR, ROWS, HOLDOUT)
    assert stats.insufficiency == MISSING_POTENTIAL
    assert grown is not None and set(polynomial_terms(2, 0, 2)) <= set(grown.columns)
    check.check_served(served, before, None, 200, GRAMMAR, ROWS, HOLDOUT)
    assert stats.insufficiency == MISSING_POTENTIAL, "never clears"


def test_a_cogging_potential_grows_the_library_by_harmonics_when_no_polynomial_explains_it():
    """Cogging 0.4·cos 5q2 (a frequency the grammar lacks): on the rigid model's own terms the
    polynomial potentials explain part of it, so they are named first (the narrow ladder);
    once the library holds them the class still lacks structure, and the broad periodic group,
    tested by its strongest harmonics, is named and grows the library by them, cos 5q2 among
    them."""
    plant = Plant(cogging=(0.0, 0.4), cogging_periods=5)
    stream = simulate_structure(5.0, change_at=0.0, changed=plant)
    recent = _batch(stream)
    rigid = list(true_pendulum_terms(pendulum.PendulumParams()).library.columns)
    assert lacks(rigid, recent, GRAMMAR, ROWS, whole_class=False) == MISSING_POTENTIAL
    ladder = GRAMMAR.extended(potential_terms(GRAMMAR, 2))
    ladder = ladder.extended(potential_terms(ladder, 2))
    assert lacks(rigid, recent, ladder, ROWS, whole_class=True) == MISSING_PERIODIC
    stats = Stats()
    check = StructureCheck(stats, lambda _: None, lambda _: None)
    rigid_model = true_pendulum_terms(pendulum.PendulumParams())
    first, again = _batch(stream, 0, 4000), _batch(stream, 1000, 5000)
    assert check.check(rigid_model, first, ladder, ROWS, HOLDOUT) is None, "a first finding waits"
    grown = check.check(rigid_model, again, ladder, ROWS, HOLDOUT)
    assert stats.insufficiency == MISSING_PERIODIC and "cos(5*q2)" in stats.grown_terms
    assert grown is not None and len(grown) == len(ladder) + len(stats.grown_terms)
    assert check.check(plant.true_terms(), again, grown, ROWS, HOLDOUT) is None and stats.insufficiency == ""
    assert len(stats.grown_terms) <= WIDE_GROUP_COLUMNS


def test_an_inertia_that_depends_on_position_is_named_as_such():
    """Torques of the pendulum plus a kinetic term 0.3·q2²·q̇2² (an inertia growing with q2, as
    of a sliding mass) along the same motion: inverse dynamics holds along any motion, so
    the record is exact. The rigid model lacks position-dependent inertia, the true one nothing,
    and the library grown by the inertia group refits the true terms."""
    stream = simulate_structure(3.0)
    rigid = true_pendulum_terms(pendulum.PendulumParams())
    extra = Term((0, 2), "one", (0, 0), (0, 2))
    truth = TermModel(rigid.library.extended([extra]), torch.tensor(
        [dict(zip(rigid.library.columns, rigid.coefficients.tolist())).get(c, 0.3)
         for c in rigid.library.extended([extra]).columns], dtype=torch.float64))
    tau = truth.torque(stream.q, stream.qd, stream.qdd)
    recent = Batch(stream.stamp, stream.q, stream.qd, stream.qdd, tau)
    assert lacks(list(rigid.library.columns), recent, GRAMMAR, ROWS, whole_class=False) == MISSING_INERTIA
    assert lacks(list(truth.library.columns), recent, GRAMMAR, ROWS, whole_class=False) == ""
    grown = _fit(GRAMMAR.extended(inertia_group(GRAMMAR, 2)), recent)
    assert set(grown.terms) == set(truth.terms) and abs(grown.coefficient_of(extra) / 0.3 - 1) < 1e-9
