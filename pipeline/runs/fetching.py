"""The fetch step: every message in the campaign mailbox not yet taken is taken once, its attachments saved
into the level's inbox (a folder per message, `邮件/…`), and the message recorded in the ledger; the
intake then takes the files like any others and knows which message each came in.

Once only, whatever happens: a message is known by UIDVALIDITY + UID and by its Message-ID (a re-delivered
copy has another UID, the same Message-ID). Its files are written into a hidden folder, made durable, the
message and its notices recorded in one transaction, and only then is the folder renamed into place;
a fetch killed in between is completed by the next one (`_recover`). Nothing in the mailbox is changed.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import shutil
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.campaign.config import Rules
from pipeline.io import atomic, imap, incoming, mailbook, outbox
from pipeline.io.ledger import Letter
from pipeline.model import MessageStatus, Refused
from pipeline.render import letters
from pipeline.runs import senders
from pipeline.runs.context import Run

MAIL_FOLDER = "邮件"  # in the inbox: a folder per message
PARTIAL = ".收取中-"  # a message's folder while it is written (hidden: the intake passes it over)


@dataclass
class Fetched:
    in_mailbox: int = 0  # messages in the folder
    taken: Counter[str] = field(default_factory=Counter)  # new messages, by kind
    files: int = 0  # attachments saved into the inbox
    confirmed: int = 0  # held files their unit confirmed by reply
    bounced: int = 0  # our messages a bounce was matched to
    notes: list[str] = field(default_factory=list)  # a line per message taken, for people


def mailbox_password_of(rules: Rules, password: str | None) -> str:
    """The mailbox's password: as given, else from the environment variable rules.yaml names."""
    mail = rules.mail
    if not mail.imap_host:
        raise Refused("rules.yaml 的 mail 一节没有设置活动邮箱(imap_host 等),无法收取邮件")
    value = password if password is not None else os.environ.get(mail.imap_password_env)
    if not value:
        raise Refused(f"要收取邮件,请先设置环境变量 {mail.imap_password_env}(邮箱密码或授权码)")
    return value


def fetch(
    run: Run,
    password: str | None = None,
    stop: Callable[[], bool] = lambda: False,
    box: imap.Mailbox | None = None,
) -> Fetched:
    """Take every message not yet taken (`stop()` is asked between messages); `box`: a connection already
    open (watch keeps one), else one is opened and closed here."""
    result = Fetched()
    _recover(run)
    if box is None:
        with imap.Mailbox(run.rules.mail, mailbox_password_of(run.rules, password)) as opened:
            return _take_new(run, opened, stop, result)
    return _take_new(run, box, stop, result)


def _take_new(run: Run, box: imap.Mailbox, stop: Callable[[], bool], result: Fetched) -> Fetched:
    uids = box.uids()
    result.in_mailbox = len(uids)
    taken = mailbook.taken_uids(run.ledger, box.name, box.uidvalidity)
    for got in box.fetch([u for u in uids if u not in taken]):
        _take(run, box, got, result)
        if stop():
            break
    return result


def _take(run: Run, box: imap.Mailbox, got: imap.Fetched, result: Fetched) -> None:
    rules = run.rules
    own = (letters.parse_mailbox(rules.mail.sender, "发件人(mail.sender)").addr_spec.lower(),)
    reports = tuple(e for i in rules.items.values() for e in i.extensions)
    mail = incoming.parse(got.raw, rules.limits, reports, own)
    # When the server took it in (its clock may run ahead of ours: never later than now), else its Date.
    received = min(got.received or mail.date or run.as_of, run.as_of).astimezone(rules.campaign.tz)
    record = mailbook.Taken(
        box.name,
        box.uidvalidity,
        got.uid,
        mail.message_id,
        mail.sender,
        mail.sender_name,
        mail.date,
        received,
        mail.subject,
        mail.references,
        mail.kind,
    )
    earlier = mailbook.by_message_id(run.ledger, mail.message_id)
    if earlier is not None:
        note = f"与第 {earlier['id']} 封是同一封邮件(Message-ID 相同,重复投递),不再收取"
        _record(run, record, "duplicate", note, result)
        return
    if mail.kind == incoming.BOUNCE:
        _record(run, record, mail.kind, _bounced(run, mail, result), result)
        return
    if mail.kind == incoming.AUTO:
        _record(run, record, mail.kind, mail.why_silent, result)
        return
    result.confirmed += len(senders.confirmed_by_reply(run, mail))
    _save(run, mail, record, received, result)


def _record(
    run: Run,
    record: mailbook.Taken,
    kind: str,
    note: str,
    result: Fetched,
    paths: list[str] | None = None,
    folder: str | None = None,
) -> None:
    from dataclasses import replace

    mailbook.record(run.ledger, replace(record, kind=kind, note=note, folder=folder), paths or [], run.as_of)
    result.taken[kind] += 1
    result.notes.append(
        f"{record.received:%m-%d %H:%M} {record.sender or '(无发件人)'}「{record.subject}」:{note}"
    )


