"""The predictor under attack over real DDS (issue 12): a parser-exhaustion payload, an
amplification payload, absurd-but-finite models, a model contradicting the measured joint
states and replayed snapshots are each refused with the reason in its log and on
/diagnostics; the node never exits and keeps serving the exact model."""

import time

import pytest
import torch
from diagnostic_msgs.msg import DiagnosticArray
from hostile_payloads import (KINETIC_QD1, TRUE, amplification_payload, nested_payload, scaled, smooth_motion,
                              with_coefficient)
from rclpy.node import Node
from ros_helpers import Collector, spinning, wait_until
from sensor_msgs.msg import JointState
from std_msgs.msg import String
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from syrenets_ros.dynamics.pendulum import JOINT_NAMES
from syrenets_ros.online.snapshot import RunId, encode_model
from syrenets_ros.ros import common as rc
from syrenets_ros.tools.bringup import Graph
from syrenets_ros.tools.graph import NODES

PREDICTOR = next(n for n in NODES if n.name == "syrenets_predictor")
JOINTS = list(JOINT_NAMES)
RUN = RunId.new()


def _snapshot(model, version: int, run: RunId = RUN) -> str:
    return encode_model(model, model_version=version, joint_names=JOINTS, metrics={}, run_id=run)


def _model_lines(log) -> list[str]:
    return [line for line in log.read_text().splitlines() if "model snapshot" in line or "serving model" in line]


@pytest.fixture
def predictor(tmp_path):
    graph = Graph(nodes=[PREDICTOR], use_sim_time=False, log_dir=tmp_path, echo=False,
                  overrides={"syrenets_predictor": {"forecast_rate": 0.0}}).start()
    try:
        yield graph, tmp_path / "syrenets_predictor.log"
    finally:
        codes = graph.stop()
    assert codes == {"syrenets_predictor": 0}, "the predictor must still be up and stop cleanly"


def test_every_attack_is_refused_with_its_reason_and_the_exact_model_keeps_serving(predictor, ros_context):
    graph, log = predictor
    node = Node("hostile_publisher", context=ros_context)
    diagnostics = Collector(node, DiagnosticArray, rc.DIAGNOSTICS)
    answers = Collector(node, JointState, rc.PREDICTED_TORQUE)
    models = node.create_publisher(String, rc.MODEL, rc.LATCHED_QOS)
    states = node.create_publisher(JointState, rc.JOINT_STATES, rc.STREAM_QOS)
    references = node.create_publisher(JointTrajectory, rc.REFERENCE, rc.FRESHEST_QOS)
    with spinning(ros_context, node):
        assert wait_until(lambda: log.exists() and "ready" in log.read_text(), 60.0)
        assert wait_until(lambda: min(models.get_subscription_count(), states.get_subscription_count(),
                                      references.get_subscription_count()) >= 1, 30.0)

        def offer(payload: str) -> str:
            """Publish one payload; returns the predictor's log line about it."""
            seen = len(_model_lines(log))
            models.publish(String(data=payload))
            assert wait_until(lambda: len(_model_lines(log)) > seen, 30.0), log.read_text()
            return _model_lines(log)[-1]

        assert "serving model v1" in offer(_snapshot(TRUE, 1))
        for stamp, q, qd, tau in smooth_motion(300):  # recently measured states
            message = JointState(name=JOINTS, position=q, velocity=qd, effort=tau)
            message.header.stamp = rc.seconds_to_stamp(stamp)
            states.publish(message)
        time.sleep(0.5)
        attacks = {
            "JSON nested 10001 levels deep": nested_payload(),
            "model kind 'syrenet' is not accepted here": amplification_payload(),
            "implausible: torque": _snapshot(scaled(1000.0), 2),
            "exceeds the limit 500 N·m": _snapshot(with_coefficient(KINETIC_QD1, 1e307), 3),
            "inconsistent with measured torques": _snapshot(scaled(2.0), 4),
            "replay: version 1 is not newer": _snapshot(TRUE, 1),
            "older than the served run": _snapshot(TRUE, 50, RunId(RUN.started_ns - 10**9, "0badc0de")),
        }
        for reason, payload in attacks.items():
            line = offer(payload)
            assert "refused model snapshot" in line and reason in line, line
        assert graph.newly_exited() == {}

        def all_refusals_reported() -> bool:
            values = diagnostics.newest_status("syrenets_predictor")
            return values.get("snapshots_refused") == str(len(attacks)) and "older than" in values.get("last_refusal", "")

        assert wait_until(all_refusals_reported, 10.0), diagnostics.newest_status("syrenets_predictor")
        values = diagnostics.newest_status("syrenets_predictor")
        assert values["model_version"] == "1" and values["callback_errors"] == "0", values
        assert values["refused[implausible]"] == "2" and values["refused[replay]"] == "2", values

        # Still serving exactly the true model.
        gen = torch.Generator().manual_seed(3)
        q, qd, qdd = ((torch.rand(5, 2, generator=gen, dtype=torch.float64) - 0.5) for _ in range(3))
        request = JointTrajectory(joint_names=JOINTS)
        request.header.stamp = rc.seconds_to_stamp(100.0)
        request.points = [JointTrajectoryPoint(positions=a.tolist(), velocities=b.tolist(), accelerations=c.tolist(),
                                               time_from_start=rc.seconds_to_duration(0.001 * i))
                          for i, (a, b, c) in enumerate(zip(q, qd, qdd))]
        references.publish(request)
        assert wait_until(lambda: len(answers) >= 5, 20.0)
        served = torch.tensor([list(m.effort) for m in answers.messages()[:5]], dtype=torch.float64)
        assert torch.equal(served, TRUE.torque(q, qd, qdd))
    node.destroy_node()
