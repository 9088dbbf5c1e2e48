"""The learner node's `initial_model` parameter over real DDS: a snapshot saved by
`syrenets-ros learn` is published at start-up (latched, so a predictor started later gets it)
with its equation; a file that is refused is reported on /diagnostics and the node learns
from scratch instead of dying."""

from __future__ import annotations

from diagnostic_msgs.msg import DiagnosticArray
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from ros_helpers import Collector, spinning, wait_until
from std_msgs.msg import String

from syrenets_ros.dynamics import pendulum
from syrenets_ros.learning.terms import true_pendulum_terms
from syrenets_ros.online.snapshot import decode_model, encode_model
from syrenets_ros.ros.learner_node import LearnerNode

LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)


def _learner(ros_context, path) -> LearnerNode:
    return LearnerNode(context=ros_context, parameter_overrides=[
        Parameter("initial_model", value=str(path)), Parameter("network_enabled", value=False)])


def test_the_saved_model_is_served_at_start(ros_context, tmp_path):
    model = true_pendulum_terms(pendulum.PendulumParams())
    path = tmp_path / "robot.json"
    path.write_text(encode_model(model, model_version=7, joint_names=list(pendulum.JOINT_NAMES), metrics={}))
    learner = _learner(ros_context, path)
    probe = Node("probe", context=ros_context)
    received: list[str] = []
    equations: list[str] = []
    probe.create_subscription(String, "/syrenets/model", lambda m: received.append(m.data), LATCHED)
    probe.create_subscription(String, "/syrenets/equation", lambda m: equations.append(m.data), LATCHED)
    try:
        with spinning(ros_context, learner, probe):
            assert wait_until(lambda: received and equations, 20.0)
    finally:
        learner.destroy_node()
        probe.destroy_node()
    decoded = decode_model(received[0])
    assert decoded.model_version == 8, "numbered on from the saved version"
    assert decoded.model.equation() == model.equation() == equations[0]


def test_a_refused_file_is_reported_and_the_node_keeps_learning(ros_context, tmp_path):
    path = tmp_path / "robot.json"
    path.write_text('{"format": "syrenets_ros.model", "kind": "pickle"}')
    learner = _learner(ros_context, path)
    probe = Node("probe", context=ros_context)
    diagnostics = Collector(probe, DiagnosticArray, "/diagnostics")

    def refusal() -> str:
        for array in diagnostics.messages():
            for status in array.status:
                values = {kv.key: kv.value for kv in status.values}
                if status.name == "syrenets_learner" and values.get("initial_model_refused", "no") != "no":
                    return values["initial_model_refused"]
        return ""

    try:
        with spinning(ros_context, learner, probe):
            assert wait_until(lambda: refusal() != "", 20.0)
            assert learner.learner.served is None and learner.worker_errors == 0
    finally:
        learner.destroy_node()
        probe.destroy_node()
    assert "robot.json" in refusal() and "envelope" in refusal()
