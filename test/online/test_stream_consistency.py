"""Stream consistency, without ROS: states whose stamps disagree with the node's clock, or
whose positions disagree with their velocities, never become samples; honest noisy data does."""

import math

import pytest
import torch

from syrenets_ros.dynamics.pendulum import PendulumParams, forward_dynamics, inverse_dynamics
from syrenets_ros.online.stream import SampleAssembler, StreamChecks

NAMES = ["joint1", "joint2"]
DT = 1e-3
REALISTIC_NOISE = (1e-4, 1e-3)  # σ_q [rad], σ_q̇ [rad/s] (SPEC §2b)


def simulate(steps: int, noise: tuple[float, float] = (0.0, 0.0), seed: int = 0):
    """Semi-implicit Euler (Bullet's scheme) under a PD law tracking a two-sine reference;
    returns stamps and published (q, q̇, τ) with Gaussian noise on q and q̇."""
    params, gen = PendulumParams(), torch.Generator().manual_seed(seed)
    q, qd = torch.tensor([0.3, -0.2], dtype=torch.float64), torch.zeros(2, dtype=torch.float64)
    rows = []
    for k in range(steps):
        t = k * DT
        reference = torch.tensor([0.5 * math.sin(2 * t), 0.4 * math.sin(3 * t)], dtype=torch.float64)
        tau = inverse_dynamics(q, qd, 300 * (reference - q) - 40 * qd, params)
        noisy_q = q + noise[0] * torch.randn(2, generator=gen, dtype=torch.float64)
        noisy_qd = qd + noise[1] * torch.randn(2, generator=gen, dtype=torch.float64)
        rows.append((t, noisy_q.tolist(), noisy_qd.tolist(), tau.tolist()))
        qd = qd + DT * forward_dynamics(q, qd, tau, params)
        q = q + DT * qd
    return rows


def assembler_with_clock(now: list[float]) -> SampleAssembler:
    checks = StreamChecks(clock=lambda: now[0], stamp_tolerance=2.0, position_noise=REALISTIC_NOISE[0],
                          velocity_noise=REALISTIC_NOISE[1])
    return SampleAssembler(NAMES, DT, checks=checks)


def feed(assembler: SampleAssembler, rows, now: list[float], clock_offset: float = 0.0) -> int:
    formed = 0
    for stamp, q, qd, tau in rows:
        now[0] = stamp + clock_offset
        formed += assembler.add(stamp, NAMES, q, qd, tau) is not None
    return formed


@pytest.mark.parametrize("noise", [(0.0, 0.0), REALISTIC_NOISE])
def test_honest_data_passes_with_and_without_realistic_noise(noise):
    now = [0.0]
    assembler = assembler_with_clock(now)
    rows = simulate(1000, noise)
    assert feed(assembler, rows, now) == len(rows) - 1
    assert sum(assembler.rejected.values()) == 0


def test_forged_states_stamped_far_ahead_never_become_samples():
    """The attack of issue 12: 300 forged states 1 ms apart, 1e4 s ahead, 5× the torque."""
    now = [0.0]
    assembler = assembler_with_clock(now)
    rows = simulate(600)
    feed(assembler, rows[:300], now)
    forged = [(1e4 + k * DT, q, qd, [5 * t for t in tau]) for k, (_, q, qd, tau) in enumerate(rows[300:])]
    for stamp, q, qd, tau in forged:
        assert assembler.add(stamp, NAMES, q, qd, tau) is None
    assert assembler.rejected["off_clock"] == len(forged)
    assert feed(assembler, rows[300:], now) == 300, "the genuine stream resumes where it was"


def test_a_state_teleporting_away_from_its_velocity_is_refused():
    now = [0.0]
    assembler = assembler_with_clock(now)
    rows = simulate(50, REALISTIC_NOISE)
    feed(assembler, rows[:20], now)
    stamp, q, qd, tau = rows[20]
    now[0] = stamp
    assert assembler.add(stamp, NAMES, [q[0] + 0.01, q[1]], qd, tau) is None  # 100 σ_q off
    assert assembler.rejected["inconsistent_kinematics"] == 1


def test_states_lost_in_a_gap_are_counted():
    now = [0.0]
    assembler = assembler_with_clock(now)
    rows = simulate(20)
    feed(assembler, rows[:10] + rows[15:], now)
    assert assembler.rejected["gap"] == 1 and assembler.missing == 5  # states 10..14


def test_a_lagging_clock_within_the_tolerance_is_fine():
    now = [0.0]
    assembler = assembler_with_clock(now)
    rows = simulate(100)
    assert feed(assembler, rows, now, clock_offset=1.5) == 99  # e.g. a queue 1.5 s behind /clock
    assert feed(assembler_with_clock(now), rows, now, clock_offset=-2.5) == 0


