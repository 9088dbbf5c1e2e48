"""Learning from a bag goes through the learner node's own core: a bag recorded from a real
PyBullet run gives the same terms and coefficients as the online learner fed the same
samples, and both are the true pendulum's; extra joints, reordered arrays and other topics
change nothing; bad messages are rejected with the learner's reasons; too little data is a
clear error."""

from __future__ import annotations

import math

import pytest
import torch

from syrenets_ros.dynamics import pendulum
from syrenets_ros.learning.terms import TermModel
from syrenets_ros.offline.bag import NANOSECONDS, BagError, JointStateBag, write_joint_states
from syrenets_ros.offline.learning import learn_from_bag, report_residuals
from syrenets_ros.online.learner import LearnerConfig, OnlineLearner
from syrenets_ros.online.snapshot import decode_model
from syrenets_ros.online.stream import SampleAssembler
from syrenets_ros.plant.control import pd_torque
from syrenets_ros.plant.excitation import MultiSine
from syrenets_ros.plant.settings import SimSettings
from syrenets_ros.plant.simulator import Simulator

DT = 1.0e-3
STEP_NS = 1_000_000
NAMES = list(pendulum.JOINT_NAMES)
CONFIG = dict(network_enabled=False, snapshot_period=0.5)


def simulate(seconds: float) -> list[tuple[int, list[str], list[float], list[float], list[float]]]:
    """The pendulum_sim step loop on the PyBullet core (PD tracking of the excitation): each
    state is published with the torque applied during the following step."""
    settings = SimSettings()
    excitation = MultiSine.from_seed(settings.excitation_seed, settings.excitation_amplitude,
                                      settings.excitation_base_frequency)
    q0, qd0, _ = excitation.sample(0.0)
    states = []
    with Simulator(settings.params, DT, q0, qd0) as sim:
        for k in range(round(seconds / DT)):
            q, qd = sim.state()
            q_d, qd_d, _ = excitation.sample(k * DT)
            tau = pd_torque(settings, q, qd, q_d, qd_d, None)
            states.append((k * STEP_NS, NAMES, list(q), list(qd), tau))
            sim.step(tau)
    return states


@pytest.fixture(scope="module")
def sim_states():
    return simulate(4.0)


def _true_torque_error(model) -> float:
    """Max torque error against the true inverse dynamics on random states: solver
    precision iff the learned Lagrangian is the true one."""
    gen = torch.Generator().manual_seed(5)
    q, qd, qdd = [(torch.rand(500, 2, generator=gen, dtype=torch.float64) - 0.5) * 3 for _ in range(3)]
    truth = pendulum.inverse_dynamics(q, qd, qdd, pendulum.PendulumParams())
    return float(((model.torque(q, qd, qdd) - truth).abs().max() / truth.abs().max()))


def _online(states, config: LearnerConfig):
    """The learner as the node drives it: samples pushed as they arrive, the worker
    observing and selecting as time passes (here the stream's own time). Returns the newest
    publication, as the node serves it: a last selection the served model is as good as
    publishes nothing."""
    now = [0.0]
    learner = OnlineLearner(config, log=lambda _: None, clock=lambda: now[0])
    assembler = SampleAssembler(config.joint_names, DT)
    publication = None
    for stamp, names, q, qd, tau in states:
        now[0] = stamp / NANOSECONDS
        sample = assembler.add(now[0], names, q, qd, tau)
        if sample is not None:
            learner.buffer.push(sample)
        learner.observe()
        publication = learner.maybe_select() or publication
    learner.observe()
    return learner.select_now() or publication


def _coefficients(model: TermModel) -> dict[str, float]:
    return dict(zip((t.name for t in model.terms), model.coefficients.tolist()))


def _assert_same_terms_and_coefficients(model: TermModel, reference: TermModel) -> None:
    """The same terms, each coefficient equal to 1e-9 relative (of the largest)."""
    got, expected = _coefficients(model), _coefficients(reference)
    assert set(got) == set(expected), "the same terms"
    scale = max(map(abs, expected.values()))
    for name, value in expected.items():
        assert got[name] == pytest.approx(value, rel=1e-9, abs=1e-9 * scale), name


def test_bag_from_a_sim_run_learns_what_the_online_learner_learns(tmp_path, sim_states):
    write_joint_states(tmp_path / "bag", sim_states)
    config = LearnerConfig(**CONFIG)
    with JointStateBag(tmp_path / "bag") as bag:
        result = learn_from_bag(bag, config)
    online = _online(sim_states, config)

    offline_model = decode_model(result.publication.payload).model
    _assert_same_terms_and_coefficients(offline_model, decode_model(online.payload).model)
    assert _true_torque_error(offline_model) < 1e-8, result.publication.equation
    assert result.period == pytest.approx(DT)
    assert result.messages == len(sim_states) and result.accepted == len(sim_states) - 1 and not result.rejected
    assert result.publication.holdout_rmse < 1e-8
    assert float(report_residuals(result)[1].abs().max()) < 1e-8
    assert len(result.report) > 1000, "the report spans the recording"


