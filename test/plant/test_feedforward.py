"""Which predicted torque the simulator uses at a step: the one stamped for it, else the newest
earlier one within the timeout, else none; storage stays bounded whatever arrives."""

import pytest

from syrenets_ros.plant.feedforward import FeedForwardBuffer, Use

STEP_NS = 1_000_000


def test_exact_answer_wins_and_stamps_round_to_the_nearest_step():
    buffer = FeedForwardBuffer(STEP_NS)
    assert buffer.add(20 * STEP_NS + 400_000, (1.0, 2.0), current_step=0) == ""
    assert buffer.add(19 * STEP_NS, (9.0, 9.0), current_step=0) == ""
    assert buffer.select(20, timeout_steps=10) == ((1.0, 2.0), Use.EXACT, 0)


def test_newest_earlier_answer_bridges_a_gap_within_the_timeout_only():
    buffer = FeedForwardBuffer(STEP_NS)
    buffer.add(10 * STEP_NS, (1.0, 1.0), current_step=0)
    buffer.add(12 * STEP_NS, (2.0, 2.0), current_step=0)
    buffer.add(30 * STEP_NS, (3.0, 3.0), current_step=0)
    assert buffer.select(15, timeout_steps=5) == ((2.0, 2.0), Use.STALE, 3)
    assert buffer.select(17, timeout_steps=5) == ((2.0, 2.0), Use.STALE, 5)
    assert buffer.select(18, timeout_steps=5) == (None, Use.NONE, 0)  # 6 steps old: too old
    assert len(buffer) == 1, "unusable answers are dropped, the future one is kept"
    assert buffer.select(30, timeout_steps=0) == ((3.0, 3.0), Use.EXACT, 0)


def test_a_repeated_stamp_takes_the_newest_answer():
    buffer = FeedForwardBuffer(STEP_NS)
    buffer.add(5 * STEP_NS, (1.0, 1.0), current_step=0)
    buffer.add(5 * STEP_NS, (4.0, 5.0), current_step=0)
    assert len(buffer) == 1
    assert buffer.select(5, timeout_steps=0) == ((4.0, 5.0), Use.EXACT, 0)


def test_storage_is_bounded_against_floods_and_far_future_stamps():
    buffer = FeedForwardBuffer(STEP_NS, capacity=100, horizon_steps=1000)
    assert "ahead" in buffer.add(1001 * STEP_NS, (1.0, 1.0), current_step=0)
    assert "negative" in buffer.add(-STEP_NS, (1.0, 1.0), current_step=0)
    for step in range(1, 1001):
        assert buffer.add(step * STEP_NS, (float(step), 0.0), current_step=0) == ""
    assert len(buffer) == 100
    assert buffer.select(1, timeout_steps=0) == ((1.0, 0.0), Use.EXACT, 0), "near answers survive"


def test_invalid_construction_is_refused():
    with pytest.raises(ValueError):
        FeedForwardBuffer(0)
