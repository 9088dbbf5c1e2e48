"""The online learner under sensor noise and structural change: no false alarms, validated
models only, the model class's insufficiency said out loud."""

import math

import pytest
import torch

from syrenets_ros.tools.streams import REALISTIC_NOISE, Stream, deliver, simulate, simulate_structure
from syrenets_ros.dynamics import pendulum
from syrenets_ros.learning.regression import fit_integral
from syrenets_ros.learning.terms import Force, TermModel, true_pendulum_terms
from syrenets_ros.online.learner import LearnerConfig, OnlineLearner
from syrenets_ros.online.snapshot import decode_model

PARAMS = pendulum.PendulumParams()
TRUTH = true_pendulum_terms(PARAMS)


def _feed(learner: OnlineLearner, stream: Stream, chunk: int = 1000):
    """Feed in chunks; returns (newest stamp at publication, publication) pairs."""
    selections = ((stamp, learner.maybe_select()) for stamp in deliver(learner, stream, chunk))
    return [(stamp, publication) for stamp, publication in selections if publication]


def _config(**changes) -> LearnerConfig:
    return LearnerConfig(snapshot_period=0.0, network_enabled=False, **changes)


def test_no_false_detection_on_a_noisy_run_and_the_true_terms_are_served():
    learner = OnlineLearner(_config(), log=lambda _: None)
    published = _feed(learner, simulate(8.0, noise=REALISTIC_NOISE, seed=1))
    assert published and learner.stats.change_detections == 0
    assert learner.stats.insufficiency == ""
    served = decode_model(published[-1][1].payload).model
    assert isinstance(served, TermModel) and set(served.library.columns) == set(TRUTH.terms)
    error = max(abs(served.coefficient_of(t) / c - 1) for t, c in zip(TRUTH.terms, TRUTH.coefficients.tolist()))
    assert error < 0.01
    assert all(v > 0 for v in served.stderr.tolist()), "uncertainties travel with the snapshot"
    assert learner.stats.noise[0] > 10 * math.sqrt(learner.config.change_floor) / 10


def test_transient_guard_refuses_a_model_worse_than_the_served_one():
    """Serving the exact model, a refit on little, very noisy data predicts the held-out
    torques worse: it is not served, and the refusal is counted."""
    learner = OnlineLearner(_config(fit_duration=1.2, min_fit_duration=1.2), log=lambda _: None)
    learner.served = TRUTH
    noise = tuple(3 * s for s in REALISTIC_NOISE)
    published = _feed(learner, simulate(2.2, noise=noise, seed=2), chunk=2200)
    assert learner.stats.candidate_rmse["library"] > 0, "a candidate was scored"
    # Refused by the transient guard or, earlier, by the plausibility gate before publishing
    # (a 1.2 s fit on 3x noise is usually implausible too): either way counted, never served.
    refusals = learner.stats.guard_refusals + sum(learner.stats.implausible.values())
    assert published == [] and refusals == 1
    assert learner.served is TRUTH


def test_after_a_change_only_a_validated_model_is_served():
    """A mass swap: no model is served before min_fit_duration + holdout of post-change data,
    and the first one served predicts the new system better than the pre-swap model did."""
    after_params = PARAMS.with_changes(m2=2.0, l2=1.2)
    learner = OnlineLearner(_config(), log=lambda _: None)
    before = simulate(5.0, seed=3)
    _feed(learner, before)
    pre_model = learner.served
    after = simulate(6.0, after_params, seed=3, start=5.0)
    published = _feed(learner, after, chunk=250)
    assert learner.stats.change_detections == 1
    assert learner.stats.change_stamps[0] == pytest.approx(5.0, abs=0.25)
    sizes = learner.sizes
    validated = 5.0 + (sizes.min_fit + sizes.holdout) * 1e-3
    suspected = 5.0 + 2 * learner.config.change_window * sizes.window * 1e-3 + 0.25
    assert not [stamp for stamp, _ in published if suspected <= stamp < validated]
    truth = pendulum.inverse_dynamics(after.clean_q, after.clean_qd, after.clean_qdd, after_params)

    def error(m):
        return float((m.torque(after.clean_q, after.clean_qd, after.clean_qdd) - truth).square().mean())

    assert all(error(decode_model(p.payload).model) < error(pre_model) for _, p in published)
    assert error(decode_model(published[-1][1].payload).model) < 1e-12


def test_after_a_change_every_post_change_sample_is_fitted():
    """Under realistic noise the models served after a swap are their validated terms refitted
    on every post-change sample (the holdout included), and each later selection refits them on
    the grown record: no post-change sample is withheld from the served fit, and the guard does
    not freeze the first, shortest fit."""
    after_params = PARAMS.with_changes(m2=2.0, l2=1.2)
    learner = OnlineLearner(_config(), log=lambda _: None)
    _feed(learner, simulate(8.0, seed=3, noise=REALISTIC_NOISE))
    after = simulate(5.0, after_params, seed=3, noise=REALISTIC_NOISE, start=8.0)
    fitted = []
    for _ in deliver(learner, after, 1000):
        if learner.maybe_select() is None:
            continue
        post = learner.buffer.newest(len(learner.buffer))
        assert float(post.stamp[0]) >= 8.0 and learner.stats.change_detections == 1
        served = learner.served
        refit = fit_integral(served.library, post.stamp, post.q, post.qd, post.qdd, post.tau, select_terms=False,
                             rows=learner.rows)
        assert torch.allclose(served.coefficients, refit.coefficients, rtol=1e-9, atol=0.0)
        fitted.append(len(post))
    assert len(fitted) >= 2 and fitted == sorted(fitted)


def test_a_spring_the_library_lacks_is_reported_with_its_cause():
    warnings = []
    learner = OnlineLearner(_config(), log=lambda _: None, warn=warnings.append)
    _feed(learner, simulate_structure(5.0, stiffness=(0.0, 50.0), rest=(0.0, 0.3)))
    assert learner.stats.insufficiency.startswith("missing potential")
    assert warnings and "missing potential" in warnings[0]


def test_a_structure_verdict_on_the_first_seconds_of_noisy_data_waits_for_newer_data():
    """The sim node's default 0.1 Hz reference at realistic noise, no spring: the first fit
    (2.2 s of data) is poor enough that the structure test names a missing potential. A
    verdict counts only when a later selection repeats it on newer data, so nothing is said
    and the library does not grow."""
    warnings = []
    learner = OnlineLearner(_config(), log=lambda _: None, warn=warnings.append)
    _feed(learner, simulate(6.0, noise=REALISTIC_NOISE, seed=0, base_frequency=0.1), chunk=1100)
    assert learner.served is not None
    assert warnings == [] and learner.stats.insufficiency == ""
    assert learner.stats.grown_terms == []


def test_viscous_damping_is_learned_without_a_warning():
    learner = OnlineLearner(_config(), log=lambda _: None)
    published = _feed(learner, simulate_structure(4.0, viscous=(2.0, 2.0)))
    served = decode_model(published[-1][1].payload).model

    assert served.coefficient_of(Force(0, "viscous")) == pytest.approx(2.0, rel=1e-6)
    assert served.coefficient_of(Force(1, "viscous")) == pytest.approx(2.0, rel=1e-6)
    assert learner.stats.insufficiency == ""
