"""Every rule of FORMS.md, on a template written by the project and filled as a person would.

Each test breaks one thing in an otherwise correct form and asserts the verdict, the rule id and the
cell the finding points at.
"""

from __future__ import annotations

import datetime as dt

import pytest

from pipeline import checks
from pipeline.checks import validate
from pipeline.model import Finding
from pipeline.runs import check
from pipeline.submission import read
from tests.conftest import cell_of

TODAY = dt.date(2017, 2, 1)


def run(rules, *paths):
    return check.check_paths(list(paths), rules)


def only(result, rule):
    found = [f for f in result.findings if f.rule == rule]
    assert found, f"no {rule} in {[(f.rule, f.cell, f.message) for f in result.findings]}"
    return found


def test_correct_forms_are_accepted_without_findings(rules, fill):
    results = run(rules, fill("warmth"), fill("center"))
    for r in results:
        assert r.verdict == "accepted", [(f.rule, f.cell, f.message) for f in r.findings]
        assert r.findings == ()
        assert r.unit == "460100"
    assert [r.form for r in results] == ["warmth", "center"]


def test_text_in_a_count_cell_is_r_type(rules, fill):
    (r,) = run(rules, fill(changes={("visits", "agri", "households"): "见附件"}))
    assert r.verdict == "rejected"
    (f,) = only(r, "R-type")
    assert (f.sheet, f.cell, f.value) == (
        "送温暖统计表",
        cell_of(rules, "warmth", "visits", "agri", "households"),
        "见附件",
    )
    assert f.cell in f.message and "应填整数" in f.message


def test_fraction_in_count_cell_is_an_error(rules, fill):
    (r,) = run(rules, fill(changes={("visits", "mfg", "model_workers"): 2.5}))
    (f,) = only(r, "R-type")
    assert f.cell == cell_of(rules, "warmth", "visits", "mfg", "model_workers")
    assert f.message.endswith("不能有小数")


def test_negative_number_is_an_error(rules, fill):
    (r,) = run(rules, fill(changes={("funds", "", "fund_unspent_to_daily"): -0.5}))
    assert r.verdict == "rejected"
    (f,) = only(r, "R-type")
    assert f.cell == cell_of(rules, "warmth", "funds", "", "fund_unspent_to_daily")
    assert f.message.endswith("不能为负数")


def test_duty_days_above_maximum_names_the_maximum(rules, fill):
    (r,) = run(rules, fill("center", changes={("archive", "", "duty_days"): 60}))
    (f,) = only(r, "R-type")
    assert f.cell == cell_of(rules, "center", "archive", "", "duty_days")
    assert f.message == f"{f.cell} 两节期间值班天数(天)应填整数,实际填写“60”。不能超过 45"


def test_money_with_three_decimals_is_rounded_with_a_warning(rules, fill):
    (r,) = run(rules, fill(changes={("activities", "", "wages_recovered"): 12.345}))
    assert r.verdict == "accepted"
    (f,) = only(r, "R-decimals")
    assert f.severity == "warning"
    assert f.cell == cell_of(rules, "warmth", "activities", "", "wages_recovered")
    assert "12.35" in f.message


def test_missing_preparer_is_r_required(rules, fill):
    (r,) = run(rules, fill(changes={("sign", "", "preparer"): None}))
    assert r.verdict == "rejected"
    (f,) = only(r, "R-required")
    assert f.cell == cell_of(rules, "warmth", "sign", "", "preparer")
    assert "填表人" in f.message


def test_unreadable_phone_and_date_are_r_required_once_each(rules, fill):
    (r,) = run(rules, fill(changes={("sign", "", "phone"): "12345", ("sign", "", "date"): "春节前"}))
    found = only(r, "R-required")
    assert sorted(f.cell for f in found) == sorted(
        [cell_of(rules, "warmth", "sign", "", "phone"), cell_of(rules, "warmth", "sign", "", "date")]
    )


