"""Reading JointState streams from real rosbag2 files written by the rosbags library (MCAP and
sqlite3, folders and single files), and the one-line errors for bags that cannot be used."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest

from hostile_payloads import cut_mcap_at

from syrenets_ros.offline.bag import (JOINT_STATE, TYPESTORE, BagError, JointStateBag, add_topic, estimate_period,
                                      open_writer, write_joint_states)

NAMES = ["joint1", "joint2"]


def _states(count: int, start_ns: int = 0, step_ns: int = 1_000_000):
    """Distinct, recognisable values per message: position k, velocity 2k, effort 3k."""
    return [(start_ns + k * step_ns, NAMES, [k, -k], [2 * k, -2 * k], [3 * k, -3 * k]) for k in range(count)]


@pytest.mark.parametrize("storage, suffix", [("mcap", ".mcap"), ("sqlite3", ".db3")])
def test_folder_and_single_file_of_both_storages_read_back_exactly(tmp_path, storage, suffix):
    path = tmp_path / "bag"
    assert write_joint_states(path, _states(50, start_ns=5_000_000_000), storage=storage) == 50
    [storage_file] = [p for p in path.iterdir() if p.suffix == suffix]
    for source in (path, storage_file):
        with JointStateBag(source) as bag:
            assert bag.message_count == 50
            messages = list(bag)
        assert [m.stamp for m in messages] == pytest.approx([5.0 + k * 1e-3 for k in range(50)], abs=1e-12)
        assert messages[7].names == NAMES
        assert messages[7].position == [7.0, -7.0]
        assert messages[7].velocity == [14.0, -14.0]
        assert messages[7].effort == [21.0, -21.0]


def test_topic_given_without_leading_slash_and_time_window(tmp_path):
    write_joint_states(tmp_path / "bag", _states(1000))  # 0.999 s of recording
    with JointStateBag(tmp_path / "bag", topic="joint_states", start=0.2, end=0.5) as bag:
        positions = [m.position[0] for m in bag]
        assert bag.message_count == pytest.approx(300, abs=2), "the estimate follows the window"
    assert positions == list(range(200, 500)), "[start, end) in seconds from the recording's start"


def test_a_message_whose_bytes_do_not_decode_is_counted_and_skipped(tmp_path):
    writer = open_writer(tmp_path / "bag")
    connection = add_topic(writer, "/joint_states", JOINT_STATE)
    state = TYPESTORE.types[JOINT_STATE](header=TYPESTORE.types["std_msgs/msg/Header"](
        stamp=TYPESTORE.types["builtin_interfaces/msg/Time"](sec=0, nanosec=0), frame_id=""),
        name=NAMES, position=np.zeros(2), velocity=np.zeros(2), effort=np.zeros(2))
    good = TYPESTORE.serialize_cdr(state, JOINT_STATE)
    writer.write(connection, 1, good)
    writer.write(connection, 2, b"\x00\x01\x00\x00\xff\xff\xff\x7f")  # a name count far beyond the data
    writer.write(connection, 3, good)
    writer.close()
    with JointStateBag(tmp_path / "bag") as bag:
        assert len(list(bag)) == 2
        assert bag.undecodable == 1


def _bag_with(tmp_path, topics: dict[str, str], messages: int = 1):
    writer = open_writer(tmp_path / "bag")
    string = TYPESTORE.types["std_msgs/msg/String"]
    for topic, msgtype in topics.items():
        connection = add_topic(writer, topic, msgtype)
        for k in range(messages):
            writer.write(connection, k + 1, TYPESTORE.serialize_cdr(string(data="x"), msgtype))
    writer.close()
    return tmp_path / "bag"


def _error(path, **kwargs) -> str:
    with pytest.raises(BagError) as caught:
        with JointStateBag(path, **kwargs) as bag:
            list(bag)
    message = str(caught.value)
    assert "\n" not in message and message
    return message


def test_unusable_bags_give_one_line_reasons(tmp_path):
    assert "no such file" in _error(tmp_path / "nothing")
    assert "holds no messages" in _error(_bag_with(tmp_path / "a", {"/joint_states": JOINT_STATE}, messages=0))
    missing = _error(_bag_with(tmp_path / "b", {"/chatter": "std_msgs/msg/String"}))
    assert "no topic /joint_states" in missing and "/chatter (std_msgs/msg/String)" in missing
    wrong = _error(_bag_with(tmp_path / "c", {"/joint_states": "std_msgs/msg/String"}))
    assert "carries std_msgs/msg/String, not sensor_msgs/msg/JointState" in wrong
    (tmp_path / "d").mkdir()
    assert "not a readable rosbag2" in _error(tmp_path / "d")
    (tmp_path / "e.txt").write_text("hello")
    assert "not a readable rosbag2" in _error(tmp_path / "e.txt")
    assert "window is empty" in _error(tmp_path / "nothing", start=2.0, end=1.0)


@pytest.mark.parametrize("storage, suffix", [("mcap", ".mcap"), ("sqlite3", ".db3")])
def test_truncated_and_corrupt_bags_are_refused_not_half_read(tmp_path, storage, suffix):
    write_joint_states(tmp_path / "bag", _states(20_000), storage=storage)
    [data] = [p for p in (tmp_path / "bag").iterdir() if p.suffix == suffix]
    content = data.read_bytes()
    data.write_bytes(content[:len(content) * 2 // 3])  # a recorder killed mid-write
    assert "bag" in _error(tmp_path / "bag")
    data.write_bytes(os.urandom(len(content) // 10))
    _error(tmp_path / "bag")


def test_period_estimate_ignores_gaps_and_duplicates():
    stamps = [k * 2e-3 for k in range(100)]
    stamps[50:] = [s + 0.5 for s in stamps[50:]]  # one long gap
    stamps.insert(10, stamps[10])  # one duplicate
    assert estimate_period(stamps) == pytest.approx(2e-3)
    assert math.isnan(estimate_period([1.0, 1.0]))


# --- issue 23: damaged bags say how much was read; nonsense metadata, non-regular files and
# --- decompression bombs are refused before anything is expanded ----------------------------

def test_a_damaged_bag_says_how_much_of_it_was_read(tmp_path, caplog):
    write_joint_states(tmp_path / "bag", _states(6000))
    cut_mcap_at(tmp_path / "bag", 3330)
    with JointStateBag(tmp_path / "bag") as bag:
        assert len(list(bag)) == 3330 and bag.message_count == 6000
    assert bag.shortfall.startswith("read 3330 of 6000 messages declared on /joint_states: the bag is damaged "
                                    "after t=3.329 s"), bag.shortfall
    assert bag.shortfall in caplog.text
    write_joint_states(tmp_path / "whole", _states(100))
    with JointStateBag(tmp_path / "whole") as bag:
        list(bag)
    assert bag.shortfall is None


def _set_counts(folder, total, topic) -> None:
    path = folder / "metadata.yaml"
    lines = path.read_text().splitlines()
    for k, line in enumerate(lines):
        if line.startswith(("  message_count:", "  - message_count:")):  # the bag's, the topic's
            lines[k] = line.split(":")[0] + f": {total if line.startswith('  m') else topic}"
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("total, topic, reason", [
    (-5, 100, "gives message_count as -5, not a count"),
    (100, -5, "gives message_count of /joint_states as -5, not a count"),
    (100, 10**30, "as 1000000000000000000000000000000, not a count"),
    (6000, 6000, "declares 6000 messages on /joint_states, its storage files hold 100"),
    (100, 12.5, "as 12.5, not a count"),
    (100, "many", "as 'many', not a count"),
])
def test_metadata_with_nonsense_counts_is_refused(tmp_path, total, topic, reason):
    write_joint_states(tmp_path / "bag", _states(100))
    _set_counts(tmp_path / "bag", total, topic)
    assert reason in _error(tmp_path / "bag")


def test_non_regular_files_are_refused_before_they_are_opened(tmp_path):
    """A FIFO blocks the open forever: the bag, its storage file or its metadata.yaml."""
    os.mkfifo(tmp_path / "fifo.mcap")
    assert "is a FIFO, not a bag folder or a .mcap / .db3 file" in _error(tmp_path / "fifo.mcap")
    write_joint_states(tmp_path / "bag", _states(10))
    [mcap] = (tmp_path / "bag").glob("*.mcap")
    mcap.unlink()
    os.mkfifo(mcap)
    assert f"its storage file {mcap.name} is a FIFO" in _error(tmp_path / "bag")
    (tmp_path / "bag2").mkdir()
    os.mkfifo(tmp_path / "bag2" / "metadata.yaml")
    assert "metadata.yaml is a FIFO, not a regular file" in _error(tmp_path / "bag2")
    (tmp_path / "bag3").mkdir()
    (tmp_path / "bag3" / "metadata.yaml").mkdir()
    assert "metadata.yaml is a folder, not a regular file" in _error(tmp_path / "bag3")


def test_a_window_after_the_recording_is_refused(tmp_path):
    write_joint_states(tmp_path / "bag", _states(1000))
    assert "--start 5 s is after the recording's end (0.999 s" in _error(tmp_path / "bag", start=5.0)


def _compressed_bag(path, mode, payloads) -> None:
    from rosbags.rosbag2 import CompressionFormat, StoragePlugin, Writer

    writer = Writer(path, version=Writer.VERSION_LATEST, storage_plugin=StoragePlugin.MCAP)
    writer.set_compression(mode, CompressionFormat.ZSTD)
    writer.open()
    connection = add_topic(writer, "/joint_states", JOINT_STATE)
    for k, payload in enumerate(payloads):
        writer.write(connection, k + 1, payload)
    writer.close()


def _joint_state_bytes(k: int) -> bytes:
    joint_state = TYPESTORE.types[JOINT_STATE]
    header, time = TYPESTORE.types["std_msgs/msg/Header"], TYPESTORE.types["builtin_interfaces/msg/Time"]
    msg = joint_state(header=header(stamp=time(sec=0, nanosec=k), frame_id=""), name=NAMES,
                      position=np.zeros(2), velocity=np.zeros(2), effort=np.zeros(2))
    return TYPESTORE.serialize_cdr(msg, JOINT_STATE)


def test_compressed_bags_read_back_and_bombs_are_refused_before_expanding(tmp_path):
    """rosbag2's three zstd modes: the whole file (expanded to temporary disk), each message
    and each MCAP chunk (expanded in memory). Issue 23: 1 GB of temporary disk at 31 700x."""
    from backports import zstd
    from rosbags.rosbag2 import CompressionMode

    modes = CompressionMode
    for mode in (modes.FILE, modes.MESSAGE, modes.STORAGE):
        _compressed_bag(tmp_path / mode.name, mode, [_joint_state_bytes(k) for k in range(50)])
        with JointStateBag(tmp_path / mode.name) as bag:
            assert [m.stamp for m in bag] == [k * 1e-9 for k in range(50)]

    # File mode: 200 MB of zeros in a zstd stream of a few kB.
    [packed] = (tmp_path / "FILE").glob("*.zstd")
    compressor = zstd.ZstdCompressor()
    with packed.open("wb") as out:
        for _ in range(200):
            out.write(compressor.compress(bytes(1 << 20)))
        out.write(compressor.flush())
    message = _error(tmp_path / "FILE")
    assert "expands to more than" in message and "refused before expanding it to temporary disk" in message

    # Message mode: one message of 20 MB of zeros.
    _compressed_bag(tmp_path / "bomb", modes.MESSAGE, [_joint_state_bytes(0), bytes(20 << 20)])
    assert "a compressed message on /joint_states expands beyond 16777216 bytes" in _error(tmp_path / "bomb")

    # Chunk mode: a chunk index declaring 1 TiB expanded (a liar or a bomb: refused unread).
    import struct

    [mcap] = (tmp_path / "STORAGE").glob("*.mcap")
    with JointStateBag(mcap) as bag:
        [chunk] = bag._reader.storage.chunks
    data = mcap.read_bytes()
    sizes = struct.pack("<QQ", chunk.compressed_size, chunk.uncompressed_size)
    assert data.count(sizes) == 1, "the chunk index record"
    mcap.write_bytes(data.replace(sizes, struct.pack("<QQ", chunk.compressed_size, 2**40)))
    assert "declares 1099511627776 bytes expanded, above the bound" in _error(mcap)


def _peak_bytes_while_reading(path) -> tuple[str, int]:
    """The refusal reading ``path`` ends in, and the most bytes Python held meanwhile (a bytes
    object allocated at a declared size counts in full, touched or not)."""
    import tracemalloc

    tracemalloc.start()
    try:
        message = _error(path)
        return message, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("length, reason", [
    (2**62, "declares 4611686018427387904 bytes, beyond the file's"),  # was MemoryError, a traceback
    (2**64 - 1, "declares 18446744073709551615 bytes, beyond the file's"),  # was OverflowError
    (2**33, "declares 8589934592 bytes, beyond the file's"),  # was 8 GiB allocated, then refused
])
def test_an_mcap_record_longer_than_the_file_is_refused_before_it_is_allocated(tmp_path, length, reason):
    from syrenets_ros.tools.bench.hostile import mcap_record_beyond_file

    write_joint_states(tmp_path / "bag", _states(3000))
    mcap_record_beyond_file(tmp_path / "bag", length)
    message, peak = _peak_bytes_while_reading(tmp_path / "bag")
    assert "a record (opcode 0x08) at byte" in message and reason in message, message
    assert peak < 32 << 20, peak  # metadata.yaml is read into a buffer of its bound, 16 MiB


def test_mcap_chunk_sizes_beyond_their_record_or_the_bound_are_refused_unread(tmp_path):
    """A chunk's own record (what an unindexed reader trusts) and its summary entry (what an
    indexed one trusts) each declare sizes: beyond the record, the file or the bound, refused."""
    import struct

    from rosbags.rosbag2.storage_mcap import McapReader

    write_joint_states(tmp_path / "bag", _states(3000))
    [mcap] = (tmp_path / "bag").glob("*.mcap")
    reader = McapReader(mcap)
    reader.open()
    [chunk] = reader.chunks
    reader.close()
    data = mcap.read_bytes()
    sizes = struct.pack("<QQ", chunk.compressed_size, chunk.uncompressed_size)  # the summary's entry
    head = struct.pack("<QQQ", chunk.message_start_time, chunk.message_end_time, chunk.uncompressed_size)
    assert data.count(sizes) == 1 and data.count(head) == 1, "the chunk index and the chunk record"

    def lie(old: bytes, new: bytes) -> str:
        mcap.write_bytes(data.replace(old, new))
        message, peak = _peak_bytes_while_reading(mcap)
        assert peak < 32 << 20, peak  # metadata.yaml is read into a buffer of its bound, 16 MiB
        return message

    assert f"an MCAP chunk declares 8589934592 compressed bytes, beyond its record's {chunk.compressed_size}" in lie(
        sizes, struct.pack("<QQ", 2**33, chunk.uncompressed_size))
    assert "declares 1099511627776 bytes expanded, above the bound" in lie(
        head, struct.pack("<QQQ", chunk.message_start_time, chunk.message_end_time, 2**40))
    placed = struct.pack("<QQ", chunk.chunk_start_offset, chunk.chunk_length)
    assert "the summary places a chunk at bytes 1099511627776+" in lie(
        placed, struct.pack("<QQ", 2**40, chunk.chunk_length))


def test_an_mcap_chunk_that_expands_past_its_declared_size_is_cut_at_that_size(tmp_path):
    """A zstd chunk declaring the size of its 100 JointStates (within every bound) that expands
    to 512 MiB more: the reader's own decompressor expanded all of it before comparing."""
    from syrenets_ros.tools.bench.hostile import mcap_chunk_bomb

    mcap_chunk_bomb(tmp_path / "bomb", 512 << 20)
    assert sum(f.stat().st_size for f in (tmp_path / "bomb").iterdir()) < 200_000
    message, peak = _peak_bytes_while_reading(tmp_path / "bomb")
    assert "is damaged or truncated: a chunk expands beyond the" in message and "bytes it declares" in message
    assert peak < 64 << 20, peak
