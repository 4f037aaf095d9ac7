"""The consolidated workbook (汇总表.xlsx): 说明, the tables rules.yaml declares (`consolidation.tables`),
then 报送情况, 校验问题 and 数据来源; a method per kind of sheet.

A pure function of its inputs: no clock, no random ids, stable ordering, so the same consolidation gives
the same bytes. Whatever came from a submission (file names, messages) is written as text, never as a
formula. Written through xlsxwriter's public API (`sheets.py`).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import gc
import io
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from xlsxwriter import Workbook

from pipeline.campaign.config import Field, Form, Rules
from pipeline.campaign.consolidation_plan import (
    NOT_SUMMED,
    PROBLEMS_SHEET,
    README_SHEET,
    SOURCES_SHEET,
    STATUS_SHEET,
    SUM,
)
from pipeline.consolidation import consolidate
from pipeline.consolidation import status as states
from pipeline.consolidation.consolidate import SUBTOTAL_ROW, TOTAL_ROW, UNIT_ROW, Consolidation, Span, Table
from pipeline.consolidation.lastyear import LastYear
from pipeline.consolidation.status import Status
from pipeline.model import Submission, column_letters
from pipeline.render import coverage, detail, lists, xlsxpatch, yearsheet
from pipeline.render.sheets import (
    CENTER_ALIGN,
    HEADER_FILL,
    INFO_ALIGN,
    LEFT_ALIGN,
    NUMBER_FORMATS,
    RIGHT_ALIGN,
    SUBTOTAL_FILL,
    TITLE_ROWS,
    TOP_LEFT,
    TOTAL_FILL,
    Formula,
    Looks,
    Sheet,
    headers,
    heading,
    name_width,
    page,
    put_text,
    runs,
    section_starts,
    sum_formula,
    written,
)
from pipeline.render.words import (
    FindingEntry,
    Problem,
    figure_text,
    level_name,
    open_problems,
    stamp,
    when,
    width,
)


def sheet_names(rules: Rules) -> tuple[str, ...]:
    """The workbook's sheets in order: 说明, the declared tables, 明细, 报送情况, 校验问题, 数据来源."""
    tables = tuple(t.sheet for t in rules.consolidation.tables)
    flat = (detail.SHEET,) if tables else ()  # a campaign that consolidates no table has no figures to list
    return (README_SHEET, *tables, *flat, STATUS_SHEET, PROBLEMS_SHEET, SOURCES_SHEET)


def _field_of(rules: Rules, form: str, key: tuple[str, str, str]) -> Field:
    return rules.forms[form].section(key[0]).field(key[2])


def _span_cell(span: Span, ftype: str) -> str:
    """What stands in a summed row for a field not summed: how many units have a figure, and the range."""
    return f"{span.units} 个单位,{figure_text(span, ftype)}"


def _summary_title(form: Form, suffix: str = "") -> str:
    return f"{form.title.removesuffix('表')}汇总表{suffix}"


