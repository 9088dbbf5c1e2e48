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


def ros_arguments(node: NodeSpec, params_file: str, use_sim_time: bool,
                  overrides: dict[str, object] | None = None) -> list[str]:
    """The ``--ros-args`` a process of this node is started with (outside ros2 launch)."""
    args = ["--ros-args", "-r", f"__node:={node.name}", "--params-file", params_file]
    values = {"use_sim_time": use_sim_time and node.follows_sim_time, **(overrides or {})}
    for key, value in values.items():
        args += ["-p", f"{key}:={literal(value)}"]
    return args

