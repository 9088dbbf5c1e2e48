"""The row form and window sizes (online/rows.py), decided on real records: floors that keep
fits possible at coarse rates, a window short enough for the record's gap-free runs, and the
row form that matches how the record was made."""

import torch

from syrenets_ros.learning import integral
from syrenets_ros.learning.terms import TermLibrary
from syrenets_ros.online.learner import LearnerConfig
from syrenets_ros.online.rows import FIT_MIN_SAMPLES, HOLDOUT_WINDOWS, MIN_WINDOW_SAMPLES, RowPlan, Sizes, runs_window
from syrenets_ros.online.stream import Batch
from syrenets_ros.tools.streams import sampled_motion, simulate_structure

LIBRARY = TermLibrary.grammar(2, dissipation=True)


def _batch(stream) -> Batch:
    return Batch(stream.stamp, stream.q, stream.qd, stream.qdd, stream.tau)


def _with_gaps(batch: Batch, every: int) -> Batch:
    """The record with one sample in ``every`` lost (gap-free runs of every − 1 samples)."""
    keep = torch.arange(len(batch)) % every != every - 1
    return Batch(*(t[keep] for t in (batch.stamp, batch.q, batch.qd, batch.qdd, batch.tau)))


def test_sizes_keep_fits_possible_at_a_coarse_rate():
    """At 25 Hz the default 0.1 s window would be 2 samples and the 1 s holdout 25: the floors
    give 16-sample windows, a holdout of two of them and a refit of FIT_MIN_SAMPLES."""
    sizes = Sizes.derive(LearnerConfig(), 0.04)
    assert sizes.window == MIN_WINDOW_SAMPLES
    assert sizes.holdout == HOLDOUT_WINDOWS * MIN_WINDOW_SAMPLES
    assert sizes.fit == FIT_MIN_SAMPLES
    assert sizes.min_fit >= integral.MIN_FIT_WINDOWS * sizes.window
    at_1khz = Sizes.derive(LearnerConfig(), 1e-3)
    assert (at_1khz.window, at_1khz.holdout, at_1khz.fit) == (100, 1000, 8000)
    assert Sizes.derive(LearnerConfig(), 1e-3, window=40).window == 40


def test_the_window_is_the_longest_the_runs_hold_enough_of():
    for runs, needed in (([1000], 7), ([59] * 20, 13), ([300, 40, 500], 9)):
        window = runs_window(runs, needed)
        assert sum(r // (window + 2) for r in runs) >= needed
    assert runs_window([59] * 20, 13) == 52, "59 → 52: one window of each run"
    assert runs_window([10, 12], 13) == MIN_WINDOW_SAMPLES, "never below the floor"


def test_the_simulators_record_keeps_acceleration_rows_at_the_configured_window():
    plan, notes = RowPlan(LearnerConfig()), []
    assert not plan.decided and plan.rows.form == "acceleration"
    assert plan.decide(_batch(simulate_structure(3.0)), LIBRARY, notes.append) == ""
    assert plan.decided and plan.rows.form == "acceleration" and plan.rows.window == 100
    assert len(notes) == 1 and notes[0].startswith("integral rows: acceleration")


def _table_at_25hz(own_acceleration: bool) -> Batch:
    """Continuous motion sampled at 25 Hz in segments, q̇ by numpy.gradient as public data sets
    carry it; q̈ the table's own, or (as a bag gives it, without q̈) the forward difference of q̇."""
    table = _batch(sampled_motion(25.0, (4.0, 5.0, 6.0), derivatives="gradient"))
    if not own_acceleration:
        table.qdd[:-1] = (table.qd[1:] - table.qd[:-1]) / (table.stamp[1:] - table.stamp[:-1])[:, None]
    return table


def test_a_record_made_by_numpy_gradient_gets_central_rows():
    plan, notes = RowPlan(LearnerConfig(joint_state_period=0.04)), []
    assert plan.decide(_table_at_25hz(own_acceleration=False), LIBRARY, notes.append) == ""
    assert plan.rows.form == "central" and plan.rows.window == MIN_WINDOW_SAMPLES


def test_a_measured_acceleration_is_used_as_it_is():
    plan, notes = RowPlan(LearnerConfig(joint_state_period=0.04), measured_acceleration=True), []
    assert plan.decide(_table_at_25hz(own_acceleration=True), LIBRARY, notes.append) == ""
    assert plan.rows.form == "acceleration" and "the record's own q̈" in notes[0]


def test_short_gap_free_runs_shorten_the_window_and_too_few_say_why():
    """One sample lost in every 60: the runs hold no 100-sample window, so the window is
    shortened to what they hold; a record too short for a selection's windows waits, saying
    what it holds."""
    plan, notes = RowPlan(LearnerConfig()), []
    assert plan.decide(_with_gaps(_batch(simulate_structure(3.0)), 60), LIBRARY, notes.append) == ""
    assert plan.rows.window == plan.sizes.window < 58
    assert "shortened from 100" in notes[0]

    waiting = RowPlan(LearnerConfig())
    reason = waiting.decide(_batch(simulate_structure(0.2)), LIBRARY, notes.append)
    assert "gap-free runs" in reason and not waiting.decided and waiting.rows.window == 100


def test_a_configured_form_is_decided_and_a_refit_short_of_windows_shortens_it():
    plan, notes = RowPlan(LearnerConfig(integral_rows="central")), []
    assert plan.decided and plan.rows.form == "central"
    assert not plan.shorten_for(_batch(simulate_structure(3.0)).stamp, notes.append), "the runs hold enough"
    assert plan.shorten_for(_with_gaps(_batch(simulate_structure(3.0)), 60).stamp, notes.append)
    assert plan.rows.form == "central" and plan.rows.window < 58 and len(notes) == 1
