"""A unit's .xlsx annotated by editing the XML of its package, for annotate.py; and the one place that
edits workbook XML at all (`saved` also gives openpyxl's own output its formula results and fixed times).

It replaces openpyxl's load and save of the unit's whole workbook to mark a few cells, which costs many
times the processor time of this edit (`bench/annotate.py`; the figures are in docs/SCALING.md) and was
the largest per-file cost of a national run. Only the parts that must change are rewritten, by small textual edits
at element boundaries (xmltext.py; the parts' new XML is xlsxparts.py's): re-serialising with a parser
would rename namespace prefixes and break `mc:Ignorable="x14ac …"`, which makes Excel call the file
corrupt. Every other part is copied byte for byte. Each XML part of the copy is parsed once with
defusedxml before it is written, so that a file this module misreads, or one that was malformed
already, falls back to openpyxl instead of going out broken.

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

import copy
import datetime as dt
import io
import posixpath
import re
import zipfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from defusedxml.ElementTree import DefusedXMLParser
from openpyxl import Workbook
from openpyxl.xml.functions import tostring

from pipeline.render.xlsxparts import (
    DOC_RELS,
    EMPTY_RELS,
    MAIN,
    RELS,
    Mark,
    PlainSheet,
    Styles,
    comments_xml,
    legacy_drawing,
    plain_sheet_xml,
    rels_of,
    restyled,
    unselected,
    vml_xml,
    with_relationships,
)
from pipeline.render.xmltext import (
    ANY_TAG,
    ATTRS,
    RANGE,
    Edit,
    Unsupported,
    attribute_value,
    attributes,
    check_root,
    child_elements,
    declared_prefixes,
    decoded_part,
    end_of,
    escape,
    find_element,
    prefix_of,
    row_col,
    spliced,
    start_tag,
    unescape,
    with_attributes,
)

TYPES = "http://schemas.openxmlformats.org/package/2006/content-types"
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

# What may follow <definedNames> among a workbook's children, besides what comes before it.
BEFORE_DEFINED_NAMES = frozenset(
    {
        "fileVersion",
        "fileSharing",
        "workbookPr",
        "workbookProtection",
        "bookViews",
        "sheets",
        "functionGroups",
        "externalReferences",
    }
)
_FORMULA = re.compile(rf"<f(?=[\s/>])({ATTRS})\s*(/>|>([^<]*)</f\s*>)")
# A formula cell as openpyxl writes it: no result, its <v> empty.
_OPENPYXL_FORMULA = re.compile(rf"<c(?=\s)({ATTRS})\s*>(<f>[^<]*</f>)<v\s*/?>(?:</v>)?</c>")


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
        tag = start_tag("c").match(m.group(0))
        assert tag is not None
        found = results.get(attributes(tag.group(1)).get("r", ""))
        if found is None:
            return m.group(0)
        value, kind = found
        start = with_attributes(tag, {"t": kind if kind in ("b", "e", "str") else None})
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
            self.texts[name] = decoded_part(name, self.parts[name])
        return self.texts[name]

    def merged(self, sheet: str) -> list[str]:
        """The merged ranges of `sheet`, as A1:B2 references."""
        if sheet not in self.merges:
            text = self.text(self.sheets[sheet])
            block = find_element(text, "mergeCells")
            found = start_tag("mergeCell").finditer(text, *block[2:]) if block is not None else ()
            refs = [attributes(m.group(1)).get("ref", "") for m in found]
            if not all(RANGE.fullmatch(ref) for ref in refs):
                raise Unsupported("a merged range that is not one")
            self.merges[sheet] = refs
        return self.merges[sheet]

    def formulas(self) -> Iterator[str]:
        """Every cell formula of the worksheets, as "=…" (shared formulas once, where their text is)."""
        for part in self.sheets.values():
            for m in _FORMULA.finditer(self.text(part)):
                kind = attributes(m.group(1)).get("t", "normal")
                if kind in ("array", "dataTable"):
                    raise Unsupported(f"an {kind} formula")
                if m.group(3) is not None:
                    yield "=" + unescape(m.group(3))


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
    check_root(workbook, "workbook", MAIN)
    scope = _sheets_scope(workbook)
    for m in _sheet_tags(workbook):
        attrs = attributes(m.group(1))
        rel = rels.get(attrs.get(f"{prefix_of({**scope, **declared_prefixes(attrs)}, DOC_RELS)}:id", ""))
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
        check_root(package.text(part), "worksheet", MAIN)
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
    except (
        zipfile.BadZipFile,
        zipfile.LargeZipFile,
        OSError,
        EOFError,
        ValueError,
        RuntimeError,
        NotImplementedError,
    ) as exc:
        raise Unsupported(f"zip: {exc!r}") from None
    return parts


_NOTE_PARTS = re.compile(r"(^|/)(comments/.*|comments[^/]*\.xml|threadedcomments/.*|[^/]*\.vml)$")


def _has_notes(name: str, content: bytes) -> bool:
    """Comments, threaded comments or VML drawings (legacy drawings: comments, form controls, header
    pictures) in the package, by part name or by a relationship to them."""
    if _NOTE_PARTS.search(name.lower()):
        return True
    if name.endswith(".rels"):
        kinds = (b'/comments"', b"/comments'", b"vmlDrawing", b"threadedComment")
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
    check_root(text, "Relationships", RELS)
    out = {}
    for m in start_tag("Relationship").finditer(text):
        attrs = attributes(m.group(1))
        end = m.end() if m.group(2) else end_of(text, "Relationship", m.end())
        rel = _Rel(
            attrs.get("Id", ""),
            attrs.get("Type", ""),
            attrs.get("Target", ""),
            attrs.get("TargetMode", "") == "External",
            (m.start(), end),
        )
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
    block = find_element(workbook, "sheets")
    if block is None:
        return []
    return list(start_tag("sheet").finditer(workbook, *block[2:]))


def _sheets_scope(workbook: str) -> dict[str, str]:
    """The namespace prefixes in scope inside <sheets>: those its root and it declare. A <sheet> may declare
    more itself: openpyxl with lxml installed declares the relationships' prefix on each one."""
    root = ANY_TAG.search(workbook)
    sheets = start_tag("sheets").search(workbook)
    assert root is not None
    return {
        **declared_prefixes(attributes(root.group(3))),
        **(declared_prefixes(attributes(sheets.group(1))) if sheets else {}),
    }


