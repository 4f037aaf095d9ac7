"""E-mail to the units: feedback on one submission, reminders of what is still owed, and sending.

The builders are pure: the same inputs give the same bytes (Message-ID and MIME boundary are hashes of
the content), so a rerun rewrites identical .eml files. `send` talks SMTP one step at a time so that a
failure is classed by where it happened: before the end of DATA nothing was delivered and the message
can be retried; once the final dot has gone and no answer came back it may have been delivered, and only
staff can decide to send it again.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import os
import re
import smtplib
import socket
import ssl
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, getaddresses
from pathlib import Path
from typing import Any

import jinja2

from pipeline.campaign.config import Mail, Rules, Unit
from pipeline.model import Finding, Severity, Verdict

TEMPLATES = Path(__file__).resolve().parents[2] / "templates"
XLSX = ("application", "vnd.openxmlformats-officedocument.spreadsheetml.sheet")

SENT = "sent"
TEMPFAIL = "tempfail"  # nothing was delivered: try again on the next run
REFUSED = "refused"  # the server said no for good (5xx): do not retry
UNKNOWN = "unknown"  # the connection died after the whole message went: may have been delivered

# RFC 5321 4.5.3.2.6 lets a server take 10 minutes to answer the end of DATA (virus and spam scans);
# giving up earlier turns a delivered message into "unknown", which costs staff a decision.
FINAL_REPLY_TIMEOUT = 120.0

VERDICT_LABELS = {Verdict.ACCEPTED: "已通过", Verdict.REJECTED: "未通过", Verdict.UNREADABLE: "无法读取"}


@dataclass(frozen=True)
class Outcome:
    recipient: str
    status: str  # sent / tempfail / refused / unknown
    code: int | None
    detail: str


# --- templates -------------------------------------------------------------------------------------------


def _autoescape(name: str | None) -> bool:
    return name is not None and name.removesuffix(".j2").endswith((".html", ".htm", ".xml"))


FEEDBACK_TEMPLATES = ("feedback_subject.txt.j2", "feedback_body.txt.j2")


@functools.cache
def environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        undefined=jinja2.StrictUndefined,
        autoescape=_autoescape,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def render(template: str, **context: Any) -> str:
    """A template of templates/ rendered; a variable the caller forgot raises jinja2.UndefinedError."""
    return environment().get_template(template).render(**context)


def _one_line(text: str) -> str:
    return header_text("".join(line.strip() for line in text.splitlines()))


# --- header values ---------------------------------------------------------------------------------------

_ADDR_SPEC = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+@(?:[A-Za-z0-9-]+\.)+[A-Za-z0-9-]+")
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
    if not _ADDR_SPEC.fullmatch(addr):
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
) -> EmailMessage:
    """The verdict on one file, its findings (errors first) and what to do, with the annotated workbook.

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
            "place": _place(f),
            "message": header_text(f.message),
        }
        for n, f in enumerate(errors + warnings, start=1)
    ]
    label = VERDICT_LABELS[Verdict(verdict)] + ("(有提醒)" if verdict == Verdict.ACCEPTED and warnings else "")
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
        rules, unit, "feedback", subject, body, now, (filename, attachment[1]) if attachment else None
    )


def feedback_eml(rules: Rules, letter: Mapping[str, Any], workbook: bytes) -> tuple[bytes, str]:
    """The .eml file's bytes and the subject of `feedback_message` with `letter`'s arguments (the unit as
    `unit`), carrying `workbook` under the name `attachment_name`."""
    args = dict(letter)
    unit, name = args.pop("unit"), args.pop("attachment_name")
    message = feedback_message(rules, unit, attachment=(name, workbook), **args)
    return write_eml(message), str(message["Subject"])


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