class _Book:
    """The consolidated workbook, one method per sheet."""

    def __init__(
        self,
        rules: Rules,
        c: Consolidation,
        status: Status,
        problems: list[Problem],
        sources: Sequence[Submission],
        as_of: dt.datetime,
        final: bool,
        edition: int,
        last: LastYear | None,
        note_missing: str,
        detail_csv: str,
    ):
        self.note_missing, self.detail_csv = note_missing, detail_csv
        self.detail_rows = [] if detail_csv else list(detail.rows(rules, c.used))
        self.rules, self.c, self.status, self.problems, self.sources = rules, c, status, problems, sources
        self.last = last
        self.as_of, self.final, self.edition = as_of, final, edition
        self.info = (
            f"汇总范围:{level_name(rules, c)}    数据截至:{when(rules, as_of)}    {stamp(final, edition)}"
        )
        self.state = {(r.unit, r.item): r for r in status.rows}
        self.units = {u.code: u for u in rules.units}  # rules.unit() searches the list: slow for 3,000 rows
        self.buffer = io.BytesIO()
        # Every string goes through write_string; these options only guard what xlsxwriter would guess.
        self.wb = Workbook(
            self.buffer,
            {
                "in_memory": True,
                "strings_to_formulas": False,
                "strings_to_urls": False,
                "strings_to_numbers": False,
            },
        )
        self.looks = Looks(self.wb.add_format)
        self.sheets: list[Sheet] = []

    def build(self) -> bytes:
        self.readme()
        for table in self.c.tables.values():
            if not self.c.coverage[table.plan.form][1]:
                self.nobody(table)
            elif table.plan.kind in ("by_unit", "per_unit"):
                self.unit_table(table)
            elif table.plan.kind == "by_row":
                self.by_row(table)
            else:
                self.pivot(table)
        if self.last is not None:
            yearsheet.year_sheets(self.rules, self.c, self.last, self.sheet, self.info)
        if self.c.tables:
            detail.write_sheet(self.sheet(detail.SHEET), self.detail_rows, self.info, self.detail_csv)
        lists.status_sheet(self)
        lists.problems_sheet(self)
        lists.sources_sheet(self)
        for sheet in self.sheets:
            sheet.flush()
        c = self.rules.campaign
        self.wb.set_properties(
            {
                "title": f"{c.title} 汇总({stamp(self.final, self.edition)})",
                "author": c.issuer,
                "subject": c.title,
                # the templates' fixed stamp: the same inputs give the same bytes (xlsxwriter's zip
                # entries carry a fixed 1980 date of their own)
                "created": dt.datetime.fromisoformat(xlsxpatch.FIXED_STAMP),
            }
        )
        self.wb.close()
        return self.buffer.getvalue()

    def sheet(self, name: str) -> Sheet:
        ws = Sheet(self.wb.add_worksheet(name), self.looks)
        self.sheets.append(ws)
        return ws

    def note(self, unit: str, form: str) -> str:
        """Why a unit's row is blank, or what to know about the figures used."""
        item = self.rules.item_for_form(form).code
        row = self.state.get((unit, item))
        if row is None:
            return ""
        if row.version_used is None:
            return row.state.label + (f";{row.note}" if row.note else "")
        return row.note

    # 说明
    def readme(self) -> None:
        ws = self.sheet(README_SHEET)
        heading(ws, 2, f"{self.rules.campaign.title}统计汇总", self.info, money=False)
        ws.merge(2, 1, 2, 2)
        r = 3
        for key, value in self._readme_rows():
            ws.put(r, 1, key, bold=True, fill=HEADER_FILL, align=LEFT_ALIGN)
            put_text(ws, r, 2, value, align=LEFT_ALIGN)
            ws.heights[r] = 32 if width(value) > 90 else 18
            r += 1
        page(ws, 2, TITLE_ROWS, [18, 100])
        ws.ws.set_portrait()

    def _readme_rows(self) -> list[tuple[str, str]]:
        """What 说明 says, a (key, text) pair a row: the campaign, the scope, the coverage, how the figures
        were made, and what each sheet holds."""
        rules, c = self.rules, self.c
        camp = rules.campaign
        done_forms = [
            (rules.item_for_form(form).label, done, owed) for form, (done, owed) in c.coverage.items()
        ]
        rows: list[tuple[str, str]] = [
            ("活动", camp.title),
            ("发文单位", f"{camp.issuer}{camp.department}"),
            ("文号", camp.document_number),
            ("统计年度", f"{camp.statistics_year}年"),
            ("汇总范围", level_name(rules, c)),
            ("报送截止时间", when(rules, camp.deadline)),
            ("数据截至", when(rules, self.as_of)),
            ("版本", stamp(self.final, self.edition)),
            ("报送单位", f"{c.units_reported} / {c.units_expected} 个单位有报表纳入汇总"),
            *[
                (label, f"{done} / {owed} 个单位已通过校验并纳入汇总")
                for label, done, owed in done_forms
                if owed
            ],
            ("报齐全部材料", f"{self.status.units_done()} / {c.units_expected} 个单位"),
            *[
                (f"未纳入{rules.item_for_form(form).label}汇总", line)
                for form in c.coverage
                if (line := coverage.left_out_line(rules, c, self.status, form))
            ],
            *([("缺报说明", self.note_missing)] if self.note_missing else []),
            ("规则文件 SHA-256", rules.sha256),
            ("合计的算法", "各小计、合计均由各单位报表的明细行重新计算,不采用报表中填写的合计数。"),
            *self._not_summed(),
            (
                "数据的取舍",
                "每个单位每张表采用最近一次通过校验(或经省总接受)且未被退回的版本;未报送或未通过校验的单位暂缺(空白),"
                "不计入合计,原因见“报送情况”“校验问题”工作表,所用文件见“数据来源”工作表。",
            ),
            ("金额单位", "万元,保留两位小数;人数、户数、件数为整数。"),
        ]
        rows += [
            (
                f"{self.units[v.unit].name}{rules.item_for_form(v.form).label}",
                f"{states.state_of(v).label}:{why}",
            )
            for v in c.used
            if (why := states.taken_under(v))
        ]
        used = {x.unit for x in c.used}
        reported_to = {u.reports_to for u in rules.units}
        parents = [u for u in rules.units if u.code in used and u.code in reported_to]
        rolled = "、".join(i.label for i in rules.rollup_items())
        if parents and rolled:
            names = "、".join(u.name for u in parents)
            rows.append(("避免重复计算", f"{names}报送的{rolled}已汇总其所属单位,所属单位不再单列。"))
        rows += [(t.sheet, t.description) for t in rules.consolidation.tables]
        if c.tables:
            rows.append((detail.SHEET, "每个单位每项数据一行(不含合计行),带筛选,可直接做数据透视表。"))
        rows += [
            (STATUS_SHEET, "每个单位每项材料的报送状态、版本与采用的版本。"),
            (PROBLEMS_SHEET, "各单位报表尚未解决的错误与提醒。"),
            (SOURCES_SHEET, "汇总所用及收到的每个文件及其 SHA-256。"),
        ]
        return rows

    def _not_summed(self) -> list[tuple[str, str]]:
        """A line for each table with fields that are not added up across units, naming them."""
        rows = []
        for t in self.rules.consolidation.tables:
            odd = [c for c in t.columns if c.aggregate != SUM]
            if not odd:
                continue
            labels = "、".join(dict.fromkeys(_field_of(self.rules, t.form, c.key).label for c in odd))
            how = (
                "不汇总,小计、合计行空白"
                if all(c.aggregate == NOT_SUMMED for c in odd)
                else "各单位分别填写,不相加:小计、合计行写明填报大于 0 的单位数和最小–最大值"
            )
            rows.append((f"{t.sheet}中不相加的栏", f"{labels}:{how}。"))
        return rows

    # a table whose form nobody at this level owes
    def nobody(self, table: Table) -> None:
        ws = self.sheet(table.plan.sheet)
        heading(ws, 4, _summary_title(self.rules.forms[table.plan.form]), self.info, money=False)
        label = self.rules.item_for_form(table.plan.form).label
        ws.put(3, 1, f"本级没有应报{label}的单位。", align=INFO_ALIGN, border=False)
        page(ws, 4, TITLE_ROWS, [30, 12, 12, 12])

    # by_unit and per_unit: a row per unit
    def unit_table(self, table: Table) -> None:
        if table.plan.kind == "by_unit":
            self._unit_table(table, column_width=10)
            return
        form = self.rules.forms[table.plan.form]
        totals = {(s.code, s.total_row.code) for s in form.sections if s.total_row is not None}
        self._unit_table(table, column_width=9, bold=lambda col: col.key[:2] in totals)

    # by_row: the rows of a section summed over units
    def by_row(self, table: Table) -> None:
        rules = self.rules
        form = rules.forms[table.plan.form]
        section = form.section(table.plan.section)
        columns = table.columns
        ws = self.sheet(table.plan.sheet)
        ncols = len(columns) + 1
        heading(ws, ncols, _summary_title(form, f"(分{section.row_header or '项目'})"), self.info, money=True)
        paths: list[list[str]] = [[section.row_header or "项目"]]
        for col in columns:
            f = _field_of(rules, form.code, col.key)
            paths.append([*([col.group] if col.group else []), f.header])
        body = headers(ws, TITLE_ROWS + 1, paths)
        r = body
        for position, row in enumerate(table.frame.to_dict("records")):
            total = row["code"] == (section.total_row.code if section.total_row else None)
            fill = TOTAL_FILL if total else None
            label = (
                coverage.total_label(self.c, form.code)
                if total and coverage.short(self.c, form.code)
                else row["label"]
            )
            put_text(ws, r, 1, label, bold=total, fill=fill, align=CENTER_ALIGN if total else LEFT_ALIGN)
            for j, col in enumerate(columns, start=2):
                span = table.spans.get((position, col.name))
                if span is not None:
                    put_text(ws, r, j, _span_cell(span, col.type), bold=total, fill=fill, align=RIGHT_ALIGN)
                    continue
                value: Any = written(row[col.name], col.type)
                if total and r > body and col.aggregate == SUM:
                    value = sum_formula(j, [(body, r - 1)], value)
                ws.put(
                    r,
                    j,
                    value,
                    bold=total,
                    fill=fill,
                    align=RIGHT_ALIGN,
                    number_format=NUMBER_FORMATS.get(col.type),
                )
            r += 1
        labels = list(table.frame["label"])
        widths = [name_width(labels, cap=34), *[12] * len(columns)]
        self.left_out(ws, r, form.code, widths)
        page(ws, ncols, body - 1, widths, freeze=f"B{body}")

    # pivot: unit × the rows of a section, a block per field
    def pivot(self, table: Table) -> None:
        rules = self.rules
        form = rules.forms[table.plan.form]
        section = form.section(table.plan.section)
        frame = table.frame
        ws = self.sheet(table.plan.sheet)
        fields = list(dict.fromkeys(str(f) for f in frame.columns.get_level_values(0)))
        rows = list(dict.fromkeys(str(r) for r in frame.columns.get_level_values(1)))
        labels = {r.code: r.label for r in section.rows}
        totals = {r.code for r in section.rows if r.total}
        ncols = len(rows) + 1
        heading(
            ws,
            ncols,
            _summary_title(form, f"(分单位分{section.row_header or '项目'})"),
            self.info,
            money=True,
        )
        body = headers(ws, TITLE_ROWS + 1, [["单位"], *[[labels[r]] for r in rows]])
        ws.heights[body - 1] = 58
        widths = [name_width([name for _, name in frame.index]), *[10] * len(rows)]
        r = body
        for number, code in enumerate(fields, start=1):
            f = section.field(code)
            ws.merge(r, 1, r, ncols)
            caption = f"{'一二三四五六七八九十'[number - 1] if number <= 10 else number}、{f.caption}"
            for j in range(1, ncols + 1):
                ws.put(r, j, caption if j == 1 else None, bold=True, fill=SUBTOTAL_FILL, align=LEFT_ALIGN)
            ws.heights[r] = 20
            r += 1
            formats = {  # a unit's row, or the total's
                total: [
                    ws.look(
                        bold=total or row in totals,
                        fill=TOTAL_FILL if total else None,
                        align=RIGHT_ALIGN,
                        number_format=NUMBER_FORMATS.get(f.type),
                    )
                    for row in rows
                ]
                for total in (False, True)
            }
            first = r
            summed = rules.consolidation.aggregate(form.code, section.code, code) == SUM
            for position, ((unit, name), values) in enumerate(
                zip(frame.index, frame[code].itertuples(index=False), strict=True)
            ):
                total = unit == ""
                fill = TOTAL_FILL if total else None
                name = coverage.total_label(self.c, form.code) if total else name
                put_text(ws, r, 1, name, bold=total, fill=fill, align=CENTER_ALIGN if total else LEFT_ALIGN)
                cells: list[Any] = [written(value, f.type) for value in values]
                if summed and total and r > first:
                    cells = [sum_formula(j, [(first, r - 1)], v) for j, v in enumerate(cells, start=2)]
                elif summed and rows[-1] in totals and cells[-1] is not None and len(rows) > 1:
                    # a unit's 合计 column adds up its own row, so that a late detail figure reaches it
                    across = f"B{r}:{column_letters(ncols - 1)}{r}"
                    cells[-1] = Formula(f"=SUM({across})", cells[-1])
                ws.place_row(r, 2, cells, formats[total])
                for j, row_code in enumerate(rows, start=2):
                    span = table.spans.get((position, (code, row_code)))
                    if span is not None:
                        put_text(ws, r, j, _span_cell(span, f.type), bold=True, fill=fill, align=RIGHT_ALIGN)
                r += 1
            r += self.left_out(ws, r, form.code, widths)  # under each block's total: blocks print apart
        page(ws, ncols, body - 1, widths, freeze=f"B{body}")

    def _unit_table(
        self,
        table: Table,
        column_width: float,
        bold: Callable[[consolidate.Column], bool] = lambda col: False,
    ) -> None:
        """A row per unit (subtotals and the total in bold on their fills), a column per field under its
        section, a 备注 column last; printed a section per page. `bold`: columns always in bold (合计)."""
        form_code, frame, columns = table.plan.form, table.frame, table.columns
        ws = self.sheet(table.plan.sheet)
        ncols = len(columns) + 2
        breaks = section_starts(columns)
        heading(ws, ncols, _summary_title(self.rules.forms[form_code]), self.info, money=True, breaks=breaks)
        paths: list[list[str]] = [["单位"]]
        for col in columns:
            f = _field_of(self.rules, form_code, col.key)
            paths.append([col.section_title, *([col.group] if col.group else []), f.header])
        paths.append(["备注"])
        body = headers(ws, TITLE_ROWS + 1, paths)
        r = body
        looks: dict[tuple[str, bool], list[Any]] = {}  # (level, summed) -> each column's format
        fields = [(col.name, col.type) for col in columns]
        spans: dict[int, list[tuple[int, str]]] = {}  # a summed row's texts where a field is not summed
        position_of = {col.name: j for j, col in enumerate(columns, start=2)}
        for (position, name), span in table.spans.items():
            spans.setdefault(position, []).append(
                (position_of[name], _span_cell(span, columns[position_of[name] - 2].type))
            )
        added = [j for j, col in enumerate(columns) if col.aggregate == SUM]
        unit_rows: dict[str, list[int]] = {}  # kind -> the sheet rows of its units, for the formulas
        for position, row in enumerate(frame.to_dict("records")):
            level = row["level"]
            fill = TOTAL_FILL if level == TOTAL_ROW else SUBTOTAL_FILL if level == SUBTOTAL_ROW else None
            summed = level != UNIT_ROW
            name = coverage.total_label(self.c, form_code) if level == TOTAL_ROW else row["name"]
            if summed:
                over = (
                    unit_rows.get(row.get("kind", ""), [])
                    if level == SUBTOTAL_ROW
                    else sorted(r for rows in unit_rows.values() for r in rows)
                )
            else:
                unit_rows.setdefault(row.get("kind", ""), []).append(r)  # per_unit: no kinds
            put_text(ws, r, 1, name, bold=summed, fill=fill, align=CENTER_ALIGN if summed else LEFT_ALIGN)
            formats = looks.get((level, summed))
            if formats is None:
                formats = looks[(level, summed)] = [
                    ws.look(
                        bold=summed or bold(col),
                        fill=fill,
                        align=RIGHT_ALIGN,
                        number_format=NUMBER_FORMATS.get(col.type),
                    )
                    for col in columns
                ]
            values: list[Any] = [written(row[name], kind) for name, kind in fields]
            if summed:
                ranges = runs(over)
                for j in added:
                    values[j] = sum_formula(j + 2, ranges, values[j])
            ws.place_row(r, 2, values, formats)
            for j, text in spans.get(position, ()):
                put_text(ws, r, j, text, bold=True, fill=fill, align=RIGHT_ALIGN)
            note = "" if summed else self.note(row["code"], form_code)
            put_text(ws, r, ncols, note, fill=fill, align=LEFT_ALIGN, size=9)
            r += 1
        widths = [name_width(list(frame["name"])), *[column_width] * len(columns), 16]
        self.left_out(ws, r, form_code, widths, breaks)
        page(ws, ncols, body - 1, widths, freeze=f"B{body}", breaks=breaks)

    def left_out(
        self, ws: Sheet, r: int, form: str, widths: Sequence[float], breaks: Sequence[int] = ()
    ) -> int:
        """Under a total short of units, at row `r`: who is not in it and why, over each printed page's
        columns, so that the page with the total names them. Returns the rows taken (0 or 1)."""
        line = coverage.left_out_line(self.rules, self.c, self.status, form)
        if not line:
            return 0
        edges = [1, *breaks, len(widths) + 1]
        rooms = []
        for first, end in zip(edges, edges[1:], strict=False):
            ws.merge(r, first, r, end - 1)
            ws.put(r, first, line, align=TOP_LEFT, border=False, color="C00000")
            rooms.append(sum(widths[first - 1 : end - 1]))
        ws.heights[r] = 13.5 * math.ceil(width(line) / max(1.0, min(rooms) - 2)) + 6
        return 1


