"""A unit's .xlsx annotated by editing the XML of its package, for annotate.py.

openpyxl's load and save of every workbook (~40 ms CPU a file) was the largest cost of a national run.
Here only the parts that must change are rewritten, by small textual edits made at element boundaries:
re-serialising with a parser would rename namespace prefixes and break `mc:Ignorable="x14ac …"`, which
makes Excel call the file corrupt. Every other part is copied byte for byte. Each XML part of the copy is
parsed once with defusedxml before it is written, so that a file this module misreads, or one that was
malformed already, falls back to openpyxl instead of going out broken.

Whatever is not handled safely here raises Unsupported; annotate.py then takes the openpyxl path. That is:

* not a readable zip, two parts of one name, no workbook, workbook relationships or styles part;
* a part read here (workbook, styles, worksheets, relationships, content types) that is not UTF-8, or
  that holds a DTD, comment, CDATA section or processing instruction, markup that could hide a tag from
  the patterns used here (Excel, WPS, LibreOffice and openpyxl write none of it); any XML part of the
  copy that is not well-formed;
* strict OOXML, or the main namespace under a prefix: only its usual default-namespace form is edited;
* a chart, dialog or macro sheet among the sheets (only worksheets are edited and renumbered here);
* comments, threaded comments or VML drawings anywhere: the unit's own notes must stay below ours and a
  previous round's marks be cleared (openpyxl does both), and VML shape ids would have to be merged;
* array and data-table formulas, which openpyxl turns into text (annotate.py refuses any other formula
  that is not a form's own);
* a marked sheet whose rows or cells lack their `r` address or are out of order, that already has a
  legacyDrawing, or that holds top-level mc:AlternateContent (controls, OLE objects) near where the
  comments' drawing goes;
* styles without fonts, fills, borders or cellXfs lists, or a cell whose style is not among them.

An .xlsm's VBA project (vbaProject.bin, its signature and relationships) is dropped and the workbook
typed as a plain one, as openpyxl does; a macro sheet falls back (above).
"""

from __future__ import annotations

import bisect
import copy
import datetime as dt
import functools
import io
import posixpath
import re
import zipfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from defusedxml.ElementTree import DefusedXMLParser
from openpyxl import Workbook
from openpyxl.styles import Alignment, Border, Font, PatternFill
from openpyxl.utils.cell import range_boundaries
from openpyxl.xml.functions import tostring

from pipeline.model import cell_position, column_letters


class Unsupported(Exception):
    """The workbook has something this module does not edit safely: annotate it with openpyxl."""


MAIN = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
RELS = "http://schemas.openxmlformats.org/package/2006/relationships"
TYPES = "http://schemas.openxmlformats.org/package/2006/content-types"
DOC_RELS = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
WORKSHEET = f"{DOC_RELS}/worksheet"
STYLES = f"{DOC_RELS}/styles"
COMMENTS = f"{DOC_RELS}/comments"
VML_DRAWING = f"{DOC_RELS}/vmlDrawing"
PLAIN_WORKBOOK = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"
WORKBOOK_TYPES = {  # what a workbook part may be -> what it is in the copy: never macro-enabled nor a template
    f"application/vnd.{kind}.main+xml": PLAIN_WORKBOOK
    for kind in (
        "openxmlformats-officedocument.spreadsheetml.sheet",
        "openxmlformats-officedocument.spreadsheetml.template",
        "ms-excel.sheet.macroEnabled",
        "ms-excel.template.macroEnabled",
    )
}
WORKSHEET_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"
COMMENTS_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.comments+xml"
VML_TYPE = "application/vnd.openxmlformats-officedocument.vmlDrawing"
DECLARATION = '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'

# What may follow <legacyDrawing> among a worksheet's children (ECMA-376 CT_Worksheet); it goes before
# the first of them that the sheet has.
AFTER_LEGACY_DRAWING = frozenset(
    {"legacyDrawingHF", "drawingHF", "picture", "oleObjects", "controls", "webPublishItems", "tableParts",
     "extLst"}
)
# What may follow <definedNames> among a workbook's children, besides what comes before it.
BEFORE_DEFINED_NAMES = frozenset(
    {"fileVersion", "fileSharing", "workbookPr", "workbookProtection", "bookViews", "sheets", "functionGroups",
     "externalReferences"}
)


# --- what annotate.py asks for, as values ----------------------------------------------------------------


@dataclass(frozen=True)
class Style:
    font: Font
    fill: PatternFill | None = None
    border: Border | None = None
    alignment: Alignment | None = None

    @functools.cached_property
    def xml(self) -> tuple[str, str, str, str]:
        """Its font, fill, border and alignment as openpyxl writes them ("" for no alignment): worked out
        once per style, since hashing openpyxl's style objects is slow."""
        alignment = _xml(self.alignment) if self.alignment is not None else ""
        return _xml(self.font), _xml(self.fill or PatternFill()), _xml(self.border or Border()), alignment


@dataclass(frozen=True)
class Text:
    """A text cell of a new sheet; `link` is a place in this workbook ('Sheet'!A1) it links to."""

    row: int
    col: int
    text: str  # as it is to be shown: already cleaned of what XML cannot hold
    style: Style
    link: str = ""


@dataclass(frozen=True)
class PlainSheet:
    """A new sheet of text cells, printed A4 landscape and one page wide."""

    title: str
    texts: tuple[Text, ...]
    merged: tuple[str, ...] = ()
    heights: tuple[tuple[int, float], ...] = ()  # (row, points)
    widths: tuple[tuple[int, float], ...] = ()  # (column, characters)
    frozen_rows: int = 0  # rows that stay in view while scrolling
    title_rows: tuple[int, int] | None = None  # rows printed atop each page


@dataclass(frozen=True)
class Mark:
    """A cell filled and commented: `address` is where the comment can go (a merged range's top-left)."""

    sheet: str
    address: str
    fill: PatternFill
    note: str  # the comment's text, already cleaned
    width: int  # the comment box, in pixels
    height: int


# --- a workbook openpyxl made, saved reproducibly -------------------------------------------------------------

# Fixed times inside the file, so that the same workbook always gives the same bytes.
ZIP_TIME = (2017, 1, 1, 0, 0, 0)
FIXED_STAMP = "2017-01-01T00:00:00Z"
# A formula's cached result as the sheet's XML holds it: the text of <v> (escaped) and the cell's type,
# "n" for a number (no `t` attribute), "b", "e" or "str".
Result = tuple[str, str]


