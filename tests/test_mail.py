"""Feedback and reminder e-mails: what they say, that they cannot be bent into other headers, and how a
real SMTP server's answers (aiosmtpd on 127.0.0.1) become outcomes."""

from __future__ import annotations

import dataclasses
import datetime as dt
import socket
import ssl
import subprocess
from collections.abc import Iterator
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import jinja2
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, Envelope

from pipeline.campaign import config
from pipeline.model import Finding, Severity
from pipeline.render import mail
from tests.conftest import require_program

SHANGHAI = dt.timezone(dt.timedelta(hours=8))
NOW = dt.datetime(2017, 1, 20, 10, 30, tzinfo=SHANGHAI)
FILE = "海口市总工会_附件1_2016年工会送温暖统计表.xlsx"
ANNOTATED = "海口市总工会_附件1_2016年工会送温暖统计表_校验结果.xlsx"
WORKBOOK = b"PK\x03\x04" + bytes(range(256)) * 40 + b"\r\n.\r\n.leading dot\n"
FINDINGS = (
    Finding("W-per-head", Severity.WARNING, "人均慰问金额 12.00 万元,超出 0.005–1 万元", "送温暖统计表", "J9"),
    Finding("W-total", Severity.ERROR, "合计行 慰问困难职工(户) 为 120,各行之和为 118", "送温暖统计表", "C16"),
    Finding("R-required", Severity.ERROR, "未填写单位负责人", "送温暖统计表", "C22"),
)


def parsed(data: bytes) -> EmailMessage:
    message = message_from_bytes(data, _class=EmailMessage, policy=policy.default)
    assert isinstance(message, EmailMessage)
    return message


def body_of(message: EmailMessage) -> str:
    part = message.get_body(("plain",))
    assert part is not None
    return str(part.get_content())


def attachments(message: EmailMessage) -> list[tuple[str | None, str, bytes]]:
    found = []
    for part in message.iter_attachments():
        payload = part.get_payload(decode=True)
        assert isinstance(payload, bytes)
        found.append((part.get_filename(), part.get_content_type(), payload))
    return found


@pytest.fixture
def haikou(rules: config.Rules) -> config.Unit:
    return rules.unit("460100")


def feedback(rules: config.Rules, unit: config.Unit, **changes: Any) -> EmailMessage:
    arguments: dict[str, Any] = dict(
        file_name=FILE, verdict="rejected", findings=FINDINGS, attachment=(ANNOTATED, WORKBOOK), now=NOW
    )
    arguments.update(changes)
    return mail.feedback_message(rules, unit, **arguments)


# --- what the messages say -------------------------------------------------------------------------------


def test_rejected_feedback_says_what_to_do(rules: config.Rules, haikou: config.Unit) -> None:
    message = parsed(mail.write_eml(feedback(rules, haikou)))
    assert message["Subject"] == "【送温暖统计表未通过】海口市总工会:请于2月5日前改正后重新报送"
    assert message["To"].addresses[0].display_name == "海口市总工会"
    assert message["To"].addresses[0].addr_spec == "haikou@example.org"
    assert message["From"].addresses[0].display_name == "海南省总工会法律保障工作部"
    assert message["Reply-To"] == "flbzb@sina.com"
    assert message["Date"].datetime == NOW
    assert message["Auto-Submitted"] == "auto-generated"
    body = body_of(message)
    assert body.startswith("海口市总工会:")
    assert FILE in body
    assert "校验结论:未通过(错误 2 处,提醒 1 处)" in body
    # errors first, in their own order, then the warning
    lines = [line for line in body.splitlines() if line[:2] in ("1.", "2.", "3.") and "【" in line]
    assert lines == [
        "1. 【错误】送温暖统计表!C16:合计行 慰问困难职工(户) 为 120,各行之和为 118",
        "2. 【错误】送温暖统计表!C22:未填写单位负责人",
        "3. 【提醒】送温暖统计表!J9:人均慰问金额 12.00 万元,超出 0.005–1 万元",
    ]
    assert "标红" in body and "flbzb@sina.com" in body and ANNOTATED in body and "填报说明" in body
    assert "报送截止时间:2017年2月5日(距截止还有 16 天)" in body
    assert "海南省总工会法律保障工作部" in body and "联系电话:0898-66553663" in body
    assert attachments(message) == [
        (ANNOTATED, "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", WORKBOOK)
    ]


