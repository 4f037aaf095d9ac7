"""The XML of the parts of a unit's workbook that an annotated copy changes or adds, for xlsxpatch.py: a
marked cell's new style, the comments and the drawing Excel shows them with, the styles part with the
added looks, and the new 校验结果 sheet; and the values annotate.py describes them with.
"""

from __future__ import annotations

import bisect
import functools
import posixpath
import re
from collections.abc import Callable
from dataclasses import dataclass

from openpyxl.styles import Alignment, Border, Font, PatternFill
from openpyxl.utils.cell import range_boundaries
from openpyxl.xml.functions import tostring

from pipeline.model import column_letters
from pipeline.render.xmltext import (
    Edit,
    Unsupported,
    attribute_value,
    attributes,
    check_root,
    child_elements,
    end_tag,
    escape,
    find_element,
    inserted_at_end,
    row_col,
    spliced,
    start_tag,
    with_attributes,
)

MAIN = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
RELS = "http://schemas.openxmlformats.org/package/2006/relationships"
DOC_RELS = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
DECLARATION = '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
# What may follow <legacyDrawing> among a worksheet's children (ECMA-376 CT_Worksheet); it goes before
# the first of them that the sheet has.
AFTER_LEGACY_DRAWING = frozenset(
    {
        "legacyDrawingHF",
        "drawingHF",
        "picture",
        "oleObjects",
        "controls",
        "webPublishItems",
        "tableParts",
        "extLst",
    }
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
        alignment = style_xml(self.alignment) if self.alignment is not None else ""
        return (
            style_xml(self.font),
            style_xml(self.fill or PatternFill()),
            style_xml(self.border or Border()),
            alignment,
        )


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


# --- worksheets -------------------------------------------------------------------------------------------


def unselected(text: str) -> list[Edit]:
    """The sheet's tab not selected: else Excel opens the copy with this sheet and 校验结果 grouped."""
    block = find_element(text, "sheetViews")
    if block is None:
        return []
    return [
        (m.start(), m.end(), with_attributes(m, {"tabSelected": None}))
        for m in start_tag("sheetView").finditer(text, *block[2:])
        if "tabSelected" in attributes(m.group(1))
    ]


def restyled(text: str, marks: list[Mark], styles: Styles) -> list[Edit]:
    """Each mark's cell given a copy of its style with the mark's fill; a cell not written yet is added,
    in its row (a new row where there is none), keeping rows and cells in order."""
    data = find_element(text, "sheetData")
    if data is None:
        raise Unsupported("a worksheet without sheetData")
    rows = [_Row.of(text, m) for m in start_tag("row").finditer(text, *data[2:])]
    numbers = [row.number for row in rows]
    if numbers != sorted(set(numbers)):
        raise Unsupported("rows out of order")
    wanted: dict[int, list[tuple[int, Mark]]] = {}
    for mark in marks:
        row, col = row_col(mark.address)
        wanted.setdefault(row, []).append((col, mark))
    edits: list[Edit] = []
    new_rows: dict[int, str] = {}  # where -> the rows added there, in order
    for number, cells in sorted(wanted.items()):
        i = bisect.bisect_left(numbers, number)
        if i < len(rows) and numbers[i] == number:
            edits += rows[i].restyled(text, cells, styles)
            continue
        where = rows[i].start if i < len(rows) else data[3]
        added = "".join(
            _new_cell(col, number, mark, styles) for col, mark in sorted(cells, key=lambda c: c[0])
        )
        new_rows[where] = new_rows.get(where, "") + f'<row r="{number}">{added}</row>'
    if new_rows and data[2] == data[1]:  # <sheetData/>
        edits.append((data[0], data[1], f"<sheetData>{''.join(new_rows.values())}</sheetData>"))
    else:
        edits += [(where, where, added) for where, added in new_rows.items()]
    return edits + _dimension(text, [row_col(m.address) for m in marks])


def _new_cell(col: int, row: int, mark: Mark, styles: Styles) -> str:
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
        number = attributes(tag.group(1)).get("r", "")
        if not number.isdigit():
            raise Unsupported("a row without its number")
        if tag.group(2):
            return _Row(int(number), tag.start(), tag, tag.end(), (tag.end(), tag.end()))
        close = end_tag("row").search(text, tag.end())
        if close is None:
            raise Unsupported("a row without its end")
        return _Row(int(number), tag.start(), tag, close.end(), (tag.end(), close.start()))

    def restyled(self, text: str, wanted: list[tuple[int, Mark]], styles: Styles) -> list[Edit]:
        cells = []
        for m in start_tag("c").finditer(text, *self.content):
            row, col = row_col(attributes(m.group(1)).get("r", ""))
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
                xf = attributes(tag.group(1)).get("s", "0")
                if not xf.isdigit():
                    raise Unsupported("a cell style that is not a number")
                restyled = with_attributes(tag, {"s": str(styles.filled(int(xf), mark.fill))})
                edits.append((tag.start(), tag.end(), restyled))
                continue
            where = cells[i][1].start() if i < len(cols) else self.content[1]
            added[where] = added.get(where, "") + _new_cell(col, self.number, mark, styles)
        if not added:
            return edits
        # `spans` only hints at the row's columns; a new cell may lie outside it, so it goes.
        opening = with_attributes(self.tag, {"spans": None})
        if self.tag.group(2):  # <row …/>: the new cells are all it holds
            return [(self.start, self.end, opening[:-2] + ">" + "".join(added.values()) + "</row>")]
        edits.append((self.tag.start(), self.tag.end(), opening))
        edits += [(where, where, cells_text) for where, cells_text in added.items()]
        return edits


def _dimension(text: str, cells: list[tuple[int, int]]) -> list[Edit]:
    """The sheet's used range grown to the cells added."""
    found = find_element(text, "dimension")
    if found is None:
        return []
    tag = start_tag("dimension").match(text, found[0])
    assert tag is not None
    try:
        min_col, min_row, max_col, max_row = range_boundaries(attributes(tag.group(1)).get("ref", ""))
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


def legacy_drawing(text: str, rid: str) -> Edit:
    """<legacyDrawing> (the comments' VML drawing) where the schema's order of a worksheet's children
    puts it; the relationships namespace is declared on it, since the sheet may not declare it."""
    data = find_element(text, "sheetData")
    root_end = text.rfind("</worksheet")
    if data is None or root_end < data[1]:
        raise Unsupported("a worksheet without its end")
    at = root_end
    for name, start in child_elements(text, data[1], root_end):
        if name == "legacyDrawing" or name.endswith(":AlternateContent"):
            raise Unsupported(f"a marked sheet with {name}")
        if name in AFTER_LEGACY_DRAWING:
            at = start
            break
    return (at, at, f'<legacyDrawing xmlns:r="{DOC_RELS}" r:id="{rid}"/>')


def rels_of(part: str) -> str:
    folder, name = posixpath.split(part)
    return posixpath.join(folder, "_rels", name + ".rels")


EMPTY_RELS = f'{DECLARATION}<Relationships xmlns="{RELS}"></Relationships>'


def with_relationships(rels: str, added: list[tuple[str, str]]) -> tuple[str, str]:
    """`rels` with a relationship of each (type, absolute target) added; the id of the last one."""
    check_root(rels, "Relationships", RELS)
    taken = {attributes(m.group(1)).get("Id", "") for m in start_tag("Relationship").finditer(rels)}
    items = []
    rid = ""
    n = 1
    for kind, target in added:
        while f"rId{n}" in taken:
            n += 1
        rid = f"rId{n}"
        taken.add(rid)
        items.append(f'<Relationship Id="{rid}" Type="{kind}" Target="{attribute_value(target)}"/>')
    return rid, inserted_at_end(rels, "Relationships", "".join(items))


# --- comments ---------------------------------------------------------------------------------------------


def comments_xml(author: str, marks: list[Mark]) -> str:
    items = "".join(
        f'<comment ref="{m.address}" authorId="0">'
        f'<text><t xml:space="preserve">{escape(m.note)}</t></text></comment>'
        for m in marks
    )
    return (
        f'{DECLARATION}<comments xmlns="{MAIN}"><authors><author>{escape(author)}</author></authors>'
        f"<commentList>{items}</commentList></comments>"
    )


def vml_xml(marks: list[Mark], block: int) -> tuple[str, int]:
    """The legacy drawing Excel shows comments with (and WPS and LibreOffice read), hidden until the
    mouse is over the cell; the next free block of shape ids."""
    blocks = len(marks) // 1024 + 1  # ids block*1024+1 onward, 1,023 a block after the first
    shapes = []
    for i, m in enumerate(marks):
        row, col = row_col(m.address)
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
        f"{''.join(shapes)}</xml>"
    )
    return text, block + blocks


