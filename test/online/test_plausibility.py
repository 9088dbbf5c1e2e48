"""Physical plausibility and provenance before serving, without ROS: absurd-but-finite models,
models that disagree with measured torques and replayed snapshots are refused with a reason,
and the served model stays exactly what it was."""

import time

import pytest
import torch
from hostile_payloads import KINETIC_QD1, TRUE, scaled, smooth_motion, with_coefficient

from syrenets_ros.dynamics.pendulum import PendulumParams
from syrenets_ros.learning.terms import true_pendulum_terms
from syrenets_ros.online.serving import ModelServer, implausibility, probe_states
from syrenets_ros.online.snapshot import RunId, encode_model
from syrenets_ros.online.stream import Batch, SampleAssembler

JOINTS = ["joint1", "joint2"]


def measured(params: PendulumParams, count: int = 128) -> Batch:
    """Consecutive samples of a smooth motion of a pendulum with ``params``, exact torques."""
    assembler = SampleAssembler(JOINTS, 1e-3)
    samples = [assembler.add(t, JOINTS, q, qd, tau) for t, q, qd, tau in smooth_motion(count + 1, params=params)]
    return Batch.from_samples(samples[1:])


@pytest.fixture
def server():
    server = ModelServer(JOINTS)
    run = RunId.new()
    accepted, reason = server.offer(encode_model(TRUE, model_version=5, joint_names=JOINTS, metrics={}, run_id=run))
    assert accepted, reason
    server.run = run
    return server


def _assert_still_serving_the_true_model(server):
    q, qd, qdd = probe_states(2, seed=9)
    assert server.current.model_version == 5
    assert torch.equal(server.current.model.torque(q, qd, qdd), TRUE.torque(q, qd, qdd))


@pytest.mark.parametrize("model, reason", [
    (scaled(1000.0), "exceeds the limit 500 N·m"),  # the true Lagrangian ×1000
    (with_coefficient(KINETIC_QD1, 1e307), "exceeds the limit"),  # still finite on the probes
    (with_coefficient(KINETIC_QD1, 1.7e308), "non-finite"),
    (with_coefficient(KINETIC_QD1, -10.0), "not positive definite"),  # negative inertia
])
def test_absurd_but_finite_models_are_refused_and_the_old_one_keeps_serving(server, model, reason):
    accepted, why = server.offer(encode_model(model, model_version=6, joint_names=JOINTS, metrics={},
                                              run_id=server.run))
    assert not accepted and reason in why and why.startswith("implausible")
    assert server.refused["implausible"] == 1 and server.last_refusal == why
    _assert_still_serving_the_true_model(server)


def test_the_learner_and_the_predictor_share_one_gate():
    probes = probe_states(2)
    assert implausibility(TRUE, probes, 500.0) is None
    assert "exceeds" in implausibility(scaled(1000.0), probes, 500.0)


def test_replayed_snapshots_are_refused_and_a_restarted_learner_is_accepted(server):
    replay = encode_model(TRUE, model_version=3, joint_names=JOINTS, metrics={}, run_id=server.run)
    accepted, reason = server.offer(replay)
    assert not accepted and "replay: version 3 is not newer than the served version 5" in reason
    older_run = RunId(server.run.started_ns - 1, "0badc0de")
    accepted, reason = server.offer(encode_model(TRUE, model_version=99, joint_names=JOINTS, metrics={},
                                                 run_id=older_run))
    assert not accepted and "older than the served run" in reason
    future_run = RunId(time.time_ns() + 3600 * 10**9, "0badc0de")
    accepted, reason = server.offer(encode_model(TRUE, model_version=1, joint_names=JOINTS, metrics={},
                                                 run_id=future_run))
    assert not accepted and "in the future" in reason
    _assert_still_serving_the_true_model(server)
    restarted = RunId.new()  # a restarted learner: new run, versions start again
    accepted, reason = server.offer(encode_model(TRUE, model_version=1, joint_names=JOINTS, metrics={},
                                                 run_id=restarted))
    assert accepted, reason
    assert server.current.run_id == restarted


def test_a_model_contradicting_measured_torques_is_refused_unless_it_beats_the_served_one(server):
    recent = measured(PendulumParams())
    wrong = scaled(2.0)  # plausible on the probes, but not this pendulum
    accepted, reason = server.offer(encode_model(wrong, model_version=6, joint_names=JOINTS, metrics={},
                                                 run_id=server.run), recent)
    assert not accepted and reason.startswith("inconsistent with measured torques")
    _assert_still_serving_the_true_model(server)
    # After a real change (heavier lower rod) the served model is the one that is off: the new
    # true model agrees with the measurements and replaces it.
    heavier = PendulumParams(m2=2.0)
    accepted, reason = server.offer(encode_model(true_pendulum_terms(heavier), model_version=7, joint_names=JOINTS,
                                                 metrics={}, run_id=server.run), measured(heavier))
    assert accepted and "window-mean torque error" in reason


def test_answers_beyond_the_feedforward_limit_are_withheld(server):
    answers = server.torque([[0.1, 0.2], [0.1, 0.2]], [[0.0, 0.0], [0.0, 0.0]], [[0.0, 0.0], [1000.0, 0.0]])
    assert answers[1] is None and server.withheld == 1
    assert answers[0] == TRUE.torque(torch.tensor([[0.1, 0.2]], dtype=torch.float64),
                                     torch.zeros(1, 2, dtype=torch.float64),
                                     torch.zeros(1, 2, dtype=torch.float64)).tolist()[0]


def test_after_warm_up_the_first_snapshot_check_imports_nothing():
    """The predictor warms up before answering: a first check that imported modules (torch's
    lazy ones take ~1 s, holding the GIL) stalled the 1 kHz answers after the first model."""
    import subprocess
    import sys

    script = (
        "import sys\n"
        "from syrenets_ros.dynamics.pendulum import JOINT_NAMES, PendulumParams\n"
        "from syrenets_ros.learning.terms import true_pendulum_terms\n"
        "from syrenets_ros.online.serving import ModelServer, warm_up\n"
        "from syrenets_ros.online.snapshot import encode_model\n"
        "payload = encode_model(true_pendulum_terms(PendulumParams()), model_version=1, "
        "joint_names=list(JOINT_NAMES), metrics={})\n"
        "server = ModelServer(list(JOINT_NAMES))\n"
        "if sys.argv[1] == 'warm': warm_up()\n"
        "before = set(sys.modules)\n"
        "assert server.offer(payload)[0]\n"
        "print(len(set(sys.modules) - before))\n")
    def new_modules(mode: str) -> int:
        run = subprocess.run([sys.executable, "-c", script, mode], capture_output=True, text=True, check=True)
        return int(run.stdout.strip())

    assert new_modules("cold") > 0, "without the warm-up the first check imports modules"
    assert new_modules("warm") == 0
