"""The flat table of every figure consolidated (明细): one row per unit and figure, the shape a pivot table
or Power Query expects. A sheet of the consolidated workbook when it is small; at national scale (400,000
rows) a CSV beside the workbook (UTF-8 with a BOM, which Excel needs to read Chinese), since writing that
many cells into the workbook would cost more than the whole rest of the run.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from pipeline.campaign import layout
from pipeline.campaign.config import PROVINCE, Rules
from pipeline.model import Submission
from pipeline.render.sheets import (
    INFO_ALIGN,
    LEFT_ALIGN,
    NUMBER_FORMATS,
    RIGHT_ALIGN,
    TITLE_ROWS,
    Sheet,
    headers,
    heading,
    name_width,
    page,
)

SHEET = "明细"
HEADERS = (
    "单位",
    "单位代码",
    "上级单位",
    "类别",
    "报表",
    "表",
    "行",
    "栏目",
    "数值",
    "计量单位",
    "来源文件",
    "单元格",
    "审核状态",
)
SHEET_LIMIT = 20_000  # rows: above it, the table goes to a CSV file instead of a sheet

Row = tuple[Any, ...]


def review_state(v: Submission) -> str:
    """What the checks said of the version the figures come from."""
    if not v.warnings:
        return "通过"
    return "通过,提醒已说明" if v.explained else f"通过,有 {v.warnings} 条提醒"


def rows(rules: Rules, used: Sequence[Submission]) -> Iterator[Row]:
    """Every detail figure of the versions consolidated, in their order; a form's 合计 rows are left out, so
    that a pivot table's sums count each figure once (the consolidated sheets give the totals)."""
    slots = {
        code: [s for s in layout.compute(form).slots if not s.is_total and not s.section.footer]
        for code, form in rules.forms.items()
    }
    units = {u.code: u for u in rules.units}
    for v in used:
        unit = units.get(v.unit)
        if unit is None or v.form not in slots:
            continue
        form = rules.forms[v.form]
        parent = rules.name_of(unit.reports_to) if unit.reports_to != PROVINCE else rules.campaign.issuer
        state = review_state(v)
        for s in slots[v.form]:
            value = v.values.get(s.key)
            if value is None:
                continue
            yield (
                unit.name,
                unit.code,
                parent,
                unit.kind,
                f"{form.attachment} {form.title}",
                s.section.title,
                s.row.label if s.row else "",
                s.field.label,
                value,
                s.field.unit,
                v.file,
                s.cell,
                state,
            )


def to_csv(table: Iterable[Row]) -> bytes:
    """The table as CSV, UTF-8 with a byte-order mark: Excel opens it with its Chinese intact. Encoded as it
    is written, row by row: at national scale the rows and the text at once would hold 300 MB more."""
    out = io.BytesIO()
    with io.TextIOWrapper(out, encoding="utf-8-sig", newline="", write_through=False) as text:
        writer = csv.writer(text, lineterminator="\r\n")
        writer.writerow(HEADERS)
        writer.writerows(table)
        text.flush()
        return out.getvalue()


def csv_name(workbook_name: str) -> str:
    """The CSV's name beside a workbook: …汇总表(终稿第1版).xlsx → …汇总表明细(终稿第1版).csv."""
    stem = workbook_name.removesuffix(".xlsx")
    head, sep, tail = stem.partition("汇总表")
    return f"{head}{sep}明细{tail}.csv" if sep else f"{stem}_明细.csv"


def write_sheet(ws: Sheet, table: Sequence[Row], info: str, csv_file: str = "") -> None:
    """The 明细 sheet: the table with an autofilter and its header repeated on every printed page, or, when
    the table went to `csv_file`, a line saying where it is."""
    ncols = len(HEADERS)
    heading(ws, ncols, "汇总数据明细(每个单位每项数据一行)", info, money=False)
    if csv_file:
        ws.merge(3, 1, 3, ncols)
        text = f"明细数据行数较多,已另存为同一文件夹中的“{csv_file}”(可用 Excel 打开,或用数据透视表、Power Query 导入)。"
        ws.put(3, 1, text, align=INFO_ALIGN, border=False)
        page(ws, ncols, TITLE_ROWS, [14] * ncols)
        return
    body = headers(ws, TITLE_ROWS + 1, [[h] for h in HEADERS])
    text = ws.look(align=LEFT_ALIGN, size=9)
    number = {
        kind: ws.look(align=RIGHT_ALIGN, size=9, number_format=NUMBER_FORMATS[kind])
        for kind in NUMBER_FORMATS
    }
    r = body
    for row in table:
        for j, value in enumerate(row, start=1):
            if j == VALUE_COLUMN and isinstance(value, int | float) and not isinstance(value, bool):
                ws.place(r, j, value, number["count" if isinstance(value, int) else "money"])
            else:
                ws.text(r, j, value, text)
        r += 1
    ws.ws.autofilter(body - 2, 0, max(body - 1, r - 2), ncols - 1)
    widths = [name_width([row[0] for row in table] or ["单位"]), 9, 16, 8, 26, 18, 16, 22, 10, 6, 30, 7, 12]
    for row_number in range(body, r):  # one line a row: the sheet is for filtering, not for reading aloud
        ws.heights[row_number] = 15
    page(ws, ncols, body - 1, widths, freeze=f"A{body}")


VALUE_COLUMN = HEADERS.index("数值") + 1
