"""Integral (momentum-form) rows: exact on clean simulator data, unbiased under sensor noise."""

import dataclasses
import math

import pytest
import torch

from syrenets_ros.tools.streams import DT, REALISTIC_NOISE, sampled_motion, simulate
from syrenets_ros.dynamics import pendulum
from syrenets_ros.learning import integral
from syrenets_ros.learning.regression import choose_rows, fit_integral
from syrenets_ros.learning.terms import TermLibrary, polynomial_terms, true_pendulum_terms

PARAMS = pendulum.PendulumParams()
TRUTH = true_pendulum_terms(PARAMS)


@pytest.fixture(scope="module")
def clean():
    return simulate(6.0)


@pytest.fixture(scope="module")
def noisy():
    return simulate(10.0, noise=REALISTIC_NOISE)


def _rows(library, stream, window=100, stride=25):
    starts = integral.window_starts(stream.stamp, window, stride, DT)
    return (integral.integrate(library.el_images(stream.q, stream.qd, stream.qdd), starts, window),
            integral.integrate(stream.tau, starts, window))


def _max_relative_error(model) -> float:
    return max(abs(model.coefficient_of(t) / c - 1.0) for t, c in zip(TRUTH.terms, TRUTH.coefficients.tolist()))


def test_integral_rows_are_exact_on_clean_simulator_data(clean):
    matrix, target = _rows(TRUTH.library, clean)
    residual = matrix @ TRUTH.coefficients - target
    assert residual.abs().max() <= 1e-9 * target.abs().max()
    # ... and carry the full dynamics: a 10 % heavier second link is far off.
    wrong = _rows(true_pendulum_terms(PARAMS.with_changes(m2=1.1)).library, clean)
    assert (wrong[0] @ true_pendulum_terms(PARAMS.with_changes(m2=1.1)).coefficients - target).abs().max() > 1e-2


def test_window_starts_never_span_a_gap():
    stamps = torch.cat((torch.arange(250), 300 + torch.arange(250))).to(torch.float64) * DT
    starts = integral.window_starts(stamps, 100, 25, DT)
    assert starts.tolist() == [0, 25, 50, 75, 100, 125, 150, 250, 275, 300, 325, 350, 375, 400]


def test_clean_refit_selects_exactly_the_true_terms(clean):
    model = fit_integral(TermLibrary.grammar(2, dissipation=True), clean.stamp, clean.q, clean.qd, clean.qdd,
                         clean.tau)
    assert set(model.library.columns) == set(TRUTH.terms)
    assert _max_relative_error(model) < 1e-9
    torque_error = model.torque(clean.q, clean.qd, clean.qdd) - clean.tau
    assert torque_error.abs().max() <= 1e-9


def test_noisy_stream_yields_the_true_terms_where_forward_differences_fail(noisy):
    """Realistic sensor noise (σ_q 1e-4, σ_q̇ 1e-3, σ_τ 0.1): the integral refit selects exactly
    the true terms within 1 %, with honest standard errors; least squares on the same samples
    with forward-difference q̈, even told the true terms, is biased far beyond that."""
    model = fit_integral(TermLibrary.grammar(2, dissipation=True), noisy.stamp, noisy.q, noisy.qd, noisy.qdd,
                         noisy.tau)
    assert set(model.library.columns) == set(TRUTH.terms)
    assert _max_relative_error(model) < 0.01
    z = [(model.coefficient_of(t) - c) / float(model.stderr[model.library.index(t)])
         for t, c in zip(TRUTH.terms, TRUTH.coefficients.tolist())]
    assert max(abs(v) for v in z) < 5.0, f"standard errors are not honest: z = {z}"
    assert "(±" in model.equation()

    images = TRUTH.library.el_images(noisy.q, noisy.qd, noisy.qdd).reshape(-1, len(TRUTH.library))
    naive = torch.linalg.lstsq(images, noisy.tau.reshape(-1, 1)).solution[:, 0]
    naive_error = ((naive - TRUTH.coefficients) / TRUTH.coefficients).abs().max()
    assert naive_error > 0.1


def test_noisy_refit_serves_accurate_torques(noisy):
    model = fit_integral(TermLibrary.grammar(2, dissipation=True), noisy.stamp, noisy.q, noisy.qd, noisy.qdd,
                         noisy.tau)
    truth = pendulum.inverse_dynamics(noisy.clean_q, noisy.clean_qd, noisy.clean_qdd, PARAMS)
    rmse = float((model.torque(noisy.clean_q, noisy.clean_qd, noisy.clean_qdd) - truth).square().mean().sqrt())
    assert rmse < 0.05 * float(truth.square().mean().sqrt()) and math.isfinite(rmse)


def _scaled_truth(scale: torch.Tensor):
    return lambda q, qd: scale * pendulum.lagrangian(q, qd, PARAMS)


