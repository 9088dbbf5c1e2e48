"""``syrenets-ros bench soak``: bring the graph up as ``syrenets-ros up`` does (one process per
node, the params file), let it run, and sample each node process's resident memory (VmRSS in
/proc/<pid>/status) every ``--interval`` s. The growth per node is the least-squares slope of
RSS over wall time after the ``--warm-up`` (imports, first models, buffers filling), in MB
(10^6 bytes) per minute; issue 23 asks ≤ 0.5 MB/min for every node over 10 min at rtf 0.5.
A process whose RSS swings (the learner's torch buffers come and go by ~100 MB) makes that
slope noisy, so RSS is also read every second and the slope of each interval's lowest value
(the floor: what stays allocated) is printed beside it; a leak raises both. An interval in
which the RSS never fell back lifts that floor fit too, so the slope of the lower envelope (each
floor replaced by the lowest RSS from then on) is printed as well: a leak raises it, a swing
does not.
Linux only (it reads /proc). RSS does not depend much on what else runs on the machine (a
loaded machine runs fewer sim seconds per wall second; the load average is printed)."""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path

from syrenets_ros.tools.bringup import Graph
from syrenets_ros.tools.experiment import private_domain
from syrenets_ros.tools.report import SIM

TARGET_MB_PER_MIN = 0.5
MB = 1e6


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--minutes", type=float, default=10.0, help="how long the graph runs (default %(default)s)")
    parser.add_argument("--real-time-factor", type=float, default=0.5,
                        help="the simulator's real_time_factor (default %(default)s)")
    parser.add_argument("--interval", type=float, default=30.0, help="seconds between RSS samples (default %(default)s)")
    parser.add_argument("--warm-up", type=float, default=1.0,
                        help="minutes left out of the fit (default %(default)s)")
    parser.add_argument("--params-file", type=Path, default=None,
                        help="parameters YAML (default: the package's config/params.yaml)")
    parser.add_argument("--log-dir", type=Path, default=Path("runs/bench_soak/logs"))
    parser.add_argument("--json", type=Path, default=Path("runs/bench_soak.json"))


def rss_bytes(pid: int) -> int | None:
    """Resident set size of a process from /proc (None once it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        return None
    return None


def slope_per_minute(samples: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, bytes) samples, in MB per minute; NaN under 2 samples."""
    if len(samples) < 2:
        return math.nan
    n = len(samples)
    mean_t = sum(t for t, _ in samples) / n
    mean_y = sum(y for _, y in samples) / n
    var_t = sum((t - mean_t) ** 2 for t, _ in samples)
    if var_t == 0:
        return math.nan
    return sum((t - mean_t) * (y - mean_y) for t, y in samples) / var_t * 60.0 / MB


