"""Intake: the only stage that touches the inbox. It walks it, leaves it exactly as it is, and keeps each
new file's bytes in the ledger's archive.

Only regular files inside the inbox get in. Each is opened without following a link and without waiting
on a pipe, checked to be a regular file on the open handle, and read up to the size limit and no further.
Everything else the walk meets (a link, a pipe, a socket, a device, an unreadable file or folder, a file
that vanished, a path too long) is listed as skipped with its reason, and the run goes on.

A file is looked at again when its size, modification time, change time or inode differ from what the
ledger recorded: no copying tool can set the change time back, so a replacement with the same size and
time is still seen.
"""

from __future__ import annotations

import datetime as dt
import errno
import hashlib
import os
import stat
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from pipeline.io.ledger import Ledger, Signature

TEMPORARY_SUFFIXES = (".tmp", ".part", ".crdownload", ".download", ".partial")
SYSTEM_FILES = {".gitkeep", ".ds_store", "thumbs.db", "desktop.ini"}  # not sent by anyone: not even reported
BATCH_BYTES = 64 << 20  # files kept in one transaction: memory stays bounded whatever the inbox holds
SETTLE_SECONDS = 2.0  # a file modified this recently is looked at twice, to see whether it is still growing
CHUNK = 1 << 20


@dataclass(frozen=True)
class Skipped:
    path: str  # as people read it (see `readable`)
    reason: str


@dataclass
class Intake:
    new: list[str] = field(default_factory=list)  # ids of new submissions
    seen: int = 0  # files looked at
    unchanged: int = 0  # files already in the ledger, unchanged: not even read
    skipped: list[Skipped] = field(default_factory=list)


@dataclass(frozen=True)
class _Arriving:
    path: str  # on disk
    rel: str  # in the inbox, with "/": the ledger's key, the real name whatever its bytes
    shown: str  # as its sender reads it
    signature: Signature
    received: dt.datetime


@dataclass(frozen=True)
class _Read:
    data: bytes | None  # None when over the size limit: not kept
    sha256: str
    signature: Signature


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


def _os_reason(exc: OSError) -> str:
    """Why a path could not be looked at or read, in words staff can act on."""
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "没有读取权限,请检查文件或文件夹的权限"
    if exc.errno == errno.ENOENT:
        return "文件在读取时被移走或删除"
    if exc.errno == errno.ENAMETOOLONG:
        return "路径过长,无法读取;请缩短文件夹或文件名"
    if exc.errno == errno.ELOOP:
        return "是一个链接,不予读取"
    return f"无法读取({os.strerror(exc.errno) if exc.errno else exc})"


def _link_reason(top: str, path: str) -> str:
    target = os.path.realpath(path)
    if not os.path.exists(target):
        return "是一个链接,指向的文件不存在"
    if os.path.commonpath([os.path.realpath(top), target]) != os.path.realpath(top):
        return "是一个链接,指向收件箱以外的文件,不予读取"
    return "是一个链接,指向收件箱内的文件,以原文件为准"


def _kind_reason(mode: int) -> str | None:
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISFIFO(mode):
        return "是一个管道(FIFO),不是普通文件,不予读取"
    if stat.S_ISSOCK(mode):
        return "是一个套接字,不是普通文件,不予读取"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "是一个设备,不是普通文件,不予读取"
    return "不是普通文件,不予读取"


def candidates(inbox: os.PathLike[str] | str) -> Iterator[tuple[str, str, os.stat_result | None, str | None]]:
    """Every entry under the inbox in a stable order: its path, its path in the inbox with "/", its lstat
    (None when it could not be had) and the reason it is passed over (None for a regular file to take).
    Plain strings: a national inbox has 6,000 files, and a rerun that finds nothing new is mostly this walk."""
    top = os.fspath(inbox)
    unreadable: list[OSError] = []
    for root, dirs, files in os.walk(top, onerror=unreadable.append):
        folder = os.path.relpath(root, top).replace(os.sep, "/")
        prefix = "" if folder == "." else folder + "/"
        while unreadable:
            exc = unreadable.pop()
            rel = os.path.relpath(str(exc.filename), top).replace(os.sep, "/") if exc.filename else folder
            yield str(exc.filename), rel + "/", None, "文件夹" + _os_reason(exc)
        dirs.sort()
        for name in [d for d in dirs if os.path.islink(os.path.join(root, d))]:
            dirs.remove(name)  # os.walk does not follow them either: said, not silently passed over
            yield (
                os.path.join(root, name),
                prefix + name + "/",
                None,
                _link_reason(top, os.path.join(root, name)),
            )
        for name in sorted(files):
            if name.lower() in SYSTEM_FILES:
                continue
            path, rel = os.path.join(root, name), prefix + name
            try:
                st = os.lstat(path)
            except OSError as exc:
                yield path, rel, None, _os_reason(exc)
                continue
            if stat.S_ISLNK(st.st_mode):
                yield path, rel, st, _link_reason(top, path)
            else:
                yield path, rel, st, _kind_reason(st.st_mode) or _skip_reason(rel)
    while unreadable:  # the inbox itself
        yield top, "", None, "收件箱" + _os_reason(unreadable.pop())


