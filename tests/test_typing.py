"""What people actually type (FORMS.md), end to end: a template filled as a person would, then checked."""

from __future__ import annotations

import datetime as dt

import pytest

from pipeline.runs import check
from tests.conftest import cell_of

HH = ("visits", "agri", "households")
MONEY = ("visits", "agri", "amount_cash")


def run_one(rules, path):
    (r,) = check.check_paths([path], rules)
    return r


def value_used(rules, path, key):
    from pipeline.checks import validate
    from pipeline.submission import read

    (c,) = validate.validate_reads([read.read_path(path, rules)], rules)
    return c.values[key]


@pytest.mark.parametrize(
    "typed, expected",
    [
        ("１２３", 123),  # full-width digits
        ("1,234", 1234),  # thousands separator
        ("1，234", 1234),  # full-width comma
        ("１，２３４", 1234),
        ("12户", 12),  # the column's own unit
        (" 56 ", 56),  # a number stored as text
    ],
)
def test_unambiguous_counts_are_accepted(rules, fill, typed, expected):
    path = fill(changes={HH: typed, ("visits", "agri", "households_archived"): 0})
    r = run_one(rules, path)
    assert r.verdict == "accepted", [(f.rule, f.message) for f in r.findings]
    assert value_used(rules, path, HH) == expected


@pytest.mark.parametrize("typed", ["无", "-", "—", "/", None])
def test_nil_marks_count_as_zero(rules, fill, typed):
    path = fill(changes={("activities", "", "legal_aid"): typed})
    assert run_one(rules, path).verdict == "accepted"
    assert value_used(rules, path, ("activities", "", "legal_aid")) == 0


@pytest.mark.parametrize("typed, expected", [("3.5万元", 3.5), ("3.5万", 3.5), ("１２３．５", 123.5)])
def test_money_with_its_own_unit_or_fullwidth_is_accepted(rules, fill, typed, expected):
    path = fill(changes={("activities", "", "wages_recovered"): typed})
    assert run_one(rules, path).verdict == "accepted"
    assert value_used(rules, path, ("activities", "", "wages_recovered")) == expected


def test_yuan_in_wanyuan_column_suggests_converted_value(rules, fill):
    r = run_one(rules, fill(changes={("activities", "", "wages_recovered"): "35000元"}))
    assert r.verdict == "rejected"
    (f,) = [f for f in r.findings if f.rule == "R-type"]
    assert f.cell == cell_of(rules, "warmth", "activities", "", "wages_recovered")
    assert "应填 3.50" in f.message and f.value == "35000元"


@pytest.mark.parametrize("typed", ["见附件", "约50"])
def test_other_text_in_a_number_cell_is_an_error(rules, fill, typed):
    r = run_one(rules, fill(changes={("activities", "", "forums"): typed}))
    assert r.verdict == "rejected"
    (f,) = [f for f in r.findings if f.rule == "R-type"]
    assert (f.cell, f.value) == (cell_of(rules, "warmth", "activities", "", "forums"), typed)


def test_formula_uses_its_cached_value(rules, fill, tmp_path):
    # demo.fill caches results of the template's SUM formulas, as Excel does when it saves.
    path = fill()
    r = run_one(rules, path)
    assert r.verdict == "accepted"
    assert value_used(rules, path, ("visits", "total", "households")) > 0


def test_formula_without_cached_value_asks_to_open_and_save(rules, tmp_path):
    from pipeline.render import template

    wb = template.build(rules, rules.forms["warmth"], rules.unit("460100"))
    ws = wb["送温暖统计表"]
    from pipeline.campaign import layout
    from tests.conftest import correct_values

    lay = layout.compute(rules.forms["warmth"])
    for key, value in correct_values(rules, "warmth", "460100").items():
        if key[1] != "total":
            ws[lay.slot(*key).cell] = value
    target = lay.slot("activities", "", "tickets").cell
    ws[target] = "=10*3"  # written by a script: no cached result
    path = tmp_path / "script.xlsx"
    wb.save(path)
    r = run_one(rules, path)
    assert r.verdict == "rejected"
    (f,) = [f for f in r.findings if f.cell == target]
    assert f.rule == "R-type" and "打开后保存" in f.message
    # The template's own 合计 formulas, never computed either, are simply recomputed: no finding there.
    assert all(f.row != "total" for f in r.findings)


@pytest.mark.parametrize(
    "typed", [dt.datetime(2017, 1, 20), 42755, "2017年1月20日", "2017-1-20", "2017.1.20", "2017/01/20"]
)
def test_dates_in_their_five_spellings(rules, fill, typed):
    path = fill(changes={("sign", "", "date"): typed})
    assert run_one(rules, path).verdict == "accepted"
    assert value_used(rules, path, ("sign", "", "date")) == dt.date(2017, 1, 20)


def test_date_before_the_notice_is_an_error(rules, fill):
    r = run_one(rules, fill(changes={("sign", "", "date"): "2016-01-20"}))
    (f,) = [f for f in r.findings if f.rule == "R-required"]
    assert f.cell == cell_of(rules, "warmth", "sign", "", "date") and "早于发文日期" in f.message


def test_rows_inserted_above_and_sheet_renamed_are_still_read_with_a_warning(rules, fill, tmp_path):
    from openpyxl import load_workbook

    path = fill(changes={("visits", "trade", "households"): 5, ("visits", "trade", "households_archived"): 9})
    wb = load_workbook(path)
    ws = wb["送温暖统计表"]
    ws.unmerge_cells("A2:I2")
    ws.insert_rows(1, 2)  # a county adds its own letterhead above the table
    ws["A1"] = "某某市总工会文件"
    ws.title = "Sheet1"
    moved = tmp_path / "moved.xlsx"
    wb.save(moved)
    (r,) = check.check_paths([moved], rules)
    assert r.unit == "460100" and r.form == "warmth"
    structure = [f for f in r.findings if f.rule == "F-structure"]
    assert structure and all(f.severity == "warning" for f in structure)
    assert any("Sheet1" in f.message for f in structure) and any("2 行" in f.message for f in structure)
    # The planted mistake is still found, at its new place two rows down, on the renamed sheet.
    (archived,) = [f for f in r.findings if f.rule == "W-archived"]
    original = cell_of(rules, "warmth", "visits", "trade", "households_archived")
    assert archived.sheet == "Sheet1"
    assert archived.cell == original[0] + str(int(original[1:]) + 2)
    assert r.verdict == "rejected"
