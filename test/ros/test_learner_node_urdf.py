"""The learner node with a robot_description over real DDS (issue 21): fed the joint states of
a moving 7-joint arm (the Panda of example-robot-data, 1 kg heavier at the flange than its URDF
says, with springs and friction), it publishes the arm's exact rigid body as a `rigid_body`
snapshot with its base parameters on /syrenets/equation."""

from __future__ import annotations


from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from ros_helpers import publish_in_real_time, spinning, wait_until
from sensor_msgs.msg import JointState
from std_msgs.msg import String

from syrenets_ros.dynamics.urdf import RigidBodyRobot, panda_urdf, with_payload
from syrenets_ros.dynamics.urdf_motion import tracking_record
from syrenets_ros.online.snapshot import decode_model
from syrenets_ros.ros import common as rc
from syrenets_ros.ros.learner_node import LearnerNode
from syrenets_ros.tools.bench.urdf import ELEMENTS, relative_error, wide_states

LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)


def test_the_learner_publishes_the_arms_exact_rigid_body(ros_context):
    panda = RigidBodyRobot.from_urdf(panda_urdf())
    loaded = RigidBodyRobot.from_urdf(with_payload(panda.urdf, "panda_link8", 1.0, (0.0, 0.0, 0.05)))
    record = tracking_record(loaded, 4.0, seed=6, elements=ELEMENTS)
    learner = LearnerNode(context=ros_context, parameter_overrides=[
        Parameter("robot_description", value=panda.urdf), Parameter("network_enabled", value=True)])
    probe = Node("arm", context=ros_context)
    received: list[str] = []
    equations: list[str] = []
    probe.create_subscription(String, rc.MODEL, lambda m: received.append(m.data), LATCHED)
    probe.create_subscription(String, rc.EQUATION, lambda m: equations.append(m.data), LATCHED)
    states = probe.create_publisher(JointState, rc.JOINT_STATES, rc.JOINT_STATE_QOS)
    try:
        with spinning(ros_context, learner, probe):
            assert wait_until(lambda: states.get_subscription_count() >= 1, 30.0)
            publish_in_real_time(states, panda.joint_names, record)
            assert wait_until(lambda: received and equations, 30.0)
            assert learner.learner.stats.training_steps == 0  # the URDF fixes the structure: no network
    finally:
        learner.destroy_node()
        probe.destroy_node()
    decoded = decode_model(received[-1])
    assert decoded.model.kind == "rigid_body" and decoded.joint_names == list(panda.joint_names)
    assert relative_error(decoded.model, loaded, wide_states(loaded, 500)) <= 1e-6
    assert equations[-1].startswith("rigid body of URDF") and "43 base parameters" in equations[-1]
