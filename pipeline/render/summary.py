"""The written summary (总结): the report to the level above, in the layout of a federation document, its
figures filled in from the consolidation with their coverage and their change from last year, for staff to
finish and send. Its frame (to whom, the opening, the sections in the notice's order) is rules.yaml's
(`consolidation.summary`, `consolidation.paragraphs`); `docx.py` writes it as a Word document.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from pipeline.campaign.config import PROVINCE, Rules
from pipeline.campaign.consolidation_plan import SUM
from pipeline.campaign.summary_plan import Section
from pipeline.consolidation.consolidate import Consolidation
from pipeline.consolidation.lastyear import ABSENT, Key, LastYear, change_text
from pipeline.consolidation.status import FAILED, MISSING, OVERDUE, Status
from pipeline.render.words import (
    caveat,
    figure_text,
    figure_words,
    filled,
    local,
    owing,
    scope,
    stamp,
    when,
)

NUMERALS = "一二三四五六七八九十"
FIGURE_HEADERS = ("指标", "本年", "上年", "增减", "汇总范围")


@dataclass(frozen=True)
class Part:
    """One section of the body as printed: its heading, sentences, figure rows and hint."""

    heading: str
    text: tuple[str, ...]
    figures: tuple[tuple[str, ...], ...]  # rows under FIGURE_HEADERS
    hint: str


@dataclass(frozen=True)
class Written:
    """The summary as words, before any file format: what the Word document shows, top to bottom."""

    title: str
    stamp: str
    notes: tuple[str, ...]  # 编辑说明: what staff check and delete before sending
    recipient: str
    opening: str
    parts: tuple[Part, ...]
    checks: tuple[str, ...]  # 需核实: figures that stand out, one line each
    table: tuple[tuple[str, ...], ...]  # 附表: a header row, then a row per unit (may be empty)
    attachments: tuple[str, ...]
    author: str
    date: str

    def text(self) -> str:
        """Every line in reading order (what a reader of the PDF sees, for tests and a quick look)."""
        lines = [self.title, self.stamp, *self.notes, f"{self.recipient}:", self.opening]
        for p in self.parts:
            lines += [p.heading, *p.text, *("  ".join(r) for r in p.figures), *([p.hint] if p.hint else [])]
        lines += list(self.checks)
        lines += ["  ".join(r) for r in self.table]
        lines += [*self.attachments, self.author, self.date]
        return "\n".join(lines)


def _default_sections(rules: Rules) -> tuple[Section, ...]:
    """No `summary.sections` declared: the report's paragraphs under 基本情况, then places to write."""
    plan = rules.consolidation
    return (
        Section(
            "基本情况",
            tuple(p.text for p in plan.paragraphs if not p.form),
            tuple(f.name for f in plan.figures if f.card),
        ),
        *(Section("基本情况", (p.text,), (), "", p.form) for p in plan.paragraphs if p.form),
        Section("主要做法", hint=plan.summary.practices),
        Section("存在的问题", hint="请填写。"),
        Section("下一步工作打算", hint="请填写。"),
    )


def last_figure(c: Consolidation, form: str, key: Key, last: LastYear) -> tuple[float | None, int]:
    """Last year's figure for the units consolidated this year (同口径), and how many of them have none
    last year; last year's 合计 when its workbook holds no unit rows."""
    units = [v.unit for v in c.used if v.form == form]
    if not last.units:
        return last.total(form, key), 0
    found = [x for x in (last.unit(u, form, key) for u in units) if x is not None]
    return (round(sum(found), 2) if found else None), len(units) - len(found)


def figure_rows(
    rules: Rules, c: Consolidation, names: Sequence[str], last: LastYear | None
) -> tuple[tuple[str, ...], ...]:
    """Each named figure: label, this year's figure with its unit, last year's for the same units, the
    change, and its coverage (已汇总 15/21; units with no figure last year are named as such)."""
    by_name = {f.name: f for f in rules.consolidation.figures}
    rows = []
    for name in names:
        f = by_name[name]
        done, owed = c.coverage.get(f.form, (0, 0))
        if not owed:
            continue
        value = c.figures[f.name]
        coverage = f"已汇总 {done}/{owed}"
        if last is None or f.aggregate != SUM:
            rows.append((f.label, f"{figure_text(value, f.type)} {f.unit}".strip(), "—", "—", coverage))
            continue
        before, absent = last_figure(c, f.form, f.key, last)
        if absent:
            coverage += f",其中 {absent} 个上年无"
        rows.append(
            (
                f.label,
                f"{figure_text(value, f.type)} {f.unit}".strip(),
                f"{figure_text(before, f.type)} {f.unit}".strip() if before is not None else ABSENT,
                change_text(value, before),
                coverage,
            )
        )
    return tuple(rows)


