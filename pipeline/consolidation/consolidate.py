"""Consolidation: the accepted forms of one level's units summed into the tables the leadership reads.

Takes values (the latest accepted versions, chosen by the caller) and returns DataFrames; it never sees
a path. Every 合计 is computed here from detail rows, never copied from a submitted 合计 cell, and money
is summed in whole cents so that 21 counties' 万元 add up exactly; rounding is left to presentation.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

import pandas as pd

from pipeline.campaign.config import PROVINCE, Form, Rules, Section, Unit
from pipeline.consolidation import history
from pipeline.model import Submission

Key = tuple[str, str, str]  # (section, row, field), as layout.Slot.key

# Which parts of rules.yaml feed which table. The figures are the campaign's; the codes are rules.yaml's.
WARMTH = "warmth"  # 附件1, summed into by_unit, by_industry and pivot
CENTER = "center"  # 附件2, one row per 帮扶中心
VISITS = "visits"  # the section of 附件1 broken down by industry
PIVOT_FIELDS = ("households", "amount_total")

UNIT_ROW, SUBTOTAL_ROW, TOTAL_ROW = "unit", "subtotal", "total"
SUBTOTAL_LABEL = "小计"
PROVINCE_TOTAL_LABEL = "全省合计"
TOTAL_LABEL = "合计"

CENT = 100  # money is held as whole cents of 万元 (0.01 万元 = 100 元)


@dataclass(frozen=True)
class Column:
    """A value column of a consolidated table and the form slot it sums."""

    name: str  # the DataFrame column
    key: Key  # the slot summed; for a tabular section, its 合计 row (or a detail row in `centers`)
    caption: str  # what a person reads: 慰问困难职工(户)
    type: str  # count / money
    section_title: str  # 表一 慰问情况(按行业)
    group: str  # a header spanning neighbouring columns (慰问对象, or the aid row 生活救助), or ""
    label: str  # the header under `group`: the field's caption, or the field label alone within a row group


@dataclass(frozen=True, eq=False)
class Consolidation:
    """One level's consolidated tables.

    by_unit: one row per expected unit, grouped by kind in `rules.unit_kinds` order, a 小计 row after each
      kind and a 合计 (全省合计 at the province) row last. Columns `code, name, kind, level, reported`
      (level: unit / subtotal / total; reported: 1 or 0 for a unit, the number reported for a (sub)total),
      then one column per `columns["by_unit"]`. A unit whose 附件1 is not in has NA in its value columns.
    by_industry: the rows of the visits section (industries, then 合计) × the visits fields, summed over units;
      columns `code, label`, then `columns["by_industry"]`.
    pivot: unit × industry for `PIVOT_FIELDS`: index (code, name) of every expected unit and a last
      ("", 合计) row; columns (field, row code) with the 合计 row code last in each block.
    centers: the center form per unit that owes it (the 帮扶中心), in by_unit's order, then a 合计 row;
      columns `code, name, level, reported`, then `columns["centers"]` (aid rows as `living.persons` …).
    """

    by_unit: pd.DataFrame
    by_industry: pd.DataFrame
    pivot: pd.DataFrame
    centers: pd.DataFrame
    units_reported: int  # expected units with at least one form in the consolidation
    units_expected: int
    parent: str  # the level consolidated: "province" or the code of the unit whose children these are
    total_label: str  # 全省合计 at the province, 合计 elsewhere
    columns: Mapping[str, tuple[Column, ...]]  # by_unit / by_industry / centers → their value columns
    coverage: Mapping[str, tuple[int, int]]  # form → (units whose form is consolidated, units owing it)
    used: tuple[Submission, ...]  # the versions consolidated, in table order

    def caption(self, table: str, name: str) -> str:
        return next(c.caption for c in self.columns[table] if c.name == name)


# --- numbers ---------------------------------------------------------------------------------------------


def _units(value: Any, ftype: str, file: str, key: Key) -> int:
    """A normalised value as a whole number: persons for a count, cents for money. Blank is 0.

    `file` and `key` name the value in the message should it not be a number."""
    scale = CENT if ftype == "money" else 1
    if type(value) is int:
        return value * scale
    if type(value) is float:
        if math.isnan(value):
            return 0
        # The usual case, a whole number of units after scaling: exact without Decimal. Anything else
        # (a fraction of a cent, where rounding half up matters) goes the exact way below.
        scaled = value * scale
        whole = round(scaled)
        if abs(scaled - whole) < 1e-6 and abs(scaled) < 1e12:
            return whole
    if value is None:
        return 0
    if isinstance(value, bool):
        raise ValueError(f"{file} {key}: {value!r} 不是数字")
    try:
        # repr gives the shortest decimal that round-trips: what the cell shows, without float noise.
        d = Decimal(repr(value)) if isinstance(value, float) else Decimal(str(value).strip())
    except InvalidOperation:
        raise ValueError(f"{file} {key}: {value!r} 不是数字(只应汇总已通过校验的报表)") from None
    return int((d * scale).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def _present(units: int | None, ftype: str) -> Any:
    """Whole units back to the figure: an int for a count, 万元 for money (exact to the cent)."""
    if units is None:
        return pd.NA if ftype == "count" else math.nan
    return units / CENT if ftype == "money" else units


def money(value: float) -> Decimal:
    """A consolidated money figure as the Decimal it is, rounded to the cent (for text and rounding)."""
    return (Decimal(repr(float(value)))).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


def _numeric_sections(form: Form) -> tuple[Section, ...]:
    return tuple(s for s in form.sections if not s.footer and any(f.numeric for f in s.fields))


@dataclass(frozen=True)
class _Tally:
    """Where a form's numbers are: each one a unit types, and each 合计 with the detail rows it sums.

    Worked out once per form and consolidation, not once for each of 3,000 units' forms."""

    typed: tuple[tuple[Key, str], ...]  # (key, field type), section by section, field by field
    totals: tuple[tuple[Key, tuple[Key, ...]], ...]  # (合计 key, the detail keys it sums)

    @classmethod
    def of(cls, form: Form) -> _Tally:
        typed: list[tuple[Key, str]] = []
        totals: list[tuple[Key, tuple[Key, ...]]] = []
        for section in _numeric_sections(form):
            fields = [f for f in section.fields if f.numeric]
            if not section.tabular:
                typed += [((section.code, "", f.code), f.type) for f in fields]
                continue
            total = section.total_row
            for f in fields:
                detail = tuple((section.code, row.code, f.code) for row in section.detail_rows)
                typed += [(key, f.type) for key in detail]
                if total is not None:
                    totals.append(((section.code, total.code, f.code), detail))
        return cls(tuple(typed), tuple(totals))

    def amounts(self, version: Submission) -> dict[Key, int]:
        """Every number of one accepted form in whole units, its 合计 rows recomputed from the detail rows."""
        values = version.values
        out = {key: _units(values.get(key), ftype, version.file, key) for key, ftype in self.typed}
        for key, detail in self.totals:
            out[key] = sum(map(out.__getitem__, detail))
        return out