def test_accepted_with_warnings_names_the_warnings(rules: config.Rules, haikou: config.Unit) -> None:
    message = feedback(rules, haikou, verdict="accepted", findings=FINDINGS[:1])
    assert message["Subject"] == "【送温暖统计表已通过(有提醒)】海口市总工会:请核实提醒事项"
    body = body_of(message)
    assert "校验结论:已通过(有提醒)(错误 0 处,提醒 1 处)" in body
    assert "本表已通过" in body and "填报说明" in body


def test_second_version_past_deadline(rules: config.Rules, haikou: config.Unit) -> None:
    late = dt.datetime(2017, 2, 8, 9, 0, tzinfo=SHANGHAI)
    message = feedback(rules, haikou, now=late, version=2)
    assert message["Subject"] == "【送温暖统计表(第2版)未通过】海口市总工会:已过截止时间,请尽快改正后重新报送"
    assert "已过截止时间 3 天" in body_of(message)


def test_deadline_day_in_the_campaign_time_zone(rules: config.Rules, haikou: config.Unit) -> None:
    # 2017-02-04 17:00 UTC is already the 5th in Shanghai
    utc = dt.datetime(2017, 2, 4, 17, 0, tzinfo=dt.UTC)
    message = feedback(rules, haikou, now=utc)
    assert "(今天截止)" in body_of(message)
    assert message["Date"] == "Sun, 05 Feb 2017 01:00:00 +0800"


def test_form_is_recognised_from_the_findings_or_the_file_name(
    rules: config.Rules, haikou: config.Unit
) -> None:
    center = [Finding("C-new", Severity.ERROR, "当年新建档大于年末建档", "帮扶中心统计表", "C5")]
    assert str(feedback(rules, haikou, findings=center)["Subject"]).startswith("【帮扶中心统计表未通过】")
    unreadable = [Finding("F-encrypted", Severity.ERROR, "文件设置了打开密码")]
    message = feedback(
        rules,
        haikou,
        verdict="unreadable",
        findings=unreadable,
        attachment=None,
        file_name="海口市_附件2_2016年度困难职工帮扶中心工作统计表.xlsx",
    )
    assert message["Subject"] == "【帮扶中心统计表无法读取】海口市总工会:请于2月5日前重新报送"
    assert "1. 【错误】整个文件:文件设置了打开密码" in body_of(message)
    assert not message.is_multipart()
    assert str(feedback(rules, haikou, item="center")["Subject"]).startswith("【帮扶中心统计表未通过】")


def test_reminder_lists_what_is_owed(rules: config.Rules, haikou: config.Unit) -> None:
    message = parsed(
        mail.write_eml(
            mail.reminder_message(
                rules, haikou, items=[("送温暖统计表", "未报送"), ("帮扶中心统计表", "未通过")], now=NOW
            )
        )
    )
    assert message["Subject"] == "【催报】海口市总工会:送温暖统计表、帮扶中心统计表尚未完成,请于2月5日前报送"
    body = body_of(message)
    assert "1. 送温暖统计表:未报送" in body and "2. 帮扶中心统计表:未通过" in body
    assert "截至2017年1月20日 10:30" in body and "距截止还有 16 天" in body
    assert message["Reply-To"] == "flbzb@sina.com"
    late = mail.reminder_message(
        rules, haikou, items=[("送温暖报告", "逾期")], now=NOW + dt.timedelta(days=20)
    )
    assert str(late["Subject"]).startswith("【逾期催报】海口市总工会:送温暖报告尚未完成")