# --- the annotated copy -------------------------------------------------------------------------------------


def annotated(package: Package, marks: Iterable[Mark], summary: PlainSheet, *, author: str) -> bytes:
    """The copy: each mark's cell filled and commented, `summary` as the first, active sheet, protection
    removed from the workbook's structure (so 校验结果 can be deleted), macros dropped; each sheet keeps
    its own protection (the template's 合计 formulas stay locked)."""
    out = {name: content for name, content in package.parts.items() if not _macro_part(name)}
    new: dict[str, str] = {}
    names = _Names(package.parts)
    styles = Styles(package.text(package.styles))
    overrides: list[tuple[str, str]] = []
    by_sheet: dict[str, list[Mark]] = {}
    for mark in marks:
        by_sheet.setdefault(mark.sheet, []).append(mark)
    block = 1  # VML shape ids come in blocks of 1,024, one block map per drawing; no other drawing has any
    for sheet, part in package.sheets.items():
        text = package.text(part)
        edits = unselected(text)
        here = sorted(by_sheet.get(sheet, ()), key=lambda m: row_col(m.address))
        if here:
            comments = names.fresh("xl/comments{}.xml")
            drawing = names.fresh("xl/drawings/vmlDrawing{}.vml")
            rels_name = rels_of(part)
            rels = package.text(rels_name) if rels_name in package.parts else EMPTY_RELS
            vml_id, rels = with_relationships(
                rels, [(COMMENTS, "/" + comments), (VML_DRAWING, "/" + drawing)]
            )
            edits += restyled(text, here, styles)
            edits.append(legacy_drawing(text, vml_id))
            new[comments] = comments_xml(author, here)
            new[drawing], block = vml_xml(here, block)
            new[rels_name] = rels
            overrides.append(("/" + comments, COMMENTS_TYPE))
        if edits:
            out[part] = spliced(text, edits).encode("utf-8")
    summary_part = names.fresh("xl/worksheets/sheet{}.xml")
    new[summary_part] = plain_sheet_xml(summary, styles.look)
    overrides.append(("/" + summary_part, WORKSHEET_TYPE))
    out[package.styles] = styles.text().encode("utf-8")
    summary_id, rels = with_relationships(
        _without_macros(package.text("xl/_rels/workbook.xml.rels"), package),
        [(WORKSHEET, "/" + summary_part)],
    )
    out["xl/_rels/workbook.xml.rels"] = rels.encode("utf-8")
    out["xl/workbook.xml"] = _workbook_xml(package.text("xl/workbook.xml"), summary, summary_id).encode(
        "utf-8"
    )
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
        rel.span
        for rel in _relationships(package, "xl/_rels/workbook.xml.rels").values()
        if not rel.external and _macro_part(rel.target)
    ]
    return spliced(rels, [(a, b, "") for a, b in cut])


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


# --- the workbook and the content types -------------------------------------------------------------------


