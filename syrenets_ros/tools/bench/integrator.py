"""``syrenets-ros bench integrator``: energy drift of variational vs explicit rollouts.

For the true Lagrangian and a trained model, each scheme (variational midpoint, explicit
Euler, RK4) rolls a handful of initial states forward ``--steps`` steps at h = 1 ms and 10 ms
(batched: one step advances all initial states). Reported per (model, h, scheme): the maximum
relative energy error max_k |E_k − E_0| / |E_0| with E = q̇·∂L/∂q̇ − L of *that* model
(``euler_lagrange.energy``), its growth (max over the last tenth of the run / max over the
first tenth: bounded ≈ 1, linear drift ≈ 10; meaningful only for runs of many periods), how
many steps each trajectory completed, and the honest wall time per batched step (setup —
tracing/compiling — timed separately). Also the predictor's case: a 2 s forecast at
h = 10 ms of one trajectory.

The trained model is ``--model FILE`` (a snapshot, decoded safely) or, by default, a sparse
term model fitted in-bench (``regression.fit_terms``) to torques of random states with 1 %
noise, so its coefficients are close to but not exactly the true ones.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

from syrenets_ros.dynamics import euler_lagrange

from syrenets_ros.dynamics import pendulum
from syrenets_ros.dynamics.euler_lagrange import LagrangianFn
from syrenets_ros.dynamics.integrator import ACCELERATIONS, ExplicitIntegrator, Rollout, VariationalIntegrator

INITIAL_STATES: tuple[tuple[tuple[float, float], tuple[float, float]], ...] = (
    ((1.0, -0.5), (0.0, 0.0)),  # moderate energy, released from rest
    ((0.4, 0.8), (0.5, -1.0)),  # lower, moving start
)
SCHEMES = ("variational", "euler", "rk4")
PROGRESS_LINES = 10  # per rollout
FORECAST_HORIZON_S, FORECAST_H = 2.0, 0.01
ENERGY_CHUNK = 65_536


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--steps", type=int, default=100_000, help="steps per rollout (default 100000)")
    parser.add_argument("--step-sizes", type=float, nargs="+", default=[1e-3, 1e-2], metavar="H",
                        help="time steps in seconds (default 0.001 0.01)")
    parser.add_argument("--model", type=Path, default=None,
                        help="snapshot file of a trained model (default: fit a term model in-bench)")
    parser.add_argument("--accelerate", choices=ACCELERATIONS, default="compile",
                        help="how the per-step functions run (default compile: TorchInductor)")
    parser.add_argument("--forecast-modes", choices=ACCELERATIONS, nargs="*", default=["trace", "compile"],
                        help="accelerations to time the 2 s predictor forecast with (none: skip)")
    parser.add_argument("--json", type=Path, default=Path("runs/bench_integrator.json"), help="output JSON path")


def _fitted_term_model() -> tuple[str, LagrangianFn, dict[str, Any]]:
    """A term model fitted to noisy torque data of the true pendulum, in well under a second."""
    from syrenets_ros.learning import regression, terms
    from syrenets_ros.learning.training import uniform_dataset

    data = uniform_dataset(2000, seed=0)
    noise = torch.randn(data.tau.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    tau = data.tau + 0.01 * data.tau.std() * noise
    model = regression.fit_terms(terms.TermLibrary.grammar(2), data.q, data.qd, data.qdd, tau)
    info = {"source": "regression.fit_terms on 2000 uniform samples, 1% torque noise", "equation": model.equation()}
    return "fitted terms", model.lagrangian_fn(), info


def _snapshot_model(path: Path) -> tuple[str, LagrangianFn, dict[str, Any]]:
    from syrenets_ros.online import snapshot

    decoded = snapshot.decode_model(path.read_bytes())
    model = decoded.model
    info = {"source": str(path), "kind": model.kind, "model_version": decoded.model_version, "equation": model.equation()}
    return f"{model.kind} v{decoded.model_version}", model.lagrangian_fn(), info


def _energy_errors(L: LagrangianFn, rollout: Rollout) -> tuple[list[float], list[float]]:
    """Per trajectory, over its valid prefix: max_k |E_k − E_0| / |E_0|, and the growth ratio
    (max error over the last tenth) / (max over the first tenth): ≈ 1 for a bounded error,
    ≈ 10 for a linear drift."""
    errors, growth = [], []
    for index in range(rollout.q.shape[0]):
        _, q, qd = rollout.valid_prefix(index)
        energy = torch.cat([euler_lagrange.energy(L, a, b) for a, b in zip(q.split(ENERGY_CHUNK), qd.split(ENERGY_CHUNK))])
        relative = ((energy - energy[0]) / abs(float(energy[0]))).abs()
        tenth = max(1, relative.numel() // 10)
        errors.append(float(relative.max()))
        growth.append(float(relative[-tenth:].max() / relative[1 : tenth + 1].max().clamp_min(1e-300)))
    return errors, growth


def _roll(integrator: VariationalIntegrator | ExplicitIntegrator, q0: torch.Tensor, qd0: torch.Tensor,
          steps: int, label: str) -> tuple[Rollout, float]:
    """One timed rollout with a progress line every tenth of the way."""
    every = max(1, steps // PROGRESS_LINES)
    start = time.perf_counter()

    def progress(done: int, alive: int) -> None:
        if done % every == 0 or done == steps:
            print(f"  [{label}] {done}/{steps} steps, {time.perf_counter() - start:.1f} s, "
                  f"{alive}/{len(q0)} trajectories running", flush=True)

    rollout = integrator.rollout(q0, qd0, steps, progress=progress)
    return rollout, time.perf_counter() - start


def _integrator(L: LagrangianFn, h: float, scheme: str, accelerate: str) -> VariationalIntegrator | ExplicitIntegrator:
    if scheme == "variational":
        return VariationalIntegrator(L, h, accelerate=accelerate)
    return ExplicitIntegrator(L, h, scheme, accelerate=accelerate)


def _forecast_timing(L: LagrangianFn, accelerate: str) -> dict[str, float]:
    """The predictor's use: one trajectory, 2 s at h = 10 ms, warm integrator; median of 3."""
    integrator = VariationalIntegrator(L, FORECAST_H, accelerate=accelerate)
    q0, qd0 = torch.tensor([INITIAL_STATES[0][0]]), torch.tensor([INITIAL_STATES[0][1]])
    steps = round(FORECAST_HORIZON_S / FORECAST_H)
    start = time.perf_counter()
    integrator.rollout(q0, qd0, 1)
    setup = time.perf_counter() - start
    times = []
    for _ in range(3):
        start = time.perf_counter()
        integrator.rollout(q0, qd0, steps)
        times.append(time.perf_counter() - start)
    return {"setup_s": setup, "median_s": statistics.median(times), "min_s": min(times)}