# --- choosing what to consolidate -------------------------------------------------------------------------


def _ordered(rules: Rules, expected: Sequence[Unit]) -> list[tuple[str, list[Unit]]]:
    """Expected units grouped by kind, kinds in rules.unit_kinds order, units in rules.yaml order."""
    position = {u.code: i for i, u in enumerate(rules.units)}
    groups = []
    for kind in rules.unit_kinds:
        members = sorted(
            (u for u in expected if u.kind == kind), key=lambda u: position.get(u.code, len(position))
        )
        if members:
            groups.append((kind, members))
    return groups


def _parent(expected: Sequence[Unit]) -> str:
    parents = sorted({u.reports_to for u in expected})
    if len(parents) > 1:
        raise ValueError(
            f"expected units report to several levels ({', '.join(parents)}); consolidate one level"
        )
    return parents[0] if parents else PROVINCE


def _owes(rules: Rules, unit: Unit, form: str) -> bool:
    return any(rules.items[i].form == form for i in unit.items if i in rules.items)


# --- columns ---------------------------------------------------------------------------------------------


def _unit_columns(form: Form) -> tuple[Column, ...]:
    """A unit's whole form on one line: the 合计 row of a tabular section, every field of a single one."""
    columns = []
    for section in _numeric_sections(form):
        row = section.total_row.code if section.total_row is not None else None
        if section.tabular and row is None:
            continue  # a breakdown without a 合计 row has no one-line figure
        for f in (f for f in section.fields if f.numeric):
            columns.append(
                Column(
                    f.code,
                    (section.code, row or "", f.code),
                    f.caption,
                    f.type,
                    section.title,
                    f.group,
                    f.caption,
                )
            )
    _unique(columns, form.code)
    return tuple(columns)


