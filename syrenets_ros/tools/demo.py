"""``syrenets-ros demo`` (what ``make demo`` runs): the mission end to end. Brings the three
nodes up, tracks with PD only, switches the learned feed-forward on, swaps link 2
(mass 1.0 → 2.0 kg, length 1.67 → 1.2 m) through the parameter service, keeps learning, and
ends with a summary table, the learned Lagrangian next to the true one, and a plot. The run is
recorded to RUN_DIR/bag, so ``syrenets-ros learn runs/demo/bag`` learns from it offline."""

from __future__ import annotations

import argparse
from pathlib import Path

from syrenets_ros.tools.experiment import DEFAULT_REAL_TIME_FACTOR, Timeline, run_experiment, summary_table


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
    parser.add_argument("--record", action=argparse.BooleanOptionalAction, default=True,
                        help="record the run to RUN_DIR/bag (MCAP) for `syrenets-ros learn`")


def run(args: argparse.Namespace) -> int:
    timeline = Timeline(pd_only=args.pd_only, learned_before_swap=args.before_swap, after_swap=args.after_swap)
    print(__doc__.split("\n\n")[0].replace("``", "") + "\n")
    print(f"timeline (sim s): PD only {timeline.pd_only}, learned FF {timeline.learned_before_swap}, "
          f"swap {timeline.swap}, then {timeline.after_swap}; real-time factor {args.real_time_factor}")
    result = run_experiment(timeline, args.run_dir, real_time_factor=args.real_time_factor,
                            bag_dir=args.run_dir / "bag" if args.record else None)
    print("\n" + summary_table(result))
    print(f"\nfull result: {args.run_dir / 'result.json'}; node logs: {args.run_dir / 'logs'}")
    return 1 if result.nodes_died else 0
