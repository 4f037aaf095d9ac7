"""Sending the e-mails the render layer built, over SMTP, with an outcome for each recipient.

The conversation goes one step at a time so that a failure is classed by where it happened: before the
end of DATA nothing was delivered and the message can be retried; once the final dot has gone and no
answer came back in time it may have been delivered, and only staff can decide to send it again; a
connection the server closes before answering the final dot delivered nothing (RFC 5321 4.1.1.4), and the
message is tried again. Takes an `EmailMessage` as the ledger keeps it, the recipients the ledger names,
the campaign's `Mail` settings, and the moment by which the run's sending must end.
"""

from __future__ import annotations

import os
import re
import smtplib
import ssl
import time
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage
from email.utils import getaddresses

from pipeline.campaign.config import Mail
from pipeline.io import network
from pipeline.model import EMAIL_ADDRESS, MessageStatus

SENT = MessageStatus.SENT
TEMPFAIL = MessageStatus.TEMPFAIL  # nothing was delivered: try again on the next run
REFUSED = MessageStatus.REFUSED  # the server said no for good (5xx): do not retry
UNKNOWN = MessageStatus.UNKNOWN  # the connection died after the whole message went: may have been delivered

# RFC 5321 4.5.3.2.6 lets a server take 10 minutes to answer the end of DATA (virus and spam scans);
# giving up earlier turns a delivered message into "unknown", which costs staff a decision.
FINAL_REPLY_TIMEOUT = 120.0


@dataclass(frozen=True)
class Outcome:
    recipient: str
    status: MessageStatus  # sent / tempfail / refused / unknown
    code: int | None
    detail: str
    reached: bool = True  # False when the server could not be reached at all: no use trying others now


def password_from_env(mail: Mail) -> str | None:
    return os.environ.get(mail.password_env) or None


def send(
    mail: Mail,
    message: EmailMessage,
    *,
    recipients: list[str] | None = None,
    password: str | None = None,
    timeout: float = 30,
    deadline: float | None = None,
    context: ssl.SSLContext | None = None,
) -> list[Outcome]:
    """Deliver one message to `recipients` (by default those its headers name); one Outcome per
    recipient, never an exception for a network or server failure (a malformed address still raises
    ValueError). No step waits past `deadline` (time.monotonic()).

    `context` verifies the server for tls ssl/starttls; by default the system's CAs and the host name.
    """
    context = context or ssl.create_default_context()
    sender, named = _envelope(message)
    recipients = [_address(r, "收件人") for r in recipients] if recipients is not None else named
    data = _data(message)
    where = f"{mail.smtp_host}:{mail.smtp_port}"
    if deadline is not None:
        timeout = max(1.0, min(timeout, deadline - time.monotonic()))

    def everyone(status: MessageStatus, code: int | None, detail: str) -> list[Outcome]:
        return [Outcome(r, status, code, detail, reached=False) for r in recipients]

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
        return _transaction(smtp, mail, password, context, sender, recipients, data, timeout, deadline)
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
    deadline: float | None,
) -> list[Outcome]:
    """The conversation after the greeting, step by step: session, MAIL FROM, RCPT TO each recipient, DATA,
    the message and its final reply. Longer than a function should be, and kept in one piece: each
    failure is classed (tempfail, refused, unknown) right at the step it follows, which is the point."""
    outcomes: dict[str, Outcome] = {}

    def result() -> list[Outcome]:
        return [outcomes[r] for r in recipients]

    def rest(status: MessageStatus, code: int | None, detail: str) -> list[Outcome]:
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
        return rest(TEMPFAIL, None, f"与邮件服务器建立加密连接失败:{_network_error(exc)}")
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
    wait = max(timeout, FINAL_REPLY_TIMEOUT)
    if deadline is not None:
        wait = max(1.0, min(wait, deadline - time.monotonic()))
    try:
        if smtp.sock is not None:
            smtp.sock.settimeout(wait)
        code, text = smtp.getreply()
    except (OSError, smtplib.SMTPException) as exc:
        if isinstance(exc, TimeoutError) or isinstance(exc.__context__, TimeoutError):
            return rest(
                UNKNOWN,
                None,
                f"邮件内容已发出,但 {wait:.0f} 秒内没有等到服务器确认,可能已经送达;"
                "为免重复,不会自动重发,请用 pipeline mail --unknown 核对",
            )
        # The server closed the connection without answering the final dot: it must not deliver it.
        return rest(
            TEMPFAIL,
            None,
            f"发送邮件内容时服务器断开了连接({_network_error(exc)}),未确认收到,下次运行时重试",
        )
    if 200 <= code < 300:
        return rest(SENT, code, f"已送达邮件服务器:{_reply(code, text)}")
    if 400 <= code < 500:
        return rest(TEMPFAIL, code, f"邮件服务器暂时不接收:{_reply(code, text)},下次运行时重试")
    if 500 <= code < 600:
        return rest(REFUSED, code, f"邮件服务器拒收本邮件:{_reply(code, text)}")
    return rest(UNKNOWN, code, f"邮件服务器的回答无法识别:{_reply(code, text)},请人工确认是否送达")


def _address(addr: str, what: str) -> str:
    """A header's address as the envelope carries it; ValueError for anything but one plain address (the
    message may have been read back from an .eml file that someone edited)."""
    addr = addr.strip()
    if not EMAIL_ADDRESS.fullmatch(addr):
        raise ValueError(f"{what}的邮箱地址 {addr!r} 不是一个有效地址,应形如 name@example.org")
    return addr


def _envelope(message: EmailMessage) -> tuple[str, list[str]]:
    senders = getaddresses([str(v) for v in message.get_all("From", [])])
    if len(senders) != 1:
        raise ValueError("邮件应当恰有一个发件人(From)")
    sender = _address(senders[0][1], "发件人")
    recipients: list[str] = []
    for header in ("To", "Cc", "Bcc"):
        for _, addr in getaddresses([str(v) for v in message.get_all(header, [])]):
            addr = _address(addr, "收件人")
            if addr not in recipients:
                recipients.append(addr)
    if not recipients:
        raise ValueError("邮件没有收件人")
    return sender, recipients


def _data(message: EmailMessage) -> bytes:
    """The DATA payload: CRLF lines, leading dots doubled, then the end-of-data line."""
    if message.get("Bcc") is not None:
        message = message_from_bytes(
            message.as_bytes(policy=policy.SMTP), _class=EmailMessage, policy=policy.SMTP
        )
        del message["Bcc"]
    raw = re.sub(rb"\r\n|\r|\n", b"\r\n", message.as_bytes(policy=policy.SMTP))
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
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        return f"服务器断开了连接({exc})" if str(exc) else "服务器断开了连接"
    return network.why(exc, "mail.tls")
