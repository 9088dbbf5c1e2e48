"""``syrenets-ros bench online``: from one run of the online experiment, the adaptation time
after the swap, predictor latency at 1 kHz, the learner's lag and tracking with learned
feed-forward; then a second run serving the *true* model through the same predictor, for the
tracking ratio. ``--background N`` runs it all beside N busy processes (a robot computer is
never idle), at nice ``--background-nice`` in this session, or in a session of their own with
``--background-new-session`` (the kernel then shares the CPU between sessions whatever the
nice value)."""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Iterator

from typing import TYPE_CHECKING

from syrenets_ros.dynamics import pendulum
from syrenets_ros.learning.terms import true_pendulum_terms
from syrenets_ros.online.snapshot import encode_model
from syrenets_ros.tools.experiment import DEFAULT_REAL_TIME_FACTOR, Timeline, run_experiment, summary_table
from syrenets_ros.tools.report import SIM, worse_after_change
from syrenets_ros.tools.graph import NODES

if TYPE_CHECKING:
    from syrenets_ros.ros.monitor import Monitor

TARGETS = {"adaptation_time_s": 5.0, "learned_vs_true_tracking": 1.2, "learned_vs_true_in_sim_tracking": 1.1,
           "delivered_ff_error_rms_before_swap": 1e-3, "latency_p99_ms": 2.0}
TARGETS_AT_LEAST = {"delivered_ff_exact_after_first_model": 0.995}


def true_model_payload(params: pendulum.PendulumParams) -> str:
    """The true Lagrangian (SPEC §2) as a served model, in the same snapshot format."""
    return encode_model(true_pendulum_terms(params), model_version=1, joint_names=list(pendulum.JOINT_NAMES),
                        metrics={})


def predictor_latency(seconds: float = 10.0, points: int = 10) -> dict[str, float]:
    """End-to-end latency of the real predictor process serving the true model at 1 kHz:
    references of `points` points every `points` ms (as the simulator sends them) from this
    process, answers timed on arrival. Measured alone, so the number is the predictor's and
    DDS's, not a busy graph's. The predictor serves no first model before measured motion
    checked it (issue 23), so the true pendulum's states, stamped now, go first."""
    import threading
    import time

    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node
    from sensor_msgs.msg import JointState
    from std_msgs.msg import String
    from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

    from syrenets_ros.ros import common as rc
    from syrenets_ros.tools.bringup import Graph

    graph = Graph(nodes=[n for n in NODES if n.executable == "predictor"], use_sim_time=False,
                  overrides={"syrenets_predictor": {"forecast_rate": 0.0}}, echo=False).start()
    rclpy.init()
    node = Node("syrenets_latency_probe")
    sent: dict[int, float] = {}
    latencies: list[float] = []

    def on_answer(msg: JointState) -> None:
        started = sent.pop(msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec, None)
        if started is not None:
            latencies.append((time.perf_counter() - started) * 1e3)

    node.create_subscription(JointState, rc.PREDICTED_TORQUE, on_answer, rc.STREAM_QOS)
    references = node.create_publisher(JointTrajectory, rc.REFERENCE, rc.STREAM_QOS)
    states = node.create_publisher(JointState, rc.JOINT_STATES, rc.BATCHED_STREAM_QOS)
    model = node.create_publisher(String, rc.MODEL, rc.LATCHED_QOS)
    model.publish(String(data=true_model_payload(pendulum.PendulumParams())))
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    def send(k: int) -> None:
        msg = JointTrajectory(joint_names=list(pendulum.JOINT_NAMES))
        base_ns = 10**9 + k * points * 10**6
        msg.header.stamp = rc.seconds_to_stamp(base_ns * 1e-9)
        for i in range(points):
            msg.points.append(JointTrajectoryPoint(positions=[0.1, 0.2], velocities=[0.3, -0.1],
                                                   accelerations=[0.5, 0.5],
                                                   time_from_start=rc.seconds_to_duration(0.05 + i * 1e-3)))
            sent[base_ns + 50 * 10**6 + i * 10**6] = time.perf_counter()
        references.publish(msg)

    def run_at_1khz(first: int, duration: float) -> int:
        start, k = time.perf_counter(), first
        while time.perf_counter() - start < duration:
            send(k)
            k += 1
            time.sleep(max(0.0, start + (k - first) * points * 1e-3 - time.perf_counter()))
        return k

    def send_motion(seconds: float) -> None:
        """The true pendulum's states at 1 kHz, stamped from now on, paced at real time."""
        from syrenets_ros.tools.bench.bags import exact_states

        origin, start = time.time(), time.perf_counter()
        for k, (_, names, q, qd, tau) in enumerate(exact_states(round(seconds * 1000))):
            msg = JointState(name=names, position=q, velocity=qd, effort=tau)
            msg.header.stamp = rc.seconds_to_stamp(origin + k * 1e-3)
            states.publish(msg)
            if k % 10 == 9:
                time.sleep(max(0.0, start + (k + 1) * 1e-3 - time.perf_counter()))

    try:
        k, deadline = 0, time.monotonic() + 90.0
        while not latencies and time.monotonic() < deadline:  # warm-up: until answers flow
            send_motion(1.0)  # until the predictor is up and has checked the model on it
            k = run_at_1khz(k, 0.5)
        k = run_at_1khz(k, 2.0)
        latencies.clear()
        sent.clear()
        first = k
        k = run_at_1khz(k, seconds)
        time.sleep(1.0)
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
        graph.stop()
    latencies.sort()
    asked = (k - first) * points

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] if latencies else math.nan

    return {"p50": pct(0.5), "p99": pct(0.99), "answered": len(latencies) / asked if asked else 0.0}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run-dir", type=Path, default=Path("runs/bench_online"))
    parser.add_argument("--json", type=Path, default=Path("runs/bench_online.json"))
    parser.add_argument("--before-swap", type=float, default=15.0)
    parser.add_argument("--after-swap", type=float, default=15.0)
    parser.add_argument("--real-time-factor", type=float, default=DEFAULT_REAL_TIME_FACTOR)
    parser.add_argument("--swap", action="append", default=[], metavar="NAME=VALUE[,VALUE]",
                        help="the mid-run change, one simulator parameter per option (default: link2_mass=2.0 "
                             "and link2_length=1.2); e.g. --swap link2_mass=2.0 --swap joint_stiffness=0,20 "
                             "--swap joint_damping=0.3,0.3 changes mass, a spring and damping in one request")
    parser.add_argument("--learned-only", action="store_true",
                        help="only run 1 (learned feed-forward): no true-model runs, no latency probe")
    parser.add_argument("--background", type=int, default=0, metavar="N",
                        help="busy processes (a pure Python spin each) running beside the whole benchmark")
    parser.add_argument("--background-nice", type=int, default=0, metavar="K",
                        help="their nice value (0-19; default %(default)s)")
    parser.add_argument("--background-new-session", action="store_true",
                        help="start them in a session of their own (setsid)")


