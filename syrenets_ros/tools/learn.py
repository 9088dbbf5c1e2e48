"""``syrenets-ros learn BAG``: learn the Lagrangian from a rosbag2 recording of
sensor_msgs/JointState (MCAP or sqlite3), with the learner node's own core, and write the
snapshot (the format of /syrenets/model) and a PNG report. A bag that cannot be used ends
with a one-line error and exit code 2."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from syrenets_ros.online.learner import LEARNER_PARAMETERS, LearnerConfig

EXIT_UNUSABLE = 2
# Measured: selecting every recorded second (the node's cadence) took ~10x the CPU per million
# messages of every 10 s; a 4 s recording with viscous damping needed selections every 0.5 s for
# the structure search to add the damping (at 1 s it did not).
SELECTIONS = 40
MIN_SNAPSHOT_PERIOD, MAX_SNAPSHOT_PERIOD = 0.25, 10.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = LearnerConfig()
    parser.add_argument("bag", type=Path, help="bag folder (with metadata.yaml) or a .mcap / .db3 file")
    parser.add_argument("--topic", default="/joint_states", help="sensor_msgs/JointState topic")
    parser.add_argument("--joints", default=",".join(defaults.joint_names),
                        help="joints to learn, comma-separated, matched by name (others are ignored)")
    parser.add_argument("--start", type=float, default=None, help="seconds from the recording's start")
    parser.add_argument("--end", type=float, default=None, help="seconds from the recording's start")
    parser.add_argument("--network", action=argparse.BooleanOptionalAction, default=defaults.network_enabled,
                        help="train the SyReNet beside the library refit (structure search)")
    parser.add_argument("--period", default="auto",
                        help="joint-state period [s]; auto = estimated from the stamps")
    parser.add_argument("--snapshot-period", default="auto",
                        help="recorded seconds between model selections (the node's snapshot_period, "
                             f"{defaults.snapshot_period:g} s live); auto = the recording's length / "
                             f"{SELECTIONS}, within [{MIN_SNAPSHOT_PERIOD:g}, {MAX_SNAPSHOT_PERIOD:g}] s: "
                             "the structure search grows the model over several selections, and each "
                             "selection refits, which costs more than a recorded second")
    parser.add_argument("--train-rate", type=float, default=defaults.max_train_rate,
                        help="network steps per recorded second, default %(default)s (the node's max_train_rate)")
    parser.add_argument("--device", default=defaults.device, choices=("auto", "cpu", "cuda"))
    parser.add_argument("-o", "--output", type=Path, default=Path("model.json"), help="snapshot to write")
    parser.add_argument("--report", type=Path, default=None, help="PNG report (default: OUTPUT with .png)")


class ProgressBar:
    """A one-line bar on a terminal (stderr); without one, a line per 10 % on stdout, so
    logs stay short and stderr holds only errors."""

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()
        self.started = time.monotonic()
        self._last_draw = 0.0
        self._last_decile = -1

    def __call__(self, progress) -> None:
        fraction = min(1.0, progress.messages / max(progress.total, 1))
        line = (f"{progress.messages}/{progress.total} messages, {progress.accepted} samples, "
                f"{time.monotonic() - self.started:.0f} s")
        if self.tty:
            if time.monotonic() - self._last_draw >= 0.25:
                self._last_draw = time.monotonic()
                sys.stderr.write(f"\r[{'#' * int(30 * fraction):<30}] {100 * fraction:3.0f}% {line}")
                sys.stderr.flush()
        elif int(10 * fraction) > self._last_decile:
            self._last_decile = int(10 * fraction)
            print(f"{100 * fraction:3.0f}% {line}", flush=True)

    def close(self) -> None:
        if self.tty:
            sys.stderr.write("\n")


def _fail(message: str) -> int:
    print(f"syrenets-ros learn: error: {message}", file=sys.stderr)
    return EXIT_UNUSABLE


def run(args: argparse.Namespace) -> int:
    from syrenets_ros.offline.bag import BagError, JointStateBag
    from syrenets_ros.offline.learning import learn_from_bag, plot_report, report_residuals
    from syrenets_ros.online.snapshot import save_checkpoint

    joints = tuple(name.strip() for name in args.joints.split(",") if name.strip())
    if not joints:
        return _fail("--joints names no joint")
    try:
        period = None if args.period == "auto" else float(args.period)
        snapshot_period = None if args.snapshot_period == "auto" else float(args.snapshot_period)
        LEARNER_PARAMETERS.check({"max_train_rate": args.train_rate, "joint_names": joints}, running=False)
        if snapshot_period is not None:
            LEARNER_PARAMETERS.check({"snapshot_period": snapshot_period}, running=False)
        if period is not None:
            LEARNER_PARAMETERS.check({"joint_state_period": period}, running=False)
    except ValueError as error:
        return _fail(str(error))
    config = LearnerConfig(joint_names=joints, network_enabled=args.network, device=args.device,
                           max_train_rate=args.train_rate)
    started = time.process_time()
    bar = ProgressBar()
    try:
        with JointStateBag(args.bag, args.topic, args.start, args.end) as bag:
            config.snapshot_period = snapshot_period or min(MAX_SNAPSHOT_PERIOD, max(
                MIN_SNAPSHOT_PERIOD, bag.duration / SELECTIONS))
            print(f"bag {args.bag}: {bag.message_count} messages on {bag.topic}, {bag.duration:.1f} s; "
                  f"a model selection every {config.snapshot_period:.3g} recorded s", flush=True)
            try:
                result = learn_from_bag(bag, config, period, progress=bar)
            finally:
                bar.close()
    except BagError as error:
        return _fail(str(error))
    except KeyboardInterrupt:
        return _fail("interrupted")
    cpu = time.process_time() - started

    publication, stats = result.publication, result.stats
    rejected = ", ".join(f"{reason} {count}" for reason, count in result.rejected.items()) or "none"
    print(f"samples: {result.accepted} from {result.messages} messages (period {result.period:.6g} s); "
          f"rejected: {rejected}; undecodable: {result.undecodable}")
    for note in result.notes:
        print(f"learner: {note}")
    wins = ", ".join(f"{source} {count}" for source, count in sorted(stats.wins.items()))
    print(f"served: {publication.source} (selections won: {wins}; network steps {stats.training_steps})")
    print(publication.equation)
    residual = report_residuals(result)
    print(f"held-out torque RMSE {publication.holdout_rmse:.3g} N·m (newest samples, not used in the fit); "
          f"over the recording {float(residual.square().mean().sqrt()):.3g} N·m")
    try:
        output = save_checkpoint(args.output.parent, args.output.name, publication.payload)
        report = plot_report(result, args.report or args.output.with_suffix(".png"),
                             title=f"{args.bag} {bag.topic}: {publication.equation}")
    except (OSError, ValueError) as error:
        return _fail(f"cannot write the results: {error}")
    print(f"snapshot: {output}\nreport: {report}\nlearning took {cpu:.1f} s CPU"
          f" ({cpu / max(result.messages, 1) * 1e6:.1f} s per million messages)")
    return 0
