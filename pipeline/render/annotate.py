"""The annotated copy sent back to a unit: its own workbook with each finding's cell marked and explained.

Errors are filled red and warnings yellow, each with a comment; a first sheet 校验结果 lists every finding
with a link to its cell. An ordinary .xlsx is marked by editing its XML (xlsxpatch: a few ms, where
openpyxl's load and save took ~40); one with anything that edit does not handle goes through openpyxl, as
does every .xlsx before. A file openpyxl cannot open (.xls, .ods, .xlsb) is rebuilt from its values; a
file nothing can open gets the 校验结果 sheet alone. The copy keeps the hidden `_meta` sheet, so a unit
that corrects the red cells in it and sends it back is recognised as before.
"""

from __future__ import annotations

import datetime as dt
import functools
import io
import logging
import math
import re
import unicodedata
import warnings
import zipfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from openpyxl import Workbook, load_workbook
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE
from openpyxl.comments import Comment
from openpyxl.styles import Alignment, Border, Font, PatternFill, Side
from openpyxl.utils.cell import range_boundaries
from openpyxl.worksheet.hyperlink import Hyperlink
from openpyxl.worksheet.worksheet import Worksheet

from pipeline.campaign.config import Limits
from pipeline.model import F_LEVEL, Finding, cell_name, cell_position, column_letters, in_order
from pipeline.render import template, xlsxparts, xlsxpatch
from pipeline.submission import read
from pipeline.submission.read import FEEDBACK_SHEET

log = logging.getLogger(__name__)

SUMMARY_SHEET = FEEDBACK_SHEET  # read.py skips it when a corrected copy comes back
AUTHOR = "省总校验"
ERROR_FILL = PatternFill("solid", fgColor="FFFFC7CE")  # ARGB, opaque; openpyxl would make "FFC7CE" 00FFC7CE
# Amber under dark diagonal stripes: a pale yellow alone would be the template's input fill (FFF2CC) on screen
# and vanish in grey print; the stripes show in both.
WARNING_COLOR = "FFD966"
WARNING_FILL = PatternFill("lightUp", fgColor="FFBF8F00", bgColor="FF" + WARNING_COLOR)
HEADER_FILL = PatternFill("solid", fgColor="FFDDEBF7")
OUR_COLORS = {"FFC7CE", "FFEB9C", WARNING_COLOR}  # RGB without alpha, to recognise an earlier round's marks
COLUMNS = (
    ("序号", 6),
    ("类别", 7),
    ("工作表", 16),
    ("单元格", 9),
    ("填写内容", 22),
    ("问题说明", 72),
)
HEADER_ROW = 5
OWN_NOTE = "—— 原批注 ——"  # separates our messages from a note the unit had put on the same cell
MAX_TEXT = 32767  # what one Excel cell holds
MAX_ROW, MAX_COL = 1_048_576, 16_384

CONVERTED = {"xls": ".xls", "ods": ".ods", "xlsb": ".xlsb"}
_THIN = Side(style="thin", color="808080")
_BOX = Border(left=_THIN, right=_THIN, top=_THIN, bottom=_THIN)


def annotated_workbook(
    data: bytes,
    file_name: str,
    findings: Sequence[Finding],
    *,
    unit_name: str,
    title: str,
    limits: Limits = read.DEFAULT_LIMITS,
) -> bytes:
    """The unit's workbook (`data`, as sent) as reproducible .xlsx bytes, marked with `findings`.

    Never raises for a strange workbook: whatever cannot be marked is still listed on 校验结果.
    """
    kind = _kind(data, limits)
    if kind == "xlsx":
        patched = _patched(data, file_name, findings, unit_name, title)
        if patched is not None:
            return patched
    attempts: list[tuple[Callable[[], _Book], str]] = []
    if kind == "xlsx":
        attempts.append((lambda: _opened(data), ""))
        attempts.append(
            (lambda: _rebuilt(data), "原文件无法直接标注,此为按原文件数值转换后的副本(原有格式和公式未保留)")
        )
    elif kind in CONVERTED:
        attempts.append(
            (
                lambda: _rebuilt(data),
                f"原文件为 {CONVERTED[kind]} 格式,此为转换后的副本(只保留了数值,原有格式和公式未保留)",
            )
        )
    for load, note in attempts:
        try:
            book = load()
            book.notes = [note] if note else []
            return _finish(book, file_name, findings, unit_name, title)
        except MemoryError:
            raise  # the worker's limit: no other attempt will fit either (the caller lists the findings)
        except Exception:
            # openpyxl and calamine raise all kinds of things on odd files; the next attempt may still work.
            log.warning("annotating %s failed", file_name, exc_info=True)
    return findings_only(file_name, findings, unit_name=unit_name, title=title)


