"""`syrenets-ros bench hostile` runs end to end and reports every attack refused."""

from syrenets_ros.tools import cli


def test_bench_hostile_reports_every_payload_refused_and_no_forged_sample(capsys, tmp_path):
    assert cli.main(["bench", "hostile", "--steps", "400", "--json", str(tmp_path / "hostile.json")]) == 0
    out = capsys.readouterr().out
    payload_rows = [line for line in out.splitlines() if "  refused  " in line or "  served  " in line]
    assert len(payload_rows) == 7 and all("refused" in line for line in payload_rows), out
    assert "0 of 300" in out and "399 of 399" in out, out
    assert (tmp_path / "hostile.json").exists()
