"""The consolidated workbook's sheets as xlsxwriter writes them, through its public API: the looks of
cells (xlsxwriter formats made from the templates' openpyxl style objects), a sheet that holds its cells
until it is whole, and the parts every sheet shares (title, header rows, page setup, fitted row heights).
"""

from __future__ import annotations

import datetime as dt
import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE
from openpyxl.styles import Alignment, PatternFill
from xlsxwriter.worksheet import Worksheet

from pipeline.consolidation import consolidate
from pipeline.model import column_letters
from pipeline.render import template
from pipeline.render.words import width

FONT = template.FONT
HEADER_FILL = template.HEADER_FILL
TOTAL_FILL = template.TOTAL_FILL
SUBTOTAL_FILL = PatternFill("solid", fgColor="F2F2F2")
CENTER_ALIGN = template.CENTER
LEFT_ALIGN = template.LEFT
RIGHT_ALIGN = template.RIGHT
TOP_LEFT = Alignment(horizontal="left", vertical="top", wrap_text=True)
INFO_ALIGN = Alignment(horizontal="left", vertical="center")
WRAPPED_INFO = Alignment(horizontal="left", vertical="center", wrap_text=True)  # a scope line, wrapped
# Thousands separators: a national total in 万元 or persons runs to six or seven digits.
NUMBER_FORMATS = {"count": "#,##0", "money": "#,##0.00"}
DATETIME_FORMAT = "yyyy-mm-dd hh:mm"
MONEY_UNIT = "金额单位:万元"
INFO_GAP = "    "  # between the parts of a sheet's scope line
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
MAX_TEXT = 32767
TITLE_ROWS = 2  # the title, then the scope / as-of / 金额单位 line
# openpyxl's vertical alignments in xlsxwriter's words: the looks are given in the templates' style objects.
_VERTICAL = {"center": "vcenter", "top": "top", "bottom": "bottom"}


@dataclass(frozen=True, slots=True)
class Formula:
    """A total as a formula (=SUM(…)) with the figure it gives now: a figure typed in later updates it, and a
    program that does not calculate (a viewer, pandas) still reads the figure."""

    text: str
    value: int | float | None


Value = str | int | float | dt.datetime | Formula | None
# A cell's look but its quote prefix: bold, size, alignment, fill, border, font color, number format.
Look = tuple[bool, int, Alignment, PatternFill | None, bool, str | None, str | None]


class Looks:
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


class Sheet:
    """One worksheet's cells, merges and row heights, 1-based as in Excel's A1, kept until the sheet is whole
    (the row heights are fitted to the texts, which needs every column's width) and then handed to
    xlsxwriter, which is 0-based, one `write_*` call a cell."""

    def __init__(self, ws: Worksheet, looks: Looks):
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
        self, row: int, first_col: int, values: Sequence[int | float | Formula | None], formats: Sequence[Any]
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
        """The sheet's merges, row heights and cells, written to xlsxwriter."""
        ws = self.ws
        for r0, c0, r1, c1 in self.merges:
            # merge_range pads the range with blanks in the first cell's look; the cells written below win.
            top = self.cells.get(r0, {}).get(c0)
            ws.merge_range(r0 - 1, c0 - 1, r1 - 1, c1 - 1, None, top[1] if top else None)
        for r, height in self.heights.items():
            # In pixels, 4/3 to a point, so that the file stores the height as given: set_row would round
            # it to whole pixels (32 to 32.25).
            ws.set_row_pixels(r - 1, height * 4 / 3)
        write_string, write_number, write_blank = ws.write_string, ws.write_number, ws.write_blank
        for r, cells in self.cells.items():
            for c, (value, fmt) in cells.items():
                kind = type(value)
                if kind is float or kind is int:  # most cells, first
                    write_number(r - 1, c - 1, value, fmt)
                elif value is None:
                    write_blank(r - 1, c - 1, None, fmt)
                elif isinstance(value, str):
                    write_string(r - 1, c - 1, value, fmt)
                elif isinstance(value, dt.datetime):
                    ws.write_datetime(r - 1, c - 1, value, fmt)
                elif isinstance(value, Formula):
                    cached = "" if value.value is None else value.value
                    ws.write_formula(r - 1, c - 1, value.text, fmt, cached)
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


