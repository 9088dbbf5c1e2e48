"""Safe model payloads: JSON with base64 tensors, parsed against an allow-list, never pickle.

Anyone on the DDS domain can publish to the model topic, so a payload is treated as hostile
data: its size and JSON structure (nesting depth, container count) are bounded before the
parser runs, and sizes, dtypes and shapes are checked before any buffer is touched.

Provenance: every snapshot names the learner run that made it (:class:`RunId`) and a version
that increases within that run, so a receiver can refuse a replayed older snapshot.
"""

from __future__ import annotations

import json
import math
import os
import re
import secrets
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, Sequence

import numpy as np

from syrenets_ros.files import read_regular
from syrenets_ros.learning.payload import SnapshotError
from syrenets_ros.learning.rigid_body import RigidBodyModel
from syrenets_ros.learning.syrenet import FrozenSyReNet, SyReNet
from syrenets_ros.learning.terms import TermModel

# --- Model envelope ------------------------------------------------------------------------

FORMAT = "syrenets_ros.model"
SCHEMA_VERSION = 2  # 2: the envelope names the learner run (run_id)
MAX_SNAPSHOT_BYTES = 64 * 1024 * 1024
# Bounds on the JSON structure, checked before json.loads sees the text: the C parser recurses
# once per nesting level (RecursionError near 1000 levels, from a 20 kB payload) and allocates
# one object per array/object. Genuine envelopes nest 6 levels and hold ~3 containers per term
# (at most 4096 terms) or 2 per network tensor.
MAX_JSON_DEPTH = 16
MAX_JSON_CONTAINERS = 50_000
# The model-kind registry: every kind a payload may name, imported explicitly (no string
# imports hiding a dependency). "syrenet" is the trainable network's full state, for
# checkpoints (it is not a servable Model).
MODEL_KINDS: dict[str, type] = {
    FrozenSyReNet.kind: FrozenSyReNet,
    TermModel.kind: TermModel,
    RigidBodyModel.kind: RigidBodyModel,
    SyReNet.kind: SyReNet,
}
# Kinds that only a checkpoint may hold: a receiver that serves models refuses them unread.
CHECKPOINT_ONLY_KINDS = frozenset({SyReNet.kind})
SERVABLE_KINDS = frozenset(MODEL_KINDS) - CHECKPOINT_ONLY_KINDS
_ENVELOPE_KEYS = {"format", "schema_version", "kind", "run_id", "model_version", "joint_names", "metrics",
                  "model"}
_RUN_ID = re.compile(r"([0-9]{1,19})-([0-9a-f]{8})")


@dataclass(frozen=True, order=True)
class RunId:
    """Identity of one learner run: its wall-clock start (ns since the epoch) and a random tag.

    Runs order by start time, so a restarted learner (a later start) supersedes every
    snapshot of an earlier run, however high that snapshot's version: a receiver tells a newer
    run from a replayed older one without any shared state. The price is trusting the
    learner host's clock (see README, threat model)."""

    started_ns: int
    tag: str

    @classmethod
    def new(cls) -> "RunId":
        return cls(time.time_ns(), secrets.token_hex(4))

    @classmethod
    def parse(cls, text: object) -> "RunId":
        match = _RUN_ID.fullmatch(text) if isinstance(text, str) else None
        if match is None:
            raise SnapshotError(f"run_id {text!r} is not '<start ns>-<8 hex digits>'")
        return cls(int(match[1]), match[2])

    def __str__(self) -> str:
        return f"{self.started_ns}-{self.tag}"


class DecodedModel(NamedTuple):
    """A validated snapshot: the model object and the envelope's metadata."""

    model: Any
    model_version: int
    joint_names: list[str]
    metrics: dict[str, float]
    run_id: RunId


def _model_class(kind: object, allowed: frozenset[str] = frozenset(MODEL_KINDS)) -> type:
    if not isinstance(kind, str) or kind not in MODEL_KINDS:
        raise SnapshotError(f"unknown model kind {kind!r}; allowed: {sorted(MODEL_KINDS)}")
    if kind not in allowed:
        raise SnapshotError(f"model kind {kind!r} is not accepted here (only {sorted(allowed)})")
    return MODEL_KINDS[kind]


