"""``syrenets-ros bench integrator`` end to end on a toy size: table, JSON, and the physics
the full-size run is about (variational energy error far below explicit Euler's)."""

from __future__ import annotations

import json

import pytest

from syrenets_ros.tools import cli


def test_toy_benchmark_writes_table_and_json(tmp_path, capsys):
    out = tmp_path / "bench.json"
    code = cli.main(["bench", "integrator", "--steps", "40", "--step-sizes", "0.01", "--accelerate", "eager",
                     "--forecast-modes", "--json", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "40/40 steps" in printed and "max |ΔE|/|E0|" in printed
    result = json.loads(out.read_text())
    rows = {(r["model"], r["scheme"]): r for r in result["rows"]}
    assert {m for m, _ in rows} == {"true L", "fitted terms"}
    for model in ("true L", "fitted terms"):
        variational, euler, rk4 = (rows[model, s] for s in ("variational", "euler", "rk4"))
        for row in (variational, euler, rk4):
            assert row["completed_steps"] == [40, 40] and row["wall_per_step_ms"] > 0
        assert max(variational["max_rel_energy_error"]) < 1e-4
        assert min(euler["max_rel_energy_error"]) > 10 * max(variational["max_rel_energy_error"])
        assert variational["newton_mean"] >= 1.0
    assert "q2" in result["models"][1]["equation"]


def test_unreadable_model_file_is_a_clear_error(tmp_path, capsys):
    bad = tmp_path / "model.json"
    bad.write_text("{not json")
    code = cli.main(["bench", "integrator", "--steps", "5", "--model", str(bad), "--json", str(tmp_path / "x.json")])
    assert code == 1
    assert "cannot load the trained model" in capsys.readouterr().err
    assert not (tmp_path / "x.json").exists()


def test_snapshot_model_is_benchmarked(tmp_path):
    from syrenets_ros.learning import terms
    from syrenets_ros.dynamics import pendulum
    from syrenets_ros.online import snapshot

    model = terms.true_pendulum_terms(pendulum.PendulumParams())
    path = tmp_path / "model.json"
    path.write_text(snapshot.encode_model(model, model_version=3, joint_names=pendulum.JOINT_NAMES, metrics={}))
    out = tmp_path / "bench.json"
    code = cli.main(["bench", "integrator", "--steps", "20", "--step-sizes", "0.01", "--accelerate", "eager",
                     "--forecast-modes", "--model", str(path), "--json", str(out)])
    assert code == 0
    result = json.loads(out.read_text())
    assert result["models"][1]["kind"] == "terms" and result["models"][1]["model_version"] == 3
    rows = [r for r in result["rows"] if r["model"] == "terms v3"]
    assert len(rows) == 3 and all(r["completed_steps"] == [20, 20] for r in rows)
    truth = {r["scheme"]: r["max_rel_energy_error"] for r in result["rows"] if r["model"] == "true L"}
    for row in rows:  # the same Lagrangian in another form: the same energy behaviour
        assert row["max_rel_energy_error"] == pytest.approx(truth[row["scheme"]], rel=1e-6, abs=1e-12)