# --- styles -----------------------------------------------------------------------------------------------


class Styles:
    """styles.xml with fonts, fills, borders and cell formats added at the end of their lists; the
    existing ones, and so every cell's look, stay as they are."""

    LISTS = ("fonts", "fills", "borders", "cellXfs")
    ITEMS = {"fonts": "font", "fills": "fill", "borders": "border", "cellXfs": "xf"}

    def __init__(self, text: str):
        check_root(text, "styleSheet", MAIN)
        self.source = text
        self.blocks = {}
        self.counts = {}
        for name in self.LISTS:
            block = find_element(text, name)
            if block is None or block[2] == block[3]:
                raise Unsupported(f"styles without {name}")
            self.blocks[name] = block
            self.counts[name] = sum(1 for _ in start_tag(self.ITEMS[name]).finditer(text, *block[2:]))
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
        tag = start_tag("xf").match(self.xfs[xf])
        assert tag is not None
        if id(fill) not in self.fills:
            self.fills[id(fill)] = style_xml(fill)
        fill_id = self._item("fills", self.fills[id(fill)])
        clone = with_attributes(tag, {"fillId": str(fill_id), "applyFill": "1"})
        rest = self.xfs[xf][tag.end() :]
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
            tag = start_tag(name).match(self.source, start)
            assert tag is not None
            count = str(self.counts[name] + len(self.added[name]))
            edits.append((start, inner_start, with_attributes(tag, {"count": count})))
            edits.append((inner_end, inner_end, "".join(self.added[name])))
        return spliced(self.source, edits)


_XF = re.compile(r"<xf(?=[\s/>])(?:[^>\"']|\"[^\"]*\"|'[^']*')*?(?:/>|>.*?</xf\s*>)", re.S)


@functools.cache
def style_xml(item: Font | PatternFill | Border | Alignment) -> str:
    """A style item as openpyxl writes it, so that the copy looks as the openpyxl path makes it."""
    return str(tostring(item.to_tree()).decode("utf-8"))


# --- the new sheet ----------------------------------------------------------------------------------------


def plain_sheet_xml(sheet: PlainSheet, look: Callable[[Style], int]) -> str:
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
        f'<hyperlink ref="{column_letters(t.col)}{t.row}" location="{attribute_value(t.link)}" '
        f'display="{attribute_value(t.text)}"/>'
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
            f"<sheetData>{''.join(body)}</sheetData>",
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
    return f'<c r="{ref}" s="{xf}" t="inlineStr"><is><t{space}>{escape(t.text)}</t></is></c>'


def _number(value: float) -> str:
    return f"{value:g}"
