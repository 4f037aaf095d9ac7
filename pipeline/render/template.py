"""Writes each unit's blank form: a protected Chinese statistics table with its identity filled in.

Every template carries a hidden `_meta` sheet (the contract other tools rely on): key/value pairs
`form`, `unit`, `template_version`, `rules_sha256`, then a header `sheet | cell | section | row | field`
and one line per input cell.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from openpyxl import Workbook
from openpyxl.styles import Alignment, Border, Font, PatternFill, Protection, Side
from openpyxl.utils.cell import coordinate_from_string
from openpyxl.worksheet.datavalidation import DataValidation
from openpyxl.worksheet.worksheet import Worksheet

from pipeline.campaign import layout
from pipeline.campaign.config import Field, Form, Rules, Unit
from pipeline.model import column_letters
from pipeline.render import xlsxpatch

META_SHEET = "_meta"
META_KEYS = ("form", "unit", "template_version", "rules_sha256")
META_HEADER = ("sheet", "cell", "section", "row", "field")

FONT = "宋体"
INPUT_FILL = PatternFill("solid", fgColor="FFF2CC")  # pale yellow: "type here"
TOTAL_FILL = PatternFill("solid", fgColor="E7E6E6")  # grey: computed
HEADER_FILL = PatternFill("solid", fgColor="DDEBF7")
THIN = Side(style="thin", color="808080")
BOX = Border(left=THIN, right=THIN, top=THIN, bottom=THIN)
CENTER = Alignment(horizontal="center", vertical="center", wrap_text=True)
LEFT = Alignment(horizontal="left", vertical="center", wrap_text=True)
RIGHT = Alignment(horizontal="right", vertical="center")
UNLOCKED = Protection(locked=False)

NUMBER_FORMATS = {"count": "0", "money": "0.00", "date": 'yyyy"年"m"月"d"日"', "phone": "@", "text": "@"}
EXCEL_EPOCH = dt.date(1899, 12, 30)


@dataclass(frozen=True)
class BlankForm:
    """A unit's blank template: its file name and its .xlsx bytes, for the caller to write."""

    unit: Unit
    form: Form
    name: str
    data: bytes


def file_name(unit: Unit, form: Form, suffix: str = ".xlsx") -> str:
    """A name a person recognises: 海口市总工会_附件1_2016年工会送温暖统计表.xlsx."""
    stem = f"{unit.name}_{form.attachment}_{form.title}"
    return re.sub(r'[\\/:*?"<>|\x00-\x1f]', "_", stem) + suffix


def build(rules: Rules, form: Form, unit: Unit, covers: tuple[str, ...] | None = None) -> Workbook:
    """The template as an openpyxl workbook, for writing to disk or for filling (the demo does); a roll-up
    form records in `_meta` the codes of the units it `covers`."""
    lay = layout.compute(form)
    wb = Workbook()
    ws = wb.active
    assert ws is not None
    ws.title = form.sheet
    _heading(ws, rules, lay, unit)
    for block in lay.blocks:
        if block.section.footer:
            _footer(ws, lay, block)
        elif block.section.tabular:
            _table(ws, lay, block)
        else:
            _single(ws, lay, block)
    _stamp(ws, lay)
    _notes(ws, lay, rules, unit)
    _validations(ws, rules, lay)
    _page(ws, lay)
    _meta(wb, rules, lay, unit, covers)
    wb.properties.title = f"{unit.name} {form.attachment} {form.title}"
    wb.properties.creator = rules.campaign.issuer
    wb.properties.subject = rules.campaign.title
    return wb


def to_bytes(wb: Workbook, results: dict[str, float] | None = None) -> bytes:
    """The workbook as .xlsx bytes, reproducibly; `results` (A1 -> value) puts cached values on the first
    sheet's formula cells, as Excel, WPS and LibreOffice store them: the demo passes them so that its files
    look like what counties really send."""
    cached = {ref: (f"{value:.15g}", "n") for ref, value in (results or {}).items()}
    return xlsxpatch.saved(wb, {wb.worksheets[0].title: cached} if cached else None)


def blank_forms(rules: Rules, unit_code: str | None = None) -> Iterator[BlankForm]:
    """One template per unit and form it owes; only `unit_code`'s when given."""
    units = [rules.unit(unit_code)] if unit_code else list(rules.units)
    for unit in units:
        for item in unit.items:
            form_code = rules.items[item].form
            if form_code is None:
                continue
            form = rules.forms[form_code]
            yield BlankForm(unit, form, file_name(unit, form), to_bytes(build(rules, form, unit)))


