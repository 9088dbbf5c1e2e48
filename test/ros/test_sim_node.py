"""pendulum_sim over real DDS: its published efforts are the exact inverse dynamics of its
published states (before and after a swap made through the real parameter service), invalid
parameter sets are refused with a reason while the stream goes on without a gap, and the
feed-forward path makes tracking at least 10x better than PD alone."""

from __future__ import annotations

import math

import numpy as np
import torch
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.node import Node
from rclpy.parameter import Parameter
from ros_helpers import Collector, spinning, wait_until
from sensor_msgs.msg import JointState
from trajectory_msgs.msg import JointTrajectory

from syrenets_ros.tools import cli

from syrenets_ros.ros import param_client

from syrenets_ros.dynamics import pendulum
from syrenets_ros.ros.common import to_nanoseconds
from syrenets_ros.ros.sim_node import PendulumSimNode

STEP_NS = 1_000_000
SWAPPED = pendulum.PendulumParams().with_changes(m2=2.0, l2=1.2)


def _by_name(names, values) -> list[float]:
    return [values[list(names).index(joint)] for joint in pendulum.JOINT_NAMES]


def _joint_arrays(messages: list[JointState]):
    stamps = np.array([to_nanoseconds(m.header.stamp) for m in messages])
    q = torch.tensor([_by_name(m.name, m.position) for m in messages], dtype=torch.float64)
    qd = torch.tensor([_by_name(m.name, m.velocity) for m in messages], dtype=torch.float64)
    tau = torch.tensor([_by_name(m.name, m.effort) for m in messages], dtype=torch.float64)
    return stamps, q, qd, tau


def _effort_errors(q, qd, tau, params: pendulum.PendulumParams) -> np.ndarray:
    """Per consecutive pair k: max |inverse dynamics(q_k, q̇_k, (q̇_{k+1}−q̇_k)/Δt) − τ_k|."""
    qdd = (qd[1:] - qd[:-1]) / (STEP_NS * 1e-9)
    predicted = pendulum.inverse_dynamics(q[:-1], qd[:-1], qdd, params)
    return (predicted - tau[:-1]).abs().amax(dim=1).numpy()


def _status_values(array: DiagnosticArray) -> dict[str, str]:
    [status] = [s for s in array.status if s.name == "pendulum_sim"]
    return {kv.key: kv.value for kv in status.values}


def _newest_stamp(collector: Collector) -> int:
    messages = collector.messages()
    return to_nanoseconds(messages[-1].header.stamp) if messages else -1


def _publish_malformed_predictions(node: Node) -> int:
    publisher = node.create_publisher(JointState, "/syrenets/predicted_torque", 10)
    wait_until(lambda: publisher.get_subscription_count() > 0, 10.0)
    bad = [JointState(name=["joint1", "joint2"], effort=[math.nan, 0.0]),
           JointState(name=["joint1", "elbow"], effort=[1.0, 0.0]),
           JointState(name=["joint1", "joint2"], effort=[1.0])]
    for msg in bad:
        publisher.publish(msg)
    return len(bad)


