"""The recorder over real DDS: what publishers send arrives in an MCAP rosbag2 byte for byte,
with the live graph's type hashes and the publishers' QoS in metadata.yaml (what
`ros2 bag info` and `ros2 bag play` read); a latched snapshot published before recording
started is recorded too."""

from __future__ import annotations

import yaml
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rclpy.node import Node
from ros_helpers import spinning, wait_until
from rosbags.rosbag2 import Reader
from sensor_msgs.msg import JointState
from std_msgs.msg import String

from syrenets_ros.offline.bag import TYPESTORE, JointStateBag
from syrenets_ros.ros import common as rc
from syrenets_ros.ros.recorder import RECORDED_TOPICS, Recorder


def test_recorded_bag_holds_every_message_with_types_and_qos(ros_context, tmp_path):
    talker = Node("talker", context=ros_context)
    joints = talker.create_publisher(JointState, rc.JOINT_STATES, rc.STREAM_QOS)
    model = talker.create_publisher(String, rc.MODEL, rc.LATCHED_QOS)
    diagnostics = talker.create_publisher(DiagnosticArray, rc.DIAGNOSTICS, 10)
    model.publish(String(data='{"a snapshot": 1}'))  # before the recorder exists: latched
    recorder = Recorder(tmp_path / "bag", context=ros_context)
    try:
        with spinning(ros_context, talker, recorder):
            assert wait_until(lambda: joints.get_subscription_count() > 0 and
                              diagnostics.get_subscription_count() > 0, 10.0)
            for k in range(200):
                msg = JointState(name=["joint1", "joint2"], position=[k * 0.01, -k * 0.01],
                                 velocity=[1.0, 2.0], effort=[3.0, float(k)])
                msg.header.stamp = rc.stamp_from_nanoseconds(k * 1_000_000)
                joints.publish(msg)
            diagnostics.publish(DiagnosticArray(status=[DiagnosticStatus(name="talker", message="fine")]))
            assert wait_until(lambda: recorder.counts["/joint_states"] == 200 and recorder.counts["/diagnostics"] >= 1
                              and recorder.counts["/syrenets/model"] == 1, 20.0), recorder.counts
            live_hash = talker.get_publishers_info_by_topic("/joint_states")[0].topic_type_hash
    finally:
        recorder.destroy_node()
        talker.destroy_node()

    with Reader(tmp_path / "bag") as reader:
        topics = reader.topics
        assert set(topics) == {"/joint_states", "/pendulum/reference", "/syrenets/predicted_torque",
                               "/syrenets/model", "/syrenets/equation", "/diagnostics"}
        assert len(RECORDED_TOPICS) == len(topics)
        assert topics["/joint_states"].msgtype == "sensor_msgs/msg/JointState"
        assert topics["/joint_states"].msgcount == 200
        [connection] = topics["/syrenets/model"].connections
        [(_, _, raw)] = list(reader.messages([connection]))
        assert TYPESTORE.deserialize_cdr(raw, "std_msgs/msg/String").data == '{"a snapshot": 1}'
        assert str(live_hash) == topics["/joint_states"].connections[0].digest, "type hash of the live graph"
        [storage] = [p for p in (tmp_path / "bag").iterdir() if p.suffix == ".mcap"]

    metadata = yaml.safe_load((tmp_path / "bag" / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert metadata["storage_identifier"] == "mcap" and metadata["relative_file_paths"] == [storage.name]
    qos = {t["topic_metadata"]["name"]: t["topic_metadata"]["offered_qos_profiles"]
           for t in metadata["topics_with_message_count"]}
    assert qos["/syrenets/model"][0]["durability"] == "transient_local"
    assert qos["/joint_states"][0]["reliability"] == "reliable" and qos["/joint_states"][0]["depth"] == 200

    with JointStateBag(tmp_path / "bag") as bag:
        efforts = [m.effort[1] for m in bag]
    assert efforts == [float(k) for k in range(200)], "in order, none lost"