def put_text(ws: Sheet, row: int, col: int, value: Any, **look: Any) -> None:
    """Any value, written as its text."""
    ws.text(row, col, value, ws.look(**look))


def put_number(ws: Sheet, row: int, col: int, value: Any, ftype: str, **look: Any) -> None:
    ws.put(row, col, written(value, ftype), number_format=NUMBER_FORMATS.get(ftype), **look)


def written(value: Any, ftype: str) -> int | float | None:
    """A consolidated figure as written: a count as int, money as float, blank as None."""
    # pd.isna, spelled out: it costs more than the rest of the cell, and there are 200,000 at national scale
    if value is None or value is pd.NA or (isinstance(value, float) and value != value):
        return None
    return int(value) if ftype == "count" else float(value)


def heading(ws: Sheet, ncols: int, title: str, info: str, money: bool, breaks: Sequence[int] = ()) -> None:
    """Title, then the scope line with 金额单位 at its right.

    A sheet printed as several pages across (`breaks`, see `page`) gets the title over each page's own
    columns, (续) after the first, and column A (repeated on every page) stays clear of it.
    """
    if not breaks:
        _heading_span(ws, 1, ncols, title, info, money)
        return
    edges = [2, *breaks, ncols + 1]
    for k, (first, end) in enumerate(zip(edges, edges[1:], strict=False)):
        _heading_span(ws, first, end - 1, title if k == 0 else f"{title}(续)", info if k == 0 else "", money)


def _heading_span(ws: Sheet, first: int, last: int, title: str, info: str, money: bool) -> None:
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


def headers(ws: Sheet, top: int, paths: Sequence[Sequence[str]]) -> int:
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
TOP_MARGIN_IN, BOTTOM_MARGIN_IN = 0.6, 0.75
PRINTABLE_HEIGHT_PT = 595.3 - 72 * (TOP_MARGIN_IN + BOTTOM_MARGIN_IN)  # A4 landscape's short side
SPILL = 0.25  # a last page this full or less is a spill page worth saving
CHARACTER_PT = 10  # a width() unit (half a CJK character) at font size 10 takes about one column character
CHARACTER_PX = 7  # a column width counts characters of 7 px (Calibri 11), the unit `_scale` plans with