def _check_metrics(metrics: object) -> dict[str, float]:
    if not isinstance(metrics, dict):
        raise SnapshotError("metrics must be an object of name -> number")
    clean: dict[str, float] = {}
    for key, value in metrics.items():
        if not isinstance(key, str) or isinstance(value, bool) or not isinstance(value, (int, float)):
            raise SnapshotError(f"metric {key!r}: expected a number, got {type(value).__name__}")
        if not math.isfinite(value):
            raise SnapshotError(f"metric {key!r} is not finite")
        clean[key] = float(value)
    return clean


def encode_model(model: Any, *, model_version: int, joint_names: Sequence[str], metrics: dict,
                 run_id: RunId | None = None) -> str:
    """Serialise a Model-protocol object into the versioned JSON envelope; without a
    ``run_id`` the snapshot is a run of its own (offline tools)."""
    kind = getattr(model, "kind", None)
    _model_class(kind)
    if isinstance(model_version, bool) or not isinstance(model_version, int) or model_version < 0:
        raise SnapshotError(f"model_version must be a non-negative integer, got {model_version!r}")
    envelope = {"format": FORMAT, "schema_version": SCHEMA_VERSION, "kind": kind,
                "run_id": str(run_id or RunId.new()),
                "model_version": model_version, "joint_names": [str(n) for n in joint_names],
                "metrics": _check_metrics(dict(metrics)), "model": model.to_payload()}
    return json.dumps(envelope, allow_nan=False, separators=(",", ":"))


def _reject_constant(name: str) -> None:
    raise SnapshotError(f"non-finite number {name} in JSON")


_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.S)
_NESTING_STEP = np.zeros(256, dtype=np.int8)
_NESTING_STEP[[ord("["), ord("{")]] = 1
_NESTING_STEP[[ord("]"), ord("}")]] = -1


def check_json_structure(data: bytes) -> None:
    """Refuse JSON nested deeper than MAX_JSON_DEPTH or holding more than MAX_JSON_CONTAINERS
    arrays/objects, in linear time and without building anything. Strings are blanked out
    first so that brackets inside them do not count; on malformed text the counts only err
    high (and the parser would refuse that text anyway)."""
    skeleton = _JSON_STRING.sub(b'""', data)
    containers = skeleton.count(b"[") + skeleton.count(b"{")
    if containers > MAX_JSON_CONTAINERS:
        raise SnapshotError(f"JSON holds {containers} arrays/objects, more than the limit {MAX_JSON_CONTAINERS}")
    steps = _NESTING_STEP[np.frombuffer(skeleton, dtype=np.uint8)]
    depth = int(np.cumsum(steps, dtype=np.int32).max(initial=0))
    if depth > MAX_JSON_DEPTH:
        raise SnapshotError(f"JSON nested {depth} levels deep, more than the limit {MAX_JSON_DEPTH}")


def decode_model(text: str | bytes, max_bytes: int = MAX_SNAPSHOT_BYTES, *,
                 kinds: frozenset[str] = frozenset(MODEL_KINDS),
                 joint_names: Sequence[str] | None = None) -> DecodedModel:
    """Parse and validate an envelope from :func:`encode_model`; SnapshotError with a reason.

    Cheap checks come first and the model is built last: size, JSON structure, envelope,
    ``kinds`` (a server passes SERVABLE_KINDS) and, when given, the expected ``joint_names``.
    No exception but SnapshotError leaves (a parser or allocation failure is a refusal too)."""
    if not isinstance(text, (str, bytes)):
        raise SnapshotError(f"snapshot must be str or bytes, got {type(text).__name__}")
    data = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
    if len(data) > max_bytes:
        raise SnapshotError(f"snapshot of {len(data)} bytes exceeds the limit of {max_bytes} bytes")
    check_json_structure(data)
    try:
        return _decode_envelope(data, kinds, joint_names)
    except SnapshotError:
        raise
    except (ValueError, TypeError, KeyError, IndexError, RecursionError, MemoryError) as exc:
        raise SnapshotError(f"snapshot rejected: {type(exc).__name__}: {exc}") from exc