def test_same_inputs_give_the_same_eml_bytes(rules: config.Rules, haikou: config.Unit) -> None:
    first = mail.write_eml(feedback(rules, haikou))
    assert mail.write_eml(feedback(rules, haikou)) == first
    again = mail.write_eml(parsed(first))  # the dry-run file read back and written again
    assert parsed(again)["Message-ID"] == parsed(first)["Message-ID"]
    later = parsed(mail.write_eml(feedback(rules, haikou, now=NOW + dt.timedelta(hours=1))))
    assert later["Message-ID"] != parsed(first)["Message-ID"]
    assert str(parsed(first)["Message-ID"]).endswith("@example.org>")
    reminder = mail.reminder_message(rules, haikou, items=[("送温暖统计表", "未报送")], now=NOW)
    assert mail.write_eml(reminder) == mail.write_eml(
        mail.reminder_message(rules, haikou, items=[("送温暖统计表", "未报送")], now=NOW)
    )


def test_eml_is_crlf_and_seven_bit(rules: config.Rules, haikou: config.Unit) -> None:
    data = mail.write_eml(feedback(rules, haikou))
    data.decode("ascii")
    assert data.count(b"\n") == data.count(b"\r\n")
    # RFC 5322 asks for 78 at most; only a content type with no place to fold is longer
    long = [line for line in data.split(b"\r\n") if len(line) > 78]
    assert long == [b"Content-Type: application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"]


def test_naive_time_is_refused(rules: config.Rules, haikou: config.Unit) -> None:
    with pytest.raises(ValueError, match="时区"):
        feedback(rules, haikou, now=NOW.replace(tzinfo=None))


# --- header injection ------------------------------------------------------------------------------------


def test_newlines_in_a_unit_name_do_not_make_headers(rules: config.Rules, haikou: config.Unit) -> None:
    evil = dataclasses.replace(haikou, name="海口市总工会\r\nBcc: evil@example.org")
    data = mail.write_eml(feedback(rules, evil))
    assert b"\r\nBcc:" not in data and b"\nBcc:" not in data
    message = parsed(data)
    assert message["Bcc"] is None
    assert [a.addr_spec for a in message["To"].addresses] == ["haikou@example.org"]
    assert message["To"].addresses[0].display_name == "海口市总工会 Bcc: evil@example.org"
    assert "\n" not in str(message["Subject"])


def test_newline_in_a_file_name_stays_inside_the_filename(rules: config.Rules, haikou: config.Unit) -> None:
    data = mail.write_eml(
        feedback(
            rules,
            haikou,
            file_name="海口\n市.xlsx",
            attachment=("海口\r\nContent-Type: text/html\n/../x.xlsx", WORKBOOK),
        )
    )
    message = parsed(data)
    [(name, kind, content)] = attachments(message)
    assert name == "海口 Content-Type: text_html _.._x.xlsx"
    assert kind == "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet" and content == WORKBOOK
    assert "    海口 市.xlsx" in body_of(message)


@pytest.mark.parametrize(
    "address",
    [
        "haikou@example.org\r\nBcc: evil@example.org",
        "haikou@example.org\nBcc: evil@example.org",
        "haikou@example.org, evil@example.org",
        "Evil <evil@example.org>",
        "haikou<evil@example.org>@example.org",
        "海口@example.org",
        "not-an-address",
    ],
)
def test_an_address_that_could_carry_headers_is_refused(
    rules: config.Rules, haikou: config.Unit, address: str
) -> None:
    with pytest.raises(ValueError, match="邮箱地址"):
        feedback(rules, dataclasses.replace(haikou, email=address))


def test_a_sender_with_a_newline_is_refused(rules: config.Rules, haikou: config.Unit) -> None:
    bad = dataclasses.replace(
        rules, mail=dataclasses.replace(rules.mail, sender="省总 <a@example.org>\r\nBcc: x@y.org")
    )
    with pytest.raises(ValueError, match="换行"):
        feedback(bad, haikou)


def test_sender_written_with_or_without_a_name() -> None:
    assert mail.parse_mailbox("海南省总工会 <a@example.org>", "发件人").display_name == "海南省总工会"
    assert mail.parse_mailbox('"省总, 法律部" <a@example.org>', "发件人").display_name == "省总, 法律部"
    assert mail.parse_mailbox(" a@example.org ", "发件人").addr_spec == "a@example.org"


