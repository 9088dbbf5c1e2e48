"""rosbag2 recordings in and out, with no ROS import.

The maintained ``rosbags`` library does the formats (MCAP and sqlite3 storage, CDR); this
module adds what the tools need on top: the JointState messages of one topic streamed in
recording order, and a writer for messages that are already CDR bytes (what a raw
subscription hands over). A bag that cannot be used ends in a :class:`BagError` whose text
is one line a user can act on.
"""

from __future__ import annotations

import io
import logging
import math
import os
import stat
import struct
import sys
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Callable, Iterable, Iterator, Sequence

import lz4.frame
import numpy as np
from rosbags.interfaces import Qos
from rosbags.rosbag2 import Reader, ReaderError, StoragePlugin, Writer, WriterError
from rosbags.rosbag2 import storage_mcap
from rosbags.typesys import Stores, get_typestore
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from syrenets_ros.files import not_regular, read_regular

if sys.version_info >= (3, 14):
    from compression import zstd
else:
    from backports import zstd

JOINT_STATE = "sensor_msgs/msg/JointState"
NANOSECONDS = 1_000_000_000
STORAGES = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}
# Message definitions of the distro the package's wheels come from; JointState and the other
# recorded types are the same in every ROS 2 distro since Humble.
TYPESTORE = get_typestore(Stores.ROS2_KILTED)
MAX_METADATA_BYTES = 16 << 20  # a metadata.yaml of thousands of topics is a few hundred kB
# Decompression bounds: the reader expands a file-compressed bag into a temporary folder and
# a message- or chunk-compressed one in memory, so a small bag could fill the disk or the
# memory (a 31 700x bomb was seen). A JointState recording compresses well below 1000x (its
# stamps and values change every message); a tiny bag may expand to MIN_EXPANDED_BYTES.
MAX_EXPANSION = 1000
MIN_EXPANDED_BYTES = 16 << 20
MAX_CHUNK_BYTES = 256 << 20  # one MCAP chunk held in memory (rosbag2 writes 768 KiB chunks)
MAX_MESSAGE_BYTES = 16 << 20  # one JointState of 100 000 joints is 2.4 MB
MCAP_MAGIC = b"\x89MCAP0\r\n"
LOG = logging.getLogger(__name__)


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
        self.shortfall: str | None = None  # set when a full read got fewer messages than declared
        self._reader: Reader | None = None
        self._message_compressed = False

    def __enter__(self) -> "JointStateBag":
        self._check_files()
        try:
            self._reader = Reader(self.path)
            self._reader.open()
        except (ReaderError, OSError, ValueError) as error:
            self._reader = None
            raise BagError(f"{self.path} is not a readable rosbag2 recording: {_one_line(error)}") from None
        try:
            self._connections = self._topic_connections()
            self._check_storage()
        except BagError:
            self.close()
            raise
        return self

    def _check_files(self) -> None:
        """Refuse before the reader opens anything: what is not a regular file or a folder (a
        FIFO blocks an open forever), a metadata.yaml whose counts are not counts, a
        file-compressed bag that would expand to more temporary disk than the bound, and an
        MCAP file whose records or chunks declare sizes beyond the file or the bounds."""
        try:
            mode = os.stat(self.path).st_mode
        except FileNotFoundError:
            raise BagError(f"{self.path}: no such file or folder") from None
        except OSError as error:
            raise BagError(f"cannot read {self.path}: {_one_line(error)}") from None
        if not stat.S_ISDIR(mode):
            if (kind := not_regular(mode)) is not None:
                raise BagError(f"{self.path} is {kind}, not a bag folder or a .mcap / .db3 file")
            _check_mcap(self.path)
            return
        unreadable = f"{self.path} is not a readable rosbag2 recording"
        try:
            info = YAML(typ="safe").load(read_regular(self.path / "metadata.yaml", MAX_METADATA_BYTES))
            info = info["rosbag2_bagfile_information"]
            files = [self.path / PurePath(name).name for name in info["relative_file_paths"]]
            counts = {"message_count": info["message_count"]}
            counts.update((f"message_count of {topic['topic_metadata']['name']}", topic["message_count"])
                          for topic in info["topics_with_message_count"])
            counts.update((f"message_count of file {entry['path']}", entry["message_count"])
                          for entry in info.get("files") or ())
            compression = str(info.get("compression_mode") or "").lower()
        except OSError as error:
            raise BagError(f"{unreadable}: {_one_line(error)}") from None
        except (YAMLError, KeyError, TypeError, AttributeError, ValueError) as error:
            raise BagError(f"{unreadable}: metadata.yaml is malformed: {_one_line(error)}") from None
        for name, count in counts.items():
            if type(count) is not int or not 0 <= count < 2**63:
                raise BagError(f"{unreadable}: metadata.yaml gives {name} as {count!r}, not a count of messages")
        for file in files:
            if file.exists() and (kind := not_regular(os.stat(file).st_mode)) is not None:
                raise BagError(f"{unreadable}: its storage file {file.name} is {kind}, not a regular file")
            if compression == "file" and file.exists():
                _check_expansion(file)
            elif file.exists():
                _check_mcap(file)

    def _check_storage(self) -> None:
        """Counts of metadata.yaml against the storage files' own, and the window against the
        recording."""
        reader = self._reader
        storages = getattr(reader.storage, "storages", [reader.storage])
        declared = sum(c.msgcount for c in self._connections)
        stored = sum(c.msgcount for storage in storages for c in storage.connections if c.topic == self.topic)
        if declared != stored:
            raise BagError(f"metadata.yaml of {self.path} declares {declared} messages on {self.topic}, its storage "
                           f"files hold {stored}: the metadata does not match the data (`ros2 bag reindex` "
                           "rebuilds it)")
        if reader.compression_mode == "message":
            # The reader would expand each message without a bound; it hands over the
            # compressed bytes instead and timed_messages expands them within MAX_MESSAGE_BYTES.
            reader.storage.metadata = reader.storage.metadata._replace(compression_mode=None)
            self._message_compressed = True
        length = (reader.end_time - reader.start_time) / NANOSECONDS
        if self.start is not None and self.start > length:
            raise BagError(f"the window is empty: --start {self.start:g} s is after the recording's end "
                           f"({length:.6g} s from its start)")

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
        read, last = 0, self._reader.start_time
        try:
            for connection, received, raw in self._reader.messages(self._connections, start, stop):
                read, last = read + 1, received
                message = self._decode(self._expand(raw) if self._message_compressed else raw, connection.msgtype)
                if message is not None:
                    yield received, message
        except BagError:
            raise
        except Exception as error:  # noqa: BLE001 - any failure inside the storage layer is a damaged bag
            raise BagError(f"{self.path} is damaged or truncated: {_one_line(error)}") from None
        whole = (start is None or start <= self._reader.start_time) and (stop is None or stop >= self._reader.end_time)
        declared = sum(c.msgcount for c in self._connections)
        if whole and read != declared and self.shortfall is None:
            self.shortfall = (f"read {read} of {declared} messages declared on {self.topic}: the bag is damaged "
                              f"after t={(last - self._reader.start_time) / NANOSECONDS:.6g} s (from the "
                              f"recording's start); only the {read} read are used")
            LOG.warning("warning: %s", self.shortfall)

    def _expand(self, raw: bytes) -> bytes:
        """One zstd-compressed message, expanded to at most MAX_MESSAGE_BYTES; a larger one
        ends the read (a decompression bomb), a corrupt one decodes as nothing (counted)."""
        expander = zstd.ZstdDecompressor()
        try:
            data = expander.decompress(raw, max_length=MAX_MESSAGE_BYTES)
        except zstd.ZstdError:
            return b""
        if not expander.eof and not expander.needs_input:
            raise BagError(f"{self.path}: a compressed message on {self.topic} expands beyond {MAX_MESSAGE_BYTES} "
                           "bytes; refused at that bound")
        return data

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


