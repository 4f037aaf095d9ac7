"""Renderings of a consolidation: the Chinese statistics workbook, the HTML report and a draft of the
written summary that staff edit and send upward.

Pure functions of their inputs: no clock, no random ids, stable ordering, so the same consolidation
gives the same bytes. Whatever came from a submission (file names, messages) is written as text,
never as a formula or markup.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import gc
import io
import itertools
import math
import re
import unicodedata
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import jinja2
import pandas as pd
from markupsafe import Markup, escape
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE
from openpyxl.styles import Alignment, PatternFill
from xlsxwriter import Workbook

from pipeline.campaign.config import PROVINCE, Field, Form, Rules
from pipeline.consolidation import consolidate
from pipeline.consolidation.consolidate import (
    CENTER,
    SUBTOTAL_ROW,
    TOTAL_ROW,
    UNIT_ROW,
    VISITS,
    WARMTH,
    Consolidation,
)
from pipeline.consolidation.status import (
    FAILED,
    MISSING,
    OVERDUE,
    PASSED,
    RECEIVED,
    WARNED,
    ItemStatus,
    Status,
    )
from pipeline.model import Finding, Severity, Submission, Verdict
from pipeline.render import sheetdata, template

TEMPLATES = Path(__file__).resolve().parents[2] / "templates"

SHEETS = ("说明", "送温暖汇总", "分行业汇总", "市县×行业", "帮扶中心汇总", "报送情况", "校验问题", "数据来源")

# A finding as the caller has it: alone (its file is then looked up among the versions used), or with
# the name of the file it was found in.
FindingEntry = Finding | tuple[str, Finding]

FUND_SOURCES = ("fund_central", "fund_provincial", "fund_local", "fund_union", "fund_social")
SEVERITY_WORDS = {Severity.ERROR: "错误", "warning": "提醒"}
MONEY_UNIT = "金额单位:万元"

# --- shared wording -------------------------------------------------------------------------------------


def stamp(final: bool, edition: int) -> str:
    return f"终稿(第{edition}版)" if final else "草稿"


def _local(rules: Rules, moment: dt.datetime) -> dt.datetime:
    return moment.astimezone(rules.campaign.tz) if moment.tzinfo is not None else moment


def _naive(rules: Rules, moment: dt.datetime) -> dt.datetime:
    """The local time without its zone, as a spreadsheet holds a date and time."""
    return _local(rules, moment).replace(tzinfo=None)


def _when(rules: Rules, moment: dt.datetime) -> str:
    return f"{_local(rules, moment):%Y-%m-%d %H:%M}"


def _scope(rules: Rules, c: Consolidation) -> str:
    """Who the figures are of, as the subject of a sentence: 全省各级工会, or ZX's units."""
    return "全省各级工会" if c.parent == PROVINCE else f"{rules.unit(c.parent).name}所属各单位"


def _level_name(rules: Rules, c: Consolidation) -> str:
    return "全省(直报省总的单位)" if c.parent == PROVINCE else f"{rules.unit(c.parent).name}所属单位"


def _short(rules: Rules, code: str) -> str:
    """A unit's short name for a chart axis: its first alias (海口, 洋浦, 农垦), else its name."""
    unit = rules.unit(code)
    return unit.aliases[0] if unit.aliases else unit.name


def _count_text(value: Any) -> str:
    return str(int(value))


def _money_text(value: Any) -> str:
    return f"{consolidate.money(value):.2f}"


def _figure(value: Any, ftype: str) -> str:
    if value is None or pd.isna(value):
        return ""
    return _money_text(value) if ftype == "money" else _count_text(value)


def _total_row(frame: pd.DataFrame) -> pd.Series:
    return frame[frame["level"] == TOTAL_ROW].iloc[0]


def headline_sentences(rules: Rules, c: Consolidation) -> list[str]:
    """The figures in the federation's words: 全省各级工会共筹集送温暖资金 X 万元,走访慰问困难企业 Y 家……"""
    h = consolidate.headline(c)

    def m(name: str) -> str:
        return _money_text(h[name])

    def n(name: str) -> str:
        return _count_text(h[name])

    first = (
        f"{_scope(rules, c)}共筹集送温暖资金 {m('筹集送温暖资金')} 万元,走访慰问困难企业 {n('走访慰问困难企业')} 家,"
        f"慰问困难职工 {n('慰问困难职工')} 户(其中建档困难职工 {n('建档困难职工')} 户)、"
        f"困难农民工 {n('困难农民工')} 人、劳动模范 {n('劳动模范')} 人、一线职工 {n('一线职工')} 人,"
        f"发放慰问金和慰问品合计 {m('慰问金额')} 万元(其中慰问金 {m('慰问金')} 万元、慰问品折款 {m('慰问品折款')} 万元)。"
    )
    second = (
        f"各级工会领导干部下访 {n('领导干部下访')} 人次,召开座谈会 {n('召开座谈会')} 次,"
        f"开展劳动经济权益大检查企业 {n('劳动经济权益大检查企业')} 家,排查农民工欠薪问题 {n('排查农民工欠薪问题')} 件,"
        f"帮助追回农民工欠薪 {m('帮助追回农民工欠薪')} 万元,提供法律援助 {n('提供法律援助')} 件,"
        f"帮助农民工返乡购票 {n('帮助农民工返乡购票')} 人次。"
    )
    return [first, second]


def funds_sentence(rules: Rules, c: Consolidation) -> str:
    total = _total_row(c.by_unit)
    labels = {col.name: col for col in c.columns["by_unit"]}
    parts = []
    for code in FUND_SOURCES:
        if code in labels:
            share = _share(total[code], total["fund_total"])
            parts.append(f"{_field_label(labels[code].caption)} {_money_text(total[code])} 万元{share}")
    unspent = (
        f"。活动结束时结余资金 {_money_text(total['fund_unspent'])} 万元,"
        f"其中转作日常帮扶资金 {_money_text(total['fund_unspent_to_daily'])} 万元。"
    )
    return f"筹集的送温暖资金中,{'、'.join(parts)}{unspent}"


def _share(part: Any, whole: Any) -> str:
    if pd.isna(whole) or not whole:
        return ""
    return f"(占 {Decimal(repr(float(part))) / Decimal(repr(float(whole))) * 100:.1f}%)"


def _field_label(caption: str) -> str:
    return re.sub(r"[((][^()()]*[))]$", "", caption)


def centers_sentence(rules: Rules, c: Consolidation) -> str:
    """The 帮扶中心 in one paragraph, or "" when this level has none."""
    if c.centers.empty:
        return ""
    t = _total_row(c.centers)
    done, owed = c.coverage[CENTER]
    names = {col.name for col in c.columns["centers"]}
    needed = {
        "archived_households",
        "new_archived",
        "lifted_out",
        "total.persons",
        "total.amount",
        "hotline",
        "visits",
        "job_referrals",
        "job_placed",
        "training",
        "online",
    }
    if not needed <= names:
        return ""
    where = "全省 " if c.parent == PROVINCE else ""
    reported = f"{owed} 个帮扶中心" + (f"(已汇总 {done} 个)" if done < owed else "")
    aid = [
        f"{col.group} {_count_text(t[col.name])} 人次"
        for col in c.columns["centers"]
        if col.name.endswith(".persons") and not col.name.startswith("total.")
    ]
    return (
        f"{where}{reported}年末建档困难职工 {_count_text(t['archived_households'])} 户,其中当年新建档 "
        f"{_count_text(t['new_archived'])} 户,当年解困脱困 {_count_text(t['lifted_out'])} 户。"
        f"共帮扶困难职工 {_count_text(t['total.persons'])} 人次、支出 {_money_text(t['total.amount'])} 万元"
        f"({'、'.join(aid)});12351 热线受理 {_count_text(t['hotline'])} 件,接待来访 {_count_text(t['visits'])} 人次,"
        f"职业介绍 {_count_text(t['job_referrals'])} 人次(介绍成功 {_count_text(t['job_placed'])} 人),"
        f"技能培训 {_count_text(t['training'])} 人次,网上平台受理求助 {_count_text(t['online'])} 件。"
    )


