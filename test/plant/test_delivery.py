"""The simulator's record of delivered feed-forward: exact, stale (with age) and missing steps,
and the error of what was applied against the truth (a missing answer applies zero)."""

import math

import pytest

from syrenets_ros.plant.delivery import DeliveryAudit
from syrenets_ros.plant.feedforward import Answer, FeedForwardBuffer, Use


def test_exact_stale_missing_rates_ages_and_error_rms():
    audit = DeliveryAudit()
    truth = (3.0, 4.0)
    audit.record(Answer((3.0, 4.0), Use.EXACT), truth)  # error 0
    audit.record(Answer((3.0, 5.0), Use.STALE, 2), truth)  # error 1
    audit.record(Answer((3.0, 6.0), Use.STALE, 6), truth)  # error 2
    audit.record(Answer(None, Use.NONE), truth)  # nothing applied: error |truth| = 5
    values = audit.report()
    assert values["delivered_ff_steps_window"] == "4"
    assert (values["delivered_ff_exact_window"], values["delivered_ff_stale_window"],
            values["delivered_ff_missing_window"]) == ("1", "2", "1")
    assert float(values["delivered_ff_exact_rate_window"]) == 0.25
    assert float(values["delivered_ff_stale_rate_window"]) == 0.5
    assert float(values["delivered_ff_missing_rate_window"]) == 0.25
    assert float(values["delivered_ff_stale_age_mean_steps_window"]) == 4.0
    assert values["delivered_ff_stale_age_max_steps_window"] == "6"
    assert float(values["delivered_ff_error_rms_window"]) == pytest.approx(math.sqrt((0 + 1 + 4 + 25) / 4), rel=1e-5)
    assert float(values["delivered_ff_error_max_window"]) == 5.0


def test_window_restarts_at_each_report_and_total_accumulates():
    audit = DeliveryAudit()
    audit.record(Answer(None, Use.NONE), (1.0, 0.0))
    audit.report()
    audit.record(Answer((1.0, 0.0), Use.EXACT), (1.0, 0.0))
    values = audit.report()
    assert values["delivered_ff_steps_window"] == "1"
    assert float(values["delivered_ff_exact_rate_window"]) == 1.0
    assert float(values["delivered_ff_error_rms_window"]) == 0.0
    assert values["delivered_ff_steps_total"] == "2"
    assert (values["steps_feedforward_exact"], values["steps_feedforward_missing"]) == ("1", "1")
    assert float(values["delivered_ff_missing_rate_total"]) == 0.5
    assert float(values["delivered_ff_error_rms_total"]) == pytest.approx(math.sqrt(0.5), rel=1e-5)
    assert audit.report()["delivered_ff_error_rms_window"] == "nan", "an empty window says so"


def test_steps_before_the_first_answer_are_left_out_of_the_since_first_answer_split():
    """Before the predictor has a model every step is missing; after the first answer a
    missing step is a transport loss and counts."""
    audit = DeliveryAudit()
    for _ in range(3):
        audit.record(Answer(None, Use.NONE), (1.0, 0.0))
    assert audit.report()["delivered_ff_steps_since_first_answer"] == "0"
    audit.record(Answer((1.0, 0.0), Use.EXACT), (1.0, 0.0))
    audit.record(Answer((1.0, 0.0), Use.STALE, 1), (1.0, 0.0))
    audit.record(Answer(None, Use.NONE), (1.0, 0.0))
    audit.report()
    audit.record(Answer((1.0, 0.0), Use.EXACT), (1.0, 0.0))
    values = audit.report()
    assert values["delivered_ff_steps_since_first_answer"] == "4"
    assert float(values["delivered_ff_exact_rate_since_first_answer"]) == 0.5
    assert float(values["delivered_ff_stale_rate_since_first_answer"]) == 0.25
    assert float(values["delivered_ff_missing_rate_since_first_answer"]) == 0.25
    assert values["delivered_ff_steps_total"] == "7"


def test_buffer_answers_feed_the_audit_with_their_age():
    """Answers for steps 0 and 1 only: step 2 and 3 reuse step 1's (1 and 2 steps old),
    step 5 is past the timeout: missing."""
    buffer = FeedForwardBuffer(step_ns=1_000_000)
    for step in (0, 1):
        buffer.add(step * 1_000_000, (float(step), 0.0), current_step=0)
    audit = DeliveryAudit()
    for step in range(6):
        audit.record(buffer.select(step, timeout_steps=3), (float(step), 0.0))
    audit.report()
    tally = audit.total
    assert (tally.exact, tally.stale, tally.missing) == (2, 3, 1)
    assert (tally.stale_age_sum, tally.stale_age_max) == (1 + 2 + 3, 3)
    assert tally.squared_error == pytest.approx(1 + 4 + 9 + 25)
