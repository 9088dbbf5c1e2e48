"""ROS node `syrenets_recorder`: records the graph's topics to a rosbag2 (MCAP) as they
arrive. Raw subscriptions hand over the CDR bytes that rosbag2 stores, so nothing is decoded
and re-encoded; each message is stamped with its receive time, as `ros2 bag record` does."""

from __future__ import annotations

import threading
from pathlib import Path

from diagnostic_msgs.msg import DiagnosticArray
from rclpy.node import Node
from rclpy.qos import QoSProfile
from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime
from sensor_msgs.msg import JointState
from std_msgs.msg import String
from trajectory_msgs.msg import JointTrajectory

from syrenets_ros.offline.bag import add_topic, open_writer
from syrenets_ros.ros import common as rc

# (topic, message class, subscription QoS = the QoS its publisher in this graph offers)
RECORDED_TOPICS = (
    (rc.JOINT_STATES, JointState, rc.STREAM_QOS),
    (rc.REFERENCE, JointTrajectory, rc.STREAM_QOS),
    (rc.PREDICTED_TORQUE, JointState, rc.STREAM_QOS),
    (rc.MODEL, String, rc.LATCHED_QOS),
    (rc.EQUATION, String, rc.LATCHED_QOS),
    (rc.DIAGNOSTICS, DiagnosticArray, QoSProfile(depth=100)),
)


def message_type_name(cls: type) -> str:
    """'sensor_msgs/msg/JointState' for the generated class sensor_msgs.msg.JointState."""
    return f"{cls.__module__.split('.')[0]}/msg/{cls.__name__}"


def bag_qos(profile: QoSProfile) -> Qos:
    """The rosbags form of a QoS profile, for metadata.yaml (the enums share rmw's values)."""
    def duration(value) -> QosTime:
        sec, nsec = divmod(value.nanoseconds, 1_000_000_000)
        return QosTime(sec, nsec)

    return Qos(QosHistory(int(profile.history)), profile.depth, QosReliability(int(profile.reliability)),
               QosDurability(int(profile.durability)), duration(profile.deadline), duration(profile.lifespan),
               QosLiveliness(int(profile.liveliness)), duration(profile.liveliness_lease_duration),
               profile.avoid_ros_namespace_conventions)


class Recorder(Node):
    """Writes every message on the recorded topics to the bag at ``path`` (which must not
    exist); the bag is complete once :meth:`close` (or destroy_node) ran."""

    def __init__(self, path: str | Path, topics=RECORDED_TOPICS, **kwargs) -> None:
        # Before the node exists: a bag that cannot be created (an unwritable folder) ends in
        # BagError with no half-made node for the context's shutdown to destroy.
        self._lock = threading.Lock()  # close() may come from another thread than the callbacks
        self.path = Path(path)
        self._writer = open_writer(self.path)
        try:
            super().__init__("syrenets_recorder", **kwargs)
        except BaseException:
            self.close()
            raise
        self.counts: dict[str, int] = {}
        for topic, cls, qos in topics:
            name = self.resolve_topic_name(topic)  # as the bag names it, e.g. /joint_states
            connection = add_topic(self._writer, name, message_type_name(cls), [bag_qos(qos)])
            self.create_subscription(cls, topic, lambda raw, c=connection: self._write(c, raw), qos, raw=True)
            self.counts[name] = 0
        self.get_logger().info(f"recording {', '.join(self.counts)} to {self.path}")

    def _write(self, connection, raw: bytes) -> None:
        with self._lock:
            if self._writer is None:
                return
            self._writer.write(connection, self.get_clock().now().nanoseconds, raw)
            self.counts[connection.topic] += 1

    def close(self) -> None:
        """Finish the bag (writes the MCAP summary and metadata.yaml); idempotent."""
        with self._lock:
            writer, self._writer = self._writer, None
        if writer is not None:
            writer.close()

    def destroy_node(self) -> None:
        self.close()
        super().destroy_node()
