"""The exactness benchmark runs at toy size: every scenario exact to round-off, σ as requested."""

import argparse
import json

import pytest

from syrenets_ros.tools.bench import exactness


def test_exactness_benchmark_at_toy_size(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    exactness.add_arguments(parser)
    out = tmp_path / "exactness.json"
    args = parser.parse_args(["--steps", "300", "--noise-steps", "20000", "--repeats", "100", "--json", str(out)])
    assert exactness.run(args) == 0
    result = json.loads(out.read_text())
    assert set(result["exactness"]) == set(exactness.SCENARIOS)
    for scenario in result["exactness"].values():
        assert scenario["max_error"] <= 1e-10 < scenario["torque_rms"]
    assert result["noise_sigma_measured"] == pytest.approx(list(exactness.REALISTIC_SIGMA), rel=0.05)
    assert "spring + viscous + Coulomb" in capsys.readouterr().out


def test_exactness_benchmark_refuses_bad_arguments(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    exactness.add_arguments(parser)
    assert exactness.run(parser.parse_args(["--steps", "0", "--json", str(tmp_path / "x.json")])) == 2
    assert "must be > 1" in capsys.readouterr().out
