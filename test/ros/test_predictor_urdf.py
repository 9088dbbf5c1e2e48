"""The predictor node with a robot_description over real DDS (issue 21): it serves the URDF's
joints, refuses a rigid-body snapshot learned on another URDF and a model of other joints with
the reason in its log, and serves the rigid body of its own URDF once measured states of the
moving arm check it."""

import time

import pytest
from rclpy.node import Node
from ros_helpers import publish_in_real_time, spinning, wait_until
from sensor_msgs.msg import JointState
from std_msgs.msg import String

from syrenets_ros.dynamics.pendulum import JOINT_NAMES
from syrenets_ros.dynamics.urdf import RigidBodyRobot, panda_urdf, with_payload
from syrenets_ros.dynamics.urdf_motion import tracking_record
from syrenets_ros.learning.rigid_body import RigidBodyModel
from syrenets_ros.online.snapshot import RunId, encode_model
from syrenets_ros.ros import common as rc
from syrenets_ros.tools.bringup import Graph
from syrenets_ros.tools.graph import NODES
from hostile_payloads import TRUE

PREDICTOR = next(n for n in NODES if n.name == "syrenets_predictor")
RUN = RunId.new()


@pytest.fixture
def predictor(tmp_path):
    graph = Graph(nodes=[PREDICTOR], use_sim_time=False, log_dir=tmp_path, echo=False,
                  overrides={"syrenets_predictor": {"forecast_rate": 0.0, "robot_description": panda_urdf()}}).start()
    try:
        yield graph, tmp_path / "syrenets_predictor.log"
    finally:
        codes = graph.stop()
    assert codes == {"syrenets_predictor": 0}, "the predictor must still be up and stop cleanly"


def _model_lines(log) -> list[str]:
    return [line for line in log.read_text().splitlines() if "model snapshot" in line or "serving model" in line]


def test_serves_its_own_urdf_and_refuses_another(predictor, ros_context):
    graph, log = predictor
    panda = RigidBodyRobot.from_urdf(panda_urdf())
    heavier = RigidBodyRobot.from_urdf(with_payload(panda.urdf, "panda_link8", 1.0))
    node = Node("urdf_publisher", context=ros_context)
    models = node.create_publisher(String, rc.MODEL, rc.LATCHED_QOS)
    states = node.create_publisher(JointState, rc.JOINT_STATES, rc.JOINT_STATE_QOS)
    with spinning(ros_context, node):
        assert wait_until(lambda: log.exists() and "ready" in log.read_text(), 60.0)
        assert "panda_joint7" in log.read_text()  # the URDF's joints, not the default joint1, joint2
        assert wait_until(lambda: min(models.get_subscription_count(), states.get_subscription_count()) >= 1, 30.0)

        def offer(model, version: int, joints) -> str:
            seen = len(_model_lines(log))
            models.publish(String(data=encode_model(model, model_version=version, joint_names=joints, metrics={},
                                                    run_id=RUN)))
            assert wait_until(lambda: len(_model_lines(log)) > seen, 30.0), log.read_text()
            return _model_lines(log)[-1]

        assert "learned on another URDF" in offer(RigidBodyModel.from_urdf(heavier), 1, panda.joint_names)
        assert "joint names" in offer(TRUE, 2, list(JOINT_NAMES))

        # 1.5 s of the arm moving, published in real time on this host's clock.
        record = tracking_record(panda, 1.5, seed=2)
        publish_in_real_time(states, panda.joint_names, record)
        time.sleep(0.2)
        line = offer(RigidBodyModel.from_urdf(panda), 3, panda.joint_names)
        assert "serving model v3" in line, line
        assert graph.newly_exited() == {}
