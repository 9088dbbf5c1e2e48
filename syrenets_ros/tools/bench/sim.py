"""``syrenets-ros bench sim``: simulator throughput and pacing.

1. core: bare ``Simulator`` steps/s (read state, PD torque, step) — the PyBullet ceiling;
2. node, real_time_factor 0: steps/s of the full ``pendulum_sim`` step loop (controller,
   /clock, /joint_states, /pendulum/reference, diagnostics), nobody subscribed;
3. node, real_time_factor 1 (1 kHz): fraction of late steps (started after the next step's
   slot) and lateness percentiles, plus the real-time factor achieved.

Each reports the CPU time (user + system, all threads of this process) per step, the measure
that holds on a shared machine. ``--robot panda`` runs all three on the 7-joint Franka Panda
from its URDF (issue 21) instead of the double pendulum.

The node runs in-process under a private namespace (its topics and /clock, /diagnostics
remapped), so a graph already running on this ROS domain is not disturbed.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from pathlib import Path

import numpy as np

BENCH_NAMESPACE = "/syrenets_bench_sim"


def bench_core(steps: int, robot_description: str = "") -> dict[str, float]:
    from syrenets_ros.plant.control import pd_torque
    from syrenets_ros.plant.settings import initial_settings
    from syrenets_ros.plant.simulator import Simulator

    settings = initial_settings({"robot_description": robot_description})
    start_pose, _, _ = settings.robot.excitation(0, 1.0, 0.1).sample(0.0)
    rest = (0.0,) * len(start_pose)
    with Simulator(settings.robot, 1.0e-3, start_pose) as sim:
        # process_time, not os.times: its 10 ms ticks read 0 CPU for a toy run on a fast machine
        start, cpu = time.perf_counter(), time.process_time()
        for _ in range(steps):
            q, qd = sim.state()
            sim.step(pd_torque(settings, q, qd, start_pose, rest, None))
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    return {"steps": steps, "seconds": elapsed, "steps_per_s": steps / elapsed, "cpu_ms_per_step": cpu / steps * 1e3}


def _run_node(real_time_factor: float, seconds: float, robot_description: str = "") -> dict[str, float]:
    import rclpy
    from rclpy.context import Context
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.parameter import Parameter

    from syrenets_ros.ros.sim_node import PendulumSimNode

    context = Context()
    rclpy.init(context=context)
    remaps = ["--ros-args", "-r", f"__ns:={BENCH_NAMESPACE}",
              "-r", f"/clock:={BENCH_NAMESPACE}/clock",
              "-r", f"/diagnostics:={BENCH_NAMESPACE}/diagnostics"]
    pacing = Parameter("real_time_factor", value=real_time_factor)
    robot = Parameter("robot_description", value=robot_description)
    node = PendulumSimNode(context=context, cli_args=remaps, start=False,
                           parameter_overrides=[pacing, robot])
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    try:
        node.start()
        time.sleep(0.5)  # warm-up: first steps include thread start and first publications
        first_step, first_paced = node.step_count, len(node.lateness_s)
        late_before, paced_before = node.stats.late_steps, node.stats.paced_steps
        start, cpu = time.monotonic(), time.process_time()
        time.sleep(seconds)
        steps = node.step_count - first_step
        elapsed, cpu = time.monotonic() - start, time.process_time() - cpu
        late = node.stats.late_steps - late_before
        paced = node.stats.paced_steps - paced_before
        lateness = np.array(list(node.lateness_s)[first_paced:]) if real_time_factor > 0 else None
    finally:
        node.stop()
        executor.shutdown()
        node.destroy_node()
        spinner.join(timeout=5.0)
        context.try_shutdown()
    result = {"real_time_factor_target": real_time_factor, "steps": steps, "seconds": elapsed,
              "steps_per_s": steps / elapsed, "cpu_ms_per_step": cpu / max(steps, 1) * 1e3,
              "real_time_factor_achieved": steps * 1.0e-3 / elapsed}
    if lateness is not None and len(lateness):
        result.update({"late_step_fraction": late / max(paced, 1),
                       "lateness_p50_ms": float(np.percentile(lateness, 50) * 1e3),
                       "lateness_p99_ms": float(np.percentile(lateness, 99) * 1e3),
                       "lateness_max_ms": float(lateness.max() * 1e3)})
    return result


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--core-steps", type=int, default=20000, help="steps of the bare core")
    parser.add_argument("--seconds", type=float, default=3.0,
                        help="wall seconds of the node at real_time_factor 0")
    parser.add_argument("--paced-seconds", type=float, default=5.0,
                        help="wall seconds of the node paced at 1 kHz")
    parser.add_argument("--robot", choices=("double_pendulum", "panda"), default="double_pendulum",
                        help="the simulated robot (panda: the Franka Panda's URDF from example-robot-data)")
    parser.add_argument("--json", type=Path, default=Path("runs/bench_sim.json"))


def run(args: argparse.Namespace) -> int:
    from syrenets_ros.plant.robot import named_robot_description

    description = named_robot_description(args.robot)
    print(f"robot: {args.robot}; core: {args.core_steps} steps ...", flush=True)
    core = bench_core(args.core_steps, description)
    print(f"node at real_time_factor 0 for {args.seconds:g} s ...", flush=True)
    fast = _run_node(0.0, args.seconds, description)
    print(f"node paced at 1 kHz (real_time_factor 1) for {args.paced_seconds:g} s ...", flush=True)
    paced = _run_node(1.0, args.paced_seconds, description)

    rows = [
        ("core steps/s (real_time_factor 0)", f"{core['steps_per_s']:.0f}"),
        ("core CPU per step [ms]", f"{core['cpu_ms_per_step']:.4f}"),
        ("node steps/s (real_time_factor 0)", f"{fast['steps_per_s']:.0f}"),
        ("node CPU per step, real_time_factor 0 [ms]", f"{fast['cpu_ms_per_step']:.4f}"),
        ("node CPU per step, paced 1 kHz [ms]", f"{paced['cpu_ms_per_step']:.4f}"),
        ("paced 1 kHz: late-step fraction", f"{paced['late_step_fraction']:.4f}"),
        ("paced 1 kHz: lateness p50 [ms]", f"{paced['lateness_p50_ms']:.3f}"),
        ("paced 1 kHz: lateness p99 [ms]", f"{paced['lateness_p99_ms']:.3f}"),
        ("paced 1 kHz: lateness max [ms]", f"{paced['lateness_max_ms']:.3f}"),
        ("paced 1 kHz: real-time factor achieved", f"{paced['real_time_factor_achieved']:.3f}"),
    ]
    width = max(len(name) for name, _ in rows)
    print(f"\n{'metric':<{width}}  {'measured':>10}")
    for name, value in rows:
        print(f"{name:<{width}}  {value:>10}")
    print("(late = a step that starts after the next step's slot; up to 10 ms behind the loop "
          "catches up, beyond that the schedule slips, which lowers the achieved factor)")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"robot": args.robot, "core": core, "node_unpaced": fast,
                                     "node_paced_1khz": paced}, indent=2))
    print(f"wrote {args.json}")
    return 0
