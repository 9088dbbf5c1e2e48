"""Symbolic distillation: library, rank check, exact refit, safe payloads, RLS tracking."""

import copy
import json
import math

import pytest
import torch

from syrenets_ros.learning import regression, terms
from syrenets_ros.online import tracking

from syrenets_ros.dynamics import euler_lagrange

from syrenets_ros.dynamics import pendulum

from syrenets_ros.online import snapshot
from syrenets_ros.learning.terms import Term, TermLibrary, TermModel
from syrenets_ros.online.snapshot import SnapshotError

PARAMS = pendulum.PendulumParams()
CHANGED = PARAMS.with_changes(m2=2.0, l2=1.2)


def _data(count: int, seed: int, params: pendulum.PendulumParams = PARAMS):
    gen = torch.Generator().manual_seed(seed)
    q, qd, qdd = ((torch.rand(count, 2, generator=gen, dtype=torch.float64) * 2 - 1) * math.pi / 2 for _ in range(3))
    return q, qd, qdd, pendulum.inverse_dynamics(q, qd, qdd, params)


def test_el_images_match_euler_lagrange_operator_for_every_term():
    """Closed-form images against autodiff: EL(Σ c_m φ_m) is linear in c, so its Jacobian in c
    is the image of every term at once."""
    library = TermLibrary.grammar(2)
    q, qd, qdd, _ = _data(64, 0)
    images = library.el_images(q, qd, qdd)
    assert images.shape == (64, 2, len(library))

    def operator_torque(c):
        return euler_lagrange.torque(lambda a, b: library.features(a, b) @ c, q, qd, qdd)

    reference = torch.func.jacfwd(operator_torque)(torch.zeros(len(library), dtype=torch.float64))
    assert torch.allclose(images, reference, rtol=0, atol=1e-12)
    assert images.abs().amax(dim=(0, 1)).min() == 0  # constants really have a zero image


def test_library_is_non_redundant_as_functions():
    library = TermLibrary.grammar(2)
    q, qd, _, _ = _data(3000, 1)
    features = library.features(q, qd)
    assert torch.linalg.matrix_rank(features) == len(library) == 78


def test_rank_check_removes_total_derivatives_and_constants():
    library = TermLibrary.grammar(2)
    q, qd, qdd, _ = _data(2000, 2)
    base, dropped = library.identifiable(q, qd, qdd)
    # d/dt sin(q1) = qd1 cos(q1): a total time derivative, zero EL image.
    assert "qd1*cos(q1)" in dropped and "1" in dropped and "qd1*cos(q1)" not in base.names
    # qd2*sin(q1+q2) = d/dt(−cos(q1+q2)) − qd1*sin(q1+q2): collinear with the simpler one, kept.
    assert "qd2*sin(q1 + q2)" in dropped and "qd1*sin(q1 + q2)" in base.names
    images = base.el_images(q, qd, qdd).reshape(-1, len(base))
    assert torch.linalg.matrix_rank(images) == len(base)
    full_rank = torch.linalg.matrix_rank(library.el_images(q, qd, qdd).reshape(-1, len(library)))
    assert full_rank == len(base) < len(library)


def test_library_alone_recovers_the_true_lagrangian_exactly():
    q, qd, qdd, tau = _data(4000, 3)
    model = regression.fit_terms(TermLibrary.grammar(2), q, qd, qdd, tau)
    truth = terms.true_pendulum_terms(PARAMS)
    assert set(model.terms) == set(truth.terms)
    for term, value in zip(truth.terms, truth.coefficients.tolist()):
        assert model.coefficient_of(term) == pytest.approx(value, rel=1e-6)
    q2, qd2, qdd2, tau2 = _data(1000, 4)
    assert (model.torque(q2, qd2, qdd2) - tau2).square().mean() <= 1e-10
    assert model.fit_report["mse"] <= 1e-10
    assert torch.allclose(model.lagrangian(q2, qd2), pendulum.lagrangian(q2, qd2, PARAMS), rtol=0, atol=1e-9)


def test_term_model_torque_is_per_sample_and_matches_operator():
    truth = terms.true_pendulum_terms(PARAMS)
    q, qd, qdd, tau = _data(50, 5)
    batch = truth.torque(q, qd, qdd)
    assert torch.allclose(batch, tau, rtol=0, atol=1e-10)
    assert torch.allclose(euler_lagrange.torque(truth.lagrangian_fn(), q, qd, qdd), batch, rtol=0, atol=1e-10)
    for i in (0, 17, 49):
        assert torch.equal(truth.torque(q[i:i + 1], qd[i:i + 1], qdd[i:i + 1])[0], batch[i])