def findings_only(file_name: str, findings: Sequence[Finding], *, unit_name: str, title: str) -> bytes:
    """A workbook with only 校验结果, for a file that cannot be opened to be marked."""
    empty = Workbook()
    empty.remove(empty.active)
    book = _Book(empty, notes=["原文件无法打开,无法在原表上标注;以下列出全部校验结果"])
    return _finish(book, file_name, findings, unit_name, title, mark=False)


@dataclass
class _Book:
    wb: Workbook
    sheets: dict[str, str] = field(default_factory=dict)  # sheet name as the reader saw it -> title here
    cached: dict[str, dict[str, read.Formula]] = field(
        default_factory=dict
    )  # title -> A1 -> formula as saved
    notes: list[str] = field(default_factory=list)


def _kind(data: bytes, limits: Limits) -> str | None:
    """The kind of `data`: xlsx when openpyxl may open it, a CONVERTED key when only calamine can, None when
    nothing should try (not a spreadsheet, or beyond the reader's size limits)."""
    if len(data) > limits.max_bytes:
        return None
    if data.startswith(b"\xd0\xcf\x11\xe0"):
        return "xls"
    if not data.startswith(b"PK"):
        return None
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            infos = zf.infolist()
            names = {i.filename for i in infos}
            if sum(i.file_size for i in infos) > limits.max_unzipped:
                return None
            if "xl/workbook.xml" in names:
                return "xlsx"
            if "xl/workbook.bin" in names:
                return "xlsb"
            return "ods" if "content.xml" in names else None
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        return None


# --- the unit's own workbook, its XML edited ----------------------------------------------------------------


def _patched(
    data: bytes, file_name: str, findings: Sequence[Finding], unit_name: str, title: str
) -> bytes | None:
    """The annotated copy made by editing the workbook's XML, or None when the workbook has something only
    the openpyxl path below handles. Besides what xlsxpatch refuses (listed in its docstring), that is:

    * a 校验结果 sheet: a copy of ours sent back, whose last-round marks openpyxl clears;
    * a formula that is not `_harmless`: openpyxl's path keeps it as text only.
    """
    try:
        package = xlsxpatch.opened(data)
        if SUMMARY_SHEET in package.sheets or _our_comments(package):
            raise xlsxpatch.Unsupported("marks or a 校验结果 sheet from an earlier round")
        if not all(_harmless(formula) for formula in package.formulas()):
            raise xlsxpatch.Unsupported("a formula that is not a form's own")
        sheets = {name: name for name in package.sheets}
        where = _places(findings, sheets, lambda sheet, address: _anchored(package.merged(sheet), address))
        marks = [
            xlsxparts.Mark(sheet, address, _fill(found), *_note_box("\n".join(_messages(found))))
            for (sheet, address), found in _grouped(where).items()
        ]
        summary = _summary([], sheets, file_name, findings, where, unit_name, title)
        return xlsxpatch.annotated(package, marks, summary, author=AUTHOR)
    except xlsxpatch.Unsupported as why:
        log.info("annotating %s with openpyxl: %s", file_name, why)
    except MemoryError:
        raise  # the worker's limit: openpyxl would need more still
    except Exception:
        log.warning("editing %s failed; annotating it with openpyxl", file_name, exc_info=True)
    return None


def _our_comments(package: xlsxpatch.Package) -> bool:
    """Whether a comment of an earlier round is left (its 校验结果 deleted): openpyxl's path clears it."""
    return any(
        name.startswith("xl/comments") and f"<author>{AUTHOR}</author>" in package.text(name)
        for name in package.parts
    )


# --- the unit's own workbook, through openpyxl ---------------------------------------------------------------


