"""The only modules that import rclpy or message packages: the three node adapters, shared
ROS helpers (topics, QoS, stamps, diagnostics, spinning), parameter declaration and client,
and the experiment's monitor node."""
