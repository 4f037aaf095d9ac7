"""Intake: the only stage that touches the inbox. It walks it, leaves it exactly as it is, and copies
each new file's bytes into the ledger's archive.

Staff save e-mail attachments into dated subfolders; owner and lock files, hidden files and files still
being copied are passed over and picked up by a later run.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from pipeline.io.ledger import Ledger

TEMPORARY_SUFFIXES = (".tmp", ".part", ".crdownload", ".download", ".partial")
SYSTEM_FILES = {".gitkeep", ".ds_store", "thumbs.db", "desktop.ini"}  # not sent by anyone: not even reported
BATCH_BYTES = 64 << 20  # files kept in one transaction: memory stays bounded whatever the inbox holds
SETTLE_SECONDS = 2.0  # a file modified this recently is looked at twice, to see whether it is still growing


_Arriving = tuple[Path, str, str, os.stat_result, dt.datetime]  # path, ledger key, shown name, stat, received


@dataclass(frozen=True)
class Skipped:
    path: str  # as people read it (see `readable`)
    reason: str


@dataclass
class Intake:
    new: list[str] = field(default_factory=list)  # sha256 of new submissions
    seen: int = 0  # files looked at
    unchanged: int = 0  # files already in the ledger, same size and time: not even read
    skipped: list[Skipped] = field(default_factory=list)


def readable(rel: str) -> str:
    """An inbox path as its sender reads it, for the ledger's file name and every message.

    os.walk gives bytes that are not UTF-8 as surrogate escapes, which can be neither printed nor stored.
    Such names nearly always come from Chinese Windows (unzip tools, mail clients) in GBK, so each part of
    the path is decoded on its own: UTF-8 if it is, else GB18030, else GB18030 with replacement marks.
    The file itself keeps its name and is read by its real path.
    """
    try:
        rel.encode("utf-8")
        return rel
    except UnicodeEncodeError:
        pass
    parts = []
    for raw in os.fsencode(rel).split(b"/"):
        try:
            parts.append(raw.decode("utf-8"))
        except UnicodeDecodeError:
            parts.append(raw.decode("gb18030", "replace"))
    return "/".join(parts)


def _skip_reason(rel: str) -> str | None:
    parts = rel.split("/")
    name = parts[-1]
    if name.startswith("~$") or name.startswith(".~lock."):
        return "办公软件的临时锁定文件"
    if any(part.startswith(".") for part in parts):
        return "隐藏文件"
    if name.lower().endswith(TEMPORARY_SUFFIXES):
        return "未下载完的临时文件"
    return None


def candidates(inbox: Path) -> Iterator[tuple[str, str, str | None]]:
    """Every file under the inbox in a stable order: its path, its path in the inbox with "/" (the ledger's
    key: the real name, whatever its bytes) and the reason it is passed over (or None). Plain strings: a
    national inbox has 6,000 files, and a rerun that finds nothing new is mostly this walk."""
    top = os.fspath(inbox)
    for root, dirs, files in os.walk(top):
        dirs.sort()
        folder = os.path.relpath(root, top).replace(os.sep, "/")
        prefix = "" if folder == "." else folder + "/"
        for name in sorted(files):
            if name.lower() in SYSTEM_FILES:
                continue
            rel = prefix + name
            yield os.path.join(root, name), rel, _skip_reason(rel)


def take_in(
    ledger: Ledger,
    inbox: Path,
    as_of: dt.datetime,
    max_bytes: int,
    settle: float = SETTLE_SECONDS,
    progress: Callable[[str], None] | None = None,
    arriving_files: Callable[[], None] | None = None,
    read_files: Callable[[list[tuple[str, bytes, str]]], None] | None = None,
) -> Intake:
    """Take in what is new in the inbox. `arriving_files()` is called once there are files to take in;
    `read_files((sha256, bytes, name) of a batch)` as soon as they are read, before they are kept, so that
    the caller may start checking them meanwhile."""
    result = Intake()
    tz = as_of.tzinfo
    known = ledger.known_files()
    arriving: list[_Arriving] = []
    for path, rel, reason in candidates(inbox):
        shown = readable(rel)
        if reason:
            result.skipped.append(Skipped(shown, reason))
            continue
        try:
            st = os.stat(path)
        except OSError:
            continue  # removed while we walked: nothing to keep
        received = dt.datetime.fromtimestamp(st.st_mtime, tz)
        if received > as_of:
            result.skipped.append(Skipped(shown, f"文件时间 {received:%Y-%m-%d %H:%M} 晚于本次运行的时点"))
            continue
        result.seen += 1
        if known.get(rel) == (st.st_size, st.st_mtime_ns):
            result.unchanged += 1
            continue
        arriving.append((Path(path), rel, shown, st, received))
    still = _still_growing([(item[0], item[3]) for item in arriving], settle)
    for item in arriving:
        if item[0] in still:
            result.skipped.append(Skipped(item[2], "文件正在写入,下次运行时再处理"))
    arriving = [a for a in arriving if a[0] not in still]
    if arriving and arriving_files:
        arriving_files()  # there will be files to check: the caller may get ready while they are copied

    def read(items: list[_Arriving]) -> list[tuple[bytes | None, str]]:
        return [_read(item[0], item[3].st_size, max_bytes) for item in items]

    kept: list[tuple[str, int, int, str, str, dt.datetime]] = []
    # Reading and hashing let go of the interpreter: two threads share them, a few hundred files a task
    # (a task per file cost more in handing it over than in the reading). The bytes of a batch are kept in
    # one transaction, durably, before any file is recorded: a crash in between leaves bytes that the next
    # run finds and records.
    with ThreadPoolExecutor(max_workers=2) as pool:
        for batch in _batches(arriving):
            got = [g for part in pool.map(read, [batch[i : i + 256] for i in range(0, len(batch), 256)])
                   for g in part]
            if read_files:
                read_files([(digest, data, PurePosixPath(item[2]).name)
                            for item, (data, digest) in zip(batch, got, strict=True) if data is not None])
            ledger.keep_many([(digest, data) for data, digest in got if data is not None])  # not those over the limit
            for (_, rel, shown, st, received), (_, digest) in zip(batch, got, strict=True):
                if progress:
                    progress(shown)
                kept.append((rel, st.st_size, st.st_mtime_ns, digest, PurePosixPath(shown).name, received))
    if kept:
        result.new = ledger.record_files(kept, as_of)
    return result


def _still_growing(files: list[tuple[Path, os.stat_result]], settle: float) -> set[Path]:
    """The files being written while we look: those modified in the last `settle` seconds are looked at
    again after one pause (together, not one pause per file), and kept back if they changed."""
    recent = [(path, st) for path, st in files if time.time() - st.st_mtime <= settle]
    if not recent:
        return set()
    time.sleep(min(settle, 1.0))
    growing = set()
    for path, st in recent:
        try:
            again = path.stat()
        except OSError:
            growing.add(path)
            continue
        if (again.st_size, again.st_mtime_ns) != (st.st_size, st.st_mtime_ns):
            growing.add(path)
    return growing


def _batches(items: list[_Arriving]) -> Iterator[list[_Arriving]]:
    """The arriving files in batches of about BATCH_BYTES: what is held in memory at once stays bounded."""
    batch: list[_Arriving] = []
    size = 0
    for item in items:
        if batch and size + item[3].st_size > BATCH_BYTES:
            yield batch
            batch, size = [], 0
        batch.append(item)
        size += item[3].st_size
    if batch:
        yield batch


def _read(path: Path, size: int, max_bytes: int) -> tuple[bytes | None, str]:
    """The file's bytes and sha256; a file over the size limit is hashed in chunks and not kept (None)."""
    if size <= max_bytes:
        data = path.read_bytes()
        return data, hashlib.sha256(data).hexdigest()
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return None, digest.hexdigest()
