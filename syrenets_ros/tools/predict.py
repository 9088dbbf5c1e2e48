"""``syrenets-ros predict MODEL.json STATES.csv``: inverse dynamics of a saved model. The CSV
has a header row and columns q1..qn, qd1..qdn, qdd1..qddn (others, e.g. a time column, are
ignored); out come tau1..taun, one row per input row. The snapshot is validated exactly as
the predictor node validates one."""

from __future__ import annotations

import argparse
import csv
import math
import sys
from contextlib import nullcontext
from pathlib import Path
from typing import Iterator, TextIO

from syrenets_ros.files import atomic_text_output, check_regular

EXIT_UNUSABLE = 2
CHUNK_ROWS = 10_000  # rows evaluated at once: memory stays flat for any file size


class CsvError(ValueError):
    """A states file that cannot be used; the text says where and why."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", type=Path, help="snapshot written by `syrenets-ros learn` or a checkpoint")
    parser.add_argument("states", type=Path, help="CSV with columns q1..qn, qd1..qdn, qdd1..qddn")
    parser.add_argument("-o", "--output", type=Path, default=None, help="CSV to write (default: stdout)")
    parser.add_argument("--urdf", type=Path, default=None,
                        help="the robot's URDF: a rigid-body model learned on another URDF is refused")


def state_columns(n_joints: int) -> list[str]:
    return [f"{kind}{i}" for kind in ("q", "qd", "qdd") for i in range(1, n_joints + 1)]


def _rows(reader) -> Iterator[list[str]]:
    """The reader's rows; its own errors (a cell above the csv module's field limit, a NUL
    byte) as a CsvError naming the line."""
    try:
        yield from reader
    except csv.Error as error:
        raise CsvError(f"line {reader.line_num}: {error}") from None


def read_states(handle: TextIO, n_joints: int) -> Iterator[list[list[float]]]:
    """Chunks of rows [q..., qd..., qdd...] from a CSV with a header; CsvError on bad input."""
    reader = csv.reader(handle)
    rows = _rows(reader)
    header = [name.strip() for name in next(rows, [])]
    wanted = state_columns(n_joints)
    missing = [name for name in wanted if name not in header]
    if missing:
        raise CsvError(f"the header lacks {', '.join(missing)} (the model has {n_joints} joints; "
                       f"expected columns {', '.join(wanted)})")
    extra = [name for name in state_columns(n_joints + 1) if name in header and name not in wanted]
    if extra:
        raise CsvError(f"the header has {', '.join(extra)}: states of more joints than the model's {n_joints}")
    index = [header.index(name) for name in wanted]
    chunk: list[list[float]] = []
    for row in rows:
        if not row or not any(cell.strip() for cell in row):
            continue
        try:
            values = [float(row[i]) for i in index]
        except (ValueError, IndexError):
            raise CsvError(f"line {reader.line_num}: expected numbers in {', '.join(wanted)}") from None
        if not all(math.isfinite(v) for v in values):
            raise CsvError(f"line {reader.line_num}: non-finite value")
        chunk.append(values)
        if len(chunk) == CHUNK_ROWS:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _fail(message: str) -> int:
    print(f"syrenets-ros predict: error: {message}", file=sys.stderr)
    return EXIT_UNUSABLE


def run(args: argparse.Namespace) -> int:
    import torch

    from syrenets_ros.dynamics.urdf import UrdfError, read_urdf
    from syrenets_ros.online.serving import load_model_file, robot_mismatch
    from syrenets_ros.online.snapshot import SnapshotError

    try:
        digest = read_urdf(args.urdf).digest if args.urdf else ""
    except UrdfError as error:
        return _fail(f"--urdf: {error}")
    try:
        check_regular(args.model)  # load_model_file opens it: a FIFO would block forever
        decoded = load_model_file(args.model)
    except OSError as error:
        return _fail(f"model refused: {error}")
    except SnapshotError as error:
        return _fail(f"model refused: {error}")
    mismatch = robot_mismatch(decoded.model, digest)
    if mismatch:
        return _fail(f"model refused: {args.model}: {mismatch}")
    n = len(decoded.joint_names)
    rows = 0
    try:
        check_regular(args.states)  # a FIFO would block the open forever
        with open(args.states, newline="", encoding="utf-8") as source, \
                (atomic_text_output(args.output) if args.output else nullcontext(sys.stdout)) as sink:
            writer = csv.writer(sink)
            writer.writerow([f"tau{i}" for i in range(1, n + 1)])
            for chunk in read_states(source, n):
                states = torch.tensor(chunk, dtype=torch.float64)
                with torch.no_grad():
                    tau = decoded.model.torque(states[:, :n], states[:, n:2 * n], states[:, 2 * n:])
                writer.writerows([repr(v) for v in row] for row in tau.tolist())
                rows += len(chunk)
    except CsvError as error:
        return _fail(f"{args.states}: {error}")
    except (OSError, UnicodeDecodeError) as error:
        return _fail(str(error))
    if args.output:
        print(f"{rows} torques of model v{decoded.model_version} ({decoded.model.kind}, joints "
              f"{', '.join(decoded.joint_names)}) written to {args.output}")
    return 0
