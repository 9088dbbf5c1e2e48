"""ros2 launch syrenets_ros syrenets.launch.py [use_sim_time:=true] [params_file:=...]

Starts the graph from the same node table (syrenets_ros.graph.NODES) and params file that
`syrenets-ros up` uses without a ROS distro.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue

from syrenets_ros.tools.graph import NODES


def generate_launch_description() -> LaunchDescription:
    default_params = os.path.join(get_package_share_directory("syrenets_ros"), "config", "params.yaml")
    use_sim_time = LaunchConfiguration("use_sim_time")
    actions = [
        DeclareLaunchArgument("use_sim_time", default_value="true",
                              description="learner and predictor follow the simulator's /clock"),
        DeclareLaunchArgument("params_file", default_value=default_params,
                              description="parameters YAML for all nodes"),
    ]
    for node in NODES:
        sim_time = ParameterValue(use_sim_time, value_type=bool) if node.follows_sim_time else False
        actions.append(DeclareLaunchArgument(f"start_{node.executable}", default_value="true",
                                             description=f"start {node.name}: {node.role}"))
        actions.append(Node(
            package="syrenets_ros",
            executable=node.executable,
            name=node.name,
            output="screen",
            emulate_tty=True,
            parameters=[LaunchConfiguration("params_file"), {"use_sim_time": sim_time}],
            condition=IfCondition(LaunchConfiguration(f"start_{node.executable}")),
        ))
    return LaunchDescription(actions)