def _workbook_xml(text: str, summary: PlainSheet, rid: str) -> str:
    """The summary sheet first, selected and active; every sheet-scoped name moved one place along; the
    structure no longer locked (so that the unit can delete 校验结果)."""
    edits: list[Edit] = []
    protection = find_element(text, "workbookProtection")
    if protection is not None:
        edits.append((protection[0], protection[1], ""))
    views = find_element(text, "bookViews")
    if views is not None:
        edits += [
            (m.start(), m.end(), with_attributes(m, {"activeTab": "0", "firstSheet": "0"}))
            for m in start_tag("workbookView").finditer(text, *views[2:])
        ]
    tags = _sheet_tags(text)
    ids = [attributes(m.group(1)).get("sheetId", "") for m in tags]
    if not all(i.isdigit() for i in ids):
        raise Unsupported("a sheet without its number")
    sheets = find_element(text, "sheets")
    assert sheets is not None
    scope = _sheets_scope(text)
    # The relationships' prefix where <sheets> has one, else declared on the new sheet itself.
    r = next((prefix for prefix, uri in scope.items() if uri == DOC_RELS), None)
    declared = "" if r else f' xmlns:r="{DOC_RELS}"'
    name, number = attribute_value(summary.title), max(map(int, ids)) + 1
    edits.append(
        (sheets[2], sheets[2], f'<sheet{declared} name="{name}" sheetId="{number}" {r or "r"}:id="{rid}"/>')
    )
    return spliced(text, edits + _names_moved(text, summary, sheets[1]))


def _names_moved(text: str, summary: PlainSheet, after_sheets: int) -> list[Edit]:
    """Every sheet-scoped defined name given to the sheet it belonged to, now one place along; the summary's
    print titles added (a <definedNames> made for them where there is none)."""
    edits: list[Edit] = []
    titles = ""
    if summary.title_rows is not None:
        first, last = summary.title_rows
        quoted = "'" + summary.title.replace("'", "''") + "'"
        titles = (
            f'<definedName name="_xlnm.Print_Titles" localSheetId="0">{escape(quoted)}!${first}:${last}'
            "</definedName>"
        )
    names = find_element(text, "definedNames")
    if names is not None:
        for m in start_tag("definedName").finditer(text, *names[2:]):
            local = attributes(m.group(1)).get("localSheetId")
            if local is None:
                continue
            if not local.isdigit():
                raise Unsupported("a sheet-scoped name without its sheet's number")
            edits.append((m.start(), m.end(), with_attributes(m, {"localSheetId": str(int(local) + 1)})))
        if names[2] == names[1]:  # <definedNames/>
            edits.append((names[0], names[1], f"<definedNames>{titles}</definedNames>" if titles else ""))
        else:
            edits.append((names[2], names[2], titles))
    elif titles:
        root_end = text.rfind("</workbook")
        children = child_elements(text, after_sheets, root_end)
        at = next((start for name, start in children if name not in BEFORE_DEFINED_NAMES), root_end)
        edits.append((at, at, f"<definedNames>{titles}</definedNames>"))
    return edits


def _types_xml(package: Package, parts: Iterable[str], overrides: list[tuple[str, str]], *, vml: bool) -> str:
    """The content types of the copy's parts: the workbook a plain one, the new parts declared, those
    dropped (the VBA project) no longer."""
    text = package.text("[Content_Types].xml")
    check_root(text, "Types", TYPES)
    present = {"/" + name.lower() for name in parts}
    extensions = {posixpath.splitext(name)[1].lstrip(".").lower() for name in parts}
    edits: list[Edit] = []
    workbook = False
    has_vml = False
    for m in start_tag("Override").finditer(text):
        attrs = attributes(m.group(1))
        name = attrs.get("PartName", "").lower()
        end = m.end() if m.group(2) else end_of(text, "Override", m.end())
        if name not in present:
            edits.append((m.start(), end, ""))
        elif name == "/xl/workbook.xml":
            kind = WORKBOOK_TYPES.get(attrs.get("ContentType", ""))
            if kind is None:
                raise Unsupported(f"a workbook of type {attrs.get('ContentType')}")
            edits.append((m.start(), m.end(), with_attributes(m, {"ContentType": kind})))
            workbook = True
    for m in start_tag("Default").finditer(text):
        attrs = attributes(m.group(1))
        extension = attrs.get("Extension", "").lower()
        if extension == "vml":
            has_vml = attrs.get("ContentType") == VML_TYPE
            if not has_vml:
                raise Unsupported("vml parts of another type")
        elif (
            extension not in extensions and attrs.get("ContentType") == "application/vnd.ms-office.vbaProject"
        ):
            end = m.end() if m.group(2) else end_of(text, "Default", m.end())
            edits.append((m.start(), end, ""))
    if not workbook:
        raise Unsupported("no content type for the workbook")
    added = "".join(
        f'<Override PartName="{attribute_value(name)}" ContentType="{kind}"/>' for name, kind in overrides
    )
    if vml and not has_vml:
        added = f'<Default Extension="vml" ContentType="{VML_TYPE}"/>' + added
    root_end = text.rfind("</Types")
    if root_end < 0:
        raise Unsupported("content types without their end")
    edits.append((root_end, root_end, added))
    return spliced(text, edits)
