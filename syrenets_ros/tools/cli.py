"""``syrenets-ros``: the user CLI. Each subcommand lives in its own module, imported only
when chosen (so ``syrenets-ros set`` does not pay for importing torch). A subcommand module
provides ``add_arguments(parser)`` and ``run(args) -> int``."""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import NoReturn

COMMANDS: dict[str, tuple[str, str]] = {
    "up": ("syrenets_ros.tools.bringup", "start the three nodes without a ROS distro (like ros2 launch)"),
    "set": ("syrenets_ros.ros.param_client", "set node parameters at run time (like ros2 param set)"),
    "params": ("syrenets_ros.tools.params", "every node's parameters: type, default, range, description"),
    "demo": ("syrenets_ros.tools.demo", "bring the graph up, learn, swap a link, report and plot"),
    "record": ("syrenets_ros.tools.record", "record the graph's topics to a rosbag2 (MCAP)"),
    "learn": ("syrenets_ros.tools.learn", "learn the Lagrangian from a rosbag2 of sensor_msgs/JointState"),
    "predict": ("syrenets_ros.tools.predict", "inverse-dynamics torques of a saved model for a CSV of states"),
}

BENCHMARKS: dict[str, tuple[str, str]] = {
    "paper": ("syrenets_ros.tools.bench.paper", "the paper's Tables 1 and 2 for SyReNet and baselines"),
    "speed": ("syrenets_ros.tools.bench.speed", "training-step and frozen-inference timings"),
    "sim": ("syrenets_ros.tools.bench.sim", "simulator throughput and pacing"),
    "exactness": ("syrenets_ros.tools.bench.exactness",
                  "simulator vs ground truth with springs, damping, friction; sensor noise σ"),
    "online": ("syrenets_ros.tools.bench.online", "adaptation time, tracking, predictor latency"),
    "integrator": ("syrenets_ros.tools.bench.integrator", "energy drift of variational vs explicit rollouts"),
    "bags": ("syrenets_ros.tools.bench.bags", "`learn` CPU time per million messages and its peak memory"),
    "noise": ("syrenets_ros.tools.bench.noise", "learning through sensor noise: error vs σ, false alarms, swap"),
    "structure": ("syrenets_ros.tools.bench.structure", "springs, friction, swaps mid-run, network off/on"),
    "hostile": ("syrenets_ros.tools.bench.hostile", "cost and verdict of issue 12's hostile payloads and streams"),
    "chains": ("syrenets_ros.tools.bench.chains", "learning planar n-link chains exactly: errors and CPU per n"),
    "urdf": ("syrenets_ros.tools.bench.urdf", "a 7-joint arm from its URDF: grey-box errors, noise, payload"),
    "soak": ("syrenets_ros.tools.bench.soak", "each node's resident-memory growth (MB/min) over a long run"),
}


def _usage(table: dict[str, tuple[str, str]], prog: str) -> str:
    width = max(len(name) for name in table)
    rows = "\n".join(f"  {name:<{width}}  {summary}" for name, (_, summary) in table.items())
    return f"usage: {prog} COMMAND [options]\n\ncommands:\n{rows}\n"


class _Parser(argparse.ArgumentParser):
    """argparse with its error as one line (``prog: error: ...``, exit code 2), like every
    other refusal of the CLI, instead of the usage block followed by the error."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (--help for usage)\n")


def _dispatch(table: dict[str, tuple[str, str]], prog: str, argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage(table, prog))
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in table:
        print(f"{prog}: unknown command {name!r}\n\n{_usage(table, prog)}", file=sys.stderr)
        return 2
    module_name, summary = table[name]
    module = importlib.import_module(module_name)
    parser = _Parser(prog=f"{prog} {name}", description=summary)
    module.add_arguments(parser)
    try:
        args = parser.parse_args(rest)
    except SystemExit as stop:  # --help, or the parser's one-line refusal: main() returns its code
        return int(stop.code or 0)
    return int(module.run(args) or 0)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "bench":
        return _dispatch(BENCHMARKS, "syrenets-ros bench", argv[1:])
    listing = dict(COMMANDS, bench=("", "benchmarks: " + ", ".join(BENCHMARKS)))
    return _dispatch(listing, "syrenets-ros", argv)


if __name__ == "__main__":
    sys.exit(main())
