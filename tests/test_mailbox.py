"""The campaign mailbox against a real IMAP server (Dovecot on 127.0.0.1) and a real SMTP server (aiosmtpd):
fetching what the units' mail clients send, once; who sent it; never a mail loop; replies in the thread."""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import pytest

from pipeline.campaign import config
from pipeline.io import mailbook
from pipeline.io.ledger import Ledger
from pipeline.model import ItemState, MessageStatus
from pipeline.render import template
from tests import mailclients
from tests.conftest import campaign_at, docx
from tests.dovecot import Dovecot
from tests.smtpserver import Server

AS_OF = "2017-02-01T12:00"
TZ = dt.timezone(dt.timedelta(hours=8))
SAMPLES = Path(__file__).parent / "mail_samples"


def at(day: int, hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime(2017, 1, day, hour, minute, tzinfo=TZ)


@pytest.fixture
def level(rules: config.Rules, tmp_path: Path, dovecot: Dovecot, server: Server):  # noqa: F811
    """The province's folders, its rules pointed at the test's IMAP and SMTP servers."""
    campaign = dataclasses.replace(rules, mail=dovecot.mail(dataclasses.replace(rules, mail=server.mail)))
    return campaign_at(campaign, tmp_path / "inbox", tmp_path / "outbox", tmp_path / "state")


def form(
    rules: config.Rules, fill, form_code: str = "warmth", unit: str = "460100", changes: dict | None = None
) -> tuple[str, bytes]:
    path = fill(form_code, unit, changes)
    return path.name, path.read_bytes()


def received(smtp: Server) -> list[EmailMessage]:
    return [
        message_from_bytes(e.original_content, _class=EmailMessage, policy=policy.default)
        for e in smtp.script.received
    ]


def to(message: EmailMessage) -> str:
    return message["To"].addresses[0].addr_spec


def inbox_files(level) -> list[str]:
    return sorted(p.name for p in level.folders.inbox.rglob("*") if p.is_file())


def ledger_of(level) -> Ledger:
    return Ledger(level.folders.state)


# --- fetching ---------------------------------------------------------------------------------------------


def test_each_clients_attachments_are_taken_once_and_the_mailbox_is_left_as_it_was(
    rules, level, dovecot, fill
):  # noqa: F811
    units = ["460100", "460200", "460400", "469001", "469002"]
    for i, (client, code) in enumerate(zip(mailclients.CLIENTS, units, strict=True)):
        unit = rules.unit(code)
        raw = mailclients.message(
            client,
            unit.email,
            [form(rules, fill, unit=code)],
            name=unit.name,
            subject=f"{unit.name}报送送温暖统计表",
        )
        dovecot.append(raw, at(20, 10, i))
    before = dovecot.state()

    got, _ = level.fetch(AS_OF)

    assert got.taken == {"submission": 5} and got.files == 5
    assert inbox_files(level) == sorted(
        template.file_name(rules.unit(c), rules.forms["warmth"]) for c in units
    )
    assert dovecot.state() == before  # nothing deleted, moved or marked \Seen
    assert all(b"\\Seen" not in flags for _, flags in before)
    again, _ = level.fetch(AS_OF)
    assert again.taken == {} and again.files == 0

    level.run(AS_OF)
    now = level.status(AS_OF)
    rows = {r.unit: r for r in now.rows if r.item == "warmth"}
    for i, code in enumerate(units):
        assert rows[code].state == ItemState.PASSED
        assert rows[code].received == at(20, 10, i)  # the time the server received it, not the file's
    book = ledger_of(level)
    taken = mailbook.mails(book)
    assert [r["sender"] for r in taken] == [rules.unit(c).email for c in units]
    assert all(r["message_id"].startswith("<") and r["subject"].endswith("报送送温暖统计表") for r in taken)


def test_a_zip_with_gbk_names_and_a_forwarded_message_count(rules, level, dovecot, fill):  # noqa: F811
    unit = rules.unit("460200")
    archive = mailclients.zipped(
        [
            form(rules, fill, "warmth", "460200"),
            form(rules, fill, "center", "460200"),
            ("三亚市总工会送温暖报告.docx", docx(["三亚市总工会关于送温暖活动的报告"])),
        ]
    )
    dovecot.append(
        mailclients.message("foxmail", unit.email, [("三亚报表.zip", archive)], name=unit.name), at(21, 9)
    )
    inner = mailclients.message(
        "outlook", rules.unit("460400").email, [form(rules, fill, "warmth", "460400")], name="儋州市总工会"
    )
    dovecot.append(mailclients.forwarded(inner, rules.unit("460400").email), at(21, 10))

    got, _ = level.fetch(AS_OF)
    level.run(AS_OF)

    assert got.files == 4
    assert "三亚市总工会_附件1_2016年工会送温暖统计表.xlsx" in inbox_files(level)  # decoded from GBK
    states = {(r.unit, r.item): r.state for r in level.status(AS_OF).rows}
    assert states[("460200", "warmth")] == ItemState.PASSED
    assert states[("460200", "center")] == ItemState.PASSED
    assert states[("460200", "report")] == ItemState.RECEIVED
    assert states[("460400", "warmth")] == ItemState.PASSED


def test_a_rar_and_a_message_without_forms_get_a_how_to_and_the_fetch_goes_on(
    rules, level, dovecot, server, fill
):  # noqa: F811
    haikou, sanya = rules.unit("460100"), rules.unit("460200")
    dovecot.append(
        mailclients.message(
            "qq", haikou.email, [("海口报表.rar", b"Rar!\x1a\x07\x00 rest")], subject="海口报表"
        ),
        at(20, 9),
    )
    dovecot.append(mailclients.message("netease", sanya.email, [], subject="三亚的报表"), at(20, 9, 5))
    (SAMPLES / "winmail_dat.eml").read_bytes()
    dovecot.append((SAMPLES / "winmail_dat.eml").read_bytes(), at(20, 9, 7))
    dovecot.append(
        mailclients.message(
            "outlook", rules.unit("460400").email, [form(rules, fill, unit="460400")], name="儋州市总工会"
        ),
        at(20, 9, 10),
    )

    got, sent = level.fetch(AS_OF, send=True)

    assert got.taken == {"unusable": 2, "empty": 1, "submission": 1} and got.files == 1
    assert sent == {MessageStatus.SENT: 3}
    replies = {to(m): m for m in received(server)}
    rar = replies[haikou.email]
    assert rar["Subject"] == "Re: 海口报表" and rar["Auto-Submitted"] == "auto-replied"
    assert rar["In-Reply-To"] == mailbook.mails(ledger_of(level))[0]["message_id"]
    assert "RAR" in rar.get_content() and "zip" in rar.get_content()
    assert "作为附件" in replies[sanya.email].get_content()
    assert "winmail.dat" in replies["wanning@example.org"].get_content()
    again, sent_again = level.fetch(AS_OF, send=True)
    assert again.taken == {} and sent_again == {} and len(server.script.received) == 3


def test_a_redelivered_copy_is_taken_once(rules, level, dovecot, fill):  # noqa: F811
    raw = mailclients.message("foxmail", rules.unit("460100").email, [form(rules, fill)])
    dovecot.append(raw, at(20, 10))
    level.fetch(AS_OF)
    dovecot.append(raw, at(20, 10, 3))  # the server delivered it again: another UID, the same Message-ID

    got, _ = level.fetch(AS_OF)
    result = level.run(AS_OF)

    assert got.taken == {"duplicate": 1} and got.files == 0
    assert len(inbox_files(level)) == 1 and result.intake.seen == 1


def test_a_fetch_killed_before_its_folder_is_in_place_is_completed_by_the_next(
    rules, level, dovecot, fill, monkeypatch
):  # noqa: F811
    from pipeline.runs import fetching

    for i, code in enumerate(["460100", "460200"]):
        dovecot.append(
            mailclients.message("qq", rules.unit(code).email, [form(rules, fill, unit=code)]), at(20, 9, i)
        )
    real = fetching.os.rename

    def dies(*args, **kwargs):
        raise KeyboardInterrupt  # killed right after the message was recorded

    monkeypatch.setattr(fetching.os, "rename", dies)
    with pytest.raises(KeyboardInterrupt):
        level.fetch(AS_OF)
    monkeypatch.setattr(fetching.os, "rename", real)
    assert inbox_files(level) == [] or all(".收取中-" in str(p) for p in level.folders.inbox.rglob("*.xlsx"))

    got, _ = level.fetch(AS_OF)

    assert got.taken == {"submission": 1}  # the first was recorded already: not taken again
    assert len(list(level.folders.inbox.rglob("*.xlsx"))) == 2
    assert not list(level.folders.inbox.rglob(".收取中-*"))
    assert len(mailbook.mails(ledger_of(level))) == 2


# --- who sent it ------------------------------------------------------------------------------------------


def test_a_spoofed_sender_is_held_until_the_registered_address_confirms(rules, level, dovecot, server, fill):  # noqa: F811
    haikou = rules.unit("460100")
    spoof = "someone@qq.com"
    dovecot.append(mailclients.message("qq", spoof, [form(rules, fill)], subject="海口报表"), at(20, 9))

    level.run(AS_OF, send=True, fetch=True)

    row = next(r for r in level.status(AS_OF).rows if r.unit == "460100" and r.item == "warmth")
    assert row.state == ItemState.MISSING and "待确认" in row.mail_problem  # not counted
    mails = received(server)
    assert sorted(to(m) for m in mails) == sorted([haikou.email, spoof])
    owner = next(m for m in mails if to(m) == haikou.email)
    to_spoof = next(m for m in mails if to(m) == spoof)
    assert spoof in owner.get_content() and "确认" in owner["Subject"]
    assert to_spoof["In-Reply-To"] and not list(to_spoof.iter_attachments())
    assert haikou.email not in to_spoof.get_content()  # nothing of the unit's reaches the stranger

    confirm = (
        f"From: {haikou.email}\r\nTo: flbzb@sina.com\r\nSubject: Re: {owner['Subject']}\r\n"
        f"In-Reply-To: {owner['Message-ID']}\r\nReferences: {owner['Message-ID']}\r\n"
        "Message-ID: <confirm.1@example.org>\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        "确认\r\n\r\n> 原邮件\r\n"
    ).encode()
    dovecot.append(confirm, at(20, 11))
    level.run(AS_OF, send=True, fetch=True)

    row = next(r for r in level.status(AS_OF).rows if r.unit == "460100" and r.item == "warmth")
    assert row.state == ItemState.PASSED and not row.mail_problem
    receipt = received(server)[2:]
    assert len(receipt) == 2 and {to(m) for m in receipt} == {spoof}  # one message, two recipients
    assert receipt[0]["Cc"] == f"{haikou.name} <{haikou.email}>"
    assert receipt[0]["Subject"] == "Re: 海口报表"


def test_staff_confirm_a_held_file(rules, level, dovecot, fill):  # noqa: F811
    dovecot.append(mailclients.message("netease", "clerk@163.com", [form(rules, fill)]), at(20, 9))
    level.run(AS_OF, fetch=True)
    [held] = level.held()
    assert held["sender"] == "clerk@163.com" and held["unit"] == "460100"

    level.confirm([held["submission"][:10]])
    level.run(AS_OF)

    assert level.held() == []
    row = next(r for r in level.status(AS_OF).rows if r.unit == "460100" and r.item == "warmth")
    assert row.state == ItemState.PASSED


# --- never a mail loop ----------------------------------------------------------------------------------------


def test_a_bounce_is_matched_to_our_message_and_neither_it_nor_a_vacation_reply_is_answered(
    rules, level, dovecot, server, fill
):  # noqa: F811
    sanya = rules.unit("460200")
    wrong = form(rules, fill, unit="460200", changes={("visits", "agri", "households_archived"): 999999})
    dovecot.append(mailclients.message("foxmail", sanya.email, [wrong], subject="三亚报表"), at(20, 9))
    level.run(AS_OF, send=True, fetch=True)
    [feedback] = received(server)
    assert feedback["Subject"] == "Re: 三亚报表" and feedback["In-Reply-To"]
    dsn = (
        (SAMPLES / "dsn_postfix.eml")
        .read_bytes()
        .replace(b"<ORIGINAL-ID>", feedback["Message-ID"].encode())
        .replace(b"<RECIPIENT>", sanya.email.encode())
    )
    dovecot.append(dsn, at(20, 9, 30))
    dovecot.append((SAMPLES / "vacation_qq.eml").read_bytes(), at(20, 9, 31))
    dovecot.append((SAMPLES / "vacation_outlook.eml").read_bytes(), at(20, 9, 32))

    result = level.run(AS_OF, send=True, fetch=True)

    assert result.fetched.taken == {"bounce": 1, "auto": 2} and result.fetched.bounced == 1
    assert len(server.script.received) == 1  # no answer to any of them
    [row] = [r for r in ledger_of(level).messages() if r["recipient"] == sanya.email]
    assert row["status"] == MessageStatus.REFUSED and "5.1.1" in row["detail"]
    problems = {r.mail_problem for r in level.status(AS_OF).rows if r.unit == "460200"}
    assert any("邮件被拒收" in p for p in problems)


def test_a_mailbox_of_oddities_is_fetched_without_a_stop(rules, level, dovecot):  # noqa: F811
    samples = sorted(SAMPLES.glob("*.eml"))
    for i, sample in enumerate(samples):
        dovecot.append(sample.read_bytes(), at(22, 8, i))

    got, _ = level.fetch(AS_OF)
    result = level.run(AS_OF)

    assert sum(got.taken.values()) == len(samples)
    kinds = {Path(s).name: r["kind"] for s, r in zip(samples, mailbook.mails(ledger_of(level)), strict=True)}
    assert kinds["dsn_postfix.eml"] == kinds["bounce_qq_plain.eml"] == "bounce"
    assert (
        kinds["vacation_qq.eml"]
        == kinds["vacation_outlook.eml"]
        == kinds["no_from_header_only.eml"]
        == "auto"
    )
    assert kinds["list_bulk.eml"] == "bulk" and kinds["winmail_dat.eml"] == "unusable"
    names = inbox_files(level)
    assert "临高县总工会送温暖报告.pdf" in names  # two forwards deep
    assert "临高县总工会_附件1_2016年工会送温暖统计表.xls" in names  # an unknown charset, read as GBK
    assert result.intake.seen == len(names)


def test_replies_mark_themselves_and_reuse_the_units_subject(rules):
    from pipeline.render import letters

    thread = letters.Thread("<a@b>", ("<r@b>",), "Re: 海口报表", ("x@qq.com", "haikou@example.org"))
    message = letters.notice_message(
        rules,
        "empty",
        now=at(20, 10),
        received=at(20, 9),
        subject="海口报表",
        thread=thread,
        sender="x@qq.com",
    )
    assert message["Subject"] == "Re: 海口报表"  # not "Re: Re:"
    assert message["References"] == "<r@b> <a@b>" and message["In-Reply-To"] == "<a@b>"
    assert message["Auto-Submitted"] == "auto-replied"
    assert re.fullmatch(r"<notice\.empty\.[0-9a-f]{32}@example\.org>", message["Message-ID"])


# --- the mailbox's keys in rules.yaml ------------------------------------------------------------------------


def test_the_real_rules_yaml_names_the_campaign_mailbox(rules):
    mail = rules.mail
    assert (mail.imap_host, mail.imap_port, mail.imap_tls, mail.imap_folder) == (
        "imap.example.org",
        993,
        "ssl",
        "INBOX",
    )
    assert mail.imap_password_env == "SONGWENNUAN_IMAP_PASSWORD"


@pytest.mark.parametrize(
    ("change", "path", "words"),
    [
        ({"imap_tls": "tls"}, "mail.imap_tls", "可选:ssl, starttls, none"),
        ({"imap_port": 99999}, "mail.imap_port", "1–65535"),
        ({"imap_password_env": "my password"}, "mail.imap_password_env", "环境变量的名字"),
        ({"imap_user": None}, "mail.imap_user", "缺少此项"),
        ({"imap_folder": "INBOX\r\nX"}, "mail.imap_folder", "不可用"),
        ({"imap_host": None}, "mail.imap_port", "imap_host"),
        ({"imap_server": "x"}, "mail.imap_server", "未知的键"),
    ],
)
def test_a_wrong_mailbox_key_is_refused_with_its_yaml_path(rules_text, change, path, words):
    from tests.test_config import edited, refused

    error = refused(edited(rules_text, lambda data: data["mail"].update(change)))
    assert error.path == path and words in error.message


def test_without_imap_host_there_is_no_mailbox_and_fetch_says_so(rules_text, tmp_path):
    from tests.test_config import edited

    keys = ("imap_host", "imap_port", "imap_tls", "imap_user", "imap_password_env", "imap_folder")
    loaded = config.loads(edited(rules_text, lambda data: [data["mail"].pop(k) for k in keys]))
    assert loaded.mail.imap_host == ""
    level = campaign_at(loaded, tmp_path / "inbox", tmp_path / "outbox", tmp_path / "state")
    with pytest.raises(Exception, match="没有设置活动邮箱"):
        level.fetch(AS_OF, imap_password="x")
