"""``syrenets-ros demo`` (what ``make demo`` runs): the mission end to end. Brings the three
nodes up, tracks with PD only, switches the learned feed-forward on, changes the system through
the parameter service (by default swaps link 2: mass 1.0 → 2.0 kg, length 1.67 → 1.2 m; or adds a
spring, friction or cogging with --change), keeps learning, and ends with a summary table, the learned
Lagrangian next to the true one, and a plot. --noise adds sensor noise to what is published. The
run is recorded to RUN_DIR/bag, so ``syrenets-ros learn runs/demo/bag`` learns from it offline.
``--robot panda`` runs the same mission on a 7-joint Franka Panda from its URDF (example-robot-data,
on PyPI), every node given the same robot_description, with a 1 kg payload put at its flange."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from syrenets_ros.plant.robot import named_robot_description
from syrenets_ros.tools.experiment import DEFAULT_REAL_TIME_FACTOR, Timeline, run_experiment, summary_table
from syrenets_ros.tools.streams import REALISTIC_NOISE

# What changes mid-run (simulator parameters, set atomically through its parameter service).
CHANGES: dict[str, dict[str, object]] = {
    "link2": {"link2_mass": 2.0, "link2_length": 1.2},  # a new payload: masses and lengths (SPEC §5)
    "spring": {"joint_stiffness": [0.0, 50.0]},  # a torsional spring at joint 2: no trig term holds it
    "friction": {"joint_damping": [2.0, 2.0]},  # viscous friction: no Lagrangian holds it
    # Cogging at joint 2, 0.4·(1 − cos 5q2): a frequency the default grammar lacks (issue 22).
    "cogging": {"joint_cogging": [0.0, 0.4], "cogging_periods": 5},
    "payload": {"payload_mass": 1.0},  # 1 kg at the flange of a URDF robot
}
# The changes that fit each robot of plant.robot.NAMED_ROBOTS (the first is the default).
ROBOTS = {"double_pendulum": ("link2", "spring", "friction", "cogging"), "panda": ("payload",)}


def _noise(text: str) -> list[float]:
    values = [float(v) for v in text.split(",")]
    if len(values) != 3:
        raise argparse.ArgumentTypeError("--noise takes σ_q,σ_q̇,σ_τ (rad, rad/s, N·m)")
    return values


def add_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = Timeline()
    parser.add_argument("--run-dir", type=Path, default=Path("runs/demo"), help="logs, result.json, plot")
    parser.add_argument("--real-time-factor", type=float, default=DEFAULT_REAL_TIME_FACTOR,
                        help="simulator pacing (1 = real time; the default fits a 2-core machine)")
    parser.add_argument("--pd-only", type=float, default=defaults.pd_only, help="sim seconds of PD only")
    parser.add_argument("--before-swap", type=float, default=defaults.learned_before_swap,
                        help="sim seconds with learned feed-forward before the swap")
    parser.add_argument("--after-swap", type=float, default=defaults.after_swap,
                        help="sim seconds after the swap")
    parser.add_argument("--robot", choices=sorted(ROBOTS), default="double_pendulum",
                        help="the simulated robot: the double pendulum (default) or the Franka Panda's URDF")
    parser.add_argument("--change", choices=sorted(CHANGES), default=None,
                        help="what changes mid-run: link2 (mass and length, the pendulum's default), spring "
                             "(k = 50 N·m/rad at joint 2), friction (viscous b = 2 N·m·s/rad on both joints); "
                             "payload (1 kg at the flange: the Panda's default and only change)")
    parser.add_argument("--noise", nargs="?", type=_noise, const=list(REALISTIC_NOISE), default=None,
                        metavar="SQ,SQD,STAU",
                        help="sensor noise on what the simulator publishes; without a value the realistic "
                             f"figures of an industrial arm {list(REALISTIC_NOISE)}")
    parser.add_argument("--record", action=argparse.BooleanOptionalAction, default=True,
                        help="record the run to RUN_DIR/bag (MCAP) for `syrenets-ros learn`")


def run(args: argparse.Namespace) -> int:
    change = args.change or ROBOTS[args.robot][0]
    if change not in ROBOTS[args.robot]:
        print(f"syrenets-ros demo: error: --change {change} does not fit --robot {args.robot} (its changes: "
              f"{', '.join(ROBOTS[args.robot])})", file=sys.stderr)
        return 2
    timeline = Timeline(pd_only=args.pd_only, learned_before_swap=args.before_swap, after_swap=args.after_swap,
                        swap=dict(CHANGES[change]))
    overrides: dict[str, dict[str, object]] = {}
    if args.noise:
        # The learner's stream checks are told the same σ, so honest noisy states pass them.
        overrides = {"pendulum_sim": {"measurement_noise": args.noise},
                     "syrenets_learner": {"sensor_noise": args.noise[:2]}}
    print(__doc__.split("\n\n")[0].replace("``", "") + "\n")
    print(f"robot: {args.robot}; timeline (sim s): PD only {timeline.pd_only}, learned FF {timeline.learned_before_swap}, "
          f"change {timeline.swap}, then {timeline.after_swap}; real-time factor {args.real_time_factor}"
          + (f"; sensor noise σ = {args.noise}" if args.noise else ""))
    result = run_experiment(timeline, args.run_dir, real_time_factor=args.real_time_factor, overrides=overrides,
                            bag_dir=args.run_dir / "bag" if args.record else None,
                            robot_description=named_robot_description(args.robot))
    print("\n" + summary_table(result))
    print(f"\nfull result: {args.run_dir / 'result.json'}; node logs: {args.run_dir / 'logs'}")
    return 1 if result.nodes_died else 0
