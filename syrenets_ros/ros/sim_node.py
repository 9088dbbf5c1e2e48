"""ROS 2 node ``pendulum_sim``: the PyBullet double pendulum — or the robot of its
``robot_description`` URDF (issue 21) — as a torque-controlled robot. Joint names, and the
length of every per-joint array, come from the robot.

A dedicated thread runs the step loop on the monotonic clock (paced by ``real_time_factor``;
0 = as fast as possible) while the executor thread serves subscriptions and the parameter
services. Step k, at sim time t_k = k·time_step:

  read (q_k, q̇_k) and add the sensor noise → τ_k = clamp(τ_ff + Kp(q_d − q) + Kd(q̇_d − q̇))
  from the measured state → publish /clock, /joint_states (measured q_k, q̇_k, effort τ_k
  plus its noise) and /pendulum/reference (desired point at t_k + reference_lead) → apply
  τ_k for one step (springs, damping and friction act besides it, exactly).

Feed-forward τ_ff comes from /syrenets/predicted_torque, stamped with the time it applies to:
the prediction for step k exactly (within half a step), else the newest one at most
``feedforward_timeout`` older, else none (PD only) — or, with ``feedforward_source`` =
true_model, the true inverse dynamics computed here. Every step the simulator records which
it was and its error against the true inverse dynamics of the system in force at the desired
point (plant.delivery), reported on /diagnostics. Parameter changes are validated in the
set-parameters callback and applied by the step loop at the next step boundary, so the
published stream never pauses and a physics swap happens between two steps.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import replace

import rclpy
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rcl_interfaces.msg import SetParametersResult
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import JointState
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from syrenets_ros.plant.control import pd_torque
from syrenets_ros.plant.delivery import DeliveryAudit
from syrenets_ros.plant.excitation import MultiSine
from syrenets_ros.plant.feedforward import Answer, FeedForwardBuffer, Torque, Use
from syrenets_ros.plant.sensor import SensorNoise
from syrenets_ros.plant.settings import NODE_NAME, SIM_PARAMETERS, SimSettings, initial_settings, settings_with
from syrenets_ros.plant.simulator import Simulator
from syrenets_ros.plant.stats import SimStats
from syrenets_ros.ros import common as rc
from syrenets_ros.ros.common import (NANOSECONDS, duration_from_nanoseconds, publish_diagnostics, run_node,
                                     stamp_from_nanoseconds, to_nanoseconds)
from syrenets_ros.ros.parameters import declare_schema

MAX_STORED_PREDICTIONS = 4096
MAX_PREDICTION_HORIZON_S = 5.0  # an answer stamped further ahead than this is refused
DIAGNOSTICS_PERIOD_S = 1.0
LATENESS_HISTORY = 100_000
# Every answer of the last second waits for the step loop; only the newest ones matter.
ANSWER_QOS = QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE)
CATCH_UP_S = 0.01  # wall seconds behind schedule the step loop may make up by running faster

class PendulumSimNode(Node):
    """The simulator node; ``start()`` launches the step loop thread, ``stop()`` joins it."""

    def __init__(self, *, context: rclpy.context.Context | None = None,
                 parameter_overrides: list[Parameter] | None = None,
                 cli_args: list[str] | None = None, start: bool = True) -> None:
        super().__init__(NODE_NAME, context=context, cli_args=cli_args,
                         parameter_overrides=parameter_overrides)
        try:
            self._settings = initial_settings(declare_schema(self, SIM_PARAMETERS))
        except ValueError as error:  # a bad start value (a URDF it cannot hold): one line, exit 2
            self.get_logger().fatal(f"cannot start: {error}")
            super().destroy_node()
            raise SystemExit(2) from None
        self._joint_names = self._settings.robot.joint_names  # fixed: robot_description is read-only
        self._requested = self._settings
        self._lock = threading.Lock()
        self.add_on_set_parameters_callback(self._on_set_parameters)

        self._step_ns = round(self._settings.time_step * NANOSECONDS)
        self._excitation = self._make_excitation(self._settings)
        q0, qd0, _ = self._excitation.sample(0.0)
        self._sim = Simulator(self._settings.robot, self._step_ns / NANOSECONDS, q0, qd0,
                              joints=self._settings.joint_elements)
        self._noise = SensorNoise(self._settings.measurement_noise, self._settings.noise_seed,
                                  len(self._joint_names))
        self.stats = SimStats()
        self.delivery = DeliveryAudit()
        self.lateness_s: deque[float] = deque(maxlen=LATENESS_HISTORY)  # recent paced steps
        self._answers = FeedForwardBuffer(
            self._step_ns, MAX_STORED_PREDICTIONS,
            horizon_steps=round(MAX_PREDICTION_HORIZON_S * NANOSECONDS / self._step_ns))

        reliable = QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE)
        self._joint_pub = self.create_publisher(JointState, rc.JOINT_STATES, reliable)
        self._clock_pub = self.create_publisher(Clock, rc.CLOCK, 10)
        self._reference_pub = self.create_publisher(JointTrajectory, rc.REFERENCE, 100)
        self._diagnostics_pub = self.create_publisher(DiagnosticArray, rc.DIAGNOSTICS, 10)
        # Answers are taken by the step loop itself, in a batch per step, not by an executor
        # callback per message: no callback thread contends with the 1 kHz loop for the GIL.
        self._predictions = rc.TopicReader(self, JointState, rc.PREDICTED_TORQUE, ANSWER_QOS)

        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pendulum_sim_steps", daemon=True)
        if start:
            self.start()

    # --- public -------------------------------------------------------------------------
    @property
    def settings(self) -> SimSettings:
        return self._settings

    @property
    def step_count(self) -> int:
        return self._sim.step_count

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join()

    def destroy_node(self) -> None:
        self.stop()
        self._predictions.destroy()
        super().destroy_node()
        self._sim.close()

    # --- parameters (executor thread) ---------------------------------------------------
    def _on_set_parameters(self, parameters: list[Parameter]) -> SetParametersResult:
        changes = {p.name: p.value for p in parameters}
        if "use_sim_time" in changes:
            return SetParametersResult(
                successful=False,
                reason="pendulum_sim is the clock source; use_sim_time stays false")
        with self._lock:
            try:
                self._requested = settings_with(self._requested, changes)
            except ValueError as error:
                return SetParametersResult(successful=False, reason=str(error))
        return SetParametersResult(successful=True, reason="applied at the next step boundary")

    # --- predictions (step loop) ---------------------------------------------------------
    def _take_predictions(self) -> None:
        for msg in self._predictions.take():
            self._on_prediction(msg)

    def _on_prediction(self, msg: JointState) -> None:
        reason = self._check_prediction(msg)
        with self._lock:
            current = self._sim.step_count
            if not reason:
                order = [list(msg.name).index(name) for name in self._joint_names]
                torque = tuple(float(msg.effort[i]) for i in order)
                reason = self._answers.add(to_nanoseconds(msg.header.stamp), torque, current)
            if reason:
                self.stats.predictions_rejected += 1
                self.stats.last_rejection = reason
                return
            self.stats.predictions_received += 1
            if self._answers.step_of(to_nanoseconds(msg.header.stamp)) < current:
                self.stats.predictions_too_late += 1

    def _check_prediction(self, msg: JointState) -> str:
        names = list(msg.name)
        if sorted(names) != sorted(self._joint_names):
            return f"joint names must be {list(self._joint_names)} in any order, got {names}"
        if len(msg.effort) != len(names):
            return f"{len(names)} names but {len(msg.effort)} efforts"
        if not all(math.isfinite(v) for v in msg.effort):
            return "non-finite effort"
        return ""

    def _feedforward(self, settings: SimSettings, step: int,
                     desired: tuple[list[float], list[float], list[float]]) -> Torque | None:
        """The prediction for this step, else the newest within the timeout, else None (or
        the true model's torque); recorded against the truth at the desired point."""
        timeout_steps = round(settings.feedforward_timeout * NANOSECONDS / self._step_ns)
        with self._lock:
            answer = self._answers.select(step, timeout_steps)
        if not settings.feedforward_enabled:
            return None
        truth = settings.robot.inverse_dynamics_at(*desired, settings.joint_elements)
        if settings.feedforward_source == "true_model":
            answer = Answer(truth, Use.EXACT)
        self.delivery.record(answer, truth)
        return answer.torque

    # --- step loop (own thread) ---------------------------------------------------------
    def _run(self) -> None:
        joint_msg = JointState()
        joint_msg.name = list(self._joint_names)
        clock_msg = Clock()
        reference_msg = JointTrajectory()
        reference_msg.joint_names = list(self._joint_names)
        period = 0.0
        deadline = time.monotonic()
        self.stats.window_wall_start = deadline
        next_report = deadline + DIAGNOSTICS_PERIOD_S
        try:
            while not self._stop.is_set() and self.context.ok():
                settings = self._apply_requested()
                if settings.real_time_factor > 0.0:
                    new_period = self._step_ns / NANOSECONDS / settings.real_time_factor
                    if new_period != period:
                        period, deadline = new_period, time.monotonic()
                    deadline = self._pace(deadline, period)
                    deadline += period
                else:
                    period = 0.0
                step = self._sim.step_count
                now_ns = step * self._step_ns
                t = now_ns / NANOSECONDS
                q_true, qd_true = self._sim.state()
                self._noise.next_step()
                q, qd = self._noise.state(q_true, qd_true)  # what the sensors report
                desired = self._excitation.sample(t)
                q_d, qd_d, _ = desired
                self._take_predictions()
                feedforward = self._feedforward(settings, step, desired)
                tau = pd_torque(settings, q, qd, q_d, qd_d, feedforward)

                stamp = stamp_from_nanoseconds(now_ns)
                if step % settings.clock_divider == 0:
                    clock_msg.clock = stamp
                    self._clock_pub.publish(clock_msg)
                joint_msg.header.stamp = stamp
                joint_msg.position = list(q)
                joint_msg.velocity = list(qd)
                joint_msg.effort = list(self._noise.effort(tau))
                self._joint_pub.publish(joint_msg)
                self._publish_reference(reference_msg, settings, step)

                self._sim.step(tau)
                self._count_step(q_true, q_d, feedforward is not None)
                now = time.monotonic()
                if now >= next_report:
                    next_report = now + DIAGNOSTICS_PERIOD_S
                    self._publish_diagnostics(settings, now, stamp)
        except Exception as error:  # noqa: BLE001 — a dead loop must say why, not vanish
            if self._stop.is_set() or not self.context.ok():
                return  # shutting down: publishers went away under the loop
            self.get_logger().fatal(f"step loop stopped: {error!r}")
            raise

    def _pace(self, deadline: float, period: float) -> float:
        """Sleep until this step's slot; a step that starts after the next slot is late.
        Up to CATCH_UP_S behind, the following steps run back to back to regain the schedule
        (short hiccups cost no sim time); further behind, the schedule slips to now instead:
        a long burst would run the sim much faster than wall time and leave a predictor
        far less than ``reference_lead`` to answer."""
        now = time.monotonic()
        if deadline > now:
            time.sleep(deadline - now)
            now = time.monotonic()
        lateness = now - deadline
        self.lateness_s.append(lateness)
        self.stats.paced_steps += 1
        self.stats.window_paced += 1
        if lateness > period:
            self.stats.late_steps += 1
            self.stats.window_late += 1
        if lateness > CATCH_UP_S:
            self.stats.schedule_slips += 1
            return now
        return deadline

    def _apply_requested(self) -> SimSettings:
        with self._lock:
            requested = self._requested
        current = self._settings
        if requested is current:
            return current
        if requested.robot != current.robot:
            try:
                self._sim.set_robot(requested.robot)
                self.stats.parameter_version += 1
            except Exception as error:  # noqa: BLE001 — keep simulating the old body
                self.stats.rebuild_failures += 1
                self.get_logger().error(f"rebuild with {requested.params}, payload {requested.payload_mass} kg "
                                        f"failed: {error!r}")
                requested = replace(requested, params=current.params, payload_mass=current.payload_mass)
        if requested.joint_elements != current.joint_elements:
            self._sim.set_joint_elements(requested.joint_elements)
        if requested.measurement_noise != current.measurement_noise:
            self._noise.sigma = requested.measurement_noise
        if requested.noise_seed != current.noise_seed:
            self._noise.reseed(requested.noise_seed)
        if (requested.excitation_seed, requested.excitation_amplitude,
                requested.excitation_base_frequency) != (
                current.excitation_seed, current.excitation_amplitude,
                current.excitation_base_frequency):
            self._excitation = self._make_excitation(requested)
        self._settings = requested
        return requested

    @staticmethod
    def _make_excitation(settings: SimSettings) -> MultiSine:
        return settings.robot.excitation(settings.excitation_seed, settings.excitation_amplitude,
                                         settings.excitation_base_frequency)

    def _publish_reference(self, msg: JointTrajectory, settings: SimSettings, step: int) -> None:
        """Every N-th step, the desired points for the N steps one lead ahead: each step is
        asked for exactly once, and the predictor answers N points with one batched call."""
        count = settings.reference_points
        if step % count:
            return
        now_ns = step * self._step_ns
        lead_ns = round(settings.reference_lead * NANOSECONDS)
        msg.points = []
        for i in range(count):
            offset_ns = lead_ns + i * self._step_ns
            q_d, qd_d, qdd_d = self._excitation.sample((now_ns + offset_ns) / NANOSECONDS)
            msg.points.append(JointTrajectoryPoint(
                positions=q_d, velocities=qd_d, accelerations=qdd_d,
                time_from_start=duration_from_nanoseconds(offset_ns)))
        msg.header.stamp = stamp_from_nanoseconds(now_ns)
        self._reference_pub.publish(msg)

    def _count_step(self, q: Sequence[float], q_d: Sequence[float], used_feedforward: bool) -> None:
        stats = self.stats
        stats.window_steps += 1
        stats.window_squared_error += sum((a - b) ** 2 for a, b in zip(q_d, q)) / len(q)
        if used_feedforward:
            stats.window_feedforward += 1
        else:
            stats.pd_only += 1

    def _publish_diagnostics(self, settings: SimSettings, now: float, stamp: Time) -> None:
        s = self.stats
        wall = max(now - s.window_wall_start, 1e-9)
        steps = max(s.window_steps, 1)
        rms = math.sqrt(s.window_squared_error / steps)
        achieved = (self._sim.step_count - s.window_first_step) * self._step_ns / NANOSECONDS / wall
        ff_fraction = s.window_feedforward / steps
        late_fraction = s.window_late / s.window_paced if s.window_paced else 0.0
        p = settings.params
        values = {
            "tracking_rms_error_rad": f"{rms:.6g}",
            "real_time_factor_target": f"{settings.real_time_factor:g}",
            "real_time_factor_achieved": f"{achieved:.4g}",
            "feedforward_enabled": str(settings.feedforward_enabled).lower(),
            "feedforward_in_use": "yes" if s.window_feedforward else "no",
            "feedforward_fraction": f"{ff_fraction:.4f}",
            "feedforward_source": settings.feedforward_source,
            "steps_pd_only": str(s.pd_only),
            "parameter_version": str(s.parameter_version),
            "late_step_fraction": f"{late_fraction:.4f}",
            "late_steps_total": str(s.late_steps),
            "schedule_slips": str(s.schedule_slips),
            "predicted_torque_received": str(s.predictions_received),
            "predicted_torque_rejected": str(s.predictions_rejected),
            "predicted_torque_too_late": str(s.predictions_too_late),
            "last_rejection_reason": s.last_rejection,
            "rebuild_failures": str(s.rebuild_failures),
            "sim_time_s": f"{self._sim.step_count * self._step_ns / NANOSECONDS:.3f}",
            "robot": settings.robot.name,
            **({"payload_mass": repr(settings.payload_mass)} if settings.robot_description else {
                "link1_mass": repr(p.m1), "link1_length": repr(p.l1),
                "link2_mass": repr(p.m2), "link2_length": repr(p.l2)}),
            "gravity": repr(p.g),
            "joint_stiffness": repr(list(settings.joint_stiffness)),
            "joint_rest_angle": repr(list(settings.joint_rest_angle)),
            "joint_damping": repr(list(settings.joint_damping)),
            "joint_friction": repr(list(settings.joint_friction)),
            "joint_cogging": repr(list(settings.joint_cogging)),
            "cogging_periods": str(settings.cogging_periods),
            "measurement_noise": repr(list(settings.measurement_noise)),
            "noise_seed": str(settings.noise_seed),
            **self.delivery.report(),
        }
        level = DiagnosticStatus.OK
        message = "feed-forward in use" if s.window_feedforward else "PD only (no fresh prediction)"
        if late_fraction > 0.05:
            level, message = DiagnosticStatus.WARN, f"{late_fraction:.1%} late steps; " + message
        publish_diagnostics(self, self._diagnostics_pub, NODE_NAME, level, message, values, stamp=stamp,
                            hardware_id=f"pybullet_{settings.robot.name}")
        s.window_squared_error = 0.0
        s.window_steps = s.window_feedforward = s.window_late = s.window_paced = 0
        s.window_wall_start = now
        s.window_first_step = self._sim.step_count


def main(args: list[str] | None = None) -> None:
    run_node(PendulumSimNode, args=args)


if __name__ == "__main__":
    main()
