"""The workbook of a file that sniffed as a spreadsheet: its sheets' values through python-calamine, the
template's hidden `_meta` sheet, and the formula cells calamine cannot tell apart from blanks.

Two things are read from the package's XML directly, each because calamine has no way to give it: the
`_meta` head (calamine reads a whole sheet, and `_meta` has 570 cells; see `meta_head`) and whether a
formula has a saved result (see `formula_cells`).
"""

from __future__ import annotations

import functools
import html
import io
import itertools
import logging
import re
import xml.etree.ElementTree as ET
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

import python_calamine as calamine

from pipeline.model import F_ENCRYPTED, Finding, Key, Severity
from pipeline.submission.refusal import Refusal, unreadable
from pipeline.submission.sniff import MSG_DAMAGED, MSG_ENCRYPTED, Package
from pipeline.submission.text import as_text

log = logging.getLogger(__name__)

Pos = tuple[int, int]  # 0-based (row, column) on a sheet
Grid = list[list[Any]]

FEEDBACK_SHEET = "校验结果"  # our own annotation sheet, in a corrected copy a unit sends back
META_SHEET = "_meta"  # the contract written by template.py
META_HEADER = ("sheet", "cell", "section", "row", "field")


class Book:
    """calamine's workbook, every call guarded: whatever it raises makes the file unreadable."""

    def __init__(self, data: bytes):
        self._grids: dict[str, Grid] = {}
        wb = _guard(lambda: calamine.CalamineWorkbook.from_filelike(io.BytesIO(data)))
        metas = _guard(lambda: list(wb.sheets_metadata))
        self._wb = wb
        self.names = [m.name for m in metas]
        self.visible = [
            m.name
            for m in metas
            if m.visible == calamine.SheetVisibleEnum.Visible
            and m.typ == calamine.SheetTypeEnum.WorkSheet
            and m.name not in (META_SHEET, FEEDBACK_SHEET)
        ]

    def grid(self, name: str) -> Grid:
        if name not in self._grids:
            self._grids[name] = _guard(
                lambda: self._wb.get_sheet_by_name(name).to_python(skip_empty_area=False)
            )
        return self._grids[name]


def _guard(call: Callable[[], Any]) -> Any:
    try:
        return call()
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # calamine raises its own types, and pyo3 panics derive from BaseException
        log.info("calamine could not read the file: %r", exc)
        text = str(exc).lower()
        if isinstance(exc, calamine.PasswordError) or "password" in text or "encrypt" in text:
            raise Refusal(Finding(F_ENCRYPTED, Severity.ERROR, MSG_ENCRYPTED)) from None
        raise unreadable(MSG_DAMAGED) from None


def at(grid: Grid, pos: Pos) -> Any:
    """The value at `pos`, None outside the sheet or for an empty cell."""
    r, c = pos
    if r < 0 or c < 0 or r >= len(grid) or c >= len(grid[r]):
        return None
    value = grid[r][c]
    return None if value == "" else value  # calamine gives "" for an empty cell


# --- the `_meta` sheet -----------------------------------------------------------------------------------------


@dataclass
class Meta:
    form: str = ""
    unit: str = ""
    version: str = ""
    rules: str = ""  # the sha256 of the rules.yaml the template was made from
    covers: str = ""  # a roll-up form: the codes of the units it sums, separated by spaces
    cells: dict[Key, tuple[str, str]] = field(default_factory=dict)  # key -> (sheet, A1)

    @property
    def template(self) -> tuple[str, str, str]:
        """What one template has in every copy, whoever fills it: the same cell map below."""
        return self.form, self.version, self.rules


_META_ATTRS = {
    "form": "form",
    "unit": "unit",
    "template_version": "version",
    "rules_sha256": "rules",
    "covers": "covers",
}


def read_meta(grid: Grid) -> Meta:
    """The whole `_meta` sheet as calamine read it."""
    meta = Meta()
    for i, row in enumerate(grid):
        values = [as_text(v) for v in row[:5]] + [""] * (5 - len(row[:5]))
        if tuple(v.lower() for v in values) == META_HEADER:
            meta.cells = dict(_meta_map(tuple(tuple(r[:5]) for r in grid[i + 1 :])))
            break
        if values[0] in _META_ATTRS:
            setattr(meta, _META_ATTRS[values[0]], values[1])
    return meta


