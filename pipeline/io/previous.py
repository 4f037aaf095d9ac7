"""Last year's figures, read from the previous campaign's final consolidated workbook that rules.yaml names
(`consolidation.previous`, relative to rules.yaml): the per-unit sheets and the by_row sheets the project's
own workbook writer made, their columns found by their header text and their units by name, so that a sheet
moved or a column added since does not shift a figure. Read-only; the values go on as a LastYear.
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from openpyxl import load_workbook

from pipeline.campaign.config import Rules
from pipeline.campaign.consolidation_plan import Column
from pipeline.campaign.consolidation_plan import Table as TablePlan
from pipeline.consolidation.consolidate import is_total_label
from pipeline.consolidation.lastyear import FormKey, LastYear, number

HEADER_SEARCH = 12  # rows above a table's header (its title, the scope line) are fewer than this


def _plain(text: Any) -> str:
    return re.sub(r"\s+", "", str(text)) if text is not None else ""


def path_of(rules: Rules) -> Path | None:
    name = rules.consolidation.review.previous
    return (rules.source.parent / name) if name else None


def read(rules: Rules) -> tuple[LastYear | None, str]:
    """Last year's figures (None when rules.yaml names no previous workbook or it cannot be read) and, when
    it cannot, why, in words for the documents' notes: the run goes on without the comparison."""
    path = path_of(rules)
    if path is None:
        return None, ""
    try:
        data = path.read_bytes()
    except OSError as exc:
        return None, (
            f"读不到上年汇总表 {path.name}({exc.strerror}),本次不作同比:请检查 rules.yaml 中"
            " consolidation.previous 的文件名(相对于 rules.yaml 所在文件夹)"
        )
    try:
        return figures(rules, data, path.name), ""
    except Exception as exc:  # a damaged or foreign file: said plainly, never a traceback
        return None, f"上年汇总表 {path.name} 无法读取({type(exc).__name__}),本次不作同比"


def figures(rules: Rules, data: bytes, source: str) -> LastYear:
    """The figures of a consolidated workbook's bytes."""
    book = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    code_of = {}
    for u in rules.units:
        for name in (*u.aliases, u.name):
            code_of[_plain(name)] = u.code
    units: dict[str, dict[FormKey, float]] = {}
    totals: dict[FormKey, float] = {}
    rows: dict[FormKey, float] = {}
    reported: dict[str, int] = {}
    try:
        for table in rules.consolidation.tables:
            if table.sheet not in book.sheetnames or table.kind not in ("by_unit", "per_unit", "by_row"):
                continue
            cells = [tuple(r) for r in book[table.sheet].iter_rows(values_only=True)]
            if table.kind == "by_row":
                rows.update(_by_row(rules, table, cells))
                continue
            seen = _unit_rows(rules, table, cells, code_of, units, totals)
            reported[table.form] = max(reported.get(table.form, 0), seen)
    finally:
        book.close()
    return LastYear(source, units, totals, rows, reported)


def _header(cells: Sequence[tuple[Any, ...]], first: str) -> tuple[int, int] | None:
    """Where a table's header is: its top row (column A reads `first`) and the first row below it."""
    for top in range(min(HEADER_SEARCH, len(cells))):
        if cells[top] and _plain(cells[top][0]) == _plain(first):
            body = top + 1
            while body < len(cells) and (not cells[body] or cells[body][0] is None):
                body += 1
            return top, body
    return None


def _columns(cells: Sequence[tuple[Any, ...]], top: int, body: int) -> dict[tuple[str, str], int]:
    """Each header column by (the header over it, its own caption): a caption merges down to the last header
    row and a group header across its columns, so its text stands in the group's first column only."""
    out = {}
    width = max(len(r) for r in cells[top:body])
    for j in range(1, width):
        levels = [i for i in range(top, body) if j < len(cells[i]) and cells[i][j] is not None]
        if not levels:
            continue
        own = levels[-1]
        group = ""
        if own > top:
            row = cells[own - 1]
            k = min(j, len(row) - 1)
            while k > 0 and row[k] is None:
                k -= 1
            group = _plain(row[k]) if k > 0 else ""
        out[(group, _plain(cells[own][j]))] = j
    return out


def _wanted(rules: Rules, table: TablePlan, col: Column, grouped: bool) -> tuple[str, str]:
    f = rules.forms[table.form].section(col.key[0]).field(col.key[2])
    path = [*([col.section_title] if grouped else []), *([col.group] if col.group else []), f.header]
    return (_plain(path[-2]) if len(path) > 1 else "", _plain(path[-1]))


def _unit_rows(
    rules: Rules,
    table: TablePlan,
    cells: Sequence[tuple[Any, ...]],
    code_of: dict[str, str],
    units: dict[str, dict[FormKey, float]],
    totals: dict[FormKey, float],
) -> int:
    """A per-unit sheet's unit rows and its 合计 row; the number of units with figures."""
    where = _header(cells, "单位")
    if where is None:
        return 0
    top, body = where
    found = _columns(cells, top, body)
    at = {col.key: found[w] for col in table.columns if (w := _wanted(rules, table, col, True)) in found}
    seen = 0
    for row in cells[body:]:
        if not row or row[0] is None:
            continue
        name = _plain(row[0])
        values = {
            (table.form, key): v
            for key, j in at.items()
            if j < len(row) and (v := number(row[j])) is not None
        }
        if is_total_label(name):
            totals.update(values)
        elif name in code_of and values:
            units.setdefault(code_of[name], {}).update(values)
            seen += 1
    return seen


def _by_row(rules: Rules, table: TablePlan, cells: Sequence[tuple[Any, ...]]) -> dict[FormKey, float]:
    section = rules.forms[table.form].section(table.section)
    where = _header(cells, section.row_header or "项目")
    if where is None:
        return {}
    top, body = where
    found = _columns(cells, top, body)
    at = {col: found[w] for col in table.columns if (w := _wanted(rules, table, col, False)) in found}
    label_of = {_plain(r.label): r.code for r in section.rows}
    out = {}
    for row in cells[body:]:
        code = label_of.get(_plain(row[0])) if row else None
        if code is None:
            continue
        for col, j in at.items():
            v = number(row[j]) if j < len(row) else None
            if v is not None:
                out[(table.form, (section.code, code, col.name))] = v
    return out
