"""`syrenets-ros bench soak` (issue 23's memory done-when): it reads real processes' resident
memory, fits MB/min, and runs the graph end to end."""

from __future__ import annotations

import json
import math
import subprocess
import sys

from syrenets_ros.tools import cli
from syrenets_ros.tools.bench.soak import MB, rss_bytes, slope_per_minute
from syrenets_ros.tools.graph import NODES


def test_rss_is_read_from_proc_and_sees_a_process_grow():
    child = subprocess.Popen([sys.executable, "-c", "import sys\nsys.stdin.readline()\n"
                              "held = bytearray(200_000_000)\nprint('ok', flush=True)\nsys.stdin.readline()"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        before = rss_bytes(child.pid)
        child.stdin.write("\n")
        child.stdin.flush()
        assert child.stdout.readline() == "ok\n"
        after = rss_bytes(child.pid)
    finally:
        child.kill()
        child.wait()
    assert before is not None and after is not None and after - before > 190_000_000, (before, after)
    assert rss_bytes(child.pid) is None  # gone


def test_slope_is_the_least_squares_growth_in_mb_per_minute():
    line = [(t, 400 * MB + 0.25 * MB * t / 60) for t in range(0, 600, 30)]
    assert math.isclose(slope_per_minute(line), 0.25, rel_tol=1e-9)
    assert math.isclose(slope_per_minute(line[::-1]), 0.25, rel_tol=1e-9)  # order does not matter
    assert math.isnan(slope_per_minute(line[:1]))


def test_bench_soak_runs_the_graph_and_reports_every_node(capsys, tmp_path):
    assert cli.main(["bench", "soak", "--minutes", "0.5", "--interval", "5", "--warm-up", "0.2",
                     "--log-dir", str(tmp_path / "logs"), "--json", str(tmp_path / "soak.json")]) == 0
    report = json.loads((tmp_path / "soak.json").read_text())
    assert set(report["nodes"]) == {node.name for node in NODES} and not report["died"]
    for name, row in report["nodes"].items():
        assert row["rss_end_mb"] > 100, (name, row)  # each node holds torch and rclpy
        assert row["samples_fitted"] >= 3 and math.isfinite(row["slope_mb_per_min"]), (name, row)
    assert "floor MB/min" in capsys.readouterr().out


def test_the_lower_envelope_ignores_an_interval_that_never_fell_back_but_keeps_a_leak():
    from syrenets_ros.tools.bench.soak import lower_envelope

    swing = [(t, 400 * MB + (30 * MB if t == 120 else 0.0)) for t in range(0, 600, 30)]
    assert slope_per_minute(lower_envelope(swing)) == 0.0
    leak = [(t, 400 * MB + 0.5 * MB * t / 60 + (30 * MB if t == 120 else 0.0)) for t in range(0, 600, 30)]
    assert math.isclose(slope_per_minute(lower_envelope(leak)), 0.5, rel_tol=0.02)
