"""The online learning loop on exact data along the simulator's excitation trajectory."""

import math
import os

import pytest
import torch

from syrenets_ros.dynamics import pendulum
from syrenets_ros.learning.terms import TermModel
from syrenets_ros.plant.excitation import MultiSine
from syrenets_ros.online.stream import JointStateSample
from syrenets_ros.online.learner import LearnerConfig, OnlineLearner
from syrenets_ros.online.serving import ModelServer
from syrenets_ros.online.snapshot import decode_model

DT = 0.001
BEFORE = pendulum.PendulumParams()
AFTER = BEFORE.with_changes(m2=2.0, l2=1.2)


def _stream(excitation: MultiSine, start: float, stop: float, params: pendulum.PendulumParams):
    """Exact samples (q, q̇, q̈ of the reference; τ from inverse dynamics)."""
    out = []
    for k in range(round(start / DT), round(stop / DT)):
        q, qd, qdd = (torch.tensor([v], dtype=torch.float64) for v in excitation.sample(k * DT))
        tau = pendulum.inverse_dynamics(q, qd, qdd, params)[0]
        out.append(JointStateSample(k * DT, tuple(q[0].tolist()), tuple(qd[0].tolist()),
                                    tuple(qdd[0].tolist()), tuple(tau.tolist())))
    return out


def _run(learner: OnlineLearner, samples, chunk: int = 500):
    publications = []
    for i in range(0, len(samples), chunk):
        for sample in samples[i:i + chunk]:
            learner.buffer.push(sample)
        learner.observe()
        publication = learner.maybe_select()
        if publication:
            publications.append(publication)
    return publications


def _true_coefficients_match(model: TermModel, params: pendulum.PendulumParams) -> float:
    """Max torque error on random states: 0 (to solver precision) iff L is the true one."""
    gen = torch.Generator().manual_seed(5)
    q, qd, qdd = [(torch.rand(500, 2, generator=gen, dtype=torch.float64) - 0.5) * 3 for _ in range(3)]
    return float((model.torque(q, qd, qdd) - pendulum.inverse_dynamics(q, qd, qdd, params)).abs().max())


@pytest.fixture(scope="module")
def excitation():
    return MultiSine.from_seed(0, 1.0, 0.1)


def test_learns_exact_model_then_adapts_after_a_swap_without_false_alarms(excitation):
    learner = OnlineLearner(LearnerConfig(snapshot_period=0.0, network_enabled=False), log=lambda _: None)
    before = _run(learner, _stream(excitation, 0.0, 8.0, BEFORE))
    assert before, "a model is published once enough samples arrived"
    assert learner.stats.change_detections == 0, "a poorly extrapolating early model is not a change"
    served = decode_model(before[-1].payload).model
    assert _true_coefficients_match(served, BEFORE) < 1e-6

    after = _run(learner, _stream(excitation, 8.0, 12.0, AFTER))
    assert learner.stats.change_detections == 1
    assert learner.stats.change_stamps[0] == pytest.approx(8.0, abs=0.25)
    assert learner.stats.dropped_after_change > 0
    served = decode_model(after[-1].payload).model
    assert _true_coefficients_match(served, AFTER) < 1e-6, after[-1].equation


def test_network_path_trains_and_competes(excitation):
    learner = OnlineLearner(LearnerConfig(snapshot_period=0.0, network_enabled=True, max_train_rate=1e6, batch_size=32,
                                          min_fit_duration=1.0, holdout=0.2), log=lambda _: None)
    samples = _stream(excitation, 0.0, 3.0, BEFORE)
    for sample in samples:
        learner.buffer.push(sample)
    learner.observe()
    for _ in range(5):
        assert learner.train_step()
    assert learner.stats.training_steps == 5 and math.isfinite(learner.stats.loss)
    publication = learner.maybe_select()
    assert publication is not None
    assert {"library", "network", "network_guided"} <= set(learner.stats.candidate_rmse)


def test_checkpoint_resume_skips_a_corrupt_file(tmp_path, excitation):
    config = LearnerConfig(snapshot_period=0.0, network_enabled=False, checkpoint_dir=str(tmp_path),
                           checkpoint_period=0.0)
    learner = OnlineLearner(config, log=lambda _: None)
    publications = _run(learner, _stream(excitation, 0.0, 3.0, BEFORE))
    learner.maybe_checkpoint(publications[-1])
    (tmp_path / "model-99999999.json").write_text('{"format": "syrenets_ros.model", "trunc')
    resumed = OnlineLearner(config, log=lambda _: None)
    publication = resumed.resume()
    assert publication is not None and publication.source == "checkpoint"
    assert resumed.version > publications[-1].version
    assert len(resumed.stats.checkpoints_skipped) == 1
    assert "model-99999999.json" in resumed.stats.checkpoints_skipped[0]


def test_starts_from_a_saved_model_and_adapts_from_there(tmp_path, excitation):
    """initial_model: the saved snapshot is served at once (validated as the predictor
    validates it), its coefficients are tracked, and the model follows the system when it
    changes."""
    config = LearnerConfig(snapshot_period=0.0, network_enabled=False)
    saved = _run(OnlineLearner(config, log=lambda _: None), _stream(excitation, 0.0, 3.0, BEFORE))[-1]
    (tmp_path / "robot.json").write_text(saved.payload)

    learner = OnlineLearner(LearnerConfig(snapshot_period=0.0, network_enabled=False,
                                          initial_model=str(tmp_path / "robot.json")), log=lambda _: None)
    started = learner.resume()
    assert started is not None and started.source == "initial_model" and started.equation == saved.equation
    assert learner.tracker is not None, "the saved coefficients are tracked from the first sample"
    after = _run(learner, _stream(excitation, 3.0, 7.0, AFTER))
    assert _true_coefficients_match(decode_model(started.payload).model, AFTER) > 1.0, "the swap changed the torques"
    assert _true_coefficients_match(decode_model(after[-1].payload).model, AFTER) < 1e-6


