"""The speed benchmark runs end to end at toy size and writes its JSON."""

import argparse
import json

from syrenets_ros.tools.bench import speed as bench_speed


def test_speed_benchmark_at_toy_size(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    bench_speed.add_arguments(parser)
    out = tmp_path / "speed.json"
    args = parser.parse_args(["--device", "cpu", "--batches", "4", "--repeats", "1", "--json", str(out)])
    assert bench_speed.run(args) == 0
    result = json.loads(out.read_text())
    assert [(r["dtype"], r["batch"]) for r in result["train_step"]] == [("float32", 4), ("float64", 4)]
    assert all(r["step_s"] > 0 for r in result["train_step"])
    assert sorted({r["samples"] for r in result["frozen_torque"]}) == [1, 1000]
    assert [r["dtype"] for r in result["online_step"]] == ["float32", "float64"]
    assert all(r["step_s"] > 0 and r["windows"] * r["window"] > 0 for r in result["online_step"])
    assert "vs reference 0.8 s" in capsys.readouterr().out


def test_speed_benchmark_refuses_bad_arguments(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    bench_speed.add_arguments(parser)
    args = parser.parse_args(["--device", "cpu", "--batches", "0", "--json", str(tmp_path / "x.json")])
    assert bench_speed.run(args) == 2
    assert "must be positive" in capsys.readouterr().out