def _check_expansion(path: Path) -> None:
    """BagError if the zstd file at ``path`` expands beyond max(MIN_EXPANDED_BYTES,
    MAX_EXPANSION x its size): counted by streaming it, nothing is written."""
    limit = max(MIN_EXPANDED_BYTES, MAX_EXPANSION * path.stat().st_size)
    expanded = 0
    try:
        with path.open("rb") as raw, zstd.open(raw, "rb") as stream:
            while block := stream.read(1 << 20):
                expanded += len(block)
                if expanded > limit:
                    raise BagError(f"{path} expands to more than {limit} bytes ({MAX_EXPANSION}x its size, at least "
                                   f"{MIN_EXPANDED_BYTES >> 20} MiB): refused before expanding it to temporary disk")
    except (zstd.ZstdError, EOFError, OSError) as error:
        raise BagError(f"{path} is damaged or truncated: {_one_line(error)}") from None


def _chunk_bound(compressed: int) -> int:
    """The most bytes an MCAP chunk of ``compressed`` bytes may expand to in memory."""
    return min(MAX_CHUNK_BYTES, max(MIN_EXPANDED_BYTES, MAX_EXPANSION * compressed))


def _check_mcap(path: Path) -> None:
    """BagError unless every record of the MCAP file at ``path`` lies within the file and every
    chunk (its record and its summary index entry) declares a compressed size within its
    record and an expanded size within the bound. The reader allocates what a length field
    declares before it reads (a lying 2^62 ended in MemoryError), so this walk reads record
    headers only, from the data section and from where the footer says the summary starts.
    A file that is not MCAP, or whose footer is missing, is left to the reader's own refusal."""
    size = path.stat().st_size
    footer = size - 37  # footer record (opcode, length, 20 bytes) and the closing magic
    with path.open("rb") as file:
        if file.read(8) != MCAP_MAGIC or footer < 8:
            return
        file.seek(footer)
        tail = file.read(37)
        if tail[:9] != b"\x02\x14" + bytes(7) or tail[-8:] != MCAP_MAGIC:
            return
        (summary_start,) = struct.unpack_from("<Q", tail, 9)
        for start in (8, summary_start) if 8 < summary_start < footer else (8,):
            _walk_mcap(path, file, start, footer)