# --- drawing ---------------------------------------------------------------------------------------------


def _style(
    cell: Any,
    *,
    bold: bool = False,
    size: int = 11,
    align: Alignment = CENTER,
    fill: Any = None,
    border: bool = True,
) -> None:
    cell.font = Font(name=FONT, bold=bold, size=size)
    cell.alignment = align
    if fill is not None:
        cell.fill = fill
    if border:
        cell.border = BOX


def _heading(ws: Worksheet, rules: Rules, lay: layout.Layout, unit: Unit) -> None:
    form = lay.form
    ws[lay.attachment_cell] = form.attachment
    _style(ws[lay.attachment_cell], bold=True, align=LEFT, border=False)
    ws.merge_cells(f"{lay.title_cell}:{lay.last_col}2")
    ws[lay.title_cell] = form.title
    _style(ws[lay.title_cell], bold=True, size=16, border=False)
    ws.row_dimensions[2].height = 30
    ws[lay.unit_label_cell] = "填报单位:"
    _style(ws[lay.unit_label_cell], bold=True, align=RIGHT, border=False)
    ws.merge_cells(f"{lay.unit_name_cell}:{lay.unit_name_end}")
    ws[lay.unit_name_cell] = unit.name
    _style(ws[lay.unit_name_cell], align=LEFT, border=False)
    ws[lay.code_label_cell] = "单位代码:"
    _style(ws[lay.code_label_cell], bold=True, align=RIGHT, border=False)
    ws[lay.unit_code_cell] = unit.code
    ws[lay.unit_code_cell].number_format = "@"
    _style(ws[lay.unit_code_cell], align=LEFT, border=False)
    ws[lay.money_unit_cell] = "金额单位:万元"
    _style(ws[lay.money_unit_cell], align=RIGHT, border=False)


def _section_title(ws: Worksheet, lay: layout.Layout, row: int, title: str) -> None:
    ws.merge_cells(f"A{row}:{lay.last_col}{row}")
    ws[f"A{row}"] = title
    _style(ws[f"A{row}"], bold=True, align=LEFT, border=False)
    ws.row_dimensions[row].height = 20


def _input(ws: Worksheet, address: str, f: Field) -> None:
    cell = ws[address]
    _style(cell, fill=INPUT_FILL, align=LEFT if f.type in ("text", "phone") else RIGHT)
    cell.protection = UNLOCKED
    cell.number_format = NUMBER_FORMATS[f.type]


def _table(ws: Worksheet, lay: layout.Layout, block: layout.Block) -> None:
    section = block.section
    _section_title(ws, lay, block.title_row, section.title)
    top, bottom = block.header_rows[0], block.header_rows[-1]
    if top != bottom:
        ws.merge_cells(f"A{top}:A{bottom}")
    ws[f"A{top}"] = section.row_header
    groups = _groups(section.fields)
    for first, last, group in groups:
        c1, c2 = column_letters(first + 2), column_letters(last + 2)
        if group and top != bottom:
            if c1 != c2:
                ws.merge_cells(f"{c1}{top}:{c2}{top}")
            ws[f"{c1}{top}"] = group
        for j in range(first, last + 1):
            c = column_letters(j + 2)
            if not group and top != bottom:
                ws.merge_cells(f"{c}{top}:{c}{bottom}")
                ws[f"{c}{top}"] = section.fields[j].header
            else:
                ws[f"{c}{bottom}"] = section.fields[j].header
    for hr in block.header_rows:
        for j in range(1, len(section.fields) + 2):
            _style(ws.cell(hr, j), bold=True, fill=HEADER_FILL)
    ws.row_dimensions[bottom].height = 48
    for slot in (s for s in lay.slots if s.section is section):
        assert slot.row is not None
        ws[slot.row_label_cell] = slot.row.label
        _style(ws[slot.row_label_cell], bold=slot.row.total, align=CENTER if slot.row.total else LEFT)
        if slot.is_total:
            first_cell, last_cell = lay.column_range(section, slot.field)
            ws[slot.cell] = f"=SUM({first_cell}:{last_cell})"
            _style(ws[slot.cell], bold=True, fill=TOTAL_FILL, align=RIGHT)
            ws[slot.cell].number_format = NUMBER_FORMATS[slot.field.type]
        else:
            _input(ws, slot.cell, slot.field)


