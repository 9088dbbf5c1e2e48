"""Where a learner starts from and what it leaves behind (online/checkpoints.py), on real files:
the newest valid checkpoint, else the initial model; corrupt and refused files reported and
skipped, never served; only the newest checkpoints kept."""

import os
import time

from syrenets_ros.dynamics.pendulum import JOINT_NAMES, PendulumParams
from syrenets_ros.learning.terms import true_pendulum_terms
from syrenets_ros.online.checkpoints import Checkpoints
from syrenets_ros.online.learner import Stats
from syrenets_ros.online.snapshot import RunId, encode_model

TRUE = true_pendulum_terms(PendulumParams())
HEAVIER = true_pendulum_terms(PendulumParams().with_changes(m2=2.0))


def _payload(model, version: int) -> str:
    return encode_model(model, model_version=version, run_id=RunId.new(), joint_names=list(JOINT_NAMES), metrics={})


def _checkpoints(directory: str = "", initial_model: str = "", keep: int = 2) -> tuple[Checkpoints, Stats, list]:
    stats, notes = Stats(), []
    return Checkpoints(directory, keep, initial_model, JOINT_NAMES, stats, notes.append), stats, notes


def test_the_newest_checkpoint_is_the_start_and_only_the_newest_are_kept(tmp_path):
    checkpoints, stats, _ = _checkpoints(str(tmp_path))
    for version, model in ((1, TRUE), (2, TRUE), (3, HEAVIER)):
        checkpoints.save(version, _payload(model, version))
        time.sleep(0.01)  # ordered by modification time
    assert stats.checkpoints_written == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model-00000002.json", "model-00000003.json"]
    decoded, source = checkpoints.starting_model(None)
    assert (decoded.model_version, source) == (3, "checkpoint")
    assert decoded.model.coefficients.tolist() == HEAVIER.coefficients.tolist()


def test_a_corrupt_checkpoint_is_reported_and_the_one_before_it_used(tmp_path):
    checkpoints, stats, notes = _checkpoints(str(tmp_path), keep=5)
    checkpoints.save(1, _payload(TRUE, 1))
    corrupt = tmp_path / "model-00000002.json"
    corrupt.write_text('{"format": "not a snapshot"')
    os.utime(corrupt, (time.time() + 5, time.time() + 5))
    decoded, source = checkpoints.starting_model(None)
    assert (decoded.model_version, source) == (1, "checkpoint")
    assert len(stats.checkpoints_skipped) == 1 and stats.checkpoints_skipped[0].startswith("model-00000002.json: ")
    assert any("skipped corrupt checkpoint" in note for note in notes)


def test_without_a_checkpoint_the_initial_model_is_the_start_and_a_bad_one_is_refused(tmp_path):
    initial = tmp_path / "initial.json"
    initial.write_text(_payload(HEAVIER, 7))
    checkpoints, stats, _ = _checkpoints(str(tmp_path / "empty"), str(initial))
    decoded, source = checkpoints.starting_model(None)
    assert (decoded.model_version, source) == (7, "initial_model")

    initial.write_text("[1, 2")
    refused, stats, notes = _checkpoints(initial_model=str(initial))
    assert refused.starting_model(None) is None
    assert stats.initial_model_refused and any("initial model refused" in note for note in notes)
    assert _checkpoints()[0].starting_model(None) is None, "neither configured: nothing to start from"
