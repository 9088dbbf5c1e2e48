"""The plumbing that keeps the 1 kHz graph cheap, over real DDS: a TopicReader takes a stream
in batches, in order, with nothing lost and nothing taken by the owner's executor; the
EventsExecutor loop runs the owner's callbacks and parameter services meanwhile."""

from __future__ import annotations

import threading

from rclpy.experimental import EventsExecutor
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import JointState

from ros_helpers import wait_until
from syrenets_ros.ros import common as rc
from syrenets_ros.ros import param_client

MESSAGES = 500


def test_reader_takes_every_message_in_order_while_the_owner_spins(ros_context):
    owner = Node("reader_owner", namespace="/arm", context=ros_context,
                 cli_args=["--ros-args", "-r", "joint_states:=remapped_states"])
    owner.declare_parameter("gain", 1.0)
    ticks: list[int] = []
    owner.create_timer(0.01, lambda: ticks.append(1), clock=rc.steady_clock())
    reader = rc.TopicReader(owner, JointState, rc.JOINT_STATES)
    talker = Node("reader_talker", context=ros_context)
    # The reader follows the owner's namespace and remapping: /arm/remapped_states.
    publisher = talker.create_publisher(JointState, "/arm/remapped_states",
                                        QoSProfile(depth=MESSAGES, reliability=ReliabilityPolicy.RELIABLE))
    executor = EventsExecutor(context=ros_context)
    executor.add_node(owner)
    stop = threading.Event()
    spinner = threading.Thread(target=rc.spin_until, args=(executor, stop), daemon=True)
    spinner.start()
    try:
        assert wait_until(lambda: publisher.get_subscription_count() == 1, 10.0)
        assert reader.take() == [], "nothing published yet"
        for k in range(MESSAGES):
            publisher.publish(JointState(name=["joint1", "joint2"], position=[float(k), 0.0]))
        taken: list[JointState] = []

        def all_taken() -> bool:
            taken.extend(reader.take(limit=100))  # several batches
            return len(taken) >= MESSAGES

        assert wait_until(all_taken, 10.0)
        assert [msg.position[0] for msg in taken] == [float(k) for k in range(MESSAGES)]

        # The executor kept running the owner's timer and parameter service meanwhile.
        assert wait_until(lambda: len(ticks) >= 5, 5.0)
        [result] = param_client.set_parameters({"gain": 2.5}, "/arm/reader_owner", 10.0, ros_context)
        assert result.successful, result
        assert owner.get_parameter("gain").value == 2.5
        assert owner.get_name() == "reader_owner", "the helper node must not take the owner's name"
    finally:
        stop.set()
        spinner.join(timeout=5.0)
        executor.shutdown()
        reader.destroy()
        talker.destroy_node()
        owner.destroy_node()
