"""Files several processes share: advisory locks on run folders, caches and index files (POSIX ``flock``: the
kernel drops the lock of a process that dies, so a killed run never leaves a stale lock), and atomic writes
(a reader, or a run killed while writing, sees the old file or the new one, never half of one)."""

from __future__ import annotations

import fcntl
import json
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


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


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A fresh temporary path beside ``path`` (same folder, so same file system) for the ``with`` block to write;
    on a clean exit it replaces ``path`` in one step, on an error it is removed. Its name ends in ``.part``, so a
    glob for ``path``'s kind of file never sees a half-written one; folders are created."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.name}.{secrets.token_hex(4)}.part")  # unique: concurrent writers never mix
    try:
        yield partial
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    with atomic_path(path) as partial:
        partial.write_bytes(data)
    return Path(path)


def atomic_write_text(path: str | Path, text: str) -> Path:
    with atomic_path(path) as partial:
        partial.write_text(text)
    return Path(path)


def atomic_write_json(path: str | Path, value: Any, **dumps: Any) -> Path:
    """``json.dumps(value, **dumps)`` and a newline, written atomically."""
    return atomic_write_text(path, json.dumps(value, **dumps) + "\n")


def atomic_save(obj: Any, path: str | Path) -> Path:
    """``torch.save(obj, path)``, written atomically."""
    import torch  # here, not at the top: the lock helpers serve commands that never load torch

    with atomic_path(path) as partial:
        torch.save(obj, partial)
    return Path(path)