def _campaign_context(rules: Rules, unit: Unit, now: dt.datetime) -> dict[str, Any]:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now 必须带时区(例如 Asia/Shanghai),否则无法计算距截止时间")
    c = rules.campaign
    local = now.astimezone(c.tz)
    deadline = c.deadline.astimezone(c.tz)
    past = now > deadline
    days = (local.date() - deadline.date()).days if past else (deadline.date() - local.date()).days
    return {
        "unit_name": header_text(unit.name),
        "campaign_title": c.title,
        "issuer": c.issuer,
        "department": c.department,
        "document_number": c.document_number,
        "contact_phone": c.contact_phone,
        "reply_to": parse_mailbox(rules.mail.reply_to, "回复地址(mail.reply_to)").addr_spec,
        "deadline_long": f"{deadline.year}年{deadline.month}月{deadline.day}日",
        "deadline_short": f"{deadline.month}月{deadline.day}日",
        "past_deadline": past,
        "days_left": 0 if past else days,
        "days_over": max(days, 1) if past else 0,
        "today": f"{local.year}年{local.month}月{local.day}日",
        "now_text": f"{local.year}年{local.month}月{local.day}日 {local:%H:%M}",
    }


def _place(f: Finding) -> str:
    if f.sheet and f.cell:
        return f"{f.sheet}!{f.cell}"
    return f.sheet or f.cell or "整个文件"


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
    unit: Unit,
    kind: str,
    subject: str,
    body: str,
    now: dt.datetime,
    attachment: tuple[str, bytes] | None,
) -> EmailMessage:
    mail = rules.mail
    sender = parse_mailbox(mail.sender, "发件人(mail.sender)")
    reply_to = parse_mailbox(mail.reply_to, "回复地址(mail.reply_to)")
    to = mailbox(unit.name, unit.email, f"单位 {header_text(unit.name)} ")
    date = format_datetime(now.astimezone(rules.campaign.tz))
    digest = _digest(
        kind, str(sender), str(to), str(reply_to), date, subject, body, *(attachment if attachment else ())
    )

    message = EmailMessage(policy=policy.SMTP)
    message["From"] = sender
    message["To"] = to
    message["Reply-To"] = reply_to
    message["Subject"] = subject
    message["Date"] = date
    # Hash-based, not make_msgid(): that one mixes in the time and a random number.
    message["Message-ID"] = f"<{kind}.{digest[:32]}@{sender.domain}>"
    message["Auto-Submitted"] = "auto-generated"  # RFC 3834: vacation responders stay quiet
    # base64 keeps the message 7-bit clean for servers without 8BITMIME.
    message.set_content(body, subtype="plain", charset="utf-8", cte="base64")
    if attachment is not None:
        name, data = attachment
        message.add_attachment(data, maintype=XLSX[0], subtype=XLSX[1], filename=name)
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


def password_from_env(mail: Mail) -> str | None:
    return os.environ.get(mail.password_env) or None


# --- sending ---------------------------------------------------------------------------------------------


def send(
    mail: Mail,
    message: EmailMessage,
    *,
    password: str | None = None,
    timeout: float = 30,
    context: ssl.SSLContext | None = None,
) -> list[Outcome]:
    """Deliver one message to each of its recipients; one Outcome per recipient, never an exception for
    a network or server failure (a malformed message or address still raises ValueError).

    `context` verifies the server for tls ssl/starttls; by default the system's CAs and the host name.
    """
    context = context or ssl.create_default_context()
    sender, recipients = _envelope(message)
    data = _data(message)
    where = f"{mail.smtp_host}:{mail.smtp_port}"

    def everyone(status: str, code: int | None, detail: str) -> list[Outcome]:
        return [Outcome(r, status, code, detail) for r in recipients]

    try:
        if mail.tls == "ssl":
            smtp: smtplib.SMTP = smtplib.SMTP_SSL(
                mail.smtp_host, mail.smtp_port, timeout=timeout, context=context
            )
        else:
            smtp = smtplib.SMTP(mail.smtp_host, mail.smtp_port, timeout=timeout)
    except smtplib.SMTPResponseException as exc:  # the greeting was not 220
        return everyone(
            TEMPFAIL, exc.smtp_code, f"邮件服务器 {where} 拒绝连接:{_reply(exc.smtp_code, exc.smtp_error)}"
        )
    except (OSError, smtplib.SMTPException) as exc:
        return everyone(TEMPFAIL, None, f"无法连接邮件服务器 {where}:{_network_error(exc)},下次运行时重试")
    try:
        return _transaction(smtp, mail, password, context, sender, recipients, data, timeout)
    finally:
        try:
            smtp.quit()
        except (OSError, smtplib.SMTPException):
            smtp.close()