def test_training_rows_vanish_for_the_true_lagrangian_on_clean_data(clean):
    """The network's training rows (its Euler–Lagrange residual summed over short windows)
    are exact on the simulator's data: zero for the true L."""
    count = 2000
    rows = integral.torque_rows(_scaled_truth(torch.tensor(1.0, dtype=torch.float64)), clean.q[:count],
                                clean.qd[:count], clean.qdd[:count], clean.tau[:count], 10)
    assert rows.shape == (200, 2)
    assert float(rows.detach().abs().max()) < 1e-9 * float(clean.tau.abs().max())
    with pytest.raises(ValueError):
        integral.torque_rows(_scaled_truth(torch.tensor(1.0)), clean.q[:25], clean.qd[:25], clean.qdd[:25],
                             clean.tau[:25], 10)


def test_training_rows_point_the_gradient_to_the_true_scale_under_noise(noisy):
    """Under realistic sensor noise, the gradient of the integral-row MSE with respect to a
    scale θ of L points to θ = 1; the per-sample torque MSE (forward-difference q̈) pulls
    towards a much smaller L (regressor noise biases least squares towards zero)."""
    count = 2000
    q, qd, qdd, tau = noisy.q[:count], noisy.qd[:count], noisy.qdd[:count], noisy.tau[:count]

    def gradients(scale_value: float) -> tuple[float, float]:
        scale = torch.tensor(scale_value, dtype=torch.float64, requires_grad=True)
        rows = integral.torque_rows(_scaled_truth(scale), q, qd, qdd, tau, 10)
        (integral_grad,) = torch.autograd.grad(rows.square().mean(), scale)
        # A window of one sample is the per-sample residual.
        per_sample = integral.torque_rows(_scaled_truth(scale), q, qd, qdd, tau, 1).square().mean()
        (sample_grad,) = torch.autograd.grad(per_sample, scale)
        return float(integral_grad), float(sample_grad)

    below, above = gradients(0.97), gradients(1.03)
    assert below[0] < 0 < above[0], "integral rows: descent moves θ towards 1 from both sides"
    assert below[1] > 0, "per sample: at θ = 0.97 descent still shrinks L (biased)"


def test_direct_and_convolved_windows_agree():
    """Non-overlapping windows are weighed directly, dense ones by a convolution: one map."""
    generator = torch.Generator().manual_seed(0)
    rows = torch.randn(1000, 2, 3, generator=generator, dtype=torch.float64)
    sparse, dense = torch.arange(0, 901, 100), torch.arange(0, 901, 10)
    assert torch.allclose(integral.integrate(rows, sparse, 100), integral.integrate(rows, dense, 100)[::10],
                          rtol=0, atol=1e-14)


def test_occams_razor_keeps_the_true_terms_where_greedy_selection_takes_a_stand_in(monkeypatch):
    """The sim node's default reference (0.1 Hz: half the excitation per second of the other
    tests) at realistic noise, 5 s: the data cannot tell q̇1q̇2 from q̇1q̇2·cos 2q2 apart, and
    greedy selection takes the stand-in, newtons off outside the visited states. Among the
    supports within one standard error of the best, Occam's razor keeps the simplest: the
    true terms."""
    stream = simulate(5.0, PARAMS, noise=REALISTIC_NOISE, seed=1, base_frequency=0.1)
    data = (stream.stamp, stream.q, stream.qd, stream.qdd, stream.tau)
    generator = torch.Generator().manual_seed(7)
    wide = [(torch.rand(2000, 2, generator=generator, dtype=torch.float64) * 2 - 1) * s for s in (2.5, 4.0, 4.0)]

    def wide_error(model) -> float:
        return float((model.torque(*wide) - pendulum.inverse_dynamics(*wide, PARAMS)).square().mean().sqrt())

    truth = set(TRUTH.terms)
    occam = fit_integral(TermLibrary.grammar(2), *data)
    assert set(occam.terms) == truth
    assert wide_error(occam) < 0.5

    monkeypatch.setattr(integral, "_simplify", lambda weighted, aim, scaled, support, *rest: support)
    greedy = fit_integral(TermLibrary.grammar(2), *data)
    assert set(greedy.terms) != truth
    assert wide_error(greedy) > 10 * wide_error(occam)


# --- row forms: which rows each kind of record obeys -----------------------------------------

def _relative_residual(rows: integral.RowForm, model, stream) -> float:
    starts = rows.starts(stream.stamp)
    residual = rows.predicted(model, stream.stamp, stream.q, stream.qd, stream.qdd, starts)
    target = rows.target(stream.stamp, stream.tau, starts)
    return float((residual - target).norm() / target.norm())


def _without_acceleration(stream):
    """The record as a bag gives it: no q̈, so the forward difference of q̇ (within a segment)."""
    forward = stream.qdd.clone()
    forward[:-1] = (stream.qd[1:] - stream.qd[:-1]) / (stream.stamp[1:] - stream.stamp[:-1])[:, None]
    return dataclasses.replace(stream, qdd=forward)


