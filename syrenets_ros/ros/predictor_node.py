"""ROS node `syrenets_predictor`: serves inverse-dynamics torques of the newest learned model
as feed-forward commands, and forecasts passive motion with the variational integrator.

It keeps the last seconds of /joint_states, checked as the learner checks them (stamps against
its clock and the stream's timeline, order, kinematics), as the history a new model must
explain before it drives motors (online/serving.py)."""

from __future__ import annotations

import math
import queue
import threading
import time
import traceback
from collections import deque

import torch
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rclpy.node import Node
from sensor_msgs.msg import JointState
from std_msgs.msg import String
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from syrenets_ros.dynamics.urdf import RigidBodyRobot
from syrenets_ros.online.serving import PREDICTOR_PARAMETERS, ModelServer, warm_up
from syrenets_ros.online.stream import REJECT_REASONS, Batch, SampleAssembler, StreamChecks
from syrenets_ros.ros import common as rc
from syrenets_ros.ros.parameters import declare_schema


# A forecast of the learned model costs ~1 s of CPU (measured, 2 s horizon, true model): at
# forecast_rate 1/s it took a core's worth of time and the GIL from the torque answers.
FORECAST_CPU_SHARE = 0.1
MODEL_INBOX = 8  # snapshots waiting for their check
STATE_BATCH_PERIOD_S = 0.02  # joint states are taken from the queue this often (wall s), as the learner does
PENDING_RETRY_S = 0.25  # a held model is checked again this often (wall s) while the history grows


