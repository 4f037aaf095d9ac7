"""The consolidated workbook's comparison with last year: for each declared per-unit and by_row table, a sheet
`<sheet>(上年)` with this year's figure, last year's and the change, unit by unit (or row by row), for the
figures rules.yaml compares (`consolidation.outliers.compare`, else the table's first columns). A unit or a
figure absent last year reads 上年无, never 0. Written with the workbook's own sheet helpers (sheets.py).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from pipeline.campaign.config import Rules
from pipeline.consolidation.consolidate import TOTAL_ROW, UNIT_ROW, Column, Consolidation, Table
from pipeline.consolidation.lastyear import ABSENT, LastYear, change, number
from pipeline.render.sheets import (
    CENTER_ALIGN,
    LEFT_ALIGN,
    RIGHT_ALIGN,
    TITLE_ROWS,
    TOTAL_FILL,
    Sheet,
    headers,
    heading,
    name_width,
    page,
    put_number,
    put_text,
)

SUFFIX = "(上年)"
PERCENT = "+0.0%;-0.0%;0.0%"
FIRST_COLUMNS = 4  # compared when rules.yaml names no figure of the table
NOTE_UNITS = "合计行的上年数为本年已汇总的单位上年数之和(同口径);上年无:该单位上年没有这一数字。"
NOTE_ROWS = "上年数为上年汇总表中全部单位之和;本年尚未报齐时,两年所含单位不同。"


def sheet_name(table: Table) -> str:
    return f"{table.plan.sheet[: 31 - len(SUFFIX)]}{SUFFIX}"


def compared(rules: Rules, table: Table) -> list[Column]:
    """The columns of `table` compared with last year: those of the figures `outliers.compare` names (a
    by_row table: the same fields), else its first few."""
    named = set(rules.consolidation.review.outliers.compare)
    keys = {(f.form, f.key) for f in rules.consolidation.figures if f.name in named}
    form = table.plan.form
    if table.plan.kind == "by_row":
        chosen = [c for c in table.columns if any(k[0] == form and k[1][2] == c.name for k in keys)]
    else:
        chosen = [c for c in table.columns if (form, c.key) in keys]
    numeric = [c for c in table.columns if c.aggregate == "sum"]
    return chosen or numeric[:FIRST_COLUMNS]


def year_sheets(
    rules: Rules, c: Consolidation, last: LastYear, add: Callable[[str], Sheet], info: str
) -> None:
    """A comparison sheet after each per-unit and by_row table that has units in; `add` makes a sheet."""
    for table in c.tables.values():
        if table.plan.kind not in ("by_unit", "per_unit", "by_row") or not c.coverage[table.plan.form][1]:
            continue
        columns = compared(rules, table)
        if columns:
            _sheet(rules, table, columns, last, add(sheet_name(table)), info)


def _sheet(
    rules: Rules, table: Table, columns: Sequence[Column], last: LastYear, ws: Sheet, info: str
) -> None:
    form, by_row = table.plan.form, table.plan.kind == "by_row"
    section = rules.forms[form].section(table.plan.section) if by_row else None
    ncols = 1 + 3 * len(columns)
    heading(
        ws, ncols, f"{table.plan.sheet}:本年与上年对比", info, money=any(c.type == "money" for c in columns)
    )
    first = (section.row_header or "项目") if section is not None else "单位"
    paths = [[first]] + [[c.caption, part] for c in columns for part in ("本年", "上年", "增减")]
    r = body = headers(ws, TITLE_ROWS + 1, paths)
    names = []
    for row in table.frame.to_dict("records"):
        if by_row:
            name, code, total = (
                row["label"],
                row["code"],
                section is not None
                and section.total_row is not None
                and row["code"] == section.total_row.code,
            )
        else:
            if row["level"] not in (UNIT_ROW, TOTAL_ROW):
                continue
            name, code, total = row["name"], row["code"], row["level"] == TOTAL_ROW
        fill = TOTAL_FILL if total else None
        put_text(ws, r, 1, name, bold=total, fill=fill, align=CENTER_ALIGN if total else LEFT_ALIGN)
        names.append(name)
        for j, col in enumerate(columns):
            now = number(row[col.name])
            if by_row:
                before = last.rows.get((form, (table.plan.section, code, col.name)))
            elif total:
                before = _same_units(table, col, last)
            else:
                before = last.unit(code, form, col.key)
            at = 2 + 3 * j
            put_number(ws, r, at, row[col.name], col.type, bold=total, fill=fill, align=RIGHT_ALIGN)
            if before is None:
                put_text(ws, r, at + 1, ABSENT, fill=fill, align=RIGHT_ALIGN)
                put_text(ws, r, at + 2, "", fill=fill)
                continue
            put_number(ws, r, at + 1, before, col.type, bold=total, fill=fill, align=RIGHT_ALIGN)
            rate = change(now, before)
            ws.put(r, at + 2, rate, bold=total, fill=fill, align=RIGHT_ALIGN, number_format=PERCENT)
        r += 1
    ws.merge(r, 1, r, ncols)
    put_text(ws, r, 1, NOTE_ROWS if by_row else NOTE_UNITS, align=LEFT_ALIGN, border=False, size=9)
    page(ws, ncols, body - 1, [name_width(names or [first]), *[10] * (3 * len(columns))], freeze=f"B{body}")


def _same_units(table: Table, col: Column, last: LastYear) -> float | None:
    """Last year's figure of the units in this year's total (同口径)."""
    units = table.frame[(table.frame["level"] == UNIT_ROW) & (table.frame["reported"] == 1)]["code"]
    found = [x for x in (last.unit(code, table.plan.form, col.key) for code in units) if x is not None]
    if not found:
        return None
    return round(sum(found), 2) if col.type == "money" else sum(found)
