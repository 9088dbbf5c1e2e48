"""The node table: the single description of the graph, read by the launch file and by
``syrenets-ros up`` alike, so both ways of starting it run the same nodes."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class NodeSpec:
    executable: str  # console script (setup.py) == ros2 launch executable
    name: str  # ROS node name (SPEC §5), also the params.yaml section
    module: str  # python module with main(), for starting without a ROS distro
    role: str


NODES: tuple[NodeSpec, ...] = (
    NodeSpec("pendulum_sim", "pendulum_sim", "syrenets_ros.sim_node",
             "PyBullet double pendulum: excitation, PD + feed-forward control"),
    NodeSpec("learner", "syrenets_learner", "syrenets_ros.learner_node",
             "trains SyReNet on /joint_states, publishes model snapshots"),
    NodeSpec("predictor", "syrenets_predictor", "syrenets_ros.predictor_node",
             "serves feed-forward torques and forecasts from the newest snapshot"),
)