def test_forged_states_stamped_ahead_within_the_tolerance_neither_enter_nor_blind():
    """Issue 23: one state stamped 0.5–2 s ahead of the stream (inside stamp_tolerance) every
    0.9 s became the timeline's newest, so the honest states after it were "out of order"
    (591 → 6 accepted samples/s). Judged against the stream's own timeline, the forged states
    are refused as off_timeline and every honest sample still forms."""
    now = [0.0]
    assembler = assembler_with_clock(now)
    rows = simulate(4000, REALISTIC_NOISE)
    forged = 0
    for k, (stamp, q, qd, tau) in enumerate(rows):
        now[0] = stamp
        if k % 900 == 450:
            lead = 0.5 + 1.5 * (k / len(rows))
            assert assembler.add(stamp + lead, NAMES, q, qd, [5 * t for t in tau]) is None
            forged += 1
        assembler.add(stamp, NAMES, q, qd, tau)
    assert forged == 4 and assembler.rejected["off_timeline"] == forged
    assert assembler.accepted == len(rows) - 1, dict(assembler.rejected)


def test_a_consistent_forged_run_ahead_of_the_stream_never_becomes_samples():
    """A burst of 200 kinematically consistent states, 1 s ahead of the live stream (198 forged
    samples before issue 23): the clock did not move by that second, so the run never becomes
    the timeline, and the honest stream goes on."""
    now = [0.0]
    assembler = assembler_with_clock(now)
    rows = simulate(1400)
    feed(assembler, rows[:500], now)
    for stamp, q, qd, tau in rows[1000:1200]:  # the real motion 0.5 s later, stamped a further 0.5 s on
        assert assembler.add(stamp + 0.5, NAMES, q, qd, [5 * t for t in tau]) is None
    assert assembler.rejected["off_timeline"] == 200 and assembler.accepted == 499
    assert feed(assembler, rows[500:1000], now) == 500, dict(assembler.rejected)


def test_a_true_pause_and_a_restart_are_taken_after_one_confirming_state():
    """A pause (stamps and clock move on together) and a restart of sim time (both go back)
    become the new timeline as before: one state lost to each, counted as gap / time_reset."""
    now = [0.0]
    assembler = assembler_with_clock(now)
    rows = simulate(600)
    feed(assembler, rows[:200], now)
    paused = [(t + 1.5, q, qd, tau) for t, q, qd, tau in rows[200:400]]
    assert feed(assembler, paused, now) == 199
    restarted = [(t - 0.4, q, qd, tau) for t, q, qd, tau in rows[400:]]  # sim time starts at 0 again
    assert feed(assembler, restarted, now) == 199
    assert {k: v for k, v in assembler.rejected.items() if v} == {"gap": 1, "time_reset": 1}
    assert assembler.missing == 0  # a pause of reset_after or more is not lost states


def test_a_jump_the_clock_did_not_make_is_taken_once_the_old_timeline_stays_silent():
    """A queue that dropped its oldest states: the stream jumps 0.5 s ahead while the clock
    did not. The jump is taken once the old timeline stayed silent for reset_after (1 s) of
    the clock; the states meanwhile are off_timeline."""
    now = [0.0]
    assembler = assembler_with_clock(now)
    rows = simulate(2000)
    feed(assembler, rows[:100], now)
    formed = feed(assembler, rows[600:], now, clock_offset=-0.5)  # the clock 0.5 s behind from here
    assert assembler.rejected["gap"] == 1 and 998 <= assembler.rejected["off_timeline"] <= 1001
    assert formed == len(rows[600:]) - 1 - assembler.rejected["off_timeline"]


def test_forged_states_beside_an_honest_gap_do_not_keep_the_stream_from_resuming():
    """After a genuine gap, forged states stamped ahead, interleaved with the resuming stream,
    cannot displace its candidate timeline: the honest stream is taken at its second state."""
    now = [0.0]
    assembler = assembler_with_clock(now)
    rows = simulate(700)
    feed(assembler, rows[:300], now)
    formed = 0
    for stamp, q, qd, tau in rows[350:]:  # 50 states lost
        now[0] = stamp
        formed += assembler.add(stamp, NAMES, q, qd, tau) is not None
        assert assembler.add(stamp + 1.0, NAMES, q, qd, [5 * t for t in tau]) is None
    assert formed == len(rows[350:]) - 1 and assembler.rejected["gap"] == 1 and assembler.missing == 50
    assert assembler.rejected["off_timeline"] == len(rows[350:])
