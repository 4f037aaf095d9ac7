"""The weekly run: intake, check, feedback, status, consolidation, each a step over one `Run`.

Each step reads what the ledger says is left to do, so a run killed anywhere is completed by the next; a run
with nothing new changes nothing and sends nothing. How the steps overlap to keep both cores busy is
`overlap`'s business; the steps read as if they ran one after the other.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from pipeline.campaign.config import PROVINCE, Rules
from pipeline.consolidation import status
from pipeline.io import intake as inbox
from pipeline.io import outbox
from pipeline.model import Refused
from pipeline.runs import checking, editions, overlap, reporting
from pipeline.runs.context import Folders, Options, Progress, Run, RunResult, opened
from pipeline.runs.feedback import feedback


def run(
    rules: Rules,
    folders: Folders,
    as_of: dt.datetime,
    *,
    level: str = PROVINCE,
    options: Options | None = None,
    progress: Progress | None = None,
) -> RunResult:
    with overlap.frozen(), opened(rules, folders, as_of, level, options, progress) as this:
        editions.refuse_too_early(this)
        _refuse_a_lost_ledger(this)
        generation = this.ledger.generation()
        aside = overlap.WorkbookProcess()
        try:
            if this.options.fetch:
                fetch_mail(this)
            early = take_in(this)
            check(this, early, aside)
            ahead = give_feedback(this, aside)
            report_status(this)
            consolidate(this, ahead, aside)
        finally:
            aside.close()
        if this.ledger.generation() != generation:
            this.ledger.backup()  # what `pipeline verify --rebuild` restores should the ledger be damaged
        return this.result


def _refuse_a_lost_ledger(run: Run) -> None:
    """A ledger that knows no file, beside an outbox holding e-mails it wrote: the ledger was emptied or
    this is another one. Running on would send every e-mail again."""
    mail = run.outbox / outbox.MAIL_DIR
    if run.ledger.generation() == 0 and mail.is_dir() and any(mail.glob("*.eml")):
        raise Refused(
            f"台账 {run.folders.state} 是空的,但输出目录 {run.outbox} 中已有以前写出的邮件。台账可能被清空、删除"
            "或指错了位置;为免重复发信,本次不运行。请用 pipeline verify --rebuild 恢复台账,或检查 --state 与 --outbox"
        )


def _large(run: Run) -> bool:
    return len(run.rules.children(run.level)) >= overlap.WorkbookProcess.UNITS


def fetch_mail(run: Run) -> None:
    """New messages from the campaign mailbox: their attachments into the inbox, before the intake."""
    from pipeline.runs import fetching

    with run.result.timed("收信"):
        run.result.fetched = fetching.fetch(run, run.options.imap_password)


def take_in(run: Run) -> overlap.EarlyCheck:
    """New files from the inbox into the ledger; the workers start checking each batch as it is read."""
    early = overlap.EarlyCheck(run)
    with run.result.timed("收取"):
        run.result.intake = inbox.take_in(
            run.ledger,
            run.folders.inbox,
            run.as_of,
            run.rules.limits.max_bytes,
            arriving_files=run.workers().start,
            read_files=early.check,
        )
    return early


def check(run: Run, early: overlap.EarlyCheck, aside: overlap.WorkbookProcess) -> None:
    with run.result.timed("校验"):
        # The workbook's process loads its imports on the core the schema run leaves idle.
        run.result.checked = checking.check_pending(
            run, early=early.results(), read=aside.start if _large(run) else None
        )


Ahead = list[tuple[status.Status, Callable[[], editions.Made]]]  # the draft begun during feedback, if any


def give_feedback(run: Run, aside: overlap.WorkbookProcess) -> Ahead:
    """Feedback to the units; meanwhile the draft for the status as it stands is begun (see `_draft_ahead`)."""
    ahead: Ahead = []
    with run.result.timed("反馈"):
        run.result.messages = feedback(
            run, meanwhile=None if run.options.final else _draft_ahead(run, aside, ahead)
        )
    return ahead


def _draft_ahead(run: Run, aside: overlap.WorkbookProcess, ahead: Ahead) -> Callable[[], Callable[[], None]]:
    """Alongside the annotating, the draft for the status as it stands: summed here while the workers
    annotate, its workbook built by a second process (from WorkbookProcess.UNITS units on) while this one
    writes the report and the summary. Only a message refused while sending can change the status, and
    then the draft is built again."""

    def begin() -> Callable[[], None]:
        if _large(run):
            aside.start()  # if not yet: its imports load while this process sums the forms

        def draft() -> None:
            now = reporting.current_status(run)
            overlap.set_aside()
            ahead.append((now, editions.started(run, now, aside)))

        return draft

    return begin


def report_status(run: Run) -> None:
    with run.result.timed("报送情况"):
        run.result.status = reporting.current_status(run)


def consolidate(run: Run, ahead: Ahead, aside: overlap.WorkbookProcess) -> None:
    now = run.result.status
    assert now is not None
    editions.refuse_incomplete(run, now)
    scope, key = f"draft:{run.level}", editions.outputs_key(run)
    unchanged = None if run.options.final else editions.unchanged_outputs(run, scope, key)
    if unchanged is not None:
        run.result.outputs += unchanged  # nothing they are made from has changed: a rerun rewrites nothing
        return
    with run.result.timed("汇总"):
        made = ahead[0][1]() if ahead and ahead[0][0] == now else None
        run.result.outputs += reporting.write_status(run, now)
        run.result.outputs += editions.consolidation(run, now, made, aside)
        if not run.options.final:
            run.ledger.set_outputs(
                scope,
                key,
                {p.relative_to(run.outbox).as_posix(): editions.sha256_of(p) for p in run.result.outputs},
            )