def _row_columns(section: Section) -> tuple[Column, ...]:
    return tuple(
        Column(f.code, (section.code, "", f.code), f.caption, f.type, section.title, f.group, f.caption)
        for f in section.fields
        if f.numeric
    )


def _center_columns(form: Form) -> tuple[Column, ...]:
    """Every number of the center form; a tabular section's rows spread across, 生活救助 over its fields."""
    columns = []
    for section in _numeric_sections(form):
        fields = [f for f in section.fields if f.numeric]
        if not section.tabular:
            columns += [
                Column(f.code, (section.code, "", f.code), f.caption, f.type, section.title, "", f.caption)
                for f in fields
            ]
            continue
        for row in section.rows:
            columns += [
                Column(
                    f"{row.code}.{f.code}",
                    (section.code, row.code, f.code),
                    f"{row.label} {f.caption}",
                    f.type,
                    section.title,
                    row.label,
                    f.caption,
                )
                for f in fields
            ]
    _unique(columns, form.code)
    return tuple(columns)


def _unique(columns: list[Column], form: str) -> None:
    names = [c.name for c in columns]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(
            f"form {form}: field codes {', '.join(twice)} appear in two sections; cannot consolidate"
        )


# --- the tables ------------------------------------------------------------------------------------------

Figures = list[int]  # a row's whole units, in the order of its table's value columns


def _at(parts: Iterable[Mapping[Key, int]], keys: Sequence[Key]) -> list[Figures]:
    """Each of `parts` (a form's amounts) at `keys`."""
    return [[p[k] for k in keys] for p in parts]


def _units_at(units: Sequence[Unit], figures: dict[str, dict[Key, int]], keys: Sequence[Key]) -> list[Figures | None]:
    """Each unit's figures at `keys`; None for a unit whose form is not in."""
    return [[figures[u.code][k] for k in keys] if u.code in figures else None for u in units]


def _sums(rows: Sequence[Figures], width: int) -> Figures:
    """Rows of `width` figures added up, column by column (zeros when there are none)."""
    return [sum(column) for column in zip(*rows, strict=True)] if rows else [0] * width


def _columns(rows: Sequence[Figures | None], types: Sequence[str]) -> list[Any]:
    """Rows of whole units as one typed column of figures per type: Int64 for a count, float 万元 for money;
    a row that is None is blank across."""
    blank = (None,) * len(types)
    cells = list(zip(*(blank if r is None else r for r in rows), strict=True)) if rows else [()] * len(types)
    return [
        pd.array([_present(u, ftype) for u in column], dtype="Int64" if ftype == "count" else "float64")
        for column, ftype in zip(cells, types, strict=True)
    ]


def _frame(lead: list[tuple[Any, ...]], names: list[str], rows: list[Figures | None],
           columns: tuple[Column, ...]) -> pd.DataFrame:
    """A table: the `lead` rows' columns (`names`) as pandas makes them, then a column per `columns` from
    the rows' figures."""
    frame = pd.DataFrame.from_records(lead, columns=names)
    for c, figures in zip(columns, _columns(rows, [c.type for c in columns]), strict=True):
        frame[c.name] = figures
    return frame