@contextlib.contextmanager
def background_load(count: int, niceness: int, new_session: bool) -> Iterator[list[subprocess.Popen]]:
    """``count`` busy processes while the block runs; they end with it, whatever happens."""
    if count < 0 or not 0 <= niceness <= 19:
        raise SystemExit("syrenets-ros bench online: --background must be >= 0 and --background-nice in 0..19")
    # The nice value is set, not added to this process's own (a learner node in this process
    # would have made it 10 already); without the right to lower it, it stays as inherited.
    spin = (f"import os\ntry:\n    os.setpriority(os.PRIO_PROCESS, 0, {niceness})\nexcept PermissionError:\n"
            f"    pass\nwhile True:\n    pass\n")
    processes = [subprocess.Popen([sys.executable, "-c", spin], start_new_session=new_session)
                 for _ in range(count)]
    try:
        yield processes
    finally:
        for process in processes:
            process.kill()
            process.wait()


def parse_swap(items: list[str]) -> dict[str, object]:
    """``NAME=VALUE[,VALUE]`` options as simulator parameters (the simulator checks them)."""
    swap: dict[str, object] = {}
    for item in items:
        name, _, value = item.partition("=")
        try:
            numbers = [float(v) for v in value.split(",")]
        except ValueError:
            raise SystemExit(f"syrenets-ros bench online: --swap {item!r}: values must be numbers") from None
        if not name or not value:
            raise SystemExit(f"syrenets-ros bench online: --swap {item!r}: write NAME=VALUE[,VALUE]")
        swap[name] = numbers[0] if len(numbers) == 1 else numbers
    return swap


def run(args: argparse.Namespace) -> int:
    with background_load(args.background, args.background_nice, args.background_new_session):
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    load_before = os.getloadavg()
    timeline = Timeline(learned_before_swap=args.before_swap, after_swap=args.after_swap)
    if args.swap:
        timeline.swap = parse_swap(args.swap)
    print("== run 1/3: learned feed-forward, swap mid-run")
    learned = run_experiment(timeline, args.run_dir / "learned", real_time_factor=args.real_time_factor)
    print(summary_table(learned))
    if args.learned_only:
        return _report(args, learned, None, None, None, load_before)

    print("\n== run 2/3: true-model feed-forward through the same predictor (no learner)")
    payload = true_model_payload(pendulum.PendulumParams())
    keep_alive: list = []

    def serve_true_model(monitor: Monitor) -> None:
        from std_msgs.msg import String

        from syrenets_ros.ros import common as rc

        publisher = monitor.create_publisher(String, rc.MODEL, rc.LATCHED_QOS)
        publisher.publish(String(data=payload))
        keep_alive.append(publisher)

    reference = run_experiment(Timeline(learned_before_swap=args.before_swap, after_swap=0.0, swap={}),
                               args.run_dir / "true_model", real_time_factor=args.real_time_factor, nodes=[n for n in NODES if n.executable != "learner"],
                               hooks={"started": serve_true_model})
    # The same without transport: the simulator computes the true model's torque itself, so
    # (run 2) vs (run 3) is what the predictor path costs and (run 1) vs (run 2) the model.
    print("\n== run 3/3: true-model feed-forward computed in the simulator process (no predictor)")
    in_process = run_experiment(Timeline(learned_before_swap=args.before_swap, after_swap=0.0, swap={}),
                                args.run_dir / "true_model_in_sim", real_time_factor=args.real_time_factor,
                                nodes=[n for n in NODES if n.executable == "pendulum_sim"],
                                overrides={"pendulum_sim": {"feedforward_source": "true_model"}})
    print("\n== predictor latency at 1 kHz (predictor process alone, true model)")
    return _report(args, learned, reference, in_process, predictor_latency(), load_before)


