"""Consolidation and its renderings, on the demo inbox.

Every consolidated figure is checked against a sum this file computes itself, from the accepted files'
own cells read with python-calamine at the template's cells: not through read/validate/consolidate.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import re
import subprocess
import unicodedata
import zipfile
from collections import Counter
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pytest
from markupsafe import escape
from openpyxl import load_workbook
from python_calamine import CalamineWorkbook

from pipeline import demo
from pipeline.campaign import layout
from pipeline.campaign.config import Rules
from pipeline.checks import validate
from pipeline.consolidation import consolidate, status
from pipeline.model import Finding, Report, Severity, Submission, Verdict, column_letters
from pipeline.render import coverage, template
from pipeline.render.html import html_report
from pipeline.render.summary import written_summary
from pipeline.render.workbook import consolidated_workbook, sheet_names
from pipeline.runs import check
from pipeline.submission import read
from tests.conftest import as_seen, correct_values, require_program

Key = tuple[str, str, str]
TODAY = dt.date(2017, 2, 6)


@dataclass
class Batch:
    versions: list[Submission]  # every version, reports included, in arrival order
    latest_accepted: list[Submission]  # what the caller hands to consolidate
    accepted_files: dict[tuple[str, str], Path]  # (unit, form) → the file of the version used
    rejected_files: dict[tuple[str, str], list[Path]]
    findings_by_unit: dict[str, list[tuple[str, Finding]]]
    status: status.Status
    as_of: dt.datetime


def _version(
    path: Path,
    unit: str,
    item: str,
    form: str | None,
    number: int,
    verdict: str,
    rules: Rules,
    checked: Report | None = None,
) -> Submission:
    findings = checked.findings if checked else []
    return Submission(
        sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
        unit=unit,
        item=item,
        form=form,
        file=path.name,
        received=dt.datetime.fromtimestamp(path.stat().st_mtime, rules.campaign.tz),
        version=number,
        verdict=Verdict(verdict),
        findings=tuple(findings),
        values=checked.values if checked else {},
    )


@pytest.fixture(scope="module")
def batch(rules: Rules, tmp_path_factory: pytest.TempPathFactory) -> Batch:
    made = demo.make(rules, tmp_path_factory.mktemp("consolidate") / "inbox")
    files = sorted(made.files, key=lambda f: (f.path.stat().st_mtime, f.path.name))
    forms = [f for f in files if rules.items[f.item].form]
    checked = dict(
        zip(
            [f.path for f in forms],
            validate.validate_reads([read.read_path(f.path, rules) for f in forms], rules, today=TODAY),
            strict=True,
        )
    )
    numbers: Counter[tuple[str, str]] = Counter()
    versions: list[Submission] = []
    open_findings: dict[tuple[str, str], list[tuple[str, Finding]]] = {}  # of each item's latest version
    latest: dict[tuple[str, str], Submission] = {}
    accepted_files: dict[tuple[str, str], Path] = {}
    rejected: dict[tuple[str, str], list[Path]] = {}
    for f in files:
        numbers[(f.unit, f.item)] += 1
        form = rules.items[f.item].form
        if form is None:
            versions.append(
                _version(f.path, f.unit, f.item, None, numbers[(f.unit, f.item)], "received", rules)
            )
            continue
        c = checked[f.path]
        assert (c.read.unit, c.read.form) == (f.unit, form)
        v = _version(f.path, f.unit, f.item, form, numbers[(f.unit, f.item)], c.verdict, rules, c)
        versions.append(v)
        open_findings[(f.unit, f.item)] = [(f.path.name, x) for x in c.findings]
        if c.verdict == Verdict.ACCEPTED:
            latest[(f.unit, form)] = v
            accepted_files[(f.unit, form)] = f.path
        else:
            rejected.setdefault((f.unit, form), []).append(f.path)
    findings_by_unit: dict[str, list[tuple[str, Finding]]] = {}
    for (unit, _), found in open_findings.items():
        findings_by_unit.setdefault(unit, []).extend(found)
    as_of = dt.datetime(2017, 2, 6, 9, 0, tzinfo=rules.campaign.tz)
    return Batch(
        versions,
        list(latest.values()),
        accepted_files,
        rejected,
        {u: fs for u, fs in findings_by_unit.items() if fs},
        status.compute(rules, versions, as_of),
        as_of,
    )


@pytest.fixture(scope="module")
def province(rules: Rules, batch: Batch) -> consolidate.Consolidation:
    return consolidate.consolidate(rules, batch.latest_accepted, status.expected_units(rules))


# --- the independent sums ----------------------------------------------------------------------------------

FULL_WIDTH = str.maketrans("０１２３４５６７８９．，", "0123456789.,")


def _typed_number(raw: object) -> Decimal:
    """What a person typed in a numeric cell, as a number: only the spellings the demo uses."""
    if raw is None or raw == "":
        return Decimal(0)
    if isinstance(raw, bool):
        raise AssertionError(raw)
    if isinstance(raw, int | float):
        return Decimal(repr(raw)) if isinstance(raw, float) else Decimal(raw)
    text = unicodedata.normalize("NFKC", str(raw)).translate(FULL_WIDTH).replace(",", "").strip()
    if text in ("无", "-", "—", "/"):
        return Decimal(0)
    return Decimal(re.sub(r"(万元|人次|户|人|家|次|件|万)$", "", text))


def file_figures(rules: Rules, path: Path, form_code: str) -> dict[Key, Decimal]:
    """Every number of one filled form, from its cells; 合计 rows summed here from the detail rows."""
    form = rules.forms[form_code]
    grid = (
        CalamineWorkbook.from_path(str(path)).get_sheet_by_name(form.sheet).to_python(skip_empty_area=False)
    )
    out: dict[Key, Decimal] = {}
    for slot in layout.compute(form).slots:
        if not slot.field.numeric or slot.is_total:
            continue
        m = re.fullmatch(r"([A-Z]+)(\d+)", slot.cell)
        assert m
        col = sum((ord(ch) - 64) * 26**i for i, ch in enumerate(reversed(m.group(1)))) - 1
        row = int(m.group(2)) - 1
        raw = grid[row][col] if row < len(grid) and col < len(grid[row]) else None
        value = _typed_number(raw)
        out[slot.key] = round(value) if slot.field.type == "count" else value.quantize(Decimal("0.01"))
    for section in form.sections:
        if section.total_row is None:
            continue
        for f in section.fields:
            if f.numeric:
                out[(section.code, section.total_row.code, f.code)] = sum(
                    (out[(section.code, r.code, f.code)] for r in section.detail_rows), Decimal(0)
                )
    return out


def _exact(value: object) -> Decimal:
    """A consolidated figure as the decimal it stands for (money is held as the nearest float of whole cents)."""
    assert not pd.isna(value)
    return Decimal(repr(float(value))) if isinstance(value, float) else Decimal(int(value))  # type: ignore[arg-type]


# --- consolidation --------------------------------------------------------------------------------------


def test_by_unit_equals_the_accepted_files_cell_by_cell(rules, batch, province):
    frame = province["by_unit"]
    units = frame[frame["level"] == "unit"].set_index("code")
    expected_units = status.expected_units(rules)
    assert list(units.index) == [u.code for k in rules.unit_kinds for u in expected_units if u.kind == k]
    files = {
        u: file_figures(rules, p, "warmth") for (u, f), p in batch.accepted_files.items() if f == "warmth"
    }
    files = {u: figures for u, figures in files.items() if u in units.index}
    assert 10 < len(files) < 21  # most units, not all: some are missing or rejected
    assert any(p.suffix == ".xls" for (u, f), p in batch.accepted_files.items() if f == "warmth")
    for column in province.columns["by_unit"]:
        for code, row in units.iterrows():
            if code in files:
                assert _exact(row[column.name]) == files[code][column.key], (code, column.name)
            else:
                assert pd.isna(row[column.name]), (code, column.name)
        for kind in {u.kind for u in expected_units}:
            subtotals = frame[(frame["level"] == "subtotal") & (frame["kind"] == kind)]
            if sum(u.kind == kind for u in expected_units) == 1:  # a 小计 would repeat the unit's row
                assert subtotals.empty, kind
                continue
            subtotal = subtotals.iloc[0]
            members = [u.code for u in expected_units if u.kind == kind and u.code in files]
            assert _exact(subtotal[column.name]) == sum((files[u][column.key] for u in members), Decimal(0))
        total = frame[frame["level"] == "total"].iloc[0]
        assert total["name"] == "全省合计"
        assert _exact(total[column.name]) == sum((f[column.key] for f in files.values()), Decimal(0))
    assert province.units_expected == 21
    assert province.coverage["warmth"] == (len(files), 21)


def test_by_industry_and_pivot_equal_sums_of_the_files(rules, batch, province):
    files = [
        file_figures(rules, p, "warmth")
        for (u, f), p in batch.accepted_files.items()
        if f == "warmth" and rules.unit(u).reports_to == "province"
    ]
    visits = rules.forms["warmth"].section("visits")
    rows = province["by_industry"].set_index("code")
    assert list(rows.index) == [r.code for r in visits.rows]
    for r in visits.rows:
        for f in visits.fields:
            assert _exact(rows.loc[r.code, f.code]) == sum(
                (x[("visits", r.code, f.code)] for x in files), Decimal(0)
            )
    pivot = province["pivot"]
    for f in ("households", "amount_total"):
        for r in visits.rows:
            column = pivot[(f, r.code)]
            assert _exact(column.iloc[-1]) == sum((x[("visits", r.code, f)] for x in files), Decimal(0))
            assert _exact(column.iloc[-1]) == _exact(rows.loc[r.code, f])
    assert pivot.index[-1] == ("", "全省合计")


def test_centers_equal_the_files_and_their_aid_total_is_computed(rules, batch, province):
    centers = province["centers"]
    assert len(centers) == 22  # the 21 帮扶中心 and 合计
    files = {
        u: file_figures(rules, p, "center") for (u, f), p in batch.accepted_files.items() if f == "center"
    }
    for column in province.columns["centers"]:
        for row in centers.to_dict("records"):
            if row["level"] == "total" and column.aggregate != "sum":
                assert pd.isna(row[column.name]), column.name  # not added up: see the test below
                continue
            if row["level"] == "total":
                want = sum((x[column.key] for x in files.values()), Decimal(0))
            elif row["code"] in files:
                want = files[row["code"]][column.key]
            else:
                assert pd.isna(row[column.name])
                continue
            assert _exact(row[column.name]) == want, (row["code"], column.name)
    assert {"living.persons", "total.persons", "total.amount"} <= {
        c.name for c in province.columns["centers"]
    }


def test_rejected_versions_and_other_levels_are_left_out(rules, batch, province):
    by_unit = province["by_unit"].set_index("name")
    only_rejected = [k for k in batch.rejected_files if k not in batch.accepted_files]
    assert only_rejected
    for unit, form in only_rejected:
        if form == "warmth":
            assert by_unit.loc[rules.unit(unit).name, "reported"] == 0
            assert pd.isna(by_unit.loc[rules.unit(unit).name, "households"])
    assert "CY01" not in set(province["by_unit"]["code"])  # the industry union that wrote to the province
    # Given every version, rejected and stray ones included, consolidation keeps to the latest accepted.
    everything = consolidate.consolidate(rules, batch.versions, status.expected_units(rules))
    for name in ("by_unit", "by_industry", "pivot", "centers"):
        pd.testing.assert_frame_equal(everything[name], province[name])
    assert (
        everything.figures == province.figures
        and everything.tables["centers"].spans == province.tables["centers"].spans
    )
    used = {v.sha256 for v in province.used}
    assert all(v.verdict == Verdict.ACCEPTED and v.unit != "CY01" for v in province.used)
    resubmitted = [k for k in batch.rejected_files if k in batch.accepted_files]
    assert resubmitted, "the demo has a unit that corrected its form"
    for key in resubmitted:
        assert hashlib.sha256(batch.accepted_files[key].read_bytes()).hexdigest() in used


def test_headline_figures(rules, province):
    h = province.figures
    total = province["by_unit"][province["by_unit"]["level"] == "total"].iloc[0]
    assert h["fund_total"] == round(float(total["fund_total"]), 2)
    assert h["households"] == int(total["households"])
    assert h["enterprises_visited"] == int(total["enterprises_visited"])
    assert list(h) == [f.name for f in rules.consolidation.figures]  # every declared figure, in its order
    centers = province["centers"].set_index("name").loc["全省合计"]
    assert h["archived_households"] == int(centers["archived_households"])
    assert _exact(h["aid_amount"]) == _exact(centers["total.amount"])


def test_duty_days_are_counted_and_ranged_across_centres_never_summed(rules, batch, province):
    """FORMS.md: 值班天数 and 工作人员 describe one centre; across centres report how many kept a roster and
    the range of days."""
    files = [file_figures(rules, p, "center") for (u, f), p in batch.accepted_files.items() if f == "center"]
    days = [int(x[("archive", "", "duty_days")]) for x in files]
    staff = [int(x[("archive", "", "staff")]) for x in files]
    assert len(days) == 19 and sum(days) > max(days)
    table = province.tables["centers"]
    total_at = len(table.frame) - 1
    assert pd.isna(table.frame.iloc[total_at]["duty_days"]) and pd.isna(table.frame.iloc[total_at]["staff"])
    assert table.spans[(total_at, "duty_days")] == consolidate.Span(
        sum(d > 0 for d in days), min(days), max(days)
    )
    assert table.spans[(total_at, "staff")] == consolidate.Span(
        sum(s > 0 for s in staff), min(staff), max(staff)
    )
    assert province.figures["duty_days"] == table.spans[(total_at, "duty_days")]
    # Everything else of the form is still a sum.
    assert int(table.frame.iloc[total_at]["hotline"]) == sum(
        int(x[("services", "", "hotline")]) for x in files
    )
    # What a reader sees: the workbook's 合计 row and the report's sentence give the count and range.
    seen = as_seen(_workbook(rules, batch, province))["帮扶中心汇总"]["cells"]
    label = coverage.total_label(province, "center")  # 全省合计, or 已汇总单位合计(n/21) when short
    total_row = next(a1[1:] for a1, c in seen.items() if a1.startswith("A") and c[0] == label)
    column = [c.name for c in table.columns].index("duty_days") + 2  # after the units' names in A
    assert seen[f"{column_letters(column)}{total_row}"][0] == f"{len(days)} 个单位,{min(days)}–{max(days)}"
    text = html_report(rules, province, batch.status, {}, as_of=batch.as_of, final=False, edition=0)
    assert f"两节期间 {len(days)} 个帮扶中心建立值班制,值班 {min(days)}–{max(days)} 天" in text


def _typed_in(rules: Rules, unit: str, values: dict[Key, object]) -> Submission:
    return Submission(
        sha256=hashlib.sha256(repr(sorted(values.items(), key=str)).encode()).hexdigest(),
        unit=unit,
        item="warmth",
        form="warmth",
        file=f"{unit}.xlsx",
        received=dt.datetime(2017, 1, 20, tzinfo=rules.campaign.tz),
        version=1,
        verdict=Verdict.ACCEPTED,
        values=values,
    )


def test_totals_are_computed_from_detail_rows_never_copied(rules):
    values = correct_values(rules, "warmth", "460200")
    values[("visits", "total", "households")] = 999_999  # a 合计 typed over, or a stale one
    values[("visits", "total", "amount_total")] = None
    c = consolidate.consolidate(rules, [_typed_in(rules, "460200", values)], status.expected_units(rules))
    row = c["by_unit"].set_index("code").loc["460200"]
    details = rules.forms["warmth"].section("visits").detail_rows
    assert row["households"] == sum(values[("visits", r.code, "households")] for r in details)
    assert _exact(row["amount_total"]) == sum(
        (Decimal(repr(values[("visits", r.code, "amount_total")])) for r in details), Decimal(0)
    )
    assert c["by_industry"].set_index("code").loc["total", "households"] == row["households"]


def test_money_is_summed_in_whole_cents(rules):
    sources = []
    counties = [u for u in status.expected_units(rules) if u.kind == "市县"][:10]
    for unit in counties:
        values = correct_values(rules, "warmth", unit.code)
        for r in rules.forms["warmth"].section("visits").rows:
            values[("visits", r.code, "amount_total")] = 0.1
        sources.append(_typed_in(rules, unit.code, values))
    c = consolidate.consolidate(rules, sources, status.expected_units(rules))
    assert sum([0.1] * 100) != 10.0  # what adding floats would give
    assert repr(float(c["by_unit"].iloc[-1]["amount_total"])) == "10.0"
    assert repr(float(c["by_industry"].set_index("code").loc["agri", "amount_total"])) == "1.0"


def test_one_level_at_a_time(rules):
    mixed = [rules.unit("460100"), rules.unit("CY01")]
    with pytest.raises(ValueError, match="several levels"):
        consolidate.consolidate(rules, [], mixed)


# --- the roll-up of the 帮扶中心 ---------------------------------------------------------------------------


def test_rollup_of_zx_is_an_accepted_form_without_findings(rules, tmp_path):
    children = rules.children("ZX")
    assert len(children) == 7
    paths = []
    for i, unit in enumerate(children, start=1):
        values = correct_values(rules, "warmth", unit.code, seed=i)
        path = tmp_path / "children" / template.file_name(unit, rules.forms["warmth"])
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(template.fill(rules, rules.forms["warmth"], unit, values))
        paths.append(path)
    checked = validate.validate_reads([read.read_path(p, rules) for p in paths], rules, today=TODAY)
    assert all(c.verdict == Verdict.ACCEPTED for c in checked)
    sources = [
        _version(p, c.read.unit, "warmth", "warmth", 1, c.verdict, rules, c)
        for p, c in zip(paths, checked, strict=True)
    ]

    sign = {
        "leader": "王建华",
        "preparer": "李秀英",
        "phone": "0898-66553663",
        "date": dt.datetime(2017, 2, 1),
    }
    values = consolidate.rollup_values(rules, "ZX", "warmth", sources, sign)
    sums = [file_figures(rules, p, "warmth") for p in paths]
    for key, value in values.items():
        if key[0] != "sign":
            assert Decimal(repr(value)) == sum((s[key] for s in sums), Decimal(0)), key
    assert values[("sign", "", "note")] is None

    zx = tmp_path / template.file_name(rules.unit("ZX"), rules.forms["warmth"])
    zx.write_bytes(template.fill(rules, rules.forms["warmth"], rules.unit("ZX"), values))
    (result,) = check.check_paths([zx], rules, today=TODAY)
    assert (result.unit, result.form, result.verdict, result.findings) == (
        "ZX",
        "warmth",
        Verdict.ACCEPTED,
        (),
    )

    # At the province ZX's form stands for its children: given both, nothing is counted twice.
    (zx_checked,) = validate.validate_reads([read.read_path(zx, rules)], rules, today=TODAY)
    zx_version = _version(zx, "ZX", "warmth", "warmth", 1, Verdict.ACCEPTED, rules, zx_checked)
    c = consolidate.consolidate(rules, [zx_version, *sources], status.expected_units(rules))
    total = c["by_unit"][c["by_unit"]["level"] == "total"].iloc[0]
    assert int(total["households"]) == values[("visits", "total", "households")]
    assert _exact(total["fund_total"]) == Decimal(repr(values[("funds", "", "fund_total")]))
    assert not set(c["by_unit"]["code"]) & {u.code for u in children}

    # And the same tool at ZX's level: its children expected, the total labelled 合计.
    at_zx = consolidate.consolidate(rules, sources, status.expected_units(rules, "ZX"))
    assert at_zx["by_unit"]["name"].iloc[-1] == "合计"
    assert int(at_zx["by_unit"]["households"].iloc[-1]) == values[("visits", "total", "households")]
    assert at_zx["centers"].empty and at_zx.coverage["center"] == (0, 0)
    zx_status = status.compute(rules, sources, dt.datetime(2017, 2, 3, tzinfo=rules.campaign.tz), parent="ZX")
    text = html_report(rules, at_zx, zx_status, {}, as_of=zx_status.as_of, final=False, edition=0)
    assert f"{rules.unit('ZX').name}所属各单位共筹集送温暖资金" in text
    data = consolidated_workbook(
        rules, at_zx, zx_status, {}, sources, as_of=zx_status.as_of, final=False, edition=0
    )
    assert load_workbook(io.BytesIO(data)).sheetnames == list(sheet_names(rules))
    assert "本级没有应报帮扶中心统计表的单位。" in as_seen(data)["帮扶中心汇总"]["cells"]["A3"][0]
    assert (
        "帮扶中心(已汇总" not in text and "个帮扶中心" not in text
    )  # the centres' paragraph is the province's
    assert (
        "海南省总工会:" in written_summary(rules, at_zx, zx_status, as_of=zx_status.as_of, final=True).text()
    )


# --- the workbook -----------------------------------------------------------------------------------------


def _workbook(rules, batch, c, **kw):
    return consolidated_workbook(
        rules,
        c,
        batch.status,
        batch.findings_by_unit,
        batch.versions,
        as_of=batch.as_of,
        final=kw.get("final", False),
        edition=kw.get("edition", 0),
    )


def test_workbook_has_the_nine_sheets_and_the_figures(rules, batch, province):
    data = _workbook(rules, batch, province, final=True, edition=2)
    wb = load_workbook(io.BytesIO(data))
    assert wb.sheetnames == [
        "说明",
        "送温暖汇总",
        "分行业汇总",
        "市县×行业",
        "帮扶中心汇总",
        "明细",
        "报送情况",
        "校验问题",
        "数据来源",
    ]
    readme = "\n".join(str(c.value) for row in wb["说明"].iter_rows() for c in row if c.value is not None)
    for text in (
        "琼工发〔2016〕33号",
        "终稿(第2版)",
        "2017-02-06 09:00",
        rules.sha256,
        f"{province.units_reported} / 21",
    ):
        assert text in readme
    ws = wb["送温暖汇总"]
    assert next(c.value for c in ws[1] if c.value) == "2016年工会送温暖统计汇总表"
    assert ws.freeze_panes is not None and ws.print_title_rows
    assert ws.page_setup.orientation == "landscape" and int(ws.page_setup.paperSize) == 9  # A4
    done, owed = province.coverage["warmth"]
    label = "全省合计" if done == owed else f"已汇总单位合计({done}/{owed})"
    total_row = next(r for r in range(1, ws.max_row + 1) if ws.cell(r, 1).value == label)
    columns = province.columns["by_unit"]
    total = province["by_unit"].iloc[-1]
    cached = load_workbook(io.BytesIO(data), data_only=True)["送温暖汇总"]
    for j, column in enumerate(columns, start=2):
        cell = ws.cell(total_row, j)
        assert str(cell.value).startswith("=SUM(")  # a late figure typed into a unit's row updates it
        assert cached.cell(total_row, j).value == pytest.approx(float(total[column.name]))
        assert cell.number_format == ("#,##0.00" if column.type == "money" else "#,##0")
    problems = wb["校验问题"]
    messages = {c.value for row in problems.iter_rows() for c in row}
    assert sum(len(f) for f in batch.findings_by_unit.values()) >= 5
    for findings in batch.findings_by_unit.values():
        for _, f in findings:
            assert f.message in messages
    sources = {c.value for row in wb["数据来源"].iter_rows() for c in row}
    assert {v.sha256 for v in province.used} <= sources


def test_workbook_writes_submitted_text_as_text_never_as_a_formula(rules, batch, province):
    evil = '=HYPERLINK("http://example.invalid/x","点我")'
    sneaky = Submission(
        sha256="0" * 64,
        unit="460200",
        item="warmth",
        form="warmth",
        file=evil,
        received=batch.as_of,
        version=9,
        verdict=Verdict.REJECTED,
    )
    findings = {
        "460200": [
            (evil, Finding("W-total", Severity.ERROR, "=1+1", sheet="送温暖统计表", cell="B18")),
            ("@SUM(A1)", Finding("W-total", Severity.ERROR, "-2+3", sheet="+cmd|' /C calc'!A0", cell="B18")),
        ]
    }
    data = consolidated_workbook(
        rules,
        province,
        batch.status,
        findings,
        [*batch.versions, sneaky],
        as_of=batch.as_of,
        final=False,
        edition=0,
    )
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        for name in z.namelist():
            if name.startswith("xl/worksheets/"):
                # the only formulas are the workbook's own totals, sums of cell ranges
                for formula in re.findall(rb"<f>(.*?)</f>", z.read(name)):
                    assert re.fullmatch(
                        rb"SUM\([A-Z]+\d+(:[A-Z]+\d+)?(,[A-Z]+\d+(:[A-Z]+\d+)?)*\)", formula
                    ), name
    wb = load_workbook(io.BytesIO(data))
    seen = set()
    for ws in wb.worksheets:
        for row in ws.iter_rows():
            for cell in row:
                if isinstance(cell.value, str) and cell.value[:1] in "=+-@" and cell.data_type != "f":
                    assert cell.data_type == "s", (ws.title, cell.coordinate)
                    assert cell.quotePrefix, (ws.title, cell.coordinate)  # stays text when edited
                    seen.add(cell.value)
    assert {evil, "=1+1", "@SUM(A1)", "-2+3"} <= seen
    text = html_report(rules, province, batch.status, findings, as_of=batch.as_of, final=False, edition=0)
    assert "=HYPERLINK(&#34;http://example.invalid/x&#34;" in text
    assert "<a " not in text


def test_workbook_prints_in_libreoffice(rules, batch, province, tmp_path, soffice_convert, poppler):
    path = tmp_path / "汇总.xlsx"
    path.write_bytes(_workbook(rules, batch, province))
    pdf = soffice_convert(path, "pdf", tmp_path / "pdf")
    assert pdf.read_bytes().startswith(b"%PDF")
    text = poppler("pdftotext", pdf, "-")
    h = province.figures
    for figure in (
        "2016年工会送温暖统计汇总表",
        coverage.total_label(province, "warmth"),
        "第 1 页",
        f"{h['households']:,}",  # with the thousands separator
        f"{h['fund_total']:,.2f}",
    ):
        assert figure in text


def test_same_inputs_give_the_same_bytes(rules, batch, province):
    again = consolidate.consolidate(
        rules, list(reversed(batch.latest_accepted)), status.expected_units(rules)
    )
    assert _workbook(rules, batch, province) == _workbook(rules, batch, again)
    first = html_report(
        rules, province, batch.status, batch.findings_by_unit, as_of=batch.as_of, final=False, edition=0
    )
    assert first == html_report(
        rules, again, batch.status, batch.findings_by_unit, as_of=batch.as_of, final=False, edition=0
    )
    words = written_summary(rules, province, batch.status, as_of=batch.as_of, final=False)
    assert words == written_summary(rules, again, batch.status, as_of=batch.as_of, final=False)


def test_a_text_longer_than_a_cell_holds_is_cut_where_excel_cuts_it(rules, batch, province):
    # 34,000 UTF-16 units (an emoji takes two), more than a cell's 32,767: cut to 16,383 emoji, none split
    long = {
        "460200": [
            ("长.xlsx", Finding("W-total", Severity.ERROR, "😀" * 17_000, sheet="送温暖统计表", cell="B18"))
        ]
    }
    data = consolidated_workbook(
        rules, province, batch.status, long, batch.versions, as_of=batch.as_of, final=False, edition=0
    )
    texts = {cell[0] for cell in as_seen(data)["校验问题"]["cells"].values()}
    assert "😀" * 16_383 in texts


def test_workbook_sheets_look_as_staff_print_them(rules, batch, province):
    """What the removed byte-for-byte comparison of two writing routes held implicitly: the looks, merges,
    sizes and print settings a person sees, on the widest sheet and on a list sheet."""
    seen = as_seen(_workbook(rules, batch, province))
    assert seen["sheets"] == list(sheet_names(rules)) and seen["active"] == "说明"
    table = seen["送温暖汇总"]
    cells = table["cells"]
    # number format, fill, fill colour (RGB), bold, size, horizontal and vertical alignment, wrap
    look = {a1: (c[3], c[4], str(c[5])[-6:], c[7], c[8], c[12], c[13], c[14]) for a1, c in cells.items()}
    # the title over the first page's columns, 16 pt bold, without a border
    assert cells["B1"][0] == "2016年工会送温暖统计汇总表" and look["B1"][3:5] == (True, 16)
    assert cells["B1"][11] == ((None, None),) * 4
    assert table["heights"][1] == 32 and table["heights"][2] == 20
    # three header rows: section over group over field, merged across and down, bold on the header fill
    header = [a1 for a1 in cells if a1[1:] in ("3", "4", "5") and a1[0] <= "C"]
    assert header and all(look[a1][1:4] == ("solid", "DDEBF7", True) for a1 in header)
    assert "A3:A5" in table["merged"] and cells["A3"][0] == "单位"
    assert table["frozen"] == "B6"
    # a unit's row: its name left, counts as whole numbers and money to the cent, right-aligned, thin borders
    first = province["by_unit"].iloc[0]
    row = next(r for r in range(6, 200) if cells.get(f"A{r}", (None,))[0] == first["name"])
    columns = province.columns["by_unit"]
    for j, column in enumerate(columns[:12], start=2):
        a1 = f"{chr(64 + j)}{row}"
        assert (
            look[a1][:2] == ("#,##0.00" if column.type == "money" else "#,##0", None) and cells[a1][2] == "n"
        )
        assert look[a1][5] == "right" and cells[a1][11] == (("thin", "FF808080"),) * 4
    assert look[f"A{row}"][3:6] == (False, 10, "left")
    # 小计 and 全省合计 bold on their fills, centred
    total = next(a1 for a1, c in cells.items() if c[0] == coverage.total_label(province, "warmth"))
    assert look[total][1:4] == ("solid", "E7E6E6", True) and look[total][5] == "center"
    subtotal = next(a1 for a1, c in cells.items() if str(c[0]).endswith("小计"))
    assert look[subtotal][1:4] == ("solid", "F2F2F2", True)
    # printed a section a page, A4 landscape, column A and the title rows on every page
    titles, columns_repeated, _, orientation, paper, scale, *_rest = table["print"]
    assert (titles, columns_repeated, orientation, int(paper)) == ("$1:$5", "$A:$A", "landscape", 9)
    assert scale and 10 <= scale <= 100 and table["print"][10]  # page breaks between sections
    assert table["print"][12][1] == "第 &P 页,共 &N 页"
    # a list sheet: text wrapped to the top, row heights grown to fit the longest message
    problems = seen["校验问题"]
    longest = max((c for c in problems["cells"].values() if c[2] == "s"), key=lambda c: len(str(c[0])))
    assert (longest[13], longest[14]) == ("top", True)
    assert max(problems["heights"].values()) > 18
    assert problems["widths"] and problems["frozen"] == "A4"


# --- the HTML report and the written summary --------------------------------------------------------------


def _headline_texts(rules: Rules, c: consolidate.Consolidation) -> list[str]:
    """Every declared figure of a form this level has, as the sentences print it."""
    out = []
    for f in rules.consolidation.figures:
        value = c.figures[f.name]
        if not c.coverage[f.form][1]:
            continue
        if isinstance(value, consolidate.Span):
            out.append(f"{value.low}–{value.high}")
        else:
            out.append(f"{value:.2f}" if f.type == "money" else str(value))
    return out


def test_html_report_shows_the_headline_and_fetches_nothing(rules, batch, province):
    text = html_report(
        rules, province, batch.status, batch.findings_by_unit, as_of=batch.as_of, final=False, edition=0
    )
    h = province.figures
    done, owed = province.coverage["warmth"]
    assert done < owed  # some units are missing: the sentence's subject says whose figures these are
    assert f"已汇总的 {done} 个单位(应报 {owed} 个)共筹集送温暖资金 {h['fund_total']:.2f} 万元" in text
    assert "全省各级工会共筹集" not in text
    assert f"慰问困难职工 {h['households']} 户" in text
    for figure in _headline_texts(rules, province):
        assert figure in text
    assert "草稿" in text and "@page" in text and "size: A4" in text
    assert "<svg" in text and "<script" not in text
    assert not re.search(r"""(?:src|href|xlink:href)\s*=\s*["']?\s*(?:https?:)?//""", text, re.I)
    assert not re.search(r"""url\(\s*["']?\s*(?:https?:)?//|@import""", text, re.I)
    assert "http://" not in text and "https://" not in text
    for findings in batch.findings_by_unit.values():
        for file, finding in findings:
            assert str(escape(finding.message)) in text and str(escape(file)) in text
    missing = [r.unit_name for r in batch.status.rows if r.state in (status.MISSING, status.OVERDUE)]
    assert missing and all(name in text for name in missing)
    final = html_report(rules, province, batch.status, {}, as_of=batch.as_of, final=True, edition=3)
    assert "终稿(第3版)" in final and "没有尚未解决的校验问题" in final


