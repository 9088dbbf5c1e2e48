"""``syrenets-ros learn RECORDING``: learn the Lagrangian from a rosbag2 recording of
sensor_msgs/JointState (MCAP or sqlite3) or from a table (CSV, NPZ: SPEC §5), with the learner
node's own core, and write the snapshot (the format of /syrenets/model) and a PNG report. With
``--urdf FILE`` the model is the robot's rigid body (base inertial parameters + friction, the
learner's robot_description), printed beside the URDF's own values. A
recording that cannot be used ends with a one-line error naming the unmet condition, its
numbers and the option that changes it, and exit code 2."""

from __future__ import annotations

import argparse
import sys
import time
from contextlib import ExitStack
from pathlib import Path

from syrenets_ros.learning.integral import FORMS
from syrenets_ros.learning.terms import MAX_JOINTS
from syrenets_ros.offline.learning import MAX_SNAPSHOT_PERIOD, MIN_SNAPSHOT_PERIOD, SELECTIONS
from syrenets_ros.online.learner import LEARNER_PARAMETERS, LearnerConfig
from syrenets_ros.tools.inputs import seconds

EXIT_UNUSABLE = 2
# The learner's duration parameters `learn` exposes, by option; a refusal names the option.
DURATIONS = ("integral_window", "holdout", "fit_duration", "min_fit_duration")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = LearnerConfig()
    parser.add_argument("bag", type=Path, metavar="RECORDING",
                        help="bag folder (with metadata.yaml), a .mcap / .db3 file, or a table (.csv with a header "
                             "row, or .npz): columns t, optional segment, q1..qn, qd1..qdn, optional qdd1..qddn, "
                             "tau1..taun")
    parser.add_argument("--topic", default="/joint_states", help="sensor_msgs/JointState topic (bags)")
    parser.add_argument("--urdf", type=Path, default=None,
                        help="the robot's URDF (the learner's robot_description): learn its base inertial "
                             "parameters and joint friction instead of a Lagrangian from the term library; the "
                             "joints default to its movable joints in order")
    parser.add_argument("--joints", default=None,
                        help="joints to learn, comma-separated, matched by name in a bag (others are ignored); a "
                             f"table's joints are its columns in order (default: {','.join(defaults.joint_names)} "
                             "for a bag, joint1..jointn for a table)")
    parser.add_argument("--start", type=seconds, default=None, help="seconds from the recording's start")
    parser.add_argument("--end", type=seconds, default=None, help="seconds from the recording's start")
    parser.add_argument("--network", action=argparse.BooleanOptionalAction, default=defaults.network_enabled,
                        help="train the SyReNet beside the library refit (structure search)")
    parser.add_argument("--period", default="auto",
                        help="joint-state period [s]; auto = estimated from the stamps")
    parser.add_argument("--snapshot-period", default="auto",
                        help="recorded seconds between model selections (the node's snapshot_period, "
                             f"{defaults.snapshot_period:g} s live); auto = the recording's length / {SELECTIONS}, or the "
                             "refit's data (so refits tile the recording) when that is longer, within "
                             f"[{MIN_SNAPSHOT_PERIOD:g}, {MAX_SNAPSHOT_PERIOD:g}] s: "
                             "the structure search grows the model over several selections, and each "
                             "selection refits, which costs more than a recorded second")
    parser.add_argument("--train-rate", type=float, default=defaults.max_train_rate,
                        help="network steps per recorded second, default %(default)s (the node's max_train_rate)")
    parser.add_argument("--device", default=defaults.device, choices=("auto", "cpu", "cuda"))
    parser.add_argument("--threads", type=int, default=1,
                        help="CPU threads for torch (default %(default)s: on small matrices more threads spin and "
                             "cost more CPU than they save)")
    for name in DURATIONS:
        parameter = LEARNER_PARAMETERS[name]
        parser.add_argument(f"--{name.replace('_', '-')}", type=float, default=parameter.default, metavar="S",
                            help=f"{parameter.description} [s] (the node's {name}; default %(default)s)")
    parser.add_argument("--rows", default=defaults.integral_rows, choices=("auto",) + FORMS,
                        help="how integral rows are formed (the node's integral_rows): " + LEARNER_PARAMETERS[
                            "integral_rows"].description.replace("%", "%%"))
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
    # The learner's words for its knobs become this command's options (longest first: min_fit_duration).
    for name in sorted(DURATIONS + ("integral_rows",), key=len, reverse=True):
        message = message.replace(name, "--rows" if name == "integral_rows" else f"--{name.replace('_', '-')}")
    print(f"syrenets-ros learn: error: {message}", file=sys.stderr)
    return EXIT_UNUSABLE


