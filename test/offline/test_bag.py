"""Reading JointState streams from real rosbag2 files written by the rosbags library (MCAP and
sqlite3, folders and single files), and the one-line errors for bags that cannot be used."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest

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
