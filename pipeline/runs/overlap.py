"""How a run keeps both cores busy: the scheduling, kept apart from what is scheduled.

* the workers start reading each batch of files as soon as intake has read it (`EarlyCheck`);
* heavy imports load in a thread while this process waits on the workers (`import_meanwhile`);
* from `WorkbookProcess.UNITS` units on, the consolidated workbook is built by a second process while
  this one writes the report (`WorkbookProcess`);
* what a stage has loaded and the next ones keep is set aside from the garbage collector (`set_aside`).

Each piece is optional: without it the same work is done in order, with the same result.
"""

from __future__ import annotations

import concurrent.futures
import gc
import importlib
import logging
import multiprocessing
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from pipeline.io.workers import Pending
from pipeline.model import Checked
from pipeline.runs import tasks
from pipeline.runs.context import Run

log = logging.getLogger(__name__)


@contextmanager
def frozen() -> Iterator[None]:
    """What is loaded by now (modules, the rules and their thousands of units) lives as long as the run:
    the cyclic garbage collector need not walk it again at each full pass over the run's own objects."""
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def set_aside() -> None:
    """What a stage has loaded and the next ones keep (thousands of read forms, the ledger's submissions)
    is set aside in the same way, so that no full collection walks those millions of objects again."""
    gc.freeze()


def import_meanwhile(module: str) -> threading.Thread:
    """Import `module` in a thread (pandas and pandera take half a second of the processor), while this
    process mostly waits for the workers; join the thread before using the module."""
    loading = threading.Thread(target=importlib.import_module, args=(module,), daemon=True)
    loading.start()
    return loading


class EarlyCheck:
    """Forms read and normalised by the workers while intake keeps them, which they would otherwise wait
    for: intake hands each batch to `check` as soon as it has read it; `results` gives them by (sha256,
    file name)."""

    def __init__(self, run: Run):
        self.run = run
        self.pending: list[tuple[list[tuple[str, str]], Pending[tasks.FileToCheck, Checked]]] = []

    def check(self, files: list[tuple[str, bytes, str]]) -> None:
        from pipeline.submission import reports

        forms = [f for f in files if not reports.is_report(self.run.rules, f[2])]
        if not forms:
            return
        today = self.run.as_of.date()
        items = [tasks.FileToCheck(data, name, today) for _, data, name in forms]
        pending = self.run.workers().begin(tasks.check_file, items, tasks.unchecked(self.run.rules.limits))
        self.pending.append(([(sha, name) for sha, _, name in forms], pending))

    def results(self) -> dict[tuple[str, str], Checked]:
        done: dict[tuple[str, str], Checked] = {}
        for keys, pending in self.pending:
            done.update(zip(keys, pending.results(), strict=True))
        return done


def _load_workbook_imports() -> None:
    from pipeline.render import workbook  # noqa: F401


def _build_workbook(*args: Any, **options: Any) -> bytes:
    from pipeline.render import workbook

    return workbook.consolidated_workbook(*args, **options)


class WorkbookProcess:
    """A second process that builds the consolidated workbook (the largest single piece of work at national
    scale) while this one writes the report and the summary. Started with `start` before it is needed, it
    loads its imports meanwhile; not started, or broken, the workbook is built here with the same bytes.
    It builds one workbook: another one asked of it in the same run is built here."""

    # Below this many units the workbook takes less than the second process's start (~1 s of the processor
    # and ~150 MiB for its imports): a province's run builds it here.
    UNITS = 500

    def __init__(self) -> None:
        self.executor: concurrent.futures.ProcessPoolExecutor | None = None
        self.used = False

    def start(self) -> None:
        if self.executor is None and not self.used:
            self.executor = concurrent.futures.ProcessPoolExecutor(
                max_workers=1, mp_context=multiprocessing.get_context("spawn")
            )
            self.executor.submit(_load_workbook_imports)

    def workbook(self, *args: Any, **options: Any) -> Callable[[], bytes]:
        """`workbook.consolidated_workbook(*args, **options)`'s bytes, when called for."""
        if self.executor is None or self.used:
            data = _build_workbook(*args, **options)
            return lambda: data
        self.used = True
        try:
            future = self.executor.submit(_build_workbook, *args, **options)
        except Exception as exc:  # the process died before (killed, out of memory): built here, same bytes
            return self._here(exc, args, options)

        def result() -> bytes:
            try:
                return future.result()
            except Exception as exc:  # the process died meanwhile
                return self._here(exc, args, options)()

        return result

    @staticmethod
    def _here(exc: BaseException, args: tuple[Any, ...], options: dict[str, Any]) -> Callable[[], bytes]:
        # For developers only, not on the user's screen: the output is the same, nothing is for the user to do.
        log.info("the workbook's process stopped (%r); building it in this one", exc)
        data = _build_workbook(*args, **options)
        return lambda: data

    def close(self) -> None:
        if self.executor is not None:
            self.executor.shutdown(wait=False, cancel_futures=True)
            self.executor = None
