"""Reading and writing the files a user names, safely: a FIFO, socket or device given where
a file is expected is refused before it is opened (opening a FIFO blocks until someone
writes to it: a command would hang forever), and results are written under a temporary
name and renamed only when complete, so a failure never leaves a half-written file."""

from __future__ import annotations

import os
import stat
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, TextIO

_KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))


def not_regular(mode: int) -> str | None:
    """What a file of this st_mode is when it is not a regular file ('a FIFO', ...), else None."""
    if stat.S_ISREG(mode):
        return None
    return next((kind for test, kind in _KINDS if test(mode)), "not a regular file")


def check_regular(path: str | os.PathLike) -> None:
    """OSError unless ``path`` is a regular file (symlinks followed); never opens it."""
    kind = not_regular(os.stat(path).st_mode)
    if kind is not None:
        raise OSError(f"{os.fspath(path)} is {kind}, not a regular file")


def read_regular(path: str | os.PathLike, max_bytes: int) -> bytes:
    """The bytes of a regular file of at most ``max_bytes``; OSError otherwise. Opened
    non-blocking and checked on the open descriptor, so a FIFO swapped in after a check
    cannot block the read either."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    try:
        info = os.fstat(fd)
        kind = not_regular(info.st_mode)
        if kind is not None:
            raise OSError(f"{os.fspath(path)} is {kind}, not a regular file")
        if info.st_size > max_bytes:
            raise OSError(f"{os.fspath(path)}: {info.st_size} bytes exceeds the limit of {max_bytes} bytes")
    except BaseException:
        os.close(fd)
        raise
    with os.fdopen(fd, "rb") as handle:
        data = handle.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise OSError(f"{os.fspath(path)}: more than {max_bytes} bytes (it grew while read)")
    return data


def current_umask() -> int:
    """The process's file mode creation mask (os.umask can only be read by setting it)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextmanager
def atomic_text_output(path: str | os.PathLike) -> Iterator[TextIO]:
    """A text handle on a temporary file beside ``path``; renamed to ``path`` when the block
    ends without an exception, removed otherwise."""
    target = Path(path)
    if target.exists():
        check_regular(target)  # never replace a FIFO, device or folder by a file
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w", newline="", encoding="utf-8") as handle:
            yield handle
        os.chmod(tmp, 0o666 & ~current_umask())  # what open() would have made, not mkstemp's 0600
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
