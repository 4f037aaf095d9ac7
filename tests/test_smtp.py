"""Sending the e-mails: how a real SMTP server's answers (aiosmtpd on 127.0.0.1) become one outcome per
recipient, over plain, implicit-TLS and STARTTLS connections."""

from __future__ import annotations

import dataclasses
import socket
import ssl
import subprocess
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from pipeline.campaign import config
from pipeline.io import smtp
from pipeline.render import letters
from tests.conftest import require_program
from tests.smtpserver import Script, Server, free_port
from tests.test_mail import ANNOTATED, WORKBOOK, attachments, feedback, parsed


@pytest.fixture
def haikou(rules: config.Rules) -> config.Unit:
    return rules.unit("460100")


def test_password_comes_from_the_environment(rules: config.Rules, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(rules.mail.password_env, "s3cret")
    assert smtp.password_from_env(rules.mail) == "s3cret"
    monkeypatch.delenv(rules.mail.password_env)
    assert smtp.password_from_env(rules.mail) is None


# --- a real SMTP server ----------------------------------------------------------------------------------


def two_recipients(message: EmailMessage) -> EmailMessage:
    del message["To"]
    message["To"] = "海口市总工会 <haikou@example.org>, 三亚市总工会 <sanya@example.org>"
    return message


def test_delivered_feedback_arrives_intact(server: Server, rules: config.Rules, haikou: config.Unit) -> None:
    message = feedback(rules, haikou)
    [outcome] = smtp.send(server.mail, message, timeout=5)
    assert outcome == smtp.Outcome("haikou@example.org", "sent", 250, outcome.detail)
    assert "250" in outcome.detail
    [envelope] = server.script.received
    assert envelope.mail_from == "songwennuan@example.org"
    assert envelope.rcpt_tos == ["haikou@example.org"]
    assert isinstance(envelope.original_content, bytes)
    assert envelope.original_content == letters.write_eml(message)
    got = parsed(envelope.original_content)
    assert got["Subject"] == "【送温暖统计表未通过】海口市总工会:请于2月5日前改正后重新报送"
    assert got["To"].addresses[0].display_name == "海口市总工会"
    assert got["Reply-To"] == "flbzb@sina.com"
    assert attachments(got)[0][0] == ANNOTATED
    assert attachments(got)[0][2] == WORKBOOK


def test_an_injected_bcc_reaches_nobody(server: Server, rules: config.Rules, haikou: config.Unit) -> None:
    evil = dataclasses.replace(haikou, name="海口市总工会\r\nBcc: evil@example.org")
    assert [o.recipient for o in smtp.send(server.mail, feedback(rules, evil), timeout=5)] == [
        "haikou@example.org"
    ]
    assert server.script.received[0].rcpt_tos == ["haikou@example.org"]


def test_a_dry_run_file_sends_the_same_bytes(
    server: Server, rules: config.Rules, haikou: config.Unit
) -> None:
    eml = letters.write_eml(feedback(rules, haikou))
    reread = message_from_bytes(eml, _class=EmailMessage, policy=policy.SMTP)
    assert isinstance(reread, EmailMessage)
    assert [o.status for o in smtp.send(server.mail, reread, timeout=5)] == ["sent"]
    assert server.script.received[0].original_content == eml


def test_login_when_a_password_is_given(server: Server, rules: config.Rules, haikou: config.Unit) -> None:
    with_user = dataclasses.replace(server.mail, username="songwennuan@example.org")
    assert smtp.send(with_user, feedback(rules, haikou), password="s3cret", timeout=5)[0].status == "sent"
    assert server.script.logins == [(b"songwennuan@example.org", b"s3cret")]
    [wrong] = smtp.send(with_user, feedback(rules, haikou), password="wrong", timeout=5)
    assert (wrong.status, wrong.code) == ("tempfail", 535)
    assert "密码" in wrong.detail
    assert len(server.script.received) == 1


def test_451_at_data_is_retried_on_the_next_call(
    server: Server, rules: config.Rules, haikou: config.Unit
) -> None:
    server.script.data = ["451 4.3.0 稍后再试"]
    message = feedback(rules, haikou)
    [first] = smtp.send(server.mail, message, timeout=5)
    assert (first.status, first.code) == ("tempfail", 451)
    assert "稍后再试" in first.detail
    assert server.script.received == []
    [second] = smtp.send(server.mail, message, timeout=5)
    assert (second.status, second.code) == ("sent", 250)
    assert len(server.script.received) == 1


def test_554_at_data_is_refused(server: Server, rules: config.Rules, haikou: config.Unit) -> None:
    server.script.data = ["554 5.7.1 Message rejected as spam"]
    [outcome] = smtp.send(server.mail, feedback(rules, haikou), timeout=5)
    assert (outcome.status, outcome.code) == ("refused", 554)


def test_550_at_rcpt_refuses_that_recipient_only(
    server: Server, rules: config.Rules, haikou: config.Unit
) -> None:
    server.script.rcpt["sanya@example.org"] = "550 5.1.1 No such user"
    outcomes = smtp.send(server.mail, two_recipients(feedback(rules, haikou)), timeout=5)
    assert [(o.recipient, o.status, o.code) for o in outcomes] == [
        ("haikou@example.org", "sent", 250),
        ("sanya@example.org", "refused", 550),
    ]
    assert "No such user" in outcomes[1].detail
    assert server.script.received[0].rcpt_tos == ["haikou@example.org"]


def test_451_at_rcpt_is_tempfail_for_that_recipient(
    server: Server, rules: config.Rules, haikou: config.Unit
) -> None:
    server.script.rcpt["haikou@example.org"] = "451 4.7.1 Greylisted"
    outcomes = smtp.send(server.mail, two_recipients(feedback(rules, haikou)), timeout=5)
    assert [(o.status, o.code) for o in outcomes] == [("tempfail", 451), ("sent", 250)]


def test_every_recipient_refused_sends_nothing(
    server: Server, rules: config.Rules, haikou: config.Unit
) -> None:
    server.script.rcpt["haikou@example.org"] = "550 5.1.1 No such user"
    [outcome] = smtp.send(server.mail, feedback(rules, haikou), timeout=5)
    assert (outcome.status, outcome.code) == ("refused", 550)
    assert server.script.received == []


def test_connection_closed_before_the_final_reply_is_tried_again(
    server: Server, rules: config.Rules, haikou: config.Unit
) -> None:
    """The server hangs up without answering the final dot: it has not taken the message on (RFC 5321 6.1),
    so the message is a temporary failure, tried again, not left to staff as "unknown"."""
    server.script.data = ["drop"]
    [outcome] = smtp.send(server.mail, feedback(rules, haikou), timeout=5)
    assert (outcome.status, outcome.code) == ("tempfail", None)
    assert "未确认收到" in outcome.detail and "下次运行时重试" in outcome.detail


def test_no_answer_to_the_final_dot_by_the_deadline_is_unknown(
    rules: config.Rules, haikou: config.Unit
) -> None:
    """A server that takes the whole message and then says nothing: the wait ends at the run's deadline, and
    the message may have arrived: staff decide (pipeline mail --unknown)."""
    import threading
    import time

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)

        def serve() -> None:
            conn, _ = listener.accept()
            with conn, conn.makefile("rb") as lines:
                conn.sendall(b"220 mute ESMTP\r\n")
                for line in lines:
                    if line.upper().startswith((b"EHLO", b"HELO")):
                        conn.sendall(b"250 mute\r\n")
                    elif line.upper().startswith((b"MAIL", b"RCPT")):
                        conn.sendall(b"250 OK\r\n")
                    elif line.upper().startswith(b"DATA"):
                        conn.sendall(b"354 go on\r\n")
                    elif line == b".\r\n":
                        time.sleep(10)  # the message is in; the answer never comes
                        return

        threading.Thread(target=serve, daemon=True).start()
        mute = dataclasses.replace(
            rules.mail, smtp_host="127.0.0.1", smtp_port=listener.getsockname()[1], tls="none"
        )
        start = time.monotonic()
        [outcome] = smtp.send(mute, feedback(rules, haikou), timeout=30, deadline=time.monotonic() + 2)
    assert time.monotonic() - start < 5
    assert (
        outcome.status == "unknown"
        and "可能已经送达" in outcome.detail
        and "pipeline mail --unknown" in outcome.detail
    )


