"""Read untrusted files in a child process with memory and time limits.

A file built to exhaust resources (a zip bomb, a forged sheet dimension, entity expansion) can make a
reader allocate gigabytes or spin for minutes; in a child with RLIMIT_AS / RLIMIT_CPU and a wall-clock
kill it costs one F-too-large finding instead of the batch.

The worker is `python -m pipeline.sandbox RULES_PATH MEMORY_MB SECONDS`: it loads the rules once, then
answers length-prefixed pickles on stdin/stdout: `("read", (data, name))` -> `("ok", Read)`,
`("annotate", (data, name, findings, unit name, title))` -> `("ok", xlsx bytes)`, or `("memory", None)`.
A worker that dies or hangs is killed and replaced; the other files' results are kept.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import gc
import math
import os
import pickle
import queue
import select
import struct
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any

from pipeline import checks
from pipeline.campaign.config import Limits, Rules
from pipeline.model import F_TOO_LARGE, Checked, Finding, Read, Severity
from pipeline.submission import read

WORKERS = 2
# Callers pass rules.limits (rules.yaml `limits:`); these defaults are config.Limits' own.
MEMORY_MB = Limits().worker_memory_mb
SECONDS = Limits().worker_seconds
STARTUP_SECONDS = 10
AHEAD_BYTES = 48 * 1024  # below a pipe's 64 KiB buffer
_HEADER = struct.Struct("<Q")


def limit_message(memory_mb: int, seconds: float) -> str:
    return (
        f"读取时超出内存或时间限制({memory_mb} MB / {seconds:g} 秒),文件可能被构造来耗尽资源,未予处理;"
        "请在 Excel 或 WPS 中打开确认无误、重新保存后报送"
    )


def _exhausted(name: str, memory_mb: int, seconds: float) -> Read:
    return Read(
        file=name, form=None, unit=None, cells={},
        findings=[Finding(F_TOO_LARGE, Severity.ERROR, limit_message(memory_mb, seconds))], readable=False,
    )


def read_isolated(data: bytes, name: str, rules_path: Path, *, memory_mb: int = MEMORY_MB,
                  seconds: float = SECONDS) -> Read:
    """`read.read_submission` in a limited child process; a child that dies or hangs gives F-too-large."""
    return read_many([(data, name)], rules_path, memory_mb=memory_mb, seconds=seconds, workers=1)[0]


def read_many(items: list[tuple[bytes, str]], rules_path: Path, *, memory_mb: int = MEMORY_MB, seconds: float = SECONDS,
              workers: int = WORKERS, progress: Callable[[int, int], None] | None = None) -> list[Read]:
    """Read many files with `workers` long-lived limited children; results in the order of `items`."""
    got = _many("read", items, rules_path, memory_mb, seconds, workers, progress)
    return [r if isinstance(r, Read) else _exhausted(items[i][1], memory_mb, seconds)
            for i, r in enumerate(got)]


def check_many(items: list[tuple[bytes, str]], rules_path: Path, today: dt.date, *, memory_mb: int = MEMORY_MB,
               seconds: float = SECONDS, workers: int = WORKERS,
               progress: Callable[[int, int], None] | None = None) -> list[Checked]:
    """Read and normalise many files (`checks.prepare`) in the children: all the per-file work on both
    cores, leaving the main process only the schema run across files."""
    got = _many("check", [(data, name, today) for data, name in items], rules_path, memory_mb, seconds, workers,
                progress)
    out = []
    for (_, name), r in zip(items, got, strict=True):
        if not isinstance(r, Checked):
            sub = _exhausted(name, memory_mb, seconds)
            r = Checked(sub, findings=list(sub.findings))
        out.append(r)
    return out


def annotate_many(items: Sequence[tuple[Any, ...]], rules_path: Path, *,
                  memory_mb: int = MEMORY_MB, seconds: float = SECONDS, workers: int = WORKERS,
                  progress: Callable[[int, int], None] | None = None,
                  each: Callable[[int, Any], Any] | None = None) -> list[Any]:
    """`annotate.annotated_workbook` of (data, file name, findings, unit name, title[, letter]) in the same
    kind of children: openpyxl parses the unit's whole workbook, as untrusted as when it was read. Each answer
    is the workbook, or with a letter (`mail.feedback_message`'s arguments but the attachment, whose name is
    `attachment_name`) the workbook, the e-mail's bytes and its subject; None where a child died or hung, and
    the caller then lists the findings without the workbook. `each(i, answer)`, if given, is called as each
    answer comes back, while the children go on, and its result is kept instead."""
    def answer(i: int, r: Any) -> Any:
        got = r if isinstance(r, bytes | tuple) else None
        return each(i, got) if each else got

    return _many("annotate", items, rules_path, memory_mb, seconds, workers, progress, answer)


def _many(task: str, items: Sequence[tuple[Any, ...]], rules_path: Path, memory_mb: int, seconds: float,
          workers: int, progress: Callable[[int, int], None] | None,
          answer: Callable[[int, Any], Any] | None = None) -> list[Any]:
    """`task` over `items` with `workers` long-lived limited children; None where a child gave up.
    `answer(i, result)` is applied to each result as it comes back."""
    results: list[Any] = [None] * len(items)
    failed: list[BaseException] = []
    if not items:
        return []
    todo: queue.SimpleQueue[int] = queue.SimpleQueue()
    for i in range(len(items)):
        todo.put(i)
    done = [0]
    lock = threading.Lock()

    def slot(k: int) -> None:
        # Up to two requests are with a child at a time, so that it starts the next file as soon as it
        # answers; only a small request is sent ahead (see AHEAD_BYTES).
        worker = _idle(k, rules_path, memory_mb, seconds)
        if worker is not None and worker.warming is not None:  # its answer to warm_kept, first
            if not worker.receive(worker.warming)[0]:
                worker.close(kill=True)
                worker = None
            else:
                worker.warming = None
        waiting: deque[tuple[int, float]] = deque()  # (item, when sent) to `worker`, answers not read yet
        again: deque[int] = deque()  # sent to a child that died before answering them: to send again

        def take() -> int | None:
            if again:
                return again.popleft()
            try:
                return todo.get_nowait()
            except queue.Empty:
                return None

        try:
            while True:
                if not waiting:
                    i = take()
                    if i is None:
                        return
                    if worker is None:
                        worker = _Worker(rules_path, memory_mb, seconds)
                    waiting.append((i, worker.send(task, items[i])))
                assert worker is not None  # a request is with it
                if len(waiting) == 1 and (j := take()) is not None:
                    if worker.ahead(task, items[j]):
                        waiting.append((j, worker.send(task, items[j])))
                    else:
                        again.appendleft(j)
                i, sent = waiting.popleft()
                ok, result = worker.receive(sent)
                if not ok:  # died, hung or ran out of memory: never reuse that child
                    worker.close(kill=True)
                    worker = None
                    again.extendleft(j for j, _ in reversed(waiting))
                    waiting.clear()
                results[i] = answer(i, result) if answer else result
                if progress:
                    with lock:
                        done[0] += 1
                        progress(done[0], len(items))
        except BaseException as exc:  # from `answer` or `progress`: told to the caller, not lost with the thread
            failed.append(exc)
        finally:
            if worker is not None and not _keep_idle(k, worker, rules_path, memory_mb, seconds):
                worker.close()

    threads = [threading.Thread(target=slot, args=(k,), daemon=True)
               for k in range(max(1, min(workers, len(items))))]
    # The answers are thousands of small acyclic objects: the cyclic garbage collector's repeated full
    # passes over them made the parent the bottleneck (6,000 forms: 8.2 s with it, 6.8 s without).
    collecting = gc.isenabled()
    gc.disable()
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        if collecting:
            gc.enable()
    if failed:
        raise failed[0]
    return results


# --- children kept for the whole run -----------------------------------------------------------------------

_POOL: dict[int, _Worker] = {}  # slot -> an idle child, while `kept` is open
_POOL_KEY: list[tuple[str, int, float]] = []  # what those children were started with


@contextlib.contextmanager
def kept(rules_path: Path, *, memory_mb: int = MEMORY_MB, seconds: float = SECONDS) -> Iterator[None]:
    """Keep the children between calls until the block ends: a run reads, then annotates, and its
    children load the rules and their imports once. `start_kept` starts them ahead of the first call."""
    _POOL_KEY[:] = [(str(Path(rules_path).resolve()), memory_mb, seconds)]
    try:
        yield
    finally:
        _POOL_KEY.clear()
        idle = list(_POOL.values())
        _POOL.clear()
        for worker in idle:  # all told first, so that they end together
            worker.finish()
        for worker in idle:
            worker.close()


def start_kept() -> None:
    """Start the kept children now, so that they load while the parent is still busy (taking files in)."""
    if _POOL_KEY:
        path, memory_mb, seconds = _POOL_KEY[0]
        for k in range(WORKERS):
            if k not in _POOL:
                _POOL[k] = _Worker(Path(path), memory_mb, seconds)


def warm_kept(task: str) -> None:
    """Have the idle kept children load what `task` needs while the parent does something else (between
    reading and annotating, it validates and stores verdicts alone); the next call that uses them first
    collects their answer."""
    for worker in _POOL.values():
        if worker.warming is None:
            worker.warming = worker.send("warm", (task,))


def kept_give_way(niceness: int = 10) -> None:
    """Let the kept children run after other work when the processor is short: their last task of the run
    (annotating) is not what the run waits for. Only ever lowers their priority, which needs no privilege."""
    for worker in _POOL.values():
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, worker.proc.pid, niceness)


def _pooled(rules_path: Path, memory_mb: int, seconds: float) -> bool:
    """Whether the kept children were started for these rules and limits."""
    return bool(_POOL_KEY) and _POOL_KEY[0] == (str(Path(rules_path).resolve()), memory_mb, seconds)


def _idle(k: int, rules_path: Path, memory_mb: int, seconds: float) -> _Worker | None:
    return _POOL.pop(k, None) if _pooled(rules_path, memory_mb, seconds) else None


def _keep_idle(k: int, worker: _Worker, rules_path: Path, memory_mb: int, seconds: float) -> bool:
    if _pooled(rules_path, memory_mb, seconds) and worker.proc.poll() is None:
        _POOL[k] = worker
        return True
    return False


class _Worker:
    def __init__(self, rules_path: Path, memory_mb: int, seconds: float):
        self.seconds = seconds
        self.started = False
        self.free = 0.0  # when the child answered its last request
        self.warming: float | None = None  # when a `warm_kept` request was sent, until its answer is read
        self._blob: bytes | None = None  # a request pickled by `ahead`, for `send`
        self._blob_of: tuple[Any, ...] | None = None
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pipeline.io.sandbox", str(Path(rules_path).resolve()), str(memory_mb), str(seconds)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        )

    def ahead(self, task: str, args: tuple[Any, ...]) -> bool:
        """Whether this request may be sent while the child works on another: only when it fits the pipe's
        buffer, so that neither side can block writing to the other."""
        self._blob = pickle.dumps((task, args), protocol=pickle.HIGHEST_PROTOCOL)
        self._blob_of = args
        return len(self._blob) + _HEADER.size <= AHEAD_BYTES

    def send(self, task: str, args: tuple[Any, ...]) -> float:
        """Send a request; returns when it was sent. A child that has died is found out by `receive`."""
        assert self.proc.stdin is not None
        blob = self._blob
        if blob is None or self._blob_of is not args:
            blob = pickle.dumps((task, args), protocol=pickle.HIGHEST_PROTOCOL)
        self._blob = self._blob_of = None
        with contextlib.suppress(OSError):
            self.proc.stdin.write(_HEADER.pack(len(blob)) + blob)
            self.proc.stdin.flush()
        return time.monotonic()

    def receive(self, sent: float) -> tuple[bool, Any]:
        """(True, result) of the oldest request, or (False, None) when the child died, hung or ran out of
        memory. The child starts a request when it was sent or when it answered the one before, whichever
        is later; it has `seconds` from then."""
        assert self.proc.stdout is not None
        # Starting the worker (imports, rules) is not held against the first file: allow for it on top.
        deadline = max(sent, self.free) + self.seconds + (0 if self.started else STARTUP_SECONDS)
        self.started = True
        try:
            status, result = _recv(self.proc.stdout.fileno(), deadline)
        except (OSError, EOFError, TimeoutError, pickle.UnpicklingError):
            return False, None
        self.free = time.monotonic()
        return (True, result) if status == "ok" else (False, None)

    def finish(self) -> None:
        """Tell the child there is no more work: it ends (`close` then waits for it)."""
        with contextlib.suppress(OSError):
            assert self.proc.stdin is not None
            self.proc.stdin.close()

    def close(self, kill: bool = False) -> None:
        if kill and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self.proc.poll() is None:
            try:
                self.finish()
                self.proc.wait(timeout=2)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()


def _send(out: IO[bytes], obj: Any) -> None:
    blob = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    out.write(_HEADER.pack(len(blob)) + blob)
    out.flush()


def _recv(fd: int, deadline: float) -> Any:
    header = _read_exactly(fd, _HEADER.size, deadline)
    (size,) = _HEADER.unpack(header)
    return pickle.loads(_read_exactly(fd, size, deadline))


def _read_exactly(fd: int, size: int, deadline: float) -> bytes:
    chunks: list[bytes] = []
    left = size
    while left:
        wait = deadline - time.monotonic()
        if wait <= 0:
            raise TimeoutError
        ready, _, _ = select.select([fd], [], [], wait)
        if not ready:
            raise TimeoutError
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            raise EOFError
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


# --- the child ----------------------------------------------------------------------------------------


def _child(rules_path: str, memory_mb: int, seconds: float) -> None:
    import resource

    rules = checks.load(rules_path)
    limit = memory_mb * 2**20
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard == resource.RLIM_INFINITY or hard > limit:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # nothing else may write into the reply channel
    while True:
        header = stdin.read(_HEADER.size)
        if len(header) < _HEADER.size:  # the parent is done: every reply was flushed as it was sent
            os._exit(0)  # without freeing, one by one, what reading thousands of forms left behind
        (size,) = _HEADER.unpack(header)
        task, args = pickle.loads(stdin.read(size))
        used = resource.getrusage(resource.RUSAGE_SELF)
        cpu = math.ceil(used.ru_utime + used.ru_stime + seconds)
        _, cpu_hard = resource.getrlimit(resource.RLIMIT_CPU)
        if cpu_hard == resource.RLIM_INFINITY or cpu < cpu_hard:
            resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu_hard))
        try:
            reply: tuple[str, Any] = ("ok", _TASKS[task](rules, *args))
        except MemoryError:
            _send(stdout, ("memory", None))
            return
        del args
        _send(stdout, reply)


def _annotate(rules: Rules, data: bytes, name: str, findings: Sequence[Finding], unit_name: str, title: str,
              letter: dict[str, Any] | None = None) -> bytes | tuple[bytes, bytes, str]:
    """The annotated copy; with a `letter` (see `annotate_many`), also the e-mail that carries it, which is
    per file too and so written here, on both cores, not by the parent."""
    from pipeline.render import annotate

    marked = annotate.annotated_workbook(data, name, findings, unit_name=unit_name, title=title, limits=rules.limits)
    if letter is None:
        return marked
    from pipeline.render import mail

    return (marked, *mail.feedback_eml(rules, letter, marked))


def _warm(rules: Rules, task: str) -> None:
    """Load what `task` needs before its first request: for annotating, openpyxl, jinja2 and the e-mail
    package with the templates compiled (0.37 s, which the first unit's copy would otherwise wait for)."""
    if task == "annotate":
        from pipeline.render import annotate, mail  # noqa: F401

        for name in mail.FEEDBACK_TEMPLATES:
            mail.environment().get_template(name)


def _check(rules: Rules, data: bytes, name: str, today: dt.date) -> Checked:
    checked = checks.prepare(read.read_submission(data, name, rules), rules, today)
    checked.read.cells = read.Packed(checked.read.cells)  # see Packed
    return checked


_TASKS: dict[str, Callable[..., Any]] = {"read": lambda rules, data, name: read.read_submission(data, name, rules),
                                         "check": _check, "annotate": _annotate, "warm": _warm}


if __name__ == "__main__":
    _child(sys.argv[1], int(sys.argv[2]), float(sys.argv[3]))
