"""Written reports (送温暖报告: .doc, .docx, .wps, .pdf, .txt …): only their receipt is tracked. Which files
are reports, whose (by the file name, else by the title of a .docx, .odt or .txt), and whether the bytes are
a report at all (an empty or broken file is 无法读取, with the reason) is decided here.
"""

from __future__ import annotations

import html
import re
import zipfile
from dataclasses import dataclass
from io import BytesIO
from pathlib import PurePosixPath

from pipeline.campaign.config import Rules
from pipeline.model import F_UNREADABLE, Finding, Severity

# Where a word processor keeps a document's text; only its paragraphs' runs are wanted, read as text (no XML
# parser: a report is as untrusted as any file, and its text is only searched for a unit's name).
_TEXT_PARTS = {".docx": "word/document.xml", ".odt": "content.xml"}
_RUNS = {
    ".docx": re.compile(r"<w:t(?:\s[^>]*)?>([^<]*)</w:t>|</w:p>"),
    ".odt": re.compile(r">([^<]*)<|</text:p>"),
}
_OLE = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # .doc and .wps (Word 97-2003, WPS): an OLE compound file
_TITLE_CHARS = 200  # a report names its unit in its title: the rest may name any other unit


def is_report(rules: Rules, name: str) -> bool:
    """Whether a file is a written report (by its extension), not a form to read."""
    return _suffix(name) in {ext for item in rules.items.values() for ext in item.extensions}


def report_item(rules: Rules) -> str | None:
    """The item that is a written report (the one without a form), if the campaign has one."""
    return next((i.code for i in rules.items.values() if i.form is None), None)


def owner(rules: Rules, name: str) -> str | None:
    """The unit whose name or alias, the longest that fits, occurs in the file name (as for a form)."""
    from pipeline.submission.read import Reader

    return Reader.of(rules).units.from_filename(name)


@dataclass(frozen=True)
class Examined:
    """What a report's bytes told: whose it is (None when neither its name nor its title says) and why it
    cannot be read (None when it can)."""

    unit: str | None
    unreadable: Finding | None
    by_text: bool = False  # the unit was found in the document's title, not in the file name


def examine(rules: Rules, name: str, data: bytes, limit: int) -> Examined:
    """A report's owner and soundness from its name and bytes; `limit`: the most bytes of text read."""
    unit = owner(rules, name)
    suffix = _suffix(name)
    text, problem = _text(suffix, data, limit)
    if problem:
        return Examined(unit, Finding(F_UNREADABLE, Severity.ERROR, f"报告“{name}”无法读取:{problem}"))
    if unit is None and text:
        from pipeline.submission.read import Reader

        title = " ".join(text.split())[:_TITLE_CHARS]
        unit = Reader.of(rules).units.longest_alias(title)
        return Examined(unit, None, by_text=unit is not None)
    return Examined(unit, None)


def _text(suffix: str, data: bytes, limit: int) -> tuple[str, str]:
    """The document's text where it can be had cheaply ("" otherwise), and what is wrong with the bytes
    ("" when nothing is)."""
    if not data.strip():
        return "", "文件是空的,请重新发送完整的报告"
    if suffix in _TEXT_PARTS:
        try:
            with zipfile.ZipFile(BytesIO(data)) as z, z.open(_TEXT_PARTS[suffix]) as part:
                xml = part.read(limit).decode("utf-8", "replace")
        except (zipfile.BadZipFile, KeyError, OSError, RuntimeError, NotImplementedError, EOFError):
            kind = "Word 文档(.docx)" if suffix == ".docx" else "文档"
            return "", f"不是完整的{kind},可能已损坏或只是改了扩展名;请用 Word 或 WPS 另存后重新发送"
        text = "".join(m.group(1) or "\n" for m in _RUNS[suffix].finditer(xml))
        text = html.unescape(text).strip()
        return text, "" if text else "文档中没有文字,请确认发送的是写好的报告"
    if suffix == ".txt":
        for encoding in ("utf-8-sig", "gb18030"):
            try:
                text = data[:limit].decode(encoding).strip()
            except UnicodeDecodeError:
                continue
            return text, "" if text else "文件中没有文字"
        return "", "文字编码无法识别,请另存为 UTF-8 或改用 Word 文档发送"
    head = data[:1024].lstrip()
    if suffix == ".pdf" and head[:5] != b"%PDF-":
        return "", "不是有效的 PDF 文件,可能已损坏或只是改了扩展名"
    if suffix in (".doc", ".wps") and not (data.startswith(_OLE) or head[:5] == b"{\\rtf"):
        if data[:2] == b"PK":  # a .docx under an old name: read it as one
            return _text(".docx", data, limit)
        return "", "不是有效的 Word/WPS 文档,可能已损坏或只是改了扩展名"
    return "", ""


def _suffix(name: str) -> str:
    return PurePosixPath(name.replace("\\", "/")).suffix.lower()