def _bounced(run: Run, mail: incoming.Incoming, result: Fetched) -> str:
    """A bounce of one of our messages recorded as its delivery failure (shown in the status)."""
    bounce = mail.bounce
    if bounce is None:
        return "退信,无法识别退回的是哪封邮件"
    ours = None
    for recipient in bounce.recipients or ("",):
        ours = mailbook.our_message(run.ledger, bounce.original_id, recipient)
        if ours is not None:
            break
    if ours is None:
        return f"退信({bounce.reason}),不是本程序发出的邮件或无法对应"
    run.ledger.set_message(ours["key"], MessageStatus.REFUSED, run.as_of, None, f"被退信:{bounce.reason}")
    result.bounced += 1
    return f"退信:发给 {ours['recipient']} 的“{ours['subject']}”未送达({bounce.reason})"


def _save(
    run: Run, mail: incoming.Incoming, record: mailbook.Taken, received: dt.datetime, result: Fetched
) -> None:
    """The message's files into the inbox and its notices into the ledger, then the message recorded."""
    digest = hashlib.sha256(f"{record.mailbox}|{mail.message_id}".encode()).hexdigest()[:10]
    folder = f"{MAIL_FOLDER}/{received:%Y%m%d-%H%M%S}-{digest}"
    partial = run.folders.inbox / MAIL_FOLDER / f"{PARTIAL}{digest}"
    names = _write(partial, mail.files, received)
    paths = [f"{folder}/{name}" for name in names]
    notices = _notices(run, mail, received, names)
    if notices:
        run.ledger.add_messages(notices, run.as_of)
    taken = "、".join(names) or "无报表或报告"
    problems = "".join(f";{u.name}:无法收取" for u in mail.unusable)
    kind = mail.kind if names or mail.kind == incoming.BULK else "empty" if not mail.unusable else "unusable"
    _record(run, record, kind, f"收取 {taken}{problems}", result, paths, folder if names else None)
    result.files += len(names)
    if names:
        final = run.folders.inbox / folder
        if final.exists():
            shutil.rmtree(final)
        os.rename(partial, final)
        atomic.sync(final)
    else:
        shutil.rmtree(partial, ignore_errors=True)


def _write(partial: Path, files: list[incoming.Attachment], received: dt.datetime) -> list[str]:
    """The files written whole into `partial` (made anew), dated when the message was received (the
    intake's time for the deadline); their names there, made safe and distinct."""
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    names: list[str] = []
    stamp = received.timestamp()
    for attachment in files:
        name = outbox.safe_name(attachment.name)
        stem, dot, suffix = name.rpartition(".")
        n = 2
        while name in names or name.lower() in ("thumbs.db", "desktop.ini") or name.startswith("~$"):
            name = f"{stem or suffix}({n}){dot}{suffix if stem else ''}"
            n += 1
        atomic.write_bytes(partial / name, attachment.data, durable=False)
        os.utime(partial / name, (stamp, stamp))
        names.append(name)
    atomic.sync(partial)
    return names


def _notices(run: Run, mail: incoming.Incoming, received: dt.datetime, names: list[str]) -> list[Letter]:
    """What the sender is told about the message itself: nothing usable in it, or files that cannot be
    taken and how to send them instead. Never for list or bulk mail; keyed by Message-ID, so once."""
    from pipeline.runs.feedback import message_key

    if mail.kind != incoming.SUBMISSION or mail.first_line.startswith(senders.CONFIRM_WORD) and not names:
        return []
    if mail.unusable:
        case = "unusable"
    elif not names:
        case = "empty"
    else:
        return []
    key = message_key(f"notice.{case}", mail.message_id, mail.sender)
    if run.ledger.message(key) is not None:
        return []
    thread = letters.Thread(mail.message_id, mail.references, mail.subject, (mail.sender,))
    message = letters.notice_message(
        run.rules,
        case,
        now=run.as_of,
        received=received,
        subject=mail.subject,
        thread=thread,
        sender=mail.sender,
        files=names,
        ignored=mail.ignored,
        unusable=[(u.name, u.reason) for u in mail.unusable],
    )
    unit = next((u.code for u in run.rules.units if u.email.lower() == mail.sender), "")
    return [senders.letter(run, key, f"notice.{case}", unit, mail.sender, None, message, mail.sender)]


def _recover(run: Run) -> None:
    """Folders a killed fetch left: one whose message is recorded is renamed into place; one whose message
    is not was never taken, and goes (the message is fetched again)."""
    top = run.folders.inbox / MAIL_FOLDER
    if not top.is_dir():
        return
    recorded = {Path(f).name.rpartition("-")[2]: f for f in mailbook.folders(run.ledger)}
    for partial in top.glob(f"{PARTIAL}*"):
        folder = recorded.get(partial.name.removeprefix(PARTIAL))
        if folder is None:
            shutil.rmtree(partial, ignore_errors=True)
            continue
        final = run.folders.inbox / folder
        if final.exists():
            shutil.rmtree(final)
        os.rename(partial, final)