@pytest.mark.parametrize("content, reason", [
    (None, "cannot read"),
    ('{"format": "syrenets_ros.model", "trunc', "not valid JSON"),
    ("fifo", "not a regular file"),  # a FIFO would block the read for ever (issue 23)
])
def test_a_refused_initial_model_is_reported_and_learning_starts_from_scratch(tmp_path, content, reason):
    path = tmp_path / "robot.json"
    if content == "fifo":
        os.mkfifo(path)
    elif content is not None:
        path.write_text(content)
    learner = OnlineLearner(LearnerConfig(network_enabled=False, initial_model=str(path)), log=lambda _: None)
    assert learner.resume() is None and learner.served is None
    assert reason in learner.stats.initial_model_refused


def test_an_initial_model_for_other_joints_is_refused(tmp_path, excitation):
    config = LearnerConfig(snapshot_period=0.0, network_enabled=False)
    saved = _run(OnlineLearner(config, log=lambda _: None), _stream(excitation, 0.0, 3.0, BEFORE))[-1]
    (tmp_path / "robot.json").write_text(saved.payload)
    learner = OnlineLearner(LearnerConfig(joint_names=("shoulder", "elbow"), initial_model=str(tmp_path / "robot.json"),
                                          network_enabled=False), log=lambda _: None)
    assert learner.resume() is None
    assert "joint names" in learner.stats.initial_model_refused


def test_checkpoints_keep_the_newest_and_a_restarted_learner_is_a_newer_run(tmp_path, excitation):
    config = LearnerConfig(snapshot_period=0.0, network_enabled=False, checkpoint_dir=str(tmp_path),
                           checkpoint_period=0.0, checkpoint_keep=1)
    learner = OnlineLearner(config, log=lambda _: None)
    publications = _run(learner, _stream(excitation, 0.0, 3.0, BEFORE))
    # Exact data: the guard serves a new model only when it is better, so few are published.
    assert len(publications) >= 2
    for publication in publications:
        learner.maybe_checkpoint(publication)
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"model-{publications[-1].version:08d}.json"]
    server = ModelServer(require_measurements=False)  # run order only: no robot here
    assert server.offer(publications[-1].payload)[0]
    accepted, reason = server.offer(publications[-2].payload)
    assert not accepted and reason.startswith("replay")
    restarted = OnlineLearner(config, log=lambda _: None)
    publication = restarted.resume()
    assert restarted.run_id > learner.run_id
    accepted, reason = server.offer(publication.payload)
    assert accepted, reason


def test_intake_goes_on_while_a_selection_fits(excitation):
    """A selection's fits run outside the learner's lock: samples handed over meanwhile are
    ingested and watched for changes before it ends (the node runs the two in two threads;
    before issue 20 a refit of seconds on a loaded machine left the stream unread)."""
    import threading

    learner = OnlineLearner(LearnerConfig(snapshot_period=0.0, network_enabled=False), log=lambda _: None)
    samples = _stream(excitation, 0.0, 12.0, BEFORE)
    for sample in samples[:9000]:
        learner.buffer.push(sample)
    learner.observe()
    selection = threading.Thread(target=learner.maybe_select)
    selection.start()
    ingested_during = 0
    for start in range(9000, len(samples), 20):
        if not selection.is_alive():
            break
        for sample in samples[start:start + 20]:
            learner.buffer.push(sample)
        ingested_during += learner.observe()
    selection.join()
    assert ingested_during > 0, "observe() waited for the whole selection"
    assert learner.served is not None and learner.stats.selection_seconds > 0


def test_the_network_learns_what_the_served_model_misses(excitation):
    """Before a model is served the network's target is the torque; once a term model is
    served, the residual that model leaves (~1e-13 N·m here: it is exact), so the data term of
    its loss falls by orders of magnitude. A network that merely fits what the served model
    already explains is not consulted: what the two predict together is no better."""
    learner = OnlineLearner(LearnerConfig(snapshot_period=0.0, network_enabled=True, max_train_rate=1e6,
                                          min_fit_duration=1.0, holdout=0.2), log=lambda _: None)
    for sample in _stream(excitation, 0.0, 3.0, BEFORE):
        learner.buffer.push(sample)
    learner.observe()
    raw = []
    for _ in range(3):
        assert learner.train_step()
        raw.append(learner.stats.training_mse)
    assert learner.maybe_select() is not None and isinstance(learner.served, TermModel)
    residual = []
    for _ in range(3):
        assert learner.train_step()
        residual.append(learner.stats.training_mse)
    assert min(raw) > 100 * max(residual), (raw, residual)

    learner.select_now()
    assert "network" not in learner.stats.candidate_rmse, "a residual network is not a model of its own"
    assert learner.stats.network_rival_rmse < 1e-9 < learner.stats.network_rmse
    assert learner.stats.admitted_terms == []
