"""The grown model class: dissipative forces and polynomial-in-q terms (SPEC §2b, issue 11)."""

import json
import math

import pytest
import sympy
import torch

from syrenets_ros.dynamics import euler_lagrange, pendulum
from syrenets_ros.learning import integral, regression
from syrenets_ros.tools.streams import simulate_structure
from syrenets_ros.learning.terms import Force, Term, TermLibrary, TermModel, polynomial_terms, true_pendulum_terms
from syrenets_ros.online.snapshot import SnapshotError

PARAMS = pendulum.PendulumParams()
VISCOUS, COULOMB = (2.0, 0.5), (0.3, 0.7)
SPRING = Term((0, 0), "one", (0, 0), (0, 2))


def _states(count: int, seed: int, scale: float = math.pi / 2):
    gen = torch.Generator().manual_seed(seed)
    return [(torch.rand(count, 2, generator=gen, dtype=torch.float64) * 2 - 1) * scale for _ in range(3)]


def _dissipative_torque(q, qd, qdd):
    return (pendulum.inverse_dynamics(q, qd, qdd, PARAMS) + torch.tensor(VISCOUS, dtype=torch.float64) * qd
            + torch.tensor(COULOMB, dtype=torch.float64) * torch.sign(qd))


def test_polynomial_and_force_columns_match_the_operator():
    """Closed-form images of polynomial terms against autodiff of EL; force columns are the
    generalised forces themselves."""
    library = TermLibrary.grammar(2, dissipation=True).extended(polynomial_terms(2))
    q, qd, qdd = _states(64, 0)
    images = library.el_images(q, qd, qdd)
    lagrangian_columns = len(library.terms)

    def operator_torque(c):
        return euler_lagrange.torque(lambda a, b: library.features(a, b) @ c, q, qd, qdd)

    reference = torch.func.jacfwd(operator_torque)(torch.zeros(lagrangian_columns, dtype=torch.float64))
    assert torch.allclose(images[..., :lagrangian_columns], reference, rtol=0, atol=1e-12)
    viscous = library.index(Force(1, "viscous"))
    assert torch.equal(images[:, 1, viscous], qd[:, 1]) and not images[:, 0, viscous].any()


def test_dissipation_terms_refit_exactly():
    q, qd, qdd = _states(3000, 1)
    tau = _dissipative_torque(q, qd, qdd)
    model = regression.fit_terms(TermLibrary.grammar(2, dissipation=True), q, qd, qdd, tau)
    for joint in range(2):
        assert model.coefficient_of(Force(joint, "viscous")) == pytest.approx(VISCOUS[joint], rel=1e-9)
        assert model.coefficient_of(Force(joint, "coulomb")) == pytest.approx(COULOMB[joint], rel=1e-9)
    assert len(model.library.columns) == 7 + 4
    assert (model.torque(q, qd, qdd) - tau).abs().max() < 1e-9
    # The dissipation is in the served torque, not in L.
    assert model.lagrangian(q, qd).shape == (3000,)
    text = model.equation()
    assert "; D = " in text and "2*qd1**2/2" in text and "0.7*Abs(qd2)" in text


