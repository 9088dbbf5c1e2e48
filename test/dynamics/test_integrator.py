"""Variational integrator (SPEC §4) on the true double-pendulum Lagrangian: order, agreement
with PyBullet, energy/momentum behaviour, forcing, and early stop on Newton failure."""

from __future__ import annotations

import functools
import math
import re

import pytest
import torch

from syrenets_ros.dynamics import euler_lagrange as el
from syrenets_ros.dynamics import integrator as vi
from syrenets_ros.dynamics import pendulum
from syrenets_ros.plant.simulator import Simulator

PARAMS = pendulum.PendulumParams()
Q0 = torch.tensor([1.0, -0.5], dtype=torch.float64)
QD0 = torch.zeros(2, dtype=torch.float64)


def _true_lagrangian(params: pendulum.PendulumParams = PARAMS):
    return lambda q, qd: pendulum.lagrangian(q, qd, params)


@functools.cache
def _reference(horizon: float, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Fine-step RK4 from (Q0, QD0) on the closed-form dynamics (independent of autograd)."""
    h = horizon / steps
    q, qd = Q0.clone(), QD0.clone()

    def acc(a, b):
        return pendulum.forward_dynamics(a, b, torch.zeros_like(b), PARAMS)

    for _ in range(steps):
        k1q, k1v = qd, acc(q, qd)
        k2q, k2v = qd + 0.5 * h * k1v, acc(q + 0.5 * h * k1q, qd + 0.5 * h * k1v)
        k3q, k3v = qd + 0.5 * h * k2v, acc(q + 0.5 * h * k2q, qd + 0.5 * h * k2v)
        k4q, k4v = qd + h * k3v, acc(q + h * k3q, qd + h * k3v)
        q = q + h / 6 * (k1q + 2 * k2q + 2 * k3q + k4q)
        qd = qd + h / 6 * (k1v + 2 * k2v + 2 * k3v + k4v)
    return q, qd


def _relative_energy_error(L, rollout: vi.Rollout) -> torch.Tensor:
    """(B, T) |E_k − E_0| / |E_0| over each trajectory."""
    batch, points, n = rollout.q.shape
    energy = el.energy(L, rollout.q.reshape(-1, n), rollout.qd.reshape(-1, n)).reshape(batch, points)
    return ((energy - energy[:, :1]) / energy[:, :1].abs()).abs()


@pytest.mark.parametrize("rule", ["midpoint", "trapezoid"])
def test_variational_step_is_second_order_against_fine_rk4(rule):
    horizon = 0.5
    q_ref, qd_ref = _reference(horizon, 2000)
    errors = []
    for steps in (50, 100):
        rollout = vi.variational_rollout(_true_lagrangian(), Q0, QD0, horizon / steps, steps, rule=rule)
        assert bool(rollout.complete.all())
        q_err = (rollout.q[0, -1] - q_ref).abs().max()
        qd_err = (rollout.qd[0, -1] - qd_ref).abs().max()
        errors.append((float(q_err), float(qd_err)))
    (q_h, qd_h), (q_h2, qd_h2) = errors
    assert q_h < 1e-3 and qd_h < 1e-2
    assert 3.3 < q_h / q_h2 < 4.7, errors
    assert 3.3 < qd_h / qd_h2 < 4.7, errors


def test_short_forecast_matches_pybullet_passive_motion():
    sim_dt, h, horizon = 2.5e-4, 0.01, 0.6
    sim_per_step = round(h / sim_dt)
    with Simulator(PARAMS, time_step=sim_dt, q0=Q0.tolist(), qd0=QD0.tolist()) as sim:
        states = [sim.state()]
        for k in range(round(horizon / sim_dt)):
            sim.step((0.0, 0.0))
            if (k + 1) % sim_per_step == 0:
                states.append(sim.state())
    sim_q = torch.tensor([s[0] for s in states], dtype=torch.float64)
    sim_qd = torch.tensor([s[1] for s in states], dtype=torch.float64)
    rollout = vi.variational_rollout(_true_lagrangian(), Q0, QD0, h, round(horizon / h))
    assert sim_q.shape == rollout.q[0].shape
    assert float((sim_q - Q0).abs().max()) > 0.5  # it really moved
    assert float((rollout.q[0] - sim_q).abs().max()) < 2e-3  # measured 4e-4
    assert float((rollout.qd[0] - sim_qd).abs().max()) < 2e-3  # measured 2e-4


def test_energy_error_bounded_for_variational_while_explicit_euler_grows():
    L, h, steps = _true_lagrangian(), 0.02, 500
    q0 = torch.stack((Q0, torch.tensor([0.4, 0.8], dtype=torch.float64)))
    qd0 = torch.zeros(2, 2, dtype=torch.float64)
    variational = _relative_energy_error(L, vi.variational_rollout(L, q0, qd0, h, steps))
    euler = _relative_energy_error(L, vi.explicit_euler_rollout(L, q0, qd0, h, steps))
    first_half, second_half = variational[:, : steps // 2].amax(1), variational[:, steps // 2 :].amax(1)
    assert bool((variational.amax(1) < 2e-3).all()), variational.amax(1)
    assert bool((second_half < 2.0 * first_half).all())  # bounded: no secular growth
    assert bool((euler[:, -1] > 20.0 * variational.amax(1)).all()), euler[:, -1]
    assert bool((euler[:, steps // 2] < euler[:, -1]).all())  # Euler keeps drifting


def test_momentum_of_cyclic_coordinate_is_conserved_without_gravity():
    weightless = PARAMS.with_changes(g=0.0)
    q0 = torch.tensor([[0.3, 1.1], [2.0, -0.7]], dtype=torch.float64)
    qd0 = torch.tensor([[1.5, -2.0], [-0.5, 3.0]], dtype=torch.float64)
    rollout = vi.variational_rollout(_true_lagrangian(weightless), q0, qd0, 0.01, 300)
    assert rollout.p is not None and bool(rollout.complete.all())
    p1 = rollout.p[:, :, 0]
    assert float((p1 - p1[:, :1]).abs().max()) < 1e-10 * float(p1.abs().max() + 1.0)
    # The conjugate momentum of q2 (not cyclic) does change: the check has teeth.
    p2 = rollout.p[:, :, 1]
    assert float((p2 - p2[:, :1]).abs().max()) > 1e-2
    # and with gravity, q1 is no longer cyclic either.
    with_gravity = vi.variational_rollout(_true_lagrangian(), q0, qd0, 0.01, 300)
    assert float((with_gravity.p[:, :, 0] - with_gravity.p[:, :1, 0]).abs().max()) > 1e-2


def test_constant_torque_changes_energy_by_the_work_done():
    """For a torque held over the horizon the exact work is τ·(q_N − q_0); the discrete energy
    change must agree to O(h²)."""
    L, horizon = _true_lagrangian(), 0.8
    tau = torch.tensor([6.0, -3.0], dtype=torch.float64)
    mismatch, work = [], []
    for steps in (40, 80):
        rollout = vi.variational_rollout(L, Q0, QD0, horizon / steps, steps, tau=tau)
        energy = el.energy(L, rollout.q[0, [0, -1]], rollout.qd[0, [0, -1]])
        done = float(tau @ (rollout.q[0, -1] - rollout.q[0, 0]))
        mismatch.append(abs(float(energy[1] - energy[0]) - done))
        work.append(done)
    assert abs(work[1]) > 1.0
    assert mismatch[1] < 1e-3 * abs(work[1])
    assert 3.0 < mismatch[0] / mismatch[1] < 5.0, mismatch
    passive = vi.variational_rollout(L, Q0, QD0, horizon / 80, 80)
    assert float((passive.q[0, -1] - rollout.q[0, -1]).abs().max()) > 1e-2  # the torque acted


def test_newton_failure_ends_early_with_a_finite_valid_prefix():
    rollout = vi.variational_rollout(_true_lagrangian(), Q0, QD0, 0.01, 20, tol=1e-300, max_iter=1)
    assert int(rollout.converged_steps[0]) == 0 and int(rollout.valid_length[0]) == 1
    assert "did not converge" in rollout.failures[0]
    assert bool(torch.isnan(rollout.q[0, 1:]).all())
    t, q, qd = rollout.valid_prefix(0)
    assert t.shape == (1,) and torch.equal(q[0], Q0) and bool(torch.isfinite(qd).all())


@pytest.mark.parametrize("make", [vi.variational_rollout, vi.explicit_euler_rollout, vi.rk4_rollout])
def test_nan_producing_lagrangian_stops_only_the_affected_trajectory(make):
    """L turns NaN for q1 > 1.2: the fast-rising trajectory stops there, the other finishes."""

    def lagrangian(q, qd):
        return pendulum.lagrangian(q, qd, PARAMS) + 1e-3 * torch.sqrt(1.2 - q[0])

    q0 = torch.tensor([[1.0, -0.5], [-0.5, 0.2]], dtype=torch.float64)
    qd0 = torch.tensor([[2.0, 0.0], [0.0, 0.0]], dtype=torch.float64)
    steps = 30
    rollout = make(lagrangian, q0, qd0, 0.01, steps, accelerate="eager")
    stopped = int(rollout.converged_steps[0])
    assert 0 < stopped < steps and rollout.failures[0]
    assert int(rollout.valid_length[0]) == stopped + 1
    assert bool(rollout.complete[1]) and rollout.failures[1] == ""
    _, q, qd = rollout.valid_prefix(0)
    assert q.shape[0] == stopped + 1 and bool(torch.isfinite(q).all() and torch.isfinite(qd).all())
    assert bool(torch.isnan(rollout.q[0, stopped + 1 :]).all())
    assert bool(torch.isfinite(rollout.q[1]).all())


def _integrators(L, h):
    """Every scheme, each through the one shared rollout loop."""
    return [vi.VariationalIntegrator(L, h, rule, accelerate="eager") for rule in vi.RULES] + [
        vi.ExplicitIntegrator(L, h, scheme, accelerate="eager") for scheme in ("euler", "rk4")
    ]


def test_every_scheme_reports_progress_and_failures_alike():
    """Progress after every step taken, none after the last trajectory stopped; a failure names
    its step and time the same way in every scheme."""

    def lagrangian(q, qd):
        return pendulum.lagrangian(q, qd, PARAMS) + 1e-3 * torch.sqrt(1.2 - q[0])

    h, steps = 0.01, 30
    q0 = torch.tensor([[1.0, -0.5], [-0.5, 0.2]], dtype=torch.float64)
    qd0 = torch.tensor([[2.0, 0.0], [0.0, 0.0]], dtype=torch.float64)
    for integrator in _integrators(lagrangian, h):
        calls = []
        rollout = integrator.rollout(q0, qd0, steps, progress=lambda done, alive: calls.append((done, alive)))
        stopped = int(rollout.converged_steps[0])
        assert 0 < stopped < steps, integrator.name
        assert calls == [(k + 1, 2 if k < stopped else 1) for k in range(steps)], integrator.name
        match = re.fullmatch(r"(.+) at step (\d+) \(t = (\S+) s\)", rollout.failures[0])
        assert match is not None, rollout.failures
        assert match[1] == integrator.step_failure and int(match[2]) == stopped
        assert float(match[3]) == pytest.approx(stopped * h)
        assert rollout.scheme == integrator.name and rollout.failures[1] == ""

        alone = []
        single = integrator.rollout(q0[:1], qd0[:1], steps, progress=lambda done, alive: alone.append((done, alive)))
        assert alone == [(k + 1, 1) for k in range(stopped)] + [(stopped + 1, 0)], integrator.name
        assert single.failures == rollout.failures[:1]


def test_a_start_state_without_finite_momentum_never_moves():
    def lagrangian(q, qd):  # ∂L/∂q̇ is infinite at q̇₁ = 0
        return pendulum.lagrangian(q, qd, PARAMS) + torch.abs(qd[0]) ** 0.5

    q0 = torch.tensor([[1.0, -0.5], [0.3, 0.1]], dtype=torch.float64)
    qd0 = torch.tensor([[0.0, 0.0], [1.0, 0.0]], dtype=torch.float64)
    calls = []
    rollout = vi.VariationalIntegrator(lagrangian, 0.01, accelerate="eager").rollout(
        q0, qd0, 5, progress=lambda done, alive: calls.append((done, alive)))
    assert rollout.failures[0] == vi.VariationalIntegrator.start_failure
    assert int(rollout.valid_length[0]) == 1 and bool(torch.isnan(rollout.q[0, 1:]).all())
    assert calls[0] == (1, 1) and int(rollout.converged_steps[1]) > 0


def test_trapezoid_rule_reduces_to_velocity_verlet_for_constant_mass():
    """SPEC §4: for L = ½q̇ᵀMq̇ − U(q) with constant M, the trapezoid scheme is Störmer–Verlet."""
    mass = torch.tensor([[2.0, 0.3], [0.3, 1.0]], dtype=torch.float64)

    def potential(q):
        return 5.0 * (1 - torch.cos(q[..., 0])) + 2.0 * q[..., 1] ** 4

    def lagrangian(q, qd):
        return 0.5 * qd @ mass @ qd - potential(q)

    def force(q):
        return -torch.func.grad(lambda x: potential(x))(q)

    h, steps = 0.05, 40
    rollout = vi.variational_rollout(lagrangian, Q0, torch.tensor([0.2, 1.0], dtype=torch.float64), h, steps, rule="trapezoid")
    q, qd = Q0.clone(), torch.tensor([0.2, 1.0], dtype=torch.float64)
    inverse = torch.linalg.inv(mass)
    for _ in range(steps):
        qd_half = qd + 0.5 * h * inverse @ force(q)
        q = q + h * qd_half
        qd = qd_half + 0.5 * h * inverse @ force(q)
    assert torch.allclose(rollout.q[0, -1], q, rtol=0, atol=1e-10)
    assert torch.allclose(rollout.qd[0, -1], qd, rtol=0, atol=1e-9)


def test_traced_and_eager_steps_agree():
    L = _true_lagrangian()
    q0 = torch.tensor([[1.0, -0.5], [0.1, 2.0]], dtype=torch.float64)
    qd0 = torch.tensor([[0.0, 0.0], [1.0, -1.0]], dtype=torch.float64)
    for make in (vi.variational_rollout, vi.explicit_euler_rollout):
        traced = make(L, q0, qd0, 0.01, 8, accelerate="trace")
        eager = make(L, q0, qd0, 0.01, 8, accelerate="eager")
        assert torch.allclose(traced.q, eager.q, rtol=0, atol=1e-12)
        assert torch.allclose(traced.qd, eager.qd, rtol=0, atol=1e-11)


def test_a_freed_integrator_leaves_no_generated_source_behind():
    """torch.fx caches the source of every traced graph for good; a predictor traces one per
    model it serves (issue 23: its RSS grew ~0.5 MB/min). Once an integrator is freed, so is
    its graphs' source."""
    import gc
    import linecache

    from torch.fx import graph_module

    def forecast(mass: float) -> None:
        L = _true_lagrangian(pendulum.PendulumParams(m1=mass))
        vi.VariationalIntegrator(L, 0.01).rollout(Q0[None], QD0[None], 3)

    forecast(1.0)
    gc.collect()
    sizes = len(graph_module._loader.eval_cache), len(linecache.cache)
    for mass in (2.0, 3.0, 4.0):
        forecast(mass)
    gc.collect()
    assert (len(graph_module._loader.eval_cache), len(linecache.cache)) == sizes


def test_rk4_baseline_is_fourth_order_on_the_same_lagrangian():
    horizon = 0.5
    q_ref, _ = _reference(horizon, 2000)
    errors = [float((vi.rk4_rollout(_true_lagrangian(), Q0, QD0, horizon / s, s, accelerate="eager").q[0, -1] - q_ref).abs().max()) for s in (10, 20)]
    assert 12.0 < errors[0] / errors[1] < 20.0, errors


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(h=0.0), "time step"),
        (dict(h=math.nan), "time step"),
        (dict(steps=-1), "steps"),
        (dict(rule="simpson"), "rule"),
        (dict(q0=torch.tensor([math.nan, 0.0])), "finite"),
        (dict(q0=torch.zeros(3)), "shape"),
        (dict(tau=torch.zeros(5)), "tau"),
        (dict(tau=torch.tensor([math.inf, 0.0])), "tau"),
        (dict(max_iter=0), "max_iter"),
        (dict(accelerate="jit"), "accelerate"),
    ],
)
def test_bad_input_is_a_clear_error(kwargs, message):
    args = dict(L=_true_lagrangian(), q0=Q0, qd0=QD0, h=0.01, steps=3) | kwargs
    with pytest.raises(ValueError, match=message):
        vi.variational_rollout(**args)


