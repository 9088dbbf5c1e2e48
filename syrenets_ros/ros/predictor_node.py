"""ROS node `syrenets_predictor`: serves inverse-dynamics torques of the newest learned model
as feed-forward commands, and forecasts passive motion with the variational integrator."""

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
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import JointState
from std_msgs.msg import String
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from syrenets_ros.online.serving import PREDICTOR_PARAMETERS, ModelServer, warm_up
from syrenets_ros.online.stream import Batch, SampleAssembler
from syrenets_ros.ros import common as rc
from syrenets_ros.ros.parameters import declare_schema


# A forecast of the learned model costs ~1 s of CPU (measured, 2 s horizon, true model): at
# forecast_rate 1/s it took a core's worth of time and the GIL from the torque answers.
FORECAST_CPU_SHARE = 0.1
MODEL_INBOX = 8  # snapshots waiting for their check


class PredictorNode(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__(PREDICTOR_PARAMETERS.node, **kwargs)
        values = declare_schema(self, PREDICTOR_PARAMETERS)
        warm_up()
        self.server = ModelServer(values["joint_names"], values["max_payload_bytes"],
                                  max_torque=values["max_feedforward_torque"],
                                  consistency_tolerance=values["consistency_tolerance"])
        self.joint_state_period = values["joint_state_period"]
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
        # Forecasts need one recent state a second and the consistency check of a new snapshot
        # the last moments of motion, not a callback per 1 kHz message: a queue whose DDS
        # history keeps the newest `consistency_window` states, taken from on demand.
        window = values["consistency_window"]
        self._states = rc.TopicReader(self, JointState, rc.JOINT_STATES, QoSProfile(
            depth=window, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.BEST_EFFORT,
            durability=DurabilityPolicy.VOLATILE))
        self._recent_states: deque[JointState] = deque(maxlen=window)
        self._states_lock = threading.Lock()  # the model and forecast workers take concurrently
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
        while not self._stopping.is_set():
            try:
                payload = self._model_inbox.get(timeout=0.2)
            except queue.Empty:
                continue
            try:
                self.accept_model(payload)
            except Exception:  # noqa: BLE001 - a snapshot that breaks the check is not served
                self.get_logger().error(f"snapshot check failed:\n{traceback.format_exc()}")

    def accept_model(self, payload: str) -> None:
        accepted, reason = self.server.offer(payload, self._recent_samples())
        if accepted:
            self.get_logger().info(f"serving {reason}")
        else:
            self.get_logger().warning(f"refused model snapshot: {reason}")

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

    def _take_states(self) -> list[JointState]:
        """The newest joint states (at most consistency_window), taken on demand (see __init__)."""
        with self._states_lock:
            self._recent_states.extend(self._states.take())
            return list(self._recent_states)

    def _recent_samples(self) -> Batch | None:
        """Samples of the recent joint states: consecutive pairs only (gaps and malformed states
        skipped), q̈ differenced like the learner's. No clock or kinematic checks here: forged
        states can at worst make a genuine model wait (the probe checks still bound the rest)."""
        states = sorted(self._take_states(), key=lambda m: rc.to_nanoseconds(m.header.stamp))
        assembler = SampleAssembler(self.server.joint_names, self.joint_state_period)
        samples = [assembler.add(rc.stamp_to_seconds(m.header.stamp), m.name, m.position, m.velocity, m.effort)
                   for m in states]
        samples = [s for s in samples if s is not None]
        return Batch.from_samples(samples) if samples else None

    def _latest_state(self) -> tuple[Time, list[float], list[float]] | None:
        """The newest joint state, when a forecast is due."""
        states = self._take_states()
        if not states:
            return None
        msg = states[-1]
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

        values = {
            "model_version": current.model_version if current else "none",
            "model_kind": current.model.kind if current else "none",
            "snapshots_accepted": self.server.accepted,
            "run_id": str(current.run_id) if current else "none",
            "snapshots_refused": sum(self.server.refused.values()),
            "snapshots_dropped_unchecked": self.snapshots_dropped,
            **{f"refused[{k}]": v for k, v in self.server.refused.items()},
            "last_refusal": self.server.last_refusal or "none",
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
        rc.publish_diagnostics(self, self.diag_pub, PREDICTOR_PARAMETERS.node, level,
                               "serving" if current else "waiting for a model", values)


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
