"""Change confirmation (online/change.py) on real refits of exact records: a residual jump is a
system change only when no single model fits both sides of it, and the suspected-change state
is watched, decided and re-armed as the loop expects."""

import torch

from syrenets_ros.dynamics import pendulum
from syrenets_ros.learning import integral
from syrenets_ros.learning.terms import TermLibrary
from syrenets_ros.online.change import ChangeWatch, confirm_change, library_fit_rmse
from syrenets_ros.online.stream import Batch
from syrenets_ros.tools.streams import Plant, simulate_structure

ROWS = integral.RowForm("acceleration", 100, 25)
LIBRARY = TermLibrary.grammar(2, dissipation=True)
GUARD = 2 * ROWS.span  # one detection window of 2 rows
NOISE = torch.full((2,), 1e-2, dtype=torch.float64)


def _batch(stream) -> Batch:
    return Batch(stream.stamp, stream.q, stream.qd, stream.qdd, stream.tau)


def test_no_change_when_one_model_fits_both_sides():
    """A jump flagged at 3 s on a plant that never changed (the served model merely
    extrapolated badly): one refit explains before and after, so nothing changed."""
    recent = _batch(simulate_structure(5.0))
    trusted_from, joint = confirm_change(recent, 3.0, LIBRARY, ROWS, 4000, GUARD, NOISE)
    assert trusted_from is None
    assert joint < 1e-6, "the joint refit is exact"


def test_a_swap_is_confirmed_and_the_data_after_it_trusted():
    """Link 2 heavier and longer from 3 s: the joint refit is far worse than each side's, and
    data is trusted from one detection window after the flagged stamp."""
    after = Plant(params=pendulum.PendulumParams().with_changes(m2=2.0, l2=1.2))
    recent = _batch(simulate_structure(5.0, change_at=3.0, changed=after))
    trusted_from, joint = confirm_change(recent, 3.0, LIBRARY, ROWS, 4000, GUARD, NOISE)
    assert trusted_from is not None
    assert abs(trusted_from - (3.0 + GUARD * 1e-3)) < 1.5e-3
    assert joint > 0.1


def test_a_joint_fit_within_the_noise_is_no_change():
    """A tiny change whose joint misfit is below the noise floor of one row is not a change."""
    after = Plant(params=pendulum.PendulumParams().with_changes(m2=1.0 + 1e-7))
    recent = _batch(simulate_structure(5.0, change_at=3.0, changed=after))
    assert confirm_change(recent, 3.0, LIBRARY, ROWS, 4000, GUARD, NOISE)[0] is None


def test_library_fit_rmse_keeps_given_columns_and_says_when_too_short():
    recent = _batch(simulate_structure(2.0))
    rmse, columns = library_fit_rmse(LIBRARY, ROWS, recent)
    assert rmse < 1e-6 and 0 < len(columns) < len(LIBRARY.columns), "a sparse, exact refit"
    kept = list(columns)[:3]
    assert list(library_fit_rmse(LIBRARY, ROWS, recent, columns=kept)[1]) == kept
    assert library_fit_rmse(LIBRARY, ROWS, recent.slice(0, 150)) == (0.0, None)


def test_the_watch_suspects_a_jump_waits_for_data_after_it_and_decides():
    """Levels at the noise floor, then 100× it: the jump is suspected at its first high window;
    it is due only once the newest samples all follow it; it stays suspected while decided
    (the fits run outside the learner's lock) and a dismissed one, settled, leaves the detector
    to start again; after a confirmed change the watch ignores the served model until
    the next one is armed."""
    watch = ChangeWatch(window=2, ratio=10.0)
    for k, level in enumerate([1.0] * 10 + [100.0] * 4):
        watch.watch(torch.tensor([0.1 * k]), torch.tensor([level]), 10.0)
    assert watch.suspected == 1.0
    recent = _batch(simulate_structure(3.0))
    assert not watch.due(recent.slice(500, 1500), 1000), "the newest data begin before the jump"
    assert not watch.due(recent.slice(1500, 2000), 1000), "too few samples after it"
    assert watch.due(recent.slice(1000, 2000), 1000)
    stamp, trusted_from, _ = watch.decide(recent, LIBRARY, ROWS, 4000, NOISE)
    assert (stamp, trusted_from, watch.suspected) == (1.0, None, 1.0), "suspected until settled"
    watch.settle(trusted_from)
    assert (watch.suspected, watch.detector.baseline) == (None, None)

    watch.disarm()
    for k in range(20):
        watch.watch(torch.tensor([0.1 * k]), torch.tensor([1.0 if k < 10 else 100.0]), 10.0)
    assert watch.suspected is None and watch.detector.baseline is None
    watch.arm()
    for k in range(20):
        watch.watch(torch.tensor([0.1 * k]), torch.tensor([1.0 if k < 10 else 100.0]), 10.0)
    assert watch.suspected is not None