# --- who has not reported --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Owing:
    unit: str
    name: str
    items: tuple[str, ...]


def _owing(status: Status, states: tuple[str, ...]) -> list[_Owing]:
    by_unit: dict[str, list[ItemStatus]] = {}
    for r in status.rows:
        if r.state in states:
            by_unit.setdefault(r.unit, []).append(r)
    return [
        _Owing(code, rows[0].unit_name, tuple(r.item_label for r in rows)) for code, rows in by_unit.items()
    ]


def _follow_up(rules: Rules, status: Status) -> list[dict[str, str]]:
    """Every item still owed, refused or late, in status order: what staff chase."""
    rows = []
    for r in status.rows:
        if r.state in (MISSING, OVERDUE):
            css, note = "missing", "截止时间已过,仍未收到" if r.state == OVERDUE else ""
        elif r.state == FAILED:
            css = "failed"
            note = f"共 {r.versions} 版,最新一版未通过校验" + (f";{r.note}" if r.note else "")
        elif r.late and r.received is not None:
            css, note = "late", f"逾期报送,收到于 {_when(rules, r.received)}"
        else:
            continue
        if r.mail_problem:
            note = ";".join(x for x in (note, r.mail_problem) if x)
        rows.append(dict(name=r.unit_name, item=r.item_label, state=r.state.label, css=css, note=note))
    return rows


# --- problems --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Problem:
    unit: str
    unit_name: str
    file: str
    finding: Finding


_A1 = re.compile(r"\$?([A-Za-z]{1,3})\$?(\d+)")


def _cell_order(cell: str) -> tuple[int, int]:
    m = _A1.fullmatch(cell.strip())
    if not m:
        return (0, 0)
    col = 0
    for ch in m.group(1).upper():
        col = col * 26 + ord(ch) - 64
    return (int(m.group(2)), col)


def _problems(
    rules: Rules, c: Consolidation, findings_by_unit: Mapping[str, Sequence[FindingEntry]]
) -> list[_Problem]:
    position = {u.code: i for i, u in enumerate(rules.units)}
    names = {u.code: u.name for u in rules.units}
    sheets = {form.sheet: form.code for form in rules.forms.values()}
    used = {(v.unit, v.form): v.file for v in c.used}
    out = []
    for code, entries in findings_by_unit.items():
        name = names.get(code, code or "未识别单位")
        for entry in entries:
            if isinstance(entry, tuple):
                file, finding = entry
            else:
                file, finding = used.get((code, sheets.get(finding.sheet, "")), ""), entry
            out.append(_Problem(code, name, file, finding))
    return sorted(
        out,
        key=lambda p: (
            position.get(p.unit, len(position)),
            p.unit,
            p.file,
            not p.finding.is_error,
            p.finding.sheet,
            _cell_order(p.finding.cell),
            p.finding.rule,
            p.finding.message,
        ),
    )


# --- the workbook ----------------------------------------------------------------------------------------

FONT = template.FONT
HEADER_FILL = template.HEADER_FILL
TOTAL_FILL = template.TOTAL_FILL
SUBTOTAL_FILL = PatternFill("solid", fgColor="F2F2F2")
STATE_FILLS = {
    PASSED: PatternFill("solid", fgColor="E2EFDA"),
    WARNED: PatternFill("solid", fgColor="FFF2CC"),
    FAILED: PatternFill("solid", fgColor="F8CBAD"),
    MISSING: PatternFill("solid", fgColor="F8CBAD"),
    OVERDUE: PatternFill("solid", fgColor="F8CBAD"),
    RECEIVED: PatternFill("solid", fgColor="E2EFDA"),
}
CENTER_ALIGN = template.CENTER
LEFT_ALIGN = template.LEFT
RIGHT_ALIGN = template.RIGHT
TOP_LEFT = Alignment(horizontal="left", vertical="top", wrap_text=True)
INFO_ALIGN = Alignment(horizontal="left", vertical="center")
NUMBER_FORMATS = {"count": "0", "money": "0.00"}
DATETIME_FORMAT = "yyyy-mm-dd hh:mm"
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
MAX_TEXT = 32767
TITLE_ROWS = 2  # the title, then the scope / as-of / 金额单位 line
# openpyxl's vertical alignments in xlsxwriter's words: the looks are given in the templates' style objects.
_VERTICAL = {"center": "vcenter", "top": "top", "bottom": "bottom"}

Value = str | int | float | dt.datetime | None
# A cell's look but its quote prefix: bold, size, alignment, fill, border, font color, number format.
Look = tuple[bool, int, Alignment, PatternFill | None, bool, str | None, str | None]


class _Looks:
    """The workbook's formats, one for each distinct look and quote prefix, made on first use and shared by
    its sheets. The memo's key holds the ids of the style objects; `of` keeps the objects alive."""

    def __init__(self, add_format: Callable[[dict[str, Any]], Any]):
        self.add_format = add_format
        self.made: dict[tuple[Any, ...], Any] = {}  # key -> format
        self.of: dict[int, Look] = {}  # id of a format -> its look

    def format(self, look: Look, quote: bool = False) -> Any:
        bold, size, align, fill, border, color, number_format = look
        key = (bold, size, id(align), id(fill), border, color, number_format, quote)
        fmt = self.made.get(key)
        if fmt is None:
            fmt = self.made[key] = self.add_format(_format(*look, quote))
            self.of[id(fmt)] = look
        return fmt

    def quoted(self, fmt: Any) -> Any:
        """`fmt` with the quote prefix, which keeps a text that starts like a formula a text when someone
        edits the cell and presses Enter."""
        return self.format(self.of[id(fmt)], quote=True)