def page(
    ws: Sheet,
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
    _fit_heading(ws, widths, breaks)
    _fit_rows(ws, header_end + 1, widths)
    scale, pages = _no_spill(ws, header_end, _scale(widths, breaks))
    if breaks:
        sheet.set_print_scale(scale)
    else:  # the program fits the width itself, and the height to one page fewer when that saves a spill page
        sheet.fit_to_pages(1, pages)
    sheet.center_horizontally()
    sheet.set_margins(left=SIDE_MARGIN_IN, right=SIDE_MARGIN_IN, top=TOP_MARGIN_IN, bottom=BOTTOM_MARGIN_IN)
    sheet.set_header("", {"margin": 0.5})
    sheet.set_footer("&C第 &P 页,共 &N 页", {"margin": 0.3})
    sheet.print_area(0, 0, max(ws.max_row, header_end) - 1, ncols - 1)


def _pages_down(heights: Sequence[float], repeated: float, scale: int) -> tuple[int, float]:
    """Pages a column of rows takes at `scale` % with `repeated` points of title rows atop each page, and
    how full the last page is (0–1)."""
    room = PRINTABLE_HEIGHT_PT * 100 / scale - repeated
    pages, used = 1, 0.0
    for h in heights:
        if used + h > room and used:
            pages, used = pages + 1, 0.0
        used += h
    return pages, used / room


def _no_spill(ws: Sheet, header_end: int, scale: int) -> tuple[int, int]:
    """The print scale, lowered as far as a fifth if that saves a nearly empty last page (a table that runs
    a few rows over a page is printed a little smaller rather than on a page of its own), and the pages
    down it then takes (0: as many as it takes)."""
    heights = [ws.heights.get(r, 18) for r in range(header_end + 1, ws.max_row + 1)]
    repeated = sum(ws.heights.get(r, 18) for r in range(1, header_end + 1))
    pages, last = _pages_down(heights, repeated, scale)
    if pages == 1 or last > SPILL:
        return scale, 0
    for smaller in range(scale - 1, max(10, int(scale * 0.8)) - 1, -1):
        if _pages_down(heights, repeated, smaller)[0] < pages:
            return smaller, pages - 1
    return scale, 0


def _fit_heading(ws: Sheet, widths: Sequence[float], breaks: Sequence[int]) -> None:
    """The title and the scope line each on one line within the columns they stand over: a smaller title
    font, the scope line wrapped, rather than a title cut or spilling onto a second line."""
    first_page = widths[: (breaks[0] - 1 if breaks else len(widths))]
    room = sum(first_page) if not breaks else sum(first_page) - widths[0]
    titles = [(c, v, fmt) for c, (v, fmt) in sorted(ws.cells.get(1, {}).items()) if isinstance(v, str)]
    if titles:
        col, text, fmt = titles[0]
        bold, size, *rest = ws.looks.of[id(fmt)]
        need = width(text) * size / CHARACTER_PT
        if need > room:
            smaller = max(11, int(size * room / need))
            ws.cells[1][col] = (text, ws.looks.format((bold, smaller, *rest)))
    money = first_page[-1]  # 金额单位 stands in the first page's last column
    for col, (info, fmt) in list(ws.cells.get(2, {}).items()):
        if not isinstance(info, str) or info == MONEY_UNIT or not info:
            continue
        look = ws.looks.of[id(fmt)]
        span = room - (money if any(v[0] == MONEY_UNIT for v in ws.cells[2].values()) else 0)
        if width(info) * look[1] / CHARACTER_PT > span:
            lines = _packed(info.split(INFO_GAP), span * CHARACTER_PT / look[1])
            wrapped = (look[0], look[1], WRAPPED_INFO, *look[3:])
            ws.cells[2][col] = ("\n".join(lines), ws.looks.format(wrapped))
            ws.heights[2] = 14 * len(lines) + 6


def _packed(parts: Sequence[str], room: float) -> list[str]:
    """The parts of a scope line (汇总范围, 数据截至, the edition) as few lines as fit `room`, none cut."""
    lines: list[str] = []
    for part in parts:
        if lines and width(lines[-1] + INFO_GAP + part) <= room:
            lines[-1] += INFO_GAP + part
        else:
            lines.append(part)
    return lines


def _fit_rows(ws: Sheet, first: int, widths: Sequence[float]) -> None:
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
    return math.ceil(max(1, width(text)) / room)


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


def sum_formula(col: int, ranges: Sequence[tuple[int, int]], value: int | float | None) -> Formula:
    """=SUM over the rows `ranges` (first, last; 1-based, inclusive) of sheet column `col`."""
    letters = column_letters(col)
    parts = [f"{letters}{a}" if a == b else f"{letters}{a}:{letters}{b}" for a, b in ranges]
    return Formula(f"=SUM({','.join(parts)})", value)


def runs(rows: Sequence[int]) -> list[tuple[int, int]]:
    """Sorted row numbers as (first, last) runs of consecutive rows."""
    out: list[tuple[int, int]] = []
    for r in rows:
        if out and out[-1][1] == r - 1:
            out[-1] = (out[-1][0], r)
        else:
            out.append((r, r))
    return out


def section_starts(columns: Sequence[consolidate.Column], offset: int = 2) -> list[int]:
    """The sheet column where each section after the first begins."""
    return [
        j
        for j, (a, b) in enumerate(zip(columns, columns[1:], strict=False), start=offset + 1)
        if a.section_title != b.section_title
    ]


def name_width(names: Sequence[str], floor: int = 12, cap: int = 26) -> float:
    return min(cap, max([floor, *(width(n) + 2 for n in names)]))
