"""The demo summary's delivered feed-forward: the simulator's report windows combine per phase
(counts add, squared errors add weighted by steps), and the table prints them."""

import math

import pytest

from syrenets_ros.tools.report import ExperimentResult, delivered_feedforward, summary_table


def _window(sim_time: float, steps: int, exact: int, stale: int, rms: float, oldest: int) -> dict[str, str]:
    return {"sim_time_s": f"{sim_time:.3f}", "delivered_ff_steps_window": str(steps),
            "delivered_ff_exact_window": str(exact), "delivered_ff_stale_window": str(stale),
            "delivered_ff_missing_window": str(steps - exact - stale),
            "delivered_ff_stale_age_max_steps_window": str(oldest), "delivered_ff_error_rms_window": repr(rms)}


def test_windows_ending_in_a_phase_combine_by_steps():
    reports = [_window(0.5, 500, 0, 0, 9.0, 0),  # before the phase
               _window(1.0, 500, 400, 50, 1.0, 3), _window(1.5, 500, 500, 0, 0.0, 0),
               {"sim_time_s": "1.7", "delivered_ff_steps_window": "0"},  # feed-forward off: skipped
               _window(2.0, 500, 0, 0, 5.0, 0)]  # after it
    combined = delivered_feedforward(reports, 0.6, 1.9)
    assert combined["steps"] == 1000
    assert (combined["exact"], combined["stale"], combined["missing"]) == (0.9, 0.05, 0.05)
    assert combined["stale_age_max"] == 3
    assert combined["error_rms"] == pytest.approx(math.sqrt(0.5))
    assert math.isnan(delivered_feedforward(reports, 5.0, 6.0)["error_rms"])


def test_summary_table_prints_delivered_error_and_split():
    phases = ("pd_only", "learned_before_swap", "right_after_swap", "after_adapting")
    result = ExperimentResult(
        timeline={}, params_before={}, params_after={}, t_feedforward_on=5.0, t_swap=20.0,
        tracking_rms=dict.fromkeys(phases, 1e-3), torque_rmse=dict.fromkeys(phases[1:], 1e-4),
        adaptation_time=1.0, learner_change_stamps=[], equation="L", true_equation="L",
        node_exit_codes={}, nodes_died=[],
        diagnostics={"pendulum_sim": {"delivered_ff_steps_total": "100", "delivered_ff_exact_rate_total": "0.97",
                                      "delivered_ff_stale_rate_total": "0.02",
                                      "delivered_ff_missing_rate_total": "0.01",
                                      "delivered_ff_stale_age_mean_steps_total": "2.5",
                                      "delivered_ff_stale_age_max_steps_total": "7",
                                      "delivered_ff_error_rms_total": "0.25",
                                      "delivered_ff_exact_rate_since_first_answer": "0.996",
                                      "delivered_ff_stale_rate_since_first_answer": "0.003",
                                      "delivered_ff_missing_rate_since_first_answer": "0.001"}},
        delivered_ff={key: delivered_feedforward([_window(25.0, 1000, 990, 5, 2e-3, 4)], 0.0, 100.0)
                      for key in phases[1:]})
    table = summary_table(result)
    assert "delivered FF RMSE" in table and "exact/stale/missing" in table
    assert "2.000e-03" in table and "99.0/0.5/0.5" in table
    assert "97.0 % exact, 2.0 % stale (mean age 2.5, max 7 steps), 1.0 % missing" in table
    assert "since the first answer 99.60 % exact, 0.30 % stale, 0.10 % missing" in table


def test_each_model_served_after_a_change_is_scored_against_the_one_from_before_it():
    from syrenets_ros.tools.report import served_after_change, worse_after_change

    errors = [(t / 10, 4.0 if t < 30 else 6.0 if t < 40 else 1e-9) for t in range(20, 60)]
    equations = [(1.0, "old"), (3.0, "stand-in"), (4.0, "exact")]
    stretches = served_after_change(errors, equations, t_swap=2.0, end=6.0)
    assert [t for t, _ in stretches] == [2.0, 3.0, 4.0]
    assert [v for _, v in stretches] == pytest.approx([4.0, 6.0, 1e-9])
    assert worse_after_change(stretches) == 1
    assert worse_after_change([]) == 0
    # A model arriving a moment after the swap, or one with the old equation (a refit from
    # before the change published after it), joins the first stretch.
    late = served_after_change(errors, [(1.0, "L = 1(±0.1)*q")] + [(2.01, "refit"), (2.5, "L = 1(±0.2)*q")]
                               + equations[1:], t_swap=2.0, end=6.0)
    assert [t for t, _ in late] == [2.0, 3.0, 4.0]
