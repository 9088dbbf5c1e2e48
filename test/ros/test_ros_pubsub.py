"""The real DDS layer works in this environment: a JointState round-trips between two nodes."""

import time

from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from sensor_msgs.msg import JointState


def test_joint_state_roundtrip_over_dds(ros_context):
    talker = Node("test_talker", context=ros_context)
    listener = Node("test_listener", context=ros_context)
    received: list[JointState] = []
    listener.create_subscription(JointState, "/test/joint_states", received.append, 10)
    publisher = talker.create_publisher(JointState, "/test/joint_states", 10)
    executor = SingleThreadedExecutor(context=ros_context)
    executor.add_node(talker)
    executor.add_node(listener)

    sent = JointState()
    sent.name = ["joint1", "joint2"]
    sent.position = [0.25, -1.5]
    sent.velocity = [1.0, 2.0]
    sent.effort = [3.5, -4.25]
    deadline = time.monotonic() + 10.0
    while not received and time.monotonic() < deadline:
        sent.header.stamp = talker.get_clock().now().to_msg()
        publisher.publish(sent)
        executor.spin_once(timeout_sec=0.05)

    assert received, "no JointState came back through DDS within 10 s"
    got = received[0]
    assert list(got.name) == ["joint1", "joint2"]
    assert list(got.position) == [0.25, -1.5]
    assert list(got.velocity) == [1.0, 2.0]
    assert list(got.effort) == [3.5, -4.25]
    executor.shutdown()
    talker.destroy_node()
    listener.destroy_node()