def test_extra_joints_reordered_arrays_and_a_second_topic_change_nothing(tmp_path, sim_states):
    write_joint_states(tmp_path / "plain", sim_states)
    messy = [(stamp, ["wrist", "joint2", "joint1"], [0.3, q[1], q[0]], [7.0, qd[1], qd[0]], [1e3, tau[1], tau[0]])
             for stamp, _, q, qd, tau in sim_states]
    path = tmp_path / "messy"
    write_joint_states(path, messy)
    # A second JointState topic in the same recording (another robot's arm): ignored.
    write_joint_states(tmp_path / "other", [(s, NAMES, [9.0, 9.0], [0.0, 0.0], [5.0, 5.0]) for s, *_ in sim_states],
                       topic="/other_arm/joint_states")
    merged = tmp_path / "merged"
    _merge(merged, path, tmp_path / "other")

    config = LearnerConfig(**CONFIG)
    results = []
    for source in (tmp_path / "plain", merged):
        with JointStateBag(source) as bag:
            results.append(learn_from_bag(bag, config))
    plain, mixed = (decode_model(r.publication.payload).model for r in results)
    _assert_same_terms_and_coefficients(mixed, plain)
    assert results[1].messages == len(sim_states) and not results[1].rejected


def _merge(out, *bags) -> None:
    """One bag holding the topics of several (what `ros2 bag record` of two topics gives)."""
    from rosbags.rosbag2 import Reader

    from syrenets_ros.offline.bag import add_topic, open_writer

    writer = open_writer(out)
    for path in bags:
        with Reader(path) as reader:
            for connection in reader.connections:
                target = add_topic(writer, connection.topic, connection.msgtype)
                for _, stamp, raw in reader.messages([connection]):
                    writer.write(target, stamp, raw)
    writer.close()


def test_bad_messages_are_rejected_with_the_learner_node_reasons(tmp_path, sim_states):
    states = list(sim_states)
    nan = states[1000]
    states[1000] = (nan[0], NAMES, [math.nan, 0.0], nan[3], nan[4])  # non_finite
    states[2000] = (states[2000][0], ["joint1"], [0.0], [0.0], [0.0])  # missing_joint
    del states[3000]  # a dropped message: gap
    write_joint_states(tmp_path / "bag", states)
    with JointStateBag(tmp_path / "bag") as bag:
        result = learn_from_bag(bag, LearnerConfig(**CONFIG))
    # Each bad message also breaks the pair after it (a gap), exactly as on the live topic.
    reference = SampleAssembler(NAMES, DT)
    for stamp, names, q, qd, tau in states:
        reference.add(stamp / NANOSECONDS, names, q, qd, tau)
    assert result.rejected == {reason: n for reason, n in reference.rejected.items() if n}
    assert set(result.rejected) == {"non_finite", "missing_joint", "gap"}
    assert _true_torque_error(result.model) < 1e-8


def test_too_little_usable_data_is_a_clear_error(tmp_path, sim_states):
    write_joint_states(tmp_path / "short", sim_states[:300])
    with JointStateBag(tmp_path / "short") as bag, pytest.raises(BagError, match="299 samples .* of the 2200 .* a first model needs"):
        learn_from_bag(bag, LearnerConfig(**CONFIG))
    write_joint_states(tmp_path / "elsewhere", [(s, ["a", "b"], q, qd, tau) for s, _, q, qd, tau in sim_states])
    with JointStateBag(tmp_path / "elsewhere") as bag, pytest.raises(BagError, match="missing_joint"):
        learn_from_bag(bag, LearnerConfig(**CONFIG))
    # Many robots publish no effort: every message is malformed, and the error says what is needed.
    write_joint_states(tmp_path / "no_effort", [(s, names, q, qd, []) for s, names, q, qd, _ in sim_states])
    with JointStateBag(tmp_path / "no_effort") as bag, pytest.raises(BagError, match="malformed.*needs .*effort"):
        learn_from_bag(bag, LearnerConfig(**CONFIG))


def test_the_network_trains_at_its_rate_per_recorded_second(tmp_path, sim_states):
    """Paced by the recording's clock: max_train_rate steps per recorded second, however
    fast the replay runs, and the network is consulted in the selections (its guided refit
    competes, and the served model + the network trained on its residual is scored)."""
    write_joint_states(tmp_path / "bag", sim_states)  # 4 recorded seconds
    config = LearnerConfig(network_enabled=True, max_train_rate=5.0, snapshot_period=1.0, batch_size=32)
    with JointStateBag(tmp_path / "bag") as bag:
        result = learn_from_bag(bag, config)
    # Training needs holdout + batch samples first (about 1 s of the 4 s).
    assert 10 <= result.stats.training_steps <= 4 * 5 + 1
    assert "network_guided" in result.stats.candidate_rmse
    assert math.isfinite(result.stats.network_rmse) and math.isfinite(result.stats.network_rival_rmse)


def test_a_bag_with_every_twentieth_effort_nan_still_gives_the_model(tmp_path, sim_states):
    """Each NaN is rejected and counted, and opens a gap: the gap-free runs are 18 samples
    long, the integral window shrinks to fit them, and learning continues around the NaNs."""
    states = [(s, names, q, qd, [math.nan, math.nan] if k % 20 == 10 else tau)
              for k, (s, names, q, qd, tau) in enumerate(sim_states)]
    write_joint_states(tmp_path / "nan", states)
    with JointStateBag(tmp_path / "nan") as bag:
        result = learn_from_bag(bag, LearnerConfig(**CONFIG))
    assert result.rejected["non_finite"] == len(states) // 20
    assert result.sizes.window <= 18 and any("window shortened" in note for note in result.notes)
    assert _true_torque_error(result.model) < 1e-8
