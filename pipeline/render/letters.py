"""E-mail to the units, built: feedback on one submission and reminders of what is still owed, as
`EmailMessage` values and .eml bytes. Sending them is `pipeline.io.smtp`'s.

The builders are pure: the same inputs give the same bytes (Message-ID and MIME boundary are hashes of
the content), so a rerun rewrites identical .eml files. Every text that comes from a unit or a file is
neutralised before it reaches a header, and an address that could carry a second header is refused.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Any

from pipeline.campaign.config import PROVINCE, Rules, Unit
from pipeline.model import EMAIL_ADDRESS, Finding, Severity, Verdict, in_order
from pipeline.render.env import render

XLSX = ("application", "vnd.openxmlformats-officedocument.spreadsheetml.sheet")
VERDICT_LABELS = {
    Verdict.ACCEPTED: "已通过",
    Verdict.REJECTED: "未通过",
    Verdict.UNREADABLE: "无法读取",
    Verdict.WRONG_LEVEL: "报送对象有误",
}
FEEDBACK_TEMPLATES = ("feedback_subject.txt.j2", "feedback_body.txt.j2")


def _one_line(text: str) -> str:
    return header_text("".join(line.strip() for line in text.splitlines()))


# --- header values ---------------------------------------------------------------------------------------

_MAILBOX = re.compile(r'\s*"?(?P<name>[^<>"]*?)"?\s*<(?P<addr>[^<>]*)>\s*')


def header_text(text: str) -> str:
    """Text that cannot start a new header line: control and line-separator characters become spaces,
    invisible format characters (bidi overrides that disguise a file's extension) go."""
    out = []
    for c in text:
        category = unicodedata.category(c)
        if category in ("Cc", "Zl", "Zp"):
            out.append(" ")
        elif category != "Cf":
            out.append(c)
    return " ".join("".join(out).split())


def mailbox(display_name: str, addr_spec: str, what: str) -> Address:
    """An address for a header; the name is neutralised, an address that could smuggle headers is refused."""
    addr = addr_spec.strip()
    if "\r" in addr or "\n" in addr:
        raise ValueError(f"{what}的邮箱地址含有换行符,已拒绝(可能是伪造邮件头):{addr!r}")
    if any(c in addr for c in ',;<>"') or any(unicodedata.category(c) == "Cc" for c in addr):
        raise ValueError(f"{what}的邮箱地址只能是一个地址,不能含逗号、分号、引号、尖括号或控制字符:{addr!r}")
    if not EMAIL_ADDRESS.fullmatch(addr):
        raise ValueError(f'{what}的邮箱地址 "{header_text(addr)}" 格式不对,应形如 name@example.org')
    return Address(display_name=header_text(display_name), addr_spec=addr)


def parse_mailbox(text: str, what: str) -> Address:
    """`名字 <addr>` or a bare address, as written in rules.yaml."""
    if "\r" in text or "\n" in text:
        raise ValueError(f"{what}含有换行符,已拒绝(可能是伪造邮件头):{text!r}")
    m = _MAILBOX.fullmatch(text)
    return mailbox(m["name"], m["addr"], what) if m else mailbox("", text, what)


def attachment_name(name: str) -> str:
    """A file name safe in Content-Disposition and on the recipient's disk."""
    clean = header_text(name).replace("/", "_").replace("\\", "_").lstrip(". ")
    return clean or "校验结果.xlsx"


@dataclass(frozen=True)
class Thread:
    """The unit's own message a reply answers (RFC 5322 3.6.4): its Message-ID, the References it carried,
    its subject, and who gets the reply: its sender first, then the unit's registered address."""

    message_id: str
    references: tuple[str, ...]
    subject: str
    to: tuple[str, ...]

    def reply_subject(self, ours: str) -> str:
        original = header_text(self.subject)
        if not original:
            return ours
        return original if re.match(r"(?i)^(re|回复|答复)\s*[::]", original) else f"Re: {original}"


# --- messages --------------------------------------------------------------------------------------------


def feedback_message(
    rules: Rules,
    unit: Unit,
    *,
    file_name: str,
    verdict: str,
    findings: Sequence[Finding],
    attachment: tuple[str, bytes] | None,
    now: dt.datetime,
    version: int = 1,
    item: str | None = None,
    thread: Thread | None = None,
) -> EmailMessage:
    """The verdict on one file, its findings (errors first) and what to do, with the annotated workbook;
    with a `thread`, as a reply to the message the file came in.

    `item` (an item code of rules.yaml) names the form in the subject; without it the form is recognised
    from the findings' sheet or the file name.
    """
    if verdict not in VERDICT_LABELS:
        raise ValueError(f'未知的校验结论 "{verdict}",应为 {", ".join(VERDICT_LABELS)}')
    errors = [f for f in findings if f.severity == Severity.ERROR]
    warnings = [f for f in findings if f.severity != Severity.ERROR]
    entries = [
        {
            "number": n,
            "severity": "错误" if f.severity == Severity.ERROR else "提醒",
            "place": f.place,
            "message": header_text(f.message),
        }
        for n, f in enumerate(in_order(findings), start=1)
    ]
    label = VERDICT_LABELS[Verdict(verdict)] + (
        "(有提醒)" if verdict == Verdict.ACCEPTED and warnings else ""
    )
    filename = attachment_name(attachment[0]) if attachment else ""
    context = {
        **_campaign_context(rules, unit, now),
        "item_label": _item_label(rules, file_name, findings, item),
        "file_name": header_text(file_name),
        "verdict": verdict,
        "verdict_label": label,
        "version": version,
        "entries": entries,
        "error_count": len(errors),
        "warning_count": len(warnings),
        "attachment_name": filename,
    }
    subject_template, body_template = FEEDBACK_TEMPLATES
    subject = _one_line(render(subject_template, **context))
    body = render(body_template, **context)
    return _message(
        rules, unit, "feedback", subject, body, now, (filename, attachment[1]) if attachment else None, thread
    )


def feedback_eml(rules: Rules, letter: Mapping[str, Any], workbook: bytes) -> tuple[bytes, str]:
    """The .eml file's bytes and the subject of `feedback_message` with `letter`'s arguments (the unit as
    `unit`), carrying `workbook` under the name `attachment_name`."""
    args = dict(letter)
    unit, name = args.pop("unit"), args.pop("attachment_name")
    message = feedback_message(rules, unit, attachment=(name, workbook), **args)
    return write_eml(message), str(message["Subject"])


def receipt_message(
    rules: Rules,
    unit: Unit,
    *,
    file_name: str,
    item: str,
    version: int,
    received: dt.datetime,
    state_label: str,
    reason: str,
    now: dt.datetime,
    thread: Thread | None = None,
) -> EmailMessage:
    """The 回执 for one version that counts: what was received, when, from which file, and that it is
    counted (a form: with its review state, and the reason when staff accepted it or the unit explained
    it); a written report is only registered. With a `thread`, a reply to the message it came in."""
    context = {
        **_campaign_context(rules, unit, now),
        "item_label": rules.items[item].label,
        "file_name": header_text(file_name),
        "version": version,
        "received": f"{received.astimezone(rules.campaign.tz):%Y-%m-%d %H:%M}",
        "counted": rules.items[item].form is not None,
        "state_label": state_label,
        "reason": header_text(reason),
    }
    subject = _one_line(render("receipt_subject.txt.j2", **context))
    return _message(
        rules, unit, "receipt", subject, render("receipt_body.txt.j2", **context), now, None, thread
    )


def reminder_message(
    rules: Rules, unit: Unit, *, items: Sequence[tuple[str, str]], now: dt.datetime
) -> EmailMessage:
    """What a unit still owes: (item label, state) pairs such as ("送温暖统计表", "未报送")."""
    if not items:
        raise ValueError(f"{unit.name} 没有未完成的事项,不需要催报")
    context = {
        **_campaign_context(rules, unit, now),
        "items": [
            {"number": n, "label": header_text(label), "state": header_text(state)}
            for n, (label, state) in enumerate(items, start=1)
        ],
        "labels": "、".join(header_text(label) for label, _ in items),
    }
    subject = _one_line(render("reminder_subject.txt.j2", **context))
    body = render("reminder_body.txt.j2", **context)
    return _message(rules, unit, "reminder", subject, body, now, None)


def notice_message(
    rules: Rules,
    case: str,
    *,
    now: dt.datetime,
    received: dt.datetime,
    subject: str,
    thread: Thread | None,
    unit: Unit | None = None,
    sender: str = "",
    files: Sequence[str] = (),
    ignored: Sequence[str] = (),
    unusable: Sequence[tuple[str, str]] = (),
) -> EmailMessage:
    """A short message about a unit's e-mail rather than a file's contents. `case`: "empty" (no form or report
    in it), "unusable" (attachments that cannot be taken, and how to send them instead), "held_sender" (its
    files wait for the unit's registered address to confirm) as replies in its `thread`; "held_owner" to
    the registered address of `unit`, asking it to confirm."""
    context = {
        **_campaign_context(rules, unit, now),
        "case": case,
        "received": f"{received.astimezone(rules.campaign.tz):%Y-%m-%d %H:%M}",
        "subject": header_text(subject),
        "sender": header_text(sender),
        "registered": unit.email if unit else "",
        "files": "、".join(header_text(f) for f in files),
        "taken": bool(files),
        "ignored": "、".join(header_text(f) for f in ignored),
        "unusable": [{"name": header_text(n), "reason": header_text(r)} for n, r in unusable],
        "expected": "、".join(i.label for i in rules.items.values()),
    }
    title = _one_line(render("notice_subject.txt.j2", **context))
    return _message(
        rules,
        unit,
        f"notice.{case}",
        title,
        render("notice_body.txt.j2", **context),
        now,
        None,
        thread if case != "held_owner" else None,
    )


def templates_message(
    rules: Rules, unit: Unit, blanks: Sequence[tuple[str, str, bytes]], now: dt.datetime
) -> EmailMessage:
    """A unit's own blank templates, (form code, file name, bytes) each, with the notice's request: what to
    send, to which address, by when."""
    by_form = {form: attachment_name(name) for form, name, _ in blanks}
    context = {
        **_campaign_context(rules, unit, now),
        "items": [
            {"label": rules.items[i].label, "attachment": by_form.get(rules.items[i].form or "", "")}
            for i in unit.items
        ],
    }
    subject = _one_line(render("templates_subject.txt.j2", **context))
    return _message(
        rules,
        unit,
        "templates",
        subject,
        render("templates_body.txt.j2", **context),
        now,
        None,
        more=[(attachment_name(name), data) for _, name, data in blanks],
    )


def _campaign_context(rules: Rules, unit: Unit | None, now: dt.datetime) -> dict[str, Any]:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now 必须带时区(例如 Asia/Shanghai),否则无法计算距截止时间")
    c = rules.campaign
    local = now.astimezone(c.tz)
    deadline = c.deadline.astimezone(c.tz)
    past = now > deadline
    days = (local.date() - deadline.date()).days if past else (deadline.date() - local.date()).days
    return {
        "unit_name": header_text(unit.name) if unit else "",
        "campaign_title": c.title,
        "issuer": c.issuer,
        "department": c.department,
        "document_number": c.document_number,
        "contact_phone": c.contact_phone,
        # Where this unit sends its forms: its parent's address (ZX's for the units below ZX).
        "reply_to": rules.address_of(unit.reports_to if unit else PROVINCE),
        "send_to_name": rules.name_of(unit.reports_to if unit else PROVINCE),
        "deadline_long": f"{deadline.year}年{deadline.month}月{deadline.day}日",
        "deadline_short": f"{deadline.month}月{deadline.day}日",
        "past_deadline": past,
        "days_left": 0 if past else days,
        "days_over": max(days, 1) if past else 0,
        "today": f"{local.year}年{local.month}月{local.day}日",
        "now_text": f"{local.year}年{local.month}月{local.day}日 {local:%H:%M}",
    }


def _item_label(rules: Rules, file_name: str, findings: Sequence[Finding], item: str | None) -> str:
    if item:
        return rules.items[item].label
    forms = [
        rules.forms[i.form] for i in rules.items.values() if i.form is not None and i.form in rules.forms
    ]
    sheets = {f.sheet for f in findings}
    for form in forms:
        if form.sheet in sheets:
            return rules.item_for_form(form.code).label
    for form in forms:
        label = rules.item_for_form(form.code).label
        if any(name and name in file_name for name in (form.title, label, form.sheet)):
            return label
    return "报表"


def _message(
    rules: Rules,
    unit: Unit | None,
    kind: str,
    subject: str,
    body: str,
    now: dt.datetime,
    attachment: tuple[str, bytes] | None,
    thread: Thread | None = None,
    more: Sequence[tuple[str, bytes]] = (),
) -> EmailMessage:
    """A message to `unit`, or with a `thread` a reply to the sender of the message it answers (and, as Cc,
    the unit's registered address); `more` attachments after `attachment`."""
    mail = rules.mail
    sender = parse_mailbox(mail.sender, "发件人(mail.sender)")
    # A reply goes where the unit sends its forms: the province's department, or ZX for the units below it.
    if unit is None or unit.reports_to == PROVINCE:
        reply_to = parse_mailbox(mail.reply_to, "回复地址(mail.reply_to)")
    else:
        reply_to = mailbox(rules.name_of(unit.reports_to), rules.address_of(unit.reports_to), "上级单位")
    if thread is not None:
        to = [mailbox(unit.name if unit and addr == unit.email else "", addr, "收件人") for addr in thread.to]
        subject = thread.reply_subject(subject)
    elif unit is not None:
        to = [mailbox(unit.name, unit.email, f"单位 {header_text(unit.name)} ")]
    else:
        raise ValueError("邮件没有收件人")
    files = ([attachment] if attachment else []) + list(more)
    date = format_datetime(now.astimezone(rules.campaign.tz))
    threading = (thread.message_id, *thread.references) if thread else ()
    digest = _digest(
        kind,
        str(sender),
        *map(str, to),
        str(reply_to),
        date,
        subject,
        body,
        *threading,
        *(part for file in files for part in file),
    )

    message = EmailMessage(policy=policy.SMTP)
    message["From"] = sender
    message["To"] = to[0]
    if len(to) > 1:
        message["Cc"] = to[1:]
    message["Reply-To"] = reply_to
    message["Subject"] = subject
    message["Date"] = date
    # Hash-based, not make_msgid(): that one mixes in the time and a random number.
    message["Message-ID"] = f"<{kind}.{digest[:32]}@{sender.domain}>"
    if thread is not None:
        message["In-Reply-To"] = thread.message_id
        message["References"] = " ".join(
            (*[r for r in thread.references if r != thread.message_id], thread.message_id)[-20:]
        )
    # RFC 3834: vacation responders stay quiet; an answer to a unit's message says it is one.
    message["Auto-Submitted"] = "auto-replied" if thread is not None else "auto-generated"
    # base64 keeps the message 7-bit clean for servers without 8BITMIME.
    message.set_content(body, subtype="plain", charset="utf-8", cte="base64")
    for name, data in files:
        message.add_attachment(data, maintype=XLSX[0], subtype=XLSX[1], filename=name)
    if files:
        # "_" is not in the base64 alphabet, so the boundary cannot occur inside a part.
        message.set_boundary(f"=_{digest[32:56]}")
    message["Content-Language"] = "zh-CN"  # after set_content, which drops Content-* headers
    return message


def _digest(*parts: str | bytes) -> str:
    h = hashlib.sha256()
    for part in parts:
        data = part.encode("utf-8") if isinstance(part, str) else part
        h.update(len(data).to_bytes(8, "big"))
        h.update(data)
    return h.hexdigest()


def write_eml(message: EmailMessage) -> bytes:
    """The message as an .eml file: SMTP policy, CRLF line ends, the bytes that would go over the wire."""
    return message.as_bytes(policy=policy.SMTP)
