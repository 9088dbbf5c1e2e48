"""argparse types for the offline commands: a number that is not finite, or out of its
range, is refused by the parser with one line and exit code 2 (argparse's own), instead of
reaching the code as nan, inf or 1e300."""

from __future__ import annotations

import argparse
import math

# The longest recording a time argument may name: 100 years. Larger values (1e300) would
# overflow the nanosecond clock of a bag (int64) long before they could mean anything.
MAX_SECONDS = 100 * 365.25 * 86400


def _finite(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, not {text}")
    return value


def seconds(text: str) -> float:
    """A time from the recording's start: finite, 0 to 100 years."""
    value = _finite(text)
    if not 0 <= value <= MAX_SECONDS:
        raise argparse.ArgumentTypeError(f"must be from 0 to {MAX_SECONDS:.4g} s, not {text}")
    return value


def positive_seconds(text: str) -> float:
    """A duration: finite, above 0, at most 100 years."""
    value = _finite(text)
    if not 0 < value <= MAX_SECONDS:
        raise argparse.ArgumentTypeError(f"must be positive, at most {MAX_SECONDS:.4g} s, not {text}")
    return value
