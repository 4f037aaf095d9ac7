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
from pipeline.campaign.consolidation_plan import RANGE, SUM, Column, numeric_sections
from pipeline.campaign.consolidation_plan import Table as TablePlan
from pipeline.consolidation import history
from pipeline.model import Submission

Key = tuple[str, str, str]  # (section, row, field), as layout.Slot.key

__all__ = ["Column", "Consolidation", "Span", "Table", "consolidate", "money", "rollup_values"]

UNIT_ROW, SUBTOTAL_ROW, TOTAL_ROW = "unit", "subtotal", "total"
SUBTOTAL_LABEL = "小计"
PROVINCE_TOTAL_LABEL = "全省合计"
TOTAL_LABEL = "合计"
SHORT_TOTAL_LABEL = "已汇总单位合计({done}/{owed})"  # a total short of units says how short, not 全省合计


def is_total_label(text: str) -> bool:
    """A total row's label, whichever the level and however short of units (last year's workbook too)."""
    return text in (PROVINCE_TOTAL_LABEL, TOTAL_LABEL) or text.startswith(SHORT_TOTAL_LABEL.split("(")[0])


CENT = 100  # money is held as whole cents of 万元 (0.01 万元 = 100 元)


@dataclass(frozen=True)
class Span:
    """A field not summed across units (a centre's staff, its duty days): how many of the units in have a
    figure above 0, and the lowest and highest figure among them (None when no unit is in)."""

    units: int
    low: int | float | None
    high: int | float | None


Figure = int | float | Span  # a consolidated figure: a count, 万元, or a Span for a field not summed


@dataclass(frozen=True)
class Table:
    """One consolidated table as rules.yaml declares it (`plan`), its figures in `frame`.

    by_unit: one row per expected unit owing the form, grouped by kind in `rules.unit_kinds` order, a 小计
      row after each kind of more than one unit and a 合计 (全省合计 at the province) row last. Columns `code, name, kind, level,
      reported` (level: unit / subtotal / total; reported: 1 or 0 for a unit, the number reported for a
      (sub)total), then one column per value column. A unit whose form is not in has NA in its value columns.
    by_row: the rows of one tabular section (then its 合计) × its fields, summed over units; columns
      `code, label`, then the value columns.
    pivot: unit × the rows of a section for chosen fields: index (code, name) of every unit owing the form
      and a last ("", 合计) row; columns (field, row code) with the 合计 row code last in each block.
    per_unit: every number of the form per unit that owes it, then a 合计 row; columns `code, name, level,
      reported`, then the value columns (a tabular section's rows as `living.persons` …).

    A column that is not summed (`Column.aggregate`) is NA in every summed row; `spans` gives, at (row
    position, column), what stands there instead when it is `range`.
    """

    plan: TablePlan
    frame: pd.DataFrame
    spans: Mapping[tuple[int, Any], Span]

    @property
    def code(self) -> str:
        return self.plan.code

    @property
    def columns(self) -> tuple[Column, ...]:
        return self.plan.columns


@dataclass(frozen=True, eq=False)
class Consolidation:
    """One level's consolidated tables and figures, as rules.yaml's `consolidation:` section declares them."""

    tables: Mapping[str, Table]  # by code, in declared order
    figures: Mapping[str, Figure]  # the declared figures by name: the totals of the level's units
    shares: Mapping[str, tuple[tuple[Figure, ...], Figure | None]]  # the declared shares: parts, whole
    units_reported: int  # expected units with at least one form in the consolidation
    units_expected: int
    parent: str  # the level consolidated: "province" or the code of the unit whose children these are
    total_label: str  # 全省合计 at the province, 合计 elsewhere
    coverage: Mapping[str, tuple[int, int]]  # form → (units whose form is consolidated, units owing it)
    used: tuple[Submission, ...]  # the versions consolidated, in table order

    def __getitem__(self, code: str) -> pd.DataFrame:
        """The figures of the table `code` (as declared in rules.yaml)."""
        return self.tables[code].frame

    @property
    def columns(self) -> dict[str, tuple[Column, ...]]:
        return {code: t.columns for code, t in self.tables.items()}

    def caption(self, table: str, name: str) -> str:
        return next(c.caption for c in self.tables[table].columns if c.name == name)


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
        for section in numeric_sections(form):
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


