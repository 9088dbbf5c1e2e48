"""``syrenets-ros bench bags``: how long `syrenets-ros learn` takes per million JointState
messages, and its peak memory, for recordings of growing length (flat memory = streaming);
with ``--rates``/``--segments``, whether recordings at other rates and in short segments give
the exact model, and the integral rows' quadrature error against the rate.

Each recording is written to a temporary MCAP bag. The length sweep: 1 kHz states of the true
pendulum along the simulator's excitation, the effort being the exact inverse dynamics with the
forward-difference acceleration the learner forms. The rate and segment sweep: continuous
motion of the true pendulum sampled at each rate in segments of each length, 1 s apart, effort
its exact inverse dynamics (a recording of a continuous-time robot, not of our simulator), in
bags without q̈; the learned model is scored on other motion with its true q̈. `learn` runs as
a user runs it, in a process of its own; its CPU time and peak resident memory come from the
kernel (wait4).
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator

CHUNK = 50_000  # messages generated at once: the generator's memory stays flat too


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--messages", default="100000,400000",
                        help="comma-separated recording lengths [messages]; 3600000 = one hour at 1 kHz")
    parser.add_argument("--network", action=argparse.BooleanOptionalAction, default=False,
                        help="train the SyReNet during learning too")
    parser.add_argument("--snapshot-period", type=float, default=None, help="passed to learn (default: learn's)")
    parser.add_argument("--keep", type=Path, default=None, help="write the bags here instead of a temp folder")
    parser.add_argument("--rates", default="", help="instead: comma-separated sample rates [Hz] of the rate and "
                        "segment sweep, e.g. 25,100,1000")
    parser.add_argument("--segments", default="4,8", help="segment lengths [s] of that sweep (default %(default)s)")
    parser.add_argument("--seconds", type=float, default=60.0, help="recorded motion per run of that sweep [s]")


def exact_states(count: int) -> Iterator[tuple[int, list[str], list[float], list[float], list[float]]]:
    """(stamp [ns], names, q, q̇, τ) with τ_k = ID(q_k, q̇_k, (q̇_{k+1} − q̇_k)/Δt)."""
    import torch

    from syrenets_ros.dynamics import pendulum
    from syrenets_ros.plant.excitation import MultiSine

    excitation = MultiSine.from_seed(0)
    amplitudes, phases = (torch.tensor(v, dtype=torch.float64) for v in (excitation.amplitudes, excitation.phases))
    omega = 2 * math.pi * excitation.base_frequency * torch.arange(1, amplitudes.shape[1] + 1, dtype=torch.float64)
    names = list(pendulum.JOINT_NAMES)
    for start in range(0, count, CHUNK):
        t = torch.arange(start, min(count, start + CHUNK) + 1, dtype=torch.float64)[:, None, None] * 1e-3
        angle = omega * t + phases
        q = (amplitudes * torch.sin(angle)).sum(-1)
        qd = (amplitudes * omega * torch.cos(angle)).sum(-1)
        qdd = (qd[1:] - qd[:-1]) / 1e-3
        tau = pendulum.inverse_dynamics(q[:-1], qd[:-1], qdd, pendulum.PendulumParams())
        for k, (qk, qdk, tauk) in enumerate(zip(q[:-1].tolist(), qd[:-1].tolist(), tau.tolist())):
            yield (start + k) * 1_000_000, names, qk, qdk, tauk


def measure(bag: Path, args: argparse.Namespace) -> dict[str, float | str]:
    """Run `learn` on the bag in a child process; CPU and peak RSS from wait4."""
    command = [sys.executable, "-m", "syrenets_ros.tools.cli", "learn", str(bag), "-o", str(bag) + ".json",
               "--network" if args.network else "--no-network"]
    return _run_learn(command, args)


def _run_learn(command: list[str], args: argparse.Namespace) -> dict[str, float | str]:
    if args.snapshot_period is not None:
        command += ["--snapshot-period", str(args.snapshot_period)]
    started = time.monotonic()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise RuntimeError(f"learn failed ({process.returncode}):\n{output}")
    lines = output.splitlines()
    return {"cpu_s": usage.ru_utime + usage.ru_stime, "wall_s": time.monotonic() - started,
            "peak_rss_mb": usage.ru_maxrss / 1024,
            "rmse": next((line for line in lines if line.startswith("held-out")), "?"),
            "equation": next((line for line in lines if line.startswith("L = ")), "?"),
            "chosen": next((line for line in lines if line.startswith("chosen: ")), "?")}


QUADRATURE_RATES = (25.0, 50.0, 100.0, 200.0, 1000.0)


def quadrature_table() -> list[str]:
    """Relative error of the true model's integral rows per form and rate, on continuous
    motion with exact q̇ (what a recording of a real robot approximates), each form at the
    window the learner gives it at that rate."""
    from syrenets_ros.dynamics import pendulum
    from syrenets_ros.learning import integral
    from syrenets_ros.learning.terms import true_pendulum_terms
    from syrenets_ros.online.learner import LearnerConfig
    from syrenets_ros.online.rows import Sizes
    from syrenets_ros.tools.streams import sampled_motion

    truth = true_pendulum_terms(pendulum.PendulumParams())
    lines = ["| rate [Hz] | acceleration (forward difference) | central differences | weak (integrated by parts) |",
             "|---|---|---|---|"]
    for rate in QUADRATURE_RATES:
        motion = sampled_motion(rate, (8.0,) * 3, seed=11)
        forward = motion.qdd.clone()
        forward[:-1] = (motion.qd[1:] - motion.qd[:-1]) * rate  # what a bag without q̈ gives
        window = Sizes.derive(LearnerConfig(), 1.0 / rate).window
        cells = []
        for form in integral.FORMS:
            rows = integral.RowForm(form, max(window, integral.WEAK_MIN_WINDOW) if form == "weak" else window,
                                    max(1, window // 4))
            starts = rows.starts(motion.stamp)
            target = rows.target(motion.stamp, motion.tau, starts)
            error = rows.predicted(truth, motion.stamp, motion.q, motion.qd, forward, starts) - target
            cells.append(f"{float(error.norm() / target.norm()):.1e} ({rows.window} samples)")
        lines.append(f"| {rate:g} | " + " | ".join(cells) + " |")
    return lines


def sweep(args: argparse.Namespace) -> None:
    """Rate × segment length: continuous motion in bags without q̈, learned by `learn`, scored
    on other motion with its true q̈ (torque MSE summed over joints, averaged over samples)."""
    from syrenets_ros.dynamics import pendulum
    from syrenets_ros.offline.bag import write_joint_states
    from syrenets_ros.online.serving import load_model_file
    from syrenets_ros.tools.streams import sampled_motion

    rates = [float(v) for v in args.rates.split(",")]
    lengths = [float(v) for v in args.segments.split(",")]
    other = sampled_motion(100.0, (6.0,) * 4, seed=500)
    truth = pendulum.inverse_dynamics(other.q, other.qd, other.qdd, pendulum.PendulumParams())
    print("integral rows' relative error on the true model (continuous motion, q̈ from a bag's forward "
          "differences):\n" + "\n".join(quadrature_table()) + "\n")
    print(f"{args.seconds:g} s of motion per run, segments 1 s apart, bags without q̈; "
          f"{'with' if args.network else 'without'} the network\n")
    print("| rate [Hz] | segment [s] | messages | rows chosen | terms | held-out MSE [(N·m)²] | learn CPU [s] | "
          "CPU per recorded s [s] |")
    print("|---|---|---|---|---|---|---|---|")
    names = list(pendulum.JOINT_NAMES)
    with tempfile.TemporaryDirectory() as scratch:
        folder = args.keep or Path(scratch)
        for rate in rates:
            for length in lengths:
                motion = sampled_motion(rate, (length,) * max(1, round(args.seconds / length)), seed=3)
                bag = folder / f"sweep_{rate:g}Hz_{length:g}s"
                write_joint_states(bag, ((round(float(t) * 1e9), names, q, qd, tau) for t, q, qd, tau in zip(
                    motion.stamp.tolist(), motion.q.tolist(), motion.qd.tolist(), motion.tau.tolist())))
                command = [sys.executable, "-m", "syrenets_ros.tools.cli", "learn", str(bag), "-o", f"{bag}.json",
                           "--network" if args.network else "--no-network"]
                try:
                    result = _run_learn(command, args)
                except RuntimeError as error:
                    print(f"| {rate:g} | {length:g} | {len(motion.stamp)} | refused: "
                          f"{str(error).splitlines()[-1][:160]} | | | | |", flush=True)
                    continue
                model = load_model_file(f"{bag}.json", names).model
                mse = float((model.torque(other.q, other.qd, other.qdd) - truth).square().sum(-1).mean())
                form = result["chosen"].split()[1] if result["chosen"] != "?" else "?"
                print(f"| {rate:g} | {length:g} | {len(motion.stamp)} | {form} | {len(model.library)} | {mse:.1e} | "
                      f"{result['cpu_s']:.1f} | {result['cpu_s'] / args.seconds:.2f} |", flush=True)


def run(args: argparse.Namespace) -> int:
    from syrenets_ros.offline.bag import write_joint_states

    if args.rates:
        sweep(args)
        return 0

    counts = [int(float(v)) for v in args.messages.split(",")]
    print(__doc__.split("\n\n")[0].replace("``", ""))
    print(f"learn {'with' if args.network else 'without'} the network; load average {os.getloadavg()[0]:.1f} "
          f"on {os.cpu_count()} CPUs (CPU time is what to compare)\n")
    print(f"{'messages':>10} {'bag MB':>8} {'write s':>8} {'learn CPU s':>12} {'CPU s / 1M msgs':>16} "
          f"{'wall s':>8} {'peak RSS MB':>12}")
    with tempfile.TemporaryDirectory() as scratch:
        folder = args.keep or Path(scratch)
        for count in counts:
            bag = folder / f"bench_{count}"
            if bag.exists():
                print(f"{bag} exists already: remove it or --keep another folder", file=sys.stderr)
                return 2
            started = time.process_time()
            write_joint_states(bag, exact_states(count))
            written = time.process_time() - started
            size = sum(p.stat().st_size for p in bag.iterdir()) / 1e6
            result = measure(bag, args)
            print(f"{count:>10} {size:>8.1f} {written:>8.1f} {result['cpu_s']:>12.1f} "
                  f"{result['cpu_s'] / count * 1e6:>16.1f} {result['wall_s']:>8.1f} {result['peak_rss_mb']:>12.0f}",
                  flush=True)
            print(f"{'':>10} {result['rmse']}")
    print(f"\nlast model: {result['equation']}")
    return 0