@functools.lru_cache(maxsize=64)
def _meta_map(rows: tuple[tuple[Any, ...], ...]) -> tuple[tuple[Key, tuple[str, str]], ...]:
    """The cell map of a `_meta` sheet: the same for every file of a form, so parsed once."""
    out = []
    for row in rows:
        sheet, address, section, row_code, field_code = [as_text(v) for v in row] + [""] * (5 - len(row))
        if sheet and section and field_code and re.fullmatch(r"[A-Za-z]{1,3}\d+", address):
            out.append(((section, row_code, field_code), (sheet, address.upper())))
    return tuple(out)


class TemplateMaps:
    """The `_meta` cell maps of the templates seen so far, by template (form, version, rules): the map is
    the same in every copy of a template, and reading it cost calamine more than the form's own sheet. One
    of these lives as long as the campaign's reader; a handful of templates is the most it ever holds."""

    LIMIT = 64  # a bound for a process fed files of many campaigns' templates, which never happens in a run

    def __init__(self) -> None:
        self._maps: dict[tuple[str, str, str], dict[Key, tuple[str, str]]] = {}

    def known(self, template: tuple[str, str, str]) -> dict[Key, tuple[str, str]] | None:
        """The map every copy of `template` shares, once one copy has been read in full."""
        return self._maps.get(template)

    def meta_of(self, book: Book, package: Package | None) -> Meta:
        """The `_meta` sheet of a file. The head rows of an .xlsx (`package`) are read from the XML, and
        the map is the one read in full from the first copy of the same template."""
        head = meta_head(package) if package is not None else None
        if head is None or not head.rules:
            return read_meta(book.grid(META_SHEET))
        known = self._maps.get(head.template)
        if known is not None:
            head.cells = known
            return head
        meta = read_meta(book.grid(META_SHEET))
        if (meta.template, meta.unit) == (head.template, head.unit):
            if len(self._maps) >= self.LIMIT:
                self._maps.clear()
            self._maps[head.template] = meta.cells
        else:  # the quick reading disagrees with calamine's: trust calamine, and never the quick one for it
            log.info("_meta head read from the XML differs from calamine's: %r / %r", head, meta)
        return meta


_ROW = re.compile(rb"<row\b[^>]*>(.*?)</row>", re.S)
_ROW_CELL = re.compile(rb'<c r="([A-E])\d+"([^>]*?)(?:/>|>(.*?)</c>)', re.S)
_TYPE = re.compile(rb'\bt="(\w+)"')
_INLINE_T = re.compile(rb"<t\b[^>]*>([^<]*)</t>")
_SI = re.compile(rb"<si>(.*?)</si>|<si/>", re.S)
_HEAD_BYTES = 1 << 13  # the key rows and the header: 2.5 KB in a template, less with shared strings
_HEAD_ROWS = 8  # the header is row 5 of a template


def meta_head(package: Package) -> Meta | None:
    """The key rows of `_meta` (form, unit, template_version, rules_sha256) up to its map's header row, read
    from the sheet's XML; None whenever the XML is not in the plain shape Excel, WPS, LibreOffice and
    openpyxl write (then calamine reads the sheet)."""
    try:
        part = sheet_part(package, META_SHEET)
        if part is None:
            return None
        with package.zip.open(part) as fh:
            xml = fh.read(_HEAD_BYTES)
        rows = [row.group(1) for row in itertools.islice(_ROW.finditer(xml), _HEAD_ROWS)]
        shared = any(b't="s"' in row for row in rows)
        strings = _shared_strings(package, [_row_cells(row) for row in rows]) if shared else []
        meta = Meta()
        for row in rows:
            values = _row_values(row, strings) if shared else _plain_row_values(row)
            if values is None:
                return None
            if tuple(v.lower() for v in values) == META_HEADER:
                return meta
            if values[0] in _META_ATTRS:
                setattr(meta, _META_ATTRS[values[0]], values[1])
        return None  # no header in the first rows
    except (
        zipfile.BadZipFile,
        KeyError,
        ET.ParseError,
        OSError,
        EOFError,
        ValueError,
        IndexError,
        UnicodeDecodeError,
    ):
        return None


def _row_cells(row: bytes) -> list[tuple[bytes, bytes, bytes | None]]:
    return [(m.group(1), m.group(2), m.group(3)) for m in _ROW_CELL.finditer(row)]