def lower_envelope(floors: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Each floor replaced by the lowest RSS from then on: an interval in which the RSS never fell
    back no longer counts, while a leak (what stays allocated for good) still rises."""
    envelope, lowest = [], math.inf
    for t, y in reversed(floors):
        lowest = min(lowest, y)
        envelope.append((t, lowest))
    return envelope[::-1]


def run(args: argparse.Namespace) -> int:
    if not (args.minutes > 0 and args.interval > 0 and 0 <= args.warm_up < args.minutes
            and 0 <= args.real_time_factor <= 10):
        raise SystemExit("syrenets-ros bench soak: need --minutes > --warm-up >= 0, --interval > 0 and "
                         "--real-time-factor in 0..10")
    if not os.path.exists(f"/proc/{os.getpid()}/status"):
        raise SystemExit("syrenets-ros bench soak: needs Linux /proc to read each node's resident memory")
    domain = private_domain()
    graph = Graph(args.params_file, overrides={SIM: {"real_time_factor": args.real_time_factor}},
                  log_dir=args.log_dir, echo=False)
    print(f"soak: {', '.join(n.name for n in graph.nodes)} for {args.minutes:g} min at "
          f"rtf {args.real_time_factor:g}, RSS every {args.interval:g} s, fit after {args.warm_up:g} min "
          f"(ROS_DOMAIN_ID={domain}, logs in {args.log_dir})")
    samples: dict[str, list[tuple[float, float]]] = {}  # RSS at each interval's end
    floors: dict[str, list[tuple[float, float]]] = {}  # the lowest RSS read within each interval
    load_before = os.getloadavg()[0]
    graph.start()
    started = time.monotonic()
    died: dict[str, int] = {}
    try:
        k, lowest = 0, {}
        while True:
            elapsed = time.monotonic() - started
            for name, process in graph.processes.items():
                size = rss_bytes(process.pid)
                if size is not None and process.poll() is None:
                    lowest[name] = min(size, lowest.get(name, size))
            died.update(graph.newly_exited())
            if died or elapsed >= k * args.interval:
                for name, process in graph.processes.items():
                    size = rss_bytes(process.pid)
                    if size is not None and name in lowest:
                        samples.setdefault(name, []).append((elapsed, size))
                        floors.setdefault(name, []).append((elapsed, lowest.pop(name)))
                line = "  ".join(f"{name} {series[-1][1] / MB:.1f}" for name, series in samples.items())
                print(f"t={elapsed / 60:5.2f} min  RSS MB: {line}", flush=True)
                k += 1
            if died or elapsed >= args.minutes * 60:
                break
            time.sleep(max(0.0, min(started + k * args.interval, time.monotonic() + 1.0) - time.monotonic()))
        cpu = graph.cpu_seconds()
    finally:
        graph.stop()
    wall = time.monotonic() - started

    def after_warm_up(series: list[tuple[float, float]], lead: float = 0.0) -> list[tuple[float, float]]:
        return [(t, y) for t, y in series if t >= args.warm_up * 60 + lead]

    rows = {}
    for name, series in samples.items():
        fitted = after_warm_up(series)
        rows[name] = {"rss_start_mb": series[0][1] / MB,
                      "rss_after_warm_up_mb": fitted[0][1] / MB if fitted else math.nan,
                      "rss_end_mb": series[-1][1] / MB, "slope_mb_per_min": slope_per_minute(fitted),
                      # a floor is the lowest of the interval before it: those that began after the warm-up
                      "floor_slope_mb_per_min": slope_per_minute(after_warm_up(floors[name], args.interval)),
                      "envelope_slope_mb_per_min": slope_per_minute(lower_envelope(after_warm_up(floors[name], args.interval))),
                      "samples_fitted": len(fitted), "cpu_s": cpu.get(name, math.nan)}
    print(f"\n{'node':<20} {'RSS start':>10} {'after warm-up':>14} {'end':>8} {'MB/min':>8} {'floor MB/min':>13} "
          f"{'envelope MB/min':>16} {'target':>8} {'CPU s':>8}")
    for name, row in rows.items():
        print(f"{name:<20} {row['rss_start_mb']:>10.1f} {row['rss_after_warm_up_mb']:>14.1f} {row['rss_end_mb']:>8.1f} "
              f"{row['slope_mb_per_min']:>8.3f} {row['floor_slope_mb_per_min']:>13.3f} "
              f"{row['envelope_slope_mb_per_min']:>16.3f} "
              f"{'<= ' + format(TARGET_MB_PER_MIN, 'g'):>8} {row['cpu_s']:>8.1f}")
    load = {"load_average_1min_start": load_before, "load_average_1min_end": os.getloadavg()[0],
            "cpu_count": os.cpu_count(), "wall_s": wall}
    print("machine load: " + ", ".join(f"{k} {v:g}" for k, v in load.items()))
    if died:
        print("nodes died: " + ", ".join(f"{name} (exit {code})" for name, code in died.items()))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"nodes": rows, "samples": samples, "floors": floors, "died": died, "load": load,
                                     "minutes": args.minutes, "real_time_factor": args.real_time_factor,
                                     "target_mb_per_min": TARGET_MB_PER_MIN}, indent=2))
    print(f"wrote {args.json}")
    return 1 if died else 0