def _opened(data: bytes) -> _Book:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "extension not supported" and the like: nothing the unit can act on
        wb = load_workbook(io.BytesIO(data), keep_vba=False)  # an .xlsm's macros are never carried along
    wb.template = False
    # openpyxl writes formulas without their results; they are put back on saving (xlsxpatch.saved), so
    # that totals show in viewers that do not recalculate and a re-check of this copy reads the same values.
    saved = read.formula_results(data, wb.sheetnames)
    cached: dict[str, dict[str, read.Formula]] = {}
    for ws in wb.worksheets:
        for cell in _cells(ws):
            if cell.data_type == "f" and not _harmless(cell.value):
                _text(
                    cell, cell.value if isinstance(cell.value, str) else str(getattr(cell.value, "text", ""))
                )
                continue
            got = saved.get(ws.title, {}).get(cell.coordinate)
            if (
                cell.data_type == "f"
                and got is not None
                and got.value
                and got.type in ("", "n", "b", "e", "str")
            ):
                cached.setdefault(ws.title, {})[cell.coordinate] = got
    _clear_previous_round(wb)
    # Each sheet keeps the protection it came with: input cells are unlocked, 合计 formulas stay locked.
    wb.security = None  # a locked structure would keep them from deleting 校验结果
    return _Book(wb, {ws.title: ws.title for ws in wb.worksheets}, cached)


# The functions a form's own formulas use (totals and the like); any other formula a unit sends, such as
# =HYPERLINK(…), =WEBSERVICE(…) or a DDE/external reference, is kept in our copy as text only, never as a
# formula that would run when staff or the unit open it.
SAFE_FUNCTIONS = frozenset(
    {
        "SUM",
        "SUMIF",
        "SUMIFS",
        "SUMPRODUCT",
        "ROUND",
        "ROUNDUP",
        "ROUNDDOWN",
        "INT",
        "ABS",
        "IF",
        "IFERROR",
        "MAX",
        "MIN",
        "AVERAGE",
        "COUNT",
        "COUNTA",
        "COUNTIF",
        "COUNTIFS",
        "AND",
        "OR",
        "NOT",
        "DATE",
        "N",
        "VALUE",
    }
)
_FUNCTION = re.compile(r"([A-Za-z_][A-Za-z0-9_.]*)\s*\(")


def _harmless(formula: object) -> bool:
    """A formula made only of cell references, arithmetic and SAFE_FUNCTIONS (strings are not looked into)."""
    if not isinstance(formula, str):
        return False
    bare = re.sub(r'"[^"]*"', '""', formula)
    if any(ch in bare for ch in "[|@"):  # external workbooks, DDE, implicit intersection tricks
        return False
    return all(name.upper().removeprefix("_XLFN.") in SAFE_FUNCTIONS for name in _FUNCTION.findall(bare))


def _cells(ws: Worksheet) -> list[Any]:
    # Only the cells that exist; iter_rows would create every empty one of the used range.
    return list(ws._cells.values())


def _clear_previous_round(wb: Workbook) -> None:
    """A copy annotated before and sent back corrected: its old marks and 校验结果 no longer hold."""
    if SUMMARY_SHEET in wb.sheetnames:
        wb.remove(wb[SUMMARY_SHEET])
    for ws in wb.worksheets:
        for cell in _cells(ws):
            commented = cell.comment is not None and cell.comment.author == AUTHOR
            if commented:
                _, mark, own = cell.comment.text.partition(f"\n{OWN_NOTE}\n")
                cell.comment = Comment(own, "") if mark else None  # the unit's own note, kept last round
            # Our comment marks our fill, whatever colour an office suite saved it in (LibreOffice turns
            # the stripes into one solid colour).
            if commented or _ours(cell.fill):
                # An input cell (unlocked) gets the template's input fill back; any other, none.
                cell.fill = template.INPUT_FILL if cell.protection.locked is False else PatternFill()


def _ours(fill: PatternFill) -> bool:
    colors = {str(c.rgb).upper()[-6:] for c in (fill.fgColor, fill.bgColor) if isinstance(c.rgb, str)}
    return fill.fill_type in ("solid", WARNING_FILL.fill_type) and bool(colors & OUR_COLORS)


# --- a copy rebuilt from values, for what openpyxl cannot open ----------------------------------------------


