"""The campaign as data: rules.yaml's `consolidation:` and `demo:` sections load into what the consolidation
and the demo use, each mistake in them refused with its YAML path, and the demo's planted mistakes trip the
rules they are declared for."""

from __future__ import annotations

import datetime as dt
import random
import re
from collections.abc import Callable
from typing import Any

import pytest
import yaml

from pipeline import demo
from pipeline.campaign import config
from pipeline.checks import validate
from pipeline.consolidation import consolidate, status
from pipeline.render.html import html_report
from pipeline.render.summary import written_summary
from pipeline.render.workbook import consolidated_workbook
from pipeline.submission import read
from tests.conftest import as_seen
from tests.test_config import refused
from tests.test_consolidate import TODAY

CODES = re.compile(r"\b(warmth|center|visits|households|fund_\w+|amount_\w+|duty_days)\b")
# "center" as a spreadsheet's alignment or a page footer's middle part is no campaign code.
ALIGNMENT = re.compile(r"""(horizontal|vertical)="center"|\{"center": "vcenter"|\.center\.text""")


def edited(rules_text: str, change: Callable[[dict[str, Any]], None]) -> str:
    data = yaml.safe_load(rules_text)
    change(data)
    return yaml.safe_dump(data, allow_unicode=True, sort_keys=False)


# --- what the real file declares ------------------------------------------------------------------------


def test_the_consolidation_is_declared_table_by_table(rules: config.Rules) -> None:
    plan = rules.consolidation
    assert [(t.code, t.kind, t.form, t.sheet) for t in plan.tables] == [
        ("by_unit", "by_unit", "warmth", "送温暖汇总"),
        ("by_industry", "by_row", "warmth", "分行业汇总"),
        ("pivot", "pivot", "warmth", "市县×行业"),
        ("centers", "per_unit", "center", "帮扶中心汇总"),
    ]
    assert plan.aggregate("center", "archive", "duty_days") == "range"
    assert plan.aggregate("center", "archive", "staff") == "range"
    assert plan.aggregate("center", "archive", "archived_households") == "sum"
    centers = {c.name: c for c in plan.table("centers").columns}
    assert centers["duty_days"].aggregate == "range" and centers["total.persons"].aggregate == "sum"
    assert [f.label for f in plan.figures if f.card] == [
        "筹集送温暖资金",
        "走访慰问困难企业",
        "慰问困难职工",
        "建档困难职工",
        "困难农民工",
        "劳动模范",
        "一线职工",
        "慰问金额",
    ]
    assert plan.forms == ("warmth", "center")
    assert [p.label for p in plan.share("fund_sources").parts] == [
        "中央财政帮扶资金",
        "省财政帮扶资金",
        "市县财政资金",
        "各级工会经费",
        "社会筹集资金",
    ]
    assert [p.label for p in plan.share("aid_by_kind").parts][:2] == ["生活救助", "医疗救助"]
    assert plan.summary.recipient == "中华全国总工会"


def test_the_code_spells_no_campaign_code() -> None:
    """Only rules.yaml names the campaign's forms, sections and fields; what the code still says of them is in
    docstrings and comments (and a spreadsheet's "center" alignment, which is no campaign code)."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "pipeline"
    found = []
    for path in sorted(root.rglob("*.py")):
        in_docstring = False
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            code = line.split("#", 1)[0]
            quotes = code.count('"""')
            if in_docstring or quotes:
                in_docstring = in_docstring != (quotes % 2 == 1)
                continue
            if CODES.search(ALIGNMENT.sub("", code)):
                found.append(f"{path.relative_to(root)}:{number}: {line.strip()}")
    assert found == []


def test_demo_steps_come_after_what_they_use(rules: config.Rules) -> None:
    steps = rules.demo.forms["warmth"]
    order = {s.key: i for i, s in enumerate(steps)}
    assert order[("visits", "agri", "households")] < order[("visits", "agri", "households_archived")]
    details = [
        order[("visits", r.code, "amount_goods")] for r in rules.forms["warmth"].section("visits").detail_rows
    ]
    assert max(details) < order[("visits", "total", "amount_goods")] < order[("funds", "", "fund_union")]
    assert order[("funds", "", "fund_local")] < order[("funds", "", "fund_total")]
    assert [m.kind for m in rules.demo.mistakes][:3] == ["sends_nothing", "forgets", "forgets"]


