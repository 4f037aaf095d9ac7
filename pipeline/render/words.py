"""The words people read about a consolidation, shared by the workbook, the HTML report and the summary
draft: the headline figures as the federation writes them, the funds and the 帮扶中心 in sentences, who
still owes what, and each unit's open findings in reading order.

Pure functions of their inputs: no clock, stable ordering. The campaign's own codes (FUND_SOURCES, the
fields the sentences name) are still spelled here; a later step moves them into rules.yaml.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pandas as pd

from pipeline.campaign.config import PROVINCE, Rules
from pipeline.consolidation import consolidate
from pipeline.consolidation.consolidate import CENTER, TOTAL_ROW, WARMTH, Consolidation
from pipeline.consolidation.status import FAILED, MISSING, OVERDUE, ItemStatus, Status
from pipeline.model import Finding, cell_order

# A finding as the caller has it: alone (its file is then looked up among the versions used), or with
# the name of the file it was found in.
FindingEntry = Finding | tuple[str, Finding]

FUND_SOURCES = ("fund_central", "fund_provincial", "fund_local", "fund_union", "fund_social")

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


def headline_sentences(rules: Rules, c: Consolidation) -> list[str]:
    """The figures in the federation's words: 全省各级工会共筹集送温暖资金 X 万元,走访慰问困难企业 Y 家……"""
    h = consolidate.headline(c)

    def m(name: str) -> str:
        return money_text(h[name])

    def n(name: str) -> str:
        return count_text(h[name])

    first = (
        f"{scope(rules, c)}共筹集送温暖资金 {m('筹集送温暖资金')} 万元,走访慰问困难企业 {n('走访慰问困难企业')} 家,"
        f"慰问困难职工 {n('慰问困难职工')} 户(其中建档困难职工 {n('建档困难职工')} 户)、"
        f"困难农民工 {n('困难农民工')} 人、劳动模范 {n('劳动模范')} 人、一线职工 {n('一线职工')} 人,"
        f"发放慰问金和慰问品合计 {m('慰问金额')} 万元(其中慰问金 {m('慰问金')} 万元、慰问品折款 {m('慰问品折款')} 万元)。"
    )
    second = (
        f"各级工会领导干部下访 {n('领导干部下访')} 人次,召开座谈会 {n('召开座谈会')} 次,"
        f"开展劳动经济权益大检查企业 {n('劳动经济权益大检查企业')} 家,排查农民工欠薪问题 {n('排查农民工欠薪问题')} 件,"
        f"帮助追回农民工欠薪 {m('帮助追回农民工欠薪')} 万元,提供法律援助 {n('提供法律援助')} 件,"
        f"帮助农民工返乡购票 {n('帮助农民工返乡购票')} 人次。"
    )
    return [first, second]


def funds_sentence(rules: Rules, c: Consolidation) -> str:
    total = total_row(c.by_unit)
    labels = {col.name: col for col in c.columns["by_unit"]}
    parts = []
    for code in FUND_SOURCES:
        if code in labels:
            share = _share(total[code], total["fund_total"])
            parts.append(f"{field_label(labels[code].caption)} {money_text(total[code])} 万元{share}")
    unspent = (
        f"。活动结束时结余资金 {money_text(total['fund_unspent'])} 万元,"
        f"其中转作日常帮扶资金 {money_text(total['fund_unspent_to_daily'])} 万元。"
    )
    return f"筹集的送温暖资金中,{'、'.join(parts)}{unspent}"


def _share(part: Any, whole: Any) -> str:
    if pd.isna(whole) or not whole:
        return ""
    return f"(占 {Decimal(repr(float(part))) / Decimal(repr(float(whole))) * 100:.1f}%)"


def field_label(caption: str) -> str:
    return re.sub(r"[((][^()()]*[))]$", "", caption)


def centers_sentence(rules: Rules, c: Consolidation) -> str:
    """The 帮扶中心 in one paragraph, or "" when this level has none."""
    if c.centers.empty:
        return ""
    t = total_row(c.centers)
    done, owed = c.coverage[CENTER]
    names = {col.name for col in c.columns["centers"]}
    needed = {
        "archived_households",
        "new_archived",
        "lifted_out",
        "total.persons",
        "total.amount",
        "hotline",
        "visits",
        "job_referrals",
        "job_placed",
        "training",
        "online",
    }
    if not needed <= names:
        return ""
    where = "全省 " if c.parent == PROVINCE else ""
    reported = f"{owed} 个帮扶中心" + (f"(已汇总 {done} 个)" if done < owed else "")
    aid = [
        f"{col.group} {count_text(t[col.name])} 人次"
        for col in c.columns["centers"]
        if col.name.endswith(".persons") and not col.name.startswith("total.")
    ]
    return (
        f"{where}{reported}年末建档困难职工 {count_text(t['archived_households'])} 户,其中当年新建档 "
        f"{count_text(t['new_archived'])} 户,当年解困脱困 {count_text(t['lifted_out'])} 户。"
        f"共帮扶困难职工 {count_text(t['total.persons'])} 人次、支出 {money_text(t['total.amount'])} 万元"
        f"({'、'.join(aid)});12351 热线受理 {count_text(t['hotline'])} 件,接待来访 {count_text(t['visits'])} 人次,"
        f"职业介绍 {count_text(t['job_referrals'])} 人次(介绍成功 {count_text(t['job_placed'])} 人),"
        f"技能培训 {count_text(t['training'])} 人次,网上平台受理求助 {count_text(t['online'])} 件。"
    )


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
            not p.finding.is_error,
            p.finding.sheet,
            cell_order(p.finding.cell),
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
    h = consolidate.headline(c)
    units = {col.name: col for col in c.columns["by_unit"]}
    cards = [
        (name, money_text(h[name]) if units[column].type == "money" else count_text(h[name]), unit)
        for name, column, unit in consolidate.HEADLINE[:8]
        if name in h
    ]
    missing = owing(status, (MISSING, OVERDUE))
    failed = [r for r in status.rows if r.state == FAILED]
    forms = [
        (rules.item_for_form(f).label, *c.coverage[f])
        for f in (WARMTH, CENTER)
        if f in c.coverage and c.coverage[f][1]
    ]
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
        headline=headline_sentences(rules, c),
        funds=funds_sentence(rules, c),
        centers=centers_sentence(rules, c),
        cards=cards,
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
    for form in (WARMTH, CENTER):
        done, owed = c.coverage.get(form, (0, 0))
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
