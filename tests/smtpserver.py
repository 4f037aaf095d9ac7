"""A real SMTP server for tests: aiosmtpd on 127.0.0.1, answering as a test's `Script` tells it to (the
`server` fixture in conftest.py)."""

from __future__ import annotations

import contextlib
import dataclasses
import socket
from collections.abc import Iterator
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, Envelope

from pipeline.campaign import config


class Script:
    """An aiosmtpd handler that keeps what it received and answers as a test tells it to."""

    def __init__(self) -> None:
        self.received: list[Envelope] = []
        self.rcpt: dict[str, str] = {}  # address -> reply instead of 250
        self.data: list[str] = []  # replies to the coming ends of DATA, in turn; "drop" hangs up instead
        self.logins: list[tuple[bytes, bytes]] = []

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        if address in self.rcpt:
            return self.rcpt[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Envelope) -> str:
        action = self.data.pop(0) if self.data else "250 2.0.0 OK queued"
        if action == "drop":
            # The whole message arrived; the answer never leaves.
            self.received.append(envelope)
            server.transport.abort()
            return "250 OK"
        if action.startswith("2"):
            self.received.append(envelope)
        return action

    def authenticate(
        self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        self.logins.append((auth_data.login, auth_data.password))
        return AuthResult(success=auth_data.password == b"s3cret", handled=False)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclasses.dataclass
class Server:
    script: Script
    mail: config.Mail


@contextlib.contextmanager
def serving(mail: config.Mail) -> Iterator[Server]:
    """An aiosmtpd on a free port of 127.0.0.1 (login optional, password s3cret) while the block runs; `mail`
    pointed at it."""
    script = Script()
    port = free_port()
    controller = Controller(
        script,
        hostname="127.0.0.1",
        port=port,
        authenticator=script.authenticate,
        auth_require_tls=False,
        ready_timeout=5,
    )
    controller.start()
    try:
        yield Server(
            script, dataclasses.replace(mail, smtp_host="127.0.0.1", smtp_port=port, tls="none", username="")
        )
    finally:
        controller.stop()