def test_demo_forms_are_correct_and_the_same_for_one_seed(rules: config.Rules) -> None:
    a = demo.form_values(rules, "warmth", random.Random(5), 1.3)
    assert a == demo.form_values(rules, "warmth", random.Random(5), 1.3)
    visits = rules.forms["warmth"].section("visits")
    for f in visits.fields:
        detail = sum(a[("visits", r.code, f.code)] for r in visits.detail_rows)
        assert a[("visits", "total", f.code)] == pytest.approx(detail)
    funds = [
        a[("funds", "", c)]
        for c in ("fund_central", "fund_provincial", "fund_local", "fund_union", "fund_social")
    ]
    assert a[("funds", "", "fund_total")] == pytest.approx(sum(funds))
    assert all(isinstance(a[("visits", r.code, "households")], int) for r in visits.rows)
    assert a[("sign", "", "note")] is None if ("sign", "", "note") in a else True
    assert isinstance(a[("sign", "", "preparer")], str) and a[("sign", "", "preparer")]


def test_every_planted_mistake_is_refused_by_its_rule_and_the_rest_pass(
    rules: config.Rules, tmp_path
) -> None:
    made = demo.make(rules, tmp_path / "inbox", seed=7)
    forms = [f for f in made.files if rules.items[f.item].form]
    checked = validate.validate_reads([read.read_path(f.path, rules) for f in forms], rules, today=TODAY)
    declared = {m.note: m for m in rules.demo.mistakes}
    expected = {
        "total_typed_over": "W-total",
        "left_blank": "R-required",
        "text_in_number": "R-type",
        "money_in_yuan": "W-yuan",
    }
    seen = set()
    for f, c in zip(forms, checked, strict=True):
        note = f.note.removeprefix("第1版:")
        mistake = declared.get(note)
        errors = {x.rule for x in c.findings if x.is_error}
        if mistake is None or mistake.kind in ("xls_copy", "messy_but_fine", "wrong_level"):
            assert c.verdict == "accepted", (f.path.name, f.note, c.findings)
            assert not [x for x in c.findings if x.rule != "F-identity"], (f.path.name, c.findings)
            continue
        seen.add(mistake.kind)
        assert c.verdict == "rejected", (f.path.name, f.note)
        assert (mistake.rule or expected.get(mistake.kind, "W-amount")) in errors, (f.note, errors)
    assert seen == {
        "total_typed_over",
        "money_in_yuan",
        "breaks_rule",
        "text_in_number",
        "left_blank",
        "resubmission",
    }


# --- mistakes in the sections, refused with their YAML paths ------------------------------------------------


def _table(data: dict[str, Any], index: int) -> dict[str, Any]:
    return data["consolidation"]["tables"][index]