def run(args: argparse.Namespace) -> int:
    if args.steps < 1:
        print("--steps must be ≥ 1", file=sys.stderr)
        return 2
    if any(not (math.isfinite(h) and h > 0) for h in args.step_sizes):
        print("--step-sizes must be finite and > 0", file=sys.stderr)
        return 2
    torch.set_num_threads(1)  # 2-DoF ops are tiny: thread hand-offs cost more than they save
    true_params = pendulum.PendulumParams()
    models: list[tuple[str, LagrangianFn, dict[str, Any]]] = [
        ("true L", lambda q, qd: pendulum.lagrangian(q, qd, true_params), {"source": "pendulum.lagrangian, default PendulumParams"})
    ]
    try:
        models.append(_snapshot_model(args.model) if args.model else _fitted_term_model())
    except (OSError, ValueError, ImportError, AttributeError) as exc:
        print(f"bench integrator: cannot load the trained model: {exc}", file=sys.stderr)
        return 1
    for name, _, info in models[1:]:
        print(f"trained model '{name}': {info['source']}\n  {info['equation']}", flush=True)
    q0 = torch.tensor([s[0] for s in INITIAL_STATES], dtype=torch.float64)
    qd0 = torch.tensor([s[1] for s in INITIAL_STATES], dtype=torch.float64)
    rows: list[dict[str, Any]] = []
    forecasts: list[dict[str, Any]] = []
    for name, L, _ in models:
        for h in args.step_sizes:
            for scheme in SCHEMES:
                label = f"{name} h={h * 1e3:g}ms {scheme}"
                integrator = _integrator(L, h, scheme, args.accelerate)
                start = time.perf_counter()
                integrator.rollout(q0, qd0, 1)  # trace / compile for this batch shape
                setup = time.perf_counter() - start
                print(f"  [{label}] setup ({args.accelerate}) {setup:.1f} s", flush=True)
                rollout, wall = _roll(integrator, q0, qd0, args.steps, label)
                steps_done = rollout.converged_steps.tolist()
                stats = rollout.newton_stats() if scheme == "variational" else {"mean": math.nan, "max": math.nan}
                errors, growth = _energy_errors(L, rollout)
                rows.append({
                    "model": name, "h": h, "scheme": scheme, "steps": args.steps, "batch": len(INITIAL_STATES),
                    "max_rel_energy_error": errors, "energy_error_growth": growth,
                    "completed_steps": steps_done,
                    "failures": list(rollout.failures),
                    "setup_s": setup, "wall_s": wall,
                    "wall_per_step_ms": 1e3 * wall / max(1, max(steps_done)),
                    "newton_mean": stats["mean"], "newton_max": stats["max"],
                })
        for accelerate in args.forecast_modes:
            timing = _forecast_timing(L, accelerate)
            forecasts.append({"model": name, "accelerate": accelerate, **timing})
            print(f"  [{name}] 2 s forecast at 10 ms ({accelerate}): {timing['median_s'] * 1e3:.0f} ms", flush=True)
    _print_table(rows, forecasts, args)
    result = {
        "benchmark": "integrator",
        "initial_states": [{"q0": list(a), "qd0": list(b)} for a, b in INITIAL_STATES],
        "accelerate": args.accelerate,
        "models": [{"name": n, **info} for n, _, info in models],
        "rows": rows,
        "forecast_2s_at_10ms": forecasts,
        "torch_threads": torch.get_num_threads(),
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2))
    print(f"wrote {args.json}")
    return 0


