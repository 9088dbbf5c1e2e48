"""ROS node `syrenets_learner`: turns /joint_states into samples, trains online in worker
threads, and publishes model snapshots and the readable Lagrangian.

It subscribes before it imports the learning core: torch takes seconds to import (13 s wall
measured on a loaded 2-core machine, when the simulator streamed after 7 s), and states sent
meanwhile wait in the subscription's queue instead of being lost (issue 20)."""

from __future__ import annotations

import ctypes
import os
import sys
import threading
import time
import traceback
from typing import TYPE_CHECKING

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rcl_interfaces.msg import SetParametersResult
from rclpy.node import Node
from rclpy.parameter import Parameter
from sensor_msgs.msg import JointState
from std_msgs.msg import String

from syrenets_ros.ros import common as rc
from syrenets_ros.ros.parameters import check_set, declare_schema
from syrenets_ros.tools.graph import node_spec

if TYPE_CHECKING:
    from syrenets_ros.online.learner import Publication

STATE_BATCH_PERIOD_S = 0.02  # joint states are taken from the queue this often (wall s)
# The learner is this far behind the stream (sim seconds) before /diagnostics warns (issue 20).
LAG_WARNING = 1.0


# The queue that holds /joint_states while the learning core loads: 20 s at 1 kHz.
STARTUP_QUEUE = 20_000
# Freed heap pages go back to the OS this often (issue 23): selections allocate and free ~100 MB
# of tensors from two threads, and glibc's heaps kept the high-water marks (the lowest RSS
# stepped up ~4 MB every few minutes over a 12-min soak).
HEAP_TRIM_PERIOD_S = 10.0
_LIBC = ctypes.CDLL(None) if sys.platform.startswith("linux") else None