def _row_values(row: bytes, strings: list[bytes]) -> tuple[str, ...] | None:
    """Columns A-E of a `_meta` row as `as_text` gives them; None if a cell is not one this reading handles."""
    values = [""] * 5
    for column, attrs, body in _row_cells(row):
        text = _cell_text(attrs, body, strings)
        if text is None:
            return None
        values[column[0] - 65] = text
    return tuple(values)


@functools.lru_cache(maxsize=256)
def _plain_row_values(row: bytes) -> tuple[str, ...] | None:
    """`_row_values` of a row without shared strings: all but the unit's row are the same bytes in every copy
    of a template, so read once."""
    return _row_values(row, [])


def _cell_text(attrs: bytes, body: bytes | None, strings: list[bytes]) -> str | None:
    """A `_meta` cell as `as_text` gives calamine's value; None for what this reading does not handle."""
    t = _TYPE.search(attrs)
    kind = t.group(1) if t else b"n"
    if body is None or (kind == b"n" and b"<v" not in body):
        return ""
    if b"<f" in body or b"_x" in body:  # a formula, or an escaped control character
        return None
    if kind == b"inlineStr":
        raw = b"".join(_INLINE_T.findall(body))
    elif kind == b"s":
        v = _V.search(body)
        raw = b"".join(_INLINE_T.findall(strings[int(v.group(1) or b"")])) if v else b""
    elif kind in (b"str", b"n"):
        v = _V.search(body)
        raw = (v.group(1) or b"") if v else b""
        if kind == b"n":
            return as_text(float(raw)) if raw else ""
    else:
        return None  # a boolean, an error, a date: not what a template writes here
    return html.unescape(raw.decode("utf-8")).strip()


def _shared_strings(package: Package, rows: list[list[tuple[bytes, bytes, bytes | None]]]) -> list[bytes]:
    """The shared strings up to the last one the head rows use (their <si> bodies); [] when none is used."""
    wanted = [
        int(v.group(1) or b"")
        for cells in rows
        for _, attrs, body in cells
        if body and b't="s"' in attrs and (v := _V.search(body))
    ]
    if not wanted:
        return []
    xml = package.zip.read(_strings_part(package.part("xl/_rels/workbook.xml.rels")))
    if b"<rPh" in xml:  # phonetic runs: calamine leaves them out, and so would have to this reading
        raise ValueError("phonetic runs in the shared strings")
    out: list[bytes] = []
    for m in _SI.finditer(xml):
        out.append(m.group(1) or b"")
        if len(out) > max(wanted):
            break
    return out


@functools.lru_cache(maxsize=16)
def _strings_part(rels_xml: bytes) -> str:
    for rel in _parsed(rels_xml).iter():
        if _local(rel.tag) == "Relationship" and rel.get("Type", "").endswith("/sharedStrings"):
            target = rel.get("Target", "")
            return target.lstrip("/") if target.startswith("/") else str(PurePosixPath("xl") / target)
    raise KeyError("no shared strings part")


# --- formulas without results (xlsx/xlsm) ------------------------------------------------------------------

_REL_ID = "{http://schemas.openxmlformats.org/officeDocument/2006/relationships}id"
_CELL = re.compile(rb"<(?:\w+:)?c\b([^>]*?)(?:/>|>(.*?)</(?:\w+:)?c>)", re.S)
_REF = re.compile(rb'\br="([A-Za-z]{1,3}\d+)"')
_F = re.compile(rb"<(?:\w+:)?f\b[^>]*?(?:/>|>(.*?)</(?:\w+:)?f>)", re.S)
_V = re.compile(rb"<(?:\w+:)?v\b[^>]*?(?:/>|>(.*?)</(?:\w+:)?v>)", re.S)
_T = re.compile(rb'\bt="([a-z]+)"')
_CELL_START = re.compile(rb"<(?:\w+:)?c[\s>/]")
_F_START = re.compile(rb"<(?:\w+:)?f\b")
CHUNK = 1 << 18


@dataclass(frozen=True)
class Formula:
    """A formula cell as saved: its text, and its cached result as the XML has it (`t` attribute and the
    escaped text of <v>; value "" when the file was never calculated)."""

    text: str
    type: str
    value: str