def _signature(st: os.stat_result) -> Signature:
    return st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino


def take_in(
    ledger: Ledger,
    inbox: os.PathLike[str] | str,
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
    arriving = _arriving(ledger, inbox, as_of, result, settle)
    if arriving and arriving_files:
        arriving_files()  # there will be files to check: the caller may get ready while they are copied
    kept: list[tuple[str, Signature, str, str, dt.datetime]] = []
    # Reading and hashing let go of the interpreter: two threads share them, a few hundred files a task
    # (a task per file cost more in handing it over than in the reading). The bytes of a batch are kept in
    # one transaction, durably, before any file is recorded: a crash in between leaves bytes that the next
    # run finds and records.
    with ThreadPoolExecutor(max_workers=2) as pool:
        for batch in _batches(arriving):
            got = [
                g
                for part in pool.map(
                    lambda items: [_read(a.path, max_bytes) for a in items],
                    [batch[i : i + 256] for i in range(0, len(batch), 256)],
                )
                for g in part
            ]
            taken = []
            for item, read in zip(batch, got, strict=True):
                if isinstance(read, str):
                    result.skipped.append(Skipped(item.shown, read))
                else:
                    taken.append((item, read))
            if read_files:
                read_files(
                    [(r.sha256, r.data, PurePosixPath(a.shown).name) for a, r in taken if r.data is not None]
                )
            ledger.keep_many(
                [(r.sha256, r.data) for _, r in taken if r.data is not None]
            )  # not those over the limit
            for item, read in taken:
                if progress:
                    progress(item.shown)
                kept.append(
                    (item.rel, read.signature, read.sha256, PurePosixPath(item.shown).name, item.received)
                )
    if kept:
        result.new = ledger.record_files(kept, as_of)
    ledger.set_skipped([(s.path, s.reason) for s in result.skipped], as_of)
    return result


def _arriving(
    ledger: Ledger, inbox: os.PathLike[str] | str, as_of: dt.datetime, result: Intake, settle: float
) -> list[_Arriving]:
    """The regular files that are new or changed since the ledger last saw them; the others counted or
    listed as skipped in `result`."""
    tz = as_of.tzinfo
    known = ledger.known_files()
    arriving: list[_Arriving] = []
    for path, rel, st, reason in candidates(inbox):
        shown = readable(rel)
        if reason or st is None:
            result.skipped.append(Skipped(shown, reason or "无法读取"))
            continue
        received = dt.datetime.fromtimestamp(st.st_mtime, tz)
        if received > as_of:
            result.skipped.append(Skipped(shown, f"文件时间 {received:%Y-%m-%d %H:%M} 晚于本次运行的时点"))
            continue
        result.seen += 1
        signature = _signature(st)
        if known.get(rel) == signature:
            result.unchanged += 1
            continue
        arriving.append(_Arriving(path, rel, shown, signature, received))
    still = _still_growing(arriving, settle)
    for item in arriving:
        if item.path in still:
            result.skipped.append(Skipped(item.shown, "文件正在写入,下次运行时再处理"))
    return [a for a in arriving if a.path not in still]


def _still_growing(files: list[_Arriving], settle: float) -> set[str]:
    """The files being written while we look: those modified in the last `settle` seconds are looked at
    again after one pause (together, not one pause per file), and kept back if they changed."""
    recent = [a for a in files if time.time() - a.signature[1] / 1e9 <= settle]
    if not recent:
        return set()
    time.sleep(min(settle, 1.0))
    growing = set()
    for a in recent:
        try:
            again = os.lstat(a.path)
        except OSError:
            growing.add(a.path)
            continue
        if (again.st_size, again.st_mtime_ns) != a.signature[:2]:
            growing.add(a.path)
    return growing


def _batches(items: list[_Arriving]) -> Iterator[list[_Arriving]]:
    """The arriving files in batches of about BATCH_BYTES: what is held in memory at once stays bounded."""
    batch: list[_Arriving] = []
    size = 0
    for item in items:
        if batch and size + item.signature[0] > BATCH_BYTES:
            yield batch
            batch, size = [], 0
        batch.append(item)
        size += item.signature[0]
    if batch:
        yield batch


def _read(path: str, max_bytes: int) -> _Read | str:
    """A regular file's bytes (None over the size limit) and sha256, or why it is skipped.

    Opened without following a link and without blocking on a pipe; the open handle must be a regular
    file; at most `max_bytes` + 1 bytes are read, so a device or a file still growing cannot hold the run.
    A file over the limit is known by the digest of what was read and its size.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        return _os_reason(exc)
    try:
        st = os.fstat(fd)
        reason = _kind_reason(st.st_mode)
        if reason:
            return reason
        chunks, left = [], max_bytes + 1
        while left > 0:
            chunk = os.read(fd, min(left, CHUNK))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
    except OSError as exc:
        return _os_reason(exc)
    finally:
        os.close(fd)
    data = b"".join(chunks)
    digest = hashlib.sha256(data).hexdigest()
    signature = _signature(st)
    if len(data) > max_bytes:
        return _Read(None, hashlib.sha256(f"{digest}:{st.st_size}".encode()).hexdigest(), signature)
    return _Read(data, digest, signature)
