"""The words people read about a consolidation, shared by the workbook, the HTML report and the summary
draft: the paragraphs rules.yaml writes (`consolidation.paragraphs`) with the figures filled in, who still
owes what, and each unit's open findings in reading order.

Pure functions of their inputs: no clock, stable ordering. What the campaign says is rules.yaml's; what is
worded here is the same for every campaign (the scope of a level, a share, a range of figures).
"""

from __future__ import annotations

import datetime as dt
import functools
import re
import string
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pandas as pd

from pipeline.campaign.config import PROVINCE, Rules
from pipeline.campaign.consolidation_plan import RANGE, Share
from pipeline.consolidation import consolidate
from pipeline.consolidation.consolidate import TOTAL_ROW, Consolidation, Span
from pipeline.consolidation.status import FAILED, MISSING, OVERDUE, ItemStatus, Status
from pipeline.model import Finding

# A finding as the caller has it: alone (its file is then looked up among the versions used), or with
# the name of the file it was found in.
FindingEntry = Finding | tuple[str, Finding]

# --- shared wording -------------------------------------------------------------------------------------


def stamp(final: bool, edition: int) -> str:
    return f"终稿(第{edition}版)" if final else "草稿"


def local(rules: Rules, moment: dt.datetime) -> dt.datetime:
    return moment.astimezone(rules.campaign.tz) if moment.tzinfo is not None else moment


def naive(rules: Rules, moment: dt.datetime) -> dt.datetime:
    """The local time without its zone, as a spreadsheet holds a date and time."""
    return local(rules, moment).replace(tzinfo=None)


def when(rules: Rules, moment: dt.datetime) -> str:
    return f"{local(rules, moment):%Y-%m-%d %H:%M}"


def scope(rules: Rules, c: Consolidation) -> str:
    """Who the figures are of, as the subject of a sentence: 全省各级工会, or ZX's units."""
    return "全省各级工会" if c.parent == PROVINCE else f"{rules.unit(c.parent).name}所属各单位"


def level_name(rules: Rules, c: Consolidation) -> str:
    return "全省(直报省总的单位)" if c.parent == PROVINCE else f"{rules.unit(c.parent).name}所属单位"


def short(rules: Rules, code: str) -> str:
    """A unit's short name for a chart axis: its first alias (海口, 洋浦, 农垦), else its name."""
    unit = rules.unit(code)
    return unit.aliases[0] if unit.aliases else unit.name


def count_text(value: Any) -> str:
    return str(int(value))


def money_text(value: Any) -> str:
    return f"{consolidate.money(value):.2f}"


def figure(value: Any, ftype: str) -> str:
    if value is None or pd.isna(value):
        return ""
    return money_text(value) if ftype == "money" else count_text(value)


def total_row(frame: pd.DataFrame) -> pd.Series:
    return frame[frame["level"] == TOTAL_ROW].iloc[0]


def figure_text(value: Any, ftype: str) -> str:
    """A consolidated figure as the sentences print it; a field not summed as its range (7–24)."""
    if isinstance(value, Span):
        if value.low is None or value.high is None:
            return "—"
        low, high = figure(value.low, ftype), figure(value.high, ftype)
        return low if low == high else f"{low}–{high}"
    return figure(value, ftype)


def share_text(share: Share, figures: tuple[tuple[Any, ...], Any]) -> str:
    """The parts of a share in one phrase: 中央财政帮扶资金 X 万元(占 Y%)、……"""
    parts, whole = figures
    return "、".join(
        f"{p.label} {figure(value, p.type)} {p.unit}".rstrip() + (_share(value, whole) if share.whole else "")
        for p, value in zip(share.parts, parts, strict=True)
    )


def _share(part: Any, whole: Any) -> str:
    if whole is None or pd.isna(whole) or not whole:
        return ""
    return f"(占 {Decimal(repr(float(part))) / Decimal(repr(float(whole))) * 100:.1f}%)"


def field_label(caption: str) -> str:
    return re.sub(r"[((][^()()]*[))]$", "", caption)


def figure_words(rules: Rules, c: Consolidation) -> dict[str, str]:
    """What a paragraph's {names} stand for at this level: the figures, shares and who they are of."""
    plan = rules.consolidation
    words: dict[str, str] = {"scope": scope(rules, c), "where": "全省 " if c.parent == PROVINCE else ""}
    for f in plan.figures:
        value = c.figures[f.name]
        words[f.name] = figure_text(value, f.type)
        if f.aggregate == RANGE:
            words[f"{f.name}_units"] = str(value.units) if isinstance(value, Span) else "0"
    for share in plan.shares:
        words[share.name] = share_text(share, c.shares[share.name])
    return words


def filled(rules: Rules, text: str, form: str, words: Mapping[str, str], c: Consolidation) -> str | None:
    """A paragraph with its {names} filled in; one about a form (`form`) only where units owe it (else None),
    with {units} and {coverage} besides. When the figures it names cover fewer units than owe them, it says
    so: its subject ({scope}) becomes 已汇总的 n 个单位, or a note follows it."""
    plan = rules.consolidation
    if form and not c.coverage.get(form, (0, 0))[1]:
        return None
    form_of = {f.name: f.form for f in plan.figures} | {s.name: s.form for s in plan.shares}
    names = {name for _, name, _, _ in string.Formatter().parse(text) if name}
    forms = {form} if form else {form_of[n] for n in names if n in form_of}
    short = [c.coverage[f] for f in sorted(forms) if c.coverage.get(f, (0, 0))[0] < c.coverage[f][1]]
    done, owed = short[0] if short else c.coverage.get(form, (0, 0))
    own = dict(words, units=str(owed), coverage=f"(已汇总 {done} 个)" if short else "")
    if short and "scope" in names:  # the subject says whose figures these are: not the whole level's
        own.update(scope=f"已汇总的 {done} 个单位(应报 {owed} 个)", where="")
    elif short and "coverage" not in names:
        text = text + f"(以上为已汇总的 {done} 个单位的数据,应报 {owed} 个。)"
    return text.format_map(own)


