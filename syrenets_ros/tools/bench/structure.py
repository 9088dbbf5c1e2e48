"""``syrenets-ros bench structure``: the learner through structural changes (issues 11, 22).

Scenarios switched mid-run with the state continuous — link-2 swap, link-1 swap, gravity
change, a spring at joint 2, viscous and Coulomb friction, spring + friction, a hardening
spring at joint 2 (issue 22: a quartic potential) — each run with
the network off and on. Per run: detected at, adapted at (sim s from which the served model's
wide-range torque RMSE stays ≤ 1e-6 N·m, checked once per simulated second), final torque
RMSE on the post-change data and on a wide range (|q| ≤ 2.5 rad, |q̇| ≤ 4 rad/s,
|q̈| ≤ 4 rad/s²), recovered vs true terms of L and D, whether the insufficiency WARN showed,
which terms grew the library (from the insufficiency check, from the network), and the
largest and final ``extrapolation_uncertain`` after the change, the CPU a selection took
(median and largest; one thread), and how many of the models served after the change predict
the post-change record worse than the model served at the change did. Noise-free
offline streams of the ground-truth dynamics stepped with the simulator's scheme (any change
at a step boundary, state continuous; the PyBullet core with springs and friction is held to
the same learner by test/online/test_learner_structure.py); the learner runs without ROS as
the node drives it. Network on = ``--train-steps`` SyReNet steps per simulated second.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import replace
from pathlib import Path

import torch

from syrenets_ros.learning.terms import TermModel
from syrenets_ros.online.learner import LearnerConfig, OnlineLearner
from syrenets_ros.plotting import saved_figure
from syrenets_ros.tools.bench.noise import wide_states
from syrenets_ros.tools.streams import Plant, Stream, deliver, simulate_structure

RIGID = Plant()
SCENARIOS: dict[str, Plant] = {
    "link-2 swap": replace(RIGID, params=RIGID.params.with_changes(m2=2.0, l2=1.2)),
    "link-1 swap": replace(RIGID, params=RIGID.params.with_changes(m1=4.0, l1=2.0)),
    "gravity change": replace(RIGID, params=RIGID.params.with_changes(g=3.71)),
    "spring joint 2": replace(RIGID, stiffness=(0.0, 50.0)),
    "viscous friction": replace(RIGID, viscous=(2.0, 2.0)),
    "Coulomb friction": replace(RIGID, coulomb=(1.0, 1.0)),
    "spring + friction": replace(RIGID, stiffness=(0.0, 50.0), viscous=(2.0, 2.0)),
    # k₃q2³ is 31 % of the spring torque at the visited edge |q2| = 0.74 rad, and the truth stays
    # under the default 500 N·m probe limit (q2 = π: 279 N·m of spring).
    "hardening spring joint 2": replace(RIGID, stiffness=(0.0, 10.0), hardening=(0.0, 8.0)),
    # Detent torque 2 N·m peak (~3 % of the gravity torques), 5 periods per revolution: cos 5q2
    # is a frequency the default grammar (q_i, 2q_i, sums, differences) lacks.
    "cogging joint 2": replace(RIGID, cogging=(0.0, 0.4), cogging_periods=5),
}
ADAPTED = 1e-6  # N·m, wide-range RMSE
CHUNK = 1000


def true_coefficients(plant: Plant) -> tuple[dict, dict]:
    """The true L terms and D forces of a plant with their coefficients."""
    truth = plant.true_terms()
    coefficients = dict(zip(truth.library.columns, truth.coefficients.tolist()))
    return ({c: v for c, v in coefficients.items() if c in truth.terms},
            {c: v for c, v in coefficients.items() if c in truth.forces})


def wide_rmse(model, plant: Plant, states) -> float:
    with torch.no_grad():
        error = model.torque(*states) - plant.inverse_dynamics(*states)
    return float(error.square().mean().sqrt())


def measure(name: str, plant: Plant, stream: Stream, network: bool, change_at: float, train_steps: int) -> dict:
    config = LearnerConfig(snapshot_period=0.0, network_enabled=network, max_train_rate=1e9, seed=0)
    learner = OnlineLearner(config, log=lambda _: None, warn=lambda _: None)
    wide = wide_states()
    post = stream.stamp >= change_at
    states = (stream.clean_q[post], stream.clean_qd[post], stream.clean_qdd[post])
    history, warned, uncertain, cpu = [], set(), 0.0, []
    before, served_after = None, []  # the model served at the change, and each one served after it
    for stamp in deliver(learner, stream, CHUNK, train_steps):
        learner.maybe_select()
        cpu.append(learner.stats.selection_cpu)
        if stamp < change_at:
            before = learner.served
            continue
        uncertain = max(uncertain, learner.stats.extrapolation_uncertain)
        if learner.stats.insufficiency:
            warned.add(learner.stats.insufficiency)
        if learner.served is not None:
            history.append((stamp, wide_rmse(learner.served, plant, wide)))
            if learner.served is not before and all(learner.served is not m for m in served_after):
                served_after.append(learner.served)
    # Held out for every model: the whole post-change record (data no fit before its end saw).
    reference = wide_rmse(before, plant, states) if before is not None else math.inf
    worse = sum(wide_rmse(m, plant, states) > reference for m in served_after)
    adapted = math.nan
    for stamp, rmse in reversed(history):
        if rmse > ADAPTED:
            break
        adapted = stamp
    served = learner.served
    true_l, true_d = true_coefficients(plant)
    coefficient_error = math.inf
    if isinstance(served, TermModel):
        found_l, found_d = set(served.terms), set(served.forces)
        terms = (f"L {len(found_l & set(true_l))}/{len(true_l)} +{len(found_l - set(true_l))}, "
                 f"D {len(found_d & set(true_d))}/{len(true_d)} +{len(found_d - set(true_d))}")
        coefficient_error = max(abs(served.coefficient_of(c) / v - 1.0) for c, v in {**true_l, **true_d}.items())
    else:
        terms = "network served"
    detections = [s for s in learner.stats.change_stamps if s >= change_at - 0.5]
    return {"scenario": name, "network": network, "detected_at": detections[0] if detections else math.nan,
            "false_detections": len(learner.stats.change_stamps) - len(detections),
            "adapted_at": adapted, "range_rmse": wide_rmse(served, plant, states), "wide_rmse": history[-1][1],
            "terms": terms, "coefficient_error": coefficient_error, "warn": "; ".join(sorted(warned)) or "-",
            "network_holdout_rmse": learner.stats.network_rmse, "network_rival_rmse": learner.stats.network_rival_rmse,
            "admitted": ", ".join(learner.stats.admitted_terms) or "-", "grown": ", ".join(learner.stats.grown_terms) or "-",
            "training_steps": learner.stats.training_steps, "uncertain_max": uncertain,
            "uncertain_final": learner.stats.extrapolation_uncertain,
            "selection_cpu": f"{sorted(cpu)[len(cpu) // 2]:.2f} / {max(cpu):.2f}",
            "served_after_change": len(served_after), "worse_after_change": worse}


def table(results: list[dict]) -> str:
    rows = ["| scenario | network | detected at [s] | adapted at [s] | RMSE in range [N·m] | wide RMSE [N·m] | "
            "recovered vs true | max rel. coef. error | WARN seen | library grown by the check | network terms admitted "
            "| network held-out RMSE: served + network / served alone [N·m] | extrapolation uncertain, max after the change / final [N·m] "
            "| selection CPU, median / max [s] | served after the change: worse than before / all |", "|" + "---|" * 15]
    for r in results:
        rows.append(f"| {r['scenario']} | {'on' if r['network'] else 'off'} ({r['training_steps']} steps) | "
                    f"{r['detected_at']:.3g} | {r['adapted_at']:.3g} | {r['range_rmse']:.3g} | {r['wide_rmse']:.3g} | "
                    f"{r['terms']} | {r['coefficient_error']:.2g} | {r['warn']} | {r['grown']} | {r['admitted']} | "
                    f"{r['network_holdout_rmse']:.3g} / {r['network_rival_rmse']:.3g} | {r['uncertain_max']:.3g} / {r['uncertain_final']:.3g} | "
                    f"{r['selection_cpu']} | {r['worse_after_change']} / {r['served_after_change']} |")
    return "\n".join(rows)


def plot(results: list[dict], path: Path) -> Path:
    names = list(dict.fromkeys(r["scenario"] for r in results))
    with saved_figure(path, 120, figsize=(8, 4)) as (fig, ax):
        for offset, network in ((-0.2, False), (0.2, True)):
            values = [next((max(r["wide_rmse"], 1e-16) for r in results if r["scenario"] == n and r["network"] == network),
                           math.nan) for n in names]
            ax.bar([i + offset for i in range(len(names))], values, width=0.4, label=f"network {'on' if network else 'off'}")
        ax.set_yscale("log")
        ax.set_xticks(range(len(names)), names, rotation=30, ha="right")
        ax.set_ylabel("final wide-range torque RMSE [N·m]")
        ax.legend()
    return path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--scenarios", nargs="+", default=list(SCENARIOS), choices=list(SCENARIOS), metavar="NAME")
    parser.add_argument("--network", choices=("off", "on", "both"), default="both")
    parser.add_argument("--change-at", type=float, default=6.0, help="sim time of the change")
    parser.add_argument("--seconds", type=float, default=16.0, help="length of each run (sim s)")
    parser.add_argument("--train-steps", type=int, default=20, help="network steps per simulated second")
    parser.add_argument("--png", type=Path, default=Path("bench_structure.png"))


def run(args: argparse.Namespace) -> int:
    torch.set_num_threads(1)  # as the learner node (torch_threads 1): 2-DoF refits gain nothing from more
    networks = {"off": (False,), "on": (True,), "both": (False, True)}[args.network]
    results = []
    for name in args.scenarios:
        stream = simulate_structure(args.seconds, change_at=args.change_at, changed=SCENARIOS[name])
        for network in networks:
            results.append(measure(name, SCENARIOS[name], stream, network, args.change_at, args.train_steps))
            print(results[-1], flush=True)
    print(table(results))
    print(f"plot: {plot(results, args.png)}")
    return 0
