"""The predictor under attack over real DDS (issues 12 and 23): a parser-exhaustion payload, an
amplification payload, absurd-but-finite models, a model wrong at one spot only, a model
contradicting the measured joint states, one offered when the newest states happen to agree
with it, gravity flipped, a forged-state flood, replayed snapshots, and a 3×-heavy first model of
an empty predictor are each refused with the reason in its log and on /diagnostics; a model
published before any joint state is held until measured states check it; the node never exits
and keeps serving the exact model."""

import time

import pytest
import torch
from diagnostic_msgs.msg import DiagnosticArray
from hostile_payloads import (KINETIC_QD1, TRUE, amplification_payload, bump, flipped_gravity, nested_payload,
                              scaled, smooth_motion, with_coefficient)
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


class Robot:
    """Publishes exact joint states in real time from now on, stamped on this host's clock (the
    predictor runs on wall time here): the first row goes out now, stamped now, the others as
    their stamps follow (forged states ``lead`` seconds ahead, beside the honest ones)."""

    def __init__(self, node: Node) -> None:
        self.publisher = node.create_publisher(JointState, rc.JOINT_STATES, rc.JOINT_STATE_QOS)

    def publish(self, *streams: tuple[list, float, float]) -> None:
        """``streams``: (rows, lead [s], effort factor) each, sent interleaved by send time."""
        outgoing = sorted(((stamp, order, stamp + lead, q, qd, [factor * t for t in tau])
                           for order, (rows, lead, factor) in enumerate(streams)
                           for stamp, q, qd, tau in rows), key=lambda m: (m[0], m[1]))
        self.start = time.time() - outgoing[0][0]
        for i, (send_at, _, stamp, q, qd, effort) in enumerate(outgoing):
            if i % 20 == 0:
                time.sleep(max(0.0, self.start + send_at - time.time()))
            message = JointState(name=JOINTS, position=q, velocity=qd, effort=effort)
            message.header.stamp = rc.seconds_to_stamp(self.start + stamp)
            self.publisher.publish(message)

    @staticmethod
    def at_rest(count: int) -> list:
        """The pendulum hanging still (τ = 0)."""
        return [(k * 1e-3, [0.0, 0.0], [0.0, 0.0], [0.0, 0.0]) for k in range(count)]


