"""What one run of the pipeline works with, as one value: the campaign, the level it runs for, its folders
and ledger, its moment and options, and what it has done so far. Every step of a run takes it.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import os
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.campaign.config import PROVINCE, Rules
from pipeline.io import outbox
from pipeline.io.ledger import Ledger
from pipeline.io.workspace import Folders
from pipeline.model import Refused

if TYPE_CHECKING:
    from pipeline.consolidation.status import Status
    from pipeline.io.intake import Intake
    from pipeline.io.workers import Pool
    from pipeline.runs.fetching import Fetched

Progress = Callable[[str, int, int], None]  # (stage in Chinese, done, total)


class RunLocked(Refused):
    """Another run holds the lock."""


@dataclass(frozen=True)
class Options:
    send: bool = False  # really send e-mail (else only .eml files)
    final: bool = False  # a numbered final edition instead of the draft
    password: str | None = None  # for the SMTP server
    sign: dict[str, object] = field(
        default_factory=dict
    )  # a roll-up form's footer (leader, preparer, phone, date)
    allow_missing: str = ""  # --final with units missing: staff's explanation, printed in the edition
    fetch: bool = False  # take what the campaign mailbox holds before the intake
    imap_password: str | None = None  # for the mailbox (else from the environment variable rules.yaml names)


@dataclass
class RunResult:
    as_of: dt.datetime
    intake: Intake | None = None
    fetched: Fetched | None = None  # what the mailbox gave, when the run fetched first
    checked: Counter[str] = field(default_factory=Counter)
    messages: Counter[str] = field(default_factory=Counter)
    status: Status | None = None
    outputs: list[Path] = field(default_factory=list)
    seconds: dict[str, float] = field(
        default_factory=dict
    )  # wall time of each stage, for the run's last line

    @contextmanager
    def timed(self, stage: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - start


@dataclass
class Run:
    rules: Rules
    ledger: Ledger
    folders: Folders
    as_of: dt.datetime
    level: str = PROVINCE  # whose units are expected: the province's, or a unit's (ZX) children
    options: Options = field(default_factory=Options)
    progress: Progress | None = None
    pool: Pool | None = None  # the limited workers, once a step needs them
    result: RunResult = field(init=False)

    def __post_init__(self) -> None:
        self.result = RunResult(self.as_of)

    @property
    def outbox(self) -> Path:
        return self.folders.outbox

    def workers(self) -> Pool:
        """The run's worker processes, started on first use and kept until the run ends."""
        if self.pool is None:
            from pipeline.runs import tasks

            self.pool = tasks.pool(self.rules)
        return self.pool

    def tell(self, stage: str) -> Callable[[int, int], None] | None:
        progress = self.progress
        return None if progress is None else (lambda done, total: progress(stage, done, total))


def moment(text: str | None, rules: Rules) -> dt.datetime:
    """The run's "now": --as-of as given (ISO date or date and time, campaign time zone), else the clock."""
    tz = rules.campaign.tz
    if not text:
        return dt.datetime.now(tz).replace(microsecond=0)
    try:
        when = dt.datetime.fromisoformat(text.strip().replace("/", "-"))
    except ValueError:
        raise ValueError(f"时间“{text}”无法识别,请写成 2017-02-01 或 2017-02-01T10:00") from None
    return when.replace(tzinfo=tz) if when.tzinfo is None else when.astimezone(tz)


@contextmanager
def locked(state: Path) -> Iterator[None]:
    """One run at a time: a second one is told who holds the lock instead of corrupting the ledger."""
    state.mkdir(parents=True, exist_ok=True)
    path = state / "run.lock"
    handle = path.open("a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "未知进程"
        handle.close()
        raise RunLocked(f"另一个 pipeline 正在运行({holder}),请等它结束后再试。") from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"进程 {os.getpid()},开始于 {dt.datetime.now():%Y-%m-%d %H:%M:%S}")
    handle.flush()
    try:
        yield
    finally:
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()


@contextmanager
def opened(
    rules: Rules,
    folders: Folders,
    as_of: dt.datetime,
    level: str = PROVINCE,
    options: Options | None = None,
    progress: Progress | None = None,
    lock: bool = True,
) -> Iterator[Run]:
    """A run holding the level's lock (unless it only reads: `lock=False`) and ledger; its workers end
    with it."""
    with locked(folders.state) if lock else nullcontext():
        if lock:
            outbox.remove_leftovers(folders.outbox)
        ledger = Ledger(folders.state, level=level)
        run = Run(rules, ledger, folders, as_of, level, options or Options(), progress)
        try:
            yield run
        finally:
            if run.pool is not None:
                run.pool.close()
            ledger.close()