def _print_table(rows: list[dict[str, Any]], forecasts: list[dict[str, Any]], args: argparse.Namespace) -> None:
    ics = ", ".join(f"IC{i + 1} q0={a} q̇0={b}" for i, (a, b) in enumerate(INITIAL_STATES))
    print(f"\nIntegrator benchmark: {args.steps} steps per rollout, batch of {len(INITIAL_STATES)} initial states "
          f"({ics}); accelerate={args.accelerate}, torch threads={torch.get_num_threads()}")
    header = (f"{'model':<16} {'h':>6} {'scheme':<12} {'max |ΔE|/|E0| IC1':>18} {'IC2':>10} {'growth IC1':>11} {'IC2':>8} "
              f"{'steps done':>15} {'ms/step':>8} {'newton':>7}")
    print(header)
    print("-" * len(header))
    for row in rows:
        errors = row["max_rel_energy_error"]
        done = "/".join(str(s) for s in row["completed_steps"])
        newton = "" if math.isnan(row["newton_mean"]) else f"{row['newton_mean']:.2f}"
        growth = row["energy_error_growth"]
        print(f"{row['model']:<16} {row['h'] * 1e3:>4g}ms {row['scheme']:<12} {errors[0]:>18.3e} {errors[1]:>10.3e} "
              f"{growth[0]:>11.2f} {growth[1]:>8.2f} {done:>15} {row['wall_per_step_ms']:>8.3f} {newton:>7}")
    print("(growth: max error in the last tenth / in the first tenth — ≈1 bounded, ≈10 linear drift; ms/step: wall\n"
          " time per batched step of all initial states, setup excluded; newton: mean updates per step)")
    for row in rows:
        for index, failure in enumerate(row["failures"]):
            if failure:
                print(f"  {row['model']} h={row['h'] * 1e3:g}ms {row['scheme']} IC{index + 1}: {failure}")
    print("\n2 s forecast at h = 10 ms, one trajectory, warm integrator (median of 3):")
    for f in forecasts:
        print(f"  {f['model']:<16} {f['accelerate']:<8} {f['median_s'] * 1e3:8.1f} ms  (setup {f['setup_s']:.1f} s)")