class PredictorNode(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__(PREDICTOR_PARAMETERS.node, **kwargs)
        values = declare_schema(self, PREDICTOR_PARAMETERS)
        warm_up()
        joints, digest = values["joint_names"], ""
        if values["robot_description"]:  # a URDF that cannot be modelled is a bad start value (ValueError)
            robot = RigidBodyRobot.from_urdf(values["robot_description"])
            joints, digest = robot.joint_names, robot.digest
        self.server = ModelServer(joints, values["max_payload_bytes"],
                                  max_torque=values["max_feedforward_torque"],
                                  consistency_tolerance=values["consistency_tolerance"],
                                  window=values["consistency_window"], robot_digest=digest)
        position_noise, velocity_noise = values["sensor_noise"]
        checks = StreamChecks(clock=lambda: self.get_clock().now().nanoseconds * 1e-9,
                              stamp_tolerance=values["stamp_tolerance"], position_noise=position_noise,
                              velocity_noise=velocity_noise)
        self.assembler = SampleAssembler(self.server.joint_names, values["joint_state_period"], checks=checks)
        length = max(1, round(values["consistency_history"] / values["joint_state_period"]))
        self._history: deque = deque(maxlen=length)  # checked samples, oldest first
        self._latest_msg: JointState | None = None  # the newest checked joint state, for forecasts
        self._history_lock = threading.Lock()  # the executor appends, the model worker reads
        self.served = 0
        self.bad_references = 0
        self.forecasts = 0
        self.forecast_note = ""
        self.forecast_cpu_s = 0.0  # CPU time of the last forecast
        self.latency_ms: list[float] = []
        self._stopping = threading.Event()

        self.torque_pub = self.create_publisher(JointState, rc.PREDICTED_TORQUE, rc.STREAM_QOS)
        self.forecast_pub = self.create_publisher(JointTrajectory, rc.FORECAST, 10)
        self.diag_pub = self.create_publisher(DiagnosticArray, rc.DIAGNOSTICS, 10)
        self.create_subscription(String, rc.MODEL, self.on_model, rc.LATCHED_QOS)
        # A shallow queue: when behind, answer the freshest points rather than a backlog
        # whose answers would arrive too late to be used.
        self.create_subscription(JointTrajectory, rc.REFERENCE, self.on_reference, rc.FRESHEST_QOS)
        # 1 kHz of states: taken in batches on a timer instead of a callback per message.
        self._states = rc.TopicReader(self, JointState, rc.JOINT_STATES)
        self.create_timer(STATE_BATCH_PERIOD_S, self.take_joint_states, clock=rc.steady_clock())
        # Forecasts take long: a worker thread runs them, so torque answers keep flowing on
        # the (single-threaded) executor meanwhile; the timer only says one is due.
        self._forecast_due = threading.Event()
        self._forecast_worker = threading.Thread(target=self._forecast_loop, name="syrenets_forecasts",
                                                 daemon=True)
        self._forecast_timer = None
        self._model_inbox: queue.Queue[str] = queue.Queue(maxsize=MODEL_INBOX)
        self.snapshots_dropped = 0
        self._model_worker = threading.Thread(target=self._model_loop, name="syrenets_models", daemon=True)
        self._schedule_forecasts()
        self.add_post_set_parameters_callback(lambda _params: self._schedule_forecasts())
        self.create_timer(1.0, self.publish_diagnostics, clock=rc.steady_clock())
        self._forecast_worker.start()
        self._model_worker.start()
        self.get_logger().info(f"ready: serving {list(self.server.joint_names)}; waiting for a model on {rc.MODEL}")

    def _schedule_forecasts(self) -> None:
        if self._forecast_timer is not None:
            self.destroy_timer(self._forecast_timer)
            self._forecast_timer = None
        rate = self.get_parameter("forecast_rate").value
        if rate > 0:
            self._forecast_timer = self.create_timer(1.0 / rate, self._forecast_due.set, clock=rc.steady_clock())

    def on_model(self, msg: String) -> None:
        """Checking a snapshot takes long (decode, probe evaluations): the model worker does
        it, so the executor keeps answering references meanwhile. A full inbox (a flood of
        snapshots) drops the oldest waiting one: the newest is what would be served."""
        while True:
            try:
                self._model_inbox.put_nowait(msg.data)
                return
            except queue.Full:
                try:
                    self._model_inbox.get_nowait()
                    self.snapshots_dropped += 1
                except queue.Empty:
                    pass

    def _model_loop(self) -> None:
        """Model worker: checks each snapshot, and a held one again as the history grows."""
        while not self._stopping.is_set():
            try:
                payload = self._model_inbox.get(timeout=PENDING_RETRY_S if self.server.pending else 0.2)
            except queue.Empty:
                payload = None
            if payload is None and self.server.pending is None:
                continue
            try:
                self.accept_model(payload)
            except Exception:  # noqa: BLE001 - a snapshot that breaks the check is not served
                self.get_logger().error(f"snapshot check failed:\n{traceback.format_exc()}")

    def accept_model(self, payload: str | None) -> None:
        """Check ``payload`` (None: the held model again) on the history; log the verdict
        (a model still held is logged once)."""
        held = self.server.pending
        if payload is None:
            accepted, reason = self.server.check_pending(self._history_samples())
        else:
            accepted, reason = self.server.offer(payload, self._history_samples())
        if accepted:
            self.get_logger().info(f"serving {reason}")
        elif self.server.pending is None:
            self.get_logger().warning(f"refused model snapshot: {reason}")
        elif payload is not None or self.server.pending is not held:
            self.get_logger().info(f"holding model snapshot: {reason}")

    def on_reference(self, msg: JointTrajectory) -> None:
        started = time.perf_counter()
        names = list(msg.joint_names)
        if sorted(names) != sorted(self.server.joint_names) or len(set(names)) != len(names):
            self.bad_references += 1
            return
        order = [names.index(n) for n in self.server.joint_names]
        base = rc.stamp_to_seconds(msg.header.stamp)
        stamps, points = [], []
        for point in msg.points:
            fields = (point.positions, point.velocities, point.accelerations)
            if any(len(f) != len(names) for f in fields) or not all(math.isfinite(v) for f in fields for v in f):
                self.bad_references += 1
                continue
            stamps.append(base + rc.stamp_to_seconds(point.time_from_start))
            points.append([[f[i] for i in order] for f in fields])
        if not points:
            return
        efforts = self.server.torque(*zip(*points))
        if efforts is None:
            return
        for stamp, effort in zip(stamps, efforts):
            if effort is None:  # non-finite or beyond max_feedforward_torque: withheld, counted
                continue
            reply = JointState(name=list(self.server.joint_names), effort=effort)
            reply.header.stamp = rc.seconds_to_stamp(stamp)
            self.torque_pub.publish(reply)
            self.served += 1
        self.latency_ms.append((time.perf_counter() - started) * 1e3)
        del self.latency_ms[:-2000]

    def take_joint_states(self) -> None:
        """Checked samples of the waiting joint states into the history (rejects counted by
        reason: forged states never reach it)."""
        messages = self._states.take()
        if not messages:
            return
        samples = [self.assembler.add(rc.stamp_to_seconds(m.header.stamp), m.name, m.position, m.velocity,
                                      m.effort) for m in messages]
        checked = [m for m, s in zip(messages, samples) if s is not None]  # states that completed a sample
        with self._history_lock:
            self._history.extend(s for s in samples if s is not None)
            self._latest_msg = checked[-1] if checked else self._latest_msg

    def _history_samples(self) -> Batch | None:
        """The history's samples, oldest first (gaps allowed: the check cuts windows)."""
        with self._history_lock:
            samples = list(self._history)
        return Batch.from_samples(samples) if samples else None

    def _latest_state(self) -> tuple[Time, list[float], list[float]] | None:
        """The newest joint state, when a forecast is due."""
        with self._history_lock:
            msg = self._latest_msg
        if msg is None:
            return None
        names = list(msg.name)
        if sorted(names) != sorted(self.server.joint_names) or len(msg.position) != len(names) \
                or len(msg.velocity) != len(names):
            return None
        order = [names.index(n) for n in self.server.joint_names]
        q, qd = [msg.position[i] for i in order], [msg.velocity[i] for i in order]
        return (msg.header.stamp, q, qd) if all(math.isfinite(v) for v in q + qd) else None

    def _forecast_loop(self) -> None:
        """Forecast worker: one forecast per timer tick, then a pause that keeps forecasting
        under FORECAST_CPU_SHARE of a core (ticks meanwhile are skipped); an error is
        logged, not fatal."""
        while not self._stopping.is_set():
            if not self._forecast_due.wait(0.2):
                continue
            started = time.thread_time()
            try:
                self.publish_forecast()
            except Exception:  # noqa: BLE001 - a failed forecast must not stop serving
                self.get_logger().error(f"forecast failed:\n{traceback.format_exc()}")
            self.forecast_cpu_s = time.thread_time() - started
            self._stopping.wait(self.forecast_cpu_s * (1.0 / FORECAST_CPU_SHARE - 1.0))
            self._forecast_due.clear()

    def publish_forecast(self) -> None:
        if self.server.current is None:
            return
        latest = self._latest_state()
        if latest is None:
            return
        stamp, *state = latest
        forecast = self.server.forecast(*state, self.get_parameter("forecast_horizon").value,
                                        self.get_parameter("forecast_step").value, cancel=self._stopping)
        if forecast is None:
            return
        if forecast.reason and forecast.reason != self.forecast_note:
            self.get_logger().warning(f"forecast ended early: {forecast.reason}")
        self.forecast_note = forecast.reason
        msg = JointTrajectory(joint_names=list(self.server.joint_names))
        msg.header.stamp = stamp  # the state it starts from; points are relative to it
        msg.points = [JointTrajectoryPoint(positions=q, velocities=qd,
                                           time_from_start=rc.seconds_to_duration(t))
                      for t, q, qd in zip(forecast.times, forecast.q, forecast.qd)]
        self.forecast_pub.publish(msg)
        self.forecasts += 1

    def publish_diagnostics(self) -> None:
        current = self.server.current
        latencies = sorted(self.latency_ms)

        def pct(p: float) -> str:
            return f"{latencies[min(len(latencies) - 1, int(p * len(latencies)))]:.3f}" if latencies else "n/a"

        pending, assembler = self.server.pending, self.assembler
        values = {
            "model_version": current.model_version if current else "none",
            "model_held_unchecked": f"v{pending.model_version} of run {pending.run_id}" if pending else "none",
            "model_kind": current.model.kind if current else "none",
            "snapshots_accepted": self.server.accepted,
            "run_id": str(current.run_id) if current else "none",
            "snapshots_refused": sum(self.server.refused.values()),
            "snapshots_dropped_unchecked": self.snapshots_dropped,
            **{f"refused[{k}]": v for k, v in self.server.refused.items()},
            "last_refusal": self.server.last_refusal or "none",
            "probe_check_cpu_ms": f"{self.server.probe_cpu_s * 1e3:.1f}",
            "history_samples": len(self._history),
            "states_received": assembler.received,
            "states_accepted": assembler.accepted,
            **{f"states_rejected[{reason}]": assembler.rejected[reason] for reason in REJECT_REASONS},
            "torques_served": self.served,
            "torques_withheld": self.server.withheld,
            "bad_reference_points": self.bad_references,
            "compute_latency_p50_ms": pct(0.5),
            "compute_latency_p99_ms": pct(0.99),
            "forecasts_published": self.forecasts,
            "forecast_cpu_ms": f"{self.forecast_cpu_s * 1e3:.0f}",
            "forecast_note": self.forecast_note or "ok",
        }
        level = DiagnosticStatus.OK if current else DiagnosticStatus.WARN
        message = "serving" if current else "waiting for a model"
        if pending:
            message += f"; holding v{pending.model_version} until measured joint states check it"
        rc.publish_diagnostics(self, self.diag_pub, PREDICTOR_PARAMETERS.node, level, message, values)


    def begin_shutdown(self) -> None:
        """A forecast in flight gives up at its next step (see run_node)."""
        self._stopping.set()

    def destroy_node(self) -> None:
        self.begin_shutdown()
        self._forecast_worker.join(timeout=5.0)
        self._model_worker.join(timeout=5.0)
        self._states.destroy()
        super().destroy_node()


def main(args: list[str] | None = None) -> None:
    torch.set_num_threads(1)  # tiny 2-DoF evaluations: thread hand-offs cost more than they save
    rc.run_node(PredictorNode, args=args)


if __name__ == "__main__":
    main()