def test_every_attack_is_refused_with_its_reason_and_the_exact_model_keeps_serving(predictor, ros_context):
    graph, log = predictor
    node = Node("hostile_publisher", context=ros_context)
    diagnostics = Collector(node, DiagnosticArray, rc.DIAGNOSTICS)
    answers = Collector(node, JointState, rc.PREDICTED_TORQUE)
    models = node.create_publisher(String, rc.MODEL, rc.LATCHED_QOS)
    robot = Robot(node)
    references = node.create_publisher(JointTrajectory, rc.REFERENCE, rc.FRESHEST_QOS)
    with spinning(ros_context, node):
        assert wait_until(lambda: log.exists() and "ready" in log.read_text(), 60.0)
        assert wait_until(lambda: min(models.get_subscription_count(), robot.publisher.get_subscription_count(),
                                      references.get_subscription_count()) >= 1, 30.0)

        def offer(payload: str) -> str:
            """Publish one payload; returns the predictor's log line about it."""
            seen = len(_model_lines(log))
            models.publish(String(data=payload))
            assert wait_until(lambda: len(_model_lines(log)) > seen, 30.0), log.read_text()
            return _model_lines(log)[-1]

        robot.publish((smooth_motion(1500), 0.0, 1.0))  # 1.5 s of measured states: the history to explain
        time.sleep(0.2)
        assert "serving model v1" in offer(_snapshot(TRUE, 1))
        # The robot then hangs still (the newest states agree with any multiple of L), while
        # a flood of forged states stamped 1 s ahead, whose torques a 2.5×-heavy model
        # explains, goes out beside them: off the stream's timeline, they never reach the history.
        robot.publish((Robot.at_rest(300), 0.0, 1.0), (smooth_motion(300, start=0.0), 1.0, 2.5))
        time.sleep(0.2)
        attacks = {
            "JSON nested 10001 levels deep": nested_payload(),
            "model kind 'syrenet' is not accepted here": amplification_payload(),
            "implausible: torque": _snapshot(scaled(1000.0), 2),
            "exceeds the limit 500 N·m": _snapshot(with_coefficient(KINETIC_QD1, 1e307), 3),
            "inconsistent with measured torques": _snapshot(scaled(2.0), 4),
            "refused model snapshot: implausible: torque": _snapshot(bump(), 5),  # fixed probes passed it
            "refused model snapshot: inconsistent with measured torques: RMS": _snapshot(scaled(2.5), 6),  # timed
            "gravity points against the served model's": _snapshot(flipped_gravity(), 7),
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
        assert values["refused[implausible]"] == "4" and values["refused[replay]"] == "2", values
        assert values["refused[inconsistent with measured torques]"] == "2", values
        assert values["states_rejected[off_timeline]"] == "300" and values["states_rejected[off_clock]"] == "0", values

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


def test_an_empty_predictor_holds_a_first_model_until_measured_states_check_it(predictor, ros_context):
    """After a restart the predictor serves nothing. A model published before any joint state
    (a learner's initial_model) is held and drives nothing; once the robot moves, a 3×-heavy
    one is refused against the measured torques and the true one is served."""
    graph, log = predictor
    node = Node("initial_model_publisher", context=ros_context)
    diagnostics = Collector(node, DiagnosticArray, rc.DIAGNOSTICS)
    models = node.create_publisher(String, rc.MODEL, rc.LATCHED_QOS)
    robot = Robot(node)
    with spinning(ros_context, node):
        assert wait_until(lambda: log.exists() and "ready" in log.read_text(), 60.0)
        assert wait_until(lambda: min(models.get_subscription_count(),
                                      robot.publisher.get_subscription_count()) >= 1, 30.0)
        models.publish(String(data=_snapshot(scaled(2.5), 1)))
        assert wait_until(lambda: "holding model snapshot: held v1" in log.read_text(), 30.0), log.read_text()
        assert wait_until(lambda: diagnostics.newest_status("syrenets_predictor").get("model_held_unchecked", "")
                          .startswith("v1"), 10.0)
        assert diagnostics.newest_status("syrenets_predictor")["model_version"] == "none"
        robot.publish((smooth_motion(1500), 0.0, 1.0))
        assert wait_until(lambda: "refused model snapshot: inconsistent with measured torques" in log.read_text(),
                          30.0), log.read_text()
        assert "served model: none" in _model_lines(log)[-1]
        models.publish(String(data=_snapshot(TRUE, 2)))
        assert wait_until(lambda: "serving model v2" in log.read_text(), 30.0), log.read_text()
        assert wait_until(lambda: diagnostics.newest_status("syrenets_predictor").get("model_version") == "2", 10.0)
        assert graph.newly_exited() == {}
    node.destroy_node()


def test_a_heavy_initial_model_of_the_learner_never_drives_motors(ros_context, tmp_path):
    """Issue 23: a learner's initial_model 2.5× too heavy (plausible on the probes) was served at
    start. The real learner publishes it before any joint state; the real predictor holds it,
    and refuses it once the robot moves and its measured torques contradict it."""
    from rclpy.parameter import Parameter

    from syrenets_ros.ros.learner_node import LearnerNode
    from syrenets_ros.ros.predictor_node import PredictorNode

    path = tmp_path / "robot.json"
    path.write_text(encode_model(scaled(2.5), model_version=7, joint_names=JOINTS, metrics={}))
    predictor = PredictorNode(context=ros_context, parameter_overrides=[Parameter("forecast_rate", value=0.0)])
    learner = LearnerNode(context=ros_context, parameter_overrides=[
        Parameter("initial_model", value=str(path)), Parameter("network_enabled", value=False)])
    node = Node("robot", context=ros_context)
    robot = Robot(node)
    try:
        with spinning(ros_context, learner, predictor, node):
            assert wait_until(lambda: predictor.server.pending is not None, 30.0), "the initial model is held"
            assert predictor.server.current is None and predictor.server.pending.model_version == 8
            assert wait_until(lambda: robot.publisher.get_subscription_count() >= 2, 30.0)
            robot.publish((smooth_motion(1500), 0.0, 1.0))
            assert wait_until(lambda: predictor.server.refused["inconsistent with measured torques"] == 1, 30.0), \
                predictor.server.last_refusal
            assert "served model: none" in predictor.server.last_refusal
            current = predictor.server.current
            assert current is None or current.model_version > 8, "only the learner's own later refits"
    finally:
        learner.destroy_node()
        predictor.destroy_node()
        node.destroy_node()