def saved(wb: Workbook, results: Mapping[str, Mapping[str, Result]] | None = None) -> bytes:
    """`wb` as .xlsx bytes that the same workbook always gives, saved by openpyxl: the zip's dates and the
    document's created and modified times fixed, and each formula cell of `results` (sheet title -> A1
    -> result) given its cached result.

    openpyxl writes formulas without results and has no way to write them, while Excel, WPS and
    LibreOffice always store them: a viewer that does not recalculate shows them, and a re-check of the
    file reads the same values.
    """
    buffer = io.BytesIO()
    wb.save(buffer)  # stamps the document modified now: its core properties are written again below
    properties = copy.copy(wb.properties)
    properties.created = properties.modified = dt.datetime.fromisoformat(FIXED_STAMP).replace(tzinfo=None)
    # openpyxl numbers worksheet parts in the order of wb.worksheets
    sheets = {
        f"xl/worksheets/sheet{i}.xml": (results or {}).get(ws.title) for i, ws in enumerate(wb.worksheets, 1)
    }
    parts: dict[str, bytes] = {}
    with zipfile.ZipFile(buffer) as zf:
        for info in zf.infolist():
            content = zf.read(info)
            if info.filename == "docProps/core.xml":
                content = tostring(properties.to_tree())
            elif sheets.get(info.filename):
                content = _with_results(content.decode("utf-8"), sheets[info.filename] or {}).encode("utf-8")
            parts[info.filename] = content
    return _zipped(parts)


def _with_results(text: str, results: Mapping[str, Result]) -> str:
    """openpyxl's XML of a worksheet with the results of its formula cells put in their empty <v>."""

    def cached(m: re.Match[str]) -> str:
        tag = _start("c").match(m.group(0))
        assert tag is not None
        found = results.get(_attrs(tag.group(1)).get("r", ""))
        if found is None:
            return m.group(0)
        value, kind = found
        start = _with_attrs(tag, {"t": kind if kind in ("b", "e", "str") else None})
        return f"{start}{m.group(2)}<v>{value}</v></c>"

    return _OPENPYXL_FORMULA.sub(cached, text)


# --- the package as read ----------------------------------------------------------------------------------


@dataclass
class Package:
    """A workbook's parts as read, and where the ones the patcher edits are."""

    parts: dict[str, bytes]  # every part, in the zip's order
    sheets: dict[str, str]  # worksheet name -> its part, in the workbook's order
    styles: str
    texts: dict[str, str] = field(default_factory=dict)  # parts decoded and checked so far (see text())
    merges: dict[str, list[str]] = field(default_factory=dict)  # sheet -> merged ranges, once asked for

    def text(self, name: str) -> str:
        if name not in self.texts:
            self.texts[name] = _decoded(name, self.parts[name])
        return self.texts[name]

    def merged(self, sheet: str) -> list[str]:
        """The merged ranges of `sheet`, as A1:B2 references."""
        if sheet not in self.merges:
            text = self.text(self.sheets[sheet])
            block = _element(text, "mergeCells")
            found = _start("mergeCell").finditer(text, *block[2:]) if block is not None else ()
            refs = [_attrs(m.group(1)).get("ref", "") for m in found]
            if not all(_RANGE.fullmatch(ref) for ref in refs):
                raise Unsupported("a merged range that is not one")
            self.merges[sheet] = refs
        return self.merges[sheet]

    def formulas(self) -> Iterator[str]:
        """Every cell formula of the worksheets, as "=…" (shared formulas once, where their text is)."""
        for part in self.sheets.values():
            for m in _FORMULA.finditer(self.text(part)):
                kind = _attrs(m.group(1)).get("t", "normal")
                if kind in ("array", "dataTable"):
                    raise Unsupported(f"an {kind} formula")
                if m.group(3) is not None:
                    yield "=" + _unescape(m.group(3))


def opened(data: bytes) -> Package:
    """The package of an .xlsx, if this module can annotate it."""
    parts = _unzipped(data)
    wanted = {"xl/workbook.xml", "xl/_rels/workbook.xml.rels", "[Content_Types].xml"}
    if not wanted <= parts.keys():
        raise Unsupported("no workbook part where Excel puts it")
    if any(_has_notes(name, content) for name, content in parts.items()):
        raise Unsupported("comments or VML drawings")
    package = Package(parts, {}, "")
    rels = _relationships(package, "xl/_rels/workbook.xml.rels")
    workbook = package.text("xl/workbook.xml")
    _root(workbook, "workbook", MAIN)
    scope = _sheets_scope(workbook)
    for m in _sheet_tags(workbook):
        attrs = _attrs(m.group(1))
        rel = rels.get(attrs.get(f"{_prefix({**scope, **_declared(attrs)}, DOC_RELS)}:id", ""))
        if rel is None or rel.type != WORKSHEET:
            raise Unsupported("a sheet that is not a worksheet")
        package.sheets[attrs.get("name", "")] = _part(parts, "xl", rel.target)
    if not package.sheets or len(package.sheets) != len(_sheet_tags(workbook)):
        raise Unsupported("no sheets, or two of one name")
    styles = [rel for rel in rels.values() if rel.type == STYLES]
    if len(styles) != 1:
        raise Unsupported("no styles part")
    package.styles = _part(parts, "xl", styles[0].target)
    for part in package.sheets.values():
        _root(package.text(part), "worksheet", MAIN)
    return package


def _unzipped(data: bytes) -> dict[str, bytes]:
    parts: dict[str, bytes] = {}
    seen: set[str] = set()
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            for info in zf.infolist():
                if info.is_dir():
                    continue
                if info.filename.lower() in seen:
                    raise Unsupported("two parts of one name")
                seen.add(info.filename.lower())
                parts[info.filename] = zf.read(info)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError, RuntimeError,
            NotImplementedError) as exc:
        raise Unsupported(f"zip: {exc!r}") from None
    return parts


_NOTE_PARTS = re.compile(r"(^|/)(comments/.*|comments[^/]*\.xml|threadedcomments/.*|[^/]*\.vml)$")


