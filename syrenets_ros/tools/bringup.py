"""Bring the graph up without a ROS distro: one process per node of the node table, with the
same params file the launch file uses. Ctrl-C stops them all; a node that dies is reported.
The node processes die with the bring-up process however it ends (even ``kill -9``): each asks
the kernel for SIGTERM when its parent dies (Linux PR_SET_PDEATHSIG), so no orphans keep
driving the robot.

``syrenets-ros up`` is the user command; :class:`Graph` is reused by the demo, the online
benchmark and the end-to-end test.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import IO, Callable, Iterable

from syrenets_ros.tools.graph import NODES, NodeSpec, ros_arguments, text_parameters
from syrenets_ros.resources import params_file as default_params_file


_PR_SET_PDEATHSIG = 1  # linux/prctl.h
_libc = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None


def _die_with_parent(parent: int) -> Callable[[], None] | None:
    """preexec_fn for a child that gets SIGTERM (a clean node shutdown) when ``parent`` dies.
    If the parent died before the request took effect, the child exits at once."""
    if _libc is None:
        return None

    def request() -> None:
        if _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0 or os.getppid() != parent:
            os._exit(1)

    return request


class Graph:
    """The running node processes. Use as a context manager so they are always stopped."""

    def __init__(self, params_file: Path | None = None, use_sim_time: bool = True,
                 overrides: dict[str, dict[str, object]] | None = None,
                 nodes: Iterable[NodeSpec] = NODES, log_dir: Path | None = None,
                 echo: bool = True) -> None:
        self.params_file = Path(params_file or default_params_file())
        self.use_sim_time = use_sim_time
        self.overrides = overrides or {}
        self.nodes = tuple(nodes)
        self.log_dir = Path(log_dir) if log_dir else None
        self.echo = echo
        self.processes: dict[str, subprocess.Popen] = {}
        self.reported_exits: dict[str, int] = {}
        self._pumps: list[threading.Thread] = []
        self._text_file: str | None = None  # the overrides -p cannot carry (a URDF), while running

    def command(self, node: NodeSpec) -> list[str]:
        return [sys.executable, "-m", node.module,
                *ros_arguments(node, str(self.params_file), self.use_sim_time, self.overrides.get(node.name),
                               self._text_file)]

    def start(self) -> "Graph":
        if self.log_dir:
            self.log_dir.mkdir(parents=True, exist_ok=True)
        text = text_parameters(self.overrides)
        if text:
            handle, self._text_file = tempfile.mkstemp(prefix="syrenets_params_", suffix=".yaml")
            with os.fdopen(handle, "w") as file:
                file.write(text)
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        for node in self.nodes:
            process = subprocess.Popen(self.command(node), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL, env=env, text=True, bufsize=1,
                                       preexec_fn=_die_with_parent(os.getpid()))
            self.processes[node.name] = process
            log = open(self.log_dir / f"{node.name}.log", "w") if self.log_dir else None
            pump = threading.Thread(target=self._pump, args=(node.name, process.stdout, log), daemon=True)
            pump.start()
            self._pumps.append(pump)
        return self

    def _pump(self, name: str, stream: IO[str], log: IO[str] | None) -> None:
        """Copy a node's output, prefixed like ros2 launch does, to the terminal and/or a log."""
        with stream:
            for line in stream:
                if self.echo:
                    sys.stdout.write(f"[{name}] {line}")
                if log:
                    log.write(line)
                    log.flush()
        if log:
            log.close()

    def newly_exited(self) -> dict[str, int]:
        """Nodes that exited since the last call, with their exit codes."""
        exited = {}
        for name, process in self.processes.items():
            code = process.poll()
            if code is not None and name not in self.reported_exits:
                self.reported_exits[name] = code
                exited[name] = code
        return exited

    def cpu_seconds(self) -> dict[str, float]:
        """CPU time (user + system) each running node process has used so far, from
        /proc (Linux); empty elsewhere. The load-independent measure of what a node costs."""
        used = {}
        for name, process in self.processes.items():
            try:
                with open(f"/proc/{process.pid}/stat") as stat:
                    fields = stat.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            used[name] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        return used

    def stop(self, timeout: float = 20.0) -> dict[str, int]:
        """SIGINT (a clean rclpy shutdown), then SIGTERM, then SIGKILL; returns exit codes."""
        for sig, wait in ((signal.SIGINT, timeout), (signal.SIGTERM, 3.0), (signal.SIGKILL, 3.0)):
            running = [p for p in self.processes.values() if p.poll() is None]
            if not running:
                break
            for process in running:
                process.send_signal(sig)
            deadline = time.monotonic() + wait
            for process in running:
                try:
                    process.wait(max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    pass
        for pump in self._pumps:
            pump.join(timeout=2.0)
        if self._text_file:
            os.unlink(self._text_file)
            self._text_file = None
        return {name: process.returncode for name, process in self.processes.items()}

    def __enter__(self) -> "Graph":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def robot_overrides(robot_description: str) -> dict[str, dict[str, object]]:
    """The same URDF for every node of the table, and its joints (movable joints, root first) to
    the learner and the predictor; nothing for "" (the simulator's own double pendulum)."""
    if not robot_description:
        return {}
    from syrenets_ros.plant.robot import urdf_robot
    from syrenets_ros.plant.settings import NODE_NAME as SIM

    joints = list(urdf_robot(robot_description).joint_names)
    return {node.name: {"robot_description": robot_description, **({"joint_names": joints} if node.name != SIM else {})}
            for node in NODES}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--params-file", type=Path, default=None,
                        help="parameters YAML (default: the package's config/params.yaml)")
    parser.add_argument("--robot", choices=("double_pendulum", "panda"), default="double_pendulum",
                        help="the simulated robot: the double pendulum (default) or the Franka Panda's URDF, "
                             "given to every node as robot_description")
    parser.add_argument("--use-sim-time", choices=("true", "false"), default="true",
                        help="learner and predictor follow the simulator's /clock")
    parser.add_argument("--only", nargs="+", metavar="NODE", choices=[n.name for n in NODES],
                        help="start only these nodes")
    parser.add_argument("--log-dir", type=Path, default=None, help="also write each node's output here")


def run(args: argparse.Namespace) -> int:
    from syrenets_ros.plant.robot import named_robot_description

    nodes = [n for n in NODES if not args.only or n.name in args.only]
    graph = Graph(args.params_file, args.use_sim_time == "true", nodes=nodes, log_dir=args.log_dir,
                  overrides=robot_overrides(named_robot_description(args.robot)))
    print(f"starting {', '.join(n.name for n in nodes)} with {graph.params_file} (Ctrl-C stops all)")
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # `kill`/systemd stop like Ctrl-C
    graph.start()
    failed = False
    try:
        while any(p.poll() is None for p in graph.processes.values()):
            for name, code in graph.newly_exited().items():
                failed |= code != 0
                print(f"[bringup] node {name} exited with code {code}", file=sys.stderr)
            time.sleep(0.2)
    except KeyboardInterrupt:
        print("[bringup] stopping all nodes")
    finally:
        codes = graph.stop()
    print("[bringup] exit codes: " + ", ".join(f"{n}={c}" for n, c in codes.items()))
    return 1 if failed else 0
