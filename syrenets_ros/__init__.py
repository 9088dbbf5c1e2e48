"""syrenets_ros: online symbolic learning of robot dynamics with SyReNet, for ROS 2."""