def test_dissipation_refit_on_integral_rows_is_exact():
    """Integral rows of consecutive samples of a damped pendulum (discrete scheme of the sim)."""
    steps, dt = 6000, 1e-3
    q = torch.zeros(steps + 1, 2, dtype=torch.float64)
    qd = torch.zeros_like(q)
    tau = torch.zeros_like(q)
    qk, qdk = torch.tensor([0.3, -0.2], dtype=torch.float64), torch.zeros(2, dtype=torch.float64)
    for k in range(steps + 1):
        t = k * dt
        tau[k] = torch.tensor([40 * math.sin(1.3 * t) + 30 * math.sin(3.1 * t), 8 * math.sin(2.3 * t + 1)])
        q[k], qd[k] = qk, qdk
        drive = tau[k] - torch.tensor(VISCOUS, dtype=torch.float64) * qdk - torch.tensor(COULOMB, dtype=torch.float64) * torch.sign(qdk)
        qdk = qdk + dt * pendulum.forward_dynamics(qk, qdk, drive, PARAMS)
        qk = qk + dt * qdk
    qdd = (qd[1:] - qd[:-1]) / dt
    stamp = torch.arange(steps, dtype=torch.float64) * dt
    model = regression.fit_integral(TermLibrary.grammar(2, dissipation=True), stamp, q[:-1], qd[:-1], qdd, tau[:-1])
    assert model.coefficient_of(Force(0, "viscous")) == pytest.approx(VISCOUS[0], rel=1e-8)
    assert model.coefficient_of(Force(1, "viscous")) == pytest.approx(VISCOUS[1], rel=1e-8)
    assert model.coefficient_of(Force(1, "coulomb")) == pytest.approx(COULOMB[1], rel=1e-8)


def test_payload_carries_forces_positions_and_stderr():
    library = TermLibrary([Term((2, 0), "one", (0, 0)), SPRING], [Force(0, "viscous")])
    model = TermModel(library, torch.tensor([1.5, -25.0, 2.0]), stderr=torch.tensor([1e-3, 0.0, 2e-3]))
    restored = TermModel.from_payload(json.loads(json.dumps(model.to_payload())))
    assert restored.library.columns == model.library.columns
    assert torch.equal(restored.coefficients, model.coefficients) and torch.equal(restored.stderr, model.stderr)
    assert "1.5(±0.001)*qd1**2" in restored.equation() and "- 25*q2**2" in restored.equation()


@pytest.mark.parametrize("mutate, reason", [
    (lambda p: p["forces"][0].update(law="os.system"), "law"),
    (lambda p: p["forces"][0].update(joint=5), "joint"),
    (lambda p: p["forces"][0].update(joint=True), "joint"),
    (lambda p: p["terms"][1].update(position=[0, 9]), "position"),
    (lambda p: p["terms"][1].update(position=[0, -1]), "position"),
    (lambda p: p.update(stderr={"dtype": "float64", "shape": [3], "data": "AAAAAAAA8L8AAAAAAADwvwAAAAAAAPC/"}), "stderr"),
    (lambda p: p.update(forces="viscous"), "forces"),
])
def test_hostile_structure_payloads_are_refused(mutate, reason):
    library = TermLibrary([Term((2, 0), "one", (0, 0)), SPRING], [Force(0, "viscous")])
    payload = TermModel(library, torch.tensor([1.5, -25.0, 2.0]), stderr=torch.ones(3)).to_payload()
    mutate(payload)
    with pytest.raises(SnapshotError, match=reason):
        TermModel.from_payload(json.loads(json.dumps(payload)))


def test_network_proposed_polynomial_term_enters_the_refit():
    """A frozen expression holding a spring ½k(q2 − r)² — what the SyReNet learns on spring data
    (SPEC §3, measured) — proposes q2² and q2; the refit on the grown grammar carries them
    exactly, which the trig grammar alone cannot."""
    k, rest = 50.0, 0.3

    def sprung(q, qd):
        return pendulum.lagrangian(q, qd, PARAMS) - 0.5 * k * (q[..., 1] - rest) ** 2

    base = TermLibrary.grammar(2, dissipation=True)
    q, qd, qdd = _states(256, 2, 1.0)
    proposed = regression.propose_terms(sprung, base, q, qd, qdd)
    assert SPRING in proposed and Term((0, 0), "one", (0, 0), (0, 1)) in proposed
    assert all(t not in base.columns for t in proposed)

    q, qd, qdd = _states(3000, 3, 1.0)
    tau = euler_lagrange.torque(sprung, q, qd, qdd)
    grown = regression.fit_terms(base, q, qd, qdd, tau, candidates=list(base.columns) + proposed)
    assert grown.coefficient_of(SPRING) == pytest.approx(-0.5 * k, rel=1e-9)
    wide_q, wide_qd, wide_qdd = _states(500, 4, 2.5)
    truth = euler_lagrange.torque(sprung, wide_q, wide_qd, wide_qdd)
    assert (grown.torque(wide_q, wide_qd, wide_qdd) - truth).abs().max() < 1e-6
    trig_only = regression.fit_terms(base, q, qd, qdd, tau)
    assert (trig_only.torque(wide_q, wide_qd, wide_qdd) - truth).abs().max() > 1.0