def _report(args: argparse.Namespace, learned, reference, in_process, latency: dict[str, float] | None,
            load_before: tuple[float, float, float]) -> int:
    """Print and write the measured numbers (those of the runs not made are nan)."""
    def before_swap(run) -> float:
        return run.tracking_rms["learned_before_swap"] if run else math.nan

    latency = latency or {"p50": math.nan, "p99": math.nan, "answered": math.nan}
    learned_tracking, true_tracking, in_process_tracking = (before_swap(r) for r in (learned, reference, in_process))
    delivered = learned.delivered_ff.get("learned_before_swap", {})
    measured = {
        "adaptation_time_s": learned.adaptation_time,
        "learned_ff_tracking_rms_rad": learned_tracking,
        "true_ff_tracking_rms_rad": true_tracking,
        "learned_vs_true_tracking": learned_tracking / true_tracking if true_tracking else math.nan,
        "true_ff_in_sim_tracking_rms_rad": in_process_tracking,
        "learned_vs_true_in_sim_tracking": learned_tracking / in_process_tracking if in_process_tracking else math.nan,
        "delivered_ff_error_rms_before_swap": delivered.get("error_rms", math.nan),
        "delivered_ff_exact_before_swap": delivered.get("exact", math.nan),
        "delivered_ff_exact_after_adapting": learned.delivered_ff.get("after_adapting", {}).get("exact", math.nan),
        # The simulator's own count from the first step that had an answer to its last report.
        "delivered_ff_exact_after_first_model": float(learned.diagnostics.get(SIM, {}).get(
            "delivered_ff_exact_rate_since_first_answer", math.nan)),
        "pd_only_tracking_rms_rad": learned.tracking_rms["pd_only"],
        "real_time_factor_asked": args.real_time_factor,
        "real_time_factor_learned_run": learned.real_time_factor_achieved,
        "real_time_factor_true_model_run": reference.real_time_factor_achieved if reference else math.nan,
        "real_time_factor_in_sim_run": in_process.real_time_factor_achieved if in_process else math.nan,
        "latency_p50_ms": latency["p50"],
        "latency_p99_ms": latency["p99"],
        "latency_answered_fraction": latency["answered"],
        "first_model_s": learned.first_model_s,
        "models_after_change_worse_than_before": float(worse_after_change(learned.served_after_change)),
        "learner_lag_max_s": learned.learner_lag_max_s,
        "learner_lag_max_after_first_model_s": learned.learner_lag_max_after_first_model_s,
        "learner_samples_dropped_behind": float(learned.diagnostics.get("syrenets_learner", {}).get(
            "samples_dropped_behind", math.nan)),
        "background_processes": args.background,
        "background_nice": args.background_nice,
        "background_new_session": int(args.background_new_session),
    }
    print(f"\n{'metric':<40} {'measured':>12} {'target':>10}")
    for key, value in measured.items():
        bound = (f"<= {TARGETS[key]:g}" if key in TARGETS else
                 f">= {TARGETS_AT_LEAST[key]:g}" if key in TARGETS_AT_LEAST else "")
        print(f"{key:<40} {value:>12.4g} {bound:>10}")
    measured.update({f"cpu_per_sim_s[{name}]": value for name, value in learned.cpu_per_sim_second.items()})
    # Timing figures depend on what else runs: the 1-minute load average of the machine
    # (number of runnable processes; the machine's cores: os.cpu_count()).
    load = {"load_average_1min_start": load_before[0], "load_average_1min_end": os.getloadavg()[0],
            "cpu_count": os.cpu_count()}
    print("machine load: " + ", ".join(f"{k} {v:g}" for k, v in load.items()))
    measured.update(load)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"measured": measured, "targets": TARGETS, "targets_at_least": TARGETS_AT_LEAST,
                                     "learned_run": json.loads(learned.to_json()),
                                     "true_model_run": json.loads(reference.to_json()) if reference else None,
                                     "true_model_in_sim_run": json.loads(in_process.to_json()) if in_process else None}, indent=2, default=str))
    print(f"\nwrote {args.json}")
    return 0
