"""Delivery: every message the ledger holds goes out once, from the ledger.

The ledger keeps each message's recipient, Message-ID and bytes from the moment it is written; sending
reads them there. The .eml files in the outbox are copies for people, made again when missing or changed,
and never read back. One run's sending ends by `mail.send_seconds`, and stops trying once the server
cannot be reached: what is left goes on the next run. A message whose fate is unknown (the run died while
sending it, or the server never confirmed it) waits for staff: `pipeline mail --unknown`.
"""

from __future__ import annotations

import time
from collections import Counter
from email import message_from_bytes, policy
from email.message import EmailMessage

from pipeline.io import atomic, outbox
from pipeline.model import MessageStatus
from pipeline.runs.context import Run


def deliver(run: Run) -> Counter[str]:
    """Send what is due: written or temporarily failed messages (with --send); count what happened."""
    ledger, as_of = run.ledger, run.as_of
    counts: Counter[str] = Counter()
    for row in ledger.messages((MessageStatus.SENDING,)):
        # The previous run died while talking to the server: the message may have gone. Staff decide.
        ledger.set_message(
            row["key"],
            MessageStatus.UNKNOWN,
            as_of,
            detail="上次发送时中断,无法确定是否已送达;请用 pipeline mail --unknown 核对",
        )
    pending = [row["key"] for row in ledger.messages((MessageStatus.PENDING,))]
    if pending:
        ledger.set_messages(pending, MessageStatus.WRITTEN, as_of)
        if not run.options.send:
            counts[MessageStatus.WRITTEN] += len(pending)  # with --send, what counts is how the sending went
    restore_copies(run)
    if run.options.send:
        counts.update(_send_due(run))
    return counts


def _send_due(run: Run) -> Counter[str]:
    from pipeline.io import smtp

    ledger, as_of, mail = run.ledger, run.as_of, run.rules.mail
    counts: Counter[str] = Counter()
    deadline = time.monotonic() + mail.send_seconds
    unreachable = ""  # once the server cannot be reached, the others wait for the next run
    for row in ledger.messages((MessageStatus.WRITTEN, MessageStatus.TEMPFAIL)):
        if unreachable or time.monotonic() >= deadline:
            detail = unreachable or f"本次运行的发送时限({mail.send_seconds:g} 秒)已到,下次运行时发送"
            ledger.set_message(row["key"], MessageStatus.TEMPFAIL, as_of, None, detail)
            counts[MessageStatus.TEMPFAIL] += 1
            continue
        ledger.set_message(row["key"], MessageStatus.SENDING, as_of)
        outcome = smtp.send(
            mail,
            _message(run, row),
            recipients=[row["recipient"]],
            password=run.options.password,
            deadline=deadline,
        )[0]
        ledger.set_message(row["key"], outcome.status, as_of, outcome.code, outcome.detail, attempt=True)
        counts[outcome.status] += 1
        if not outcome.reached:
            unreachable = f"{outcome.detail};本次不再尝试其余邮件"
    return counts


def _message(run: Run, row: object) -> EmailMessage:
    """A message as the ledger keeps it. A ledger of an earlier version kept only the .eml: read once, it is
    kept in the ledger from then on."""
    mime = row["mime"]  # type: ignore[index]
    if mime is None:
        mime = (run.outbox / row["eml"]).read_bytes()  # type: ignore[index]
        run.ledger.set_mime(row["key"], mime)  # type: ignore[index]
    message = message_from_bytes(bytes(mime), _class=EmailMessage, policy=policy.SMTP)
    return message


def restore_copies(run: Run) -> None:
    """Each message's .eml in the outbox as the ledger holds it: made again when missing or changed."""
    for row in run.ledger.messages():
        mime = row["mime"]
        if mime is None:
            continue
        path = outbox.inside(run.outbox, row["eml"])
        try:
            if path.stat().st_size == len(mime) and path.read_bytes() == mime:
                continue
        except OSError:
            pass
        atomic.write_bytes(path, bytes(mime), durable=False)