def test_empty_note_is_fine(rules, fill):
    (r,) = run(rules, fill(changes={("sign", "", "note"): None}))
    assert r.verdict == "accepted"


def test_sum_mismatch_points_at_total_cell(rules, fill):
    total = cell_of(rules, "warmth", "visits", "total", "amount_cash")
    (r,) = run(rules, fill(changes={("visits", "total", "amount_cash"): 9999.5}))
    assert r.verdict == "rejected"
    (f,) = only(r, "W-total")
    assert f.cell == total
    first = cell_of(rules, "warmth", "visits", "agri", "amount_cash")
    last = cell_of(rules, "warmth", "visits", "other", "amount_cash")
    assert f"{total} 合计" in f.message and "9999.50" in f.message and f"{first}:{last} 之和" in f.message


def test_blank_total_is_computed_not_an_error(rules, fill):
    changes = {("visits", "total", code): "" for code in ("households", "amount_total")}
    (r,) = run(rules, fill(changes=changes))
    assert r.verdict == "accepted", [(f.rule, f.message) for f in r.findings]


def test_archived_more_than_households_is_w_archived(rules, fill):
    (r,) = run(
        rules,
        fill(changes={("visits", "trade", "households"): 5, ("visits", "trade", "households_archived"): 9}),
    )
    (f,) = only(r, "W-archived")
    assert f.cell == cell_of(rules, "warmth", "visits", "trade", "households_archived")
    assert "9" in f.message and "5" in f.message and r.verdict == "rejected"


def test_amount_not_cash_plus_goods_is_w_amount(rules, fill):
    (r,) = run(rules, fill(changes={("visits", "social", "amount_total"): 99.0}))
    found = only(r, "W-amount")
    assert {f.cell for f in found} == {cell_of(rules, "warmth", "visits", "social", "amount_total")}


def test_fund_total_not_the_five_sources_is_w_funds(rules, fill):
    (r,) = run(rules, fill(changes={("funds", "", "fund_central"): 0.0}))
    cells = {f.cell for f in only(r, "W-funds")}
    assert cell_of(rules, "warmth", "funds", "", "fund_total") in cells
    assert r.verdict == "rejected"


def test_unspent_to_daily_above_unspent_is_w_funds(rules, fill):
    (r,) = run(rules, fill(changes={("funds", "", "fund_unspent_to_daily"): 999.0}))
    (f,) = only(r, "W-funds")
    assert f.cell == cell_of(rules, "warmth", "funds", "", "fund_unspent_to_daily")


def test_goods_paid_from_fiscal_funds_is_w_goods(rules, fill, rules_text):
    (r,) = run(
        rules,
        fill(
            changes={
                ("funds", "", "fund_union"): 0.0,
                ("funds", "", "fund_social"): 0.0,
                ("funds", "", "fund_central"): 1000.0,
            }
        ),
    )
    (f,) = only(r, "W-goods")
    assert f.cell == cell_of(rules, "warmth", "visits", "total", "amount_goods")
    assert "不得通过发放实物" in f.message


def test_spent_not_matching_visits_is_a_warning(rules, fill):
    (r,) = run(
        rules,
        fill(
            changes={
                ("funds", "", "fund_unspent"): 0.0,
                ("funds", "", "fund_unspent_to_daily"): 0.0,
                ("funds", "", "fund_central"): 1000.0,
                ("funds", "", "fund_total"): 2000.0,
            }
        ),
    )
    (f,) = only(r, "W-spent")
    assert f.severity == "warning"
    assert f.cell == cell_of(rules, "warmth", "funds", "", "fund_total")


def test_amount_typed_in_yuan_is_w_per_head(rules, fill):
    changes = {
        ("visits", "agri", "amount_total"): 800.0,
        ("visits", "agri", "amount_cash"): 800.0,
        ("visits", "agri", "amount_goods"): 0.0,
        ("visits", "agri", "households"): 100,
        ("visits", "agri", "households_archived"): 50,
        ("visits", "agri", "migrant_workers"): 0,
        ("visits", "agri", "model_workers"): 0,
        ("visits", "agri", "frontline_workers"): 0,
    }
    (r,) = run(rules, fill(changes=changes))
    found = [f for f in only(r, "W-per-head") if f.row == "agri"]
    (f,) = found
    assert f.cell == cell_of(rules, "warmth", "visits", "agri", "amount_total")
    assert "800.00 万元" in f.message and "人均 8.00 万元" in f.message and "应填 0.08" in f.message


