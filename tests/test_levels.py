"""Reporting levels (issue 14): each unit is told to send to its own parent, a file at the wrong level is
told where it belongs and is not counted, each level works in its own folders under the campaign folder,
and a roll-up says which units it covers."""

from __future__ import annotations

import email
import email.policy
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import openpyxl
import pytest
import yaml

from pipeline import checks, demo
from pipeline.io import ledger
from pipeline.io import outbox as names
from pipeline.render import template
from tests.conftest import correct_values

ROOT = Path(__file__).resolve().parents[1]
AS_OF = "2017-02-01T12:00"


def pipeline(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pipeline", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
    )


def tree(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def workspace(tmp_path: Path, rules) -> Path:
    """A campaign folder as staff keep one: rules.yaml and the demo inbox beside it."""
    folder = tmp_path / "送温暖2017"
    folder.mkdir()
    shutil.copy(ROOT / "rules.yaml", folder / "rules.yaml")
    demo.make(rules, folder / "inbox", seed=2017)
    return folder


def test_each_template_tells_its_unit_where_to_send_it_and_what_else_it_owes(rules):
    def notes(code: str, form: str = "warmth") -> str:
        return "\n".join(rules.notes_for(rules.forms[form], rules.unit(code)))

    assert "海南省职工服务(帮扶)中心(bangfu@example.org)" in notes("CY01")
    assert "送温暖报告" not in notes("CY01") and "flbzb@sina.com" not in notes("CY01")
    assert "flbzb@sina.com" in notes("460100") and "连同帮扶中心统计表、送温暖报告" in notes("460100")
    blank = next(b for b in template.blank_forms(rules, "CY01"))
    sheet = openpyxl.load_workbook(__import__("io").BytesIO(blank.data))[rules.forms["warmth"].sheet]
    text = "\n".join(str(c.value) for row in sheet.iter_rows() for c in row if c.value)
    assert "bangfu@example.org" in text and "flbzb@sina.com" not in text


def test_an_industry_unions_form_at_the_province_is_sent_to_the_wrong_level(workspace):
    done = pipeline("run", "--as-of", AS_OF, cwd=workspace)
    assert done.returncode == 0, done.stderr
    book = ledger.Ledger(workspace / "state")
    (stray,) = [s for s in book.submissions() if s.unit == "CY01"]
    (message,) = [m for m in book.messages() if m["unit"] == "CY01"]
    book.close()
    assert stray.verdict == "wrong_level" and not stray.values  # never counted here
    body = email.message_from_bytes(bytes(message["mime"]), policy=email.policy.default)
    text = body.get_body(("plain",)).get_content()
    assert "报送对象有误" in text and "bangfu@example.org" in text and "海南省职工服务(帮扶)中心" in text
    assert body["Reply-To"].addresses[0].addr_spec == "bangfu@example.org"
    (copy,) = (workspace / "outbox" / names.FEEDBACK_DIR / "海南省教育工会").glob("*.xlsx")
    summary = openpyxl.load_workbook(copy)["校验结果"]
    assert (
        "结论:报送对象有误" in str(summary["A3"].value)
        and "通过" not in str(summary["A3"].value).split("结论")[1]
    )
    status = (workspace / "outbox" / names.STATUS_TXT).read_text(encoding="utf-8")
    assert "报送对象有误" in status and "bangfu@example.org" in status


def _children_inbox(rules, inbox: Path, codes: list[str]) -> None:
    for i, code in enumerate(codes):
        unit, form = rules.unit(code), rules.forms["warmth"]
        path = inbox / "2017-01-25" / template.file_name(unit, form)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(template.fill(rules, form, unit, correct_values(rules, "warmth", code, seed=i)))
        os.utime(path, (1485309600,) * 2)  # 2017-01-25 10:00 +08:00


def test_running_for_zx_in_the_province_folder_leaves_the_province_untouched(rules, workspace):
    assert pipeline("run", "--as-of", AS_OF, cwd=workspace).returncode == 0
    before = tree(workspace / "outbox"), tree(workspace / "state")
    _children_inbox(rules, workspace / "levels" / "ZX" / "inbox", [u.code for u in rules.children("ZX")])
    zx = pipeline(
        "run",
        "--for",
        "ZX",
        "--as-of",
        AS_OF,
        "--leader",
        "王海涛",
        "--preparer",
        "李秀英",
        "--phone",
        "0898-66553663",
        cwd=workspace,
    )
    assert zx.returncode == 0, zx.stderr
    assert (tree(workspace / "outbox"), tree(workspace / "state")) == before
    assert "7/7 个单位已全部报齐" in zx.stdout
    rollup = (
        workspace
        / "levels"
        / "ZX"
        / "outbox"
        / names.SUMMARY_DIR
        / template.file_name(rules.unit("ZX"), rules.forms["warmth"])
    )
    checked = pipeline("check", "--json", str(rollup), cwd=workspace)
    (result,) = json.loads(checked.stdout)
    assert (result["unit"], result["verdict"], result["findings"]) == ("ZX", "accepted", [])
    # ZX's ledger is ZX's: pointing the province at it is refused.
    mixed = pipeline("status", "--state", str(workspace / "levels" / "ZX" / "state"), cwd=workspace)
    assert mixed.returncode == 2 and "属于ZX一级" in mixed.stderr


def test_a_rollup_that_leaves_units_out_is_a_warning_naming_them(rules, workspace):
    _children_inbox(rules, workspace / "levels" / "ZX" / "inbox", ["CY01"])
    assert (
        pipeline(
            "run",
            "--for",
            "ZX",
            "--as-of",
            AS_OF,
            "--leader",
            "王海涛",
            "--preparer",
            "李秀英",
            "--phone",
            "0898-66553663",
            cwd=workspace,
        ).returncode
        == 0
    )
    rollup = (
        workspace
        / "levels"
        / "ZX"
        / "outbox"
        / names.SUMMARY_DIR
        / template.file_name(rules.unit("ZX"), rules.forms["warmth"])
    )
    sheet = openpyxl.load_workbook(rollup)[rules.forms["warmth"].sheet]
    assert any("已汇总 1/7 个下属单位" in str(c.value) for row in sheet.iter_rows() for c in row if c.value)
    (result,) = json.loads(pipeline("check", "--json", str(rollup), cwd=workspace).stdout)
    (warning,) = [f for f in result["findings"] if f["rule"] == "F-rollup"]
    assert (
        warning["severity"] == "warning"
        and "海南省卫生工会" in warning["message"]
        and "1/7" in warning["message"]
    )
    # At the province, the warning goes with ZX's figures into the status.
    sent = workspace / "inbox" / "2017-02-01" / rollup.name
    sent.parent.mkdir(exist_ok=True)
    shutil.copy(rollup, sent)
    os.utime(sent, (1485820800,) * 2)
    assert pipeline("run", "--as-of", AS_OF, cwd=workspace).returncode == 0
    status = json.loads((workspace / "outbox" / names.STATUS_JSON).read_text(encoding="utf-8"))
    (row,) = [r for r in status["rows"] if (r["unit"], r["item"]) == ("ZX", "warmth")]
    assert "1/7" in row["note"]


def test_a_rollup_naming_units_not_its_makers_is_an_error(rules, tmp_path):
    values = correct_values(rules, "warmth", "ZX")
    path = tmp_path / "ZX附件1.xlsx"
    path.write_bytes(
        template.fill(rules, rules.forms["warmth"], rules.unit("ZX"), values, covers=("460100", "CY01"))
    )
    (result,) = json.loads(pipeline("check", "--json", str(path), cwd=ROOT).stdout)
    (error,) = [f for f in result["findings"] if f["rule"] == "F-rollup"]
    assert error["severity"] == "error" and "460100" in error["message"]


def test_the_same_command_from_two_folders_gives_the_same_result_and_sends_nothing_twice(
    rules, workspace, tmp_path, server
):  # noqa: F811
    data = yaml.safe_load((workspace / "rules.yaml").read_text(encoding="utf-8"))
    data["mail"].update(smtp_host="127.0.0.1", smtp_port=server.mail.smtp_port, tls="none")
    data["mail"].pop("username", None)
    (workspace / "rules.yaml").write_text(
        yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8"
    )
    elsewhere = tmp_path / "别处"
    elsewhere.mkdir()
    first = pipeline("run", "--as-of", AS_OF, "--send", cwd=workspace)
    assert first.returncode == 0, first.stderr
    sent = len(server.script.received)
    assert sent >= 5
    outputs = tree(workspace / "outbox")
    again = pipeline("run", "--as-of", AS_OF, "--send", cwd=elsewhere, env={"PIPELINE_HOME": str(workspace)})
    assert again.returncode == 0, again.stderr
    assert len(server.script.received) == sent and tree(workspace / "outbox") == outputs
    assert sorted(p.name for p in elsewhere.iterdir()) == []  # nothing created where the command ran
    here = pipeline("status", "--json", "--as-of", AS_OF, cwd=workspace)
    there = pipeline("status", "--json", "--as-of", AS_OF, "--workspace", str(workspace), cwd=elsewhere)
    assert here.stdout == there.stdout and json.loads(here.stdout)["timeliness"]["warmth"]["expected"] == 21


def test_a_workspace_that_does_not_exist_is_said_and_nothing_is_created(tmp_path):
    done = pipeline("status", "--workspace", str(tmp_path / "没有这个文件夹"), cwd=tmp_path)
    assert done.returncode == 2 and "不存在" in done.stderr
    assert list(tmp_path.iterdir()) == []


def test_parents_that_go_round_in_a_circle_are_refused_with_the_yaml_path(rules_text):
    circle = rules_text.replace(
        "{code: ZX, name: 海南省职工服务(帮扶)中心, kind: 帮扶中心, reports_to: province,",
        "{code: ZX, name: 海南省职工服务(帮扶)中心, kind: 帮扶中心, reports_to: CY01,",
    )
    with pytest.raises(checks.ConfigError) as refused:
        checks.loads(circle)
    assert refused.value.path.endswith("reports_to") and "循环" in refused.value.message


def test_status_and_its_text_give_each_items_on_time_rate(workspace):
    assert pipeline("run", "--as-of", "2017-02-10T12:00", cwd=workspace).returncode == 0
    text = (workspace / "outbox" / names.STATUS_TXT).read_text(encoding="utf-8")
    assert "按时报送率:送温暖统计表 20/21(95.2%),逾期 0,未报 1" in text
    # Columns line up on screen: every unit row's second column starts at the same display position.
    from pipeline.render.status_text import width

    rows = [line for line in text.splitlines() if line.endswith(("已收到", "未报送")) and "总工会" in line]
    starts = {
        width(
            line[
                : min(
                    line.index(s)
                    for s in ("未通过", "通过", "未报送", "已说明", "省总接受", "退回")
                    if s in line
                )
            ]
        )
        for line in rows
    }
    assert len(starts) == 1
