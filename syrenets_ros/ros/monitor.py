"""The experiment's observer node: pairs each reference point with the joint state at the time
it applies to (tracking error) and with the feed-forward torque served for it (torque error
against the true inverse dynamics of the system in force at that moment: the double pendulum's
closed form or a URDF robot's Pinocchio, payload, springs and friction included)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from diagnostic_msgs.msg import DiagnosticArray
from rclpy.node import Node
from sensor_msgs.msg import JointState
from std_msgs.msg import String
from trajectory_msgs.msg import JointTrajectory

from syrenets_ros.dynamics import pendulum
from syrenets_ros.online.learner import LEARNER_PARAMETERS
from syrenets_ros.plant.settings import NODE_NAME as SIM_NODE, SimSettings
from syrenets_ros.ros import common as rc


STREAM_BATCH_PERIOD_S = 0.02  # the 1 kHz streams are taken this often (wall s)


def _key(seconds: float) -> int:
    """Stamps as integer microseconds, so sums of floats pair up exactly."""
    return int(round(seconds * 1e6))


@dataclass(frozen=True)
class ForecastRecord:
    """A forecast received, with the true parameters in force when it started."""

    start: float
    params: pendulum.PendulumParams
    offsets: list[float]
    positions: list[list[float]]
    initial_velocity: list[float]


class Monitor(Node):
    """Observes the running graph; all bookkeeping is O(1) per message."""

    def __init__(self, before: SimSettings) -> None:
        super().__init__("syrenets_monitor")
        self.params = before.params
        self.robot = before.robot  # the truth; swapped by the experiment with the system
        self.joints = before.joint_elements  # springs, damping, friction in force (the truth includes them)
        self.joint_names = list(before.robot.joint_names)
        self.sim_time = 0.0
        self.desired: dict[int, tuple[list[float], list[float], list[float]]] = {}
        self.tracking: list[tuple[float, float]] = []  # (t, |q - q_d|)
        self.torque_error: list[tuple[float, float]] = []  # (t, |τ_ff - τ_true|)
        self.states: list[tuple[float, list[float]]] = []  # subsampled q for plotting forecasts
        self.equations: list[tuple[float, str]] = []
        self.forecasts: list[ForecastRecord] = []
        self.diagnostics: dict[str, dict[str, str]] = {}
        # The learner's reported lag behind the stream [s] (issue 20), with the sim time it came.
        self.learner_lag: list[tuple[float, float]] = []
        self.sim_reports: list[dict[str, str]] = []  # every report of the simulator, in order
        # The 1 kHz streams are taken in batches on a timer: a callback per message made this
        # observer cost more CPU than a node of the graph it measures.
        self._references = rc.TopicReader(self, JointTrajectory, rc.REFERENCE)
        self._torques = rc.TopicReader(self, JointState, rc.PREDICTED_TORQUE)
        self._states = rc.TopicReader(self, JointState, rc.JOINT_STATES)
        self.create_timer(STREAM_BATCH_PERIOD_S, self.take_streams, clock=rc.steady_clock())
        self.create_subscription(String, rc.EQUATION, self.on_equation, rc.LATCHED_QOS)
        self.create_subscription(JointTrajectory, rc.FORECAST, self.on_forecast, 10)
        self.create_subscription(DiagnosticArray, rc.DIAGNOSTICS, self.on_diagnostics, 50)

    def take_streams(self) -> None:
        """References first, so every answer and state taken with them finds its point."""
        for msg in self._references.take():
            self.on_reference(msg)
        self.on_torques(self._torques.take())
        for msg in self._states.take():
            self.on_state(msg)

    def on_reference(self, msg: JointTrajectory) -> None:
        if list(msg.joint_names) != self.joint_names:
            return
        base = rc.stamp_to_seconds(msg.header.stamp)
        for point in msg.points:
            key = _key(base + rc.stamp_to_seconds(point.time_from_start))
            self.desired[key] = (list(point.positions), list(point.velocities), list(point.accelerations))

    def on_state(self, msg: JointState) -> None:
        if list(msg.name) != self.joint_names or len(msg.position) != len(self.joint_names):
            return
        t = rc.stamp_to_seconds(msg.header.stamp)
        if not all(math.isfinite(v) for v in msg.position):
            return
        self.sim_time = max(self.sim_time, t)
        desired = self.desired.pop(_key(t), None)
        if desired is not None:
            self.tracking.append((t, math.dist(msg.position, desired[0])))
        if len(self.states) == 0 or t - self.states[-1][0] >= 0.01:
            self.states.append((t, list(msg.position)))

    def on_torques(self, messages: list[JointState]) -> None:
        """Errors of served torques against the true inverse dynamics (per point, in floats)."""
        robot, joints = self.robot, self.joints
        for msg in messages:
            key = _key(rc.stamp_to_seconds(msg.header.stamp))
            point = self.desired.get(key)
            if point is None or len(msg.effort) != len(self.joint_names) or list(msg.name) != self.joint_names:
                continue
            self.torque_error.append((key * 1e-6, math.dist(msg.effort, robot.inverse_dynamics_at(*point, joints))))

    def on_equation(self, msg: String) -> None:
        self.equations.append((self.sim_time, msg.data))

    def on_forecast(self, msg: JointTrajectory) -> None:
        if msg.points:
            self.forecasts.append(ForecastRecord(
                rc.stamp_to_seconds(msg.header.stamp), self.params,
                [rc.stamp_to_seconds(p.time_from_start) for p in msg.points],
                [list(p.positions) for p in msg.points], list(msg.points[0].velocities)))
            del self.forecasts[:-20]

    def on_diagnostics(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            values = {kv.key: kv.value for kv in status.values}
            self.diagnostics[status.name] = values
            if status.name == SIM_NODE:
                self.sim_reports.append(values)
            elif status.name == LEARNER_PARAMETERS.node:
                try:
                    self.learner_lag.append((self.sim_time, float(values.get("lag_s", "nan"))))
                except ValueError:
                    pass  # a forged or garbled report: no lag from it

    def learner_lag_max(self, after: float = -math.inf) -> float:
        """The learner's largest reported lag [s] from sim time ``after`` on (0 when none)."""
        return max((lag for t, lag in self.learner_lag if t >= after and math.isfinite(lag)), default=0.0)

    def trim(self, before: float) -> None:
        """Drop desired points no joint state was paired with, so the table stays bounded."""
        cutoff = _key(before)
        # list() copies the keys in one step: the executor thread adds points meanwhile.
        for key in [k for k in list(self.desired) if k < cutoff]:
            self.desired.pop(key, None)

    def destroy_node(self) -> None:
        for reader in (self._references, self._torques, self._states):
            reader.destroy()
        super().destroy_node()
