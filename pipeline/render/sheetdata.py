"""The cells of report.py's workbook written as one piece of XML per sheet, the part of xlsxwriter's work
that grows with the number of cells.

xlsxwriter stores each cell as an object when it is written and turns it into XML with a dozen calls when
the workbook closes, about 6 µs a cell: two of the three CPU-seconds of a national workbook (363,000
cells). report.py already holds every cell of a sheet before it writes any, so `Sheet.lay_out` takes them
all at once and `<sheetData>` is written from them in one pass, with the same bytes xlsxwriter writes: the
same shared strings in the same order, style indices given in the same order, numbers in the same format,
rows, heights and spans alike. Everything else in the package (styles, merges, print settings, the zip) is
still xlsxwriter's.

This mirrors private parts of xlsxwriter (the shared-string table, a format's style index, the sheet's
dimensions and row writer), so it is used only with the version it was written against and only for the
cells it knows: text, a finite int or float, a date and time, or a blank, each with a format. Anything
else leaves the sheet to xlsxwriter's own `write_*`, cell by cell. A test holds the two to the same bytes.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Mapping
from operator import itemgetter
from typing import Any

import xlsxwriter
from xlsxwriter.utility import xl_col_to_name
from xlsxwriter.worksheet import Worksheet

# A sheet's cells: row → column → (value, xlsxwriter Format), 1-based as in A1.
Cells = Mapping[int, Mapping[int, tuple[Any, Any]]]
# One row of cells as written: (column, format, the cell's XML after its style attribute), by column.
Row = list[tuple[int, Any, str]]

VERSION = (3, 3)  # the xlsxwriter whose private parts are mirrored here
# Longer text may be more than Excel's 32,767 UTF-16 units, which xlsxwriter truncates: left to it.
LONGEST_TEXT = 32767 // 2
_COLUMN = itemgetter(0)
_MIRRORED = ("_check_dimensions", "_convert_date_time", "_write_row", "_write_empty_row", "_write_sheet_data")


def _supported() -> bool:
    version = re.match(r"(\d+)\.(\d+)", xlsxwriter.__version__)
    return (
        version is not None
        and (int(version[1]), int(version[2])) == VERSION
        and all(callable(getattr(Worksheet, name, None)) for name in _MIRRORED)
    )


SUPPORTED = _supported()


class Sheet(Worksheet):
    """An xlsxwriter worksheet that can take all its cells at once (`lay_out`) instead of a `write_*`
    call for each; made by `Workbook.add_worksheet(name, worksheet_class=Sheet)`."""

    def __init__(self) -> None:
        super().__init__()
        self.laid_out: dict[int, Row] | None = None

    def lay_out(self, cells: Cells) -> bool:
        """Takes `cells` to be written when the workbook closes, as `write_*` would have written them in
        their order. They are then the sheet's only cells: a merged range's padding must be among them,
        and whatever `write_*` stored in the sheet is not written. Returns False, having taken nothing,
        when a cell or this xlsxwriter is not one this route writes: the caller then writes the cells
        itself."""
        if not (SUPPORTED and cells and not self.constant_memory and self._writable(cells)):
            return False
        index = self.str_table._get_shared_string_index  # in the cells' order, as write_string would
        number = self._convert_date_time
        rows: dict[int, Row] = {}
        for r, row in cells.items():
            out: Row = []
            for c, (value, fmt) in row.items():
                kind = type(value)
                if kind is int or kind is float:  # the most, first
                    tail = f"><v>{value:.16G}</v></c>"
                elif value is None:
                    tail = "/>"
                elif kind is str:
                    tail = f' t="s"><v>{index(value)}</v></c>'
                else:
                    tail = f"><v>{number(value):.16G}</v></c>"  # a date and time, as `_writable` found
                out.append((c, fmt, tail))
            if out:
                out.sort(key=_COLUMN)
                rows[r] = out
        if not rows:
            return False
        first, last = min(rows), max(rows)
        self._check_dimensions(first - 1, min(row[0][0] for row in rows.values()) - 1)
        self._check_dimensions(last - 1, max(row[-1][0] for row in rows.values()) - 1)
        self.laid_out = rows
        return True

    def _writable(self, cells: Cells) -> bool:
        """Whether every cell is one `lay_out` writes as xlsxwriter would, inside the sheet's bounds."""
        for r, row in cells.items():
            if row and not (1 <= r <= self.xls_rowmax and min(row) >= 1 and max(row) <= self.xls_colmax):
                return False
            for value, fmt in row.values():
                kind = type(value)
                if fmt is None:
                    return False  # xlsxwriter would skip a blank, or look for the row's or column's format
                if kind is str:
                    if len(value) > LONGEST_TEXT:
                        return False
                elif kind is float:
                    if not math.isfinite(value):
                        return False
                elif not (value is None or kind is int or isinstance(value, dt.datetime)):
                    return False  # a bool, a Decimal, a NumPy number: xlsxwriter's own conversions
        return True

    def _write_sheet_data(self) -> None:
        """`<sheetData>` at close: xlsxwriter's rows (with their heights) around the laid-out cells, each
        cell's style index asked for in xlsxwriter's order (sheet by sheet, row by row, left to right), so
        that the formats are numbered alike."""
        rows = self.laid_out
        if rows is None:
            super()._write_sheet_data()
            return
        write, info = self.fh.write, self.row_info
        spans = _spans(rows)
        names = ["", *(xl_col_to_name(c) for c in range(max(row[-1][0] for row in rows.values())))]
        write("<sheetData>")
        for r in sorted(rows.keys() | {r0 + 1 for r0 in info}):
            span = spans.get((r - 1) // 16)
            cells = rows.get(r)
            if cells is None:
                self._write_empty_row(r - 1, span, info[r - 1])
                continue
            self._write_row(r - 1, span, info.get(r - 1))
            write(
                "".join([f'<c r="{names[c]}{r}" s="{fmt._get_xf_index()}"{tail}' for c, fmt, tail in cells])
            )
            write("</row>")
        write("</sheetData>")


def _spans(rows: Mapping[int, Row]) -> dict[int, str]:
    """The `spans` of each block of 16 rows, as xlsxwriter gives them: the first and last column used."""
    edges: dict[int, tuple[int, int]] = {}
    for r, cells in rows.items():
        block = (r - 1) // 16
        low, high = cells[0][0], cells[-1][0]
        if block in edges:
            low, high = min(low, edges[block][0]), max(high, edges[block][1])
        edges[block] = (low, high)
    return {block: f"{low}:{high}" for block, (low, high) in edges.items()}
