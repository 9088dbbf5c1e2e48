"""``syrenets-ros bench speed``: how long a SyReNet training step and a frozen-model torque take.

A training step is everything the learner pays per minibatch: selection from the batch,
Euler–Lagrange torque, the paper's loss, backward and the Adam update. The public reference
implementation needs about 0.8 s per step at batch 48 in float64 on a 2-core CPU (SPEC §3);
the table prints the speed-up against that figure. The online learner's step (the same on
integral rows of short windows, SPEC §2b, at its default sizes) is timed beside it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Callable

import torch

from syrenets_ros.learning.syrenet import SyReNet, SyReNetConfig
from syrenets_ros.learning.training import Trainer, select_device, uniform_dataset
from syrenets_ros.online.learner import LearnerConfig
from syrenets_ros.online.rows import Sizes

REFERENCE_STEP_S = 0.8  # public reference code, batch 48, float64, 2 CPU cores (SPEC §3)
DTYPES = {"float32": torch.float32, "float64": torch.float64}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda[:N]")
    parser.add_argument("--repeats", type=int, default=20, help="timed repetitions per cell (median reported)")
    parser.add_argument("--batches", default="32,48,256,1024", help="training batch sizes, comma separated")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (0: torch's default). 1 is fastest on a small shared "
                             "machine: extra intra-op threads spin-wait when cores are busy")
    parser.add_argument("--json", default="runs/bench_speed.json", help="where to write the results")


def _median_seconds(action: Callable[[], object], repeats: int, device: torch.device,
                    warmup: int = 3) -> tuple[float, float]:
    """Median (wall, process CPU) time of ``action``; CUDA is synchronised so queued kernels
    count. CPU time is printed too because wall time on a shared machine includes waiting."""
    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for _ in range(warmup):
        action()
    sync()
    wall, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        action()
        sync()
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return statistics.median(wall), statistics.median(cpu)


def measure(device: torch.device, batches: list[int], repeats: int,
            progress: Callable[[str], None] = print) -> dict:
    """All timings as a JSON-able dict (seconds)."""
    data = uniform_dataset(max(max(batches), 1000), seed=0)
    rows = []
    inference = []
    online_rows = []
    online = LearnerConfig()
    window = Sizes.derive(online, online.joint_state_period).train_window
    online_samples = online.train_windows * window
    for dtype_name, dtype in DTYPES.items():
        torch.manual_seed(0)
        model = SyReNet(SyReNetConfig(dtype=dtype_name)).to(device)
        trainer = Trainer(model)
        sample = data.to(device).to(dtype)
        for batch in batches:
            part = sample.subset(slice(0, batch))
            seconds, cpu = _median_seconds(lambda: trainer.step(part.q, part.qd, part.qdd, part.tau), repeats, device)
            rows.append({"dtype": dtype_name, "batch": batch, "step_s": seconds, "step_cpu_s": cpu})
            progress(f"  train step  {dtype_name} batch {batch:5d}: {seconds * 1e3:9.2f} ms")
        part = sample.subset(slice(0, online_samples))
        integral_trainer = Trainer(model, loss_fn=lambda *b: model.integral_loss(
            *b, window=window, selection_size=online.batch_size))
        seconds, cpu = _median_seconds(lambda: integral_trainer.step(part.q, part.qd, part.qdd, part.tau), repeats,
                                       device)
        online_rows.append({"dtype": dtype_name, "windows": online.train_windows, "window": window,
                            "selection": online.batch_size, "step_s": seconds, "step_cpu_s": cpu})
        progress(f"  online step {dtype_name} {online.train_windows}x{window}: {seconds * 1e3:9.2f} ms")
        reference = sample.subset(slice(0, 256))
        frozen = model.freeze(reference.q, reference.qd)
        for count, reps in ((1, max(10 * repeats, 100)), (1000, repeats)):
            part = sample.subset(slice(0, count))
            seconds, cpu = _median_seconds(lambda: frozen.torque(part.q, part.qd, part.qdd), reps, device)
            inference.append({"dtype": dtype_name, "samples": count, "torque_s": seconds, "torque_cpu_s": cpu})
            progress(f"  frozen torque {dtype_name} {count:5d} samples: {seconds * 1e3:9.3f} ms")
    return {"train_step": rows, "online_step": online_rows, "frozen_torque": inference}


def _table(result: dict) -> str:
    lines = [f"device: {result['device']}  (torch {result['torch']}, {result['threads']} CPU threads)",
             "", "training step (selection + EL torque + loss + backward + Adam), median:",
             f"{'dtype':8} {'batch':>6} {'ms/step':>10} {'cpu ms':>8} {'samples/s':>11} {'vs reference 0.8 s':>19}"]
    for row in result["train_step"]:
        speedup = REFERENCE_STEP_S / row["step_s"]
        lines.append(f"{row['dtype']:8} {row['batch']:6d} {row['step_s'] * 1e3:10.2f} {row['step_cpu_s'] * 1e3:8.2f} "
                     f"{row['batch'] / row['step_s']:11.0f} {speedup:18.1f}x")
    lines += ["", "online learner step (integral rows: windows x samples, selector batch), median:",
              f"{'dtype':8} {'rows':>10} {'selector':>9} {'ms/step':>10} {'cpu ms':>8}"]
    for row in result["online_step"]:
        lines.append(f"{row['dtype']:8} {row['windows']:4d} x {row['window']:3d} {row['selection']:9d} "
                     f"{row['step_s'] * 1e3:10.2f} {row['step_cpu_s'] * 1e3:8.2f}")
    lines += ["", "frozen-model inverse dynamics (torque), median:",
              f"{'dtype':8} {'samples':>8} {'ms/call':>10} {'cpu ms':>8} {'us/sample':>10}"]
    for row in result["frozen_torque"]:
        lines.append(f"{row['dtype']:8} {row['samples']:8d} {row['torque_s'] * 1e3:10.3f} "
                     f"{row['torque_cpu_s'] * 1e3:8.3f} {row['torque_s'] * 1e6 / row['samples']:10.2f}")
    lines.append(f"\nreference implementation: ~{REFERENCE_STEP_S} s/step at batch 48, float64, 2-core CPU (SPEC §3)")
    lines.append("ms = wall-clock median; cpu ms = this process's CPU time (less sensitive to other load)")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    try:
        device = select_device(args.device)
        batches = [int(b) for b in args.batches.split(",") if b.strip()]
        if not batches or min(batches) < 1 or args.repeats < 1:
            raise ValueError("batches and repeats must be positive integers")
    except ValueError as exc:
        print(f"bench speed: {exc}")
        return 2
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
    print(f"bench speed on {name}: batches {batches}, {args.repeats} repeats", flush=True)
    result = {"device": name, "torch": torch.__version__, "threads": torch.get_num_threads(),
              "repeats": args.repeats, **measure(device, batches, args.repeats)}
    print()
    print(_table(result))
    path = Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2))
    print(f"\nwrote {path}")
    return 0