def test_effort_is_exact_inverse_dynamics_across_swap_and_bad_input_is_refused(ros_context, capsys):
    # Paced at real time so the in-process collector keeps up with every message (at 0 the
    # step thread outruns it and the writer's history would drop samples before delivery).
    sim = PendulumSimNode(context=ros_context, start=False,
                          parameter_overrides=[Parameter("real_time_factor", value=1.0)])
    probe = Node("test_probe", context=ros_context)
    joints = Collector(probe, JointState, "/joint_states")
    diagnostics = Collector(probe, DiagnosticArray, "/diagnostics")
    try:
        with spinning(ros_context, sim, probe):
            assert wait_until(lambda: sim.count_subscribers("/joint_states") > 0, 10.0)
            sim.start()
            malformed = _publish_malformed_predictions(probe)
            assert wait_until(lambda: _newest_stamp(joints) >= 2500 * STEP_NS, 60.0)

            refusals = [{"link2_mass": -1.0}, {"link1_length": math.nan},
                        {"link2_mass": "heavy"}, {"time_step": 0.002}, {"kp": [1.0]}]
            for assignment in refusals:
                [result] = param_client.set_parameters(assignment, "/pendulum_sim", 10.0, ros_context)
                assert not result.successful, assignment
                assert result.reason, f"refusal of {assignment} must say why"
            assert cli.main(["set", "link2_length=-0.5", "--timeout", "10"]) == 1
            printed = capsys.readouterr().out
            assert "refused: " in printed and "link2_length out of range" in printed, printed

            results = param_client.set_parameters({"link2_mass": 2.0, "link2_length": 1.2},
                                               "pendulum_sim", 10.0, ros_context)
            assert all(r.successful for r in results), results
            swapped_at = sim.step_count
            assert wait_until(lambda: _newest_stamp(joints) >= (swapped_at + 2500) * STEP_NS, 60.0)

            def final_report() -> dict[str, str] | None:
                reports = [_status_values(a) for a in diagnostics.messages()]
                done = [r for r in reports if r["parameter_version"] == "1"
                        and r["predicted_torque_rejected"] == str(malformed)]
                return done[-1] if done else None

            assert wait_until(lambda: final_report() is not None, 10.0), diagnostics.messages()[-1:]
            sim.stop()
    finally:
        sim.destroy_node()
        probe.destroy_node()

    report = final_report()
    assert (report["link2_mass"], report["link2_length"]) == ("2.0", "1.2")
    stamps, q, qd, tau = _joint_arrays(joints.messages())
    assert stamps[0] == 0
    assert np.all(np.diff(stamps) == STEP_NS), "the stream must have no gap, refusals included"
    # Continuity across the swap: every position is the previous one advanced by the new velocity
    # (Bullet's semi-implicit Euler), so nothing jumped when the body was rebuilt.
    advance = q[1:] - q[:-1] - (STEP_NS * 1e-9) * qd[1:]
    assert advance.abs().max().item() < 1e-12

    errors_old = _effort_errors(q, qd, tau, pendulum.PendulumParams())
    errors_new = _effort_errors(q, qd, tau, SWAPPED)
    split = int(np.argmax(errors_old > 1e-6))
    assert errors_old[split] > 1e-6, "the swap must show in the dynamics"
    assert split >= 2000 and len(errors_new) - split >= 2000
    assert errors_old[:split].max() <= 1e-6
    assert errors_new[split:].max() <= 1e-6


class TrueModelFeedForward(Node):
    """Answers each reference point with the true inverse dynamics (SPEC §2), stamped with
    the time it applies to, like the predictor node does with a learned model. A shallow
    queue: when the loaded machine makes it fall behind it skips to fresh references instead
    of answering a backlog that is already too late (the simulator bridges skipped steps with
    the newest earlier answer)."""

    def __init__(self, context) -> None:
        super().__init__("test_true_feedforward", context=context)
        self._publisher = self.create_publisher(JointState, "/syrenets/predicted_torque", 100)
        self._subscription = self.create_subscription(JointTrajectory, "/pendulum/reference",
                                                      self._answer, 5)

    def connected(self) -> bool:
        """Matched both ways with the simulator (DDS matching, not just graph discovery)."""
        return (self._publisher.get_subscription_count() > 0
                and self._subscription.get_publisher_count() > 0)

    def _answer(self, msg: JointTrajectory) -> None:
        for point in msg.points:
            values = [torch.tensor(_by_name(msg.joint_names, v), dtype=torch.float64)
                      for v in (point.positions, point.velocities, point.accelerations)]
            tau = pendulum.inverse_dynamics(*values, pendulum.PendulumParams()).tolist()
            when = to_nanoseconds(msg.header.stamp) + to_nanoseconds(point.time_from_start)
            # Joints in the other order on purpose: the simulator must match them by name.
            answer = JointState(name=list(reversed(pendulum.JOINT_NAMES)), effort=tau[::-1])
            answer.header.stamp.sec, answer.header.stamp.nanosec = divmod(when, 1_000_000_000)
            self._publisher.publish(answer)


