"""Tables of joint samples as a recording the learner replays, with no ROS import: a CSV with a
header row, or NumPy's ``.npz`` (one array per column name, read with ``allow_pickle=False``:
data, never code). Columns (SPEC §5): ``t`` [s], optional ``segment``, ``q1..qn``, ``qd1..qdn``,
optional ``qdd1..qddn``, ``tau1..taun``; other columns are ignored.

A table is how many robot data sets come (and how anything else converts most easily): short
trajectories, a coarse rate, and often the accelerations. Segments never join: a new
``segment`` value, or ``t`` not moving forward, starts a new run, and runs are re-timed at
least ``SEGMENT_GAP`` apart so that no window of the learner spans two of them. With q̈ given,
each row is a sample by itself; without it, a row's q̈ is the forward difference to the next
row of its segment, as for a bag.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from syrenets_ros.online.stream import JointStateSample, SampleAssembler

SUFFIXES = (".csv", ".npz")
MAX_ROWS = 5_000_000  # ~1.4 h at 1 kHz; memory stays below ~0.5 GB for 2 joints
SEGMENT_GAP = 1.0  # seconds at least between re-timed segments
KINDS = ("q", "qd", "qdd", "tau")


class TableError(Exception):
    """A table that cannot be used; the text is a one-line reason."""


def is_table(path: Path) -> bool:
    """Whether ``path`` names a table rather than a bag (by its suffix)."""
    return path.suffix.lower() in SUFFIXES


@dataclass
class JointTable:
    """The columns of a table, rows in file order; ``stamp`` is ``t`` re-timed so that runs
    follow each other with gaps, ``run`` the run each row belongs to."""

    path: Path
    stamp: np.ndarray  # (N,)
    run: np.ndarray  # (N,) int
    q: np.ndarray  # (N, n)
    qd: np.ndarray
    qdd: np.ndarray | None
    tau: np.ndarray

    @property
    def n_joints(self) -> int:
        return int(self.q.shape[1])

    @property
    def rows(self) -> int:
        return int(self.stamp.shape[0])

    @property
    def runs(self) -> int:
        return int(self.run.max()) + 1 if self.rows else 0

    def run_lengths(self) -> list[int]:
        return np.bincount(self.run).tolist() if self.rows else []

    @property
    def duration(self) -> float:
        """Seconds of data (the runs' own spans, gaps excluded)."""
        ends = [self.stamp[self.run == r] for r in range(self.runs)]
        return float(sum(e[-1] - e[0] for e in ends if len(e)))

    def period(self) -> float:
        """The median step within runs; NaN with fewer than two rows in any run."""
        same = self.run[1:] == self.run[:-1]
        steps = np.diff(self.stamp)[same]
        steps = steps[np.isfinite(steps) & (steps > 0)]
        return float(np.median(steps)) if steps.size else math.nan

    def describe(self) -> str:
        lengths = self.run_lengths()
        spread = f"{min(lengths)}–{max(lengths)} rows each" if lengths else "no rows"
        return (f"{self.rows} rows of {self.n_joints} joints in {self.runs} segment(s) ({spread}), "
                f"{'with' if self.qdd is not None else 'without'} q̈")

    def samples(self, assembler: SampleAssembler) -> Iterator[tuple[float, JointStateSample | None]]:
        """(receive time [s], sample or None) per row, through the learner's own assembler:
        the same rejection reasons (non-finite values, duplicate or reversed stamps, gaps)."""
        names = assembler.joint_names
        previous_run = -1
        for k in range(self.rows):
            stamp, run = float(self.stamp[k]), int(self.run[k])
            if run != previous_run:
                assembler.restart()
                previous_run = run
            q, qd, tau = self.q[k].tolist(), self.qd[k].tolist(), self.tau[k].tolist()
            if self.qdd is None:
                yield stamp, assembler.add(stamp, names, q, qd, tau)
            else:
                yield stamp, assembler.add_measured(stamp, q, qd, self.qdd[k].tolist(), tau)


def read_table(path: str | Path) -> JointTable:
    """Read and check a table; TableError with the reason when it cannot be used."""
    path = Path(path)
    if not path.exists():
        raise TableError(f"{path}: no such file")
    if not path.is_file():  # a FIFO or device would block or stream forever
        raise TableError(f"{path} is not a regular file")
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise TableError(f"{path}: a table must be {' or '.join(SUFFIXES)}")
    columns = _read_npz(path) if suffix == ".npz" else _read_csv(path)
    return _table(path, columns)


def _read_csv(path: Path) -> dict[str, np.ndarray]:
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.reader(handle)
            header = [name.strip() for name in next(reader, [])]
            if not header:
                raise TableError(f"{path} is empty")
            values: list[list[float]] = []
            for row in reader:
                if not row or not any(cell.strip() for cell in row):
                    continue
                if len(row) != len(header):
                    raise TableError(f"{path} line {reader.line_num}: {len(row)} cells, the header has {len(header)}")
                try:
                    values.append([float(cell) for cell in row])
                except ValueError:
                    raise TableError(f"{path} line {reader.line_num}: a cell is not a number") from None
                if len(values) > MAX_ROWS:
                    raise TableError(f"{path} has more than {MAX_ROWS} rows; split it")
    except csv.Error as error:  # e.g. a cell above the csv module's field limit
        raise TableError(f"{path}: not a readable CSV table ({error})") from None
    except UnicodeDecodeError:
        raise TableError(f"{path}: not a text (UTF-8) CSV table") from None
    if len(set(header)) != len(header):
        raise TableError(f"{path}: the header repeats a column name")
    data = np.array(values, dtype=np.float64).reshape(len(values), len(header))
    return {name: data[:, i] for i, name in enumerate(header)}


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as archive:
            columns = {}
            for name in archive.files:
                array = archive[name]
                if array.ndim != 1 or array.size > MAX_ROWS or not np.issubdtype(array.dtype, np.number):
                    raise TableError(f"{path}: column {name!r} must be a 1-D numeric array of at most {MAX_ROWS} rows")
                columns[name] = array.astype(np.float64)
            return columns
    except TableError:
        raise
    except Exception as error:  # noqa: BLE001 - a damaged archive is a refusal, not a crash
        raise TableError(f"{path}: not a readable .npz table ({' '.join(str(error).split()) or type(error).__name__})"
                         ) from None


def _table(path: Path, columns: dict[str, np.ndarray]) -> JointTable:
    n = 0
    while f"q{n + 1}" in columns:
        n += 1
    required = ["t"] + [f"{kind}{i}" for kind in ("q", "qd", "tau") for i in range(1, n + 1)]
    missing = [name for name in required if name not in columns]
    if n == 0 or missing:
        raise TableError(f"{path}: the table lacks {', '.join(missing) or 'q1'} (columns t, optional segment, "
                         "q1..qn, qd1..qdn, optional qdd1..qddn, tau1..taun)")
    accelerations = [f"qdd{i}" for i in range(1, n + 1)]
    present = [name in columns for name in accelerations]
    if any(present) and not all(present):
        raise TableError(f"{path}: give all of {', '.join(accelerations)} or none")
    lengths = {len(v) for v in columns.values()}
    if len(lengths) != 1:
        raise TableError(f"{path}: the columns differ in length")
    t = columns["t"]
    if len(t) < 2:
        raise TableError(f"{path} holds fewer than two rows")

    def stack(kind: str) -> np.ndarray:
        return np.stack([columns[f"{kind}{i}"] for i in range(1, n + 1)], axis=1)

    segment = columns.get("segment")
    stamp, run = _retime(t, segment)
    return JointTable(path, stamp, run, stack("q"), stack("qd"), stack("qdd") if all(present) else None,
                      stack("tau"))


def _retime(t: np.ndarray, segment: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Runs (a new segment value, or t not moving forward, starts one) and stamps that move
    forward with at least ``SEGMENT_GAP`` between runs; a run's own steps are kept. A
    non-finite t stays non-finite (the assembler rejects and counts that row)."""
    new_run = np.zeros(len(t), dtype=bool)
    new_run[0] = True
    with np.errstate(invalid="ignore"):
        new_run[1:] |= ~(np.diff(t) > 0) & np.isfinite(t[1:]) & np.isfinite(t[:-1])
    if segment is not None:
        new_run[1:] |= segment[1:] != segment[:-1]
    run = np.cumsum(new_run) - 1
    stamp = t.astype(np.float64).copy()
    offset, previous_end = 0.0, -math.inf
    for r in range(int(run[-1]) + 1):
        rows = np.nonzero(run == r)[0]
        finite = stamp[rows][np.isfinite(stamp[rows])]
        if not finite.size:
            continue
        first = float(finite[0]) + offset
        if first < previous_end + SEGMENT_GAP:
            offset += previous_end + SEGMENT_GAP - first
        stamp[rows] += offset
        previous_end = float(np.nanmax(stamp[rows]))
    return stamp, run
