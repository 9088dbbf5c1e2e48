"""``syrenets-ros bench chains`` on a toy size: the table, the JSON, and an exact fit."""

from __future__ import annotations

import json

from syrenets_ros.tools import cli


def test_toy_benchmark_learns_the_chain_exactly(tmp_path, capsys):
    out = tmp_path / "chains.json"
    code = cli.main(["bench", "chains", "--links", "2", "--seconds", "6", "--base-frequency", "0.2",
                     "--json", str(out)])
    assert code == 0
    assert "selected/true" in capsys.readouterr().out
    rows = json.loads(out.read_text())["rows"]
    assert [(r["links"], r["columns"], r["true_terms"]) for r in rows] == [(2, 82, 7)]
    for row in rows:
        assert row["exact"] and row["coefficient_error"] < 1e-9 and row["wide_torque_error"] < 1e-6
        assert row["cpu_s"] > 0