def paragraphs(rules: Rules, c: Consolidation) -> list[str]:
    """rules.yaml's paragraphs with the level's figures in them; one about a form only where units owe it."""
    words = figure_words(rules, c)
    out = (filled(rules, p.text, p.form, words, c) for p in rules.consolidation.paragraphs)
    return [text for text in out if text is not None]


def cards(rules: Rules, c: Consolidation) -> list[tuple[str, str, str]]:
    """The figures shown as cards at the top of the report: (label, figure, unit of measure)."""
    out = []
    for f in rules.consolidation.figures:
        done, owed = c.coverage.get(f.form, (0, 0))
        if f.card and owed:
            label = f.label + (f"(已汇总 {done}/{owed} 个单位)" if done < owed else "")
            out.append((label, figure_text(c.figures[f.name], f.type), f.unit))
    return out


# --- who has not reported --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Owing:
    unit: str
    name: str
    items: tuple[str, ...]


def owing(status: Status, states: tuple[str, ...]) -> list[Owing]:
    by_unit: dict[str, list[ItemStatus]] = {}
    for r in status.rows:
        if r.state in states:
            by_unit.setdefault(r.unit, []).append(r)
    return [
        Owing(code, rows[0].unit_name, tuple(r.item_label for r in rows)) for code, rows in by_unit.items()
    ]


def follow_up(rules: Rules, status: Status) -> list[dict[str, str]]:
    """Every item still owed, refused or late, in status order: what staff chase."""
    rows = []
    for r in status.rows:
        if r.state in (MISSING, OVERDUE):
            css, note = "missing", "截止时间已过,仍未收到" if r.state == OVERDUE else ""
        elif r.state == FAILED:
            css = "failed"
            note = f"共 {r.versions} 版,最新一版未通过校验" + (f";{r.note}" if r.note else "")
        elif r.late and r.received is not None:
            css, note = "late", f"逾期报送,收到于 {when(rules, r.received)}"
        else:
            continue
        if r.mail_problem:
            note = ";".join(x for x in (note, r.mail_problem) if x)
        rows.append(dict(name=r.unit_name, item=r.item_label, state=r.state.label, css=css, note=note))
    return rows


# --- problems --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    unit: str
    unit_name: str
    file: str
    finding: Finding


def open_problems(
    rules: Rules, c: Consolidation, findings_by_unit: Mapping[str, Sequence[FindingEntry]]
) -> list[Problem]:
    position = {u.code: i for i, u in enumerate(rules.units)}
    names = {u.code: u.name for u in rules.units}
    sheets = {form.sheet: form.code for form in rules.forms.values()}
    used = {(v.unit, v.form): v.file for v in c.used}
    out = []
    for code, entries in findings_by_unit.items():
        name = names.get(code, code or "未识别单位")
        for entry in entries:
            if isinstance(entry, tuple):
                file, finding = entry
            else:
                file, finding = used.get((code, sheets.get(finding.sheet, "")), ""), entry
            out.append(Problem(code, name, file, finding))
    return sorted(
        out,
        key=lambda p: (
            position.get(p.unit, len(position)),
            p.unit,
            p.file,
            p.finding.order,
            not p.finding.is_error,
            p.finding.rule,
            p.finding.message,
        ),
    )


# --- what the HTML report and the summary draft both print ------------------------------------------------


def overview(
    rules: Rules, c: Consolidation, status: Status, as_of: dt.datetime, final: bool, edition: int
) -> dict[str, Any]:
    """The template variables the HTML report and the summary draft share: the campaign, the scope, the
    headline figures in sentences and cards, and who has still to report."""
    camp = rules.campaign
    missing = owing(status, (MISSING, OVERDUE))
    failed = [r for r in status.rows if r.state == FAILED]
    forms = [(rules.item_for_form(f).label, done, owed) for f, (done, owed) in c.coverage.items() if owed]
    return dict(
        campaign=camp,
        issuer=f"{camp.issuer}{camp.department}",
        scope=level_name(rules, c),
        stamp=stamp(final, edition),
        final=final,
        as_of=when(rules, as_of),
        deadline=when(rules, camp.deadline),
        past_deadline=status.past_deadline,
        units_reported=c.units_reported,
        units_expected=c.units_expected,
        units_done=status.units_done(),
        forms=forms,
        paragraphs=paragraphs(rules, c),
        cards=cards(rules, c),
        missing=missing,
        failed=failed,
        follow_up=follow_up(rules, status),
        caveat=caveat(rules, c),
        stray=[dict(file=v.file, name=unit_name(rules, v.unit)) for v in status.stray],
        sha=rules.sha256,
    )


def caveat(rules: Rules, c: Consolidation) -> str:
    """Which figures above are short of units, or "" when every owed form is in."""
    parts = []
    for form, (done, owed) in c.coverage.items():
        if done < owed:
            label = rules.item_for_form(form).label
            parts.append(
                f"{label}数据为 {done} 个单位的汇总,尚有 {owed - done} 个单位未报送或未通过校验、未纳入"
            )
    return ";".join(parts) + "。" if parts else ""


def unit_name(rules: Rules, code: str) -> str:
    try:
        return rules.unit(code).name
    except KeyError:
        return code


def width(text: str) -> int:
    """Columns a text needs: a CJK character takes two."""
    return len(text) if text.isascii() else _wide_width(text)


@functools.lru_cache(maxsize=1 << 16)
def _wide_width(text: str) -> int:  # unit names recur on several sheets
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)
