"""The feedback step: each unit whose latest version of an item has findings gets its own workbook back,
marked, with an e-mail; each version that counts (passed, explained, accepted by staff, a report received)
gets a short 回执, by mail in its thread when it came by mail. Every message is written once, recorded in
the ledger, and sent once.
"""

from __future__ import annotations

import hashlib
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from email import policy
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.campaign.config import Unit
from pipeline.consolidation import history
from pipeline.io import atomic, mailbook, outbox
from pipeline.io.ledger import Letter
from pipeline.model import ItemState, Submission
from pipeline.runs import senders, tasks
from pipeline.runs.context import Run
from pipeline.runs.delivery import deliver
from pipeline.submission.read import FEEDBACK_SHEET

if TYPE_CHECKING:
    from pipeline.render.letters import Thread


def message_key(kind: str, subject: str, recipient: str) -> str:
    """A message's identity in the ledger: once per (submission, recipient), or (reminder, unit, day)."""
    return f"{kind}:{hashlib.sha256(f'{subject}|{recipient}'.encode()).hexdigest()[:24]}"


@dataclass(frozen=True)
class _Due:
    sub: Submission
    unit: Unit
    keys: tuple[tuple[str, str], ...]  # (ledger key, recipient) of each copy: the unit's, and its sender's
    name: str  # the annotated copy's file name, also the attachment's
    data: bytes  # the file as the unit sent it
    thread: Thread | None = None  # the unit's message it answers, when the file came by mail

    @property
    def key(self) -> str:
        return self.keys[-1][0]


def _due(run: Run) -> list[_Due]:
    """The latest version of each unit's form that has findings and no message yet, and whose bytes are
    kept (not one over the size limit). A file held as 待确认 is not answered until it is confirmed."""
    known = {u.code: u for u in run.rules.units}
    forms = [
        s
        for s in run.ledger.submissions(values=False)
        if s.kind == "form" and s.unit in known and s.verdict and not s.held
    ]
    origins = mailbook.origins(run.ledger)
    unsent = []
    for (code, _), sub in sorted(history.latest(forms).items()):
        unit = known[code]
        if not sub.findings:
            continue
        thread = senders.thread(origins.get(sub.path), unit)
        recipients = thread.to if thread else (unit.email,)
        keys = tuple((message_key("feedback", sub.id, r), r) for r in recipients)
        if any(run.ledger.message(key) is None for key, _ in keys):
            unsent.append((sub, unit, keys, thread))
    kept = run.ledger.kept_bytes([sub.sha256 for sub, _, _, _ in unsent])
    return [
        _Due(
            sub,
            unit,
            keys,
            f"{outbox.safe_name(copy_stem(sub.file))}_{FEEDBACK_SHEET}.xlsx",
            kept[sub.sha256],
            thread,
        )
        for sub, unit, keys, thread in unsent
        if sub.sha256 in kept
    ]


def copy_stem(file_name: str) -> str:
    """The name of the unit's file without its extension and without the suffix an earlier round's copy
    got: a copy sent back and annotated again keeps its name (not …_校验结果_校验结果.xlsx)."""
    stem = Path(file_name).stem
    while stem.endswith(f"_{FEEDBACK_SHEET}"):
        stem = stem.removesuffix(f"_{FEEDBACK_SHEET}")
    return stem


def _receipts_due(run: Run) -> list[_Due]:
    """The latest version of each unit's item that counts (history.usable) and has no 回执 yet; a file
    that came by mail is answered in its thread. One that passed without a finding before receipts had
    their own key got its reply as feedback: not written again."""
    known = {u.code: u for u in run.rules.units}
    subs = [
        s
        for s in run.ledger.submissions(values=False)
        if s.kind in ("form", "report") and s.unit in known and s.verdict and not s.held
    ]
    origins = mailbook.origins(run.ledger)
    due = []
    for (code, _), sub in sorted(history.latest(subs).items()):
        if not history.usable(sub):
            continue
        unit = known[code]
        thread = senders.thread(origins.get(sub.path), unit)
        recipients = thread.to if thread else (unit.email,)
        keys = tuple((message_key("receipt", sub.id, r), r) for r in recipients)
        answered = not sub.findings and all(
            run.ledger.message(message_key("feedback", sub.id, r)) is not None for r in recipients
        )
        if not answered and any(run.ledger.message(key) is None for key, _ in keys):
            due.append(_Due(sub, unit, keys, "", b"", thread))
    return due


def feedback(run: Run, meanwhile: Callable[[], Callable[[], None]] | None = None) -> Counter[str]:
    """Annotated copies and their e-mails, and a 回执 for each version that counts, then delivery.
    `meanwhile` is called when there is anything to annotate; what it returns runs in this thread while the
    workers annotate."""
    senders.notify_held(run)
    marked = _due(run)
    written = _receipts(run, _receipts_due(run))
    if marked:
        written += _annotate(run, marked, meanwhile() if meanwhile else None)
    if written:
        # Made durable together, then recorded together (a crash in between: the next run writes them again).
        atomic.sync(run.outbox)
        run.ledger.add_messages(written, run.as_of)
    return deliver(run)


