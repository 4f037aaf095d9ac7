"""Atomic writes: a file in the outbox is either the old one or the complete new one, never half.

Write to a temporary file beside the target, fsync it, rename it over the target, fsync the folder.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO


@contextlib.contextmanager
def open_for_write(path: Path, durable: bool = True) -> Iterator[IO[bytes]]:
    """A file that appears whole under `path` or not at all; `durable=False` leaves the fsyncs to a later
    `sync(path)`, for many small files written in a row (each fsync is a disk round trip)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name[:40]}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            if durable:
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    if durable:
        _fsync_dir(path.parent)


def write_bytes(path: Path, data: bytes, durable: bool = True) -> None:
    with open_for_write(path, durable) as handle:
        handle.write(data)


def sync(path: Path) -> None:
    """Make every write so far on `path`'s file system durable: one syncfs(2) instead of an fsync per file."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fd = os.open(path, os.O_RDONLY)
    except (OSError, AttributeError):
        os.sync()
        return
    try:
        if libc.syncfs(fd) != 0:
            os.sync()
    except AttributeError:  # no syncfs in this C library
        os.sync()
    finally:
        os.close(fd)


def write_text(path: Path, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