def _has_notes(name: str, content: bytes) -> bool:
    """Comments, threaded comments or VML drawings (legacy drawings: comments, form controls, header
    pictures) in the package, by part name or by a relationship to them."""
    if _NOTE_PARTS.search(name.lower()):
        return True
    if name.endswith(".rels"):
        kinds = (b"/comments\"", b"/comments'", b"vmlDrawing", b"threadedComment")
        return any(kind in content for kind in kinds)
    return False


@dataclass(frozen=True)
class _Rel:
    id: str
    type: str
    target: str
    external: bool
    span: tuple[int, int]  # of its element in the relationships part


def _relationships(package: Package, name: str) -> dict[str, _Rel]:
    text = package.text(name)
    _root(text, "Relationships", RELS)
    out = {}
    for m in _start("Relationship").finditer(text):
        attrs = _attrs(m.group(1))
        end = m.end() if m.group(2) else _closing(text, "Relationship", m.end())
        rel = _Rel(attrs.get("Id", ""), attrs.get("Type", ""), attrs.get("Target", ""),
                   attrs.get("TargetMode", "") == "External", (m.start(), end))
        out[rel.id] = rel
    return out


def _part(parts: dict[str, bytes], base: str, target: str) -> str:
    """The part a relationship's target names, relative to the folder `base` of its source."""
    if "%" in target or "\\" in target or not target:
        raise Unsupported(f"relationship target {target!r}")
    path = posixpath.normpath(target[1:] if target.startswith("/") else posixpath.join(base, target))
    if path in parts:
        return path
    # Part names are case-insensitive in a package.
    found = [name for name in parts if name.lower() == path.lower()]
    if len(found) != 1:
        raise Unsupported(f"no part {path}")
    return found[0]


def _sheet_tags(workbook: str) -> list[re.Match[str]]:
    block = _element(workbook, "sheets")
    if block is None:
        return []
    return list(_start("sheet").finditer(workbook, *block[2:]))


def _sheets_scope(workbook: str) -> dict[str, str]:
    """The namespace prefixes in scope inside <sheets>: those its root and it declare. A <sheet> may declare
    more itself: openpyxl with lxml installed declares the relationships' prefix on each one."""
    root = _ANY_TAG.search(workbook)
    sheets = _start("sheets").search(workbook)
    assert root is not None
    return {**_declared(_attrs(root.group(3))), **(_declared(_attrs(sheets.group(1))) if sheets else {})}


# --- the annotated copy -------------------------------------------------------------------------------------


def annotated(package: Package, marks: Iterable[Mark], summary: PlainSheet, *, author: str,
              keep_protected: str) -> bytes:
    """The copy: each mark's cell filled and commented, `summary` as the first, active sheet, protection
    removed from every sheet but `keep_protected` and from the workbook's structure, macros dropped."""
    out = {name: content for name, content in package.parts.items() if not _macro_part(name)}
    new: dict[str, str] = {}
    names = _Names(package.parts)
    styles = _Styles(package.text(package.styles))
    overrides: list[tuple[str, str]] = []
    by_sheet: dict[str, list[Mark]] = {}
    for mark in marks:
        by_sheet.setdefault(mark.sheet, []).append(mark)
    block = 1  # VML shape ids come in blocks of 1,024, one block map per drawing; no other drawing has any
    for sheet, part in package.sheets.items():
        text = package.text(part)
        edits = _unselected(text)
        if sheet != keep_protected:
            edits += _unprotected(text)
        here = sorted(by_sheet.get(sheet, ()), key=lambda m: _row_col(m.address))
        if here:
            comments = names.fresh("xl/comments{}.xml")
            drawing = names.fresh("xl/drawings/vmlDrawing{}.vml")
            rels_name = _rels_of(part)
            rels = package.text(rels_name) if rels_name in package.parts else _EMPTY_RELS
            vml_id, rels = _with_relationships(rels, [(COMMENTS, "/" + comments), (VML_DRAWING, "/" + drawing)])
            edits += _restyled(text, here, styles)
            edits.append(_legacy_drawing(text, vml_id))
            new[comments] = _comments_xml(author, here)
            new[drawing], block = _vml_xml(here, block)
            new[rels_name] = rels
            overrides.append(("/" + comments, COMMENTS_TYPE))
        if edits:
            out[part] = _spliced(text, edits).encode("utf-8")
    summary_part = names.fresh("xl/worksheets/sheet{}.xml")
    new[summary_part] = _plain_sheet_xml(summary, styles.look)
    overrides.append(("/" + summary_part, WORKSHEET_TYPE))
    out[package.styles] = styles.text().encode("utf-8")
    summary_id, rels = _with_relationships(
        _without_macros(package.text("xl/_rels/workbook.xml.rels"), package), [(WORKSHEET, "/" + summary_part)]
    )
    out["xl/_rels/workbook.xml.rels"] = rels.encode("utf-8")
    out["xl/workbook.xml"] = _workbook_xml(package.text("xl/workbook.xml"), summary, summary_id).encode("utf-8")
    types = _types_xml(package, out.keys() | new.keys(), overrides, vml=bool(by_sheet))
    out["[Content_Types].xml"] = types.encode("utf-8")
    for name, text in new.items():
        out[name] = text.encode("utf-8")
    for name, content in out.items():
        if name.lower().endswith((".xml", ".rels", ".vml")):
            _check_well_formed(name, content)
    return _zipped(out)


def _macro_part(name: str) -> bool:
    """A part of an .xlsm's VBA project: vbaProject.bin, its signatures and relationships, vbaData.xml."""
    return posixpath.basename(name).lower().startswith("vba")


def _without_macros(rels: str, package: Package) -> str:
    """The workbook's relationships without those to the VBA project."""
    cut = [
        rel.span for rel in _relationships(package, "xl/_rels/workbook.xml.rels").values()
        if not rel.external and _macro_part(rel.target)
    ]
    return _spliced(rels, [(a, b, "") for a, b in cut])


