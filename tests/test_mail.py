"""Feedback and reminder e-mails as built: what they say, and that they cannot be bent into other headers.
Sending them is tested in test_smtp.py."""

from __future__ import annotations

import dataclasses
import datetime as dt
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import jinja2
import pytest

from pipeline.campaign import config
from pipeline.model import Finding, Severity
from pipeline.render import env, letters

SHANGHAI = dt.timezone(dt.timedelta(hours=8))
NOW = dt.datetime(2017, 1, 20, 10, 30, tzinfo=SHANGHAI)
FILE = "海口市总工会_附件1_2016年工会送温暖统计表.xlsx"
ANNOTATED = "海口市总工会_附件1_2016年工会送温暖统计表_校验结果.xlsx"
WORKBOOK = b"PK\x03\x04" + bytes(range(256)) * 40 + b"\r\n.\r\n.leading dot\n"
FINDINGS = (
    Finding(
        "W-per-head", Severity.WARNING, "人均慰问金额 12.00 万元,超出 0.005–1 万元", "送温暖统计表", "J9"
    ),
    Finding(
        "W-total", Severity.ERROR, "合计行 慰问困难职工(户) 为 120,各行之和为 118", "送温暖统计表", "C16"
    ),
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
    return letters.feedback_message(rules, unit, **arguments)


# --- what the messages say -------------------------------------------------------------------------------


def test_rejected_feedback_says_what_to_do(rules: config.Rules, haikou: config.Unit) -> None:
    message = parsed(letters.write_eml(feedback(rules, haikou)))
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
    # in the order of the sheet (row, then column), as the unit reads its form; no rule's code
    lines = [line for line in body.splitlines() if line[:2] in ("1.", "2.", "3.") and "【" in line]
    assert lines == [
        "1. 【提醒】送温暖统计表!J9:人均慰问金额 12.00 万元,超出 0.005–1 万元",
        "2. 【错误】送温暖统计表!C16:合计行 慰问困难职工(户) 为 120,各行之和为 118",
        "3. 【错误】送温暖统计表!C22:未填写单位负责人",
    ]
    assert not any(f.rule in body for f in FINDINGS)
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
        letters.write_eml(
            letters.reminder_message(
                rules, haikou, items=[("送温暖统计表", "未报送"), ("帮扶中心统计表", "未通过")], now=NOW
            )
        )
    )
    assert message["Subject"] == "【催报】海口市总工会:送温暖统计表、帮扶中心统计表尚未完成,请于2月5日前报送"
    body = body_of(message)
    assert "1. 送温暖统计表:未报送" in body and "2. 帮扶中心统计表:未通过" in body
    assert "截至2017年1月20日 10:30" in body and "距截止还有 16 天" in body
    assert message["Reply-To"] == "flbzb@sina.com"
    late = letters.reminder_message(
        rules, haikou, items=[("送温暖报告", "逾期")], now=NOW + dt.timedelta(days=20)
    )
    assert str(late["Subject"]).startswith("【逾期催报】海口市总工会:送温暖报告尚未完成")


def test_same_inputs_give_the_same_eml_bytes(rules: config.Rules, haikou: config.Unit) -> None:
    first = letters.write_eml(feedback(rules, haikou))
    assert letters.write_eml(feedback(rules, haikou)) == first
    again = letters.write_eml(parsed(first))  # the dry-run file read back and written again
    assert parsed(again)["Message-ID"] == parsed(first)["Message-ID"]
    later = parsed(letters.write_eml(feedback(rules, haikou, now=NOW + dt.timedelta(hours=1))))
    assert later["Message-ID"] != parsed(first)["Message-ID"]
    assert str(parsed(first)["Message-ID"]).endswith("@example.org>")
    reminder = letters.reminder_message(rules, haikou, items=[("送温暖统计表", "未报送")], now=NOW)
    assert letters.write_eml(reminder) == letters.write_eml(
        letters.reminder_message(rules, haikou, items=[("送温暖统计表", "未报送")], now=NOW)
    )


def test_eml_is_crlf_and_seven_bit(rules: config.Rules, haikou: config.Unit) -> None:
    data = letters.write_eml(feedback(rules, haikou))
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
    data = letters.write_eml(feedback(rules, evil))
    assert b"\r\nBcc:" not in data and b"\nBcc:" not in data
    message = parsed(data)
    assert message["Bcc"] is None
    assert [a.addr_spec for a in message["To"].addresses] == ["haikou@example.org"]
    assert message["To"].addresses[0].display_name == "海口市总工会 Bcc: evil@example.org"
    assert "\n" not in str(message["Subject"])


def test_newline_in_a_file_name_stays_inside_the_filename(rules: config.Rules, haikou: config.Unit) -> None:
    data = letters.write_eml(
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
    assert letters.parse_mailbox("海南省总工会 <a@example.org>", "发件人").display_name == "海南省总工会"
    assert letters.parse_mailbox('"省总, 法律部" <a@example.org>', "发件人").display_name == "省总, 法律部"
    assert letters.parse_mailbox(" a@example.org ", "发件人").addr_spec == "a@example.org"


# --- templates: the render package's one Jinja environment ----------------------------------------------


def test_templates_refuse_a_missing_variable() -> None:
    assert env.environment().undefined is jinja2.StrictUndefined
    with pytest.raises(jinja2.UndefinedError):
        env.render("feedback_subject.txt.j2", item_label="送温暖统计表", version=1, verdict="rejected")
    with pytest.raises(jinja2.UndefinedError):
        env.render("reminder_body.txt.j2")
    with pytest.raises(jinja2.UndefinedError):
        env.render("report.html.j2")


def test_html_is_escaped_and_text_is_not() -> None:
    environment = env.environment()
    assert environment.from_string("{{ x }}").render(x="<b>") == "<b>"
    auto = environment.autoescape
    assert callable(auto)
    assert auto("report.html.j2") and auto("feedback_body.html.j2") and auto("x.html")
    assert not auto("feedback_body.txt.j2") and not auto("reminder_body.txt.j2")
