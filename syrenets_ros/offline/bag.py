"""rosbag2 recordings in and out, with no ROS import.

The maintained ``rosbags`` library does the formats (MCAP and sqlite3 storage, CDR); this
module adds what the tools need on top: the JointState messages of one topic streamed in
recording order, and a writer for messages that are already CDR bytes (what a raw
subscription hands over). A bag that cannot be used ends in a :class:`BagError` whose text
is one line a user can act on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np
from rosbags.interfaces import Qos
from rosbags.rosbag2 import Reader, ReaderError, StoragePlugin, Writer, WriterError
from rosbags.typesys import Stores, get_typestore

JOINT_STATE = "sensor_msgs/msg/JointState"
NANOSECONDS = 1_000_000_000
STORAGES = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}
# Message definitions of the distro the package's wheels come from; JointState and the other
# recorded types are the same in every ROS 2 distro since Humble.
TYPESTORE = get_typestore(Stores.ROS2_KILTED)


class BagError(Exception):
    """A bag that cannot be read or written as asked; the text is a one-line reason."""


@dataclass(frozen=True)
class JointStateMessage:
    """One decoded sensor_msgs/JointState: header stamp [s] and the per-joint arrays."""

    stamp: float
    names: list[str]
    position: list[float]
    velocity: list[float]
    effort: list[float]


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


class JointStateBag:
    """The sensor_msgs/JointState messages of one topic of a rosbag2 recording.

    ``path`` is a bag folder (with metadata.yaml) or a single .mcap / .db3 file. Messages
    come in recording order, one at a time, so memory does not grow with the bag. ``start``
    and ``end`` [s] select a window measured from the start of the recording. A message
    whose bytes do not decode is skipped and counted in ``undecodable``.
    """

    def __init__(self, path: str | Path, topic: str = "/joint_states", start: float | None = None,
                 end: float | None = None) -> None:
        self.path = Path(path)
        self.topic = topic if topic.startswith("/") else "/" + topic
        if start is not None and end is not None and end <= start:
            raise BagError(f"the window is empty: --end {end} is not after --start {start}")
        self.start, self.end = start, end
        self.undecodable = 0
        self._reader: Reader | None = None

    def __enter__(self) -> "JointStateBag":
        if not self.path.exists():
            raise BagError(f"{self.path}: no such file or folder")
        try:
            self._reader = Reader(self.path)
            self._reader.open()
        except (ReaderError, OSError, ValueError) as error:
            self._reader = None
            raise BagError(f"{self.path} is not a readable rosbag2 recording: {_one_line(error)}") from None
        try:
            self._connections = self._topic_connections()
        except BagError:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._reader is not None:
            reader, self._reader = self._reader, None
            try:
                reader.close()
            except (ReaderError, OSError):
                pass  # closing a damaged bag must not hide the error that got us here

    def _topic_connections(self) -> list:
        reader = self._reader
        if reader.message_count == 0:
            raise BagError(f"{self.path} holds no messages")
        connections = [c for c in reader.connections if c.topic == self.topic]
        if not connections:
            listing = ", ".join(f"{c.topic} ({c.msgtype})" for c in reader.connections) or "none"
            raise BagError(f"{self.path} has no topic {self.topic}; its topics: {listing}")
        wrong = sorted({c.msgtype for c in connections} - {JOINT_STATE})
        if wrong:
            raise BagError(f"topic {self.topic} in {self.path} carries {', '.join(wrong)}, not {JOINT_STATE}")
        return connections

    @property
    def start_time(self) -> int:
        """Receive time [ns] of the first message in the recording."""
        return self._reader.start_time

    @property
    def message_count(self) -> int:
        """Messages on the topic; within a window, estimated from its share of the recording."""
        total = sum(c.msgcount for c in self._connections)
        reader = self._reader
        duration = reader.end_time - reader.start_time
        if (self.start is None and self.end is None) or duration <= 0:
            return total
        first, last = (min(max(t, reader.start_time), reader.end_time) for t in self._window_bounds())
        return math.ceil(total * (last - first) / duration)

    @property
    def duration(self) -> float:
        """Seconds of recording in the window."""
        first, last = (min(max(t, self._reader.start_time), self._reader.end_time) for t in self._window_bounds())
        return max(0, last - first) / NANOSECONDS

    def _window(self) -> tuple[int | None, int | None]:
        """[start, stop) in receive time [ns]; None = open end."""
        def at(seconds: float | None) -> int | None:
            return None if seconds is None else self.start_time + int(round(seconds * NANOSECONDS))

        return at(self.start), at(self.end)

    def _window_bounds(self) -> tuple[int, int]:
        start, stop = self._window()
        return (self._reader.start_time if start is None else start,
                self._reader.end_time if stop is None else stop)

    def timed_messages(self) -> Iterator[tuple[int, JointStateMessage]]:
        """(receive time [ns], message) in recording order."""
        if self._reader is None:
            raise BagError("the bag is not open")
        start, stop = self._window()
        try:
            for connection, received, raw in self._reader.messages(self._connections, start, stop):
                message = self._decode(raw, connection.msgtype)
                if message is not None:
                    yield received, message
        except BagError:
            raise
        except Exception as error:  # noqa: BLE001 - any failure inside the storage layer is a damaged bag
            raise BagError(f"{self.path} is damaged or truncated: {_one_line(error)}") from None

    def __iter__(self) -> Iterator[JointStateMessage]:
        return (message for _, message in self.timed_messages())

    def _decode(self, raw: bytes, msgtype: str) -> JointStateMessage | None:
        try:
            msg = TYPESTORE.deserialize_cdr(raw, msgtype)
        except Exception:  # noqa: BLE001 - the bytes of one message are data, not code: count and skip
            self.undecodable += 1
            return None
        stamp = msg.header.stamp
        # Python floats: what the sample assembler reads element by element (numpy scalars are slow).
        return JointStateMessage(stamp.sec + stamp.nanosec * 1e-9, msg.name, msg.position.tolist(),
                                 msg.velocity.tolist(), msg.effort.tolist())


def estimate_period(stamps: Sequence[float]) -> float:
    """The sampling period of a stream: the median positive stamp step (robust to a few
    gaps and duplicates). NaN when there are fewer than two distinct stamps."""
    steps = np.diff(np.asarray(stamps, dtype=np.float64))
    steps = steps[np.isfinite(steps) & (steps > 0)]
    return float(np.median(steps)) if steps.size else math.nan


# --- writing -----------------------------------------------------------------------------

def open_writer(path: str | Path, storage: str = "mcap") -> Writer:
    """A new rosbag2 (format version 9, what Jazzy and Kilted write) at ``path``, which must
    not exist yet; close it to write metadata.yaml."""
    if storage not in STORAGES:
        raise BagError(f"storage must be one of {sorted(STORAGES)}, not {storage!r}")
    try:
        writer = Writer(Path(path), version=Writer.VERSION_LATEST, storage_plugin=STORAGES[storage])
        writer.open()
    except (WriterError, OSError) as error:
        raise BagError(f"cannot record to {path}: {_one_line(error)}") from None
    return writer


def add_topic(writer: Writer, topic: str, msgtype: str, qos: Sequence[Qos] = ()):
    """Register a topic; its message definition and type hash come from :data:`TYPESTORE`,
    the offered QoS go to metadata.yaml (``ros2 bag play`` restores them)."""
    return writer.add_connection(topic, msgtype, typestore=TYPESTORE, offered_qos_profiles=list(qos))


def write_joint_states(path: str | Path, messages: Iterable[tuple[int, Sequence[str], Sequence[float],
                                                                  Sequence[float], Sequence[float]]],
                       topic: str = "/joint_states", storage: str = "mcap") -> int:
    """Write (stamp [ns], names, position, velocity, effort) tuples as JointState messages,
    received at their stamp; returns how many were written. For tests, benchmarks and
    converting other logs into a bag the learner reads."""
    joint_state = TYPESTORE.types[JOINT_STATE]
    header, time = TYPESTORE.types["std_msgs/msg/Header"], TYPESTORE.types["builtin_interfaces/msg/Time"]
    writer = open_writer(path, storage)
    count = 0
    try:
        connection = add_topic(writer, topic, JOINT_STATE)
        for stamp, names, position, velocity, effort in messages:
            msg = joint_state(header=header(stamp=time(sec=stamp // NANOSECONDS, nanosec=stamp % NANOSECONDS),
                                            frame_id=""),
                              name=list(names), position=np.asarray(position, dtype=np.float64),
                              velocity=np.asarray(velocity, dtype=np.float64),
                              effort=np.asarray(effort, dtype=np.float64))
            writer.write(connection, stamp, TYPESTORE.serialize_cdr(msg, JOINT_STATE))
            count += 1
    finally:
        writer.close()
    return count
