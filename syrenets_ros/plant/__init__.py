"""The robot under control: the PyBullet double pendulum or a robot from its URDF, its settings
and parameter table, the excitation trajectory, the tracking law and the feed-forward buffer. No ROS."""
