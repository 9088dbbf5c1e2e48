"""Small helpers for tests with real nodes over real DDS (no mocks): spin nodes in a
background thread, collect every message of a topic, wait for a condition with a deadline."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.02) -> bool:
    """Poll ``predicate`` until it holds or ``timeout`` seconds pass; returns the last value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


@contextmanager
def spinning(context: Context, *nodes: Node) -> Iterator[SingleThreadedExecutor]:
    """Spin ``nodes`` on their own executor thread for the duration of the block."""
    executor = SingleThreadedExecutor(context=context)
    for node in nodes:
        executor.add_node(node)
    thread = threading.Thread(target=executor.spin, daemon=True)
    thread.start()
    try:
        yield executor
    finally:
        executor.shutdown()
        thread.join(timeout=5.0)


class Collector:
    """Keeps every message received on ``topic`` (reliable, deep queue) for later checks."""

    def __init__(self, node: Node, msg_type: Any, topic: str, depth: int = 20000) -> None:
        self._lock = threading.Lock()
        self._messages: list[Any] = []
        qos = QoSProfile(depth=depth, reliability=ReliabilityPolicy.RELIABLE)
        node.create_subscription(msg_type, topic, self._receive, qos)

    def _receive(self, msg: Any) -> None:
        with self._lock:
            self._messages.append(msg)

    def __len__(self) -> int:
        with self._lock:
            return len(self._messages)

    def messages(self) -> list[Any]:
        with self._lock:
            return list(self._messages)

    def clear(self) -> None:
        with self._lock:
            self._messages.clear()

    def newest_status(self, name: str) -> dict[str, str]:
        """The key/values of the newest /diagnostics status called ``name`` received ({} if none)."""
        for msg in reversed(self.messages()):
            for status in msg.status:
                if status.name == name:
                    return {kv.key: kv.value for kv in status.values}
        return {}


def publish_in_real_time(publisher: Any, joint_names: list[str], record: Any) -> None:
    """Publish a record's samples (stamp, q, q̇, τ) as JointStates paced at real time and stamped
    on this host's clock from now on."""
    from sensor_msgs.msg import JointState

    from syrenets_ros.ros import common as rc

    start = time.time()
    for k in range(len(record.stamp)):
        if k % 20 == 0:
            time.sleep(max(0.0, start + float(record.stamp[k]) - time.time()))
        message = JointState(name=list(joint_names), position=record.q[k].tolist(), velocity=record.qd[k].tolist(),
                             effort=record.tau[k].tolist())
        message.header.stamp = rc.seconds_to_stamp(start + float(record.stamp[k]))
        publisher.publish(message)
