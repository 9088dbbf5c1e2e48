"""One way to draw a PNG: headless (Agg, no display on a robot or in CI), matplotlib imported
only when a plot is asked for, and the figure closed whatever happens while drawing."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def saved_figure(path: Path, dpi: int, rows: int = 1, columns: int = 1, **figure: Any) -> Iterator[tuple[Any, Any]]:
    """``plt.subplots(rows, columns, **figure)`` as ``(fig, axes)``; laid out and saved to
    ``path`` when the block ends without an error."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(rows, columns, **figure)
    try:
        yield fig, axes
        fig.tight_layout()
        fig.savefig(path, dpi=dpi)
    finally:
        plt.close(fig)