def _transaction(
    smtp: smtplib.SMTP,
    mail: Mail,
    password: str | None,
    context: ssl.SSLContext,
    sender: str,
    recipients: list[str],
    data: bytes,
    timeout: float,
) -> list[Outcome]:
    outcomes: dict[str, Outcome] = {}

    def result() -> list[Outcome]:
        return [outcomes[r] for r in recipients]

    def rest(status: str, code: int | None, detail: str) -> list[Outcome]:
        for r in recipients:
            outcomes.setdefault(r, Outcome(r, status, code, detail))
        return result()

    # Before DATA: whatever goes wrong, nothing has been delivered.
    try:
        smtp.ehlo_or_helo_if_needed()
        if mail.tls == "starttls":
            smtp.starttls(context=context)
            smtp.ehlo()
        if mail.username and password:
            smtp.login(mail.username, password)
        options = [f"SIZE={len(data)}"] if smtp.has_extn("size") else []
        code, text = smtp.mail(sender, options)
    except smtplib.SMTPAuthenticationError as exc:
        return rest(
            TEMPFAIL,
            exc.smtp_code,
            f"登录邮件服务器失败,请检查用户名和密码(授权码):{_reply(exc.smtp_code, exc.smtp_error)}",
        )
    except smtplib.SMTPNotSupportedError as exc:
        return rest(TEMPFAIL, None, f"邮件服务器不支持所需功能(STARTTLS 或登录),请检查 mail.tls 设置:{exc}")
    except smtplib.SMTPResponseException as exc:
        return rest(TEMPFAIL, exc.smtp_code, f"邮件服务器拒绝了会话:{_reply(exc.smtp_code, exc.smtp_error)}")
    except ssl.SSLError as exc:
        return rest(
            TEMPFAIL, None, f"与邮件服务器建立加密连接失败:{_network_error(exc)},请检查 mail.tls 设置"
        )
    except (OSError, smtplib.SMTPException) as exc:
        return rest(TEMPFAIL, None, f"发送前与邮件服务器的连接中断:{_network_error(exc)},下次运行时重试")
    if code != 250:
        # A refused sender is our configuration, not the unit's address: keep it for the next run.
        return rest(
            TEMPFAIL, code, f"邮件服务器不接受发件人 {sender}:{_reply(code, text)},请检查 mail.sender 设置"
        )

    accepted = []
    for r in recipients:
        try:
            code, text = smtp.rcpt(r)
        except (OSError, smtplib.SMTPException) as exc:
            return rest(TEMPFAIL, None, f"发送前与邮件服务器的连接中断:{_network_error(exc)},下次运行时重试")
        if code in (250, 251):
            accepted.append(r)
        elif 500 <= code < 600:
            outcomes[r] = Outcome(r, REFUSED, code, f"收件地址被拒收:{_reply(code, text)},请核对该单位的邮箱")
        else:
            outcomes[r] = Outcome(
                r, TEMPFAIL, code, f"收件地址暂时不能投递:{_reply(code, text)},下次运行时重试"
            )
    if not accepted:
        return result()

    try:
        code, text = smtp.docmd("DATA")
    except (OSError, smtplib.SMTPException) as exc:
        return rest(TEMPFAIL, None, f"发送前与邮件服务器的连接中断:{_network_error(exc)},下次运行时重试")
    if code != 354:
        status = REFUSED if 500 <= code < 600 else TEMPFAIL
        return rest(status, code, f"邮件服务器不接收邮件内容:{_reply(code, text)}")
    try:
        smtp.send(data)
    except (OSError, smtplib.SMTPException) as exc:
        # The final CRLF.CRLF did not all leave: RFC 5321 4.1.1.4 has the server drop the transaction.
        return rest(
            TEMPFAIL,
            None,
            f"发送邮件内容时连接中断(服务器未收到结尾标记,不会投递):{_network_error(exc)},下次运行时重试",
        )
    try:
        if smtp.sock is not None:
            smtp.sock.settimeout(max(timeout, FINAL_REPLY_TIMEOUT))
        code, text = smtp.getreply()
    except (OSError, smtplib.SMTPException) as exc:
        return rest(
            UNKNOWN,
            None,
            f"邮件已全部发出,但服务器确认前连接中断({_network_error(exc)}),可能已经送达;"
            "为免重复,不会自动重发,请人工确认",
        )
    if 200 <= code < 300:
        return rest(SENT, code, f"已送达邮件服务器:{_reply(code, text)}")
    if 400 <= code < 500:
        return rest(TEMPFAIL, code, f"邮件服务器暂时不接收:{_reply(code, text)},下次运行时重试")
    if 500 <= code < 600:
        return rest(REFUSED, code, f"邮件服务器拒收本邮件:{_reply(code, text)}")
    return rest(UNKNOWN, code, f"邮件服务器的回答无法识别:{_reply(code, text)},请人工确认是否送达")


