"""The robot under control: the PyBullet double pendulum, its settings and parameter table,
the excitation trajectory, the tracking law and the feed-forward buffer. No ROS."""
