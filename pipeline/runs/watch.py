"""`pipeline watch`: stays connected to the campaign mailbox and answers each new message at once, so that
a unit hears what is wrong with its file while its clerk is still at the desk.

Each round is a short run under the level's lock: fetch, intake, check, feedback, delivery (no status
files, no consolidation: those are the weekly run's). Between rounds the lock is free, so `pipeline run`
and `watch` alternate on one workspace. The connection waits with IMAP IDLE, and is opened again with a
growing pause when it breaks. `stop` (set by Ctrl-C or SIGTERM) is honoured between messages; a kill
loses nothing, since every round is a run that the next one completes.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from pipeline.campaign.config import PROVINCE, Rules
from pipeline.io import imap
from pipeline.runs import checking, feedback, fetching, overlap
from pipeline.runs.context import Folders, Options, RunLocked, moment, opened

IDLE_SECONDS = 25 * 60  # RFC 2177: a client re-issues IDLE within 29 minutes
BACKOFF = (1, 2, 5, 10, 30, 60)  # seconds before reconnecting, after each failure in a row


@dataclass
class Round:
    """What one round did, for the line `watch` prints."""

    at: dt.datetime
    fetched: fetching.Fetched
    checked: dict[str, int] = field(default_factory=dict)
    messages: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


def watch(
    rules: Rules,
    folders: Folders,
    options: Options,
    stop: threading.Event,
    *,
    level: str = PROVINCE,
    report: Callable[[str], None] = print,
    rounds: Callable[[Round], None] | None = None,
) -> None:
    """Answer the mailbox until `stop` is set. `report` gets a line of Chinese for each event worth telling
    staff; `rounds` each round that took anything."""
    password = fetching.mailbox_password_of(rules, options.imap_password)
    pool: list[object] = []  # the worker processes, kept from round to round (their start costs a second)
    failures = 0
    try:
        while not stop.is_set():
            try:
                with imap.Mailbox(rules.mail, password) as box:
                    if failures:
                        report("已重新连接邮箱")
                    failures = 0
                    _serve(rules, folders, options, level, box, stop, pool, report, rounds)
            except imap.MailboxError as exc:
                pause = BACKOFF[min(failures, len(BACKOFF) - 1)]
                failures += 1
                report(f"{exc};{pause} 秒后重试")
                stop.wait(pause)
    finally:
        for workers in pool:
            workers.close()  # type: ignore[attr-defined]


def _serve(
    rules: Rules,
    folders: Folders,
    options: Options,
    level: str,
    box: imap.Mailbox,
    stop: threading.Event,
    pool: list[object],
    report: Callable[[str], None],
    rounds: Callable[[Round], None] | None,
) -> None:
    pending = True  # what arrived while no one watched is taken first
    while not stop.is_set():
        if pending:
            try:
                done = one_round(rules, folders, options, level, box, stop, pool)
            except RunLocked as exc:
                report(f"{exc};稍后再收")
                stop.wait(5)
                continue
            if done is not None and rounds:
                rounds(done)
        pending = box.wait(IDLE_SECONDS, stop.is_set)


def one_round(
    rules: Rules,
    folders: Folders,
    options: Options,
    level: str,
    box: imap.Mailbox,
    stop: threading.Event,
    pool: list[object],
) -> Round | None:
    """Fetch, take in, check and answer what is new, and whatever a killed round left undone; None when
    there was nothing to do."""
    start = time.perf_counter()
    with opened(rules, folders, moment(None, rules), level, options) as run:
        if pool:
            run.pool = pool.pop()  # type: ignore[assignment]
        try:
            got = fetching.fetch(run, stop=stop.is_set, box=box)
            if stop.is_set():
                return Round(run.as_of, got)
            early = overlap.EarlyCheck(run)
            from pipeline.io import intake

            run.result.intake = intake.take_in(
                run.ledger, folders.inbox, run.as_of, rules.limits.max_bytes, settle=0, read_files=early.check
            )
            checked = checking.check_pending(run, early=early.results())
            messages = feedback.feedback(run)
            if not (sum(got.taken.values()) or checked or messages):
                return None
            return Round(run.as_of, got, dict(checked), dict(messages), time.perf_counter() - start)
        finally:
            if run.pool is not None:
                pool.append(run.pool)
                run.pool = None