def _groups(fields: tuple[Field, ...]) -> list[tuple[int, int, str]]:
    """Runs of neighbouring fields that share a group header: (first index, last index, group)."""
    runs: list[tuple[int, int, str]] = []
    for i, f in enumerate(fields):
        if runs and f.group and runs[-1][2] == f.group:
            runs[-1] = (runs[-1][0], i, f.group)
        else:
            runs.append((i, i, f.group))
    return runs


def _single(ws: Worksheet, lay: layout.Layout, block: layout.Block) -> None:
    section = block.section
    _section_title(ws, lay, block.title_row, section.title)
    header, value = block.header_rows[0], block.body_rows[0]
    ws[f"A{header}"] = "项目"
    _style(ws[f"A{header}"], bold=True, fill=HEADER_FILL)
    ws[f"A{value}"] = section.value_label or "本单位填报"
    _style(ws[f"A{value}"], align=LEFT)
    ws.row_dimensions[header].height = 48
    for slot in (s for s in lay.slots if s.section is section):
        ws[slot.field_label_cell] = slot.field.header
        _style(ws[slot.field_label_cell], bold=True, fill=HEADER_FILL)
        _input(ws, slot.cell, slot.field)


def _footer(ws: Worksheet, lay: layout.Layout, block: layout.Block) -> None:
    for slot in (s for s in lay.slots if s.section is block.section):
        ws[slot.row_label_cell] = f"{slot.field.label}:"
        _style(ws[slot.row_label_cell], bold=True, align=RIGHT, border=False)
        if slot.field.wide:
            row = coordinate_from_string(slot.cell)[1]
            ws.merge_cells(f"{slot.cell}:{lay.last_col}{row}")
            for j in range(2, lay.ncols + 1):
                _style(ws.cell(row, j), fill=INPUT_FILL, align=LEFT)
                ws.cell(row, j).protection = UNLOCKED
            ws.row_dimensions[row].height = 36
        _input(ws, slot.cell, slot.field)


def _stamp(ws: Worksheet, lay: layout.Layout) -> None:
    """单位(盖章) at the right of the spacer row under the signatures: room for the unit's seal, on the
    printed page with the figures it vouches for."""
    r = lay.notes_row - 1
    label = column_letters(lay.ncols - 2)
    ws[f"{label}{r}"] = "单位(盖章):"
    _style(ws[f"{label}{r}"], bold=True, align=RIGHT, border=False)
    ws.merge_cells(f"{column_letters(lay.ncols - 1)}{r}:{lay.last_col}{r}")
    ws.row_dimensions[r].height = 42


def _notes(ws: Worksheet, lay: layout.Layout, rules: Rules, unit: Unit) -> None:
    r = lay.notes_row
    ws[f"A{r}"] = "填表说明:"
    _style(ws[f"A{r}"], bold=True, align=LEFT, border=False)
    for i, note in enumerate(rules.notes_for(lay.form, unit), start=1):
        ws.merge_cells(f"A{r + i}:{lay.last_col}{r + i}")
        ws[f"A{r + i}"] = f"{i}. {note}"
        _style(ws[f"A{r + i}"], size=10, align=LEFT, border=False)
        ws.row_dimensions[r + i].height = 28 if len(note) > 60 else 18


def _serial(day: dt.date) -> int:
    return (day - EXCEL_EPOCH).days


def _validations(ws: Worksheet, rules: Rules, lay: layout.Layout) -> None:
    """Excel/WPS show the input message on entry and refuse a negative or fractional count."""
    # One validation per field (a column of a table shares it), so each prompt names its own field.
    by_field: dict[tuple[str, str], DataValidation] = {}
    for slot in lay.slots:
        f = slot.field
        if slot.is_total or f.type in ("text", "phone"):
            continue
        key = (slot.section.code, f.code)
        dv = by_field.get(key)
        if dv is None:
            dv = _validation_for(f, rules)
            by_field[key] = dv
            ws.add_data_validation(dv)
        dv.add(slot.cell)


