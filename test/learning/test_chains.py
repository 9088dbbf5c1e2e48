"""Planar chains of any length (issue 21): the grammar's angles run along the chain, it holds
every chain's true terms at a column count that stays bounded, and the integral refit learns a
3-link pendulum exactly from a few seconds of clean data."""


import pytest
import torch

from syrenets_ros.dynamics import chain, pendulum
from syrenets_ros.dynamics import euler_lagrange
from syrenets_ros.learning.regression import fit_integral
from syrenets_ros.learning.terms import (Term, TermLibrary, grammar_angles, polynomial_terms, true_chain_terms,
                                         true_pendulum_terms)
from syrenets_ros.plant.excitation import MultiSine

THREE = chain.ChainParams((3.0, 1.0, 0.5), (2.67, 1.67, 1.2))


def _wide_states(count: int, n: int):
    gen = torch.Generator().manual_seed(7)
    q, qd, qdd = (torch.rand(count, n, generator=gen, dtype=torch.float64) * 2 - 1 for _ in range(3))
    return q * torch.pi, 3.0 * qd, 5.0 * qdd


def test_two_joint_angles_are_unchanged_and_longer_chains_gain_their_sums():
    assert set(grammar_angles(2)) == {(1, 0), (0, 1), (2, 0), (0, 2), (1, 1), (1, -1)}
    angles = set(grammar_angles(4))
    assert {(1, 1, 1, 0), (0, 1, 1, 1), (1, 1, 1, 1), (1, -1, 0, 0), (0, 1, 0, -1)} <= angles
    assert (1, 0, 1, 0) not in angles  # q1 + q3 belongs to no chain


@pytest.mark.parametrize("n", [2, 3, 4, 5, 6, 7])
def test_column_count_grows_like_the_old_grammar(n):
    """n² + n angles (as before) × {cos, sin} plus 1, times the velocity monomials of degree ≤ 2."""
    monomials = 1 + n + n * (n + 1) // 2
    assert len(grammar_angles(n)) == len(set(grammar_angles(n))) == n * n + n
    assert len(TermLibrary.grammar(n)) == (1 + 2 * (n * n + n)) * monomials


@pytest.mark.parametrize("n", [3, 4])
def test_grammar_holds_every_true_term_of_the_chain(n):
    params = chain.ChainParams(tuple(1.0 + 0.1 * i for i in range(n)), tuple(1.5 - 0.1 * i for i in range(n)))
    truth = true_chain_terms(params)
    assert set(truth.terms) <= set(TermLibrary.grammar(n).terms)
    q, qd, qdd = _wide_states(200, n)
    assert torch.allclose(truth.torque(q, qd, qdd), chain.inverse_dynamics(q, qd, qdd, params), rtol=0, atol=1e-10)


def test_el_images_match_euler_lagrange_operator_beyond_two_joints():
    """Closed-form images against autodiff for three joints, with quartic velocity monomials
    and polynomial factors in q (the gathers of every derivative order and joint)."""
    quartic = [Term((2, 1, 1), "cos", (0, 1, 1)), Term((0, 3, 1), "sin", (1, 0, -1)), Term((4, 0, 0), "one", (0, 0, 0))]
    library = TermLibrary(sorted(set(true_chain_terms(THREE).terms) | set(quartic + polynomial_terms(3))))
    q, qd, qdd = (x / 2 for x in _wide_states(32, 3))
    images = library.el_images(q, qd, qdd)

    def operator_torque(c):
        return euler_lagrange.torque(lambda a, b: library.features(a, b) @ c, q, qd, qdd)

    reference = torch.func.jacfwd(operator_torque)(torch.zeros(len(library), dtype=torch.float64))
    assert torch.allclose(images, reference, rtol=0, atol=1e-11)


def test_two_link_chain_terms_are_the_pendulum_terms():
    params = pendulum.PendulumParams()
    truth, pendulum_truth = true_chain_terms(chain.ChainParams.from_pendulum(params)), true_pendulum_terms(params)
    assert set(truth.terms) == set(pendulum_truth.terms)
    for term in pendulum_truth.terms:
        assert truth.coefficient_of(term) == pytest.approx(pendulum_truth.coefficient_of(term), rel=1e-15)


def test_three_link_pendulum_is_learned_exactly_from_clean_data():
    """8 s of the 1 kHz multisine record, the learner's library (with dissipation): exactly the
    19 true terms, and torques right far outside the visited range."""
    record = chain.multisine_record(THREE, MultiSine.from_seed(0, 1.0, 0.2, joints=3), 8.0)
    model = fit_integral(TermLibrary.grammar(3, dissipation=True), record.stamp, record.q, record.qd,
                         record.qdd, record.tau)
    truth = true_chain_terms(THREE)
    assert set(model.library.columns) == set(truth.terms)
    for term, value in zip(truth.terms, truth.coefficients.tolist()):
        assert model.coefficient_of(term) == pytest.approx(value, rel=1e-9)
    q, qd, qdd = _wide_states(5000, 3)
    expected = chain.inverse_dynamics(q, qd, qdd, THREE)
    assert float((model.torque(q, qd, qdd) - expected).norm() / expected.norm()) <= 1e-6