def _open(args: argparse.Namespace, stack: ExitStack):
    """The recording named on the command line, opened: (Recording, its joint count or None, a
    one-line description). BagError / TableError when it cannot be used."""
    from syrenets_ros.offline.bag import JointStateBag
    from syrenets_ros.offline.learning import BagRecording, TableRecording
    from syrenets_ros.offline.table import is_table, read_table

    if is_table(args.bag):
        table = read_table(args.bag)
        return TableRecording(table), table.n_joints, f"table {args.bag}: {table.describe()}, {table.duration:.1f} s"
    bag = stack.enter_context(JointStateBag(args.bag, args.topic, args.start, args.end))
    return (BagRecording(bag), None,
            f"bag {args.bag}: {bag.message_count} messages on {bag.topic}, {bag.duration:.1f} s")


def run(args: argparse.Namespace) -> int:
    import torch

    from syrenets_ros.dynamics.urdf import read_urdf
    from syrenets_ros.offline.bag import BagError
    from syrenets_ros.offline.learning import learn_from_recording, plot_report, report_residuals
    from syrenets_ros.offline.table import TableError
    from syrenets_ros.online.snapshot import save_checkpoint

    if args.threads < 1:
        return _fail(f"--threads must be at least 1, got {args.threads}")
    torch.set_num_threads(args.threads)
    try:
        period = None if args.period == "auto" else float(args.period)
        snapshot_period = None if args.snapshot_period == "auto" else float(args.snapshot_period)
        LEARNER_PARAMETERS.check({"max_train_rate": args.train_rate,
                                  **{name: getattr(args, name) for name in DURATIONS}}, running=False)
        if snapshot_period is not None:
            LEARNER_PARAMETERS.check({"snapshot_period": snapshot_period}, running=False)
        if period is not None:
            LEARNER_PARAMETERS.check({"joint_state_period": period}, running=False)
    except ValueError as error:
        return _fail(str(error))
    started = time.process_time()
    bar = ProgressBar()
    try:
        robot = read_urdf(args.urdf) if args.urdf else None
        with ExitStack() as stack:
            recording, n_joints, description = _open(args, stack)
            joints = _joints(args.joints, n_joints) if robot is None else _urdf_joints(args.joints, n_joints, robot)
            LEARNER_PARAMETERS.check({"joint_names": joints}, running=False)
            config = LearnerConfig(joint_names=joints, network_enabled=args.network, device=args.device,
                                   robot_description=robot.urdf if robot else "",
                                   max_train_rate=args.train_rate, integral_rows=args.rows,
                                   snapshot_period=snapshot_period or LearnerConfig().snapshot_period,
                                   **{name: getattr(args, name) for name in DURATIONS})
            print(description, flush=True)
            try:
                result = learn_from_recording(recording, config, period, progress=bar,
                                              auto_snapshot=snapshot_period is None)
            finally:
                bar.close()
    except (BagError, TableError, ValueError) as error:
        return _fail(str(error))
    except KeyboardInterrupt:
        return _fail("interrupted")
    cpu = time.process_time() - started

    publication, stats = result.publication, result.stats
    rejected = ", ".join(f"{reason} {count}" for reason, count in result.rejected.items()) or "none"
    print(f"samples: {result.accepted} from {result.messages} messages (period {result.period:.6g} s); "
          f"rejected: {rejected}; undecodable: {result.undecodable}")
    print(f"chosen: {result.rows.form} integral rows; {result.sizes.describe()}; a selection every "
          f"{result.snapshot_period:.3g} recorded s")
    for note in result.notes:
        print(f"learner: {note}")
    wins = ", ".join(f"{source} {count}" for source, count in sorted(stats.wins.items()))
    print(f"served: {publication.source} (selections won: {wins}; network steps {stats.training_steps})")
    if robot is None:
        print(publication.equation)
    else:
        print(rigid_body_report(result.model))
    _, residual = report_residuals(result)
    print(f"held-out torque RMSE {publication.holdout_rmse:.3g} N·m (integral rows of the newest samples, not used "
          f"in the fit); per sample over the recording {float(residual.square().mean().sqrt()):.3g} N·m")
    try:
        output = save_checkpoint(args.output.parent, args.output.name, publication.payload)
        report = plot_report(result, args.report or args.output.with_suffix(".png"),
                             title=f"{args.bag} {recording.name}: {publication.equation}")
    except (OSError, ValueError) as error:
        return _fail(f"cannot write the results: {error}")
    print(f"extrapolation_uncertain: {stats.extrapolation_uncertain:.3g} N·m (how far models that fit the held-out "
          f"data equally well disagree outside the visited states; 0 = none do); the last selection took "
          f"{stats.selection_cpu:.3g} s CPU")
    print(f"snapshot: {output}\nreport: {report}\nlearning took {cpu:.1f} s CPU"
          f" ({cpu / max(result.messages, 1) * 1e6:.1f} s per million messages)")
    return 0


