"""The node table: the single description of the graph, read by the launch file and by
``syrenets-ros up`` alike, so both ways of starting it run the same nodes."""

from __future__ import annotations

from dataclasses import dataclass

from syrenets_ros.schema import literal


@dataclass(frozen=True)
class NodeSpec:
    executable: str  # console script (setup.py) == ros2 launch executable
    name: str  # ROS node name (SPEC §5), also the params.yaml section
    module: str  # python module with main(), for starting without a ROS distro
    role: str
    follows_sim_time: bool = True  # False for the node that publishes /clock itself


NODES: tuple[NodeSpec, ...] = (
    NodeSpec("pendulum_sim", "pendulum_sim", "syrenets_ros.ros.sim_node",
             "PyBullet double pendulum: excitation, PD + feed-forward control",
             follows_sim_time=False),
    NodeSpec("learner", "syrenets_learner", "syrenets_ros.ros.learner_node",
             "trains SyReNet on /joint_states, publishes model snapshots"),
    NodeSpec("predictor", "syrenets_predictor", "syrenets_ros.ros.predictor_node",
             "serves feed-forward torques and forecasts from the newest snapshot"),
)


def node_spec(executable: str) -> NodeSpec:
    """The table's entry for a node, by its executable name."""
    return next(node for node in NODES if node.executable == executable)


def is_text(value: object) -> bool:
    """A string ``-p name:=value`` cannot carry: rcl parses that value as YAML, and a URDF (lines,
    quotes, ``<``) must travel as a string in a params file instead (:func:`text_parameters`)."""
    return isinstance(value, str) and ("\n" in value or "<" in value or len(value) > 200)


def ros_arguments(node: NodeSpec, params_file: str, use_sim_time: bool,
                  overrides: dict[str, object] | None = None, text_file: str | None = None) -> list[str]:
    """The ``--ros-args`` a process of this node is started with (outside ros2 launch); text
    overrides are left to ``text_file``, written by :func:`text_parameters`."""
    args = ["--ros-args", "-r", f"__node:={node.name}", "--params-file", params_file]
    if text_file:
        args += ["--params-file", text_file]
    values = {"use_sim_time": use_sim_time and node.follows_sim_time, **(overrides or {})}
    for key, value in values.items():
        if not is_text(value):
            args += ["-p", f"{key}:={literal(value)}"]
    return args


def text_parameters(overrides: dict[str, dict[str, object]]) -> str:
    """A params file holding the text overrides of each node (e.g. robot_description), or ""."""
    import yaml

    sections = {node: {"ros__parameters": text} for node, values in overrides.items()
                if (text := {key: value for key, value in values.items() if is_text(value)})}
    return yaml.safe_dump(sections) if sections else ""

