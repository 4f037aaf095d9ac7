"""A second, different campaign runs end to end with no code change: the autumn 金秋助学 of
examples/jinqiu/rules.yaml (fourteen other units, one form, its own rules, tables and prose), through the
command line as staff would run it: templates, demo, check, run, and run --final after the deadline."""

from __future__ import annotations

import json
import re
from decimal import Decimal
from pathlib import Path

import openpyxl
import pytest
from typer.testing import CliRunner

from pipeline.campaign import config
from pipeline.cli import app
from pipeline.io.outbox import SUMMARY_DIR
from pipeline.render.workbook import sheet_names
from tests.conftest import docx_text
from tests.test_consolidate import file_figures

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "jinqiu" / "rules.yaml"
DRAFT_AS_OF, FINAL_AS_OF = "2017-09-01T12:00", "2017-10-08T09:00"
CHINESE = re.compile(r"[\u4e00-\u9fff]")
# What each kind of planted mistake trips in this campaign's rules.
TRIPS = {
    "total_typed_over": "J-total",
    "money_in_yuan": "J-spent",
    "breaks_rule": "J-children",
    "text_in_number": "R-type",
    "left_blank": "R-required",
    "resubmission": "J-sources",
}
runner = CliRunner()


def cli(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, [*args, "--rules", str(EXAMPLE)])
    return result.exit_code, result.output


@pytest.fixture(scope="module")
def jinqiu() -> config.Rules:
    return config.load(EXAMPLE)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[Path, str]]:
    """A demo inbox of the campaign, made by `pipeline demo`: each file with the note the command printed."""
    folder = tmp_path_factory.mktemp("jinqiu")
    code, output = cli("demo", "--inbox", str(folder / "inbox"), "--seed", "2017")
    assert code == 0, output
    notes = {}
    for line in output.splitlines():
        if "  ——  " in line:
            name, note = line.strip().split("  ——  ")
            notes[folder / "inbox" / name] = note
    return folder, notes


def test_templates_are_made_for_each_of_its_units(jinqiu, tmp_path):
    code, output = cli("templates", "--out", str(tmp_path))
    assert code == 0, output
    made = sorted(tmp_path.glob("*.xlsx"))
    assert len(made) == len(jinqiu.units) == 14 and "已生成 14 个模板" in output
    assert all(p.name.endswith("_附件_2017年金秋助学统计表.xlsx") for p in made)
    wb = openpyxl.load_workbook(tmp_path / "海南省教科文卫工会_附件_2017年金秋助学统计表.xlsx")
    assert wb.sheetnames == ["金秋助学统计表", "_meta"] and wb["_meta"].sheet_state == "hidden"
    texts = {c.value for row in wb["金秋助学统计表"].iter_rows() for c in row if c.value}
    assert {
        "2017年金秋助学统计表",
        "海南省教科文卫工会",
        "中职(技工学校)",
        "本科生每人资助标准\n(元)",
    } <= texts


def test_the_demo_plants_its_own_mistakes_and_check_refuses_them_in_chinese(jinqiu, site):
    _, notes = site
    declared = {m.note: m.kind for m in jinqiu.demo.mistakes}
    assert (
        len(notes) == 14
        and "未报送:儋州市总工会(金秋助学统计表)" in cli("demo", "--inbox", str(site[0] / "again"))[1]
    )
    code, output = cli("check", "--json", *map(str, notes))
    assert code == 1  # some files are refused
    results = {Path(r["file"]).name: r for r in json.loads(output)}
    tripped = set()
    for path, note in notes.items():
        result = results[path.name]
        kind = declared.get(note.removeprefix("第1版:"))
        if kind in TRIPS:
            assert result["verdict"] == "rejected", (path.name, note)
            rules = {f["rule"] for f in result["findings"] if f["severity"] == "error"}
            assert TRIPS[kind] in rules, (note, rules)
            for f in result["findings"]:
                assert CHINESE.search(f["message"]) and f["sheet"] == "金秋助学统计表", f
            tripped.add(kind)
        else:  # correct, the .xls copy, the messy spellings, the corrected version
            assert (result["verdict"], result["findings"]) == ("accepted", []), (path.name, note, result)
    assert tripped == set(TRIPS)
    text = cli("check", str(next(p for p, n in notes.items() if declared.get(n) == "breaks_rule")))[1]
    assert "困难职工子女与农民工子女共" in text and "多于资助学生" in text


def _total_row(ws, label: str) -> int:
    return next(r for r in range(1, ws.max_row + 1) if ws.cell(r, 1).value == label)


