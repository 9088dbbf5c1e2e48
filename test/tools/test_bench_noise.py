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
