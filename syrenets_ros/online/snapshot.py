"""Safe model payloads: JSON with base64 tensors, parsed against an allow-list, never pickle.

Anyone on the DDS domain can publish to the model topic, so a payload is treated as hostile
data: sizes, dtypes and shapes are checked before any buffer is touched.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, NamedTuple, Sequence


from syrenets_ros.learning.payload import SnapshotError
from syrenets_ros.learning.syrenet import FrozenSyReNet, SyReNet
from syrenets_ros.learning.terms import TermModel

# --- Model envelope ------------------------------------------------------------------------

FORMAT = "syrenets_ros.model"
SCHEMA_VERSION = 1
MAX_SNAPSHOT_BYTES = 64 * 1024 * 1024
# The model-kind registry: every kind a payload may name, imported explicitly (no string
# imports hiding a dependency). "syrenet" is the trainable network's full state, for
# checkpoints (it is not a servable Model).
MODEL_KINDS: dict[str, type] = {
    FrozenSyReNet.kind: FrozenSyReNet,
    TermModel.kind: TermModel,
    SyReNet.kind: SyReNet,
}
_ENVELOPE_KEYS = {"format", "schema_version", "kind", "model_version", "joint_names", "metrics", "model"}


class DecodedModel(NamedTuple):
    """A validated snapshot: the model object and the envelope's metadata."""

    model: Any
    model_version: int
    joint_names: list[str]
    metrics: dict[str, float]


def _model_class(kind: object) -> type:
    if not isinstance(kind, str) or kind not in MODEL_KINDS:
        raise SnapshotError(f"unknown model kind {kind!r}; allowed: {sorted(MODEL_KINDS)}")
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


def encode_model(model: Any, *, model_version: int, joint_names: Sequence[str], metrics: dict) -> str:
    """Serialise a Model-protocol object into the versioned JSON envelope."""
    kind = getattr(model, "kind", None)
    _model_class(kind)
    if isinstance(model_version, bool) or not isinstance(model_version, int) or model_version < 0:
        raise SnapshotError(f"model_version must be a non-negative integer, got {model_version!r}")
    envelope = {"format": FORMAT, "schema_version": SCHEMA_VERSION, "kind": kind,
                "model_version": model_version, "joint_names": [str(n) for n in joint_names],
                "metrics": _check_metrics(dict(metrics)), "model": model.to_payload()}
    return json.dumps(envelope, allow_nan=False, separators=(",", ":"))


def _reject_constant(name: str) -> None:
    raise SnapshotError(f"non-finite number {name} in JSON")


def decode_model(text: str | bytes, max_bytes: int = MAX_SNAPSHOT_BYTES) -> DecodedModel:
    """Parse and validate an envelope from :func:`encode_model`; SnapshotError with a reason."""
    if not isinstance(text, (str, bytes)):
        raise SnapshotError(f"snapshot must be str or bytes, got {type(text).__name__}")
    size = len(text.encode("utf-8") if isinstance(text, str) else text)
    if size > max_bytes:
        raise SnapshotError(f"snapshot of {size} bytes exceeds the limit of {max_bytes} bytes")
    try:
        envelope = json.loads(text, parse_constant=_reject_constant)
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
    cls = _model_class(envelope["kind"])
    version = envelope["model_version"]
    if isinstance(version, bool) or not isinstance(version, int) or version < 0:
        raise SnapshotError(f"model_version must be a non-negative integer, got {version!r}")
    names = envelope["joint_names"]
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise SnapshotError("joint_names must be a list of strings")
    metrics = _check_metrics(envelope["metrics"])
    try:
        model = cls.from_payload(envelope["model"])
    except SnapshotError:
        raise
    except (ValueError, TypeError, KeyError, IndexError) as exc:
        raise SnapshotError(f"{envelope['kind']} payload rejected: {exc}") from exc
    return DecodedModel(model, version, names, metrics)


# --- Checkpoint files ----------------------------------------------------------------------

CHECKPOINT_SUFFIX = ".json"


def save_checkpoint(directory: str | os.PathLike, name: str, text: str) -> Path:
    """Write ``text`` atomically (tmp file + fsync + os.replace): a crash never leaves a
    half-written checkpoint under the final name."""
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
    return final


def load_newest_checkpoint(directory: str | os.PathLike, max_bytes: int = MAX_SNAPSHOT_BYTES
                           ) -> tuple[DecodedModel | None, list[tuple[Path, str]]]:
    """The newest checkpoint that decodes, by modification time, plus every newer file that
    was skipped and why (corrupt, tampered, oversize), so the caller can report them."""
    folder = Path(directory)
    if not folder.is_dir():
        return None, []
    files = [p for p in folder.glob("*" + CHECKPOINT_SUFFIX) if p.is_file() and not p.name.startswith(".")]
    files.sort(key=lambda p: (p.stat().st_mtime_ns, p.name), reverse=True)
    skipped: list[tuple[Path, str]] = []
    for path in files:
        try:
            if path.stat().st_size > max_bytes:
                raise SnapshotError(f"file of {path.stat().st_size} bytes exceeds the limit of {max_bytes} bytes")
            return decode_model(path.read_bytes(), max_bytes), skipped
        except (SnapshotError, OSError) as exc:
            skipped.append((path, str(exc)))
    return None, skipped
