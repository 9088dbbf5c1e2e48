"""What may be served (online/guard.py), on real fits of small exact records: the score, the
rule that lets a candidate replace the served model, the predictor's plausibility gate, the
served refit and the disagreement of equal fits outside the visited range."""

import math

import pytest
import torch

from syrenets_ros.dynamics import pendulum
from syrenets_ros.learning import integral
from syrenets_ros.learning.regression import fit_integral
from syrenets_ros.learning.terms import TermLibrary, TermModel, polynomial_terms, true_pendulum_terms
from syrenets_ros.online.guard import (CLEARLY_BETTER, PublishGate, disagreement_outside, ill_determined,
                                       integral_rmse, replaces)
from syrenets_ros.online.stream import Batch
from syrenets_ros.tools.streams import Plant, simulate_structure

PARAMS = pendulum.PendulumParams()
TRUE = true_pendulum_terms(PARAMS)
ROWS = integral.RowForm("acceleration", 100, 25)


def _batch(stream, start: int = 0, stop: int | None = None) -> Batch:
    stop = len(stream.stamp) if stop is None else stop
    return Batch(stream.stamp, stream.q, stream.qd, stream.qdd, stream.tau).slice(start, stop)


@pytest.fixture(scope="module")
def rigid():
    return _batch(simulate_structure(3.0))


def test_the_score_is_exact_for_the_true_model_and_infinite_without_a_window(rigid):
    assert integral_rmse(TRUE, rigid, ROWS) < 1e-9
    assert integral_rmse(TermModel(TRUE.library, TRUE.coefficients * 1.1), rigid, ROWS) > 1e-3
    assert integral_rmse(TRUE, rigid.slice(0, 50), ROWS) == math.inf, "50 samples hold no 100-sample window"


def test_a_fit_the_data_barely_fix_is_ill_determined():
    """What the transient guard holds to a higher bar: every library column kept on 3 s of a
    hardening spring under torque noise (stand-ins trading off: standard errors far above
    their coefficients) is ill-determined; the cross-validated selection on the same data, and
    a model without standard errors, are not."""
    stream = simulate_structure(3.0, stiffness=(0.0, 10.0), hardening=(0.0, 8.0))
    tau = stream.tau + 0.1 * torch.randn(stream.tau.shape, generator=torch.Generator().manual_seed(0),
                                         dtype=torch.float64)
    library = TermLibrary.grammar(2, dissipation=True).extended(polynomial_terms(2, 0))
    dense = fit_integral(library, stream.stamp, stream.q, stream.qd, stream.qdd, tau, select_terms=False)
    selected = fit_integral(library, stream.stamp, stream.q, stream.qd, stream.qdd, tau)
    assert ill_determined(dense) and float((dense.stderr / dense.coefficients.abs()).max()) > 10
    assert not ill_determined(selected)
    assert not ill_determined(TRUE)


def test_an_ill_determined_candidate_must_be_clearly_better_than_the_served_model():
    """On a spring the rigid served model misses: a dense, ill-determined fit replaces it only
    when the served model's held-out RMSE is CLEARLY_BETTER times the candidate's; a
    well-determined candidate replaces it when merely better, and a worse one never does."""
    stream = simulate_structure(4.0, stiffness=(0.0, 10.0))
    noisy = stream.tau + 0.1 * torch.randn(stream.tau.shape, generator=torch.Generator().manual_seed(0),
                                           dtype=torch.float64)
    fit = Batch(stream.stamp, stream.q, stream.qd, stream.qdd, noisy).slice(0, 3000)
    holdout = _batch(stream, 3000)
    library = TermLibrary.grammar(2, dissipation=True).extended(polynomial_terms(2, 0))
    dense = fit_integral(library, fit.stamp, fit.q, fit.qd, fit.qdd, fit.tau, select_terms=False)
    assert ill_determined(dense)
    served = TRUE  # rigid: the spring is missing
    served_rmse = integral_rmse(served, holdout, ROWS)
    assert served_rmse > 0.1

    def judged(model, ratio: float) -> bool:  # the candidate's held-out RMSE: served_rmse / ratio
        return replaces(model, served, served_rmse / ratio, 3000, math.inf, holdout, ROWS)

    assert not judged(dense, 0.5 * (1.0 + CLEARLY_BETTER)), "better, but not clearly: refused"
    assert judged(dense, 1.01 * CLEARLY_BETTER)
    exact = Plant(stiffness=(0.0, 10.0)).true_terms()
    assert judged(exact, 1.01)
    assert not judged(exact, 0.99)