def test_html_tables_show_money_to_the_cent(rules, batch, province):
    text = html_report(
        rules, province, batch.status, batch.findings_by_unit, as_of=batch.as_of, final=False, edition=0
    )
    cells = re.findall(r'<td class="num">([^<]*)</td>', text)
    decimals = [c for c in cells if "." in c]
    assert decimals and all(re.fullmatch(r"-?\d+\.\d\d", c) for c in decimals)  # 69.50, never 69.5
    fund = next(c.name for c in province.columns["by_unit"] if c.type == "money")
    assert f"{province['by_unit'][fund].iloc[-1]:.2f}" in cells  # the total of the first money column


def test_written_summary_is_a_draft_with_the_figures(rules, batch, province):
    text = written_summary(rules, province, batch.status, as_of=batch.as_of, final=False).text()
    assert text.startswith("关于2017年元旦春节送温暖活动情况的报告\n草稿")
    for figure in _headline_texts(rules, province):
        assert figure in text
    assert "琼工发〔2016〕33号" in text and "〔请填写。〕" in text


def test_html_report_renders_in_headless_chromium(rules, batch, province, tmp_path):
    chromium = require_program("chromium", "chromium")
    page = tmp_path / "report.html"
    page.write_text(
        html_report(
            rules, province, batch.status, batch.findings_by_unit, as_of=batch.as_of, final=False, edition=0
        ),
        encoding="utf-8",
    )
    shot = tmp_path / "shot.png"

    def start(*args: str, profile: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [
                chromium,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                f"--user-data-dir={tmp_path / profile}",
                "--enable-logging=stderr",
                "--v=0",
                *args,
                page.as_uri(),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    runs = [
        start(f"--screenshot={shot}", "--window-size=1240,1754", profile="a"),
        start("--dump-dom", profile="b"),
    ]
    outputs = [p.communicate(timeout=60) for p in runs]
    for p, (_, err) in zip(runs, outputs, strict=True):
        assert p.returncode == 0, err[-2000:]
    dom = outputs[1][0]
    for figure in _headline_texts(rules, province):
        assert figure in dom
    done, owed = province.coverage["warmth"]
    assert f"已汇总的 {done} 个单位(应报 {owed} 个)共筹集送温暖资金" in dom  # some units are missing
    assert shot.read_bytes().startswith(b"\x89PNG") and shot.stat().st_size > 50_000
    # The page has no script, so any console message (Chromium logs every level as INFO:CONSOLE) is a fault.
    console = [line for _, err in outputs for line in err.splitlines() if "CONSOLE" in line]
    assert console == []


def test_a_figure_typed_in_late_updates_its_subtotal_and_total(
    rules, batch, province, tmp_path, soffice_convert
):
    """A clerk types a late figure into a unit's row with Excel (here openpyxl), the program recalculates
    (here LibreOffice, xlsx to xlsx): the 小计 and the total over that row change by as much."""
    from openpyxl import load_workbook

    path = tmp_path / "汇总.xlsx"
    path.write_bytes(_workbook(rules, batch, province))
    wb = load_workbook(path)
    ws = wb["送温暖汇总"]
    names = {ws.cell(r, 1).value: r for r in range(1, ws.max_row + 1)}
    frame = province["by_unit"]
    unit = frame[(frame["level"] == "unit") & (frame["kind"] == "市县")].iloc[0]
    label = coverage.total_label(province, "warmth")
    row, subtotal_row, total_row = names[unit["name"]], names["市县小计"], names[label]
    before = {
        r: load_workbook(path, data_only=True)["送温暖汇总"].cell(r, 2).value
        for r in (subtotal_row, total_row)
    }
    ws.cell(row, 2).value = (ws.cell(row, 2).value or 0) + 1000
    edited = tmp_path / "edited" / "汇总.xlsx"
    edited.parent.mkdir()
    wb.save(edited)
    again = soffice_convert(edited, "xlsx", tmp_path / "recalculated")
    after = load_workbook(again, data_only=True)["送温暖汇总"]
    for r in (subtotal_row, total_row):
        assert after.cell(r, 2).value == before[r] + 1000


def test_the_flat_detail_sheet_holds_every_figure_once_for_a_pivot_table(rules, batch, province):
    """明细: a row per unit and figure, with an autofilter; summing a field over it gives the total."""
    wb = load_workbook(io.BytesIO(_workbook(rules, batch, province)))
    ws = wb["明细"]
    head = [c.value for c in ws[3]]
    assert head[:4] == ["单位", "单位代码", "上级单位", "类别"] and "数值" in head and "审核状态" in head
    assert ws.auto_filter.ref == f"A3:M{ws.max_row}" and ws.print_title_rows
    rows = [dict(zip(head, r, strict=True)) for r in ws.iter_rows(min_row=4, values_only=True)]
    households = [r for r in rows if r["栏目"] == "慰问困难职工" and r["报表"].startswith("附件1")]
    assert len({r["单位代码"] for r in households}) == province.coverage["warmth"][0]
    assert sum(r["数值"] for r in households) == province.figures["households"]  # no 合计 row counted twice
    assert all(r["单元格"] and r["来源文件"].endswith((".xlsx", ".xls")) for r in rows)


def test_the_flat_table_goes_to_a_csv_excel_reads_when_it_is_large(rules, batch, province):
    from pipeline.render import detail

    table = list(detail.rows(rules, province.used))
    data = detail.to_csv(table)
    assert data.startswith(b"\xef\xbb\xbf")  # the BOM: Excel reads the Chinese as UTF-8
    lines = data.decode("utf-8-sig").splitlines()
    assert lines[0].split(",")[:2] == ["单位", "单位代码"] and len(lines) == len(table) + 1
    assert detail.csv_name("X汇总表(终稿第1版).xlsx") == "X汇总表明细(终稿第1版).csv"
    data = consolidated_workbook(
        rules, province, batch.status, {}, [], as_of=batch.as_of, final=False, edition=0, detail_csv="X.csv"
    )
    ws = load_workbook(io.BytesIO(data))["明细"]
    assert any("“X.csv”" in str(c.value) for row in ws.iter_rows() for c in row)