# --- templates -------------------------------------------------------------------------------------------


def test_templates_refuse_a_missing_variable() -> None:
    env = mail.environment()
    assert env.undefined is jinja2.StrictUndefined
    with pytest.raises(jinja2.UndefinedError):
        mail.render("feedback_subject.txt.j2", item_label="送温暖统计表", version=1, verdict="rejected")
    with pytest.raises(jinja2.UndefinedError):
        mail.render("reminder_body.txt.j2")


def test_html_would_be_escaped_and_text_is_not() -> None:
    env = mail.environment()
    assert env.from_string("{{ x }}").render(x="<b>") == "<b>"
    auto = env.autoescape
    assert callable(auto)
    assert auto("feedback_body.html.j2") and auto("x.html")
    assert not auto("feedback_body.txt.j2")


def test_password_comes_from_the_environment(rules: config.Rules, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(rules.mail.password_env, "s3cret")
    assert mail.password_from_env(rules.mail) == "s3cret"
    monkeypatch.delenv(rules.mail.password_env)
    assert mail.password_from_env(rules.mail) is None


# --- a real SMTP server ----------------------------------------------------------------------------------


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


@pytest.fixture
def server(rules: config.Rules) -> Iterator[Server]:
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
            script,
            dataclasses.replace(rules.mail, smtp_host="127.0.0.1", smtp_port=port, tls="none", username=""),
        )
    finally:
        controller.stop()


def two_recipients(message: EmailMessage) -> EmailMessage:
    del message["To"]
    message["To"] = "海口市总工会 <haikou@example.org>, 三亚市总工会 <sanya@example.org>"
    return message


def test_delivered_feedback_arrives_intact(server: Server, rules: config.Rules, haikou: config.Unit) -> None:
    message = feedback(rules, haikou)
    [outcome] = mail.send(server.mail, message, timeout=5)
    assert outcome == mail.Outcome("haikou@example.org", "sent", 250, outcome.detail)
    assert "250" in outcome.detail
    [envelope] = server.script.received
    assert envelope.mail_from == "songwennuan@example.org"
    assert envelope.rcpt_tos == ["haikou@example.org"]
    assert isinstance(envelope.original_content, bytes)
    assert envelope.original_content == mail.write_eml(message)
    got = parsed(envelope.original_content)
    assert got["Subject"] == "【送温暖统计表未通过】海口市总工会:请于2月5日前改正后重新报送"
    assert got["To"].addresses[0].display_name == "海口市总工会"
    assert got["Reply-To"] == "flbzb@sina.com"
    assert attachments(got)[0][0] == ANNOTATED
    assert attachments(got)[0][2] == WORKBOOK


def test_an_injected_bcc_reaches_nobody(server: Server, rules: config.Rules, haikou: config.Unit) -> None:
    evil = dataclasses.replace(haikou, name="海口市总工会\r\nBcc: evil@example.org")
    assert [o.recipient for o in mail.send(server.mail, feedback(rules, evil), timeout=5)] == [
        "haikou@example.org"
    ]
    assert server.script.received[0].rcpt_tos == ["haikou@example.org"]


def test_a_dry_run_file_sends_the_same_bytes(
    server: Server, rules: config.Rules, haikou: config.Unit
) -> None:
    eml = mail.write_eml(feedback(rules, haikou))
    reread = message_from_bytes(eml, _class=EmailMessage, policy=policy.SMTP)
    assert isinstance(reread, EmailMessage)
    assert [o.status for o in mail.send(server.mail, reread, timeout=5)] == ["sent"]
    assert server.script.received[0].original_content == eml