def test_nothing_listening_is_tempfail(rules: config.Rules, haikou: config.Unit) -> None:
    closed = dataclasses.replace(rules.mail, smtp_host="127.0.0.1", smtp_port=free_port(), tls="none")
    [outcome] = smtp.send(closed, feedback(rules, haikou), timeout=5)
    assert (outcome.recipient, outcome.status, outcome.code) == ("haikou@example.org", "tempfail", None)
    assert "连接被拒绝" in outcome.detail


def test_a_server_that_never_answers_is_tempfail(rules: config.Rules, haikou: config.Unit) -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)  # the connection completes in the backlog; no greeting ever comes
        mute = dataclasses.replace(
            rules.mail, smtp_host="127.0.0.1", smtp_port=silent.getsockname()[1], tls="none"
        )
        [outcome] = smtp.send(mute, feedback(rules, haikou), timeout=0.5)
    assert (outcome.status, outcome.code) == ("tempfail", None)
    assert "超时" in outcome.detail


# --- TLS: implicit (port 465) and STARTTLS, against a certificate made for 127.0.0.1 --------------------


@pytest.fixture(scope="session")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    openssl = require_program("openssl", "openssl")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True, timeout=30,
    )  # fmt: skip
    return cert, key


@pytest.mark.parametrize("tls", ["ssl", "starttls"])
def test_tls_modes_deliver_and_verify_the_server(
    tls: str, certificate: tuple[Path, Path], rules: config.Rules, haikou: config.Unit
) -> None:
    cert, key = certificate
    served = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    served.load_cert_chain(cert, key)
    script = Script()
    port = free_port()
    tls_options: dict[str, Any] = (
        {"ssl_context": served} if tls == "ssl" else {"tls_context": served, "require_starttls": True}
    )
    controller = Controller(script, hostname="127.0.0.1", port=port, ready_timeout=5, **tls_options)
    controller.start()
    try:
        settings = dataclasses.replace(
            rules.mail, smtp_host="127.0.0.1", smtp_port=port, tls=tls, username=""
        )
        trusting = ssl.create_default_context(cafile=str(cert))
        [sent] = smtp.send(settings, feedback(rules, haikou), timeout=5, context=trusting)
        assert (sent.status, sent.code) == ("sent", 250)
        assert len(script.received) == 1
        # the system's CAs do not know this certificate: nothing is sent, and it is worth another try
        [untrusted] = smtp.send(settings, feedback(rules, haikou), timeout=5)
        assert (untrusted.status, untrusted.code) == ("tempfail", None)
        assert "证书" in untrusted.detail
        assert len(script.received) == 1
    finally:
        controller.stop()


def test_an_edited_eml_whose_recipient_is_not_one_plain_address_is_refused(
    rules: config.Rules, haikou: config.Unit
) -> None:
    eml = letters.write_eml(feedback(rules, haikou))
    edited = eml.replace(
        b"<haikou@example.org>", b"<haikou@example.org>, =?utf-8?b?5rW35Y+j?=@example.org", 1
    )
    message = message_from_bytes(edited, _class=EmailMessage, policy=policy.SMTP)
    assert isinstance(message, EmailMessage)
    closed = dataclasses.replace(rules.mail, smtp_host="127.0.0.1", smtp_port=free_port(), tls="none")
    with pytest.raises(ValueError, match="邮箱地址"):
        smtp.send(closed, message, timeout=5)
