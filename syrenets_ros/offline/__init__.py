"""Offline use: rosbag2 recordings in and out and learning from them with the learner's own
core. No ROS: the recorder node in ``syrenets_ros.ros`` and the CLI in ``syrenets_ros.tools``
adapt this."""
