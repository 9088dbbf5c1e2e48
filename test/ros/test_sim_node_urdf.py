"""pendulum_sim holding the Franka Panda from its ``robot_description`` (issue 21), over real DDS:
it publishes 7-joint states under the URDF's joint names whose efforts are Pinocchio's exact
inverse dynamics of the published states; a 1 kg ``payload_mass`` set through the parameter
service takes effect at a step boundary with the stream unbroken; what does not fit the robot is
refused with a reason while the simulation runs on."""

from __future__ import annotations

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.node import Node
from rclpy.parameter import Parameter
from ros_helpers import Collector, spinning, wait_until
from sensor_msgs.msg import JointState

from syrenets_ros.dynamics.urdf import RigidBodyRobot, panda_urdf
from syrenets_ros.plant.robot import payload_urdf
from syrenets_ros.ros import param_client
from syrenets_ros.ros.common import to_nanoseconds
from syrenets_ros.ros.sim_node import PendulumSimNode

STEP_NS = 1_000_000
PANDA = panda_urdf()
JOINTS = [f"panda_joint{i}" for i in range(1, 8)]


def _newest_stamp(collector: Collector) -> int:
    messages = collector.messages()
    return to_nanoseconds(messages[-1].header.stamp) if messages else -1


def _errors(q: np.ndarray, qd: np.ndarray, tau: np.ndarray, urdf: str) -> np.ndarray:
    """Per step k: max |τ_k − ID(q_k, q̇_k, (q̇_{k+1} − q̇_k)/Δt)| with Pinocchio on ``urdf``."""
    qdd = (qd[1:] - qd[:-1]) / (STEP_NS * 1e-9)
    return np.abs(RigidBodyRobot.from_urdf(urdf).inverse_dynamics(q[:-1], qd[:-1], qdd) - tau[:-1]).max(axis=1)


def test_panda_publishes_seven_exact_joints_and_takes_a_payload_at_run_time(ros_context):
    sim = PendulumSimNode(context=ros_context, start=False,
                          parameter_overrides=[Parameter("robot_description", value=PANDA),
                                               Parameter("real_time_factor", value=1.0)])
    probe = Node("test_probe", context=ros_context)
    joints = Collector(probe, JointState, "/joint_states")
    diagnostics = Collector(probe, DiagnosticArray, "/diagnostics")
    try:
        with spinning(ros_context, sim, probe):
            assert wait_until(lambda: sim.count_subscribers("/joint_states") > 0, 10.0)
            sim.start()
            assert wait_until(lambda: _newest_stamp(joints) >= 1500 * STEP_NS, 60.0)
            refusals = [({"payload_mass": -1.0}, "payload_mass out of range"),
                        ({"payload_mass": 1000.0}, "payload_mass out of range"),
                        ({"link2_mass": 2.0}, "belong to the double pendulum"),
                        ({"kp": [100.0, 10.0]}, "kp needs 7 values, one per joint (panda_joint1"),
                        ({"robot_description": "<robot name='x'/>"}, "read-only")]
            for assignment, reason in refusals:
                [result] = param_client.set_parameters(assignment, "/pendulum_sim", 10.0, ros_context)
                assert not result.successful and reason in result.reason, (assignment, result.reason)
            [result] = param_client.set_parameters({"payload_mass": 1.0}, "/pendulum_sim", 10.0, ros_context)
            assert result.successful, result.reason
            changed_at = sim.step_count
            assert wait_until(lambda: _newest_stamp(joints) >= (changed_at + 1500) * STEP_NS, 60.0)

            def report() -> dict[str, str] | None:
                for array in reversed(diagnostics.messages()):
                    for status in array.status:
                        values = {kv.key: kv.value for kv in status.values}
                        if status.name == "pendulum_sim" and values.get("parameter_version") == "1":
                            return values
                return None

            assert wait_until(lambda: report() is not None, 10.0)
            sim.stop()
    finally:
        sim.destroy_node()
        probe.destroy_node()

    values = report()
    assert (values["robot"], values["payload_mass"]) == ("panda", "1.0")
    assert "link2_mass" not in values
    messages = joints.messages()
    assert all(list(m.name) == JOINTS and len(m.position) == len(m.velocity) == len(m.effort) == 7
               for m in messages)
    stamps = np.array([to_nanoseconds(m.header.stamp) for m in messages])
    assert stamps[0] == 0 and np.all(np.diff(stamps) == STEP_NS), "no gap, refusals and the rebuild included"
    q, qd, tau = (np.array([getattr(m, field) for m in messages]) for field in ("position", "velocity", "effort"))
    errors_bare, errors_loaded = _errors(q, qd, tau, PANDA), _errors(q, qd, tau, payload_urdf(PANDA, 1.0))
    split = int(np.argmax(errors_bare > 1e-6))
    assert errors_bare[split] > 1e-3, "the payload must show in the dynamics"
    assert split >= 1500 and len(errors_bare) - split >= 1500
    assert errors_bare[:split].max() <= 1e-9
    assert errors_loaded[split:].max() <= 1e-9
    # The state is continuous across the rebuild: each position is the last advanced by the new velocity.
    advance = q[1:] - q[:-1] - (STEP_NS * 1e-9) * qd[1:]
    assert np.abs(advance).max() < 1e-12


def test_a_robot_description_it_cannot_hold_stops_the_node_with_one_line(tmp_path):
    """A real node process (the bring-up's): exit code 2 and the reason, no traceback."""
    import time

    from syrenets_ros.tools.bringup import Graph
    from syrenets_ros.tools.graph import NODES

    sim = next(n for n in NODES if n.name == "pendulum_sim")
    graph = Graph(nodes=[sim], overrides={sim.name: {"robot_description": "<robot name='x'><link name='a'/></robot>"}},
                  log_dir=tmp_path, echo=False).start()
    try:
        deadline = time.monotonic() + 60.0
        exited: dict[str, int] = {}
        while not exited and time.monotonic() < deadline:
            exited = graph.newly_exited()
            time.sleep(0.1)
    finally:
        graph.stop()
    log = (tmp_path / f"{sim.name}.log").read_text()
    assert exited == {sim.name: 2}, log
    assert "cannot start: robot_description has no movable joint" in log and "Traceback" not in log, log