def _letters(run: Run, d: _Due, eml_bytes: bytes, subject: str, kind: str = "feedback") -> list[Letter]:
    """One ledger row per recipient of the same message (the unit's sender, then its registered address),
    and its copy for people in the outbox."""
    word = "回执" if kind == "receipt" else "反馈"
    eml = outbox.inside(
        run.outbox, outbox.MAIL_DIR, f"{outbox.safe_name(d.unit.name)}_{word}_{d.key[-12:]}.eml"
    )
    atomic.write_bytes(eml, eml_bytes, durable=False)
    return [
        Letter(
            key,
            kind,
            d.unit.code,
            recipient,
            d.sub.id,
            subject,
            eml.relative_to(run.outbox).as_posix(),
            message_id(eml_bytes),
            eml_bytes,
        )
        for key, recipient in d.keys
    ]


def _receipts(run: Run, due: list[_Due]) -> list[Letter]:
    """The 回执 of each version due one: short, no attachment, written by the workers."""
    from pipeline.consolidation import status

    if not due:
        return []
    args = [
        dict(
            unit=d.unit,
            file_name=d.sub.file,
            item=d.sub.item,
            version=d.sub.version or 1,
            received=d.sub.received,
            state_label=status.state_of(d.sub).label,
            reason=status.taken_under(d.sub),
            now=run.as_of,
            thread=d.thread,
        )
        for d in due
    ]
    made = run.workers().map(tasks.receipt_eml, args, tasks.receipt_here(run.rules), chunk=64)
    return [
        letter
        for d, (eml_bytes, subject) in zip(due, made, strict=True)
        for letter in _letters(run, d, eml_bytes, subject, "receipt")
    ]


def message_id(mime: bytes) -> str:
    """The Message-ID a message was built with (see render/letters.py)."""
    from email.parser import BytesHeaderParser

    return str(BytesHeaderParser(policy=policy.SMTP).parsebytes(mime)["Message-ID"] or "")


def _annotate(run: Run, due: list[_Due], meanwhile: Callable[[], None] | None) -> list[Any]:
    """Each unit's workbook marked by the workers, written to the outbox with its e-mail as it comes back."""
    from pipeline.render import letters

    rules = run.rules
    args = [
        dict(
            file_name=d.sub.file,
            verdict=d.sub.verdict or "",
            findings=d.sub.findings,
            now=run.as_of,
            version=d.sub.version or 1,
            item=d.sub.item,
            attachment_name=d.name,
            thread=d.thread,
        )
        for d in due
    ]
    jobs = [
        tasks.Letter(
            d.data,
            d.sub.file,
            d.sub.findings,
            d.unit,
            f"{d.unit.name} {rules.forms[d.sub.form].title} 校验结果",
            letter,
        )
        for d, letter in zip(due, args, strict=True)
    ]
    tell = run.tell("标注")
    done = [0]

    def write(i: int, got: Any) -> None:
        d = due[i]
        if isinstance(
            got, bytes
        ):  # the worker gave up: its findings listed here, and the e-mail written here
            got = (got, *letters.feedback_eml(rules, {**args[i], "unit": d.unit}, got))
        annotated, eml_bytes, subject = got
        folder = outbox.safe_name(d.unit.name)
        atomic.write_bytes(
            outbox.inside(run.outbox, outbox.FEEDBACK_DIR, folder, d.name), annotated, durable=False
        )
        written[i] = _letters(run, d, eml_bytes, subject)
        done[0] += 1
        if tell:
            tell(done[0], len(due))

    written: list[Any] = [None] * len(due)
    # The annotated copies are not what the step waits for when a workbook is built meanwhile: the workers
    # give way to it.
    pending = run.workers().begin(
        tasks.annotate_file, jobs, tasks.listed_only, chunk=4, niceness=10 if meanwhile else 0
    )
    failed: list[BaseException] = []

    def collect() -> None:
        try:
            for i, got in enumerate(pending.results()):
                write(i, got)
        except BaseException as exc:  # handed to the calling thread
            failed.append(exc)

    collecting = threading.Thread(target=collect)
    collecting.start()
    try:
        if meanwhile:
            meanwhile()
    finally:
        collecting.join()
    if failed:
        raise failed[0]
    return [one for each in written for one in each]


def remind(run: Run) -> list[str]:
    """Remind units whose items are missing, still rejected or returned by staff; once per unit and day."""
    from pipeline.render import letters
    from pipeline.runs import reporting

    rules, as_of = run.rules, run.as_of
    now = reporting.current_status(run)
    owing: dict[str, list[tuple[str, str]]] = {}
    for row in now.rows:
        if row.state in (ItemState.MISSING, ItemState.OVERDUE, ItemState.FAILED, ItemState.RETURNED):
            owing.setdefault(row.unit, []).append((row.item_label, row.state.label))
    reminded = []
    for code, items in owing.items():
        unit = rules.unit(code)
        key = message_key("reminder", f"{code}:{as_of.date().isoformat()}", unit.email)
        if run.ledger.message(key) is not None:
            continue
        message = letters.reminder_message(rules, unit, items=items, now=as_of)
        eml = outbox.inside(
            run.outbox, outbox.MAIL_DIR, f"{outbox.safe_name(unit.name)}_催报_{as_of:%Y%m%d}.eml"
        )
        mime = letters.write_eml(message)
        run.ledger.add_messages(
            [
                Letter(
                    key,
                    "reminder",
                    code,
                    unit.email,
                    None,
                    str(message["Subject"]),
                    eml.relative_to(run.outbox).as_posix(),
                    str(message["Message-ID"]),
                    mime,
                )
            ],
            as_of,
        )
        reminded.append(unit.name)
    deliver(run)
    return reminded