class LearnerNode(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__(node_spec("learner").name, **kwargs)
        # 1 kHz of states: taken in batches on a timer instead of a callback per message.
        self._states = rc.TopicReader(self, JointState, rc.JOINT_STATES, rc.batched_stream_qos(STARTUP_QUEUE))
        import torch

        from syrenets_ros.online.learner import LEARNER_PARAMETERS, LearnerConfig, OnlineLearner
        from syrenets_ros.online.stream import REJECT_REASONS, SampleAssembler, StreamChecks

        self._schema, self._reject_reasons = LEARNER_PARAMETERS, REJECT_REASONS
        values = declare_schema(self, LEARNER_PARAMETERS)
        config = LearnerConfig.from_parameters(values)
        torch.set_num_threads(values["torch_threads"])
        os.setpriority(os.PRIO_PROCESS, 0, max(os.getpriority(os.PRIO_PROCESS, 0), values["niceness"]))
        position_noise, velocity_noise = values["sensor_noise"]
        checks = StreamChecks(clock=lambda: self.get_clock().now().nanoseconds * 1e-9,
                              stamp_tolerance=values["stamp_tolerance"], position_noise=position_noise,
                              velocity_noise=velocity_noise)
        self.assembler = SampleAssembler(config.joint_names, values["joint_state_period"], checks=checks)
        self.learner = OnlineLearner(config, log=self.get_logger().info, warn=self.get_logger().warning)
        self.learner.buffer.max_lag = values["max_lag"]
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self.worker_errors = 0
        self.last_publication: Publication | None = None
        self._steps_at_last_diag = 0
        self._last_diag = time.monotonic()

        self.model_pub = self.create_publisher(String, rc.MODEL, rc.LATCHED_QOS)
        self.equation_pub = self.create_publisher(String, rc.EQUATION, rc.LATCHED_QOS)
        self.diag_pub = self.create_publisher(DiagnosticArray, rc.DIAGNOSTICS, 10)
        self.create_timer(STATE_BATCH_PERIOD_S, self.take_joint_states, clock=rc.steady_clock())
        self.create_timer(1.0, self.publish_diagnostics, clock=rc.steady_clock())
        if _LIBC is not None and hasattr(_LIBC, "malloc_trim"):
            self.create_timer(HEAP_TRIM_PERIOD_S, lambda: _LIBC.malloc_trim(0), clock=rc.steady_clock())
        self.get_logger().info(f"learning on {self.learner.device}; joints {list(config.joint_names)}")
        self._running = True
        # Intake (ingest, change detection, coefficient tracking) has a thread of its own: a
        # refit in the training thread takes seconds on a loaded machine, and a learner that
        # stops reading meanwhile falls behind the robot (issue 20).
        self._workers = [threading.Thread(target=self._loop, args=(step,), name=name, daemon=True)
                         for name, step in (("syrenets_intake", self._take_in), ("syrenets_training", self._train))]
        publication = self.learner.resume()
        if publication:
            self._publish(publication)
        for worker in self._workers:
            worker.start()

    def _on_set_parameters(self, params: list[Parameter]) -> SetParametersResult:
        changes, result = check_set(self._schema, params)
        for name, value in changes.items():
            setattr(self.learner.config, name, value)
        return result

    def take_joint_states(self) -> None:
        for msg in self._states.take():
            sample = self.assembler.add(rc.stamp_to_seconds(msg.header.stamp), msg.name, msg.position,
                                        msg.velocity, msg.effort)
            if sample is not None:
                self.learner.buffer.push(sample)

    def _take_in(self) -> bool:
        return self.learner.observe() > 0

    def _train(self) -> bool:
        trained = self.learner.train_step()
        publication = self.learner.maybe_select()
        if publication:
            self._publish(publication)
            self.learner.maybe_checkpoint(publication)
        return bool(trained or publication)

    def _loop(self, step) -> None:
        """A worker: never dies on an error in one iteration, reports it instead."""
        while self._running:
            try:
                if not step():
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
            **{f"rejected[{reason}]": assembler.rejected[reason] for reason in self._reject_reasons},
            "states_missing": assembler.missing,
            "buffer_size": len(self.learner.buffer),
            "training_steps": stats.training_steps,
            "training_steps_per_s": f"{rate:.1f}",
            "dropped_steps_non_finite": stats.dropped_steps,
            "loss": f"{stats.loss:.6g}",
            "holdout_torque_rmse": f"{stats.holdout_rmse:.6g}",
            "served_source": stats.served_source,
            "selection_wins": stats.wins,
            "model_version": self.learner.version,
            "run_id": str(self.learner.run_id),
            "candidates_not_published": stats.implausible,
            "device": str(self.learner.device),
            "change_detections": stats.change_detections,
            "last_change_stamp": stats.change_stamps[-1] if stats.change_stamps else "none",
            "checkpoints_written": stats.checkpoints_written,
            "checkpoints_skipped": len(stats.checkpoints_skipped),
            "initial_model_refused": stats.initial_model_refused or "no",
            "worker_errors": self.worker_errors,
            "row_noise_per_joint": [f"{v:.3g}" for v in stats.noise],
            "guard_refusals": stats.guard_refusals,
            "model_insufficient": stats.insufficiency or "no",
            "admitted_network_terms": stats.admitted_terms,
            # Served model + the network trained on its residual vs the served model alone (before
            # one is served: the raw network vs the library refit), held out; nan while it is off.
            "network_holdout_rmse": f"{stats.network_rmse:.3g} / {stats.network_rival_rmse:.3g}",
            "library_grown_by_check": stats.grown_terms,
            "coefficient_stderr": self.learner.coefficient_stderr(),
            "extrapolation_uncertain": f"{stats.extrapolation_uncertain:.3g}",
            "selection_cpu_s": f"{stats.selection_cpu:.3g}",
            "lag_s": f"{self.learner.buffer.lag:.3f}",
            "samples_dropped_behind": self.learner.buffer.dropped_behind,
            "selection_seconds": f"{stats.selection_seconds:.3f}",
            "selections_overtaken_by_change": stats.selections_overtaken,
            "integral_rows": stats.rows or f"{self.learner.rows.form} (not decided yet)",
            "integral_window_samples": self.learner.sizes.window,
            "waiting_for": self.learner.waiting if self.last_publication is None else "",
        }
        lag = self.learner.buffer.lag
        level = DiagnosticStatus.ERROR if self.worker_errors else (
            DiagnosticStatus.OK if self.last_publication and not stats.insufficiency and lag <= LAG_WARNING
            else DiagnosticStatus.WARN)
        message = (f"serving v{self.learner.version} ({stats.served_source})" if self.last_publication
                   else f"collecting samples{': ' + self.learner.waiting if self.learner.waiting else ''}")
        if stats.insufficiency:
            message += f"; model insufficient: {stats.insufficiency}"
        if stats.extrapolation_uncertain:
            message += (f"; extrapolation uncertain: equally good models differ by "
                        f"{stats.extrapolation_uncertain:.3g} N·m outside the visited states")
        if lag > LAG_WARNING:
            message += f"; behind the stream by {lag:.2f} s (CPU-starved?)"
        rc.publish_diagnostics(self, self.diag_pub, self.get_name(), level, message, values)

    def destroy_node(self) -> None:
        self._running = False
        # An iteration in progress (a refit, at nice 10 on a busy machine) ends first: a worker
        # still in torch when the interpreter exits aborts the process.
        deadline = time.monotonic() + 15.0
        for worker in self._workers:
            worker.join(timeout=max(0.0, deadline - time.monotonic()))
        alive = [worker.name for worker in self._workers if worker.is_alive()]
        self.get_logger().info(f"learner workers stopped ({'timed out: ' + ', '.join(alive) if alive else 'cleanly'})")
        self._states.destroy()
        super().destroy_node()


def main(args: list[str] | None = None) -> None:
    rc.run_node(LearnerNode, args=args)


if __name__ == "__main__":
    main()