# --- the tables ------------------------------------------------------------------------------------------

Figures = list[int]  # a row's whole units, in the order of its table's value columns
Amounts = dict[str, dict[Key, int]]  # unit code → every number of its form, in whole units


def _at(parts: Iterable[Mapping[Key, int]], keys: Sequence[Key]) -> list[Figures]:
    """Each of `parts` (a form's amounts) at `keys`."""
    return [[p[k] for k in keys] for p in parts]


def _units_at(units: Sequence[Unit], figures: Amounts, keys: Sequence[Key]) -> list[Figures | None]:
    """Each unit's figures at `keys`; None for a unit whose form is not in."""
    return [[figures[u.code][k] for k in keys] if u.code in figures else None for u in units]


@dataclass(frozen=True)
class _Adding:
    """How the value columns of a table add up across units: each summed, or not (None in the sum, and a
    Span where the column is `range`)."""

    width: int
    types: tuple[str, ...]
    not_summed: tuple[tuple[int, str], ...] = ()  # (column index, aggregate) of the columns not summed

    @classmethod
    def of(cls, columns: Sequence[Column]) -> _Adding:
        odd = tuple((j, c.aggregate) for j, c in enumerate(columns) if c.aggregate != SUM)
        return cls(len(columns), tuple(c.type for c in columns), odd)

    def sums(self, rows: Sequence[Figures]) -> tuple[list[int | None], dict[int, Span]]:
        """Rows added up, column by column (zeros when there are none), and the spans of `range` columns."""
        sums: list[int | None] = (
            [sum(column) for column in zip(*rows, strict=True)] if rows else [0] * self.width
        )
        spans: dict[int, Span] = {}
        for j, aggregate in self.not_summed:
            sums[j] = None
            if aggregate == RANGE:
                values = [r[j] for r in rows]
                low, high = (min(values), max(values)) if values else (None, None)
                spans[j] = Span(
                    sum(v > 0 for v in values),
                    _present(low, self.types[j]) if values else None,
                    _present(high, self.types[j]) if values else None,
                )
        return sums, spans


def _columns(rows: Sequence[Sequence[int | None] | None], types: Sequence[str]) -> list[Any]:
    """Rows of whole units as one typed column of figures per type: Int64 for a count, float 万元 for money;
    a row that is None is blank across, as is a None in a row."""
    blank = (None,) * len(types)
    cells = list(zip(*(blank if r is None else r for r in rows), strict=True)) if rows else [()] * len(types)
    return [
        pd.array([_present(u, ftype) for u in column], dtype="Int64" if ftype == "count" else "float64")
        for column, ftype in zip(cells, types, strict=True)
    ]


def _frame(
    lead: list[tuple[Any, ...]],
    names: list[str],
    rows: Sequence[Sequence[int | None] | None],
    columns: Sequence[Column],
) -> pd.DataFrame:
    """A table: the `lead` rows' columns (`names`) as pandas makes them, then a column per `columns` from
    the rows' figures."""
    frame = pd.DataFrame.from_records(lead, columns=names)
    for c, figures in zip(columns, _columns(rows, [c.type for c in columns]), strict=True):
        frame[c.name] = figures
    return frame


Spans = dict[tuple[int, Any], Span]


def _by_unit(
    plan: TablePlan, groups: list[tuple[str, list[Unit]]], figures: Amounts, total_label: str
) -> Table:
    columns = plan.columns
    keys = [c.key for c in columns]
    adding = _Adding.of(columns)
    lead: list[tuple[str, str, str, str, int]] = []
    rows: list[Sequence[int | None] | None] = []
    spans: Spans = {}

    def record(
        code: str,
        name: str,
        kind: str,
        level: str,
        reported: int,
        row: Sequence[int | None] | None,
        found: Mapping[int, Span] | None = None,
    ) -> None:
        if found:
            spans.update({(len(lead), columns[j].name): span for j, span in found.items()})
        lead.append((code, name, kind, level, reported))
        rows.append(row)

    everyone: list[Figures] = []
    for kind, members in groups:
        own = _units_at(members, figures, keys)
        parts = [row for row in own if row is not None]
        for u, row in zip(members, own, strict=True):
            record(u.code, u.name, kind, UNIT_ROW, int(row is not None), row)
        if len(members) > 1:  # a kind of one unit: its 小计 would repeat the unit's row
            record("", f"{kind}{SUBTOTAL_LABEL}", kind, SUBTOTAL_ROW, len(parts), *adding.sums(parts))
        everyone += parts
    record("", total_label, "", TOTAL_ROW, len(everyone), *adding.sums(everyone))
    return Table(plan, _frame(lead, ["code", "name", "kind", "level", "reported"], rows, columns), spans)