@pytest.fixture(scope="module")
def sampled():
    """Continuous motion sampled at 25 Hz in short segments, with exact derivatives or the
    numpy.gradient ones public data sets carry, as a bag gives it (no q̈)."""
    return {kind: _without_acceleration(sampled_motion(25.0, (4.0, 5.0, 6.0), derivatives=kind))
            for kind in ("exact", "gradient")}


def test_weak_images_split_the_el_images_into_momentum_and_static_force():
    library = TermLibrary.grammar(2, dissipation=True).extended(polynomial_terms(2))
    generator = torch.Generator().manual_seed(0)
    q, qd, qdd = (torch.randn(50, 2, generator=generator, dtype=torch.float64) for _ in range(3))
    _, static = library.weak_images(q, qd)
    _, momentum_rate = torch.func.jvp(lambda a, b: library.weak_images(a, b)[0], (q, qd), (qd, qdd))
    assert torch.allclose(momentum_rate + static, library.el_images(q, qd, qdd), rtol=0, atol=1e-12)


def test_each_row_form_is_exact_on_the_records_it_models(clean, sampled):
    """Simulator steps obey the acceleration form, numpy.gradient data the central form, and
    sampled continuous motion the weak form — each to rounding or quadrature error, where the
    other forms are off by their discretisation error."""
    assert _relative_residual(integral.RowForm("acceleration"), TRUTH, clean) < 1e-12
    assert _relative_residual(integral.RowForm("weak"), TRUTH, clean) > 1e-5
    gradient, exact = sampled["gradient"], sampled["exact"]
    assert _relative_residual(integral.RowForm("central", 16, 1), TRUTH, gradient) < 1e-12
    assert _relative_residual(integral.RowForm("acceleration", 16, 1), TRUTH, gradient) > 1e-3
    assert _relative_residual(integral.RowForm("weak", 16, 1), TRUTH, exact) < 1e-5  # quadrature, 25 Hz
    assert _relative_residual(integral.RowForm("central", 16, 1), TRUTH, exact) > 1e-4


def test_weak_rows_of_any_lagrangian_model_match_the_closed_form(sampled):
    """The weak form of a model without closed-form images (the network) comes from autograd
    on its Lagrangian and dissipation; on a term model both paths agree."""
    stream = sampled["exact"]
    model = true_pendulum_terms(PARAMS, pendulum.JointElements(damping=(0.3, 0.1), friction=(0.2, 0.0)))

    class Opaque:  # only what every model offers
        def lagrangian_fn(self):
            return model.lagrangian

        def dissipation_fn(self):
            return model.dissipative_force

    rows = integral.RowForm("weak", 16, 1)
    starts = rows.starts(stream.stamp)
    args = (stream.stamp, stream.q, stream.qd, stream.qdd, starts)
    assert torch.allclose(rows.predicted(Opaque(), *args), rows.predicted(model, *args), rtol=0, atol=1e-12)


def test_the_chosen_form_is_the_one_the_record_obeys(clean, sampled):
    library = TermLibrary.grammar(2, dissipation=True)

    def chosen(stream, window):
        return choose_rows(library, stream.stamp, stream.q, stream.qd, stream.qdd, stream.tau, window)[0]

    assert chosen(clean, 100) == "acceleration"
    assert chosen(sampled["exact"], 16) == "weak"
    assert chosen(sampled["gradient"], 16) == "central"
    table = sampled_motion(25.0, (4.0, 5.0, 6.0), derivatives="gradient")  # a table's own q̈, exact here
    assert chosen(table, 16) == "acceleration"


def test_a_short_weakly_exciting_clean_record_gives_the_true_terms():
    """4 s of two sinusoids: greedy forward selection never reaches the true terms in 40 steps
    (measured on one CPU), but the whole library explains the rows to rounding, so elimination
    from the whole library is a candidate path too, and its sparsest exact support wins."""
    t = torch.arange(0, 4.0, 1e-3, dtype=torch.float64)[:, None]
    q = torch.cat((torch.sin(1.3 * t), 0.8 * torch.cos(2.1 * t + 0.4)), 1)
    qd = torch.cat((1.3 * torch.cos(1.3 * t), -1.68 * torch.sin(2.1 * t + 0.4)), 1)
    qdd = (qd[1:] - qd[:-1]) / 1e-3  # the forward difference the torques were computed with
    tau = pendulum.inverse_dynamics(q[:-1], qd[:-1], qdd, PARAMS)
    model = fit_integral(TermLibrary.grammar(2, dissipation=True), t[:-1, 0], q[:-1], qd[:-1], qdd, tau,
                         rows=integral.RowForm("acceleration", 100, 25), simplify=False)
    assert set(model.library.columns) == set(TRUTH.terms)
    assert _max_relative_error(model) < 1e-9