def _rebuilt(data: bytes) -> _Book:
    import python_calamine as calamine

    source = calamine.CalamineWorkbook.from_filelike(io.BytesIO(data))
    wb = Workbook()
    wb.remove(wb.active)
    sheets: dict[str, str] = {}
    for meta in source.sheets_metadata:
        if meta.typ != calamine.SheetTypeEnum.WorkSheet or meta.name == SUMMARY_SHEET:
            continue  # a chart has no values; an old 校验结果 is replaced by this round's
        ws = wb.create_sheet(_sheet_title(meta.name, set(wb.sheetnames)))
        sheets[meta.name] = ws.title
        widths: dict[int, int] = {}
        for r, line in enumerate(source.get_sheet_by_name(meta.name).to_python(skip_empty_area=False), 1):
            for c, value in enumerate(line, 1):
                if value is None or value == "":
                    continue
                _put(ws.cell(r, c), value)
                widths[c] = max(widths.get(c, 0), _display_width(str(value)))
        for c, w in widths.items():
            ws.column_dimensions[column_letters(c)].width = min(40, max(8, w + 2))
        if meta.visible == calamine.SheetVisibleEnum.Hidden:  # the enum is not hashable
            ws.sheet_state = "hidden"
        elif meta.visible == calamine.SheetVisibleEnum.VeryHidden:
            ws.sheet_state = "veryHidden"
    return _Book(wb, sheets)


def _sheet_title(name: str, taken: set[str]) -> str:
    """A title openpyxl accepts; .ods allows longer names and characters an .xlsx does not."""
    title = re.sub(r"[\\*?:/\[\]]", "_", name)[:31] or "Sheet"
    base, n = title, 1
    while title in taken:
        n += 1
        title = f"{base[:27]}_{n}"
    return title


def _put(cell: Any, value: object) -> None:
    if isinstance(value, str):
        _text(cell, value)
    elif isinstance(value, float) and not math.isfinite(value):
        _text(cell, str(value))
    elif isinstance(value, dt.datetime):
        cell.value = value
        cell.number_format = "yyyy-mm-dd hh:mm:ss" if value.time() != dt.time() else "yyyy-mm-dd"
    elif isinstance(value, dt.date):
        cell.value = value
        cell.number_format = "yyyy-mm-dd"
    elif isinstance(value, dt.time | dt.timedelta):
        cell.value = value
        cell.number_format = "hh:mm:ss" if isinstance(value, dt.time) else "[h]:mm:ss"
    elif isinstance(value, bool | int | float):
        cell.value = value
    else:
        _text(cell, str(value))


# --- marking the cells --------------------------------------------------------------------------------------


def _mark(book: _Book, findings: Sequence[Finding]) -> dict[Finding, tuple[str, str]]:
    """Fill and comment the cell of each finding; returns where each marked finding is (title, A1)."""
    wb = book.wb
    where = _places(findings, book.sheets, lambda title, address: _anchor(wb[title], address))
    for (title, address), found in _grouped(where).items():
        cell = wb[title][address]
        cell.fill = _fill(found)
        lines = _messages(found)
        if cell.comment is not None:  # the unit's own note stays, below ours
            lines += [OWN_NOTE, cell.comment.text]
        cell.comment = _comment("\n".join(lines))
    return where


def _places(
    findings: Sequence[Finding], sheets: dict[str, str], anchor: Callable[[str, str], str]
) -> dict[Finding, tuple[str, str]]:
    """Where each finding that points at a cell of the workbook is marked: (title, A1 of the cell that
    can carry its comment, which `anchor` tells)."""
    where: dict[Finding, tuple[str, str]] = {}
    for f in findings:
        title = sheets.get(f.sheet)
        address = _address(f.cell)
        if title is not None and address is not None:
            where[f] = (title, anchor(title, address))
    return where


def _grouped(where: dict[Finding, tuple[str, str]]) -> dict[tuple[str, str], list[Finding]]:
    """The findings of each marked cell, errors first."""
    places: dict[tuple[str, str], list[Finding]] = {}
    for f, place in where.items():
        places.setdefault(place, []).append(f)
    for found in places.values():
        found.sort(key=lambda f: not f.is_error)
    return places


def _fill(found: list[Finding]) -> PatternFill:
    return ERROR_FILL if found[0].is_error else WARNING_FILL


def _messages(found: list[Finding]) -> list[str]:
    return list(dict.fromkeys(f"【{'错误' if f.is_error else '提醒'}】{f.message}" for f in found))


def _address(cell: str) -> str | None:
    """A finding's cell as the workbook names it (B7 for $b$7), or None when it is no cell of a sheet."""
    try:
        row, col = cell_position(cell)
    except ValueError:
        return None
    if not (0 <= row < MAX_ROW and 0 <= col < MAX_COL):
        return None
    return cell_name(row, col)


def _anchor(ws: Worksheet, address: str) -> str:
    return _anchored((merged.coord for merged in ws.merged_cells.ranges), address)


