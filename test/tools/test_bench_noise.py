"""The noise benchmark runs end to end at toy size: exact at σ = 0, both training-row kinds."""

import argparse

from syrenets_ros.tools.bench import noise as bench_noise


def _args(*extra: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    bench_noise.add_arguments(parser)
    return parser.parse_args(list(extra))


def test_noise_benchmark_at_toy_size_is_exact_without_noise(tmp_path):
    result = bench_noise.measure(0.0, 4.0, 4.0, 3.0, seed=0)
    assert result["reference_rmse"] < 1e-9 and result["terms"] == "7/7 true + 0 extra"
    assert result["false_detections"] == 0
    swap = result["swaps"][0]
    assert swap["detections"] == 1 and swap["adaptation_s"] <= 3.0
    assert "| 0× | off |" in bench_noise.table([result])
    assert bench_noise.plot([result], tmp_path / "noise.png").exists()


def test_training_comparison_reports_both_row_kinds(capsys):
    assert bench_noise.run(_args("--levels", "0", "--training-steps", "2")) == 0
    out = capsys.readouterr().out
    assert "| 0× | per-sample | 2 |" in out and "| 0× | integral | 2 |" in out


def test_oracle_frontier_is_exact_without_noise(capsys):
    """Noise-free, the true terms refitted on any window are exact before and after the swap,
    so every pre-swap window ratio is a ratio of rounding errors; the table has one row per
    fit_samples and says how many seeds come within 1.5×."""
    results = bench_noise.oracle_frontier((0.0, 0.0, 0.0), 8.0, 3.0, range(1), bench_noise.DEMO_FREQUENCY)
    assert all(v < 1e-9 for r in results for part in ("pre", "post") for v in r[part].values())
    table = bench_noise.frontier_table(results)
    assert all(f"| {f} |" in table for f in bench_noise.FRONTIER_FIT_SAMPLES)
    assert bench_noise.run(_args("--levels", "0", "--swap-seeds", "1", "--swap-at", "8", "--after", "3",
                                 "--oracle-frontier")) == 0
    assert "harmonics 1..5 of 0.1 Hz" in capsys.readouterr().out