def formula_cells(package: Package, sheet: str) -> dict[str, Formula]:
    """A1 -> Formula for the formula cells of one sheet.

    calamine returns a formula's cached value and cannot tell "no value" from "empty"; a file written
    by a script and never opened in a spreadsheet program has formulas and no values, which must be
    reported rather than read as blanks. A large sheet XML is streamed in chunks, never loaded whole;
    regular expressions are used because cells never nest and they are many times faster than a parser.
    """
    out: dict[str, Formula] = {}
    try:
        zf = package.zip
        part = sheet_part(package, sheet)
        if part is None:
            return {}
        if zf.getinfo(part).file_size <= 4 * CHUNK:
            _scan_formulas(zf.read(part), out)
            return out
        with zf.open(part) as fh:
            carry = b""
            while chunk := fh.read(CHUNK):
                buf = carry + chunk
                # Everything before the last opening <c is whole cells; the rest waits for more bytes.
                starts = [m.start() for m in _CELL_START.finditer(buf, max(0, len(buf) - CHUNK))]
                cut = starts[-1] if starts else len(buf)
                _scan_formulas(buf[:cut], out)
                carry = buf[cut:]
            _scan_formulas(carry, out)
        return out
    except (zipfile.BadZipFile, KeyError, ET.ParseError, OSError, EOFError, ValueError) as exc:
        # calamine has read the values already; without this scan only the flag is lost.
        log.info("formula scan of %s skipped: %r", sheet, exc)
        return {}


def _scan_formulas(buf: bytes, out: dict[str, Formula]) -> None:
    # Only the cells that hold a formula: <f> is a cell's first child, so the tag just before it opens the
    # cell (a form has hundreds of cells and a few dozen formulas).
    for f in _F_START.finditer(buf):
        m = _CELL.match(buf, buf.rfind(b"<", 0, f.start()))
        if m is None or not m.group(2) or m.end() < f.end():
            continue
        body = m.group(2)
        formula = _F.search(body)
        ref = _REF.search(m.group(1))
        if formula is None or ref is None:
            continue
        v = _V.search(body)
        t = _T.search(m.group(1))
        out[ref.group(1).decode("ascii").upper()] = Formula(
            text=html.unescape((formula.group(1) or b"").decode("utf-8", "replace")).strip(),
            type=t.group(1).decode("ascii") if t else "",
            value=(v.group(1) or b"").decode("utf-8", "replace") if v else "",
        )


def formula_results(data: bytes, sheets: Iterable[str]) -> dict[str, dict[str, Formula]]:
    """Sheet -> A1 -> Formula, for the sheets of an .xlsx that have formulas (annotate.py writes the
    cached results back into the copy it makes, which openpyxl would save without them)."""
    try:
        package = Package(data)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as exc:
        log.info("formula scan skipped: %r", exc)
        return {}
    out = {}
    for sheet in sheets:
        found = formula_cells(package, sheet)
        if found:
            out[sheet] = found
    return out


def sheet_part(package: Package, sheet: str) -> str | None:
    """The name of the part that holds `sheet`, None when the workbook has no such sheet."""
    return _sheet_target(package.part("xl/workbook.xml"), package.part("xl/_rels/workbook.xml.rels"), sheet)


@functools.lru_cache(maxsize=16)
def _sheet_target(workbook_xml: bytes, rels_xml: bytes, sheet: str) -> str | None:
    """The part of `sheet`, from the workbook's XML and its relationships: the same bytes in every copy
    of one template saved by one program, so parsed once for all of them."""
    workbook = _parsed(workbook_xml)
    rid = next(
        (
            next((v for k, v in el.attrib.items() if k == _REL_ID or k.endswith("}id")), None)
            for el in workbook.iter()
            if _local(el.tag) == "sheet" and el.get("name") == sheet
        ),
        None,
    )
    if rid is None:
        return None
    rels = _parsed(rels_xml)
    for rel in rels.iter():
        if _local(rel.tag) == "Relationship" and rel.get("Id") == rid:
            target = rel.get("Target", "")
            if target.startswith("/"):
                return target.lstrip("/")
            return str(PurePosixPath("xl") / target)
    return None


def _parsed(xml: bytes) -> ET.Element:
    """A part of the unit's file, parsed: no DTD, so no entity is ever expanded (defusedxml refuses it)."""
    from defusedxml.ElementTree import fromstring

    return fromstring(xml, forbid_dtd=True)


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]