def _anchored(merged: Iterable[str], address: str) -> str:
    """The top-left cell of the merged range holding `address`: the only one that can carry a comment."""
    row, col = cell_position(address)
    for ref in merged:
        min_col, min_row, max_col, max_row = range_boundaries(ref)
        if min_col <= col + 1 <= max_col and min_row <= row + 1 <= max_row:
            return cell_name(min_row - 1, min_col - 1)
    return address


def _comment(text: str) -> Comment:
    text, width, height = _note_box(text)
    comment = Comment(text, AUTHOR)
    comment.width = width
    comment.height = height
    return comment


def _note_box(text: str) -> tuple[str, int, int]:
    """A comment's text as written, and the width and height of its box."""
    text = _clean(text)
    longest = max(_display_width(line) for line in text.split("\n"))
    # Sizes are pixels: about 8 px per half-width character of the 9-point comment font, 16 px per line.
    width = min(360, max(200, longest * 8 + 16))
    per_line = max(1, (width - 16) // 8)
    lines = sum(max(1, math.ceil(_display_width(line) / per_line)) for line in text.split("\n"))
    return text, width, min(600, lines * 16 + 16)


# --- the 校验结果 sheet -------------------------------------------------------------------------------------


def _finish(
    book: _Book, file_name: str, findings: Sequence[Finding], unit_name: str, title: str, mark: bool = True
) -> bytes:
    wb = book.wb
    where = _mark(book, findings) if mark else {}
    ws = wb.create_sheet(SUMMARY_SHEET, 0)
    for other in wb.worksheets:
        other.sheet_view.tabSelected = False  # else Excel opens with the sheets grouped
    ws.sheet_view.tabSelected = True
    wb.active = 0
    for view in wb.views:
        view.firstSheet = 0
    _write(ws, _summary(book.notes, book.sheets, file_name, findings, where, unit_name, title))
    cached = {
        title: {a1: (f.value, f.type) for a1, f in cells.items()} for title, cells in book.cached.items()
    }
    return xlsxpatch.saved(wb, cached)


_FONT = template.FONT
TITLE_STYLE = xlsxparts.Style(Font(name=_FONT, bold=True, size=14))
LINE_STYLE = xlsxparts.Style(Font(name=_FONT, size=11))
NOTES_STYLE = xlsxparts.Style(Font(name=_FONT, size=11), alignment=Alignment(wrap_text=True, vertical="top"))
FAILED_STYLE = xlsxparts.Style(Font(name=_FONT, bold=True, size=12, color="9C0006"))
PASSED_STYLE = xlsxparts.Style(Font(name=_FONT, bold=True, size=12, color="006100"))
HEADER_STYLE = xlsxparts.Style(
    Font(name=_FONT, bold=True), HEADER_FILL, _BOX, Alignment(horizontal="center", vertical="center")
)
LINK_FONT = Font(name=_FONT, color="0563C1", underline="single")


@functools.cache
def _body_style(col: int, is_error: bool, linked: bool) -> xlsxparts.Style:
    """The look of column `col` of a finding's line: the category filled as the cell is, a link as a link."""
    fill = (ERROR_FILL if is_error else WARNING_FILL) if col == 2 else None
    alignment = Alignment(vertical="top", wrap_text=col >= 5, horizontal="center" if col <= 2 else None)
    return xlsxparts.Style(LINK_FONT if linked else Font(name=_FONT), fill, _BOX, alignment)


def _summary(
    notes: list[str],
    sheets: dict[str, str],
    file_name: str,
    findings: Sequence[Finding],
    where: dict[Finding, tuple[str, str]],
    unit_name: str,
    title: str,
) -> xlsxparts.PlainSheet:
    """What 校验结果 holds: a heading, the verdict, notes, and a line per finding linked to its cell."""
    errors = sum(f.is_error for f in findings)
    warnings_ = len(findings) - errors
    last = column_letters(len(COLUMNS))
    notes = list(notes)
    if not findings:
        notes.append("未发现问题。")
    elif where:
        notes.append(
            "原表中红色单元格为错误、带斜纹的橙黄色单元格为提醒,鼠标移到单元格上可查看说明;点击“单元格”一栏可跳到该处。"
            "可直接在本文件中改正后重新报送。"
        )
    conclusion = (
        "报送对象有误" if any(f.rule == F_LEVEL for f in findings) else "未通过" if errors else "通过"
    )
    texts = [
        _at(1, 1, title, TITLE_STYLE),
        _at(2, 1, f"填报单位:{unit_name}    文件:{file_name}", LINE_STYLE),
        _at(
            3,
            1,
            f"共 {errors} 个错误、{warnings_} 个提醒;结论:{conclusion}",
            FAILED_STYLE if errors else PASSED_STYLE,
        ),
        _at(4, 1, "\n".join(notes), NOTES_STYLE),
    ]
    heights = [(1, 26.0), (4, 16.0 * max(1, sum(_lines(n, 150) for n in notes)) + 4)]
    texts += [_at(HEADER_ROW, j, header, HEADER_STYLE) for j, (header, _) in enumerate(COLUMNS, 1)]
    for i, f in enumerate(in_order(findings), 1):
        r = HEADER_ROW + i
        target, address = where.get(f, ("", ""))
        cells = (
            str(i),
            "错误" if f.is_error else "提醒",
            f.sheet,
            address or f.cell,
            f.value,
            f.message,
        )
        for j, text in enumerate(cells, 1):
            link = f"{_quote(target)}!{address}" if j == 4 and address else ""
            texts.append(_at(r, j, text, _body_style(j, f.is_error, bool(link)), link))
        heights.append((r, 15.0 * max(_lines(f.message, COLUMNS[5][1]), _lines(f.value, COLUMNS[4][1])) + 3))
    return xlsxparts.PlainSheet(
        title=SUMMARY_SHEET,
        texts=tuple(texts),
        merged=tuple(f"A{row}:{last}{row}" for row in range(1, 5)),
        heights=tuple(heights),
        widths=tuple((j, float(width)) for j, (_, width) in enumerate(COLUMNS, 1)),
        frozen_rows=HEADER_ROW,
        title_rows=(HEADER_ROW, HEADER_ROW),
    )


def _at(row: int, col: int, text: str, style: xlsxparts.Style, link: str = "") -> xlsxparts.Text:
    """A cell of 校验结果: its text as both paths write it, cleaned and cut to what a cell holds."""
    return xlsxparts.Text(row, col, _clean(text)[:MAX_TEXT] if text else "", style, link)


def _write(ws: Worksheet, sheet: xlsxparts.PlainSheet) -> None:
    """`sheet` written into openpyxl's `ws`: for workbooks the XML edit leaves alone, rebuilt copies and
    the summary alone."""
    for ref in sheet.merged:
        ws.merge_cells(ref)
    for t in sheet.texts:
        cell = ws.cell(t.row, t.col)
        _text(cell, t.text)
        cell.font = t.style.font
        if t.style.fill is not None:
            cell.fill = t.style.fill
        if t.style.border is not None:
            cell.border = t.style.border
        if t.style.alignment is not None:
            cell.alignment = t.style.alignment
        if t.link:
            cell.hyperlink = Hyperlink(ref=cell.coordinate, location=t.link, display=t.text)
    for row, height in sheet.heights:
        ws.row_dimensions[row].height = height
    for col, width in sheet.widths:
        ws.column_dimensions[column_letters(col)].width = width
    if sheet.frozen_rows:
        ws.freeze_panes = f"A{sheet.frozen_rows + 1}"
    if sheet.title_rows is not None:
        ws.print_title_rows = f"{sheet.title_rows[0]}:{sheet.title_rows[1]}"
    ws.page_setup.paperSize = ws.PAPERSIZE_A4
    ws.page_setup.orientation = ws.ORIENTATION_LANDSCAPE
    ws.page_setup.fitToWidth = 1
    ws.page_setup.fitToHeight = 0
    ws.sheet_properties.pageSetUpPr.fitToPage = True


def _quote(sheet: str) -> str:
    return "'" + sheet.replace("'", "''") + "'"


def _text(cell: Any, text: str) -> None:
    """`text` exactly, as text: never a formula (=…), whatever a person typed in their cell."""
    if not text:
        return  # an empty string would be written as an empty text cell
    cell.value = _clean(text)[:MAX_TEXT]
    cell.data_type = "s"


def _clean(text: str) -> str:
    """Control characters have no place in the file's XML; a carriage return would be read back as a line
    feed anyway (XML normalises it), so it is written as one."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return ILLEGAL_CHARACTERS_RE.sub("\ufffd", text)


def _display_width(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def _lines(text: str, width: int) -> int:
    """Lines `text` takes in a wrapped column `width` characters wide."""
    return sum(max(1, math.ceil(_display_width(part) / max(1, width - 1))) for part in text.split("\n"))
