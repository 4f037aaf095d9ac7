"""Untrusted work in limited child processes: a pebble process pool whose workers start with an
address-space limit, and whose every task runs under a CPU limit and a wall-clock kill.

A file built to exhaust resources (a zip bomb, a forged sheet dimension, entity expansion) can make a
reader allocate gigabytes or spin for minutes; in a worker it costs that one file a verdict instead of
the batch. This module knows nothing of what the tasks do: the caller hands it picklable functions (a
`setup` run once in each worker, a function per item) and says what an item gets when its worker gives
up on it (`fallback`).

Items travel in chunks, which keeps the cost of handing work to a child far below the work itself. A
chunk that fails (its worker killed for time, memory or a crash) is tried again item by item, each with
the full time limit, so that only the item to blame gets the fallback.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import logging
import math
import multiprocessing
import os
import resource
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import pebble

log = logging.getLogger(__name__)
T = TypeVar("T")
R = TypeVar("R")

WORKERS = 2
CHUNK = 32  # items per task: a few tens of milliseconds of work for ordinary forms


@dataclass(frozen=True)
class GaveUp:
    """What a worker gives back for an item it could not finish within the limits."""

    reason: str  # "memory" / "time" / "crash"


def _start(memory_mb: int, setup: Callable[..., None], args: tuple[Any, ...]) -> None:
    """A worker's first act: its address-space limit, then the caller's setup (loading the rules)."""
    limit = memory_mb * 2**20
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard == resource.RLIM_INFINITY or hard > limit:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    setup(*args)


def _run_chunk(
    function: Callable[[Any], Any], items: Sequence[Any], seconds: float, niceness: int
) -> list[Any]:
    """In the worker: each item through `function`, under a CPU limit of `seconds` per item. A MemoryError
    is the item's own: it gets GaveUp("memory") and the others go on. `niceness` > 0 lets the worker give
    way to other processes (it only ever lowers the priority, which needs no privilege)."""
    if niceness > 0:
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, 0, max(niceness, os.getpriority(os.PRIO_PROCESS, 0)))
    used = resource.getrusage(resource.RUSAGE_SELF)
    cpu = math.ceil(used.ru_utime + used.ru_stime + seconds * len(items)) + 1
    _, cpu_hard = resource.getrlimit(resource.RLIMIT_CPU)
    if cpu_hard == resource.RLIM_INFINITY or cpu < cpu_hard:
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu_hard))
    out: list[Any] = []
    for item in items:
        try:
            out.append(function(item))
        except MemoryError:
            out.append(GaveUp("memory"))
    return out


class Pool:
    """Limited worker processes, started on first use (or by `start`, to load while the caller is busy)
    and kept until `close`: a run reads, then annotates, and its workers load the rules once."""

    def __init__(
        self,
        setup: Callable[..., None],
        setup_args: tuple[Any, ...] = (),
        *,
        memory_mb: int,
        seconds: float,
        workers: int = WORKERS,
    ):
        self.setup, self.setup_args = setup, setup_args
        self.memory_mb, self.seconds, self.workers = memory_mb, seconds, workers
        self._pool: pebble.ProcessPool | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        with self._lock:
            if self._pool is None:
                self._pool = pebble.ProcessPool(
                    max_workers=self.workers,
                    initializer=_start,
                    initargs=(self.memory_mb, self.setup, self.setup_args),
                    # A fresh interpreter: a forked one would carry the parent's memory and threads.
                    context=multiprocessing.get_context("spawn"),
                )

    def warm(self, function: Callable[[], Any]) -> None:
        """Have each worker run `function` (loading what a later task needs) while the caller does
        something else; its outcome does not matter."""
        self.start()
        assert self._pool is not None
        for _ in range(self.workers):
            self._pool.schedule(function, timeout=self.seconds)

    def begin(
        self,
        function: Callable[[T], R],
        items: Sequence[T],
        fallback: Callable[[T, GaveUp], R],
        each: Callable[[int, R], Any] | None = None,
        chunk: int = CHUNK,
        niceness: int = 0,
    ) -> Pending[T, R]:
        """Start `function` over `items` and return at once; `Pending.results()` waits for them."""
        self.start()
        return Pending(self, function, list(items), fallback, each, chunk, niceness)

    def map(
        self,
        function: Callable[[T], R],
        items: Sequence[T],
        fallback: Callable[[T, GaveUp], R],
        each: Callable[[int, R], Any] | None = None,
        chunk: int = CHUNK,
        niceness: int = 0,
    ) -> list[R]:
        """`function` over `items` in the workers, results in the order of `items`; `each(i, result)` is
        called as each result comes back (in this thread, while the workers go on)."""
        return self.begin(function, items, fallback, each, chunk, niceness).results()

    def _schedule(
        self, function: Callable[[Any], Any], items: Sequence[Any], niceness: int = 0
    ) -> concurrent.futures.Future[Any]:
        """A chunk to a worker. Its time limit is one item's: ordinary items take milliseconds, so a chunk
        that needs longer holds one that does not belong, and is then tried item by item."""
        assert self._pool is not None
        return self._pool.schedule(
            _run_chunk, args=(function, items, self.seconds, niceness), timeout=self.seconds
        )

    def close(self) -> None:
        """End the workers: they finish what they hold, and are killed if that takes long."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()
            pool.join(timeout=5)
            if pool.active:
                pool.stop()
                pool.join()


class Pending(Generic[T, R]):
    """Work handed to the pool and not yet collected."""

    def __init__(
        self,
        pool: Pool,
        function: Callable[[T], R],
        items: list[T],
        fallback: Callable[[T, GaveUp], R],
        each: Callable[[int, R], Any] | None,
        chunk: int,
        niceness: int,
    ):
        self.pool, self.function, self.items, self.fallback, self.each = pool, function, items, fallback, each
        self.niceness = niceness
        self.chunks = [range(i, min(i + chunk, len(items))) for i in range(0, len(items), chunk)]
        self.futures = [pool._schedule(function, [items[i] for i in part], niceness) for part in self.chunks]

    def results(self) -> list[R]:
        out: list[Any] = [None] * len(self.items)
        where = {id(future): part for future, part in zip(self.futures, self.chunks, strict=True)}
        for future in concurrent.futures.as_completed(self.futures):
            part = where[id(future)]
            for i, got in zip(part, self._chunk(future, part), strict=True):
                out[i] = self.fallback(self.items[i], got) if isinstance(got, GaveUp) else got
                if self.each is not None:
                    self.each(i, out[i])
        return out

    def _chunk(self, future: concurrent.futures.Future[Any], part: range) -> Iterator[Any]:
        """A chunk's results; when its worker gave up on it, each item again alone."""
        try:
            yield from future.result()
            return
        except Exception as exc:  # killed for time, memory or a crash, or the function failed
            log.info("a chunk of %d items failed (%r); trying each alone", len(part), exc)
            if len(part) == 1:
                yield _gave_up(exc)  # alone already: it is the one to blame
                return
        retries = [self.pool._schedule(self.function, [self.items[i]], self.niceness) for i in part]
        for retry in retries:
            try:
                (got,) = retry.result()
            except Exception as exc:
                log.info("an item failed alone: %r", exc)
                got = _gave_up(exc)
            yield got


def _gave_up(exc: BaseException) -> GaveUp:
    if isinstance(exc, TimeoutError | concurrent.futures.TimeoutError):
        return GaveUp("time")
    if isinstance(exc, MemoryError):
        return GaveUp("memory")
    return GaveUp("crash")