class _Sheet:
    """One worksheet's cells, merges and row heights, 1-based as in Excel's A1, kept until the sheet is whole
    (`_fit_rows` reads the texts back) and then handed to xlsxwriter, which is 0-based, all at once
    (`sheetdata.Sheet.lay_out`) or, for a cell that route does not write, one `write_*` call a cell.
    """

    def __init__(self, ws: sheetdata.Sheet, looks: _Looks):
        self.ws = ws
        self.looks = looks
        self.cells: dict[int, dict[int, tuple[Value, Any]]] = {}
        self.heights: dict[int, float] = {}
        self.merges: dict[tuple[int, int, int, int], None] = {}  # a dict: ordered, and a range merges once
        self.max_row = 0

    def put(self, row: int, col: int, value: Value = None, **look: Any) -> None:
        """A cell with its look (the arguments of `look`): a string as text (see `text`), anything else as
        it is."""
        fmt = self.look(**look)
        if isinstance(value, str):
            self.text(row, col, value, fmt)
        else:
            self.place(row, col, value, fmt)

    def look(
        self,
        bold: bool = False,
        size: int = 10,
        align: Alignment = CENTER_ALIGN,
        fill: PatternFill | None = None,
        border: bool = True,
        color: str | None = None,
        number_format: str | None = None,
    ) -> Any:
        """The format of a look: a cell's font (bold, size, color), alignment, fill, border and number
        format."""
        return self.looks.format((bold, size, align, fill, border, color, number_format))

    def text(self, row: int, col: int, value: Any, fmt: Any) -> None:
        """Any value as its text (None: nothing) in a format from `look`: always text, never a formula (=…)
        or an error code (#N/A)."""
        if value is not None:
            value = ILLEGAL_CHARACTERS_RE.sub("\ufffd", str(value))[:MAX_TEXT] or None
            if value is not None and value.startswith(FORMULA_START):
                fmt = self.looks.quoted(fmt)
        self.place(row, col, value, fmt)

    def place(self, row: int, col: int, value: Value, fmt: Any) -> None:
        """A value as it is, in a format from `look`."""
        self.cells.setdefault(row, {})[col] = (value, fmt)
        if row > self.max_row:
            self.max_row = row

    def place_row(
        self, row: int, first_col: int, values: Sequence[int | float | None], formats: Sequence[Any]
    ) -> None:
        """Numbers (or nothing) from `first_col` rightwards, each in its format from `look`: the way of the
        large tables' two hundred thousand cells."""
        cells = zip(itertools.count(first_col), zip(values, formats, strict=True))
        self.cells.setdefault(row, {}).update(cells)
        self.max_row = max(self.max_row, row)

    def merge(self, first_row: int, first_col: int, last_row: int, last_col: int) -> None:
        self.merges[first_row, first_col, last_row, last_col] = None
        self.max_row = max(self.max_row, last_row)

    def flush(self) -> None:
        ws = self.ws
        for r0, c0, r1, c1 in self.merges:
            # merge_range pads the range with blanks in the first cell's look; the cells written below win.
            top = self.cells.get(r0, {}).get(c0)
            ws.merge_range(r0 - 1, c0 - 1, r1 - 1, c1 - 1, None, top[1] if top else None)
            if top:
                self._pad(r0, c0, r1, c1, top[1])
        for r, height in self.heights.items():
            # In pixels, 4/3 to a point, so that the file stores the height as given: set_row would round
            # it to whole pixels (32 to 32.25).
            ws.set_row_pixels(r - 1, height * 4 / 3)
        if not ws.lay_out(self.cells):
            self._write_each()

    def _pad(self, first_row: int, first_col: int, last_row: int, last_col: int, fmt: Any) -> None:
        """merge_range's padding among the cells, for `lay_out`, which writes only these."""
        for r in range(first_row, last_row + 1):
            row = self.cells.setdefault(r, {})
            for c in range(first_col, last_col + 1):
                row.setdefault(c, (None, fmt))

    def _write_each(self) -> None:
        """The cells one `write_*` call each: what `lay_out` leaves to xlsxwriter."""
        ws = self.ws
        write_string, write_number, write_blank = ws.write_string, ws.write_number, ws.write_blank
        for r, cells in self.cells.items():
            for c, (value, fmt) in cells.items():
                if value is None:
                    write_blank(r - 1, c - 1, None, fmt)
                elif isinstance(value, str):
                    write_string(r - 1, c - 1, value, fmt)
                elif isinstance(value, dt.datetime):
                    ws.write_datetime(r - 1, c - 1, value, fmt)
                else:
                    write_number(r - 1, c - 1, value, fmt)


def _format(
    bold: bool,
    size: int,
    align: Alignment,
    fill: PatternFill | None,
    border: bool,
    color: str | None,
    number_format: str | None,
    quote: bool,
) -> dict[str, Any]:
    """xlsxwriter's properties for a look given in openpyxl's style objects (those of the templates)."""
    props: dict[str, Any] = {"font_name": FONT, "font_size": size, "bold": bold}
    if align.horizontal:
        props["align"] = align.horizontal
    if align.vertical:
        props["valign"] = _VERTICAL[align.vertical]
    if align.wrap_text:
        props["text_wrap"] = True
    if color:
        props["font_color"] = f"#{color[-6:]}"
    if fill is not None:
        props["pattern"] = 1
        props["bg_color"] = f"#{fill.fgColor.rgb[-6:]}"
    if border:
        props["border"] = 1
        props["border_color"] = f"#{template.THIN.color.rgb[-6:]}"
    if number_format:
        props["num_format"] = number_format
    if quote:
        props["quote_prefix"] = True
    return props


def _text(ws: _Sheet, row: int, col: int, value: Any, **look: Any) -> None:
    """Any value, written as its text."""
    ws.text(row, col, value, ws.look(**look))


def _number(ws: _Sheet, row: int, col: int, value: Any, ftype: str, **look: Any) -> None:
    ws.put(row, col, _written(value, ftype), number_format=NUMBER_FORMATS.get(ftype), **look)


def _written(value: Any, ftype: str) -> int | float | None:
    """A consolidated figure as written: a count as int, money as float, blank as None."""
    # pd.isna, spelled out: it costs more than the rest of the cell, and there are 200,000 at national scale
    if value is None or value is pd.NA or (isinstance(value, float) and value != value):
        return None
    return int(value) if ftype == "count" else float(value)


def _width(text: str) -> int:
    """Columns a text needs: a CJK character takes two."""
    return len(text) if text.isascii() else _wide_width(text)


@functools.lru_cache(maxsize=1 << 16)
def _wide_width(text: str) -> int:  # unit names recur on several sheets
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def _heading(ws: _Sheet, ncols: int, title: str, info: str, money: bool, breaks: Sequence[int] = ()) -> None:
    """Title, then the scope line with 金额单位 at its right.

    A sheet printed as several pages across (`breaks`, see `_page`) gets the title over each page's own
    columns, (续) after the first, and column A (repeated on every page) stays clear of it.
    """
    if not breaks:
        _heading_span(ws, 1, ncols, title, info, money)
        return
    edges = [2, *breaks, ncols + 1]
    for k, (first, end) in enumerate(zip(edges, edges[1:], strict=False)):
        _heading_span(ws, first, end - 1, title if k == 0 else f"{title}(续)", info if k == 0 else "", money)


def _heading_span(ws: _Sheet, first: int, last: int, title: str, info: str, money: bool) -> None:
    if last > first:
        ws.merge(1, first, 1, last)
    ws.put(1, first, title, bold=True, size=16, border=False)
    ws.heights[1] = 32
    if money and last - first > 1:
        ws.merge(2, first, 2, last - 1)
        ws.put(2, last, MONEY_UNIT, align=RIGHT_ALIGN, border=False)
    elif last > first:
        ws.merge(2, first, 2, last)
    if info:
        ws.put(2, first, info, align=INFO_ALIGN, border=False)
    ws.heights[2] = 20