def _decode_envelope(data: bytes, kinds: frozenset[str], joint_names: Sequence[str] | None) -> DecodedModel:
    try:
        envelope = json.loads(data, parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError) as exc:
        if isinstance(exc, SnapshotError):
            raise
        raise SnapshotError(f"snapshot is not valid JSON: {exc}") from exc
    if not isinstance(envelope, dict) or set(envelope) != _ENVELOPE_KEYS:
        raise SnapshotError(f"envelope must have exactly the keys {sorted(_ENVELOPE_KEYS)}")
    if envelope["format"] != FORMAT:
        raise SnapshotError(f"format {envelope['format']!r} is not {FORMAT!r}")
    if envelope["schema_version"] != SCHEMA_VERSION or isinstance(envelope["schema_version"], bool):
        raise SnapshotError(f"schema_version {envelope['schema_version']!r} not supported (expected {SCHEMA_VERSION})")
    cls = _model_class(envelope["kind"], kinds)
    run_id = RunId.parse(envelope["run_id"])
    version = envelope["model_version"]
    if isinstance(version, bool) or not isinstance(version, int) or version < 0:
        raise SnapshotError(f"model_version must be a non-negative integer, got {version!r}")
    names = envelope["joint_names"]
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise SnapshotError("joint_names must be a list of strings")
    if joint_names is not None and names != list(joint_names):
        raise SnapshotError(f"joint names {names} != served {list(joint_names)}")
    metrics = _check_metrics(envelope["metrics"])
    try:
        model = cls.from_payload(envelope["model"])
    except SnapshotError:
        raise
    except (ValueError, TypeError, KeyError, IndexError) as exc:
        raise SnapshotError(f"{envelope['kind']} payload rejected: {exc}") from exc
    # A model that names its robot's joints (a URDF's) must be the envelope's joints in order.
    own = getattr(model, "joint_names", None)
    if own is not None and list(own) != names:
        raise SnapshotError(f"joint names {names} are not the model's robot's {list(own)}")
    return DecodedModel(model, version, names, metrics, run_id)


# --- Checkpoint files ----------------------------------------------------------------------

CHECKPOINT_SUFFIX = ".json"


def save_checkpoint(directory: str | os.PathLike, name: str, text: str, keep: int | None = None) -> Path:
    """Write ``text`` atomically (tmp file + fsync + os.replace): a crash never leaves a
    half-written checkpoint under the final name. With ``keep``, only the newest ``keep``
    checkpoints of the folder (the learner's own) remain afterwards."""
    if not name or os.sep in name or name.startswith(".") or (os.altsep and os.altsep in name):
        raise ValueError(f"checkpoint name must be a plain file name, got {name!r}")
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / (name if name.endswith(CHECKPOINT_SUFFIX) else name + CHECKPOINT_SUFFIX)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=CHECKPOINT_SUFFIX, dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, final)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    if keep is not None:
        for stale in _checkpoint_files(folder)[keep:]:
            stale.unlink(missing_ok=True)
    return final


def _checkpoint_files(folder: Path) -> list[Path]:
    """Checkpoint files of a folder, newest (by modification time) first."""
    files = [p for p in folder.glob("*" + CHECKPOINT_SUFFIX) if p.is_file() and not p.name.startswith(".")]
    return sorted(files, key=lambda p: (p.stat().st_mtime_ns, p.name), reverse=True)


def load_newest_checkpoint(directory: str | os.PathLike, max_bytes: int = MAX_SNAPSHOT_BYTES
                           ) -> tuple[DecodedModel | None, list[tuple[Path, str]]]:
    """The newest checkpoint that decodes, by modification time, plus every newer file that
    was skipped and why (corrupt, tampered, oversize), so the caller can report them."""
    folder = Path(directory)
    if not folder.is_dir():
        return None, []
    skipped: list[tuple[Path, str]] = []
    for path in _checkpoint_files(folder):
        try:
            return decode_model(read_regular(path, max_bytes), max_bytes), skipped
        except (SnapshotError, OSError) as exc:
            skipped.append((path, str(exc)))
    return None, skipped