def _validation_for(f: Field, rules: Rules) -> DataValidation:
    if f.type == "date":
        c = rules.campaign
        return DataValidation(
            type="date",
            operator="between",
            formula1=str(_serial(c.issue_date)),
            formula2=str(_serial(c.deadline.date() + dt.timedelta(days=60))),
            allow_blank=True,
            errorStyle="warning",
            showInputMessage=True,
            showErrorMessage=True,
            promptTitle="填报日期",
            prompt="请填写日期,例如 2017-1-20",
            errorTitle="日期有误",
            error=f"填报日期应在发文日期 {c.issue_date:%Y-%m-%d} 之后。",
        )
    low = int(f.min or 0)
    whole = f.type == "count"
    kind = "整数" if whole else "数字,最多两位小数"
    what = f"{f.label}({f.unit})" if f.unit else f.label
    if f.max is not None:
        operator, formula2 = "between", str(int(f.max) if whole else f.max)
        rng = f" {low} 到 {formula2} 之间的"
    else:
        operator, formula2 = "greaterThanOrEqual", None
        rng = f"不小于 {low} 的"
    return DataValidation(
        type="whole" if whole else "decimal",
        operator=operator,
        formula1=str(low),
        formula2=formula2,
        allow_blank=True,
        showInputMessage=True,
        showErrorMessage=True,
        errorStyle="stop",
        promptTitle=what[:32],
        prompt=f"请填写{rng}{kind};没有发生的填 0。",
        errorTitle="填写有误",
        error=f"{what} 应为{rng}{kind}。",
    )


def _page(ws: Worksheet, lay: layout.Layout) -> None:
    longest = max(
        [len(b.section.row_header) for b in lay.blocks]
        + [len(s.row.label) for s in lay.slots if s.row is not None]
        + [len(b.section.value_label) for b in lay.blocks]
        + [6]
    )
    ws.column_dimensions["A"].width = min(40, 2.1 * longest + 2)
    for j in range(2, lay.ncols + 1):
        ws.column_dimensions[column_letters(j)].width = 14
    ws.freeze_panes = "B4"
    ws.print_title_rows = "1:3"
    ws.page_setup.paperSize = ws.PAPERSIZE_A4
    ws.page_setup.orientation = ws.ORIENTATION_LANDSCAPE
    # One page, the notes and the signatures with the figures (附件1's notes spilled onto a second page).
    ws.page_setup.fitToWidth = 1
    ws.page_setup.fitToHeight = 1
    ws.sheet_properties.pageSetUpPr.fitToPage = True
    ws.print_options.horizontalCentered = True
    ws.page_margins.left = ws.page_margins.right = 0.5
    ws.oddFooter.center.text = "第 &P 页,共 &N 页"
    ws.print_area = f"A1:{lay.last_col}{lay.last_row}"
    # Protected without a password: staff can unprotect (审阅 → 撤销工作表保护), counties cannot slip.
    ws.protection.sheet = True
    ws.protection.formatColumns = False
    ws.protection.formatRows = False


def _meta(wb: Workbook, rules: Rules, lay: layout.Layout, unit: Unit, covers: tuple[str, ...] | None) -> None:
    meta = wb.create_sheet(META_SHEET)
    values = {
        "form": lay.form.code,
        "unit": unit.code,
        "template_version": lay.form.version,
        "rules_sha256": rules.sha256,
    }
    for key in META_KEYS:
        meta.append([key, values[key]])
    if covers is not None:
        meta.append(["covers", " ".join(covers)])
    meta.append(list(META_HEADER))
    for slot in lay.slots:
        meta.append(
            [lay.form.sheet, slot.cell, slot.section.code, slot.row.code if slot.row else "", slot.field.code]
        )
    for row in meta.iter_rows():
        for cell in row:
            cell.number_format = "@"  # codes such as 460100 stay text
    meta.sheet_state = "hidden"
    meta.protection.sheet = True


def fill(
    rules: Rules,
    form: Form,
    unit: Unit,
    values: Mapping[tuple[str, str, str], Any],
    covers: tuple[str, ...] | None = None,
) -> bytes:
    """The unit's template with `values` typed in, saved as Excel would save it (formulas with results):
    a unit's filled form in the demo and the tests, a level's roll-up form (with the units it `covers`)."""
    wb = build(rules, form, unit, covers)
    ws = wb[form.sheet]
    lay = layout.compute(form)
    computed: dict[str, float] = {}
    for slot in lay.slots:
        value = values.get(slot.key)
        if slot.is_total:
            # Leave the SUM formula unless the person typed over it; remember its result for the cache.
            detail = [values.get((slot.key[0], r.code, slot.key[2])) for r in slot.section.detail_rows]
            total = values.get(slot.key)
            formula_result = sum(x for x in detail if isinstance(x, int | float))
            if isinstance(total, int | float) and abs(total - formula_result) > 1e-9:
                ws[slot.cell] = total
            else:
                computed[slot.cell] = round(formula_result, 2)
            continue
        ws[slot.cell] = value
    return to_bytes(wb, computed)