def _headers(ws: _Sheet, top: int, paths: Sequence[Sequence[str]]) -> int:
    """Header rows from each column's labels, top to bottom; equal neighbours merge across, a column whose
    labels end early merges down. Returns the first row below the header."""
    depth = max(len(p) for p in paths)
    labels: dict[tuple[int, int], str] = {}
    for level in range(depth):
        row = top + level
        j = 0
        while j < len(paths):
            path = paths[j]
            if level >= len(path):
                j += 1
                continue
            if level == len(path) - 1:  # the column's own caption, down to the last header row
                if depth - 1 > level:
                    ws.merge(row, j + 1, top + depth - 1, j + 1)
                labels[row, j + 1] = path[level]
                j += 1
                continue
            end = j
            while (
                end + 1 < len(paths)
                and len(paths[end + 1]) > level + 1
                and tuple(paths[end + 1][: level + 1]) == tuple(path[: level + 1])
            ):
                end += 1
            if end > j:
                ws.merge(row, j + 1, row, end + 1)
            labels[row, j + 1] = path[level]
            j = end + 1
    for row in range(top, top + depth):
        for j in range(1, len(paths) + 1):
            ws.put(row, j, labels.get((row, j)), bold=True, fill=HEADER_FILL)
        ws.heights[row] = 22
    ws.heights[top + depth - 1] = 44
    return top + depth


A4_LANDSCAPE_MM = 297.0
A4_PAPER = 9
SIDE_MARGIN_IN = 0.4
CHARACTER_PX = 7  # a column width counts characters of 7 px (Calibri 11), the unit `_scale` plans with


def _page(
    ws: _Sheet,
    ncols: int,
    header_end: int,
    widths: Sequence[float],
    freeze: str | None = None,
    breaks: Sequence[int] = (),
) -> None:
    """A4 landscape, title and header rows repeated. A table too wide to read at one page's width is cut
    into pages of whole sections (`breaks`: the first column of each later page), column A repeated."""
    sheet = ws.ws
    for j, w in enumerate(widths):
        # In pixels, so that the file stores the width itself: set_column would add Excel's cell padding.
        sheet.set_column_pixels(j, j, round(CHARACTER_PX * w))
    if freeze:
        sheet.freeze_panes(freeze)
    sheet.repeat_rows(0, header_end - 1)
    sheet.set_paper(A4_PAPER)
    sheet.set_landscape()
    if breaks:
        sheet.set_v_pagebreaks([first - 1 for first in breaks])
        sheet.repeat_columns(0)
        sheet.set_print_scale(_scale(widths, breaks))
    else:
        sheet.fit_to_pages(1, 0)
    sheet.center_horizontally()
    sheet.set_margins(left=SIDE_MARGIN_IN, right=SIDE_MARGIN_IN, top=0.6, bottom=0.75)
    sheet.set_header("", {"margin": 0.5})
    sheet.set_footer("&C第 &P 页,共 &N 页", {"margin": 0.3})
    _fit_rows(ws, header_end + 1, widths)
    sheet.print_area(0, 0, max(ws.max_row, header_end) - 1, ncols - 1)


def _fit_rows(ws: _Sheet, first: int, widths: Sequence[float]) -> None:
    """Row heights for wrapped text: the file stores none unless told, and programs do not always refit."""
    rooms = {j: max(1.0, w - 1) for j, w in enumerate(widths, start=1)}
    for r in range(first, ws.max_row + 1):
        if r in ws.heights:
            continue
        lines = 1
        for j, (value, _) in ws.cells.get(r, {}).items():
            # one line, even if every character is wide, needs no measuring
            if isinstance(value, str) and j in rooms and (2 * len(value) > rooms[j] or "\n" in value):
                lines = max(lines, _lines(value, rooms[j]))
        ws.heights[r] = max(18, 13.5 * lines + 4)


def _lines(text: str, room: float) -> int:
    """The lines a text takes in a column `room` characters wide, each of its own lines wrapped apart."""
    if "\n" in text:
        return sum(_lines(part, room) for part in text.split("\n"))
    return math.ceil(max(1, _width(text)) / room)


def _scale(widths: Sequence[float], breaks: Sequence[int]) -> int:
    """The print scale (%) at which the widest page of columns, with column A, fits the paper."""
    edges = [2, *breaks, len(widths) + 1]
    usable = A4_LANDSCAPE_MM - 2 * 25.4 * SIDE_MARGIN_IN
    widest = 0.0
    for start, end in zip(edges, edges[1:], strict=False):
        page = [widths[0], *widths[start - 1 : end - 1]]
        # Excel draws 7 px per character of column width (Calibri); LibreOffice with a substitute font, up
        # to 9: plan for the wider, so that the page holds its columns in every program.
        widest = max(widest, 25.4 / 96 * sum(9 * w + 5 for w in page))
    return max(10, min(100, int(usable * 100 / widest))) if widest else 100


def _section_starts(columns: Sequence[consolidate.Column], offset: int = 2) -> list[int]:
    """The sheet column where each section after the first begins."""
    return [
        j
        for j, (a, b) in enumerate(zip(columns, columns[1:], strict=False), start=offset + 1)
        if a.section_title != b.section_title
    ]


def _name_width(names: Sequence[str], floor: int = 12, cap: int = 26) -> float:
    return min(cap, max([floor, *(_width(n) + 2 for n in names)]))


def _field_of(rules: Rules, form: str, key: tuple[str, str, str]) -> Field:
    return rules.forms[form].section(key[0]).field(key[2])


def _summary_title(form: Form, suffix: str = "") -> str:
    return f"{form.title.removesuffix('表')}汇总表{suffix}"


