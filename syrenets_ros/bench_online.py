"""``syrenets-ros bench online``: from one run of the online experiment, the adaptation time
after the swap, predictor latency at 1 kHz, and tracking with learned feed-forward; then a
second run serving the *true* model through the same predictor, for the tracking ratio."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from syrenets_ros import physics
from syrenets_ros import ros_common as rc
from syrenets_ros.distill import true_pendulum_terms
from syrenets_ros.experiment import DEFAULT_REAL_TIME_FACTOR, Monitor, Timeline, run_experiment, summary_table
from syrenets_ros.graph import NODES
from syrenets_ros.snapshot import encode_model
from std_msgs.msg import String

TARGETS = {"adaptation_time_s": 5.0, "learned_vs_true_tracking": 1.2, "latency_p99_ms": 2.0}


def true_model_payload(params: physics.PendulumParams) -> str:
    """The true Lagrangian (SPEC §2) as a served model, in the same snapshot format."""
    return encode_model(true_pendulum_terms(params), model_version=1, joint_names=list(physics.JOINT_NAMES),
                        metrics={})


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run-dir", type=Path, default=Path("runs/bench_online"))
    parser.add_argument("--json", type=Path, default=Path("runs/bench_online.json"))
    parser.add_argument("--before-swap", type=float, default=15.0)
    parser.add_argument("--after-swap", type=float, default=15.0)
    parser.add_argument("--real-time-factor", type=float, default=DEFAULT_REAL_TIME_FACTOR)


def run(args: argparse.Namespace) -> int:
    timeline = Timeline(learned_before_swap=args.before_swap, after_swap=args.after_swap)
    print("== run 1/2: learned feed-forward, swap mid-run")
    learned = run_experiment(timeline, args.run_dir / "learned", real_time_factor=args.real_time_factor)
    print(summary_table(learned))

    print("\n== run 2/2: true-model feed-forward through the same predictor (no learner)")
    payload = true_model_payload(physics.PendulumParams())
    keep_alive: list = []

    def serve_true_model(monitor: Monitor) -> None:
        publisher = monitor.create_publisher(String, rc.MODEL, rc.LATCHED_QOS)
        publisher.publish(String(data=payload))
        keep_alive.append(publisher)

    reference = run_experiment(Timeline(learned_before_swap=args.before_swap, after_swap=0.0, swap={}),
                               args.run_dir / "true_model", real_time_factor=args.real_time_factor, nodes=[n for n in NODES if n.executable != "learner"],
                               hooks={"started": serve_true_model})
    learned_tracking = learned.tracking_rms["learned_before_swap"]
    true_tracking = reference.tracking_rms["learned_before_swap"]
    measured = {
        "adaptation_time_s": learned.adaptation_time,
        "learned_ff_tracking_rms_rad": learned_tracking,
        "true_ff_tracking_rms_rad": true_tracking,
        "learned_vs_true_tracking": learned_tracking / true_tracking if true_tracking else math.nan,
        "pd_only_tracking_rms_rad": learned.tracking_rms["pd_only"],
        "latency_p50_ms": learned.latency_ms["p50"],
        "latency_p99_ms": learned.latency_ms["p99"],
    }
    print(f"\n{'metric':<32} {'measured':>12} {'target':>10}")
    for key, value in measured.items():
        target = TARGETS.get(key)
        print(f"{key:<32} {value:>12.4g} {('<= ' + format(target, 'g')) if target else '':>10}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"measured": measured, "targets": TARGETS,
                                     "learned_run": json.loads(learned.to_json()),
                                     "true_model_run": json.loads(reference.to_json())}, indent=2, default=str))
    print(f"\nwrote {args.json}")
    return 0
