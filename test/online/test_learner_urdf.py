"""The online learner with a robot_description (issue 21): on exact data of a 7-joint arm its
candidates are the URDF's rigid body, the served model is exact, a 1 kg payload added at the
flange is detected as a change and the model adapts to it exactly; the served snapshots pass
a predictor's checks for that robot and are refused by one told another robot."""

import pytest

from syrenets_ros.dynamics.urdf import RigidBodyRobot, UrdfError, panda_urdf, with_payload
from syrenets_ros.dynamics.urdf_motion import tracking_record
from syrenets_ros.online.learner import LearnerConfig, OnlineLearner
from syrenets_ros.online.serving import ModelServer
from syrenets_ros.online.snapshot import decode_model
from syrenets_ros.online.stream import JointStateSample
from syrenets_ros.tools.bench.urdf import ELEMENTS, relative_error, wide_states
CHANGE = 8.0  # s: the payload is fixed to the flange


@pytest.fixture(scope="module")
def robots():
    panda = RigidBodyRobot.from_urdf(panda_urdf())
    return panda, RigidBodyRobot.from_urdf(with_payload(panda.urdf, "panda_link8", 1.0, (0.0, 0.0, 0.05)))


def _relative_error(model, robot: RigidBodyRobot) -> float:
    """Relative torque error on states over the joint limits, faster than the recording."""
    return relative_error(model, robot, wide_states(robot, 300, seed=2))


def test_a_bad_robot_description_is_refused_with_the_reason():
    with pytest.raises(UrdfError, match="not a URDF"):
        OnlineLearner(LearnerConfig(robot_description="<robot"), log=lambda _: None)
    with pytest.raises(ValueError, match="movable joints"):
        OnlineLearner(LearnerConfig(robot_description=panda_urdf()), log=lambda _: None)  # joint1, joint2
    with pytest.raises(ValueError, match="integral_rows weak with a robot_description"):
        OnlineLearner(LearnerConfig.from_parameters({"robot_description": panda_urdf(), "integral_rows": "weak"}),
                      log=lambda _: None)
    config = LearnerConfig.from_parameters({"robot_description": panda_urdf(), "joint_names": ["joint1"]})
    assert config.joint_names == tuple(f"panda_joint{j}" for j in range(1, 8))


def test_learns_the_arm_exactly_then_adapts_to_a_payload(robots):
    panda, loaded = robots
    record = tracking_record(panda, 14.0, seed=4, elements=ELEMENTS, switch=(CHANGE, loaded))
    config = LearnerConfig.from_parameters({"robot_description": panda.urdf, "snapshot_period": 0.0})
    notes = []
    learner = OnlineLearner(config, log=notes.append)
    assert not learner.network_on
    publications = []
    for start in range(0, len(record.stamp), 500):
        for k in range(start, min(start + 500, len(record.stamp))):
            learner.buffer.push(JointStateSample(float(record.stamp[k]), *(tuple(x[k].tolist()) for x in (
                record.q, record.qd, record.qdd, record.tau))))
        learner.observe()
        publication = learner.maybe_select()
        if publication:
            publications.append((float(record.stamp[min(start + 499, len(record.stamp) - 1)]), publication))
    before = [p for t, p in publications if t < CHANGE]
    after = [p for t, p in publications if t >= CHANGE]
    assert before and after
    model = decode_model(before[-1].payload).model
    assert model.kind == "rigid_body" and _relative_error(model, panda) <= 1e-6
    assert learner.stats.change_detections == 1, notes
    assert learner.stats.change_stamps[0] == pytest.approx(CHANGE, abs=0.25)
    adapted = decode_model(after[-1].payload).model
    assert _relative_error(adapted, loaded) <= 1e-6 < _relative_error(model, loaded)

    # A predictor of this robot serves the snapshot; one told another robot refuses it.
    server = ModelServer(panda.joint_names, require_measurements=False, robot_digest=panda.digest)
    assert server.offer(after[-1].payload)[0]
    other = ModelServer(panda.joint_names, require_measurements=False, robot_digest=loaded.digest)
    accepted, reason = other.offer(after[-1].payload)
    assert not accepted and "learned on another URDF" in reason