@pytest.mark.parametrize("plant, cause", [
    (dict(), None),
    (dict(stiffness=(0.0, 50.0), rest=(0.0, 0.3)), "potential"),
    (dict(viscous=(2.0, 0.0)), "dissipation"),
])
def test_missing_structure_names_the_physics_a_rigid_model_lacks(plant, cause):
    """The rigid pendulum's exact terms on data of a plant with a spring or damping: the
    nested likelihood-ratio test names what is missing, and nothing on the rigid plant."""
    stream = simulate_structure(3.0, **plant)
    rigid = true_pendulum_terms(PARAMS)
    starts = integral.window_starts(stream.stamp, 100, 100, 1e-3)
    rows = integral.integrate(rigid.library.el_images(stream.q, stream.qd, stream.qdd), starts, 100)
    target = integral.integrate(stream.tau, starts, 100)
    groups = {
        "missing potential": integral.integrate(
            TermLibrary(polynomial_terms(2, max_velocity_degree=0)).el_images(stream.q, stream.qd, stream.qdd),
            starts, 100),
        "dissipation": integral.integrate(
            torch.stack([Force(j, "viscous").generalised_force(stream.qd) for j in range(2)], -1), starts, 100),
    }
    verdict = integral.missing_structure(rows, target, groups)
    assert verdict == (None if cause is None else next(name for name in groups if cause in name))


def test_a_term_the_model_missed_is_no_verdict_when_the_class_holds_it():
    """The rigid model without its cos q1 term: a polynomial in q stands in for the missing
    gravity term, so on the model's own columns a potential is missing; granted the library
    it was selected from (the class), nothing is — only what the class lacks grows it."""
    stream = simulate_structure(3.0)
    truth = true_pendulum_terms(PARAMS)
    gravity = Term((0, 0), "cos", (1, 0))
    partial = TermLibrary([t for t in truth.terms if t != gravity])
    library = TermLibrary.grammar(2, dissipation=True)
    starts = integral.window_starts(stream.stamp, 100, 100, 1e-3)

    def rows(lib):
        return integral.integrate(lib.el_images(stream.q, stream.qd, stream.qdd), starts, 100)

    target = integral.integrate(stream.tau, starts, 100)
    groups = {"potential": rows(TermLibrary(polynomial_terms(2, max_velocity_degree=0)))}
    complement = library.subset([i for i, c in enumerate(library.columns) if c not in partial.columns])
    assert integral.missing_structure(rows(partial), target, groups) == "potential"
    assert integral.missing_structure(rows(partial), target, groups, complement=rows(complement)) is None


