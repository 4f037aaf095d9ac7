"""Who sent a file by mail, and what follows from it: a file from an address not on file for the unit it
names is held as 待确认 (not counted) until the unit's registered address confirms (a reply whose first
line is 确认) or staff do (`pipeline confirm`); the registered address is told. Replies to a unit's message
go in its thread, to its sender and the unit's registered address.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections.abc import Sequence
from email.message import EmailMessage
from typing import TYPE_CHECKING, Any

from pipeline.campaign.config import Unit
from pipeline.io import incoming, mailbook, outbox
from pipeline.io.ledger import Letter
from pipeline.model import Refused, Submission
from pipeline.runs.context import Run

if TYPE_CHECKING:
    from pipeline.render.letters import Thread

CONFIRM_WORD = "确认"


def thread(origin: sqlite3.Row | None, unit: Unit) -> Thread | None:
    """The thread a reply about a file goes in: the unit's message it came in, to its sender and the unit's
    registered address. None for a file that did not come by mail, or came in list or bulk mail (RFC 3834:
    never answered)."""
    from pipeline.render.letters import Thread

    if origin is None or origin["kind"] != incoming.SUBMISSION:
        return None
    to = tuple(dict.fromkeys(a for a in (origin["sender"], unit.email.lower()) if a))
    return Thread(origin["message_id"], tuple((origin["refs"] or "").split()), origin["subject"] or "", to)


def hold_unconfirmed(
    run: Run, pending: Sequence[Submission], results: list[tuple[str, dict[str, Any]]]
) -> None:
    """Mark in `results` (id, fields as about to be recorded) each file whose unit's registered address is
    not the address it was mailed from, and whose message no one has confirmed."""
    origins = mailbook.origins(run.ledger)
    if not origins:
        return
    paths = {s.id: s.path for s in pending}
    for sid, fields in results:
        origin = origins.get(paths.get(sid, ""))
        code = fields.get("unit")
        if origin is None or not code or not run.rules.has_unit(code) or origin["confirmed"]:
            continue
        unit = run.rules.unit(code)
        if origin["sender"] != unit.email.lower():
            fields["held"] = f"发件地址 {origin['sender']} 不是{unit.name}登记的邮箱,待该单位确认"


def notify_held(run: Run) -> None:
    """Each held file's unit is asked to confirm (at its registered address), and its sender told it waits
    (a reply in its thread, never carrying the unit's data); each message once (ledger keys)."""
    from pipeline.render import letters
    from pipeline.render.letters import Thread
    from pipeline.runs.feedback import message_key

    rows = [
        r for r in mailbook.held(run.ledger) if r["mail"] is not None and run.rules.has_unit(r["unit"] or "")
    ]
    if not rows:
        return
    origins = {r["id"]: r for r in mailbook.mails(run.ledger)}
    written = []
    for row in rows:
        unit, origin = run.rules.unit(row["unit"]), origins[row["mail"]]
        answer = thread(origin, unit)
        cases: list[tuple[str, str, Thread | None]] = [("held_owner", unit.email, None)]
        if answer is not None:
            cases.append(
                (
                    "held_sender",
                    origin["sender"],
                    Thread(answer.message_id, answer.references, answer.subject, (origin["sender"],)),
                )
            )
        for case, recipient, in_thread in cases:
            key = message_key(f"hold.{case}", row["submission"], recipient)
            if run.ledger.message(key) is not None:
                continue
            message = letters.notice_message(
                run.rules,
                case,
                now=run.as_of,
                received=dt.datetime.fromisoformat(origin["received"]),
                subject=origin["subject"] or "",
                thread=in_thread,
                unit=unit,
                sender=origin["sender"],
                files=[row["file"]],
            )
            written.append(
                letter(
                    run,
                    key,
                    f"hold.{case}",
                    unit.code,
                    recipient,
                    row["submission"],
                    message,
                    unit.name if case == "held_owner" else origin["sender"],
                )
            )
    if written:
        run.ledger.add_messages(written, run.as_of)


def letter(
    run: Run,
    key: str,
    kind: str,
    unit: str,
    recipient: str,
    submission: str | None,
    message: EmailMessage,
    who: str,
) -> Letter:
    """A built message as the ledger keeps it, its copy for people named after `who`."""
    from pipeline.render import letters

    eml = outbox.inside(run.outbox, outbox.MAIL_DIR, f"{outbox.safe_name(who)}_{kind}_{key[-12:]}.eml")
    return Letter(
        key,
        kind,
        unit,
        recipient,
        submission,
        str(message["Subject"]),
        eml.relative_to(run.outbox).as_posix(),
        str(message["Message-ID"]),
        letters.write_eml(message),
    )


def confirmed_by_reply(run: Run, mail: incoming.Incoming) -> list[str]:
    """The held files a unit's registered address confirms by replying 确认 to the notice about them."""
    if not mail.first_line.startswith(CONFIRM_WORD) or not mail.references:
        return []
    marks = ",".join("?" * len(mail.references))
    notices = run.ledger.db.execute(
        f"SELECT sha256, unit FROM messages WHERE kind = 'hold.held_owner' AND message_id IN ({marks})",
        mail.references,
    ).fetchall()
    held = {r["submission"] for r in mailbook.held(run.ledger)}
    chosen = [
        r["sha256"]
        for r in notices
        if r["sha256"] in held
        and run.rules.has_unit(r["unit"])
        and run.rules.unit(r["unit"]).email.lower() == mail.sender
    ]
    if chosen:
        mailbook.confirm(run.ledger, chosen, mail.sender, run.as_of)
    return chosen


def confirm(run: Run, keys: Sequence[str]) -> list[sqlite3.Row]:
    """Staff confirm held files (`keys`: the start of each one's number as `pipeline confirm` lists it);
    returns the rows confirmed."""
    held = mailbook.held(run.ledger)
    chosen = []
    for key in keys:
        found = [r for r in held if r["submission"].startswith(key)]
        if len(found) != 1:
            raise Refused(
                f"待确认的文件中{'没有' if not found else '有多个'}编号为 {key} 的文件;"
                "请用 pipeline confirm 查看编号"
            )
        chosen.append(found[0])
    mailbook.confirm(run.ledger, [r["submission"] for r in chosen], "工作人员", run.as_of)
    return chosen
