"""``syrenets-ros bench paper`` at toy size: runs, prints the paper's rows, writes JSON."""

import json

from syrenets_ros.tools import cli


def test_bench_paper_cli_runs_at_toy_size(tmp_path, capsys):
    out = tmp_path / "paper.json"
    code = cli.main(["bench", "paper", "--seeds", "2", "--budget", "0.5", "--train", "600", "--test", "200",
                     "--methods", "library", "nn", "sysid", "--json", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "Table 1" in printed and "Table 2" in printed and "transposed" in printed
    assert "0.141 / 0.179" in printed  # the paper's NN best row is printed beside ours
    report = json.loads(out.read_text())
    for table in ("1", "2"):
        summary = report["tables"][table]
        assert set(summary) == {"library", "nn", "sysid"}
        for method, entry in summary.items():
            assert len(entry["runs"]) == 2
            assert set(entry["rows"]) == {"best", "best_k", "all", "worst_k", "k"}
            for row in ("best", "best_k", "all", "worst_k"):
                assert entry["rows"][row]["train"]["mean"] >= 0 and entry["rows"][row]["test"]["mean"] >= 0
        for run in summary["library"]["runs"]:
            assert run["recovery"]["exact"] and run["test_mse"] < 1e-10
        assert summary["nn"]["rows"]["all"]["test"]["mean"] > 1e-6  # a black box is not exact


def test_bench_paper_refuses_bad_sizes(tmp_path, capsys):
    assert cli.main(["bench", "paper", "--seeds", "0", "--json", str(tmp_path / "x.json")]) == 2
    assert "need --seeds" in capsys.readouterr().err