def _notes(
    rules: Rules, c: Consolidation, status: Status, as_of: dt.datetime, last: LastYear | None, unread: str
) -> list[str]:
    notes = [
        f"本稿由汇总程序根据各单位报表生成,数据截至 {when(rules, as_of)};汇总范围:{scope(rules, c)}。",
        f"{c.units_reported}/{c.units_expected} 个单位有报表纳入汇总"
        + "".join(f";{rules.item_for_form(f).label} {d}/{o}" for f, (d, o) in c.coverage.items() if o)
        + "。",
        f"上年数据取自:{last.source};上年数为本次纳入汇总的同一批单位的上年数(同口径)。"
        if last is not None
        else unread or "未配置上年汇总表(rules.yaml consolidation.previous),不作同比。",
    ]
    if caveat(rules, c):
        notes.append(f"注意:{caveat(rules, c)}")
    missing = owing(status, (MISSING, OVERDUE))
    if missing:
        who = ";".join(f"{m.name}({'、'.join(m.items)})" for m in missing)
        notes.append(f"{'逾期未报' if status.past_deadline else '尚未报送'}:{who}。")
    failed = [r for r in status.rows if r.state == FAILED]
    if failed:
        notes.append(
            "未通过校验、待改正重报:" + ";".join(f"{r.unit_name}({r.item_label})" for r in failed) + "。"
        )
    notes.append("请核对数字,补写〔 〕中的内容,上报前删去本段编辑说明。")
    return notes


def written_summary(
    rules: Rules,
    c: Consolidation,
    status: Status,
    *,
    as_of: dt.datetime,
    final: bool,
    edition: int = 0,
    last: LastYear | None = None,
    unread: str = "",
    checks: Sequence[str] = (),
    table: Sequence[tuple[str, ...]] = (),
    attachments: Sequence[str] = (),
) -> Written:
    """The summary of one level's consolidation as words: rules.yaml's frame with the figures filled in."""
    plan, camp = rules.consolidation.summary, rules.campaign
    top = c.parent == PROVINCE
    year = local(rules, as_of).year
    words = dict(year=year, issuer=camp.issuer, document_number=camp.document_number, title=camp.title)
    figures = figure_words(rules, c)
    parts: list[Part] = []
    for section in plan.sections or _default_sections(rules):
        if section.form and not c.coverage.get(section.form, (0, 0))[1]:
            continue
        text = tuple(
            t for t in (filled(rules, x, section.form, figures, c) for x in section.text) if t is not None
        )
        rows = figure_rows(rules, c, section.figures, last)
        hint = f"〔{section.hint.format_map(words)}〕" if section.hint else ""
        if parts and parts[-1].heading == section.heading:  # the default frame's form paragraphs
            prev = parts.pop()
            text, rows, hint = prev.text + text, prev.figures + rows, prev.hint or hint
        parts.append(Part(section.heading, text, rows, hint))
    numbered = tuple(
        Part(f"{NUMERALS[i] if i < len(NUMERALS) else i + 1}、{p.heading}", p.text, p.figures, p.hint)
        for i, p in enumerate(parts)
    )
    return Written(
        title=f"关于{camp.title}情况的报告",
        stamp=stamp(final, edition),
        notes=tuple(_notes(rules, c, status, as_of, last, unread)),
        recipient=plan.recipient.format_map(words) if top else camp.issuer,
        opening=(plan.opening if top else plan.opening_below).format_map(words),
        parts=numbered,
        checks=tuple(checks),
        table=tuple(table),
        attachments=tuple(attachments),
        author=camp.issuer if top else rules.unit(c.parent).name,
        date=f"{local(rules, as_of):%Y年%m月%d日}".replace("年0", "年").replace("月0", "月"),
    )


def unit_table(rules: Rules, c: Consolidation, last: LastYear | None) -> tuple[tuple[str, ...], ...]:
    """The report's few columns of the by_unit table (rules.yaml's `report_table`), a row per unit and the
    subtotals and total, and for its first column last year's figure and the change; empty when none is
    declared."""
    plan = rules.consolidation.report_table
    if plan is None:
        return ()
    table = c.tables[plan.table]
    known = {col.name: col for col in table.columns}
    columns = [(known[name], short) for name, short in plan.columns]
    first = columns[0][0]
    header = ("单位", *(short for _, short in columns), *((f"{columns[0][1]}上年", "增减") if last else ()))
    form = table.plan.form
    rows = [header]
    for row in table.frame.to_dict("records"):
        missing = row["level"] == "unit" and not row["reported"]
        cells = [
            "未汇总" if missing and i == 0 else figure_text(row[col.name], col.type)
            for i, (col, _) in enumerate(columns)
        ]
        if last is not None:
            if row["level"] == "unit":
                before = last.unit(row["code"], form, first.key)
            elif row["level"] == "total":
                before = last_figure(c, form, first.key, last)[0]
            else:
                before = None
            shown = (
                figure_text(before, first.type)
                if before is not None
                else ("上年无" if row["level"] != "subtotal" else "")
            )
            cells += [
                shown,
                "" if missing or row["level"] == "subtotal" else change_text(row[first.name], before),
            ]
        rows.append((row["name"], *cells))
    return tuple(rows)
