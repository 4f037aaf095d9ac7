"""XML read and edited as text, at element boundaries: what xlsxpatch.py and xlsxparts.py use to change a
workbook's parts while leaving every other byte of them as it was.

Re-serialising a part with a parser would rename namespace prefixes and break `mc:Ignorable="x14ac …"`,
which makes Excel call the file corrupt. The patterns here find start and end tags, attributes and
elements; `decoded_part` first refuses any part whose markup could hide a tag from them (a DTD, comment,
CDATA section or processing instruction), and `check_root` one whose main namespace is not the default
one, so that the unprefixed patterns cannot miss an element.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator

from pipeline.model import cell_position


class Unsupported(Exception):
    """The workbook has something this module does not edit safely: annotate it with openpyxl."""


Edit = tuple[int, int, str]  # text[start:end] becomes the string

ATTRS = r"""(?:\s+[^\s=/>"'<]+\s*=\s*(?:"[^"<]*"|'[^'<]*'))*"""
_ATTR = re.compile(r"""([^\s=/>"'<]+)\s*=\s*(?:"([^"<]*)"|'([^'<]*)')""")
ANY_TAG = re.compile(rf"<(/?)([^\s/>!?<]+)({ATTRS})\s*(/?)>")
_DECLARATION = re.compile(r"\A\ufeff?<\?xml(\s[^?]*)?\?>")
_ENCODING = re.compile(r"""encoding\s*=\s*["']([^"']*)["']""")
_XMLNS = re.compile(r"""\sxmlns\s*=""")
_A1 = re.compile(r"([A-Z]{1,3})([1-9]\d{0,6})")
RANGE = re.compile(r"[A-Z]{1,3}[1-9]\d{0,6}(:[A-Z]{1,3}[1-9]\d{0,6})?")


@functools.cache
def start_tag(name: str) -> re.Pattern[str]:
    """The start (or empty-element) tag of `name`: group 1 its attributes, group 2 "/" if empty."""
    return re.compile(rf"<{re.escape(name)}(?=[\s/>])({ATTRS})\s*(/?)>")


@functools.cache
def end_tag(name: str) -> re.Pattern[str]:
    return re.compile(rf"</{re.escape(name)}\s*>")


def decoded_part(name: str, content: bytes) -> str:
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


def check_root(text: str, name: str, namespace: str) -> None:
    """The part's root is `name` in `namespace`, declared as the default namespace and only there: no
    element is then in that namespace under a prefix, where the unprefixed patterns here would miss it."""
    m = ANY_TAG.search(text)
    if m is None or m.group(1) or m.group(2) != name:
        raise Unsupported(f"a root other than {name} (a prefixed namespace?)")
    if attributes(m.group(3)).get("xmlns") != namespace:
        raise Unsupported(f"{name} in another namespace (strict OOXML?)")
    if len(_XMLNS.findall(text)) != 1 or text.count(f'"{namespace}"') + text.count(f"'{namespace}'") != 1:
        raise Unsupported(f"{name} declares its namespace twice")


def declared_prefixes(attrs: dict[str, str]) -> dict[str, str]:
    """The namespace prefixes an element's attributes declare: prefix -> namespace."""
    return {k[6:]: v for k, v in attrs.items() if k.startswith("xmlns:")}


def prefix_of(scope: dict[str, str], namespace: str) -> str:
    """The prefix `scope` (see `declared_prefixes`) gives `namespace`."""
    found = [prefix for prefix, uri in scope.items() if uri == namespace]
    if not found:
        raise Unsupported(f"no prefix for {namespace}")
    return found[0]


def attributes(attributes: str) -> dict[str, str]:
    return {
        m.group(1): unescape(m.group(2) if m.group(2) is not None else m.group(3))
        for m in _ATTR.finditer(attributes)
    }


def with_attributes(tag: re.Match[str], values: dict[str, str | None]) -> str:
    """The start tag matched by `tag` (a start_tag pattern) with attributes set, or removed where None."""
    name = tag.group(0)[1:].split(None, 1)[0].rstrip("/>")
    items = [(m.group(1), m.group(0)[m.end(1) - m.start(0) :]) for m in _ATTR.finditer(tag.group(1))]
    kept = [f"{k}{raw}" for k, raw in items if k not in values]
    kept += [f'{k}="{attribute_value(v)}"' for k, v in values.items() if v is not None]
    return f"<{name}{''.join(' ' + a for a in kept)}{'/' if tag.group(2) else ''}>"


def find_element(text: str, name: str) -> tuple[int, int, int, int] | None:
    """(start, end, content start, content end) of the first `name` element; one that contains another
    `name` is not looked for (none of those edited here does)."""
    tag = start_tag(name).search(text)
    if tag is None:
        return None
    if tag.group(2):
        return (tag.start(), tag.end(), tag.end(), tag.end())
    close = end_tag(name).search(text, tag.end())
    if close is None:
        raise Unsupported(f"<{name}> without its end")
    return (tag.start(), close.end(), tag.end(), close.start())


def end_of(text: str, name: str, after: int) -> int:
    close = end_tag(name).search(text, after)
    if close is None:
        raise Unsupported(f"<{name}> without its end")
    return close.end()


def child_elements(text: str, start: int, stop: int) -> Iterator[tuple[str, int]]:
    """(name, offset) of each element starting at the nesting level of `start`, up to `stop`."""
    depth = 0
    for m in ANY_TAG.finditer(text, start, stop):
        if m.group(1):
            depth -= 1
            continue
        if depth == 0:
            yield m.group(2), m.start()
        if not m.group(4):
            depth += 1


def inserted_at_end(text: str, root: str, added: str) -> str:
    end = text.rfind(f"</{root}")
    if end >= 0:
        return text[:end] + added + text[end:]
    m = start_tag(root).search(text)
    if m is None or not m.group(2):
        raise Unsupported(f"<{root}> without its end")
    return text[: m.start()] + with_attributes(m, {})[:-2] + ">" + added + f"</{root}>" + text[m.end() :]


def spliced(text: str, edits: list[Edit]) -> str:
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


def row_col(address: str) -> tuple[int, int]:
    """The 1-based (row, column) of a cell address as the XML must write it (B7: no $, no lower case)."""
    if not _A1.fullmatch(address):
        raise Unsupported(f"a cell address {address!r}")
    row, col = cell_position(address)
    return row + 1, col + 1


_ENTITY = re.compile(r"&(#x[0-9A-Fa-f]+|#[0-9]+|amp|lt|gt|quot|apos);")
_NAMED = {"amp": "&", "lt": "<", "gt": ">", "quot": '"', "apos": "'"}


def unescape(text: str) -> str:
    return _ENTITY.sub(_character, text) if "&" in text else text


def _character(m: re.Match[str]) -> str:
    ref = m.group(1)
    if ref in _NAMED:
        return _NAMED[ref]
    return chr(int(ref[2:], 16) if ref[1] == "x" else int(ref[1:]))


def escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def attribute_value(text: str) -> str:
    """An attribute value: quotes escaped, and white space an XML parser would fold into spaces kept."""
    return (
        escape(text)
        .replace('"', "&quot;")
        .replace("\n", "&#10;")
        .replace("\r", "&#13;")
        .replace("\t", "&#9;")
    )