@pytest.mark.parametrize(
    ("change", "path", "words"),
    [
        (lambda d: _table(d, 0).update(kind="chart"), "consolidation.tables[0].kind", "未知的汇总表类型"),
        (lambda d: _table(d, 1).update(section="funds"), "consolidation.tables[1].section", "没有分行的节"),
        (
            lambda d: _table(d, 2).update(fields=["households", "note"]),
            "consolidation.tables[2].fields[1]",
            "数值字段",
        ),
        (lambda d: _table(d, 3).update(sheet="报送情况"), "consolidation.tables[3].sheet", "已被占用"),
        (lambda d: _table(d, 3).update(form="bonus"), "consolidation.tables[3].form", "不存在的报表"),
        (
            lambda d: d["consolidation"]["aggregate"].update({"center.archive.days": "range"}),
            "consolidation.aggregate.center.archive.days",
            "没有数值字段",
        ),
        (
            lambda d: d["consolidation"]["aggregate"].update({"center.archive.staff": "average"}),
            "consolidation.aggregate.center.archive.staff",
            "未知的汇总方式",
        ),
        (
            lambda d: d["consolidation"]["figures"][2].update(at="warmth.visits.households"),
            "consolidation.figures[2].at",
            "分行填写",
        ),
        (
            lambda d: d["consolidation"]["paragraphs"].__setitem__(1, "共 {households} 户,{househods} 户"),
            "consolidation.paragraphs[1]",
            "未知的名称 {househods}",
        ),
        (
            lambda d: d["consolidation"]["paragraphs"].__setitem__(0, "共 {households 户"),
            "consolidation.paragraphs[0]",
            "花括号",
        ),
        (
            lambda d: d["consolidation"]["charts"][2].update(table="by_industry"),
            "consolidation.charts[2].table",
            "by_unit",
        ),
        (
            lambda d: d["consolidation"]["report_table"]["columns"].update(persons="人次"),
            "consolidation.report_table.columns.persons",
            "没有",
        ),
        (
            lambda d: d["consolidation"]["summary"].update(opening="{year}年{place}"),
            "consolidation.summary.opening",
            "未知的名称 {place}",
        ),
        (
            lambda d: d["demo"]["forms"]["warmth"]["visits"].update(households="rand(1, 9) * weihgt"),
            "demo.forms.warmth.visits.households",
            "weihgt",
        ),
        (
            lambda d: d["demo"]["forms"]["warmth"]["visits"].update(households="exec(1)"),
            "demo.forms.warmth.visits.households",
            "可用的函数",
        ),
        (
            lambda d: d["demo"]["forms"]["warmth"]["funds"].update(fund_unspent="funds.fund_total * 0.05"),
            "demo.forms.warmth.funds",
            "互相引用",
        ),
        (
            lambda d: d["demo"]["forms"]["center"].update(bonus={"x": "1"}),
            "demo.forms.center.bonus",
            "没有",
        ),
        (lambda d: d["demo"]["mistakes"][0].update(kind="typo"), "demo.mistakes[0].kind", "未知的错误类型"),
        (lambda d: d["demo"]["mistakes"][5].update(rule="W-nothing"), "demo.mistakes[5].rule", "W-nothing"),
        (
            lambda d: d["demo"]["mistakes"][3].update(at="warmth.visits.agri.households"),
            "demo.mistakes[3].at",
            "合计行",
        ),
        (
            lambda d: d["demo"]["mistakes"][6]["cells"].update({"warmth.funds.fund_total": "约{amount}"}),
            "demo.mistakes[6].cells.warmth.funds.fund_total",
            "{value}",
        ),
    ],
)
def test_a_mistake_in_the_new_sections_is_refused_with_its_path(rules_text, change, path, words) -> None:
    error = refused(edited(rules_text, change))
    assert error.path.startswith(path), (error.path, error.message)
    assert words in error.message, error.message


def test_both_sections_may_be_left_out(rules_text) -> None:
    def without(d: dict[str, Any]) -> None:
        del d["consolidation"], d["demo"]

    rules = config.loads(edited(rules_text, without))
    assert rules.consolidation.tables == () and rules.demo.mistakes == ()
    values = demo.form_values(rules, "center", random.Random(1))
    assert values[("archive", "", "staff")] == 0 and ("sign", "", "leader") not in values
    # Nothing declared to consolidate: the workbook keeps its own sheets, the report its own sections.
    as_of = dt.datetime(2017, 2, 6, 9, 0, tzinfo=rules.campaign.tz)
    now = status.compute(rules, [], as_of)
    c = consolidate.consolidate(rules, [], status.expected_units(rules))
    assert c.tables == {} and c.figures == {} and c.units_expected == 21
    data = consolidated_workbook(rules, c, now, {}, [], as_of=as_of, final=False, edition=0)
    assert as_seen(data)["sheets"] == ["说明", "报送情况", "校验问题", "数据来源"]
    text = html_report(rules, c, now, {}, as_of=as_of, final=False, edition=0)
    assert "三、尚未解决的校验问题" in text and "图表" not in text
    assert (
        "根据海南省总工会琼工发〔2016〕33号文件要求"
        in written_summary(rules, c, now, as_of=as_of, final=False).text()
    )


def test_demo_sizes_and_mistakes_need_not_match_the_units(rules_text) -> None:
    """Units may come from a contact list kept apart: a size for a unit not in it is no reason to refuse."""

    def change(d: dict[str, Any]) -> None:
        d["demo"]["sizes"]["999999"] = 3

    assert config.loads(edited(rules_text, change)).demo.sizes["999999"] == 3
