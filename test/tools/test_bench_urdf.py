"""``syrenets-ros bench urdf`` on a toy size: the table, the JSON, an exact clean fit, a noisy
one within 1 %, and the payload run's detection."""

from __future__ import annotations

import json

from syrenets_ros.tools import cli


def test_toy_benchmark_learns_the_arm_and_its_payload(tmp_path, capsys):
    out = tmp_path / "urdf.json"
    assert cli.main(["bench", "urdf", "--seconds", "6", "--payload-seconds", "8", "--json", str(out)]) == 0
    assert "adapted (≤1 %) after" in capsys.readouterr().out
    result = json.loads(out.read_text())
    rows = result["rows"]
    assert result["base_parameters"] == 43
    assert rows["clean"]["held_out_error"] < 1e-9 and rows["clean"]["wide_error"] < 1e-9
    assert result["noise"] == [1e-4, 1e-3, 0.1]  # the realistic noise by default
    assert rows["noisy"]["wide_error"] < 1e-2
    for run in ("payload_clean", "payload_noisy"):
        assert rows[run]["detections"] == 1 and abs(rows[run]["detected_s"] - 4.0) < 0.25
        assert rows[run]["error_end"] < 1e-2 and rows[run]["learner_cpu_s"] > 0
