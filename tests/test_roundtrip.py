"""A filled form re-saved by LibreOffice (.xlsx) and converted by it (.xls, .ods) gives the same findings."""

from __future__ import annotations

from pipeline.runs import check


def signature(result):
    return (
        result.verdict,
        result.unit,
        result.form,
        sorted((f.rule, f.severity, f.sheet, f.cell) for f in result.findings),
    )


def test_resaved_and_converted_forms_give_the_same_findings(rules, fill, soffice_convert, tmp_path):
    mistakes = {
        ("visits", "trade", "households"): 5,
        ("visits", "trade", "households_archived"): 9,  # W-archived
        ("visits", "social", "amount_total"): 99.0,  # W-amount
        ("activities", "", "forums"): "见附件",  # R-type
        ("activities", "", "wages_recovered"): "3.5万元",  # accepted: the column's own unit
        ("funds", "", "fund_unspent_to_daily"): 999.0,  # W-funds
        ("sign", "", "preparer"): None,  # R-required
        ("sign", "", "date"): "2017.1.20",
    }
    original = fill(changes=mistakes, name="海口_附件1.xlsx")
    center = fill(
        "center",
        changes={("aid", "legal", "persons"): 0, ("aid", "legal", "amount"): 3.5},
        name="海口_附件2.xlsx",
    )
    converted = []
    for fmt in ("xlsx", "xls", "ods"):
        converted += [(fmt, p) for p in soffice_convert([original, center], fmt, tmp_path / fmt)]
    baseline = check.check_paths([original, center], rules)
    assert baseline[0].verdict == "rejected"
    assert {f.rule for f in baseline[0].findings} >= {
        "W-archived",
        "W-amount",
        "R-type",
        "W-funds",
        "R-required",
    }
    assert {f.rule for f in baseline[1].findings} == {"C-paid-nobody"}
    for fmt, path in converted:
        (again,) = check.check_paths([path], rules)
        expected = baseline[0] if "附件1" in path.name else baseline[1]
        assert signature(again) == signature(expected), f"{fmt}: {path.name}"
        assert [f.message for f in again.findings] == [f.message for f in expected.findings], fmt