def _by_row(plan: TablePlan, section: Section, figures: Amounts) -> Table:
    columns = plan.columns
    width = len(columns)
    keys = [(section.code, row.code, c.name) for row in section.rows for c in columns]
    # Every row's columns taken in one pass over the units, then cut into the section's rows.
    sums, found = _Adding.of([c for _ in section.rows for c in columns]).sums(_at(figures.values(), keys))
    rows: list[Sequence[int | None] | None] = [
        sums[i * width : (i + 1) * width] for i in range(len(section.rows))
    ]
    spans: Spans = {(j // width, columns[j % width].name): span for j, span in found.items()}
    lead = [(row.code, row.label) for row in section.rows]
    return Table(plan, _frame(lead, ["code", "label"], rows, columns), spans)


def _pivot(plan: TablePlan, section: Section, units: list[Unit], figures: Amounts, total_label: str) -> Table:
    rows = [*section.detail_rows, *(r for r in section.rows if r.total)]
    columns = [c for c in plan.columns for _ in rows]
    keys = [(section.code, row.code, c.name) for c in plan.columns for row in rows]
    total, found = _Adding.of(columns).sums(_at(figures.values(), keys))
    cells = _columns([*_units_at(units, figures, keys), total], [c.type for c in columns])
    index = pd.MultiIndex.from_tuples(
        [(u.code, u.name) for u in units] + [("", total_label)], names=["code", "name"]
    )
    names = [(c.name, row.code) for c in plan.columns for row in rows]
    frame = pd.DataFrame(dict(zip(names, cells, strict=True)), index=index)
    frame.columns = pd.MultiIndex.from_tuples(names, names=["field", "row"])
    return Table(plan, frame, {(len(units), names[j]): span for j, span in found.items()})


def _per_unit(plan: TablePlan, units: list[Unit], figures: Amounts, total_label: str) -> Table:
    columns = plan.columns
    rows: list[Sequence[int | None] | None] = list(_units_at(units, figures, [c.key for c in columns]))
    lead = [(u.code, u.name, UNIT_ROW, int(row is not None)) for u, row in zip(units, rows, strict=True)]
    spans: Spans = {}
    if units:
        parts = [row for row in rows if row is not None]
        sums, found = _Adding.of(columns).sums(parts)  # type: ignore[arg-type]  # the unit rows are whole
        spans = {(len(lead), columns[j].name): span for j, span in found.items()}
        lead.append(("", total_label, TOTAL_ROW, len(parts)))
        rows.append(sums)
    return Table(plan, _frame(lead, ["code", "name", "level", "reported"], rows, columns), spans)


def _totals(
    rules: Rules, amounts: Mapping[str, Amounts], tables: Mapping[str, Table]
) -> dict[tuple[str, Key], Figure]:
    """What the declared figures and shares name, each summed over the units in (or its Span, for a field
    not summed). Most are in a table's 合计 row already; the rest are summed in one pass over the units."""
    known: dict[tuple[str, Key], Figure] = {}
    for t in tables.values():
        frame, last = t.frame, len(t.frame) - 1
        if t.plan.kind in ("by_unit", "per_unit") and last >= 0 and frame["level"].iloc[-1] == TOTAL_ROW:
            for c in t.columns:
                value = frame[c.name].iloc[-1]
                if c.aggregate == RANGE:
                    known[(t.plan.form, c.key)] = t.spans[(last, c.name)]
                elif c.aggregate == SUM:
                    known[(t.plan.form, c.key)] = int(value) if c.type == "count" else float(value)
    plan = rules.consolidation
    wanted: dict[str, dict[Key, tuple[str, str]]] = {}  # form → key → (type, aggregate)
    for f in plan.figures:
        wanted.setdefault(f.form, {})[f.key] = (f.type, f.aggregate)
    for share in plan.shares:
        for p in (*share.parts, *((share.whole,) if share.whole else ())):
            wanted.setdefault(share.form, {}).setdefault(p.key, (p.type, SUM))
    for form, named in wanted.items():
        keys = [k for k in named if (form, k) not in known]
        if not keys:
            continue
        kinds = [named[k] for k in keys]
        odd = tuple((j, a) for j, (_, a) in enumerate(kinds) if a != SUM)
        sums, spans = _Adding(len(keys), tuple(t for t, _ in kinds), odd).sums(
            _at(amounts[form].values(), keys)
        )
        for j, key in enumerate(keys):
            known[(form, key)] = spans[j] if j in spans else _present(sums[j], kinds[j][0])
    return known


def consolidate(rules: Rules, sources: Sequence[Submission], expected: Sequence[Unit]) -> Consolidation:
    """Sum the accepted forms of the `expected` units (one level: the province's, or ZX's children) into the
    tables and figures rules.yaml declares.

    Versions of other units (a child of ZX at the province, whose figures ZX's own form already holds),
    versions not accepted, and forms no table or figure uses are left out; if a unit's form comes in several
    versions, the latest is used.
    """
    expected = list(expected)
    parent = _parent(expected)
    total_label = PROVINCE_TOTAL_LABEL if parent == PROVINCE else TOTAL_LABEL
    groups = _ordered(rules, expected)
    in_order = [u for _, members in groups for u in members]
    plan = rules.consolidation

    owing: dict[str, list[Unit]] = {}
    chosen: dict[str, dict[str, Submission]] = {}
    amounts: dict[str, Amounts] = {}
    for form in plan.forms:  # each form's numbers worked out once, for every table and figure of it
        owing[form] = [u for u in in_order if _owes(rules, u, form)]
        chosen[form] = history.used_forms(sources, owing[form], form)
        tally = _Tally.of(rules.forms[form])
        amounts[form] = {code: tally.amounts(v) for code, v in chosen[form].items()}

    tables: dict[str, Table] = {}
    for t in plan.tables:
        if t.kind == "by_unit":
            mine = [(kind, [u for u in members if _owes(rules, u, t.form)]) for kind, members in groups]
            tables[t.code] = _by_unit(t, [g for g in mine if g[1]], amounts[t.form], total_label)
        elif t.kind == "by_row":
            tables[t.code] = _by_row(t, rules.forms[t.form].section(t.section), amounts[t.form])
        elif t.kind == "pivot":
            section = rules.forms[t.form].section(t.section)
            tables[t.code] = _pivot(t, section, owing[t.form], amounts[t.form], total_label)
        else:
            tables[t.code] = _per_unit(t, owing[t.form], amounts[t.form], total_label)

    used = [v for u in in_order for v in (chosen[form].get(u.code) for form in plan.forms) if v is not None]
    totals = _totals(rules, amounts, tables)
    return Consolidation(
        tables=tables,
        figures={f.name: totals[(f.form, f.key)] for f in plan.figures},
        shares={
            s.name: (
                tuple(totals[(s.form, p.key)] for p in s.parts),
                totals[(s.form, s.whole.key)] if s.whole else None,
            )
            for s in plan.shares
        },
        units_reported=len({v.unit for v in used}),
        units_expected=len(expected),
        parent=parent,
        total_label=total_label,
        coverage={form: (len(chosen[form]), len(owing[form])) for form in plan.forms},
        used=tuple(used),
    )


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
                elif rules.consolidation.aggregate(form_code, section.code, f.code) != SUM:
                    values[key] = None  # it describes each unit itself: the parent fills in its own
                else:
                    figure = sum(p[key] for p in parts)
                    values[key] = round(figure / CENT, 2) if f.type == "money" else figure
    return values