def test_learned_term_model_forecasts_like_the_true_lagrangian_when_traced():
    """A model from the learner (distilled terms, fitted to exact torques) through the traced
    path: its forecast must match the true L's, which it equals up to the fit's round-off."""
    from syrenets_ros.learning import regression, terms
    from syrenets_ros.learning.training import uniform_dataset

    data = uniform_dataset(500, seed=3)
    model = regression.fit_terms(terms.TermLibrary.grammar(2), data.q, data.qd, data.qdd, data.tau)
    learned = vi.variational_rollout(model.lagrangian_fn(), Q0, QD0, 0.01, 60, accelerate="trace")
    truth = vi.variational_rollout(_true_lagrangian(), Q0, QD0, 0.01, 60, accelerate="trace")
    assert bool(learned.complete.all())
    assert float((learned.q - truth.q).abs().max()) < 1e-8
    assert float((learned.q[0, -1] - Q0).abs().max()) > 0.1


def test_explicit_acceleration_is_euler_lagranges_forward_dynamics():
    from syrenets_ros.learning import terms

    gen = torch.Generator().manual_seed(5)
    q, qd, tau = ((torch.rand(64, 2, generator=gen, dtype=torch.float64) * 2 - 1) * 3 for _ in range(3))
    for L in (_true_lagrangian(), terms.true_pendulum_terms(PARAMS).lagrangian_fn()):
        ours = torch.func.vmap(lambda a, b, c: el.acceleration(L, a, b, c))(q, qd, tau)
        assert torch.allclose(ours, el.forward_dynamics(L, q, qd, tau), rtol=0, atol=1e-10)
    assert torch.allclose(ours, pendulum.forward_dynamics(q, qd, tau, PARAMS), rtol=0, atol=1e-10)