class _Book:
    """The consolidated workbook, one method per sheet."""

    def __init__(
        self,
        rules: Rules,
        c: Consolidation,
        status: Status,
        problems: list[_Problem],
        sources: Sequence[Submission],
        as_of: dt.datetime,
        final: bool,
        edition: int,
    ):
        self.rules, self.c, self.status, self.problems, self.sources = rules, c, status, problems, sources
        self.as_of, self.final, self.edition = as_of, final, edition
        self.info = (
            f"汇总范围:{_level_name(rules, c)}    数据截至:{_when(rules, as_of)}    {stamp(final, edition)}"
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
        self.looks = _Looks(self.wb.add_format)
        self.sheets: list[_Sheet] = []

    def build(self) -> bytes:
        self.readme()
        self.by_unit()
        self.by_industry()
        self.pivot()
        self.centers()
        self.status_sheet()
        self.problems_sheet()
        self.sources_sheet()
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
                "created": dt.datetime.fromisoformat(template.FIXED_STAMP),
            }
        )
        self.wb.close()
        return self.buffer.getvalue()

    def sheet(self, name: str) -> _Sheet:
        ws = _Sheet(self.wb.add_worksheet(name, sheetdata.Sheet), self.looks)
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
        rules, c = self.rules, self.c
        ws = self.sheet(SHEETS[0])
        camp = rules.campaign
        _heading(ws, 2, f"{camp.title}统计汇总", self.info, money=False)
        ws.merge(2, 1, 2, 2)
        done_forms = [
            (rules.item_for_form(form).label, *c.coverage[form])
            for form in (WARMTH, CENTER)
            if form in c.coverage
        ]
        rows: list[tuple[str, str]] = [
            ("活动", camp.title),
            ("发文单位", f"{camp.issuer}{camp.department}"),
            ("文号", camp.document_number),
            ("统计年度", f"{camp.statistics_year}年"),
            ("汇总范围", _level_name(rules, c)),
            ("报送截止时间", _when(rules, camp.deadline)),
            ("数据截至", _when(rules, self.as_of)),
            ("版本", stamp(self.final, self.edition)),
            ("报送单位", f"{c.units_reported} / {c.units_expected} 个单位有报表纳入汇总"),
            *[
                (label, f"{done} / {owed} 个单位已通过校验并纳入汇总")
                for label, done, owed in done_forms
                if owed
            ],
            ("报齐全部材料", f"{self.status.units_done()} / {c.units_expected} 个单位"),
            ("规则文件 SHA-256", rules.sha256),
            ("合计的算法", "各小计、合计均由各单位报表的明细行重新计算,不采用报表中填写的合计数。"),
            (
                "数据的取舍",
                "每个单位每张表采用最近一次通过校验的版本;未报送或未通过校验的单位暂缺(空白),"
                "不计入合计,原因见“报送情况”“校验问题”工作表,所用文件见“数据来源”工作表。",
            ),
            ("金额单位", "万元,保留两位小数;人数、户数、件数为整数。"),
        ]
        used = {x.unit for x in c.used}
        reported_to = {u.reports_to for u in rules.units}
        parents = [u for u in rules.units if u.code in used and u.code in reported_to]
        if parents:
            names = "、".join(u.name for u in parents)
            rows.append(("避免重复计算", f"{names}报送的送温暖统计表已汇总其所属单位,所属单位不再单列。"))
        rows += [
            (
                "送温暖汇总",
                "附件1 分单位汇总:表一合计行、表二资金来源、表三走访检查与维权,按单位类别分组小计。",
            ),
            ("分行业汇总", "附件1 表一按行业汇总。"),
            ("市县×行业", "各单位分行业的慰问困难职工户数与慰问金额。"),
            ("帮扶中心汇总", "附件2 各帮扶中心工作统计汇总。"),
            ("报送情况", "每个单位每项材料的报送状态、版本与采用的版本。"),
            ("校验问题", "各单位报表尚未解决的错误与提醒。"),
            ("数据来源", "汇总所用及收到的每个文件及其 SHA-256。"),
        ]
        r = 3
        for key, value in rows:
            ws.put(r, 1, key, bold=True, fill=HEADER_FILL, align=LEFT_ALIGN)
            _text(ws, r, 2, value, align=LEFT_ALIGN)
            ws.heights[r] = 32 if _width(value) > 90 else 18
            r += 1
        _page(ws, 2, TITLE_ROWS, [18, 100])
        ws.ws.set_portrait()

    # 送温暖汇总
    def by_unit(self) -> None:
        self._unit_table(SHEETS[1], WARMTH, self.c.by_unit, self.c.columns["by_unit"], width=10)

    # 分行业汇总
    def by_industry(self) -> None:
        rules, c = self.rules, self.c
        form = rules.forms[WARMTH]
        section = form.section(VISITS)
        columns = c.columns["by_industry"]
        ws = self.sheet(SHEETS[2])
        ncols = len(columns) + 1
        _heading(ws, ncols, _summary_title(form, "(分行业)"), self.info, money=True)
        paths: list[list[str]] = [[section.row_header or "项目"]]
        for col in columns:
            f = _field_of(rules, WARMTH, col.key)
            paths.append([*([col.group] if col.group else []), f.header])
        body = _headers(ws, TITLE_ROWS + 1, paths)
        r = body
        for row in c.by_industry.to_dict("records"):
            total = row["code"] == (section.total_row.code if section.total_row else None)
            fill = TOTAL_FILL if total else None
            _text(ws, r, 1, row["label"], bold=total, fill=fill, align=CENTER_ALIGN if total else LEFT_ALIGN)
            for j, col in enumerate(columns, start=2):
                _number(ws, r, j, row[col.name], col.type, bold=total, fill=fill, align=RIGHT_ALIGN)
            r += 1
        labels = list(c.by_industry["label"])
        _page(ws, ncols, body - 1, [_name_width(labels, cap=34), *[12] * len(columns)], freeze=f"B{body}")

    # 市县×行业
    def pivot(self) -> None:
        rules, c = self.rules, self.c
        form = rules.forms[WARMTH]
        section = form.section(VISITS)
        ws = self.sheet(SHEETS[3])
        fields = list(dict.fromkeys(str(f) for f in c.pivot.columns.get_level_values(0)))
        rows = list(dict.fromkeys(str(r) for r in c.pivot.columns.get_level_values(1)))
        labels = {r.code: r.label for r in section.rows}
        totals = {r.code for r in section.rows if r.total}
        ncols = len(rows) + 1
        _heading(ws, ncols, _summary_title(form, "(分单位分行业)"), self.info, money=True)
        body = _headers(ws, TITLE_ROWS + 1, [["单位"], *[[labels[r]] for r in rows]])
        ws.heights[body - 1] = 58
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
            for (unit, name), values in zip(
                c.pivot.index, c.pivot[code].itertuples(index=False), strict=True
            ):
                total = unit == ""
                fill = TOTAL_FILL if total else None
                _text(ws, r, 1, name, bold=total, fill=fill, align=CENTER_ALIGN if total else LEFT_ALIGN)
                ws.place_row(r, 2, [_written(value, f.type) for value in values], formats[total])
                r += 1
        names = [name for _, name in c.pivot.index]
        _page(ws, ncols, body - 1, [_name_width(names), *[10] * len(rows)], freeze=f"B{body}")

    # 帮扶中心汇总
    def centers(self) -> None:
        rules, c = self.rules, self.c
        if CENTER not in rules.forms or c.centers.empty:
            ws = self.sheet(SHEETS[4])
            _heading(ws, 4, "帮扶中心工作统计汇总表", self.info, money=False)
            ws.put(3, 1, "本级没有应报帮扶中心统计表的单位。", align=INFO_ALIGN, border=False)
            _page(ws, 4, TITLE_ROWS, [30, 12, 12, 12])
            return
        form = rules.forms[CENTER]
        totals = {(s.code, s.total_row.code) for s in form.sections if s.total_row is not None}
        self._unit_table(SHEETS[4], CENTER, c.centers, c.columns["centers"], width=9,
                         bold=lambda col: col.key[:2] in totals)

    def _unit_table(self, name: str, form_code: str, frame: pd.DataFrame, columns: Sequence[consolidate.Column],
                    width: float, bold: Callable[[consolidate.Column], bool] = lambda col: False) -> None:
        """A row per unit (subtotals and the total in bold on their fills), a column per field under its
        section, a 备注 column last; printed a section per page. `bold`: columns always in bold (合计)."""
        ws = self.sheet(name)
        ncols = len(columns) + 2
        breaks = _section_starts(columns)
        _heading(ws, ncols, _summary_title(self.rules.forms[form_code]), self.info, money=True, breaks=breaks)
        paths: list[list[str]] = [["单位"]]
        for col in columns:
            f = _field_of(self.rules, form_code, col.key)
            paths.append([col.section_title, *([col.group] if col.group else []), f.header])
        paths.append(["备注"])
        body = _headers(ws, TITLE_ROWS + 1, paths)
        r = body
        looks: dict[tuple[str, bool], list[Any]] = {}  # (level, summed) -> each column's format
        fields = [(col.name, col.type) for col in columns]
        for row in frame.to_dict("records"):
            level = row["level"]
            fill = TOTAL_FILL if level == TOTAL_ROW else SUBTOTAL_FILL if level == SUBTOTAL_ROW else None
            summed = level != UNIT_ROW
            _text(ws, r, 1, row["name"], bold=summed, fill=fill, align=CENTER_ALIGN if summed else LEFT_ALIGN)
            formats = looks.get((level, summed))
            if formats is None:
                formats = looks[(level, summed)] = [
                    ws.look(bold=summed or bold(col), fill=fill, align=RIGHT_ALIGN,
                            number_format=NUMBER_FORMATS.get(col.type))
                    for col in columns
                ]
            ws.place_row(r, 2, [_written(row[name], kind) for name, kind in fields], formats)
            note = "" if summed else self.note(row["code"], form_code)
            _text(ws, r, ncols, note, fill=fill, align=LEFT_ALIGN, size=9)
            r += 1
        widths = [_name_width(list(frame["name"])), *[width] * len(columns), 16]
        _page(ws, ncols, body - 1, widths, freeze=f"B{body}", breaks=breaks)

    # 报送情况
    def status_sheet(self) -> None:
        rules = self.rules
        ws = self.sheet(SHEETS[5])
        heads = ["单位", "单位代码", "类别", "报送事项", "状态", "收到时间", "版本数", "汇总采用版本", "备注"]
        ncols = len(heads)
        deadline = _when(rules, self.status.deadline)
        _heading(
            ws, ncols, f"{rules.campaign.title}报送情况", f"{self.info}    报送截止:{deadline}", money=False
        )
        body = _headers(ws, TITLE_ROWS + 1, [[h] for h in heads])
        ws.heights[body - 1] = 22
        r = body
        for s in self.status.rows:
            note = ";".join(x for x in (s.note, s.mail_problem) if x)
            cells: list[Any] = [
                s.unit_name,
                s.unit,
                s.kind,
                s.item_label,
                s.state.label,
                s.received,
                s.versions,
                f"第{s.version_used}版" if s.version_used else "",
                note,
            ]
            self._status_row(ws, r, cells, STATE_FILLS.get(s.state))
            r += 1
        for v in self.status.stray:
            try:
                unit = self.units[v.unit]
                name, kind, where = unit.name, unit.kind, unit.reports_to
            except KeyError:
                name, kind, where = v.unit, "", ""
            label = rules.items[v.item].label if v.item in rules.items else v.item
            upper = self.units[where].name if where and where != PROVINCE else "上级单位"
            cells = [
                name,
                v.unit,
                kind,
                label,
                "报错地方",
                v.received,
                1,
                "",
                f"{v.file}:应报送{upper},不计入本级汇总",
            ]
            self._status_row(ws, r, cells, STATE_FILLS[FAILED])
            r += 1
        names = [s.unit_name for s in self.status.rows]
        _page(ws, ncols, body - 1, [_name_width(names), 10, 9, 16, 9, 17, 7, 12, 46], freeze=f"B{body}")

    def _status_row(self, ws: _Sheet, r: int, cells: list[Any], fill: PatternFill | None) -> None:
        for j, value in enumerate(cells, start=1):
            align = LEFT_ALIGN if j in (1, 9) else CENTER_ALIGN
            fill_j = fill if j == 5 else None
            if isinstance(value, dt.datetime):
                fmt = ws.look(align=align, fill=fill_j, number_format=DATETIME_FORMAT)
                ws.place(r, j, _naive(self.rules, value), fmt)
            elif isinstance(value, int):
                ws.place(r, j, value, ws.look(align=align, fill=fill_j, number_format="0"))
            else:
                ws.text(r, j, value, ws.look(align=align, fill=fill_j))

    # 校验问题
    def problems_sheet(self) -> None:
        ws = self.sheet(SHEETS[6])
        heads = ["单位", "文件", "规则", "严重程度", "工作表", "单元格", "问题说明"]
        ncols = len(heads)
        _heading(ws, ncols, "各单位报表校验问题", self.info, money=False)
        body = _headers(ws, TITLE_ROWS + 1, [[h] for h in heads])
        ws.heights[body - 1] = 22
        r = body
        for p in self.problems:
            f = p.finding
            cells = [
                p.unit_name,
                p.file,
                f.rule,
                SEVERITY_WORDS.get(f.severity, f.severity),
                f.sheet,
                f.cell,
                f.message,
            ]
            for j, value in enumerate(cells, start=1):
                _text(
                    ws,
                    r,
                    j,
                    value,
                    align=TOP_LEFT if j in (1, 2, 7) else CENTER_ALIGN,
                    size=9,
                    color="C00000" if j == 4 and f.is_error else None,
                )
            r += 1
        if not self.problems:
            ws.merge(r, 1, r, ncols)
            ws.put(r, 1, "没有未解决的校验问题。", align=LEFT_ALIGN)
        names = [p.unit_name for p in self.problems] or ["单位"]
        _page(ws, ncols, body - 1, [_name_width(names, cap=30), 30, 11, 9, 14, 8, 64], freeze=f"A{body}")

    # 数据来源
    def sources_sheet(self) -> None:
        rules, c = self.rules, self.c
        ws = self.sheet(SHEETS[7])
        heads = ["单位", "单位代码", "报表", "文件名", "SHA-256", "收到时间", "版本", "是否采用"]
        ncols = len(heads)
        _heading(ws, ncols, "汇总数据来源", self.info, money=False)
        body = _headers(ws, TITLE_ROWS + 1, [[h] for h in heads])
        ws.heights[body - 1] = 22
        position = {u.code: i for i, u in enumerate(rules.units)}
        form_order = {code: i for i, code in enumerate(rules.forms)}
        used = {v.sha256 for v in c.used}
        in_level = {u.code for u in rules.children(c.parent)}
        aligns = [LEFT_ALIGN if j in (1, 3, 4, 5, 8) else CENTER_ALIGN for j in range(1, ncols + 1)]
        texts = [ws.look(align=align, size=9) for align in aligns]
        r = body
        for v in sorted(
            self.sources,
            key=lambda v: (
                position.get(v.unit, len(position)),
                v.unit,
                form_order.get(v.form or "", len(form_order)),
                v.version,
                v.received,
                v.sha256,
            ),
        ):
            try:
                name = self.units[v.unit].name
            except KeyError:
                name = v.unit
            form = rules.forms.get(v.form or "")
            if v.sha256 in used:
                verdict = "采用"
            elif v.unit not in in_level:
                verdict = "不采用:不是本级应报单位"
            elif v.verdict != Verdict.ACCEPTED:
                verdict = "不采用:未通过校验"
            else:
                verdict = "不采用:已有更新版本"
            cells: list[Any] = [
                name,
                v.unit,
                f"{form.attachment} {form.title}" if form else v.item,
                v.file,
                v.sha256,
                v.received,
                f"第{v.version}版",
                verdict,
            ]
            for j, (value, align, fmt) in enumerate(zip(cells, aligns, texts, strict=True), start=1):
                if isinstance(value, dt.datetime):
                    when = ws.look(number_format=DATETIME_FORMAT, align=align, size=9)
                    ws.place(r, j, _naive(rules, value), when)
                else:
                    ws.text(r, j, value, fmt)
            r += 1
        names = [self.units[v.unit].name for v in c.used] or ["单位"]
        _page(ws, ncols, body - 1, [_name_width(names, cap=30), 9, 30, 40, 36, 16, 7, 20], freeze=f"A{body}")


