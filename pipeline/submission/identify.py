"""Which form a file holds and which unit sent it.

The form: the template's hidden `_meta`, else a form title in a sheet's first rows, the sheet's name, or
the file name. The unit: `_meta`, else the 填报单位 cell, else the file name; the form's own evidence
disagreeing is an error, a file name that disagrees only a warning (files are renamed and forwarded).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from pipeline.campaign.config import Rules
from pipeline.model import F_IDENTITY, F_STRUCTURE, Finding, Severity
from pipeline.submission.text import as_text, squash
from pipeline.submission.workbook import Book, Grid, Meta

TITLE_ROWS = 8  # the title is in row 2 of a template; people insert a few rows above it
HEADER_ROWS = 10  # where the 填报单位 line may be found

# --- which form ----------------------------------------------------------------------------------------------


def titled_sheets(book: Book, titles: Mapping[str, str]) -> list[tuple[str, str]]:
    """(sheet, form) for each visible sheet whose first rows carry one of the forms' `titles` (normalised)."""
    out = []
    for name in book.visible:
        text = "".join(
            squash(str(v)) for row in book.grid(name)[:TITLE_ROWS] for v in row if isinstance(v, str)
        )
        for code, title in titles.items():
            if title and title in text:
                out.append((name, code))
                break
    return out


def form_of(
    meta: Meta | None, titled: list[tuple[str, str]], book: Book, rules: Rules, name: str
) -> str | None:
    if meta is not None and meta.form in rules.forms:
        return meta.form
    if titled:
        return titled[0][1]
    by_sheet = [c for c, f in rules.forms.items() if f.sheet in book.visible]
    if len(by_sheet) == 1:
        return by_sheet[0]
    return _form_from_filename(rules, name)


def other_forms(rules: Rules, form: str, titled: list[tuple[str, str]]) -> list[Finding]:
    """An error when sheets of the file carry the titles of other forms than `form`: one form a file."""
    others = sorted({f for _, f in titled if f != form})
    if not others:
        return []
    names = "、".join(f"《{rules.forms[f].title}》" for f in [form, *others])
    return [
        Finding(
            F_STRUCTURE,
            Severity.ERROR,
            f"一个文件中有多张报表({names}),请每张报表单独保存为一个文件后分别报送",
        )
    ]


def _form_from_filename(rules: Rules, name: str) -> str | None:
    stem = _stem(name)
    hits = set()
    for code, form in rules.forms.items():
        attachment = squash(form.attachment)
        if (
            squash(form.title) in stem
            or squash(form.sheet) in stem
            or (attachment and re.search(re.escape(attachment) + r"(?!\d)", stem))
        ):
            hits.add(code)
    return hits.pop() if len(hits) == 1 else None


def unrecognised(book: Book, rules: Rules, name: str) -> str:
    """Why no form was recognised: what the first sheet starts with, and the forms the campaign has."""
    seen = []
    if book.visible:
        first = book.visible[0]
        texts = [as_text(v) for row in book.grid(first)[:TITLE_ROWS] for v in row if as_text(v)]
        head = " ".join(texts)
        head = head[:40] + ("…" if len(head) > 40 else "")
        seen.append(f'工作表"{first}"开头是"{head}"' if head else f'工作表"{first}"前几行是空的')
    else:
        seen.append("文件中没有可见的工作表")
    seen.append(f'文件名"{name}"中也没有报表名称')
    expected = "、".join(f"{f.attachment}《{f.title}》" for f in rules.forms.values())
    return f"无法识别为本次活动的报表:{','.join(seen)};本次活动的报表是 {expected}"


