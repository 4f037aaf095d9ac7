"""The ledger's record of the campaign mailbox: each message taken (by UIDVALIDITY + UID and by Message-ID,
so none is taken twice), where its attachments went in the inbox, and the submissions held until their
unit confirms who sent them. Tables `mails` and `mail_files` (see ledger_schema), on the ledger's own
connection and transactions.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass

from pipeline.io.ledger import Ledger


@dataclass(frozen=True)
class Taken:
    """A message as the ledger records it once taken."""

    mailbox: str
    uidvalidity: int
    uid: int
    message_id: str
    sender: str
    sender_name: str
    date: dt.datetime | None
    received: dt.datetime
    subject: str
    references: tuple[str, ...]
    kind: str
    folder: str | None = None
    note: str = ""


def taken_uids(ledger: Ledger, mailbox: str, uidvalidity: int) -> set[int]:
    return {
        r[0]
        for r in ledger.db.execute(
            "SELECT uid FROM mails WHERE mailbox = ? AND uidvalidity = ?", (mailbox, uidvalidity)
        )
    }


def by_message_id(ledger: Ledger, message_id: str) -> sqlite3.Row | None:
    row: sqlite3.Row | None = ledger.db.execute(
        "SELECT * FROM mails WHERE message_id = ? ORDER BY id LIMIT 1", (message_id,)
    ).fetchone()
    return row


def record(ledger: Ledger, mail: Taken, paths: Sequence[str], when: dt.datetime) -> int:
    """The message and the inbox paths of its attachments, in one transaction; returns its row id."""
    with ledger.transaction() as db:
        cursor = db.execute(
            "INSERT INTO mails (mailbox, uidvalidity, uid, message_id, sender, sender_name, date, received, subject, "
            "refs, kind, folder, note, taken) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                mail.mailbox,
                mail.uidvalidity,
                mail.uid,
                mail.message_id,
                mail.sender,
                mail.sender_name,
                mail.date.isoformat() if mail.date else None,
                mail.received.isoformat(),
                mail.subject,
                " ".join(mail.references),
                mail.kind,
                mail.folder,
                mail.note,
                when.isoformat(),
            ),
        )
        mail_id = int(cursor.lastrowid or 0)
        db.executemany(
            "INSERT OR REPLACE INTO mail_files (path, mail) VALUES (?, ?)", [(p, mail_id) for p in paths]
        )
    return mail_id


def folders(ledger: Ledger) -> set[str]:
    return {r[0] for r in ledger.db.execute("SELECT folder FROM mails WHERE folder IS NOT NULL")}


def origins(ledger: Ledger) -> dict[str, sqlite3.Row]:
    """Inbox path -> the message its file came in (only files that came by mail)."""
    return {
        r["path"]: r
        for r in ledger.db.execute(
            "SELECT mail_files.path AS path, mails.* FROM mail_files JOIN mails ON mails.id = mail_files.mail"
        )
    }


def mails(ledger: Ledger) -> list[sqlite3.Row]:
    return list(ledger.db.execute("SELECT * FROM mails ORDER BY id"))


def held(ledger: Ledger) -> list[sqlite3.Row]:
    """The submissions held as 待确认, with the message each came in."""
    return list(
        ledger.db.execute(
            "SELECT submissions.id AS submission, submissions.unit, submissions.file, submissions.held, "
            "mails.id AS mail, mails.sender, mails.subject, mails.received FROM submissions "
            "LEFT JOIN mail_files ON mail_files.path = submissions.path LEFT JOIN mails ON mails.id = mail_files.mail "
            "WHERE submissions.held IS NOT NULL ORDER BY submissions.received"
        )
    )


def confirm(ledger: Ledger, submissions: Sequence[str], by: str, when: dt.datetime) -> None:
    """Held submissions counted from now on; their messages marked confirmed (`by` whom)."""
    with ledger.transaction() as db:
        db.executemany("UPDATE submissions SET held = NULL WHERE id = ?", [(s,) for s in submissions])
        db.executemany(
            "UPDATE mails SET confirmed = ? WHERE confirmed IS NULL AND id IN (SELECT mail FROM mail_files "
            "JOIN submissions ON submissions.path = mail_files.path WHERE submissions.id = ?)",
            [(f"{by},{when.isoformat()}", s) for s in submissions],
        )


def our_message(ledger: Ledger, message_id: str = "", recipient: str = "") -> sqlite3.Row | None:
    """One of our sent messages: by its Message-ID (and recipient, when it went to several), else the latest
    sent to `recipient`."""
    db = ledger.db
    row: sqlite3.Row | None = None
    if message_id:
        rows = list(
            db.execute("SELECT * FROM messages WHERE message_id = ? ORDER BY updated DESC", (message_id,))
        )
        row = next((r for r in rows if r["recipient"].lower() == recipient), rows[0] if rows else None)
    if row is None and recipient:
        row = db.execute(
            "SELECT * FROM messages WHERE lower(recipient) = ? AND status = 'sent' "
            "ORDER BY updated DESC LIMIT 1",
            (recipient,),
        ).fetchone()
    return row
