"""ROS node `syrenets_learner`: turns /joint_states into samples, trains online in a worker
thread, and publishes model snapshots and the readable Lagrangian."""

from __future__ import annotations

import threading
import time
import traceback

import torch
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rcl_interfaces.msg import SetParametersResult
from rclpy.node import Node
from rclpy.parameter import Parameter
from sensor_msgs.msg import JointState
from std_msgs.msg import String

from syrenets_ros import ros_common as rc
from syrenets_ros.online import REJECT_REASONS, SampleAssembler
from syrenets_ros.online_learner import LearnerConfig, OnlineLearner, Publication

# Parameters the worker reads live; everything else takes effect at start.
LIVE_PARAMETERS = {"snapshot_period", "max_train_rate", "network_enabled", "change_ratio"}


class LearnerNode(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__("syrenets_learner", **kwargs)
        d = LearnerConfig()
        p = lambda *a, **k: rc.declare(self, *a, **k)  # noqa: E731
        config = LearnerConfig(
            joint_names=tuple(p("joint_names", list(d.joint_names), "joints learned, matched by name", read_only=True)),
            device=p("device", d.device, "auto (CUDA when available, else CPU) | cpu | cuda", read_only=True),
            batch_size=p("batch_size", d.batch_size, "network minibatch size", low=1, high=4096, read_only=True),
            buffer_capacity=p("buffer_capacity", d.buffer_capacity, "replay buffer size [samples]",
                              low=1000, high=10_000_000, read_only=True),
            recent_fraction=p("recent_fraction", d.recent_fraction, "share of each minibatch from recent data",
                              low=0.0, high=1.0, read_only=True),
            recent_window=p("recent_window", d.recent_window, "what counts as recent [samples]",
                            low=1, high=10_000_000, read_only=True),
            holdout=p("holdout", d.holdout, "newest samples held out to choose the served model",
                      low=10, high=100_000, read_only=True),
            fit_samples=p("fit_samples", d.fit_samples, "samples used by each symbolic refit",
                          low=100, high=1_000_000, read_only=True),
            min_fit_samples=p("min_fit_samples", d.min_fit_samples, "samples needed before the first model",
                              low=50, high=1_000_000, read_only=True),
            snapshot_period=p("snapshot_period", d.snapshot_period, "wall seconds between model publications",
                              low=0.05, high=3600.0),
            network_enabled=p("network_enabled", d.network_enabled, "train the SyReNet (structure search)"),
            max_train_rate=p("max_train_rate", d.max_train_rate, "network steps per second at most",
                             low=0.1, high=10_000.0),
            change_window=p("change_window", d.change_window, "samples per change-detection window",
                            low=10, high=100_000, read_only=True),
            change_ratio=p("change_ratio", d.change_ratio, "residual jump (× baseline) that flags a change",
                           low=1.5, high=1e6),
            change_floor=p("change_floor", d.change_floor, "residual (N·m)² below which nothing is a change",
                           low=0.0, high=1e6, read_only=True),
            checkpoint_dir=p("checkpoint_dir", d.checkpoint_dir, "checkpoint folder ('' = none)", read_only=True),
            checkpoint_period=p("checkpoint_period", d.checkpoint_period, "wall seconds between checkpoints",
                                low=0.1, high=86_400.0, read_only=True),
            seed=p("seed", d.seed, "random seed", low=0, high=2**31 - 1, read_only=True),
        )
        period = p("joint_state_period", 0.001, "expected stamp spacing of /joint_states [s]",
                   low=1e-5, high=1.0, read_only=True)
        threads = p("torch_threads", 1, "CPU threads for training; more than the free cores slows "
                    "everything (the simulator shares them)", low=1, high=256, read_only=True)
        torch.set_num_threads(threads)
        if config.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device must be auto, cpu or cuda, not {config.device!r}")
        self.assembler = SampleAssembler(config.joint_names, period)
        self.learner = OnlineLearner(config, log=self.get_logger().info)
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self.worker_errors = 0
        self.last_publication: Publication | None = None
        self._steps_at_last_diag = 0
        self._last_diag = time.monotonic()

        self.model_pub = self.create_publisher(String, rc.MODEL, rc.LATCHED_QOS)
        self.equation_pub = self.create_publisher(String, rc.EQUATION, rc.LATCHED_QOS)
        self.diag_pub = self.create_publisher(DiagnosticArray, rc.DIAGNOSTICS, 10)
        self.create_subscription(JointState, rc.JOINT_STATES, self.on_joint_state, rc.STREAM_QOS)
        self.create_timer(1.0, self.publish_diagnostics, clock=rc.steady_clock())
        self.get_logger().info(f"learning on {self.learner.device}; joints {list(config.joint_names)}")
        self._running = True
        self._worker = threading.Thread(target=self._work, name="syrenets_training", daemon=True)
        publication = self.learner.resume()
        if publication:
            self._publish(publication)
        self._worker.start()

    def _on_set_parameters(self, params: list[Parameter]) -> SetParametersResult:
        for param in params:
            if param.name in LIVE_PARAMETERS:
                setattr(self.learner.config, param.name, param.value)
        return SetParametersResult(successful=True)

    def on_joint_state(self, msg: JointState) -> None:
        sample = self.assembler.add(rc.stamp_to_seconds(msg.header.stamp), msg.name, msg.position,
                                    msg.velocity, msg.effort)
        if sample is not None:
            self.learner.buffer.push(sample)

    def _work(self) -> None:
        """Training worker: never dies on an error in one iteration, reports it instead."""
        while self._running:
            try:
                ingested = self.learner.observe()
                trained = self.learner.train_step()
                publication = self.learner.maybe_select()
                if publication:
                    self._publish(publication)
                    self.learner.maybe_checkpoint(publication)
                if not (ingested or trained or publication):
                    time.sleep(0.002)
            except Exception:  # noqa: BLE001 - one bad iteration must not stop learning
                self.worker_errors += 1
                self.get_logger().error(f"learner iteration failed:\n{traceback.format_exc()}")
                time.sleep(0.1)

    def _publish(self, publication: Publication) -> None:
        self.model_pub.publish(String(data=publication.payload))
        self.equation_pub.publish(String(data=publication.equation))
        self.last_publication = publication
        self.get_logger().info(f"model v{publication.version} from {publication.source}, "
                               f"held-out torque RMSE {publication.holdout_rmse:.3g} N·m: {publication.equation}")

    def publish_diagnostics(self) -> None:
        stats, assembler = self.learner.stats, self.assembler
        now = time.monotonic()
        rate = (stats.training_steps - self._steps_at_last_diag) / max(now - self._last_diag, 1e-9)
        self._steps_at_last_diag, self._last_diag = stats.training_steps, now
        values = {
            "samples_received": assembler.received,
            "samples_accepted": assembler.accepted,
            "samples_rejected": sum(assembler.rejected.values()),
            **{f"rejected[{reason}]": assembler.rejected[reason] for reason in REJECT_REASONS},
            "buffer_size": len(self.learner.buffer),
            "training_steps": stats.training_steps,
            "training_steps_per_s": f"{rate:.1f}",
            "dropped_steps_non_finite": stats.dropped_steps,
            "loss": f"{stats.loss:.6g}",
            "holdout_torque_rmse": f"{stats.holdout_rmse:.6g}",
            "served_source": stats.served_source,
            "selection_wins": stats.wins,
            "model_version": self.learner.version,
            "device": str(self.learner.device),
            "change_detections": stats.change_detections,
            "last_change_stamp": stats.change_stamps[-1] if stats.change_stamps else "none",
            "checkpoints_written": stats.checkpoints_written,
            "checkpoints_skipped": len(stats.checkpoints_skipped),
            "worker_errors": self.worker_errors,
        }
        level = DiagnosticStatus.ERROR if self.worker_errors else (
            DiagnosticStatus.OK if self.last_publication else DiagnosticStatus.WARN)
        message = (f"serving v{self.learner.version} ({stats.served_source})" if self.last_publication
                   else "collecting samples")
        rc.publish_diagnostics(self, self.diag_pub, "syrenets_learner", level, message, values)

    def destroy_node(self) -> None:
        self._running = False
        if self._worker.is_alive():
            self._worker.join(timeout=5.0)
        self.get_logger().info(f"training worker stopped ({'cleanly' if not self._worker.is_alive() else 'timed out'})")
        super().destroy_node()


def main(args: list[str] | None = None) -> None:
    rc.run_node(LearnerNode, args=args)


if __name__ == "__main__":
    main()