def _tracking_run(context, feedforward_enabled: bool, steps: int = 3000
                  ) -> tuple[float, dict[str, str]]:
    """Tracking RMS over steps 500..steps (from the published reference and joint states)
    and the last diagnostics report, with the true-model answerer running either way."""
    # The machine may be loaded: half real time, a longer lead and timeout than the defaults
    # give the answers slack, as a deployment sizes them to its predictor's latency.
    sim = PendulumSimNode(context=context, start=False,
                          parameter_overrides=[Parameter("real_time_factor", value=0.5),
                                               Parameter("reference_lead", value=0.05),
                                               Parameter("feedforward_timeout", value=0.05),
                                               Parameter("feedforward_enabled",
                                                         value=feedforward_enabled)])
    probe = Node("test_probe", context=context)
    joints = Collector(probe, JointState, "/joint_states")
    references = Collector(probe, JointTrajectory, "/pendulum/reference")
    diagnostics = Collector(probe, DiagnosticArray, "/diagnostics")
    feedforward = TrueModelFeedForward(context)
    try:
        with spinning(context, sim), spinning(context, probe), spinning(context, feedforward):
            assert wait_until(feedforward.connected, 10.0)
            assert wait_until(lambda: sim.count_subscribers("/joint_states") > 0, 10.0)
            sim.start()
            assert wait_until(lambda: _newest_stamp(joints) >= steps * STEP_NS, 60.0)
            assert wait_until(lambda: _newest_stamp(diagnostics) >= 2 * 10**9, 10.0)
            sim.stop()
    finally:
        for node in (sim, probe, feedforward):
            node.destroy_node()

    desired = {}
    for msg in references.messages():
        for point in msg.points:
            desired[to_nanoseconds(msg.header.stamp) + to_nanoseconds(point.time_from_start)] = _by_name(msg.joint_names,
                                                                                   point.positions)
    stamps, q, _, _ = _joint_arrays(joints.messages())
    window = (stamps >= 500 * STEP_NS) & (stamps <= steps * STEP_NS)
    errors = np.array([np.subtract(desired[t], q_k.numpy())
                       for t, q_k in zip(stamps[window], q[window])])
    assert len(errors) == steps - 500 + 1
    return float(np.sqrt(np.mean(errors**2))), _status_values(diagnostics.messages()[-1])


def test_true_model_feedforward_tracks_at_least_10x_better_than_pd(ros_context):
    rms_pd, report_pd = _tracking_run(ros_context, feedforward_enabled=False)
    rms_ff, report_ff = _tracking_run(ros_context, feedforward_enabled=True)
    print(f"tracking RMS: PD only {rms_pd:.3g} rad, with true-model feed-forward {rms_ff:.3g} rad")
    assert rms_pd > 0.005, "PD alone should visibly lag the reference"
    assert rms_ff * 10.0 <= rms_pd, (rms_ff, rms_pd, report_ff)
    assert (report_pd["feedforward_in_use"], report_pd["feedforward_fraction"]) == ("no", "0.0000")
    assert report_ff["feedforward_in_use"] == "yes"
    assert int(report_ff["steps_feedforward_exact"]) > 0


def test_set_cli_reports_bad_input_and_unreachable_node(capsys):
    assert cli.main(["set", "link2_mass"]) == 2
    assert "NAME=VALUE" in capsys.readouterr().out
    assert cli.main(["set", "link2_mass=2.0", "--node", "/no_such_node", "--timeout", "0.5"]) == 2
    assert "no parameter services" in capsys.readouterr().out
