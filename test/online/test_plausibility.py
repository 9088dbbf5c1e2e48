"""Physical plausibility and provenance before serving, without ROS: absurd-but-finite models,
models that disagree with measured torques and replayed snapshots are refused with a reason,
and the served model stays exactly what it was."""

import time

import pytest
import torch
from hostile_payloads import KINETIC_QD1, TRUE, bump, flipped_gravity, scaled, smooth_motion, with_coefficient

from syrenets_ros.dynamics.pendulum import PendulumParams
from syrenets_ros.learning.terms import true_pendulum_terms
from syrenets_ros.online.serving import ModelServer, implausibility, probe_states, random_probe_states
from syrenets_ros.online.snapshot import RunId, encode_model
from syrenets_ros.online.stream import Batch, SampleAssembler

JOINTS = ["joint1", "joint2"]


def measured(params: PendulumParams = PendulumParams(), count: int = 1024, rest: int = 0) -> Batch:
    """Consecutive samples of a smooth motion of a pendulum with ``params``, exact torques;
    then, after a gap, ``rest`` samples of it hanging still at the bottom (τ = 0)."""
    rows = smooth_motion(count + 1, params=params) if count else []
    stamp = rows[-1][0] if rows else 0.0
    rows += [(stamp + 0.01 + k * 1e-3, [0.0, 0.0], [0.0, 0.0], [0.0, 0.0]) for k in range(rest + 1)]
    assembler = SampleAssembler(JOINTS, 1e-3)
    samples = [assembler.add(t, JOINTS, q, qd, tau) for t, q, qd, tau in rows]
    return Batch.from_samples([s for s in samples if s is not None])


def snapshot(model, version: int, run: RunId) -> str:
    return encode_model(model, model_version=version, joint_names=JOINTS, metrics={}, run_id=run)


@pytest.fixture
def server():
    server = ModelServer(JOINTS)
    run = RunId.new()
    accepted, reason = server.offer(snapshot(TRUE, 5, run), measured())
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
                                                 run_id=restarted), measured())
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
        "server = ModelServer(list(JOINT_NAMES), require_measurements=False)\n"
        "if sys.argv[1] == 'warm': warm_up()\n"
        "before = set(sys.modules)\n"
        "assert server.offer(payload)[0]\n"
        "print(len(set(sys.modules) - before))\n")
    def new_modules(mode: str) -> int:
        run = subprocess.run([sys.executable, "-c", script, mode], capture_output=True, text=True, check=True)
        return int(run.stdout.strip())

    assert new_modules("cold") > 0, "without the warm-up the first check imports modules"
    assert new_modules("warm") == 0


def test_random_probes_catch_a_model_wrong_at_one_spot_the_fixed_probes_miss(server):
    """Issue 23: exact on the visited range and on the 64 fixed, public probes, but |τ| > 500
    N·m on 2.1 % of the q plane. Fresh random probes (1024 from os.urandom) find it."""
    wrong = bump()
    assert implausibility(wrong, probe_states(2), 500.0) is None  # the old gate let it through
    first, second = random_probe_states(2), random_probe_states(2)
    assert not torch.equal(first[0], second[0]), "drawn afresh for every check"
    accepted, reason = server.offer(snapshot(wrong, 6, server.run), measured())
    assert not accepted and reason.startswith("implausible: torque"), reason
    _assert_still_serving_the_true_model(server)


@pytest.mark.parametrize("model, reason", [
    (scaled(3.0), "inconsistent with measured torques: RMS"),
    (flipped_gravity(), "implausible: gravity points against the served model's"),
])
def test_a_wrong_model_offered_when_the_newest_window_agrees_is_refused(model, reason):
    """Issue 23: offered while the robot hangs still (the newest 128 states agree with any
    multiple of the true model), a 3×-heavy model or one with gravity flipped was served. The
    history of seconds before it (and, for gravity, random probes against the served model)
    refuses it."""
    server = ModelServer(JOINTS, max_torque=1000.0)  # so that only the checks under test can refuse
    run = RunId.new()
    assert server.offer(snapshot(TRUE, 1, run), measured())[0]
    history = measured(rest=128)
    accepted, why = server.offer(snapshot(model, 2, run), history)
    assert not accepted and why.startswith(reason), why
    assert server.current.model_version == 1


def test_an_empty_predictor_holds_the_first_model_until_measured_torques_check_it():
    """Issue 23: with nothing served (after a restart, or an initial model published before any
    joint state) nothing was compared, and a 3×-heavy model was served. Now a first model is
    held, drives nothing, and is served only once it explains seconds of moving measured
    states; a 3×-heavy one is refused then."""
    server = ModelServer(JOINTS, max_torque=1000.0)
    run = RunId.new()
    accepted, why = server.offer(snapshot(scaled(3.0), 1, run))
    assert not accepted and why.startswith("held") and server.current is None and server.pending is not None
    assert server.torque([[0.1, 0.2]], [[0.0, 0.0]], [[0.0, 0.0]]) is None, "a held model drives nothing"
    accepted, why = server.check_pending(measured(count=0, rest=1024))  # hanging still: checks nothing
    assert not accepted and why.startswith("held")
    accepted, why = server.check_pending(measured())
    assert not accepted and "inconsistent with measured torques" in why and "served model: none" in why
    assert server.pending is None and server.current is None
    assert not server.offer(snapshot(TRUE, 1, run))[0], "held again"
    accepted, why = server.offer(snapshot(TRUE, 2, run))  # a newer model replaces the held one
    assert not accepted and server.pending.model_version == 2
    accepted, why = server.offer(snapshot(TRUE, 1, run))
    assert not accepted and why.startswith("replay: version 1 is not newer than the served version 2")
    accepted, why = server.check_pending(measured())
    assert accepted and server.current.model_version == 2, why