def test_new_archived_above_archived_is_c_new(rules, fill):
    (r,) = run(
        rules,
        fill(
            "center",
            changes={("archive", "", "archived_households"): 10, ("archive", "", "new_archived"): 11},
        ),
    )
    (f,) = only(r, "C-new")
    assert f.cell == cell_of(rules, "center", "archive", "", "new_archived")
    assert r.verdict == "rejected"


def test_placed_above_referrals_is_c_new(rules, fill):
    (r,) = run(
        rules,
        fill("center", changes={("services", "", "job_referrals"): 3, ("services", "", "job_placed"): 4}),
    )
    (f,) = only(r, "C-new")
    assert f.cell == cell_of(rules, "center", "services", "", "job_placed")


def test_aid_total_typed_wrong_is_c_total(rules, fill):
    (r,) = run(rules, fill("center", changes={("aid", "total", "persons"): 1}))
    (f,) = only(r, "C-total")
    assert f.cell == cell_of(rules, "center", "aid", "total", "persons")


def test_money_paid_to_nobody_is_c_paid_nobody(rules, fill):
    (r,) = run(
        rules, fill("center", changes={("aid", "legal", "persons"): 0, ("aid", "legal", "amount"): 3.5})
    )
    (f,) = only(r, "C-paid-nobody")
    assert f.cell == cell_of(rules, "center", "aid", "legal", "amount")
    assert "3.50" in f.message


@pytest.mark.parametrize("field", ["duty_days", "staff"])
def test_no_duty_roster_is_a_c_duty_warning(rules, fill, field):
    (r,) = run(rules, fill("center", changes={("archive", "", field): 0}))
    (f,) = only(r, "C-duty")
    assert f.severity == "warning" and r.verdict == "accepted"


def test_archived_visits_above_center_archive_is_x_archive(rules, fill):
    warmth = fill("warmth", seed=3)
    center = fill(
        "center", changes={("archive", "", "archived_households"): 1, ("archive", "", "new_archived"): 0}
    )
    results = run(rules, warmth, center)
    (f,) = only(results[0], "X-archive")
    assert f.severity == "warning"
    assert f.cell == cell_of(rules, "warmth", "visits", "total", "households_archived")
    assert "多于帮扶中心统计表年末建档困难职工 1 户" in f.message


def test_x_archive_needs_both_forms(rules, fill):
    center = fill(
        "center", changes={("archive", "", "archived_households"): 1, ("archive", "", "new_archived"): 0}
    )
    (r,) = run(rules, center)
    assert not [f for f in r.findings if f.rule == "X-archive"]


def test_values_handed_over_in_another_order_are_checked_the_same(rules, fill):
    """Validation takes a form's values as they come when they are in the form's own order, as
    normalisation gives them; values in any other order must be found just the same."""
    paths = [
        fill(changes={("visits", "total", "amount_cash"): 9999.5}, seed=3),
        fill(
            "center", changes={("archive", "", "archived_households"): 1, ("archive", "", "new_archived"): 0}
        ),
    ]

    def checked(reordered: bool) -> list[list[Finding]]:
        prepared = [
            checks.prepare(read.read_submission(p.read_bytes(), p.name, rules), rules, TODAY) for p in paths
        ]
        for c in prepared:
            c.values = dict(reversed(c.values.items())) if reordered else c.values
        return [list(r.findings) for r in validate.validate(prepared, rules)]

    as_given = checked(reordered=False)
    assert {f.rule for found in as_given for f in found} >= {"W-total", "X-archive"}
    assert checked(reordered=True) == as_given