# --- which unit ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class UnitIndex:
    """The campaign's units by every name and alias, prepared once: a national campaign has thousands of
    units, and every file name and 填报单位 cell is matched against them."""

    names: dict[str, str]  # unit code -> name
    exact: dict[str, str]  # squashed name or alias -> unit code
    lengths: tuple[int, ...]  # the lengths of those names and aliases, longest first
    noise: tuple[str, ...]  # form titles and sheet names, removed from file names before unit matching

    @classmethod
    def of(cls, rules: Rules) -> UnitIndex:
        pairs: dict[str, str] = {}
        for unit in rules.units:
            for alias in (unit.name, *unit.aliases):
                pairs.setdefault(squash(alias), unit.code)
        noise = {squash(t) for f in rules.forms.values() for t in (f.title, f.sheet)} | {
            squash(rules.campaign.title)
        }
        return cls(
            names={u.code: u.name for u in rules.units},
            exact=pairs,
            lengths=tuple(sorted({len(alias) for alias in pairs if alias}, reverse=True)),
            noise=tuple(sorted(noise, key=len, reverse=True)),
        )

    def who(self, code: str) -> str:
        return f"{self.names[code]}({code})"

    def match(self, text: str) -> str | None:
        """The unit `text` names: exactly, else by the longest alias in it."""
        key = squash(text)
        if key in self.exact:
            return self.exact[key]
        return self.longest_alias(key)

    def from_filename(self, name: str) -> str | None:
        stem = _stem(name)
        for noise in self.noise:  # 帮扶中心统计表 must not read as the unit 帮扶中心
            stem = stem.replace(noise, "|")
        return self.longest_alias(stem)

    def longest_alias(self, text: str) -> str | None:
        """The unit whose longest name or alias occurs in `text`; None when none does or two tie.

        Looks up each piece of `text` of each alias length, so the cost follows the text, not the number of
        units.
        """
        for size in self.lengths:
            if size > len(text):
                continue
            found = {
                self.exact[piece]
                for i in range(len(text) - size + 1)
                if (piece := text[i : i + size]) in self.exact
            }
            if found:
                return found.pop() if len(found) == 1 else None
        return None


@dataclass
class Identity:
    """Who sent a form, where that was found ("_meta" / "title" / "filename"), and what disagreed."""

    unit: str | None = None
    source: str = ""
    findings: list[Finding] = field(default_factory=list)


def identify_unit(meta: Meta | None, grid: Grid | None, name: str, units: UnitIndex) -> Identity:
    typed = unit_cell_text(grid) if grid is not None else ""
    from_cell = units.match(typed) if typed else None
    from_file = units.from_filename(name)
    if meta is not None and meta.unit in units.names:
        unit, source, findings = meta.unit, "_meta", _meta_against_cell(meta.unit, typed, from_cell, units)
    elif from_cell is not None:
        unit, source, findings = from_cell, "title", []
    elif from_file is not None:
        unit, source, findings = from_file, "filename", []
    else:
        where = f'填报单位填写的是"{typed}"' if typed else "表中没有填写填报单位"
        return Identity(
            findings=[
                Finding(
                    F_IDENTITY,
                    Severity.ERROR,
                    f'无法确定填报单位:{where},文件名"{name}"中也没有可识别的单位名称;请在"填报单位"一栏填写单位全称',
                )
            ]
        )
    if from_file is not None and from_file != unit:
        # File names are weak evidence (renamed copies, forwarded files): say so, do not reject.
        findings.append(
            Finding(
                F_IDENTITY,
                Severity.WARNING,
                f'文件名"{name}"像是 {units.who(from_file)} 的,而表中的单位是 {units.who(unit)};已按表中的单位处理',
            )
        )
    return Identity(unit, source, findings)


def _meta_against_cell(unit: str, typed: str, from_cell: str | None, units: UnitIndex) -> list[Finding]:
    """What the 填报单位 cell says against the unit of the hidden `_meta`."""
    if from_cell is not None and from_cell != unit:
        also = "" if typed == units.names[from_cell] else f"(即 {units.who(from_cell)})"
        return [
            Finding(
                F_IDENTITY,
                Severity.ERROR,
                f'隐藏信息显示为 {units.who(unit)},而填报单位填写的是"{typed}"{also};请使用本单位的模板填报',
            )
        ]
    if typed and from_cell is None:
        return [
            Finding(
                F_IDENTITY,
                Severity.WARNING,
                f'填报单位填写的是"{typed}",不是本次报送单位的名称;已按隐藏信息 {units.who(unit)} 处理',
            )
        ]
    return []


def unit_cell_text(grid: Grid) -> str:
    """What was typed as 填报单位: the rest of the cell after the label, else the next text to its right."""
    for row in grid[:HEADER_ROWS]:
        for j, value in enumerate(row):
            text = squash(value) if isinstance(value, str) else ""
            if not text.startswith("填报单位"):
                continue
            rest = _strip_unit(text[len("填报单位") :])
            if rest:
                return rest
            for right in row[j + 1 :]:
                candidate = _strip_unit(as_text(right))
                if "代码" in candidate:
                    break
                if candidate:
                    return candidate
            return ""
    return ""


def _strip_unit(text: str) -> str:
    return re.sub(r"[【】\[\]::\s]", "", unicodedata.normalize("NFKC", text))


def _stem(name: str) -> str:
    return squash(PurePosixPath(name.replace("\\", "/")).stem)