def _by_unit(
    groups: list[tuple[str, list[Unit]]],
    figures: dict[str, dict[Key, int]],
    columns: tuple[Column, ...],
    total_label: str,
) -> pd.DataFrame:
    keys = [c.key for c in columns]
    lead: list[tuple[str, str, str, str, int]] = []
    rows: list[Figures | None] = []

    def record(code: str, name: str, kind: str, level: str, reported: int, row: Figures | None) -> None:
        lead.append((code, name, kind, level, reported))
        rows.append(row)

    everyone: list[Figures] = []
    for kind, members in groups:
        own = _units_at(members, figures, keys)
        parts = [row for row in own if row is not None]
        for u, row in zip(members, own, strict=True):
            record(u.code, u.name, kind, UNIT_ROW, int(row is not None), row)
        record("", f"{kind}{SUBTOTAL_LABEL}", kind, SUBTOTAL_ROW, len(parts), _sums(parts, len(keys)))
        everyone += parts
    record("", total_label, "", TOTAL_ROW, len(everyone), _sums(everyone, len(keys)))
    return _frame(lead, ["code", "name", "kind", "level", "reported"], rows, columns)


def _by_industry(
    section: Section, figures: dict[str, dict[Key, int]]
) -> tuple[pd.DataFrame, tuple[Column, ...]]:
    columns = _row_columns(section)
    keys = [(section.code, row.code, c.name) for row in section.rows for c in columns]
    sums, width = _sums(_at(figures.values(), keys), len(keys)), len(columns)
    rows: list[Figures | None] = [sums[i * width:(i + 1) * width] for i in range(len(section.rows))]
    lead = [(row.code, row.label) for row in section.rows]
    return _frame(lead, ["code", "label"], rows, columns), columns


def _pivot(
    section: Section, units: list[Unit], figures: dict[str, dict[Key, int]], total_label: str
) -> pd.DataFrame:
    fields = [section.field(code) for code in PIVOT_FIELDS if code in {f.code for f in section.fields}]
    rows = [*section.detail_rows, *(r for r in section.rows if r.total)]
    keys = [(section.code, row.code, f.code) for f in fields for row in rows]
    total = _sums(_at(figures.values(), keys), len(keys))
    cells = _columns([*_units_at(units, figures, keys), total], [f.type for f in fields for _ in rows])
    index = pd.MultiIndex.from_tuples(
        [(u.code, u.name) for u in units] + [("", total_label)], names=["code", "name"]
    )
    names = [(f.code, row.code) for f in fields for row in rows]
    frame = pd.DataFrame(dict(zip(names, cells, strict=True)), index=index)
    frame.columns = pd.MultiIndex.from_tuples(names, names=["field", "row"])
    return frame


def _centers(
    units: list[Unit], figures: dict[str, dict[Key, int]], columns: tuple[Column, ...], total_label: str
) -> pd.DataFrame:
    rows = _units_at(units, figures, [c.key for c in columns])
    lead = [(u.code, u.name, UNIT_ROW, int(row is not None)) for u, row in zip(units, rows, strict=True)]
    if units:
        parts = [row for row in rows if row is not None]
        lead.append(("", total_label, TOTAL_ROW, len(parts)))
        rows.append(_sums(parts, len(columns)))
    return _frame(lead, ["code", "name", "level", "reported"], rows, columns)


def consolidate(rules: Rules, sources: Sequence[Submission], expected: Sequence[Unit]) -> Consolidation:
    """Sum the accepted forms of the `expected` units (one level: the province's, or ZX's children).

    Versions of other units (a child of ZX at the province, whose figures ZX's own form already holds),
    versions not accepted, and forms other than 附件1/附件2 are left out; if a unit's form comes in several
    versions, the latest is used.
    """
    expected = list(expected)
    parent = _parent(expected)
    total_label = PROVINCE_TOTAL_LABEL if parent == PROVINCE else TOTAL_LABEL
    groups = _ordered(rules, expected)
    in_order = [u for _, members in groups for u in members]

    warmth = rules.forms[WARMTH]
    warmth_used = history.used_forms(sources, in_order, WARMTH)
    tally = _Tally.of(warmth)
    warmth_figures = {code: tally.amounts(v) for code, v in warmth_used.items()}
    unit_columns = _unit_columns(warmth)
    by_unit = _by_unit(groups, warmth_figures, unit_columns, total_label)
    visits = warmth.section(VISITS)
    by_industry, industry_columns = _by_industry(visits, warmth_figures)
    pivot = _pivot(visits, in_order, warmth_figures, total_label)

    center_units = [u for u in in_order if CENTER in rules.forms and _owes(rules, u, CENTER)]
    center_used: dict[str, Submission] = {}
    center_columns: tuple[Column, ...] = ()
    center_figures: dict[str, dict[Key, int]] = {}
    if CENTER in rules.forms:
        center = rules.forms[CENTER]
        center_used = history.used_forms(sources, center_units, CENTER)
        tally = _Tally.of(center)
        center_figures = {code: tally.amounts(v) for code, v in center_used.items()}
        center_columns = _center_columns(center)
    centers = _centers(center_units, center_figures, center_columns, total_label)

    warmth_units = [u for u in in_order if _owes(rules, u, WARMTH)]
    used = [v for u in in_order for v in (warmth_used.get(u.code), center_used.get(u.code)) if v is not None]
    return Consolidation(
        by_unit=by_unit,
        by_industry=by_industry,
        pivot=pivot,
        centers=centers,
        units_reported=len({v.unit for v in used}),
        units_expected=len(expected),
        parent=parent,
        total_label=total_label,
        columns={"by_unit": unit_columns, "by_industry": industry_columns, "centers": center_columns},
        coverage={
            WARMTH: (len(warmth_used), len(warmth_units)),
            CENTER: (len(center_used), len(center_units)),
        },
        used=tuple(used),
    )