def rigid_body_report(model) -> str:
    """The learned base parameters (± standard error) beside the URDF's, then friction and springs."""
    library = model.library
    urdf = library.base.of(library.robot.inertial_parameters())
    count = len(library.base)
    lines = [f"rigid body of URDF {library.robot.digest[:12]}…: {count} base parameters (SI units; '+' = other "
             f"parameters folded in)", f"  {'base parameter':<22} {'learned':>14} {'± stderr':>10} {'URDF':>14}"]
    for name, value, error, claimed in zip(library.names, model.coefficients.tolist(), model.stderr.tolist(),
                                           urdf.tolist()):
        lines.append(f"  {name:<22} {value:>14.6g} {error:>10.2g} {claimed:>14.6g}")
    passive = [f"{name} {value:.4g}(±{error:.1g})" for name, value, error in zip(
        library.names[count:], model.coefficients[count:].tolist(), model.stderr[count:].tolist())]
    lines.append("friction (dissipation terms: qd**2/2 viscous N·m·s/rad, Abs(qd) Coulomb N·m) and springs "
                 "(stiffness N·m/rad, spring_offset = −stiffness·rest angle N·m): " + (", ".join(passive) or "none"))
    return "\n".join(lines)


def _urdf_joints(option: str | None, n_joints: int | None, robot) -> tuple[str, ...]:
    """The URDF's movable joints; given joints must be exactly those, in order (the model's
    torques follow the URDF's order), and a table must have that many."""
    joints = robot.joint_names if option is None else tuple(n.strip() for n in option.split(",") if n.strip())
    if joints != robot.joint_names:
        raise ValueError(f"--joints must be the URDF's movable joints in order: {','.join(robot.joint_names)}")
    if n_joints is not None and n_joints != len(joints):
        raise ValueError(f"the URDF has {len(joints)} movable joints, the table {n_joints} (q1..q{n_joints})")
    return joints


def _joints(option: str | None, n_joints: int | None) -> tuple[str, ...]:
    """The joint names: given, the node's default for a bag, joint1..jointn for a table."""
    if option is None:
        if n_joints is not None and n_joints > MAX_JOINTS:
            raise ValueError(f"the table has {n_joints} joints; the term grammar holds at most {MAX_JOINTS}")
        return LearnerConfig().joint_names if n_joints is None else tuple(f"joint{i + 1}" for i in range(n_joints))
    joints = tuple(name.strip() for name in option.split(",") if name.strip())
    if not joints:
        raise ValueError("--joints names no joint")
    if len(joints) > MAX_JOINTS:
        raise ValueError(f"--joints names {len(joints)} joints; the term grammar holds at most {MAX_JOINTS}")
    if n_joints is not None and len(joints) != n_joints:
        raise ValueError(f"--joints names {len(joints)} joints, the table has {n_joints} (q1..q{n_joints})")
    return joints
