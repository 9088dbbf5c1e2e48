"""`syrenets-ros bench hostile` runs end to end and reports every attack refused (issues 12, 23)."""

from syrenets_ros.tools import cli


def test_bench_hostile_reports_every_payload_refused_and_no_forged_sample(capsys, tmp_path):
    # The offline inputs are held by test_offline_refusals (the same inputs, a minute of processes).
    assert cli.main(["bench", "hostile", "--steps", "2000", "--no-offline", "--json",
                     str(tmp_path / "hostile.json")]) == 0
    out = capsys.readouterr().out
    verdicts = [word for line in out.splitlines() for word in ("refused", "served", "held")
                if f"  {word}  " in line]
    assert verdicts == ["refused"] * 12 + ["held", "served"], out  # the initial model: held, then checked
    assert "0 of 300" in out and "1999 of 1999 honest" in out and "0 of 2000 forged" in out, out
    assert "0 of 2 forged" in out, out
    assert (tmp_path / "hostile.json").exists()
