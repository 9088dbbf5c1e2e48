"""``syrenets-ros bench bags``: how long `syrenets-ros learn` takes per million JointState
messages, and its peak memory, for recordings of growing length (flat memory = streaming).

Each recording is written to a temporary MCAP bag: 1 kHz states of the true pendulum along
the simulator's excitation, the effort being the exact inverse dynamics with the forward-
difference acceleration the learner forms. `learn` then runs as a user runs it, in a process
of its own; its CPU time and peak resident memory come from the kernel (wait4).
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
            "equation": next((line for line in lines if line.startswith("L = ")), "?")}


def run(args: argparse.Namespace) -> int:
    from syrenets_ros.offline.bag import write_joint_states

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