def test_network_guided_proposal_then_refit_is_exact():
    """Any per-sample L works as the 'network'; here a perturbed true L plus a spurious term."""
    q, qd, qdd, tau = _data(3000, 6)
    library = TermLibrary.grammar(2)

    def noisy_network(a, b):
        return 1.01 * pendulum.lagrangian(a, b, PARAMS) + 0.3 * b[0] * b[1] * torch.sin(a[0])

    ranking = regression.rank_terms_by_network(noisy_network, library, q[:1000], qd[:1000], qdd[:1000])
    truth = terms.true_pendulum_terms(PARAMS)
    assert set(truth.terms) <= set(ranking.proposed)
    assert ranking.explained == pytest.approx(1.0, abs=1e-9)
    model = regression.fit_terms(library, q, qd, qdd, tau, candidates=ranking.proposed)
    assert set(model.terms) == set(truth.terms)
    assert max(abs(model.coefficient_of(t) / c - 1) for t, c in zip(truth.terms, truth.coefficients.tolist())) < 1e-6


def test_ranked_cut_recovers_terms_a_weak_network_left_out():
    """A 'network' that only knows gravity proposes too little; growing along its ranking with
    the data deciding the cut still ends exact, and reports how much it searched."""
    q, qd, qdd, tau = _data(3000, 8)
    library = TermLibrary.grammar(2)

    def gravity_only(a, b):
        return 65.0 * torch.cos(a[0]) + 8.0 * torch.cos(a[0] + a[1]) + 7.0 * b[0] ** 2

    ranking = regression.rank_terms_by_network(gravity_only, library, q[:500], qd[:500], qdd[:500])
    truth = terms.true_pendulum_terms(PARAMS)
    assert not set(truth.terms) <= set(ranking.proposed)

    def fit(candidates):
        return regression.fit_terms(library, q, qd, qdd, tau, candidates=candidates)

    model = regression.refit_by_rank(ranking, fit, float(tau.square().mean()))
    assert set(model.terms) == set(truth.terms)
    assert len(ranking.proposed) < model.fit_report["searched"] <= model.fit_report["ranked"]


def test_equation_is_readable():
    text = terms.true_pendulum_terms(PARAMS).equation(digits=4)
    assert text.startswith("L = ") and "65.48*cos(q1)" in text and "cos(q2)" in text and "qd1**2" in text


def test_payload_round_trip_is_bit_for_bit():
    q, qd, qdd, tau = _data(2000, 7)
    model = regression.fit_terms(TermLibrary.grammar(2), q, qd, qdd, tau)
    text = json.dumps(model.to_payload())
    restored = TermModel.from_payload(json.loads(text))
    assert restored.terms == model.terms
    assert torch.equal(restored.coefficients, model.coefficients)
    assert torch.equal(restored.torque(q, qd, qdd), model.torque(q, qd, qdd))


def test_term_model_travels_in_the_snapshot_envelope():
    model = terms.true_pendulum_terms(PARAMS)
    text = snapshot.encode_model(model, model_version=3, joint_names=pendulum.JOINT_NAMES, metrics={"mse": 0.0})
    decoded = snapshot.decode_model(text)
    assert isinstance(decoded.model, TermModel) and decoded.model_version == 3
    assert torch.equal(decoded.model.coefficients, model.coefficients) and decoded.model.terms == model.terms
    tampered = text.replace('"cos"', '"exec"', 1)
    with pytest.raises(SnapshotError, match="function"):
        snapshot.decode_model(tampered)


def _hostile(mutate) -> dict:
    payload = copy.deepcopy(terms.true_pendulum_terms(PARAMS).to_payload())
    mutate(payload)
    return payload


@pytest.mark.parametrize("mutate, reason", [
    (lambda p: p["terms"][0].update(function="__import__('os').system"), "function"),
    (lambda p: p["terms"][0].update(function="exp"), "function"),
    (lambda p: p["terms"][0].update(velocity=[-1, 0]), "velocity"),
    (lambda p: p["terms"][0].update(velocity=[9, 0]), "velocity"),
    (lambda p: p["terms"][0].update(velocity=[1.5, 0]), "integers"),
    (lambda p: p["terms"][0].update(velocity=[True, 0]), "integers"),
    (lambda p: p["terms"][3].update(angle=[0, 10**9]), "angle"),
    (lambda p: p["terms"][3].update(angle=[0, -1]), "non-zero"),
    (lambda p: p["terms"][0].update(angle=[1, 0]), "zero angle"),
    (lambda p: p["terms"][0].update(code="print(1)"), "keys"),
    (lambda p: p["terms"].append(dict(p["terms"][0])), "duplicate"),
    (lambda p: p.update(n_joints=3), "entries"),
    (lambda p: p.update(n_joints=10**6), "n_joints"),
    (lambda p: p.update(terms=[p["terms"][0]] * (terms.MAX_TERMS + 1)), "terms must be"),
    (lambda p: p.update(coefficients={"dtype": "float64", "shape": [10**9], "data": ""}), "exceeds"),
    (lambda p: p["coefficients"].update(shape=[6]), "bytes"),
    (lambda p: p.pop("coefficients"), "keys"),
])
def test_hostile_payloads_are_refused_with_a_reason(mutate, reason):
    with pytest.raises(SnapshotError, match=reason):
        TermModel.from_payload(_hostile(mutate))