def test_forced_variational_integrator_dissipates_what_the_model_says():
    """Passive motion of a model with viscous damping (forced discrete Lagrange–d'Alembert):
    the energy lost over the forecast equals the work of the damping force, and a model
    without dissipation keeps its energy."""
    from syrenets_ros.dynamics.integrator import VariationalIntegrator

    rigid = true_pendulum_terms(PARAMS)
    damped = TermModel(TermLibrary(list(rigid.terms), [Force(0, "viscous"), Force(1, "viscous")]),
                       torch.cat((rigid.coefficients, torch.tensor([2.0, 2.0], dtype=torch.float64))))
    q0, qd0 = torch.tensor([[1.2, -0.5]], dtype=torch.float64), torch.tensor([[1.0, 0.5]], dtype=torch.float64)
    h, steps = 0.01, 300

    def energy(rollout):
        return pendulum.energy(rollout.q[0], rollout.qd[0], PARAMS)

    free = VariationalIntegrator(rigid.lagrangian_fn(), h, tol=1e-12).rollout(q0, qd0, steps)
    lossy = VariationalIntegrator(damped.lagrangian_fn(), h, tol=1e-12,
                                  dissipation=damped.dissipation_fn()).rollout(q0, qd0, steps)
    assert int(lossy.valid_length[0]) == steps + 1
    assert abs(float(energy(free)[-1] - energy(free)[0])) < 1e-3 * float(energy(free).abs().max())
    velocity = (lossy.q[0, 1:] - lossy.q[0, :-1]) / h
    work = float((2.0 * velocity.square()).sum() * h)
    lost = float(energy(lossy)[0] - energy(lossy)[-1])
    assert work > 1.0 and lost == pytest.approx(work, rel=0.02)


def test_dissipation_refits_exactly_on_the_pybullet_plant():
    """The simulator's own viscous and Coulomb elements (SPEC §2b), learned from its published
    effort on integral rows: exact, and printed as D beside L."""
    import numpy as np

    from syrenets_ros.dynamics.pendulum import JointElements
    from syrenets_ros.plant.excitation import MultiSine
    from syrenets_ros.plant.simulator import Simulator

    dt, steps = 1e-3, 5000
    excitation = MultiSine.from_seed(0, 1.0, 0.2)
    reference = [excitation.sample(k * dt) for k in range(steps + 1)]
    q_ref, qd_ref, qdd_ref = (torch.tensor([r[i] for r in reference], dtype=torch.float64) for i in range(3))
    feedforward = pendulum.inverse_dynamics(q_ref, qd_ref, qdd_ref, PARAMS).tolist()
    rows = []
    with Simulator(PARAMS, dt, reference[0][0], reference[0][1],
                   joints=JointElements(damping=VISCOUS, friction=COULOMB)) as sim:
        for k in range(steps + 1):
            q, qd = sim.state()
            tau = [feedforward[k][i] + 200 * (reference[k][0][i] - q[i]) + 40 * (reference[k][1][i] - qd[i])
                   for i in range(2)]
            rows.append((*q, *qd, *tau))
            sim.step(tau)
    data = torch.tensor(np.array(rows), dtype=torch.float64)
    q, qd, tau = data[:-1, :2], data[:-1, 2:4], data[:-1, 4:]
    qdd = (data[1:, 2:4] - data[:-1, 2:4]) / dt
    stamp = torch.arange(steps, dtype=torch.float64) * dt
    model = regression.fit_integral(TermLibrary.grammar(2, dissipation=True), stamp, q, qd, qdd, tau)
    for joint in range(2):
        assert model.coefficient_of(Force(joint, "viscous")) == pytest.approx(VISCOUS[joint], rel=1e-9)
        assert model.coefficient_of(Force(joint, "coulomb")) == pytest.approx(COULOMB[joint], rel=1e-9)
    assert set(model.terms) == set(true_pendulum_terms(PARAMS).terms)
    assert (model.torque(q, qd, qdd) - tau).abs().max() < 1e-9


def test_true_terms_with_springs_and_friction_match_the_extended_inverse_dynamics():
    """The truth the benchmarks and the demo print beside the learned model: springs (with
    rest angles) as polynomial terms of L, damping and friction as forces of D."""
    joints = pendulum.JointElements(stiffness=(20.0, 50.0), rest_angle=(0.1, 0.4), damping=(2.0, 0.5),
                                    friction=(3.0, 1.0))
    model = true_pendulum_terms(PARAMS, joints)
    q, qd, qdd = _states(500, 7)
    assert (model.torque(q, qd, qdd) - pendulum.inverse_dynamics(q, qd, qdd, PARAMS, joints)).abs().max() < 1e-10
    assert model.coefficient_of(SPRING) == -25.0 and "D = " in model.equation()


