"""Bring-up without a ROS distro: real node processes from the node table and params file."""

import ast
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from syrenets_ros.tools.bringup import Graph, robot_overrides
from syrenets_ros.tools.graph import NODES, ros_arguments

ROOT = Path(__file__).resolve().parents[2]
PREDICTOR = next(n for n in NODES if n.executable == "predictor")


def test_ros_arguments_follow_the_node_table_and_params_file():
    sim = next(n for n in NODES if n.executable == "pendulum_sim")
    args = ros_arguments(sim, "/p.yaml", use_sim_time=True, overrides={"real_time_factor": 0.5, "on": True})
    assert args[:5] == ["--ros-args", "-r", "__node:=pendulum_sim", "--params-file", "/p.yaml"]
    assert "use_sim_time:=false" in args, "the sim publishes /clock, it does not follow it"
    assert "real_time_factor:=0.5" in args and "on:=true" in args
    assert "use_sim_time:=true" in ros_arguments(PREDICTOR, "/p.yaml", use_sim_time=True)


def test_launch_file_starts_every_node_of_the_table_with_the_params_file():
    """No `launch` package exists here; check the file's structure statically."""
    source = (ROOT / "launch" / "syrenets.launch.py").read_text()
    tree = ast.parse(source)
    imports = {(node.module, alias.name) for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
               for alias in node.names}
    assert ("syrenets_ros.tools.graph", "NODES") in imports
    assert ("launch_ros.actions", "Node") in imports
    functions = {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)}
    assert "generate_launch_description" in functions
    assert "params.yaml" in source and '"use_sim_time"' in source


def _wait_for_line(path: Path, text: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and text in path.read_text():
            return True
        time.sleep(0.1)
    return False


def test_graph_stops_cleanly_and_reports_a_node_that_dies(tmp_path):
    healthy = Graph(nodes=[PREDICTOR], log_dir=tmp_path / "ok", echo=False).start()
    log = tmp_path / "ok" / "syrenets_predictor.log"
    try:
        assert _wait_for_line(log, "ready", timeout=60.0), log.read_text()
        time.sleep(1.5)  # a diagnostics cycle runs before the stop
        assert healthy.newly_exited() == {}, log.read_text()
    finally:
        codes = healthy.stop()
    assert codes == {"syrenets_predictor": 0}, "SIGINT must give a clean rclpy shutdown"

    broken = Graph(nodes=[PREDICTOR], overrides={"syrenets_predictor": {"forecast_rate": -5.0}},
                   log_dir=tmp_path / "bad", echo=False).start()
    try:
        deadline = time.monotonic() + 60
        exited: dict[str, int] = {}
        while not exited and time.monotonic() < deadline:
            exited = broken.newly_exited()
            time.sleep(0.1)
    finally:
        broken.stop()
    assert exited and exited["syrenets_predictor"] != 0
    assert "forecast_rate" in (tmp_path / "bad" / "syrenets_predictor.log").read_text()


def _running(pid: int) -> bool:
    """Alive and not a zombie (an orphan's zombie waits for a reaper, but is dead)."""
    try:
        state = next(line for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                     if line.startswith("State:"))
    except FileNotFoundError:
        return False
    return state.split()[1] not in ("Z", "X")


def test_nodes_die_with_a_hard_killed_bring_up(tmp_path):
    """kill -9 of `syrenets-ros up` must not leave nodes running (issue 12: all three did)."""
    up = subprocess.Popen([sys.executable, "-m", "syrenets_ros.tools.cli", "up", "--only", PREDICTOR.name,
                           "--log-dir", str(tmp_path)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert _wait_for_line(tmp_path / f"{PREDICTOR.name}.log", "ready", timeout=60.0)
        children = [int(pid) for pid in Path(f"/proc/{up.pid}/task/{up.pid}/children").read_text().split()]
        assert len(children) == 1 and _running(children[0])
        up.send_signal(signal.SIGKILL)
        up.wait()
        deadline = time.monotonic() + 15.0  # SIGTERM: a clean shutdown, ~4 s on a loaded machine
        while _running(children[0]) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _running(children[0]), "the node outlived its bring-up process"
    finally:
        if up.poll() is None:
            up.kill()
        for pid in locals().get("children", []):
            if _running(pid):
                os.kill(pid, signal.SIGKILL)


def test_a_urdf_travels_to_the_node_in_a_params_file_not_on_the_command_line(ros_context, tmp_path):
    """rcl parses `-p name:=value` as YAML: a URDF goes into a params file of the bring-up's own,
    and the simulator started from the node table holds that robot (7 Panda joints on /joint_states)."""
    from rclpy.node import Node
    from ros_helpers import Collector, spinning, wait_until
    from sensor_msgs.msg import JointState

    from syrenets_ros.dynamics.urdf import panda_urdf
    from syrenets_ros.tools.graph import text_parameters

    sim = next(n for n in NODES if n.executable == "pendulum_sim")
    urdf = panda_urdf()
    overrides = {sim.name: {"robot_description": urdf, "real_time_factor": 1.0}}
    args = ros_arguments(sim, "/p.yaml", True, overrides[sim.name], text_file="/t.yaml")
    assert args[5:7] == ["--params-file", "/t.yaml"] and "real_time_factor:=1.0" in args
    assert not any("robot_description" in a for a in args)
    assert "robot_description" not in text_parameters({sim.name: {"real_time_factor": 1.0}})
    given = robot_overrides(urdf)
    assert set(given) == {n.name for n in NODES} and all(v["robot_description"] == urdf for v in given.values())
    assert "joint_names" not in given[sim.name]
    assert given[PREDICTOR.name]["joint_names"] == [f"panda_joint{i}" for i in range(1, 8)]
    assert robot_overrides("") == {}

    probe = Node("test_probe", context=ros_context)
    states = Collector(probe, JointState, "/joint_states")
    graph = Graph(nodes=[sim], overrides=overrides, log_dir=tmp_path, echo=False).start()
    try:
        with spinning(ros_context, probe):
            assert wait_until(lambda: len(states) > 100, 60.0), (tmp_path / f"{sim.name}.log").read_text()
    finally:
        assert graph.stop() == {sim.name: 0}
        probe.destroy_node()
    assert list(states.messages()[-1].name) == [f"panda_joint{i}" for i in range(1, 8)]