def test_nan_coefficient_is_refused():
    model = terms.true_pendulum_terms(PARAMS)
    bad = TermModel(model.library, model.coefficients.clone())
    bad.coefficients[2] = math.nan
    with pytest.raises(SnapshotError, match="non-finite"):
        TermModel.from_payload(json.loads(json.dumps(bad.to_payload())))


def test_rls_converges_and_reconverges_after_a_parameter_change():
    truth, changed = terms.true_pendulum_terms(PARAMS), terms.true_pendulum_terms(CHANGED)
    rls = tracking.RecursiveLeastSquares(truth.library, forgetting=0.995)
    for batch in range(15):
        before_change = rls.update(*_data(32, 100 + batch))
    assert torch.allclose(rls.theta, truth.coefficients, rtol=1e-6, atol=0)
    assert before_change < 1e-8
    surprise = rls.update(*_data(32, 200, CHANGED))
    assert surprise > 1e6 * before_change  # the prediction residual flags the change
    rls.reset()
    for batch in range(10):
        rls.update(*_data(32, 300 + batch, CHANGED))
    assert torch.allclose(rls.theta, changed.coefficients, rtol=1e-6, atol=0)
    q, qd, qdd, tau = _data(500, 400, CHANGED)
    assert (rls.model().torque(q, qd, qdd) - tau).square().mean() <= 1e-10


def test_term_validation_rejects_non_canonical_terms():
    with pytest.raises(ValueError):
        Term((0, 0), "sin", (-1, 0))
    with pytest.raises(ValueError, match="duplicate"):
        TermLibrary([Term((1, 0), "one", (0, 0))] * 2)


def test_the_widened_search_is_bounded_new_and_simplest_first():
    """Periodic potentials the library lacks come single-joint harmonics first, then the
    two- and three-joint combinations, never an angle the library holds, never past the
    budget; the inertia terms are kinetic (q̇_i q̇_j) with a polynomial factor."""
    library = TermLibrary.grammar(2)
    known = [t.angle for t in library.terms]
    periodic = terms.periodic_terms(2, known, 1000)
    assert periodic and not {t.angle for t in periodic} & set(known)
    assert all(t.degree == 0 and t.function in ("cos", "sin") for t in periodic)
    assert periodic[0].name == "cos(3*q1)" and "cos(5*q2)" in [t.name for t in periodic]
    assert "cos(q1 + 2*q2)" in [t.name for t in periodic]
    assert terms.periodic_terms(2, known, 10) == periodic[:10]
    three = terms.periodic_terms(3, [t.angle for t in TermLibrary.grammar(3).terms], 1000)
    assert "cos(q1 + q3)" in [t.name for t in three], "a sum of joints that are not neighbours"
    inertia = terms.inertia_terms(2)
    assert len(inertia) == 15 and all(t.degree == 2 and any(t.position) for t in inertia)


def test_the_true_terms_of_a_pendulum_with_every_joint_element_are_its_inverse_dynamics():
    """Springs (off their rest angle), cogging, viscous and Coulomb friction expanded into library
    terms give the closed-form inverse dynamics to round-off: the learner's target is the plant."""
    joints = pendulum.JointElements(stiffness=(20.0, 50.0), rest_angle=(0.3, -0.5), damping=(2.0, 0.7),
                                    friction=(1.5, 3.0), cogging=(0.3, 0.4), cogging_periods=6)
    q, qd, qdd, _ = _data(256, 5)
    truth = terms.true_pendulum_terms(PARAMS, joints)
    assert "cos(6*q2)" in truth.library.names
    assert torch.allclose(truth.torque(q, qd, qdd), pendulum.inverse_dynamics(q, qd, qdd, PARAMS, joints),
                          rtol=0, atol=1e-11)