def _walk_mcap(path: Path, file: io.BufferedReader, position: int, end: int) -> None:
    """The records from ``position`` to ``end`` (see _check_mcap)."""
    def refuse(what: str) -> BagError:
        return BagError(f"{path}: {what}; refused before reading it (a damaged or forged MCAP file)")

    while position < end:
        file.seek(position)
        head = file.read(9)
        if len(head) < 9:
            raise refuse(f"a record at byte {position} is cut off")
        opcode, length = head[0], struct.unpack_from("<Q", head, 1)[0]
        if length > end - position - 9:
            raise refuse(f"a record (opcode 0x{opcode:02x}) at byte {position} declares {length} bytes, beyond the "
                         f"file's {end + 37} bytes")
        if opcode in (0x06, 0x08):  # chunk, chunk index
            record = file.read(min(length, 4096 if opcode == 0x06 else 1 << 20))  # the fields, not the data
            try:
                if opcode == 0x06:
                    expanded = struct.unpack_from("<Q", record, 16)[0]
                    (name,) = struct.unpack_from("<I", record, 28)
                    (compressed,) = struct.unpack_from("<Q", record, 32 + name)
                    room = length - 40 - name
                else:
                    chunk_start, chunk_length = struct.unpack_from("<QQ", record, 16)
                    (offsets,) = struct.unpack_from("<I", record, 32)
                    (name,) = struct.unpack_from("<I", record, 44 + offsets)
                    compressed, expanded = struct.unpack_from("<QQ", record, 48 + offsets + name)
                    room = chunk_length - 49 - name
                    if chunk_start + chunk_length > end:
                        raise refuse(f"the summary places a chunk at bytes {chunk_start}+{chunk_length}, beyond "
                                     f"the file's {end + 37} bytes")
            except struct.error:
                raise refuse(f"the chunk record at byte {position} does not parse") from None
            if compressed > room:
                raise refuse(f"an MCAP chunk declares {compressed} compressed bytes, beyond its record's {room}")
            if expanded > (limit := _chunk_bound(compressed)):
                raise BagError(f"{path}: an MCAP chunk of {compressed} bytes declares {expanded} bytes expanded, "
                               f"above the bound of {limit}; refused before expanding it")
        position += 9 + length


def _expand_within(stream: type) -> Callable[[bytes, int], bytes]:
    """A chunk decompressor for the reader that expands at most the chunk's declared size
    (bounded by _check_mcap): the reader's own expands everything before it compares."""
    def expand(data: bytes, size: int) -> bytes:
        with stream(io.BytesIO(data)) as expanded:
            raw = expanded.read(size + 1)
        if len(raw) > size:
            raise ReaderError(f"a chunk expands beyond the {size} bytes it declares (a decompression bomb or a "
                              "damaged chunk); refused at that bound")
        return raw

    return expand


storage_mcap.DECOMPRESSORS.update(zstd=_expand_within(zstd.ZstdFile), lz4=_expand_within(lz4.frame.LZ4FrameFile))


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
    writer = open_writer(path, storage)
    count = 0
    try:
        connection = add_topic(writer, topic, JOINT_STATE)
        for stamp, names, position, velocity, effort in messages:
            writer.write(connection, stamp, joint_state_cdr(stamp, names, position, velocity, effort))
            count += 1
    finally:
        writer.close()
    return count


def joint_state_cdr(stamp: int, names: Sequence[str], position: Sequence[float], velocity: Sequence[float],
                    effort: Sequence[float]) -> bytes:
    """One JointState stamped ``stamp`` [ns], as the CDR bytes a bag stores."""
    header, time = TYPESTORE.types["std_msgs/msg/Header"], TYPESTORE.types["builtin_interfaces/msg/Time"]
    msg = TYPESTORE.types[JOINT_STATE](
        header=header(stamp=time(sec=stamp // NANOSECONDS, nanosec=stamp % NANOSECONDS), frame_id=""),
        name=list(names), position=np.asarray(position, dtype=np.float64),
        velocity=np.asarray(velocity, dtype=np.float64), effort=np.asarray(effort, dtype=np.float64))
    return TYPESTORE.serialize_cdr(msg, JOINT_STATE)
