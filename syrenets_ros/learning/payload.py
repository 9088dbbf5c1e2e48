"""Safe payload primitives shared by every model kind: JSON tensors (base64, little-endian,
finite, size-capped) and the one error type for anything malformed. No pickle anywhere."""

from __future__ import annotations

import base64
import math

import numpy as np
import torch

MAX_TENSOR_ELEMENTS = 4_000_000
_DTYPES = {"float64": np.float64, "float32": np.float32}


class SnapshotError(ValueError):
    """A payload that is malformed, tampered, oversized or otherwise not acceptable."""


def tensor_to_json(tensor: torch.Tensor) -> dict:
    """Encode a float tensor as {dtype, shape, data(base64, little-endian)}."""
    array = tensor.detach().cpu().numpy()
    dtype = str(array.dtype)
    if dtype not in _DTYPES:
        raise SnapshotError(f"unsupported tensor dtype {dtype}")
    data = np.ascontiguousarray(array, dtype=np.dtype(_DTYPES[dtype]).newbyteorder("<"))
    return {"dtype": dtype, "shape": list(array.shape), "data": base64.b64encode(data.tobytes()).decode("ascii")}


def tensor_from_json(obj: object, name: str = "tensor") -> torch.Tensor:
    """Decode and validate a tensor from :func:`tensor_to_json`; finite values only."""
    if not isinstance(obj, dict) or set(obj) != {"dtype", "shape", "data"}:
        raise SnapshotError(f"{name}: expected keys dtype, shape, data")
    dtype, shape, data = obj["dtype"], obj["shape"], obj["data"]
    if dtype not in _DTYPES:
        raise SnapshotError(f"{name}: dtype {dtype!r} not allowed")
    if not isinstance(shape, list) or not all(isinstance(s, int) and 0 <= s for s in shape):
        raise SnapshotError(f"{name}: shape must be a list of non-negative integers")
    count = math.prod(shape)
    if count > MAX_TENSOR_ELEMENTS:
        raise SnapshotError(f"{name}: {count} elements exceeds the limit {MAX_TENSOR_ELEMENTS}")
    if not isinstance(data, str):
        raise SnapshotError(f"{name}: data must be a base64 string")
    try:
        raw = base64.b64decode(data.encode("ascii"), validate=True)
    except (ValueError, UnicodeEncodeError) as exc:
        raise SnapshotError(f"{name}: data is not valid base64") from exc
    item = np.dtype(_DTYPES[dtype]).newbyteorder("<")
    if len(raw) != count * item.itemsize:
        raise SnapshotError(f"{name}: {len(raw)} bytes do not match shape {shape} of {dtype}")
    array = np.frombuffer(raw, dtype=item).astype(_DTYPES[dtype]).reshape(shape)
    if not np.isfinite(array).all():
        raise SnapshotError(f"{name}: contains non-finite values")
    return torch.from_numpy(array.copy())
