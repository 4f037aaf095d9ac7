"""Issue 15, review states: 通过, 通过(有提醒), 已说明, 省总接受, 未通过, 退回 through the CLI, as staff use
them (accept, return, a later version), and what the status, the consolidation and the workbook then say;
the 回执 of each version that counts, and written reports recognised by their text."""

from __future__ import annotations

import dataclasses
import io
import json
import os
import sqlite3
from email import message_from_bytes, policy
from pathlib import Path

import openpyxl
import pytest
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.io import ledger
from pipeline.io.outbox import SUMMARY_DIR
from tests.conftest import campaign_at, docx

AS_OF = "2017-02-01T12:00"
runner = CliRunner()
JAN_20 = 1484877600  # 2017-01-20 10:00 Asia/Shanghai, as the file's time
DUTY = ("archive", "", "duty_days")
NOTE = ("sign", "", "note")


def _dated(path: Path, stamp: int = JAN_20) -> Path:
    os.utime(path, (stamp, stamp))
    return path


@pytest.fixture
def folders(rules, fill, tmp_path):
    """A small inbox: 海口 passes, 三亚 lacks its 填表人 (an error), 儋州's centre kept no duty roster (a
    warning) and says why in 填报说明."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    for path in (
        fill("warmth", "460100"),
        fill("warmth", "460200", {("sign", "", "preparer"): None}),
        fill("center", "460400", {DUTY: 0, NOTE: "春节期间由县总工会机关轮流值班,中心未单独排班"}),
    ):
        _dated(path.replace(inbox / path.name))
    return inbox, tmp_path / "outbox", tmp_path / "state"


def _cli(*args: str) -> str:
    result = runner.invoke(app, list(args))
    return result


def _run(inbox: Path, outbox: Path, state: Path, as_of: str = AS_OF) -> None:
    result = _cli(
        "run", "--inbox", str(inbox), "--outbox", str(outbox), "--state", str(state), "--as-of", as_of
    )
    assert result.exit_code == 0, result.output


def _rows(state: Path) -> dict[tuple[str, str], dict]:
    result = _cli("status", "--state", str(state), "--as-of", AS_OF, "--json")
    assert result.exit_code == 0, result.output
    return {(r["unit"], r["item"]): r for r in json.loads(result.stdout)["rows"]}


def _sheet(outbox: Path, name: str) -> list[str]:
    (book,) = (outbox / SUMMARY_DIR).glob("*汇总表*.xlsx")
    ws = openpyxl.load_workbook(io.BytesIO(book.read_bytes()))[name]
    return [" | ".join(str(v) for v in row if v is not None) for row in ws.iter_rows(values_only=True)]


def test_accept_and_return_change_the_consolidation_and_are_shown_with_their_reason(rules, folders, fill):
    inbox, outbox, state = folders
    _run(inbox, outbox, state)
    rows = _rows(state)
    assert rows[("460100", "warmth")]["state_label"] == "通过"
    assert rows[("460200", "warmth")]["state_label"] == "未通过"
    explained = rows[("460400", "center")]
    assert explained["state_label"] == "已说明" and "中心未单独排班" in explained["reason"]
    assert explained["version_used"] == 1

    accepted = _cli(
        "accept",
        "三亚",
        "送温暖统计表",
        "--reason",
        "仅缺填表人姓名,已电话核实",
        "--by",
        "张三",
        "--state",
        str(state),
    )
    assert accepted.exit_code == 0, accepted.output
    assert "省总接受" in accepted.output and "张三" in accepted.output
    returned = _cli(
        "return", "460100", "warmth", "--reason", "慰问户数与台账不符,待核实", "--state", str(state)
    )
    assert returned.exit_code == 0, returned.output
    _run(inbox, outbox, state)

    rows = _rows(state)
    sanya, haikou = rows[("460200", "warmth")], rows[("460100", "warmth")]
    assert sanya["state_label"] == "省总接受" and sanya["version_used"] == 1
    assert "仅缺填表人姓名,已电话核实" in sanya["reason"] and "张三" in sanya["reason"]
    assert haikou["state_label"] == "退回" and haikou["version_used"] is None
    assert "慰问户数与台账不符" in haikou["note"]
    status_text = (outbox / "报送情况.txt").read_text(encoding="utf-8")
    assert "省总接受" in status_text and "退回" in status_text and "已说明" in status_text

    reminded = _cli("remind", "--outbox", str(outbox), "--state", str(state), "--as-of", AS_OF)
    assert reminded.exit_code == 0, reminded.output
    (reminder,) = (outbox / "邮件").glob("海口市总工会_催报_*.eml")
    text = message_from_bytes(reminder.read_bytes(), policy=policy.default).get_body().get_content()
    assert "送温暖统计表:退回" in text and "“退回”的事项" in text

    used = campaign_at(rules, inbox, outbox, state).consolidate(AS_OF).used
    assert {(v.unit, v.form) for v in used} == {("460200", "warmth"), ("460400", "center")}
    sources = _sheet(outbox, "数据来源")
    assert any("三亚市总工会" in r and "采用(省总接受:仅缺填表人姓名,已电话核实(张三" in r for r in sources)
    assert any("海口市总工会" in r and "不采用:退回:慰问户数与台账不符" in r for r in sources)
    assert any("儋州市总工会" in r and "采用(已说明:单位填报说明:春节期间" in r for r in sources)
    readme = _sheet(outbox, "说明")
    assert any(r.startswith("三亚市总工会送温暖统计表") and "省总接受:仅缺填表人姓名" in r for r in readme)
    assert any(r.startswith("儋州市总工会帮扶中心统计表") and "已说明" in r for r in readme)

    # A later version from the unit supersedes staff's decision: it is checked and counted on its own.
    again = fill("warmth", "460200", name="三亚市总工会_附件1_更正.xlsx")
    _dated(again.replace(inbox / again.name), JAN_20 + 86400)
    _run(inbox, outbox, state)
    sanya = _rows(state)[("460200", "warmth")]
    assert sanya["state_label"] == "通过" and sanya["version_used"] == 2 and sanya["reason"] == ""


def test_staff_are_told_what_cannot_be_accepted_or_returned(folders):
    inbox, outbox, state = folders
    _run(inbox, outbox, state)
    for args, said in (
        (("accept", "海口", "warmth", "--reason", "x"), "已计入汇总,无需接受"),
        (("return", "三亚", "warmth", "--reason", "x"), "没有计入汇总,无需退回"),
        (("accept", "三亚", "warmth"), "--reason"),
        (("accept", "火星", "warmth", "--reason", "x"), "460100"),
        (("accept", "海口", "center", "--reason", "x"), "还没有报送帮扶中心统计表"),
        (("return", "海口", "report", "--reason", "x"), "只登记是否收到"),
    ):
        result = _cli(*args, "--state", str(state))
        assert result.exit_code == 2 and said in result.output, (args, result.output)
        assert "Traceback" not in result.output
    assert _rows(state)[("460100", "warmth")]["state_label"] == "通过"  # nothing was recorded


def test_a_ledger_of_schema_3_gains_the_reviews_and_keeps_its_rows(folders):
    inbox, outbox, state = folders
    _run(inbox, outbox, state)
    db = sqlite3.connect(state / ledger.FILE)
    db.executescript(
        "DROP TABLE reviews; ALTER TABLE submissions DROP COLUMN explanation; PRAGMA user_version = 3;"
    )
    db.close()
    book = ledger.Ledger(state)
    assert book.db.execute("PRAGMA user_version").fetchone()[0] == ledger.ledger_schema.VERSION
    assert len(book.submissions()) == 3 and book.reviews() == {}
    book.close()
    accepted = _cli("accept", "三亚", "warmth", "--reason", "已核实", "--state", str(state))
    assert accepted.exit_code == 0, accepted.output


def test_a_receipt_goes_once_per_version_that_counts(rules, folders, fill, server):
    inbox, outbox, state = folders
    level = campaign_at(dataclasses.replace(rules, mail=server.mail), inbox, outbox, state)
    level.run(AS_OF, send=True)

    def receipts() -> list:
        got = [message_from_bytes(e.original_content, policy=policy.default) for e in server.script.received]
        return [m for m in got if m["Subject"].startswith("【回执】")]

    first = receipts()
    assert sorted(m["To"].addresses[0].addr_spec for m in first) == sorted(
        [rules.unit("460100").email, rules.unit("460400").email]
    )
    body = (
        next(m for m in first if "460400" not in m["To"] and "儋州" in m["Subject"]).get_body().get_content()
    )
    assert (
        "已计入汇总" in body and "已说明" in body and "帮扶中心统计表" in body and "2017-01-20 10:00" in body
    )
    assert not any(m.iter_attachments() for m in first if list(m.iter_attachments()))

    level.run(AS_OF, send=True)
    assert len(receipts()) == 2  # sent once
    level.accept("三亚", "warmth", "已电话核实", by="张三")
    level.run(AS_OF, send=True)
    third = receipts()[2:]
    assert len(third) == 1 and "三亚市总工会" in third[0]["Subject"]
    assert "省总接受" in third[0].get_body().get_content()
    again = fill("warmth", "460200", name="三亚市总工会_附件1_更正.xlsx")
    _dated(again.replace(inbox / again.name), JAN_20 + 86400)
    level.run(AS_OF, send=True)
    fourth = receipts()[3:]
    assert len(fourth) == 1 and "第2版" in fourth[0]["Subject"]
    level.run(AS_OF, send=True)
    assert len(receipts()) == 4


def test_a_written_report_counts_as_received_by_its_title_and_an_empty_one_is_unreadable(rules, folders):
    inbox, outbox, state = folders
    named_in_text = inbox / "2016年送温暖活动报告.docx"
    named_in_text.write_bytes(
        docx(["琼海市总工会关于2017年元旦春节送温暖活动的报告", "海南省总工会:根据通知……"])
    )
    blank = inbox / "文昌市总工会送温暖报告.docx"
    blank.write_bytes(docx([]))
    broken = inbox / "万宁市总工会送温暖报告.pdf"
    broken.write_bytes(b"<html>not a pdf</html>")
    for path in (named_in_text, blank, broken):
        _dated(path)

    checked = _cli("check", str(named_in_text))
    assert checked.exit_code == 0, checked.output
    assert "琼海市总工会(469002)" in checked.output and "已收到" in checked.output
    assert "无法读取" not in checked.output.splitlines()[1]
    unreadable = _cli("check", str(blank), str(broken))
    assert unreadable.exit_code == 1
    assert "文档中没有文字" in unreadable.output and "不是有效的 PDF 文件" in unreadable.output

    _run(inbox, outbox, state)
    rows = _rows(state)
    assert rows[("469002", "report")]["state_label"] == "已收到"
    assert rows[("469005", "report")]["state_label"] == "未通过"
    assert (
        "无法读取" in rows[("469005", "report")]["note"] and "没有文字" in rows[("469005", "report")]["note"]
    )
    assert "不是有效的 PDF" in rows[("469006", "report")]["note"]
    sources = _sheet(outbox, "数据来源")
    assert any("琼海市总工会" in r and "送温暖报告" in r and "已收到" in r for r in sources)
    assert not any("送温暖报告" in r and "未通过校验" in r for r in sources)
    assert any("文昌市总工会" in r and "无法读取:文档中没有文字" in r for r in sources)
