"""Issue 23, the offline commands as a user runs them (a separate process, with a timeout so
that a hang fails): every bad input ends in one line on stderr and exit code 2, with no
traceback and no output file left behind; a damaged bag is learnt from but said plainly."""

from __future__ import annotations

import csv
import os
import subprocess
import sys

import pytest
from hostile_payloads import TRUE, cut_mcap_at
from test_offline_tools import _learnable_bag, _states_csv

from syrenets_ros.dynamics.pendulum import JOINT_NAMES
from syrenets_ros.files import current_umask
from syrenets_ros.online.snapshot import encode_model
from syrenets_ros.tools import cli


def _cli(*argv: str, timeout: float = 300.0) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "syrenets_ros.tools.cli", *map(str, argv)],
                          capture_output=True, text=True, timeout=timeout)


def _refused(result: subprocess.CompletedProcess, command: str) -> str:
    lines = result.stderr.splitlines()
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert lines[0].startswith(f"syrenets-ros {command}: error: ") and "Traceback" not in result.stderr
    return lines[0]


def _model(path) -> None:
    path.write_text(encode_model(TRUE, model_version=1, joint_names=JOINT_NAMES, metrics={}))


def test_a_fifo_as_bag_states_or_model_is_refused_not_waited_on(tmp_path):
    os.mkfifo(tmp_path / "fifo")
    _model(tmp_path / "m.json")
    _states_csv(tmp_path / "s.csv")
    assert "is a FIFO" in _refused(_cli("learn", tmp_path / "fifo", timeout=120), "learn")
    assert "is a FIFO" in _refused(_cli("predict", tmp_path / "fifo", tmp_path / "s.csv", timeout=120), "predict")
    assert "is a FIFO" in _refused(_cli("predict", tmp_path / "m.json", tmp_path / "fifo", timeout=120), "predict")
    # and the output: a FIFO there is not replaced by a file
    message = _refused(_cli("predict", tmp_path / "m.json", tmp_path / "s.csv", "-o", tmp_path / "fifo",
                            timeout=120), "predict")
    assert "is a FIFO" in message


@pytest.mark.parametrize("argv, reason", [
    (["learn", "{bag}", "--start", "nan"], "argument --start: must be a finite number, not nan"),
    (["learn", "{bag}", "--end", "inf"], "argument --end: must be a finite number, not inf"),
    (["learn", "{bag}", "--start", "1e300"], "must be from 0 to 3.156e+09 s, not 1e300"),
    (["learn", "{bag}", "--start", "-1"], "must be from 0 to 3.156e+09 s, not -1"),
    (["learn", "{bag}", "--start", "30"], "--start 30 s is after the recording's end"),
    (["record", "{tmp}/new", "--duration", "inf"], "argument --duration: must be a finite number, not inf"),
    (["record", "{tmp}/new", "--duration", "nan"], "must be a finite number, not nan"),
    (["record", "{tmp}/new", "--duration", "-3"], "must be positive"),
])
def test_times_that_are_not_finite_or_out_of_range_are_one_line(tmp_path, capsys, argv, reason):
    bag = tmp_path / "bag"
    if "{bag}" in argv:
        _learnable_bag(bag)
    code = cli.main([a.format(bag=bag, tmp=tmp_path) for a in argv])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and reason in err and "usage:" not in err, err
    assert not (tmp_path / "new").exists()


def test_record_into_an_unwritable_folder_is_one_line(tmp_path):
    (tmp_path / "file").write_text("not a folder")
    message = _refused(_cli("record", tmp_path / "file" / "bag", "--duration", "1", timeout=120), "record")
    assert "cannot record to" in message and "Not a directory" in message


def _predict(capsys, model, states, output) -> str:
    assert cli.main(["predict", str(model), str(states), "-o", str(output)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


def test_predict_refuses_more_joints_than_the_model_and_leaves_no_partial_output(tmp_path, capsys):
    _model(tmp_path / "m.json")
    _states_csv(tmp_path / "s.csv")
    out = tmp_path / "tau.csv"
    with open(tmp_path / "three.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([f"{kind}{i}" for kind in ("q", "qd", "qdd") for i in (1, 2, 3)])
        writer.writerow([0.1] * 9)
    assert cli.main(["predict", str(tmp_path / "m.json"), str(tmp_path / "s.csv"), "-o", str(out)]) == 0
    assert out.stat().st_mode & 0o777 == 0o666 & ~current_umask()  # as open() makes it, not a private temp file
    out.unlink()
    assert "the header has q3, qd3, qdd3: states of more joints than the model's 2" in _predict(
        capsys, tmp_path / "m.json", tmp_path / "three.csv", out)
    assert not out.exists()

    # A failure after 10 000 good rows (one chunk written): nothing under the output's name,
    # no temporary file left, and an earlier result is kept as it was.
    rows = (tmp_path / "s.csv").read_text().splitlines()
    (tmp_path / "late.csv").write_text("\n".join(rows[:1] + rows[1:] * 60 + ["0,0,0,0,nan,0,0"]) + "\n")
    out.write_text("an earlier result\n")
    assert "non-finite value" in _predict(capsys, tmp_path / "m.json", tmp_path / "late.csv", out)
    assert out.read_text() == "an earlier result\n" and sorted(p.name for p in tmp_path.iterdir()) == [
        "late.csv", "m.json", "s.csv", "tau.csv", "three.csv"]

    # A cell above the csv module's field limit (131 072 characters).
    (tmp_path / "wide.csv").write_text("q1,q2,qd1,qd2,qdd1,qdd2\n0,0,0,0,0,0\n" + "1" * 200_000 + ",0,0,0,0,0\n")
    assert "wide.csv: line 3: field larger than field limit" in _predict(
        capsys, tmp_path / "m.json", tmp_path / "wide.csv", tmp_path / "w.csv")
    assert not (tmp_path / "w.csv").exists()


def test_learning_from_a_damaged_bag_says_how_much_was_read(tmp_path):
    _learnable_bag(tmp_path / "bag")  # 3999 messages at 1 kHz
    cut_mcap_at(tmp_path / "bag", 3000)
    result = _cli("learn", tmp_path / "bag", "--no-network", "-o", tmp_path / "m.json")
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == ["warning: read 3000 of 3999 messages declared on /joint_states: the bag "
                                          "is damaged after t=2.999 s (from the recording's start); only the 3000 "
                                          "read are used"], result.stderr
    assert "samples: " in result.stdout and " from 3000 messages" in result.stdout
    assert (tmp_path / "m.json").exists()


def test_learning_from_an_mcap_whose_lengths_lie_is_one_line(tmp_path):
    """A summary record declaring 2^62 bytes ended in a MemoryError traceback (exit 1); a zstd
    chunk expanding 256 MiB past its declared size was expanded in full first."""
    from syrenets_ros.tools.bench.hostile import mcap_chunk_bomb, mcap_record_beyond_file

    _learnable_bag(tmp_path / "liar")
    mcap_record_beyond_file(tmp_path / "liar")
    assert "declares 4611686018427387904 bytes, beyond the file's" in _refused(
        _cli("learn", tmp_path / "liar", "--no-network", "-o", tmp_path / "m.json"), "learn")
    mcap_chunk_bomb(tmp_path / "bomb", 256 << 20)
    assert "a chunk expands beyond the" in _refused(
        _cli("learn", tmp_path / "bomb", "--no-network", "-o", tmp_path / "m.json"), "learn")
    assert not (tmp_path / "m.json").exists()
