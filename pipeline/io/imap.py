"""The campaign mailbox over IMAP, only ever read: the folder is EXAMINEd (read-only), messages are fetched
with BODY.PEEK so that not even \\Seen is set, and nothing is stored, moved or expunged there.

Through imapclient, which parses FETCH responses and speaks IDLE (the standard library's imaplib has
IDLE only from Python 3.14). Errors come out as `MailboxError` with a message staff can act on.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ssl
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from pipeline.campaign.config import Mail
from pipeline.io import network
from pipeline.model import Refused

TIMEOUT = 60.0  # seconds for connecting and for each command


class MailboxError(Refused):
    """The mailbox cannot be reached or read; the message says why, in Chinese."""


@dataclass(frozen=True)
class Fetched:
    uid: int
    raw: bytes
    received: dt.datetime | None  # INTERNALDATE: when the server took the message in


def describe(mail: Mail) -> str:
    """The mailbox's identity in the ledger: a UID means something only within one host, user and folder."""
    return f"{mail.imap_user}@{mail.imap_host}:{mail.imap_port}/{mail.imap_folder}"


class Mailbox:
    """One connection to the campaign's folder, opened read-only."""

    def __init__(self, mail: Mail, password: str, context: ssl.SSLContext | None = None):
        from imapclient import IMAPClient
        from imapclient.exceptions import IMAPClientError

        self.mail = mail
        self.name = describe(mail)
        where = f"{mail.imap_host}:{mail.imap_port}"
        context = context or ssl.create_default_context()
        try:
            self.client = IMAPClient(
                mail.imap_host,
                port=mail.imap_port,
                ssl=mail.imap_tls == "ssl",
                ssl_context=context,
                timeout=TIMEOUT,
            )
        except (OSError, IMAPClientError) as exc:
            raise MailboxError(f"无法连接收信服务器 {where}:{_why(exc)}") from None
        self.client.normalise_times = False  # INTERNALDATE with its zone, not turned into local time
        try:
            if mail.imap_tls == "starttls":
                self.client.starttls(context)
            self.client.login(mail.imap_user, password)
            selected = self.client.select_folder(mail.imap_folder, readonly=True)
        except IMAPClientError as exc:
            self.close()
            text = str(exc)
            if "login" in text.lower() or "authenticat" in text.lower():
                raise MailboxError(
                    f"登录收信服务器 {where} 失败,请检查 mail.imap_user 和密码(授权码):{text}"
                ) from None
            raise MailboxError(f"无法打开邮箱文件夹 {mail.imap_folder}:{text}") from None
        except (OSError, ssl.SSLError) as exc:
            self.close()
            raise MailboxError(f"与收信服务器 {where} 的连接中断:{_why(exc)}") from None
        self.uidvalidity = int(selected[b"UIDVALIDITY"])

    def __enter__(self) -> Mailbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        try:
            self.client.logout()
        except Exception:  # the connection may be gone already; nothing is left to save
            with contextlib.suppress(Exception):
                self.client.shutdown()

    def uids(self) -> list[int]:
        """Every message's UID in the folder, in order."""
        return sorted(int(u) for u in self._call(self.client.search, ["ALL"]))

    def fetch(self, uids: list[int]) -> Iterator[Fetched]:
        """The messages' bytes (BODY.PEEK: their flags stay as they are), a few at a time."""
        for i in range(0, len(uids), 20):
            chunk = uids[i : i + 20]
            got = self._call(self.client.fetch, chunk, ["BODY.PEEK[]", "INTERNALDATE"])
            for uid in chunk:
                data = got.get(uid)
                if data is None:  # expunged meanwhile
                    continue
                when = data.get(b"INTERNALDATE")
                yield Fetched(
                    uid, bytes(data.get(b"BODY[]") or b""), when if isinstance(when, dt.datetime) else None
                )

    def wait(self, seconds: float, stopped: Callable[[], bool] = lambda: False) -> bool:
        """Wait up to `seconds` for the server to announce a new message (IMAP IDLE); True when it did.
        `stopped()` is asked every second, and ends the wait."""
        end = time.monotonic() + seconds
        try:
            self.client.idle()
            try:
                while not stopped() and time.monotonic() < end:
                    responses = self.client.idle_check(timeout=1.0)
                    if any(
                        isinstance(r, tuple) and len(r) > 1 and r[1] in (b"EXISTS", b"RECENT")
                        for r in responses
                    ):
                        return True
            finally:
                self.client.idle_done()
        except Exception as exc:
            raise MailboxError(f"与收信服务器的连接中断:{_why(exc)}") from None
        return False

    def _call(self, method: Any, *args: Any) -> Any:
        try:
            return method(*args)
        except Exception as exc:  # imapclient's errors, a reset socket, a timeout
            raise MailboxError(f"读取邮箱时出错:{_why(exc)}") from None


def _why(exc: BaseException) -> str:
    return network.why(exc, "mail.imap_tls")
