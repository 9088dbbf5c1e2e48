"""``syrenets-ros record OUT``: record the graph's topics (joint states, reference,
predicted torque, model snapshots, equation, diagnostics) to an MCAP rosbag2 that
`ros2 bag info`, `ros2 bag play` and Foxglove open, until Ctrl-C or for --duration seconds."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from syrenets_ros.tools.inputs import positive_seconds

EXIT_UNUSABLE = 2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out", type=Path, help="bag folder to create (must not exist)")
    parser.add_argument("--duration", type=positive_seconds, default=None,
                        help="wall seconds to record (default: until Ctrl-C)")


def run(args: argparse.Namespace) -> int:
    from syrenets_ros.offline.bag import BagError

    if args.out.exists():
        print(f"syrenets-ros record: error: {args.out} exists; not overwriting a recording", file=sys.stderr)
        return EXIT_UNUSABLE
    from syrenets_ros.ros import common as rc
    from syrenets_ros.ros.recorder import Recorder

    recorders: list[Recorder] = []

    def make_recorder() -> Recorder:
        recorders.append(Recorder(args.out))
        return recorders[-1]

    try:
        rc.run_node(make_recorder, duration=args.duration)
    except BagError as error:
        print(f"syrenets-ros record: error: {error}", file=sys.stderr)
        return EXIT_UNUSABLE
    counts = recorders[0].counts
    listing = ", ".join(f"{topic} {count}" for topic, count in counts.items())
    print(f"recorded {sum(counts.values())} messages to {args.out}: {listing}")
    return 0
