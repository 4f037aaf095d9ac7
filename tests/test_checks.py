"""Rules as objects: each rule of rules.yaml compiled into the class of its kind, its pandera checks named by
the rule id alone (what each stands for is in a side table), every message filled by one renderer, and a
validation that reports without changing what it was given."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from pathlib import Path

import yaml

from pipeline import checks
from pipeline.checks import messages, schema, validate
from pipeline.checks.expressions import CheckRule
from pipeline.checks.kinds import RowTotalRule
from pipeline.runs import check
from pipeline.submission import read
from tests.conftest import cell_of

TODAY = dt.date(2017, 2, 1)
ROOT = Path(__file__).resolve().parents[1]


def test_every_rule_is_an_object_of_its_kind_compiled_once(rules):
    book = checks.Ruleset.of(rules)
    assert [r.rule.id for r in book.rules] == [r.id for r in rules.rules]
    assert all(r.kind == r.rule.kind for r in book.rules)
    assert {r.kind for r in book.rules} == {
        "type",
        "decimals",
        "required",
        "row_total",
        "check",
        "money_unit",
    }
    assert checks.Ruleset.of(rules) is book
    (x_archive,) = book.across_forms
    assert x_archive.rule.id == "X-archive" and [f.code for f in x_archive.forms] == ["warmth", "center"]
    assert book.places("warmth") == 2


def test_check_names_are_rule_ids_and_the_side_table_says_the_rest(rules):
    ids = {r.id for r in rules.rules}
    for form in rules.forms:
        built = schema.for_form(rules, form)
        column_checks = [c for col in built.schema.columns.values() for c in col.checks]
        assert {c.name for c in built.schema.checks} | {c.name for c in column_checks} <= ids
        assert len(built.checks) == len(built.schema.checks)
        assert len(built.bounds) == len(column_checks)
    warmth = schema.for_form(rules, "warmth")
    totals = [c for c in warmth.checks if isinstance(c.rule, RowTotalRule)]
    assert {c.row for c in totals} == {"total"}
    assert [c.field for c in totals] == [f.code for f in rules.forms["warmth"].section("visits").fields]
    archived = [c for c in warmth.checks if isinstance(c.rule, CheckRule) and c.rule.rule.id == "W-archived"]
    assert [c.row for c in archived] == [r.code for r in rules.forms["warmth"].section("visits").rows]
    duty = schema.for_form(rules, "center").bounds
    assert {b.hint for (name, _), b in duty.items() if name == "archive.duty_days"} == {
        "不能为负数",
        "不能超过 45",
        "不能有小数",
    }


def test_validation_reports_and_leaves_its_input_as_it_was(rules, fill):
    path = fill(
        changes={("visits", "total", "amount_cash"): 9999.5, ("visits", "agri", "households"): "见附件"}
    )
    prepared = checks.prepare(read.read_path(path, rules), rules, TODAY)
    findings, values = list(prepared.findings), dict(prepared.values)
    assert [f.rule for f in findings] == ["R-type"]  # worded right after normalising

    (report,) = validate.validate([prepared], rules)
    assert (prepared.findings, prepared.values) == (findings, values)
    assert report.checked is prepared and report.values is prepared.values
    assert report.findings[: len(findings)] == tuple(findings)
    assert {f.rule for f in report.findings} >= {"R-type", "W-total"}
    assert report.verdict == "rejected"


def test_rules_yaml_wording_reaches_the_finding(rules_text, fill, tmp_path):
    data = yaml.safe_load(rules_text)
    for rule in data["rules"]:
        if rule["kind"] == "type":
            rule.update(id="T-类型", message="{cell}({row}){label}:{value} 不是{expected}")
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    reworded = checks.load(path)
    (r,) = check.check_paths([fill(changes={("visits", "agri", "households"): "见附件"})], reworded)
    (f,) = r.findings
    cell = cell_of(reworded, "warmth", "visits", "agri", "households")
    assert (f.rule, f.message) == ("T-类型", f"{cell}(农、林、牧、渔业)慰问困难职工(户):见附件 不是整数")


def test_a_blank_placeholder_takes_the_space_before_it_along():
    template = "{cell} {row} {label} {value} 不等于 {range} 之和"
    assert messages.word(template, {"cell": "E5", "label": "户数", "value": "3", "range": "E1:E4"}) == (
        "E5 户数 3 不等于 E1:E4 之和"
    )
    assert messages.word("{row}{label}", {"label": "户数"}) == "户数"


def test_what_a_person_typed_is_quoted_as_typed():
    assert (
        messages.word("{cell} 实际填写“{value}”", {"cell": "E7", "value": "1  2 户"})
        == "E7 实际填写“1  2 户”"
    )


def test_loading_rules_and_preparing_a_form_need_no_pandas(fill):
    """The reading children load rules.yaml and prepare each form: pandas and pandera would cost each of
    them time and memory for nothing."""
    path = fill(changes={("visits", "agri", "households"): "见附件"})
    code = (
        "import sys, datetime; from pipeline import checks; from pipeline.submission import read\n"
        f"rules = checks.load({str(ROOT / 'rules.yaml')!r})\n"
        f"c = checks.prepare(read.read_path(__import__('pathlib').Path({str(path)!r}), rules), rules,"
        " datetime.date(2017, 2, 1))\n"
        "assert [f.rule for f in c.findings] == ['R-type'], c.findings\n"
        "loaded = [m for m in ('pandas', 'pandera') if m in sys.modules]\n"
        "print(loaded, file=sys.stderr); sys.exit(bool(loaded))"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