def workbook(
    rules: Rules,
    c: Consolidation,
    status: Status,
    findings_by_unit: Mapping[str, Sequence[FindingEntry]],
    sources: Sequence[Submission],
    *,
    as_of: dt.datetime,
    final: bool,
    edition: int,
) -> bytes:
    """The consolidated workbook (.xlsx bytes, reproducible) with the sheets of `SHEETS`, in that order.

    `findings_by_unit` holds each unit's open findings, each alone or as (file name, finding); `sources`
    are the versions to list under 数据来源 (those consolidated are marked 采用).
    """
    problems = _problems(rules, c, findings_by_unit)
    with _collector_paused():
        return _Book(rules, c, status, problems, sources, as_of, final, edition).build()


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


# --- charts (inline SVG) ---------------------------------------------------------------------------------

CHART_WIDTH = 720
VALUE_WIDTH = 128  # room right of the longest bar for its figures
BAR_HEIGHT = 15
ROW_HEIGHT = 21
PALETTE = ("#b22222", "#d9822b", "#e6b422", "#3a7d44", "#2f5f8a")
BAR_COLOR = "#b22222"
GRID_COLOR = "#d9d9d9"
CHAR_PX = 6.2  # half the width of a 12px CJK character: `_width` counts a CJK character as 2


def _nice_step(top: float) -> float:
    raw = top / 5
    magnitude = 10 ** math.floor(math.log10(raw))
    return next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)