def test_login_when_a_password_is_given(server: Server, rules: config.Rules, haikou: config.Unit) -> None:
    with_user = dataclasses.replace(server.mail, username="songwennuan@example.org")
    assert mail.send(with_user, feedback(rules, haikou), password="s3cret", timeout=5)[0].status == "sent"
    assert server.script.logins == [(b"songwennuan@example.org", b"s3cret")]
    [wrong] = mail.send(with_user, feedback(rules, haikou), password="wrong", timeout=5)
    assert (wrong.status, wrong.code) == ("tempfail", 535)
    assert "密码" in wrong.detail
    assert len(server.script.received) == 1


def test_451_at_data_is_retried_on_the_next_call(
    server: Server, rules: config.Rules, haikou: config.Unit
) -> None:
    server.script.data = ["451 4.3.0 稍后再试"]
    message = feedback(rules, haikou)
    [first] = mail.send(server.mail, message, timeout=5)
    assert (first.status, first.code) == ("tempfail", 451)
    assert "稍后再试" in first.detail
    assert server.script.received == []
    [second] = mail.send(server.mail, message, timeout=5)
    assert (second.status, second.code) == ("sent", 250)
    assert len(server.script.received) == 1


def test_554_at_data_is_refused(server: Server, rules: config.Rules, haikou: config.Unit) -> None:
    server.script.data = ["554 5.7.1 Message rejected as spam"]
    [outcome] = mail.send(server.mail, feedback(rules, haikou), timeout=5)
    assert (outcome.status, outcome.code) == ("refused", 554)


def test_550_at_rcpt_refuses_that_recipient_only(
    server: Server, rules: config.Rules, haikou: config.Unit
) -> None:
    server.script.rcpt["sanya@example.org"] = "550 5.1.1 No such user"
    outcomes = mail.send(server.mail, two_recipients(feedback(rules, haikou)), timeout=5)
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
    outcomes = mail.send(server.mail, two_recipients(feedback(rules, haikou)), timeout=5)
    assert [(o.status, o.code) for o in outcomes] == [("tempfail", 451), ("sent", 250)]


def test_every_recipient_refused_sends_nothing(
    server: Server, rules: config.Rules, haikou: config.Unit
) -> None:
    server.script.rcpt["haikou@example.org"] = "550 5.1.1 No such user"
    [outcome] = mail.send(server.mail, feedback(rules, haikou), timeout=5)
    assert (outcome.status, outcome.code) == ("refused", 550)
    assert server.script.received == []


def test_connection_lost_after_data_is_unknown(
    server: Server, rules: config.Rules, haikou: config.Unit
) -> None:
    server.script.data = ["drop"]
    [outcome] = mail.send(server.mail, feedback(rules, haikou), timeout=5)
    assert (outcome.status, outcome.code) == ("unknown", None)
    assert "可能已经送达" in outcome.detail
    assert len(server.script.received) == 1  # it had indeed arrived


def test_nothing_listening_is_tempfail(rules: config.Rules, haikou: config.Unit) -> None:
    closed = dataclasses.replace(rules.mail, smtp_host="127.0.0.1", smtp_port=free_port(), tls="none")
    [outcome] = mail.send(closed, feedback(rules, haikou), timeout=5)
    assert (outcome.recipient, outcome.status, outcome.code) == ("haikou@example.org", "tempfail", None)
    assert "连接被拒绝" in outcome.detail


def test_a_server_that_never_answers_is_tempfail(rules: config.Rules, haikou: config.Unit) -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)  # the connection completes in the backlog; no greeting ever comes
        mute = dataclasses.replace(
            rules.mail, smtp_host="127.0.0.1", smtp_port=silent.getsockname()[1], tls="none"
        )
        [outcome] = mail.send(mute, feedback(rules, haikou), timeout=0.5)
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
        [sent] = mail.send(settings, feedback(rules, haikou), timeout=5, context=trusting)
        assert (sent.status, sent.code) == ("sent", 250)
        assert len(script.received) == 1
        # the system's CAs do not know this certificate: nothing is sent, and it is worth another try
        [untrusted] = mail.send(settings, feedback(rules, haikou), timeout=5)
        assert (untrusted.status, untrusted.code) == ("tempfail", None)
        assert "证书" in untrusted.detail
        assert len(script.received) == 1
    finally:
        controller.stop()