# --- headline figures ------------------------------------------------------------------------------------

# (name, by_unit column, unit of measure): the figures the federation quotes, in the order it quotes them.
HEADLINE: tuple[tuple[str, str, str], ...] = (
    ("筹集送温暖资金", "fund_total", "万元"),
    ("走访慰问困难企业", "enterprises_visited", "家"),
    ("慰问困难职工", "households", "户"),
    ("建档困难职工", "households_archived", "户"),
    ("困难农民工", "migrant_workers", "人"),
    ("劳动模范", "model_workers", "人"),
    ("一线职工", "frontline_workers", "人"),
    ("慰问金额", "amount_total", "万元"),
    ("慰问金", "amount_cash", "万元"),
    ("慰问品折款", "amount_goods", "万元"),
    ("领导干部下访", "cadre_visits", "人次"),
    ("召开座谈会", "forums", "次"),
    ("劳动经济权益大检查企业", "inspections", "家"),
    ("排查农民工欠薪问题", "wage_cases", "件"),
    ("帮助追回农民工欠薪", "wages_recovered", "万元"),
    ("提供法律援助", "legal_aid", "件"),
    ("帮助农民工返乡购票", "tickets", "人次"),
)


def headline(c: Consolidation) -> dict[str, float | int]:
    """The campaign's headline figures from the 合计 row: counts as int, money in 万元 rounded to the cent."""
    total = c.by_unit[c.by_unit["level"] == TOTAL_ROW].iloc[0]
    types = {col.name: col.type for col in c.columns["by_unit"]}
    out: dict[str, float | int] = {}
    for name, column, _ in HEADLINE:
        if column not in types:
            continue
        value = total[column]
        out[name] = float(money(value)) if types[column] == "money" else int(value)
    return out


# --- the roll-up of a unit that consolidates its children ----------------------------------------------


def rollup_values(
    rules: Rules, parent: str, form_code: str, sources: Sequence[Submission], sign: Mapping[str, object]
) -> dict[Key, Any]:
    """The filled form `form_code` of `parent` (ZX's 附件1): the sum of its children's latest accepted ones,
    合计 computed.

    The footer comes from `sign` (leader, preparer, phone, date, note); the result is what
    `template.fill` writes into `parent`'s template, itself a valid submission one level up.
    """
    form = rules.forms[form_code]
    children = [u for u in rules.children(parent) if _owes(rules, u, form_code)]
    chosen = history.used_forms(sources, children, form_code)
    tally = _Tally.of(form)
    parts = [tally.amounts(chosen[u.code]) for u in children if u.code in chosen]
    values: dict[Key, Any] = {}
    for section in form.sections:
        for row in section.rows or (None,):
            for f in section.fields:
                key = (section.code, row.code if row else "", f.code)
                if section.footer or not f.numeric:
                    values[key] = sign.get(f.code)
                else:
                    figure = sum(p[key] for p in parts)
                    values[key] = round(figure / CENT, 2) if f.type == "money" else figure
    return values
