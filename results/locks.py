"""Advisory file locks that let several processes share run folders, caches and index files (POSIX
``flock``: the kernel drops the lock of a process that dies, so a killed run never leaves a stale lock)."""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def claim(path: Path, wait: bool = True) -> Iterator[bool]:
    """An exclusive lock on ``path`` (created) held for the ``with`` block: yields False at once when another
    process holds it and ``wait`` is False. The kernel drops the lock of a killed process."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextmanager
def claim_byte(path: Path, offset: int) -> Iterator[bool]:
    """A non-blocking exclusive lock on one byte of ``path`` (created): one lock file holds a lock per case
    (``offset``), so many cases need no file each. Yields False when another process holds it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        try:
            fcntl.lockf(handle, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, offset)
        except OSError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.lockf(handle, fcntl.LOCK_UN, 1, offset)