def test_polynomial_growth_is_staged_and_bounded():
    """Degree ≤ 2 (a linear spring) is what the first growth adds; degree ≤ 4 (a hardening
    spring's quartic) the next; past the grammar's bound there is no stage, and a quartic term
    travels in a payload while a higher degree is refused."""
    quadratic, quartic = polynomial_terms(2, 0), polynomial_terms(2, 0, position_degree=4)
    assert len(quadratic) == 5 and len(quartic) == 14 and set(quadratic) < set(quartic)
    assert Term((0, 0), "one", (0, 0), (0, 4)) in quartic
    with pytest.raises(ValueError, match="position_degree"):
        polynomial_terms(2, 0, position_degree=5)
    library = TermLibrary([Term((2, 0), "one", (0, 0)), Term((0, 0), "one", (0, 0), (0, 4))])
    payload = TermModel(library, torch.tensor([1.5, -2.0])).to_payload()
    assert TermModel.from_payload(json.loads(json.dumps(payload))).library.columns == library.columns
    payload["terms"][1]["position"] = [1, 4]
    with pytest.raises(SnapshotError, match="position"):
        TermModel.from_payload(payload)


def test_cross_validation_reports_the_supports_it_cannot_tell_apart():
    """A hardening spring fitted with only quadratic polynomials: stand-ins fit the visited
    states, supports tie within one standard error (on these 5 s: 8), and they disagree with
    each other outside the data; with the quartic in the candidates the supports that tie with
    the exact one (supersets of it) agree with it there."""
    from syrenets_ros.tools.streams import Plant

    plant = Plant(stiffness=(0.0, 10.0), hardening=(0.0, 8.0))
    stream = simulate_structure(5.0, stiffness=plant.stiffness, hardening=plant.hardening)
    base = TermLibrary.grammar(2, dissipation=True)
    wide = _states(500, 8, 2.5)

    def spread(model):
        reference = model.torque(*wide)
        return max((float((e.torque(*wide) - reference).abs().max()) for e in model.fit_report["equivalent"]),
                   default=0.0)

    stand_in = regression.fit_integral(base.extended(polynomial_terms(2, 0)), stream.stamp, stream.q, stream.qd,
                                       stream.qdd, stream.tau)
    exact = regression.fit_integral(base.extended(polynomial_terms(2, 0, position_degree=4)), stream.stamp,
                                    stream.q, stream.qd, stream.qdd, stream.tau)
    assert set(exact.terms) == set(plant.true_terms().terms)
    assert exact.fit_report["equivalent"], "supersets of the truth tie on clean data"
    assert spread(stand_in) > 1e-2 and spread(exact) < 1e-6


def test_expression_terms_multiply_out_round_and_drop_what_has_no_term_form():
    """Products of trig factors become sums and differences of frequencies, a phase proposes
    cos and sin, near-integer frequencies round; pieces past the Term bounds or of no Term
    form (a trig function of q̇ or of a product, frequency 2.5, 9 > MAX_FREQUENCY, q̇1⁵)
    are dropped, and so are constants."""
    q1, q2, qd1 = sympy.symbols("q1 q2 qd1")
    expr = (3 * qd1 ** 2 * sympy.cos(q1) * sympy.cos(2.03 * q2 + 0.3) + sympy.sin(qd1) + sympy.cos(q1 * q2)
            + sympy.cos(2.5 * q1) + sympy.cos(9 * q2) + qd1 ** 5 + 7)
    both = {Term((2, 0), f, angle) for f in ("cos", "sin") for angle in ((1, 2), (1, -2))}
    assert set(regression.expression_terms(expr, 2)) == both
    assert regression.expression_terms(sympy.sin(qd1) + 7, 2) == []