def consolidated_workbook(
    rules: Rules,
    c: Consolidation,
    status: Status,
    findings_by_unit: Mapping[str, Sequence[FindingEntry]],
    sources: Sequence[Submission],
    *,
    as_of: dt.datetime,
    final: bool,
    edition: int,
    last: LastYear | None = None,
    allow_missing: str = "",
    detail_csv: str = "",
) -> bytes:
    """The consolidated workbook (.xlsx bytes, reproducible) with the sheets of `sheet_names`, in that order
    (with `last`, last year's figures: a `(上年)` sheet after the declared tables, see yearsheet.py).

    `findings_by_unit` holds each unit's open findings, each alone or as (file name, finding); `sources`
    are the versions to list under 数据来源 (those consolidated are marked 采用); `allow_missing`: staff's
    explanation of a final edition made with units missing (run --allow-missing), printed in 说明;
    `detail_csv`: the file the flat table went to instead of the 明细 sheet (at national scale), or "" to
    write it from the figures of `c.used`.
    """
    problems = open_problems(rules, c, findings_by_unit)
    with _collector_paused():
        book = _Book(
            rules,
            c,
            status,
            problems,
            sources,
            as_of,
            final,
            edition,
            last,
            allow_missing.strip(),
            detail_csv,
        )
        return book.build()


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Python's cycle collector off while the workbook is built. It runs each time enough new objects have
    been made and then walks the ones kept: here the growing cells of every sheet (a tuple each, with its
    format), again and again, to find no garbage: 0.6 of 2.3 CPU-seconds at 3,000 units. Whatever garbage
    the building leaves is collected after, as usual."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