def _num(x: float) -> str:
    return f"{x:.1f}".removesuffix(".0")


@dataclass(frozen=True)
class _Frame:
    """The drawing area of a horizontal bar chart: labels left, bars, figures right."""

    left: float  # x where the bars start
    plot: float  # width of the bar area
    top: float  # y of the first row
    rows: int
    scale: float  # the value at the right end of the bar area
    step: float  # between grid lines

    @property
    def bottom(self) -> float:
        return self.top + ROW_HEIGHT * self.rows

    def x(self, value: float) -> float:
        return self.left + self.plot * value / self.scale

    def grid(self) -> list[str]:
        """Vertical grid lines at round values, labelled under the chart."""
        step = self.step
        parts = []
        i = 0
        while step * i <= self.scale + 1e-9:
            x, value = self.x(step * i), step * i
            text = _num(value) if step < 1 else str(int(round(value)))
            parts.append(
                f'<line x1="{_num(x)}" y1="{_num(self.top - 4)}" x2="{_num(x)}" y2="{_num(self.bottom)}" '
                f'stroke="{GRID_COLOR}" stroke-width="{1.2 if i == 0 else 1}"/>'
            )
            parts.append(
                f'<text x="{_num(x)}" y="{_num(self.bottom + 13)}" text-anchor="middle" class="tick">{text}</text>'
            )
            i += 1
        return parts

    def label(self, i: int, text: str) -> str:
        return (
            f'<text x="{_num(self.left - 8)}" y="{_num(self.mid(i))}" text-anchor="end" class="label">'
            f"{escape(text)}</text>"
        )

    def mid(self, i: int) -> float:
        return self.top + ROW_HEIGHT * i + ROW_HEIGHT / 2 + 4

    def bar(self, i: int, start: float, value: float, color: str) -> str:
        x0, x1 = self.x(start), self.x(start + value)
        y = self.top + ROW_HEIGHT * i + (ROW_HEIGHT - BAR_HEIGHT) / 2
        return f'<rect x="{_num(x0)}" y="{_num(y)}" width="{_num(x1 - x0)}" height="{BAR_HEIGHT}" fill="{color}"/>'

    def figure(self, i: int, end: float, text: str, css: str = "value") -> str:
        return (
            f'<text x="{_num(self.x(end) + 6)}" y="{_num(self.mid(i))}" class="{css}">{escape(text)}</text>'
        )


def _chart_frame(labels: Sequence[str], top: float, rows: int, largest: float) -> _Frame:
    left = min(260.0, max(60.0, CHAR_PX * max([_width(t) for t in labels] or [4]) + 16))
    plot = CHART_WIDTH - left - VALUE_WIDTH
    if largest <= 0:
        return _Frame(left, plot, top, rows, 5.0, 1.0)
    step = _nice_step(largest)
    return _Frame(left, plot, top, rows, step * math.ceil(largest / step - 1e-9), step)


def _svg(title: str, height: float, parts: list[str]) -> Markup:
    head = (
        f'<svg class="chart" viewBox="0 0 {CHART_WIDTH} {_num(height)}" width="100%" role="img" '
        f'aria-label="{escape(title)}"><title>{escape(title)}</title>'
    )
    return Markup(head + "".join(parts) + "</svg>")


def bar_chart(title: str, rows: Sequence[tuple[str, float | None, str]]) -> Markup:
    """Horizontal bars: (label, value or None when there is no figure, the figure as text)."""
    frame = _chart_frame(
        [r[0] for r in rows], 8, len(rows), max([v for _, v, _ in rows if v is not None] or [0.0])
    )
    parts = frame.grid()
    for i, (label, value, text) in enumerate(rows):
        parts.append(frame.label(i, label))
        if value is None:
            parts.append(frame.figure(i, 0, text, "missing"))
            continue
        parts.append(frame.bar(i, 0, value, BAR_COLOR))
        parts.append(frame.figure(i, value, text))
    return _svg(title, frame.bottom + 20, parts)


def stacked_chart(
    title: str, series: Sequence[str], rows: Sequence[tuple[str, Sequence[float] | None, str]]
) -> Markup:
    """Horizontal stacked bars, one colour per series, with the legend above."""
    largest = max([sum(v) for _, v, _ in rows if v is not None] or [0.0])
    frame = _chart_frame([r[0] for r in rows], 34, len(rows), largest)
    parts = []
    x = frame.left
    for k, name in enumerate(series):
        color = PALETTE[k % len(PALETTE)]
        parts.append(f'<rect x="{_num(x)}" y="8" width="12" height="12" fill="{color}"/>')
        parts.append(f'<text x="{_num(x + 16)}" y="18.5" class="legend">{escape(name)}</text>')
        x += 16 + CHAR_PX * _width(name) + 14
    parts += frame.grid()
    for i, (label, values, text) in enumerate(rows):
        parts.append(frame.label(i, label))
        if values is None:
            parts.append(frame.figure(i, 0, text, "missing"))
            continue
        start = 0.0
        for k, value in enumerate(values):
            if value > 0:
                parts.append(frame.bar(i, start, value, PALETTE[k % len(PALETTE)]))
            start += value
        parts.append(frame.figure(i, start, text))
    return _svg(title, frame.bottom + 20, parts)