def _zipped(parts: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, content in parts.items():
            entry = zipfile.ZipInfo(name, ZIP_TIME)  # the same workbook gives the same bytes
            entry.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(entry, content)
    return out.getvalue()


class _Names:
    """Fresh part names, none equal (ignoring case, as packages do) to one taken."""

    def __init__(self, taken: Iterable[str]):
        self.taken = {name.lower() for name in taken}

    def fresh(self, pattern: str) -> str:
        n = 1
        while pattern.format(n).lower() in self.taken:
            n += 1
        name = pattern.format(n)
        self.taken.add(name.lower())
        return name


def _check_well_formed(name: str, content: bytes) -> None:
    parser = DefusedXMLParser(target=_Discard(), forbid_dtd=True)  # no DTD, so no entity is ever expanded
    # With a target that builds nothing, ElementTree's parser hands every tag and text to a Python default
    # handler; unset, expat checks the bytes in C (three times faster), defusedxml's refusals still set.
    parser.parser.DefaultHandlerExpand = None
    try:
        parser.feed(content)
        parser.close()
    except Exception as exc:  # expat's ParseError and defusedxml's refusals
        raise Unsupported(f"{name} is not well-formed XML: {exc!r}") from None


class _Discard:
    """A parser target that builds nothing: only whether the XML is well-formed is wanted."""

    def close(self) -> None:
        return None


# --- worksheets -------------------------------------------------------------------------------------------

Edit = tuple[int, int, str]  # text[start:end] becomes the string


def _unselected(text: str) -> list[Edit]:
    """The sheet's tab not selected: else Excel opens the copy with this sheet and 校验结果 grouped."""
    block = _element(text, "sheetViews")
    if block is None:
        return []
    return [
        (m.start(), m.end(), _with_attrs(m, {"tabSelected": None}))
        for m in _start("sheetView").finditer(text, *block[2:])
        if "tabSelected" in _attrs(m.group(1))
    ]


def _unprotected(text: str) -> list[Edit]:
    """Without sheet protection, so that the unit can correct the marked cells in this very copy."""
    found = _element(text, "sheetProtection")
    return [] if found is None else [(found[0], found[1], "")]


def _restyled(text: str, marks: list[Mark], styles: _Styles) -> list[Edit]:
    """Each mark's cell given a copy of its style with the mark's fill; a cell not written yet is added,
    in its row (a new row where there is none), keeping rows and cells in order."""
    data = _element(text, "sheetData")
    if data is None:
        raise Unsupported("a worksheet without sheetData")
    rows = [_Row.of(text, m) for m in _start("row").finditer(text, *data[2:])]
    numbers = [row.number for row in rows]
    if numbers != sorted(set(numbers)):
        raise Unsupported("rows out of order")
    wanted: dict[int, list[tuple[int, Mark]]] = {}
    for mark in marks:
        row, col = _row_col(mark.address)
        wanted.setdefault(row, []).append((col, mark))
    edits: list[Edit] = []
    new_rows: dict[int, str] = {}  # where -> the rows added there, in order
    for number, cells in sorted(wanted.items()):
        i = bisect.bisect_left(numbers, number)
        if i < len(rows) and numbers[i] == number:
            edits += rows[i].restyled(text, cells, styles)
            continue
        where = rows[i].start if i < len(rows) else data[3]
        added = "".join(_new_cell(col, number, mark, styles) for col, mark in sorted(cells, key=lambda c: c[0]))
        new_rows[where] = new_rows.get(where, "") + f'<row r="{number}">{added}</row>'
    if new_rows and data[2] == data[1]:  # <sheetData/>
        edits.append((data[0], data[1], f"<sheetData>{''.join(new_rows.values())}</sheetData>"))
    else:
        edits += [(where, where, added) for where, added in new_rows.items()]
    return edits + _dimension(text, [_row_col(m.address) for m in marks])


def _new_cell(col: int, row: int, mark: Mark, styles: _Styles) -> str:
    return f'<c r="{column_letters(col)}{row}" s="{styles.filled(0, mark.fill)}"/>'


@dataclass(frozen=True)
class _Row:
    number: int
    start: int
    tag: re.Match[str]
    end: int  # of the whole row element
    content: tuple[int, int]  # where its cells are (an empty range for <row/>)

    @staticmethod
    def of(text: str, tag: re.Match[str]) -> _Row:
        number = _attrs(tag.group(1)).get("r", "")
        if not number.isdigit():
            raise Unsupported("a row without its number")
        if tag.group(2):
            return _Row(int(number), tag.start(), tag, tag.end(), (tag.end(), tag.end()))
        close = _end("row").search(text, tag.end())
        if close is None:
            raise Unsupported("a row without its end")
        return _Row(int(number), tag.start(), tag, close.end(), (tag.end(), close.start()))

    def restyled(self, text: str, wanted: list[tuple[int, Mark]], styles: _Styles) -> list[Edit]:
        cells = []
        for m in _start("c").finditer(text, *self.content):
            row, col = _row_col(_attrs(m.group(1)).get("r", ""))
            if row != self.number:
                raise Unsupported("a cell outside its row")
            cells.append((col, m))
        cols = [col for col, _ in cells]
        if cols != sorted(set(cols)):
            raise Unsupported("cells out of order")
        edits: list[Edit] = []
        added: dict[int, str] = {}
        for col, mark in sorted(wanted, key=lambda w: w[0]):
            i = bisect.bisect_left(cols, col)
            if i < len(cols) and cols[i] == col:
                tag = cells[i][1]
                xf = _attrs(tag.group(1)).get("s", "0")
                if not xf.isdigit():
                    raise Unsupported("a cell style that is not a number")
                restyled = _with_attrs(tag, {"s": str(styles.filled(int(xf), mark.fill))})
                edits.append((tag.start(), tag.end(), restyled))
                continue
            where = cells[i][1].start() if i < len(cols) else self.content[1]
            added[where] = added.get(where, "") + _new_cell(col, self.number, mark, styles)
        if not added:
            return edits
        # `spans` only hints at the row's columns; a new cell may lie outside it, so it goes.
        start_tag = _with_attrs(self.tag, {"spans": None})
        if self.tag.group(2):  # <row …/>: the new cells are all it holds
            return [(self.start, self.end, start_tag[:-2] + ">" + "".join(added.values()) + "</row>")]
        edits.append((self.tag.start(), self.tag.end(), start_tag))
        edits += [(where, where, cells_text) for where, cells_text in added.items()]
        return edits


def _dimension(text: str, cells: list[tuple[int, int]]) -> list[Edit]:
    """The sheet's used range grown to the cells added."""
    found = _element(text, "dimension")
    if found is None:
        return []
    tag = _start("dimension").match(text, found[0])
    assert tag is not None
    try:
        min_col, min_row, max_col, max_row = range_boundaries(_attrs(tag.group(1)).get("ref", ""))
    except (ValueError, TypeError):
        return []
    if None in (min_col, min_row, max_col, max_row):
        return []
    rows = [r for r, _ in cells] + [min_row, max_row]
    cols = [c for _, c in cells] + [min_col, max_col]
    ref = f"{column_letters(min(cols))}{min(rows)}:{column_letters(max(cols))}{max(rows)}"
    if (min(cols), min(rows), max(cols), max(rows)) == (min_col, min_row, max_col, max_row):
        return []
    return [(found[0], found[1], f'<dimension ref="{ref}"/>')]


def _legacy_drawing(text: str, rid: str) -> Edit:
    """<legacyDrawing> (the comments' VML drawing) where the schema's order of a worksheet's children
    puts it; the relationships namespace is declared on it, since the sheet may not declare it."""
    data = _element(text, "sheetData")
    root_end = text.rfind("</worksheet")
    if data is None or root_end < data[1]:
        raise Unsupported("a worksheet without its end")
    at = root_end
    for name, start in _children(text, data[1], root_end):
        if name == "legacyDrawing" or name.endswith(":AlternateContent"):
            raise Unsupported(f"a marked sheet with {name}")
        if name in AFTER_LEGACY_DRAWING:
            at = start
            break
    return (at, at, f'<legacyDrawing xmlns:r="{DOC_RELS}" r:id="{rid}"/>')


def _rels_of(part: str) -> str:
    folder, name = posixpath.split(part)
    return posixpath.join(folder, "_rels", name + ".rels")


_EMPTY_RELS = f'{DECLARATION}<Relationships xmlns="{RELS}"></Relationships>'


def _with_relationships(rels: str, added: list[tuple[str, str]]) -> tuple[str, str]:
    """`rels` with a relationship of each (type, absolute target) added; the id of the last one."""
    _root(rels, "Relationships", RELS)
    taken = {_attrs(m.group(1)).get("Id", "") for m in _start("Relationship").finditer(rels)}
    items = []
    rid = ""
    n = 1
    for kind, target in added:
        while f"rId{n}" in taken:
            n += 1
        rid = f"rId{n}"
        taken.add(rid)
        items.append(f'<Relationship Id="{rid}" Type="{kind}" Target="{_attr(target)}"/>')
    return rid, _inserted_at_end(rels, "Relationships", "".join(items))


# --- comments ---------------------------------------------------------------------------------------------


def _comments_xml(author: str, marks: list[Mark]) -> str:
    items = "".join(
        f'<comment ref="{m.address}" authorId="0">'
        f'<text><t xml:space="preserve">{_escape(m.note)}</t></text></comment>'
        for m in marks
    )
    return (
        f'{DECLARATION}<comments xmlns="{MAIN}"><authors><author>{_escape(author)}</author></authors>'
        f"<commentList>{items}</commentList></comments>"
    )


def _vml_xml(marks: list[Mark], block: int) -> tuple[str, int]:
    """The legacy drawing Excel shows comments with (and WPS and LibreOffice read), hidden until the
    mouse is over the cell; the next free block of shape ids."""
    blocks = len(marks) // 1024 + 1  # ids block*1024+1 onward, 1,023 a block after the first
    shapes = []
    for i, m in enumerate(marks):
        row, col = _row_col(m.address)
        shapes.append(
            f'<v:shape id="_x0000_s{block * 1024 + 1 + i}" type="#_x0000_t202" '
            'style="position:absolute; margin-left:59.25pt;margin-top:1.5pt;'
            f'width:{m.width}px;height:{m.height}px;z-index:1;visibility:hidden" '
            'fillcolor="#ffffe1" o:insetmode="auto">'
            '<v:fill color2="#ffffe1"/><v:shadow on="t" color="black" obscured="t"/>'
            '<v:path o:connecttype="none"/><v:textbox style="mso-direction-alt:auto">'
            '<div style="text-align:left"></div></v:textbox>'
            '<x:ClientData ObjectType="Note"><x:MoveWithCells/><x:SizeWithCells/><x:AutoFill>False</x:AutoFill>'
            f"<x:Row>{row - 1}</x:Row><x:Column>{col - 1}</x:Column></x:ClientData></v:shape>"
        )
    ids = ",".join(str(b) for b in range(block, block + blocks))
    text = (
        '<xml xmlns:v="urn:schemas-microsoft-com:vml" xmlns:o="urn:schemas-microsoft-com:office:office" '
        'xmlns:x="urn:schemas-microsoft-com:office:excel">'
        f'<o:shapelayout v:ext="edit"><o:idmap v:ext="edit" data="{ids}"/></o:shapelayout>'
        '<v:shapetype id="_x0000_t202" coordsize="21600,21600" o:spt="202" path="m,l,21600r21600,l21600,xe">'
        '<v:stroke joinstyle="miter"/><v:path gradientshapeok="t" o:connecttype="rect"/></v:shapetype>'
        f'{"".join(shapes)}</xml>'
    )
    return text, block + blocks


# --- styles -----------------------------------------------------------------------------------------------


class _Styles:
    """styles.xml with fonts, fills, borders and cell formats added at the end of their lists; the
    existing ones, and so every cell's look, stay as they are."""

    LISTS = ("fonts", "fills", "borders", "cellXfs")
    ITEMS = {"fonts": "font", "fills": "fill", "borders": "border", "cellXfs": "xf"}

    def __init__(self, text: str):
        _root(text, "styleSheet", MAIN)
        self.source = text
        self.blocks = {}
        self.counts = {}
        for name in self.LISTS:
            block = _element(text, name)
            if block is None or block[2] == block[3]:
                raise Unsupported(f"styles without {name}")
            self.blocks[name] = block
            self.counts[name] = sum(1 for _ in _start(self.ITEMS[name]).finditer(text, *block[2:]))
        self.xfs = [m.group(0) for m in _XF.finditer(text, *self.blocks["cellXfs"][2:])]
        if len(self.xfs) != self.counts["cellXfs"]:
            raise Unsupported("cell formats that cannot be told apart")
        self.added: dict[str, list[str]] = {name: [] for name in self.LISTS}
        self.ids: dict[tuple[str, str], int] = {}
        self.fills: dict[int, str] = {}  # id of a fill -> its XML, for the marks of one copy

    def filled(self, xf: int, fill: PatternFill) -> int:
        """A cell format like number `xf` but for its fill."""
        if xf >= len(self.xfs):
            raise Unsupported("a cell style beyond cellXfs")
        tag = _start("xf").match(self.xfs[xf])
        assert tag is not None
        if id(fill) not in self.fills:
            self.fills[id(fill)] = _xml(fill)
        fill_id = self._item("fills", self.fills[id(fill)])
        clone = _with_attrs(tag, {"fillId": str(fill_id), "applyFill": "1"})
        rest = self.xfs[xf][tag.end():]
        return self._item("cellXfs", clone + rest if not tag.group(2) else clone)

    def look(self, style: Style) -> int:
        """A cell format for a cell of a new sheet: General, with exactly `style`'s font, fill, border
        and alignment."""
        font_xml, fill_xml, border_xml, alignment = style.xml
        font = self._item("fonts", font_xml)
        fill = self._item("fills", fill_xml)
        border = self._item("borders", border_xml)
        xf = (
            f'<xf numFmtId="0" fontId="{font}" fillId="{fill}" borderId="{border}" xfId="0" applyFont="1" '
            'applyFill="1" applyBorder="1"'
        )
        if alignment:
            return self._item("cellXfs", f'{xf} applyAlignment="1">{alignment}</xf>')
        return self._item("cellXfs", f"{xf}/>")

    def _item(self, kind: str, xml: str) -> int:
        key = (kind, xml)
        if key not in self.ids:
            self.ids[key] = self.counts[kind] + len(self.added[kind])
            self.added[kind].append(xml)
        return self.ids[key]

    def text(self) -> str:
        edits: list[Edit] = []
        for name in self.LISTS:
            if not self.added[name]:
                continue
            start, _, inner_start, inner_end = self.blocks[name]
            tag = _start(name).match(self.source, start)
            assert tag is not None
            count = str(self.counts[name] + len(self.added[name]))
            edits.append((start, inner_start, _with_attrs(tag, {"count": count})))
            edits.append((inner_end, inner_end, "".join(self.added[name])))
        return _spliced(self.source, edits)


_XF = re.compile(r"<xf(?=[\s/>])(?:[^>\"']|\"[^\"]*\"|'[^']*')*?(?:/>|>.*?</xf\s*>)", re.S)


@functools.cache
def _xml(item: Font | PatternFill | Border | Alignment) -> str:
    """A style item as openpyxl writes it, so that the copy looks as the openpyxl path makes it."""
    return str(tostring(item.to_tree()).decode("utf-8"))


# --- the new sheet ----------------------------------------------------------------------------------------


def _plain_sheet_xml(sheet: PlainSheet, look: Callable[[Style], int]) -> str:
    rows: dict[int, list[Text]] = {}
    for t in sorted(sheet.texts, key=lambda t: (t.row, t.col)):
        rows.setdefault(t.row, []).append(t)
    heights = dict(sheet.heights)
    last_row = max([*rows, *heights, 1])
    last_col = max([t.col for t in sheet.texts] + [1])
    pane = ""
    if sheet.frozen_rows:
        top = f"A{sheet.frozen_rows + 1}"
        pane = (
            f'<pane ySplit="{sheet.frozen_rows}" topLeftCell="{top}" activePane="bottomLeft" state="frozen"/>'
            '<selection pane="bottomLeft" activeCell="A1" sqref="A1"/>'
        )
    cols = "".join(
        f'<col min="{c}" max="{c}" width="{_number(w)}" customWidth="1"/>' for c, w in sorted(sheet.widths)
    )
    looks: dict[int, int] = {}  # id of a Style -> its cell format: hashing openpyxl's styles is slow

    def style(t: Text) -> int:
        if id(t.style) not in looks:
            looks[id(t.style)] = look(t.style)
        return looks[id(t.style)]

    body = []
    for r in sorted(rows.keys() | heights.keys()):
        height = f' ht="{_number(heights[r])}" customHeight="1"' if r in heights else ""
        body.append(f'<row r="{r}"{height}>{"".join(_cell_xml(t, style(t)) for t in rows.get(r, ()))}</row>')
    merged = "".join(f'<mergeCell ref="{ref}"/>' for ref in sheet.merged)
    links = "".join(
        f'<hyperlink ref="{column_letters(t.col)}{t.row}" location="{_attr(t.link)}" '
        f'display="{_attr(t.text)}"/>'
        for t in sheet.texts
        if t.link
    )
    return "".join(
        [
            DECLARATION,
            f'<worksheet xmlns="{MAIN}"><sheetPr><pageSetUpPr fitToPage="1"/></sheetPr>',
            f'<dimension ref="A1:{column_letters(last_col)}{last_row}"/>',
            f'<sheetViews><sheetView tabSelected="1" workbookViewId="0">{pane}</sheetView></sheetViews>',
            '<sheetFormatPr baseColWidth="8" defaultRowHeight="15"/>',
            f"<cols>{cols}</cols>" if cols else "",
            f'<sheetData>{"".join(body)}</sheetData>',
            f'<mergeCells count="{len(sheet.merged)}">{merged}</mergeCells>' if merged else "",
            f"<hyperlinks>{links}</hyperlinks>" if links else "",
            '<pageMargins left="0.75" right="0.75" top="1" bottom="1" header="0.5" footer="0.5"/>',
            '<pageSetup paperSize="9" orientation="landscape" fitToWidth="1" fitToHeight="0"/>',
            "</worksheet>",
        ]
    )


def _cell_xml(t: Text, xf: int) -> str:
    ref = f"{column_letters(t.col)}{t.row}"
    if not t.text:
        return f'<c r="{ref}" s="{xf}"/>'
    space = ' xml:space="preserve"' if t.text != t.text.strip() else ""
    # An inline string: the shared strings need not change, and it is never read as a formula.
    return f'<c r="{ref}" s="{xf}" t="inlineStr"><is><t{space}>{_escape(t.text)}</t></is></c>'


def _number(value: float) -> str:
    return f"{value:g}"


# --- the workbook and the content types -------------------------------------------------------------------


def _workbook_xml(text: str, summary: PlainSheet, rid: str) -> str:
    """The summary sheet first, selected and active; every sheet-scoped name moved one place along; the
    structure no longer locked (so that the unit can delete 校验结果)."""
    edits: list[Edit] = []
    protection = _element(text, "workbookProtection")
    if protection is not None:
        edits.append((protection[0], protection[1], ""))
    views = _element(text, "bookViews")
    if views is not None:
        edits += [
            (m.start(), m.end(), _with_attrs(m, {"activeTab": "0", "firstSheet": "0"}))
            for m in _start("workbookView").finditer(text, *views[2:])
        ]
    tags = _sheet_tags(text)
    ids = [_attrs(m.group(1)).get("sheetId", "") for m in tags]
    if not all(i.isdigit() for i in ids):
        raise Unsupported("a sheet without its number")
    sheets = _element(text, "sheets")
    assert sheets is not None
    scope = _sheets_scope(text)
    # The relationships' prefix where <sheets> has one, else declared on the new sheet itself.
    r = next((prefix for prefix, uri in scope.items() if uri == DOC_RELS), None)
    declared = "" if r else f' xmlns:r="{DOC_RELS}"'
    edits.append(
        (sheets[2], sheets[2],
         f'<sheet{declared} name="{_attr(summary.title)}" sheetId="{max(map(int, ids)) + 1}" {r or "r"}:id="{rid}"/>')
    )
    titles = ""
    if summary.title_rows is not None:
        first, last = summary.title_rows
        quoted = "'" + summary.title.replace("'", "''") + "'"
        titles = (
            f'<definedName name="_xlnm.Print_Titles" localSheetId="0">{_escape(quoted)}!${first}:${last}'
            "</definedName>"
        )
    names = _element(text, "definedNames")
    if names is not None:
        for m in _start("definedName").finditer(text, *names[2:]):
            local = _attrs(m.group(1)).get("localSheetId")
            if local is None:
                continue
            if not local.isdigit():
                raise Unsupported("a sheet-scoped name without its sheet's number")
            edits.append((m.start(), m.end(), _with_attrs(m, {"localSheetId": str(int(local) + 1)})))
        if names[2] == names[1]:  # <definedNames/>
            edits.append((names[0], names[1], f"<definedNames>{titles}</definedNames>" if titles else ""))
        else:
            edits.append((names[2], names[2], titles))
    elif titles:
        root_end = text.rfind("</workbook")
        at = next((start for name, start in _children(text, sheets[1], root_end)
                   if name not in BEFORE_DEFINED_NAMES), root_end)
        edits.append((at, at, f"<definedNames>{titles}</definedNames>"))
    return _spliced(text, edits)


def _types_xml(package: Package, parts: Iterable[str], overrides: list[tuple[str, str]], *, vml: bool) -> str:
    """The content types of the copy's parts: the workbook a plain one, the new parts declared, those
    dropped (the VBA project) no longer."""
    text = package.text("[Content_Types].xml")
    _root(text, "Types", TYPES)
    present = {"/" + name.lower() for name in parts}
    extensions = {posixpath.splitext(name)[1].lstrip(".").lower() for name in parts}
    edits: list[Edit] = []
    workbook = False
    has_vml = False
    for m in _start("Override").finditer(text):
        attrs = _attrs(m.group(1))
        name = attrs.get("PartName", "").lower()
        end = m.end() if m.group(2) else _closing(text, "Override", m.end())
        if name not in present:
            edits.append((m.start(), end, ""))
        elif name == "/xl/workbook.xml":
            kind = WORKBOOK_TYPES.get(attrs.get("ContentType", ""))
            if kind is None:
                raise Unsupported(f"a workbook of type {attrs.get('ContentType')}")
            edits.append((m.start(), m.end(), _with_attrs(m, {"ContentType": kind})))
            workbook = True
    for m in _start("Default").finditer(text):
        attrs = _attrs(m.group(1))
        extension = attrs.get("Extension", "").lower()
        if extension == "vml":
            has_vml = attrs.get("ContentType") == VML_TYPE
            if not has_vml:
                raise Unsupported("vml parts of another type")
        elif extension not in extensions and attrs.get("ContentType") == "application/vnd.ms-office.vbaProject":
            end = m.end() if m.group(2) else _closing(text, "Default", m.end())
            edits.append((m.start(), end, ""))
    if not workbook:
        raise Unsupported("no content type for the workbook")
    added = "".join(f'<Override PartName="{_attr(name)}" ContentType="{kind}"/>' for name, kind in overrides)
    if vml and not has_vml:
        added = f'<Default Extension="vml" ContentType="{VML_TYPE}"/>' + added
    root_end = text.rfind("</Types")
    if root_end < 0:
        raise Unsupported("content types without their end")
    edits.append((root_end, root_end, added))
    return _spliced(text, edits)


# --- XML, read and edited as text ---------------------------------------------------------------------------

_ATTRS = r"""(?:\s+[^\s=/>"'<]+\s*=\s*(?:"[^"<]*"|'[^'<]*'))*"""
_ATTR = re.compile(r"""([^\s=/>"'<]+)\s*=\s*(?:"([^"<]*)"|'([^'<]*)')""")
_ANY_TAG = re.compile(rf"<(/?)([^\s/>!?<]+)({_ATTRS})\s*(/?)>")
_FORMULA = re.compile(rf"<f(?=[\s/>])({_ATTRS})\s*(/>|>([^<]*)</f\s*>)")
# A formula cell as openpyxl writes it: no result, its <v> empty.
_OPENPYXL_FORMULA = re.compile(rf"<c(?=\s)({_ATTRS})\s*>(<f>[^<]*</f>)<v\s*/?>(?:</v>)?</c>")
_DECLARATION = re.compile(r"\A\ufeff?<\?xml(\s[^?]*)?\?>")
_ENCODING = re.compile(r"""encoding\s*=\s*["']([^"']*)["']""")
_XMLNS = re.compile(r"""\sxmlns\s*=""")
_A1 = re.compile(r"([A-Z]{1,3})([1-9]\d{0,6})")
_RANGE = re.compile(r"[A-Z]{1,3}[1-9]\d{0,6}(:[A-Z]{1,3}[1-9]\d{0,6})?")


@functools.cache
def _start(name: str) -> re.Pattern[str]:
    """The start (or empty-element) tag of `name`: group 1 its attributes, group 2 "/" if empty."""
    return re.compile(rf"<{re.escape(name)}(?=[\s/>])({_ATTRS})\s*(/?)>")


@functools.cache
def _end(name: str) -> re.Pattern[str]:
    return re.compile(rf"</{re.escape(name)}\s*>")


def _decoded(name: str, content: bytes) -> str:
    """The text of an XML part this module reads or edits, if it is plain enough to edit as text: UTF-8,
    with no DTD, comment, CDATA section or processing instruction, whose markup could hide a tag."""
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError:
        raise Unsupported(f"{name} is not UTF-8") from None
    declaration = _DECLARATION.match(text)
    body = declaration.end() if declaration else 0
    if declaration:
        encoding = _ENCODING.search(declaration.group(1) or "")
        if encoding and encoding.group(1).lower().replace("_", "-") not in ("utf-8", "utf8"):
            raise Unsupported(f"{name} declares {encoding.group(1)}")
    if "<!" in text or "<?" in text[body:]:
        raise Unsupported(f"{name} has a DTD, comment, CDATA or processing instruction")
    return text


def _root(text: str, name: str, namespace: str) -> None:
    """The part's root is `name` in `namespace`, declared as the default namespace and only there: no
    element is then in that namespace under a prefix, where the unprefixed patterns here would miss it."""
    m = _ANY_TAG.search(text)
    if m is None or m.group(1) or m.group(2) != name:
        raise Unsupported(f"a root other than {name} (a prefixed namespace?)")
    if _attrs(m.group(3)).get("xmlns") != namespace:
        raise Unsupported(f"{name} in another namespace (strict OOXML?)")
    if len(_XMLNS.findall(text)) != 1 or text.count(f'"{namespace}"') + text.count(f"'{namespace}'") != 1:
        raise Unsupported(f"{name} declares its namespace twice")


def _declared(attrs: dict[str, str]) -> dict[str, str]:
    """The namespace prefixes an element's attributes declare: prefix -> namespace."""
    return {k[6:]: v for k, v in attrs.items() if k.startswith("xmlns:")}


def _prefix(scope: dict[str, str], namespace: str) -> str:
    """The prefix `scope` (see `_declared`) gives `namespace`."""
    found = [prefix for prefix, uri in scope.items() if uri == namespace]
    if not found:
        raise Unsupported(f"no prefix for {namespace}")
    return found[0]


def _attrs(attributes: str) -> dict[str, str]:
    return {m.group(1): _unescape(m.group(2) if m.group(2) is not None else m.group(3))
            for m in _ATTR.finditer(attributes)}


def _with_attrs(tag: re.Match[str], values: dict[str, str | None]) -> str:
    """The start tag matched by `tag` (a _start pattern) with attributes set, or removed where None."""
    name = tag.group(0)[1:].split(None, 1)[0].rstrip("/>")
    items = [(m.group(1), m.group(0)[m.end(1) - m.start(0):]) for m in _ATTR.finditer(tag.group(1))]
    kept = [f"{k}{raw}" for k, raw in items if k not in values]
    kept += [f'{k}="{_attr(v)}"' for k, v in values.items() if v is not None]
    return f"<{name}{''.join(' ' + a for a in kept)}{'/' if tag.group(2) else ''}>"


def _element(text: str, name: str) -> tuple[int, int, int, int] | None:
    """(start, end, content start, content end) of the first `name` element; one that contains another
    `name` is not looked for (none of those edited here does)."""
    tag = _start(name).search(text)
    if tag is None:
        return None
    if tag.group(2):
        return (tag.start(), tag.end(), tag.end(), tag.end())
    close = _end(name).search(text, tag.end())
    if close is None:
        raise Unsupported(f"<{name}> without its end")
    return (tag.start(), close.end(), tag.end(), close.start())


def _closing(text: str, name: str, after: int) -> int:
    close = _end(name).search(text, after)
    if close is None:
        raise Unsupported(f"<{name}> without its end")
    return close.end()


def _children(text: str, start: int, stop: int) -> Iterator[tuple[str, int]]:
    """(name, offset) of each element starting at the nesting level of `start`, up to `stop`."""
    depth = 0
    for m in _ANY_TAG.finditer(text, start, stop):
        if m.group(1):
            depth -= 1
            continue
        if depth == 0:
            yield m.group(2), m.start()
        if not m.group(4):
            depth += 1


def _inserted_at_end(text: str, root: str, added: str) -> str:
    end = text.rfind(f"</{root}")
    if end >= 0:
        return text[:end] + added + text[end:]
    m = _start(root).search(text)
    if m is None or not m.group(2):
        raise Unsupported(f"<{root}> without its end")
    return text[: m.start()] + _with_attrs(m, {})[:-2] + ">" + added + f"</{root}>" + text[m.end():]


def _spliced(text: str, edits: list[Edit]) -> str:
    """`text` with each (start, end, new) edit made; the edits must not overlap."""
    out = []
    at = 0
    for start, end, new in sorted(edits, key=lambda e: (e[0], e[1])):
        if start < at:
            raise Unsupported("edits that overlap")
        out += [text[at:start], new]
        at = end
    out.append(text[at:])
    return "".join(out)


def _row_col(address: str) -> tuple[int, int]:
    """The 1-based (row, column) of a cell address as the XML must write it (B7: no $, no lower case)."""
    if not _A1.fullmatch(address):
        raise Unsupported(f"a cell address {address!r}")
    row, col = cell_position(address)
    return row + 1, col + 1


_ENTITY = re.compile(r"&(#x[0-9A-Fa-f]+|#[0-9]+|amp|lt|gt|quot|apos);")
_NAMED = {"amp": "&", "lt": "<", "gt": ">", "quot": '"', "apos": "'"}


def _unescape(text: str) -> str:
    return _ENTITY.sub(_character, text) if "&" in text else text


def _character(m: re.Match[str]) -> str:
    ref = m.group(1)
    if ref in _NAMED:
        return _NAMED[ref]
    return chr(int(ref[2:], 16) if ref[1] == "x" else int(ref[1:]))


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _attr(text: str) -> str:
    """An attribute value: quotes escaped, and white space an XML parser would fold into spaces kept."""
    return (
        _escape(text).replace('"', "&quot;").replace("\n", "&#10;").replace("\r", "&#13;").replace("\t", "&#9;")
    )