def test_the_served_terms_refitted_on_more_samples_are_an_update(rigid):
    """A refit of the served model's own columns on more samples than the served one replaces
    it even when the holdout scores it worse (two fits of one structure on nearly the same
    data); on fewer samples it is judged like any candidate."""
    holdout = rigid.slice(2000, 3000)
    first = rigid.slice(0, 2000)
    served = fit_integral(TRUE.library, first.stamp, first.q, first.qd, first.qdd, first.tau, rows=ROWS,
                          select_terms=False)
    same_columns = TermModel(served.library, served.coefficients * 1.01)
    worse = 10.0 * integral_rmse(same_columns, holdout, ROWS)
    assert replaces(same_columns, served, worse, 3000, 2000, holdout, ROWS)
    assert not replaces(same_columns, served, worse, 2000, 2000, holdout, ROWS)
    assert replaces(served, served, math.inf, 0, 2000, holdout, ROWS), "the served model itself passes"
    vague = TermModel(served.library, served.coefficients, stderr=served.coefficients.abs() * 2.0)
    assert not replaces(vague, served, integral_rmse(vague, holdout, ROWS), 3000, 2000, holdout, ROWS), \
        "an ill-determined refit is no update"
    assert replaces(same_columns, None, worse, 0, math.inf, holdout, ROWS), "anything validated replaces nothing"


def test_the_gate_refuses_what_a_predictor_would_and_logs_a_bounded_count():
    implausible, notes = {}, []
    gate = PublishGate(2, 500.0, implausible, notes.append)
    assert gate.plausible(0.0, "library", TRUE)
    flipped = TermModel(TRUE.library, -TRUE.coefficients)  # negative inertia
    assert [gate.plausible(1.0, "library", flipped) for _ in range(5)] == [False] * 5
    assert implausible == {"library": 5}
    assert len(notes) == 3, "the 1st, 2nd and 4th refusals are logged"


def test_a_validated_candidate_is_served_refitted_on_the_holdout_too(rigid):
    """A term model fitted on fewer samples than the newest ``fit`` ones is served as its terms
    refitted on them (holdout included); a tracker that absorbed a refit's worth is served as
    it is, and so is a model that is not linear in its coefficients."""
    gate = PublishGate(2, 500.0, {}, lambda _: None)
    candidate = TermModel(TRUE.library, TRUE.coefficients * 1.001)
    served, samples = gate.served_fit(candidate, "library", 1000, rigid, ROWS, len(rigid), 0.0)
    assert samples == len(rigid) and served is not candidate
    assert float((served.coefficients - TRUE.coefficients).abs().max()) < 1e-8, "exact on exact data"
    assert gate.served_fit(candidate, "tracked", 1000, rigid, ROWS, 2000, 2500.0) == (candidate, 2500.0)
    assert gate.served_fit(candidate, "library", len(rigid), rigid, ROWS, len(rigid), 0.0) == (candidate, len(rigid))
    network = object()
    assert gate.served_fit(network, "network", 1000, rigid, ROWS, len(rigid), 0.0) == (network, 1000)


def test_equal_fits_that_part_ways_outside_the_data_are_reported(rigid):
    """A rival within EQUAL_FIT of the chosen model's held-out RMSE that differs from it
    outside the visited envelope sets the disagreement; one that fits clearly worse, or
    agrees, does not."""
    rival = TermModel(TRUE.library, TRUE.coefficients * 1.05)
    chosen = (1.0, "library", TRUE)
    assert disagreement_outside(chosen, [chosen, (1.5, "tracked", rival)], rigid, 0) > 0.0
    assert disagreement_outside(chosen, [chosen, (3.0, "tracked", rival)], rigid, 0) == 0.0
    twin = TermModel(TRUE.library, TRUE.coefficients.clone())
    assert disagreement_outside(chosen, [chosen, (1.0, "tracked", twin)], rigid, 0) == 0.0


def test_across_a_change_a_refit_of_the_served_terms_must_not_be_worse_since_the_change():
    """Cogging 0.4·cos 5q2 the rigid terms cannot hold, from t = 0. The rigid terms refitted on
    the newest 3 s (the holdout among them, as the tracker has seen it) beat the old rigid model
    on the holdout, and as a coefficient update they would replace it; across the change they
    must also not be worse on the whole post-change record — and this local stand-in is."""
    stream = simulate_structure(8.0, change_at=0.0, changed=Plant(cogging=(0.0, 0.4)))
    record, recent, holdout = _batch(stream), _batch(stream, 5000), _batch(stream, 7000)
    local = fit_integral(TRUE.library, recent.stamp, recent.q, recent.qd, recent.qdd, recent.tau, rows=ROWS,
                         select_terms=False)
    rmse = integral_rmse(local, holdout, ROWS)
    assert rmse < integral_rmse(TRUE, holdout, ROWS)
    assert replaces(local, TRUE, rmse, 3000, 1000, holdout, ROWS), "a coefficient update"
    assert integral_rmse(local, record, ROWS) > integral_rmse(TRUE, record, ROWS)
    assert not replaces(local, TRUE, rmse, 3000, 1000, holdout, ROWS, since_change=record)
    assert replaces(Plant(cogging=(0.0, 0.4)).true_terms(), TRUE, 0.0, 1000, 1000, holdout, ROWS,
                    since_change=record), "the exact model replaces it"