def _envelope(message: EmailMessage) -> tuple[str, list[str]]:
    senders = getaddresses([str(v) for v in message.get_all("From", [])])
    if len(senders) != 1:
        raise ValueError("邮件应当恰有一个发件人(From)")
    sender = mailbox("", senders[0][1], "发件人").addr_spec
    recipients: list[str] = []
    for header in ("To", "Cc", "Bcc"):
        for _, addr in getaddresses([str(v) for v in message.get_all(header, [])]):
            addr = mailbox("", addr, "收件人").addr_spec
            if addr not in recipients:
                recipients.append(addr)
    if not recipients:
        raise ValueError("邮件没有收件人")
    return sender, recipients


def _data(message: EmailMessage) -> bytes:
    """The DATA payload: CRLF lines, leading dots doubled, then the end-of-data line."""
    if message.get("Bcc") is not None:
        message = message_from_bytes(write_eml(message), _class=EmailMessage, policy=policy.SMTP)
        del message["Bcc"]
    raw = re.sub(rb"\r\n|\r|\n", b"\r\n", write_eml(message))
    raw = re.sub(rb"(?m)^\.", b"..", raw)
    if not raw.endswith(b"\r\n"):
        raw += b"\r\n"
    return raw + b".\r\n"


def _reply(code: int, text: bytes | str) -> str:
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    return f"{code} {' '.join(text.split())}".strip()


def _network_error(exc: BaseException) -> str:
    if isinstance(exc, smtplib.SMTPServerDisconnected) and isinstance(exc.__context__, OSError):
        exc = exc.__context__  # smtplib turns a timeout or a reset into "Connection unexpectedly closed"
    if isinstance(exc, ConnectionRefusedError):
        return "连接被拒绝(服务器未开启或端口不对)"
    if isinstance(exc, TimeoutError | socket.timeout):
        return "连接超时(服务器没有应答)"
    if isinstance(exc, socket.gaierror):
        return "找不到该服务器(域名解析失败)"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"服务器证书校验失败({exc.verify_message})"
    if isinstance(exc, ssl.SSLError):
        return f"加密连接失败({exc.reason or exc})"
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        return f"服务器断开了连接({exc})" if str(exc) else "服务器断开了连接"
    if isinstance(exc, ConnectionError):
        return f"连接被对方重置或中断({exc.strerror or exc})"
    return f"{type(exc).__name__}: {exc}"