def _charts(rules: Rules, c: Consolidation) -> list[dict[str, Any]]:
    units = c.by_unit[c.by_unit["level"] == "unit"]
    form = rules.forms[WARMTH]
    visits = form.section(VISITS)
    by_unit = [
        (
            _short(rules, r["code"]),
            None if pd.isna(r["households"]) else float(r["households"]),
            "未汇总"
            if pd.isna(r["households"])
            else f"{_count_text(r['households'])} 户 · {_money_text(r['amount_total'])} 万元",
        )
        for r in units.to_dict("records")
    ]
    detail = c.by_industry[c.by_industry["code"] != (visits.total_row.code if visits.total_row else None)]
    by_industry = [
        (
            r["label"],
            float(r["households"]),
            f"{_count_text(r['households'])} 户 · {_money_text(r['amount_total'])} 万元",
        )
        for r in detail.to_dict("records")
    ]
    funds = form.section("funds")
    names = [_field_label(funds.field(code).caption) for code in FUND_SOURCES]
    stacked: list[tuple[str, list[float] | None, str]] = []
    for row in units.to_dict("records"):
        if pd.isna(row["fund_total"]):
            stacked.append((_short(rules, row["code"]), None, "未汇总"))
        else:
            stacked.append(
                (
                    _short(rules, row["code"]),
                    [float(row[code]) for code in FUND_SOURCES],
                    f"{_money_text(row['fund_total'])} 万元",
                )
            )
    return [
        dict(
            title="各单位慰问困难职工户数",
            note="条形为户数;右侧为户数和慰问金额。未汇总:未报送或未通过校验。",
            svg=bar_chart("各单位慰问困难职工户数", by_unit),
        ),
        dict(
            title="分行业慰问困难职工户数",
            note="各单位表一分行业数据之和。",
            svg=bar_chart("分行业慰问困难职工户数", by_industry),
        ),
        dict(
            title="各单位送温暖资金来源(万元)",
            note="按表二五项资金来源堆叠;右侧为资金合计。",
            svg=stacked_chart("各单位送温暖资金来源", names, stacked),
        ),
    ]


# --- HTML and the written summary ----------------------------------------------------------------------


def _autoescape(name: str | None) -> bool:
    return name is not None and name.removesuffix(".j2").endswith((".html", ".htm", ".svg", ".xml"))


@functools.cache
def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=_autoescape,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def _context(
    rules: Rules, c: Consolidation, status: Status, as_of: dt.datetime, final: bool, edition: int
) -> dict[str, Any]:
    camp = rules.campaign
    h = consolidate.headline(c)
    units = {col.name: col for col in c.columns["by_unit"]}
    cards = [
        (name, _money_text(h[name]) if units[column].type == "money" else _count_text(h[name]), unit)
        for name, column, unit in consolidate.HEADLINE[:8]
        if name in h
    ]
    missing = _owing(status, (MISSING, OVERDUE))
    failed = [r for r in status.rows if r.state == FAILED]
    forms = [
        (rules.item_for_form(f).label, *c.coverage[f])
        for f in (WARMTH, CENTER)
        if f in c.coverage and c.coverage[f][1]
    ]
    return dict(
        campaign=camp,
        issuer=f"{camp.issuer}{camp.department}",
        scope=_level_name(rules, c),
        stamp=stamp(final, edition),
        final=final,
        as_of=_when(rules, as_of),
        deadline=_when(rules, camp.deadline),
        past_deadline=status.past_deadline,
        units_reported=c.units_reported,
        units_expected=c.units_expected,
        units_done=status.units_done(),
        forms=forms,
        headline=headline_sentences(rules, c),
        funds=funds_sentence(rules, c),
        centers=centers_sentence(rules, c),
        cards=cards,
        missing=missing,
        failed=failed,
        follow_up=_follow_up(rules, status),
        caveat=_caveat(rules, c),
        stray=[dict(file=v.file, name=_unit_name(rules, v.unit)) for v in status.stray],
        sha=rules.sha256,
    )


def _caveat(rules: Rules, c: Consolidation) -> str:
    """Which figures above are short of units, or "" when every owed form is in."""
    parts = []
    for form in (WARMTH, CENTER):
        done, owed = c.coverage.get(form, (0, 0))
        if done < owed:
            label = rules.item_for_form(form).label
            parts.append(
                f"{label}数据为 {done} 个单位的汇总,尚有 {owed - done} 个单位未报送或未通过校验、未纳入"
            )
    return ";".join(parts) + "。" if parts else ""


def _unit_name(rules: Rules, code: str) -> str:
    try:
        return rules.unit(code).name
    except KeyError:
        return code


# (by_unit column, short header) of the HTML's summary table: what fits an A4 page.
TABLE_COLUMNS = (
    ("households", "困难职工"),
    ("migrant_workers", "困难农民工"),
    ("model_workers", "劳动模范"),
    ("frontline_workers", "一线职工"),
    ("amount_total", "慰问金额"),
    ("fund_total", "筹集资金"),
)


def _table(rules: Rules, c: Consolidation) -> dict[str, Any]:
    """A few columns of 送温暖汇总, with its 小计 and 合计 rows."""
    known = {col.name: col for col in c.columns["by_unit"]}
    columns = [(known[name], short) for name, short in TABLE_COLUMNS if name in known]
    rows = []
    for row in c.by_unit.to_dict("records"):
        rows.append(
            dict(
                name=row["name"],
                level=row["level"],
                cells=[_figure(row[col.name], col.type) for col, _ in columns],
                missing=row["level"] == "unit" and not row["reported"],
            )
        )
    return dict(headers=[(short, _unit_of(col)) for col, short in columns], rows=rows)


def _unit_of(col: consolidate.Column) -> str:
    return re.sub(r"^[((]|[))]$", "", col.caption[len(_field_label(col.caption)) :])


def html(
    rules: Rules,
    c: Consolidation,
    status: Status,
    findings_by_unit: Mapping[str, Sequence[FindingEntry]],
    *,
    as_of: dt.datetime,
    final: bool,
    edition: int,
) -> str:
    """A self-contained HTML report (inline CSS and SVG, nothing fetched), printable on A4."""
    problems = _problems(rules, c, findings_by_unit)
    grouped: list[dict[str, Any]] = []  # unit → file → findings
    for p in problems:
        if not grouped or grouped[-1]["unit"] != p.unit:
            grouped.append(dict(unit=p.unit, name=p.unit_name, files=[]))
        files = grouped[-1]["files"]
        if not files or files[-1]["file"] != p.file:
            files.append(dict(file=p.file, entries=[]))
        f = p.finding
        files[-1]["entries"].append(
            dict(
                error=f.is_error,
                severity=SEVERITY_WORDS.get(f.severity, f.severity),
                rule=f.rule,
                where=f"{f.sheet}!{f.cell}" if f.cell else (f.sheet or "整个文件"),
                message=f.message,
            )
        )
    context = _context(rules, c, status, as_of, final, edition)
    context.update(
        charts=_charts(rules, c),
        table=_table(rules, c),
        problems=grouped,
        errors=sum(p.finding.is_error for p in problems),
        warnings=sum(not p.finding.is_error for p in problems),
    )
    return _environment().get_template("report.html.j2").render(**context)


def summary_markdown(
    rules: Rules, c: Consolidation, status: Status, *, as_of: dt.datetime, final: bool
) -> str:
    """A draft of the written report to the federation above, figures filled in, for staff to edit."""
    context = _context(rules, c, status, as_of, final, edition=0)
    context["stamp"] = "终稿" if final else "草稿"
    context["year"] = _local(rules, as_of).year
    context["province"] = c.parent == PROVINCE
    context["recipient"] = "中华全国总工会" if c.parent == PROVINCE else rules.campaign.issuer
    context["author"] = rules.campaign.issuer if c.parent == PROVINCE else rules.unit(c.parent).name
    context["date_cn"] = f"{_local(rules, as_of):%Y年%m月%d日}".replace("年0", "年").replace("月0", "月")
    return _environment().get_template("summary.md.j2").render(**context)