def test_run_consolidates_as_the_example_declares_and_final_writes_an_edition(jinqiu, site):
    folder, notes = site
    inbox, out, state = folder / "inbox", folder / "out", folder / "state"
    args = ("--inbox", str(inbox), "--outbox", str(out), "--state", str(state))
    code, output = cli("run", *args, "--as-of", DRAFT_AS_OF)
    assert code == 0, output
    assert "校验:通过 8,未通过 6" in output and "报送情况:8/14 个单位已全部报齐" in output

    (workbook,) = (out / SUMMARY_DIR).glob("*汇总表(草稿).xlsx")
    assert workbook.name == "2017年金秋助学活动汇总表(草稿).xlsx"
    wb = openpyxl.load_workbook(workbook, data_only=True)  # the totals' figures (they are =SUM formulas)
    assert (
        wb.sheetnames
        == list(sheet_names(jinqiu))
        == [
            "说明",
            "金秋助学汇总",
            "分学段汇总",
            "单位×学段",
            "明细",
            "报送情况",
            "校验问题",
            "数据来源",
        ]
    )
    # The 全省合计 row is the sum of the accepted files' own cells, column by column; the standard, declared
    # `range`, is not summed but counted and ranged.
    declared = {m.note: m.kind for m in jinqiu.demo.mistakes}
    accepted = [p for p, n in notes.items() if declared.get(n.removeprefix("第1版:")) not in TRIPS]
    assert len(accepted) == 8
    files = [file_figures(jinqiu, p, "aid") for p in accepted]
    ws = wb["金秋助学汇总"]
    row = _total_row(ws, "已汇总单位合计(8/14)")  # 6 of 14 units are not in: the label says so
    for j, column in enumerate(jinqiu.consolidation.table("by_unit").columns, start=2):
        cell = ws.cell(row, j).value
        if column.aggregate == "range":
            standards = [int(f[column.key]) for f in files]
            assert cell == f"{len(standards)} 个单位,{min(standards)}–{max(standards)}"
        else:
            assert Decimal(repr(cell)) == sum((f[column.key] for f in files), Decimal(0)), column.name
    levels = wb["分学段汇总"]
    assert [levels.cell(r, 1).value for r in range(5, 10)] == [
        "本科",
        "专科(高职)",
        "普通高中",
        "中职(技工学校)",
        "已汇总单位合计(8/14)",
    ]
    students = sum((f[("students", "total", "students")] for f in files), Decimal(0))
    assert levels.cell(9, 2).value == int(students)
    readme = {ws_row[0]: ws_row[1] for ws_row in wb["说明"].iter_rows(values_only=True) if ws_row[0]}
    assert (
        readme["金秋助学汇总"].startswith("金秋助学统计表分单位汇总")
        and "资助标准" in readme["金秋助学汇总中不相加的栏"]
    )

    report = next((out / SUMMARY_DIR).glob("*情况报告(草稿).html")).read_text(encoding="utf-8")
    # 8 of 14 units are in: the sentence says so instead of 全省各级工会
    assert (
        f"已汇总的 8 个单位(应报 14 个)在金秋助学活动中共资助困难职工和农民工子女 {int(students)} 人"
        in report
    )
    assert "分学段资助学生人数" in report and "送温暖" not in report and "帮扶中心" not in report
    summary = docx_text(next((out / SUMMARY_DIR).glob("*总结(草稿).docx")).read_bytes())
    assert "根据全总关于做好2017年金秋助学活动的通知" in summary and "受助学生回访" in summary

    code, output = cli("run", *args, "--as-of", DRAFT_AS_OF, "--final")
    assert code == 2 and "还没到截止时间" in output
    code, output = cli("run", *args, "--as-of", FINAL_AS_OF, "--final")
    assert code == 2 and "还有 6 个单位的材料不全,终稿未生成" in output
    code, output = cli(
        "run", *args, "--as-of", FINAL_AS_OF, "--final", "--allow-missing", "六个单位未按时报送"
    )
    assert code == 0, output
    final = sorted(p.name for p in (out / SUMMARY_DIR / "终稿第1版").iterdir())
    assert final == [
        "2017年金秋助学活动总结(终稿第1版).docx",
        "2017年金秋助学活动情况报告(终稿第1版).html",
        "2017年金秋助学活动汇总表(终稿第1版).xlsx",
    ]
    edition = openpyxl.load_workbook(out / SUMMARY_DIR / "终稿第1版" / final[2])
    assert "终稿(第1版)" in {c for row in edition["说明"].iter_rows(values_only=True) for c in row}
