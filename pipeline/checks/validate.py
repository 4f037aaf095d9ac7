"""Validation: normalised values of many submissions, checked together against rules.yaml.

Each form gets one pandera schema built from its declaration and rules; all submissions of that form
are concatenated into one wide frame (a row per submission, a column per value) and validated in one
lazy call. pandera's failure cases are mapped back to each submission's sheet and A1 cell.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import pandas as pd
import pandera.pandas as pa

from pipeline.campaign import layout, rulelang
from pipeline.campaign.config import Field, Form, Rule, Rules, Section
from pipeline.model import Checked, Finding, Key, Read
from pipeline.submission import normalize


@lru_cache(maxsize=4096)
def column(key: Key) -> str:
    """The frame's column name of a value: asked for each of 6,000 forms' 70 values at national scale."""
    section, row, fld = key
    return f"{section}.{row}.{fld}" if row else f"{section}.{fld}"


# --- the schema ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _CheckSpec:
    """What a named pandera check stands for, so its failures can be told in words."""

    rule: Rule
    row: str = ""  # each_row rules and row_total: the row (or field for row_total)
    field: str = ""  # row_total: the column checked


@dataclass(frozen=True)
class _Schema:
    schema: pa.DataFrameSchema
    specs: dict[str, _CheckSpec]


@lru_cache(maxsize=8)
def _schema(rules: Rules, form_code: str) -> _Schema:
    form = rules.forms[form_code]
    lay = layout.compute(form)
    by_kind = {r.kind: r for r in rules.rules_for(form_code) if r.kind in ("type", "required")}
    columns: dict[str, pa.Column] = {}
    for slot in lay.slots:
        name = column(slot.key)
        f = slot.field
        if f.numeric:
            checks = [] if slot.is_total else _type_checks(f, by_kind.get("type"))
            columns[name] = pa.Column(float, checks, nullable=True, coerce=False, required=True)
        else:
            # A required footer field must not be null; pandera reports it as the check "not_nullable".
            # Its dtype is not checked: text comes as pandas' str, a date as object, a blank column as
            # float, and a column's dtype failure points at no form (it cost 4 failure cases a batch).
            required = f.required and "required" in by_kind
            columns[name] = pa.Column(None, nullable=not required, required=True)
    specs: dict[str, _CheckSpec] = {}
    frame_checks = []
    for rule in rules.rules_for(form_code):
        for name, spec, fn in _rule_checks(rule, form, rules.tolerance):
            specs[name] = spec
            # Every check holds where a value it names is blank (`_evaluate_rule`, row_total), so also on a
            # form whose values are all blank: pandera's search for those (ignore_na), a pass over the whole
            # frame for each of its ~50 checks, could not change a verdict.
            frame_checks.append(pa.Check(fn, name=name, ignore_na=False))
    schema = pa.DataFrameSchema(columns, checks=frame_checks, strict=False, coerce=False)
    return _Schema(schema, specs)


def _type_checks(f: Field, rule: Rule | None) -> list[pa.Check]:
    if rule is None:
        return []
    checks = []
    low = f.min if f.min is not None else 0.0
    checks.append(pa.Check(lambda s, low=low: s.isna() | (s >= low), name=f"min|{low:g}"))
    if f.max is not None:
        checks.append(pa.Check(lambda s, high=f.max: s.isna() | (s <= high), name=f"max|{f.max:g}"))
    if f.type == "count":
        checks.append(pa.Check(lambda s: s.isna() | (s == s.round()), name="whole"))
    return checks


def _lookup(frame: pd.DataFrame, prefixed: bool = False) -> Callable[[rulelang.Ref], pd.Series]:
    """Values of a reference in a wide frame; cross-form frames prefix columns with the form code."""

    def get(ref: rulelang.Ref) -> pd.Series:
        name = column((ref.section, ref.row, ref.field))
        return frame[f"{ref.form}:{name}" if prefixed else name]

    return get


def _scope(rule: Rule, rules_forms: dict[str, Form]) -> rulelang.Scope:
    scope = rulelang.Scope(forms=rules_forms, each_row=rule.each_row, cross_form=len(rule.forms) > 1)
    for name, _ in rule.let:
        scope = scope.with_name(name)
    return scope


def _evaluate_rule(rule: Rule, form_map: dict[str, Form], frame: pd.DataFrame, row: str, tolerance: float,
                   lookup: Callable[[rulelang.Ref], Any]) -> tuple[pd.Series, dict[str, Any]]:
    """The rule's verdict per submission (True = holds), and its let values for messages."""
    scope = _scope(rule, form_map)
    names: dict[str, Any] = {}
    for name, expr in rule.let:
        names[name] = rulelang.evaluate(expr, lookup, names, scope, row, tolerance)
    assert rule.check is not None
    holds = _series(rulelang.evaluate(rule.check, lookup, names, scope, row, tolerance), frame.index)
    unknown = _any_nan([lookup(r.at_row(row)) for r in _all_refs(rule)], frame.index)
    if rule.when is not None:
        applies = _series(rulelang.evaluate(rule.when, lookup, names, scope, row, tolerance), frame.index)
        holds = holds | ~applies
    return holds | unknown, names


def _series(value: Any, index: pd.Index) -> pd.Series:
    if isinstance(value, pd.Series):
        return value.fillna(False).astype(bool)
    return pd.Series(bool(value), index=index)


def _any_nan(values: list[Any], index: pd.Index) -> pd.Series:
    out = pd.Series(False, index=index)
    for v in values:
        if isinstance(v, pd.Series):
            out |= v.isna()
    return out


def _all_refs(rule: Rule) -> list[rulelang.Ref]:
    exprs = [e for _, e in rule.let] + [e for e in (rule.check, rule.when) if e is not None]
    return [r for e in exprs for r in e.refs]


def _rule_checks(rule: Rule, form: Form, tolerance: float) -> Iterable[tuple[str, _CheckSpec, Callable]]:
    if rule.kind == "row_total":
        section = form.section(rule.section)
        total = section.total_row
        assert total is not None
        for f in section.fields:
            spec = _CheckSpec(rule, total.code, f.code)

            def holds(frame: pd.DataFrame, section: Section = section, f: Field = f) -> pd.Series:
                detail = frame[[column((section.code, r.code, f.code)) for r in section.detail_rows]].sum(
                    axis=1, skipna=False
                )
                given = frame[column((section.code, total.code, f.code))]
                return given.isna() | detail.isna() | ((given - detail).abs() <= tolerance + 1e-9)

            yield f"{rule.id}#{rule.index}|{f.code}", spec, holds
    elif rule.kind == "check" and len(rule.forms) == 1:
        form_map = {form.code: form}
        rows = [r.code for r in form.section(rule.each_row).rows] if rule.each_row else [""]
        for row in rows:
            spec = _CheckSpec(rule, row)

            def holds_row(frame: pd.DataFrame, rule: Rule = rule, row: str = row) -> pd.Series:
                return _evaluate_rule(rule, form_map, frame, row, tolerance, _lookup(frame))[0]

            yield f"{rule.id}#{rule.index}|{row}", spec, holds_row


# --- running and telling ---------------------------------------------------------------------------------


def validate(submissions: Sequence[Read], rules: Rules, today: dt.date | None = None) -> list[Checked]:
    """Check every submission; forms of one kind in one pandera call. Order of the input is kept."""
    today = today or dt.date.today()
    return validate_prepared([normalize.prepared(sub, rules, today) for sub in submissions], rules)


def validate_prepared(results: list[Checked], rules: Rules) -> list[Checked]:
    """Validate submissions already normalised (`normalize.prepared`, done where each file was read):
    forms of one kind in one pandera call, then the rules across forms. Order of the input is kept."""
    by_form: dict[str, list[int]] = {}
    for i, checked in enumerate(results):
        if checked.normalised:
            by_form.setdefault(checked.read.form or "", []).append(i)
    for form_code, indices in by_form.items():
        _validate_form(rules, form_code, [results[i] for i in indices])
    _cross_form(rules, results)
    for r in results:
        r.findings = _without_echoes(_dedupe(r.findings), rules)
    return results


@lru_cache(maxsize=8)
def _echoing(rules: Rules) -> tuple[frozenset[str], frozenset[str]]:
    """The 合计 rows' codes and the row-by-row rules: asked for each of 6,000 forms."""
    total_rows = {r.code for form in rules.forms.values() for s in form.sections for r in s.rows if r.total}
    return frozenset(total_rows), frozenset(r.id for r in rules.rules if r.each_row)


def _without_echoes(findings: list[Finding], rules: Rules) -> list[Finding]:
    """A row-by-row rule broken in a detail row also breaks on the 合计 row that sums it: tell it once."""
    total_rows, row_rules = _echoing(rules)
    broken_in_detail = {f.rule for f in findings if f.rule in row_rules and f.row and f.row not in total_rows}
    return [f for f in findings if not (f.row in total_rows and f.rule in broken_in_detail)]


def _keys(form: Form) -> list[Key]:
    """A form's values in layout order: the order normalisation gives them in, and the frames' columns."""
    return [s.key for s in layout.compute(form).slots]


def _row(values: dict[Key, Any], keys: list[Key]) -> list[Any]:
    """A submission's values in the order of `keys`, NaN for one it lacks (as pandas fills a record).

    Normalised values come in that order already: one list comparison then stands for 70 look-ups of
    tuple keys, for each of 6,000 forms."""
    if list(values) == keys:
        return list(values.values())
    return [values.get(k, math.nan) for k in keys]


def _frame(checked: list[Checked], keys: list[Key]) -> pd.DataFrame:
    rows = [_row(c.values, keys) for c in checked]
    frame = pd.DataFrame.from_records(rows, index=pd.RangeIndex(len(checked)), columns=[column(k) for k in keys])
    for name in frame.columns:
        if frame[name].dtype == object and all(isinstance(v, int | float) or v is None for v in frame[name]):
            frame[name] = frame[name].astype(float)
    return frame


def _validate_form(rules: Rules, form_code: str, checked: list[Checked]) -> None:
    form = rules.forms[form_code]
    built = _schema(rules, form_code)
    frame = _frame(checked, _keys(form))
    numeric = [column(s.key) for s in layout.compute(form).slots if s.field.numeric]
    frame[numeric] = frame[numeric].astype(float)
    try:
        built.schema.validate(frame, lazy=True)
        return
    except pa.errors.SchemaErrors as exc:
        cases = exc.failure_cases
    lay = layout.compute(form)
    slots = {column(s.key): s for s in lay.slots}
    rules_by_kind = {r.kind: r for r in rules.rules_for(form_code)}
    seen: set[tuple[str, int]] = set()
    for case in cases.itertuples(index=False):
        index = case.index
        if index is None or (isinstance(index, float) and math.isnan(index)):
            continue
        check = str(case.check)
        target = checked[int(index)]
        if case.schema_context == "Column":
            slot = slots[str(case.column)]
            if check == "not_nullable":
                target.findings.append(_required(rules_by_kind["required"], target, slot))
            else:
                target.findings.append(_type(rules_by_kind["type"], target, slot, check))
        elif check in built.specs and (check, int(index)) not in seen:
            seen.add((check, int(index)))
            spec = built.specs[check]
            target.findings.append(_rule_finding(spec, target, form, frame.iloc[[int(index)]], rules.tolerance))


def _cell_of(target: Checked, slot: layout.Slot) -> tuple[str, str]:
    cell = target.read.cells.get(slot.key)
    return (cell.sheet, cell.address) if cell else (slot.section.code, slot.cell)


def _raw(target: Checked, key: Key) -> str:
    cell = target.read.cells.get(key)
    return "" if cell is None or cell.raw is None else normalize.as_typed(cell.raw)


def _type(rule: Rule, target: Checked, slot: layout.Slot, check: str) -> Finding:
    sheet, address = _cell_of(target, slot)
    f = slot.field
    expected = "整数" if f.type == "count" else "数字"
    kind, _, bound = check.partition("|")
    hint = {"whole": "不能有小数", "max": f"不能超过 {bound}"}.get(kind)
    if hint is None:
        hint = "不能为负数" if float(bound) == 0 else f"不能小于 {bound}"
    return Finding(
        rule=rule.id, severity=rule.severity, sheet=sheet, cell=address, field=f.code, row=slot.key[1],
        value=_raw(target, slot.key),
        message=_format(rule.message, cell=address, label=_label(slot), expected=expected,
                        value=_raw(target, slot.key), hint=hint),
    )


def _required(rule: Rule, target: Checked, slot: layout.Slot) -> Finding:
    sheet, address = _cell_of(target, slot)
    return Finding(
        rule=rule.id, severity=rule.severity, sheet=sheet, cell=address, field=slot.field.code, row="",
        value="", message=_format(rule.message, cell=address, label=slot.field.label, problem="未填写,请补充"),
    )


def _label(slot: layout.Slot) -> str:
    return f"{slot.row.label}“{slot.field.caption}”" if slot.row else slot.field.caption


def _rule_finding(spec: _CheckSpec, target: Checked, form: Form, one: pd.DataFrame, tolerance: float) -> Finding:
    rule = spec.rule
    lay = layout.compute(form)
    if rule.kind == "row_total":
        section = form.section(rule.section)
        f = section.field(spec.field)
        slot = lay.slot(section.code, spec.row, f.code)
        sheet, address = _cell_of(target, slot)
        first = lay.slot(section.code, section.detail_rows[0].code, f.code)
        last = lay.slot(section.code, section.detail_rows[-1].code, f.code)
        detail = sum(target.values[(section.code, r.code, f.code)] for r in section.detail_rows)
        value = target.values[slot.key]
        return Finding(
            rule=rule.id, severity=rule.severity, sheet=sheet, cell=address, field=f.code, row=spec.row,
            value=normalize.fmt_number(value, f),
            message=_format(rule.message, cell=address, row=slot.row.label if slot.row else "", label=f.caption,
                            value=normalize.fmt_number(value, f),
                            range=f"{_cell_of(target, first)[1]}:{_cell_of(target, last)[1]}",
                            sum=normalize.fmt_number(detail, f)),
        )
    form_map = {form.code: form}
    lookup = _lookup(one)
    _, names = _evaluate_rule(rule, form_map, one, spec.row, tolerance, lookup)
    primary = _primary_ref(rule).at_row(spec.row)
    slot = lay.slot(primary.section, primary.row, primary.field)
    sheet, address = _cell_of(target, slot)
    context = _message_values(rule, form_map, lookup, names, spec.row)
    value = target.values.get(slot.key)
    return Finding(
        rule=rule.id, severity=rule.severity, sheet=sheet, cell=address, field=primary.field, row=primary.row,
        value=normalize.fmt_number(value, slot.field) if isinstance(value, int | float) else "",
        message=_format(rule.message, cell=address, label=slot.field.caption,
                        row=slot.row.label if slot.row else "",
                        value=normalize.fmt_number(value, slot.field) if isinstance(value, int | float) else "",
                        **context),
    )


def _primary_ref(rule: Rule) -> rulelang.Ref:
    """The cell a finding points at: the first value named in `when`, else in `check` (through let names)."""
    lets = dict(rule.let)
    for expr in (rule.when, rule.check):
        if expr is None:
            continue
        if expr.refs:
            return expr.refs[0]
        for name in expr.names:
            if lets[name].refs:
                return lets[name].refs[0]
    raise ValueError(f"rule {rule.id} names no field")


def _message_values(
    rule: Rule, form_map: dict[str, Form], lookup: Callable, names: dict[str, Any], row: str
) -> dict[str, str]:
    money = any(_field_of(form_map, ref).type == "money" for ref in _all_refs(rule))
    out: dict[str, str] = {k: _fmt(_first(v), money) for k, v in names.items()}
    assert rule.check is not None
    sides = rule.check.sides
    if sides is not None:
        scope = _scope(rule, form_map)
        out["left"] = _fmt(_first(rulelang.evaluate_node(sides[0], rule.check, lookup, names, scope, row)), money)
        out["right"] = _fmt(_first(rulelang.evaluate_node(sides[1], rule.check, lookup, names, scope, row)), money)
    return out


def _field_of(form_map: dict[str, Form], ref: rulelang.Ref) -> Field:
    return form_map[ref.form].section(ref.section).field(ref.field)


def _first(value: Any) -> Any:
    return value.iloc[0] if isinstance(value, pd.Series) else value


def _fmt(value: Any, money: bool = True) -> str:
    """A number for a message: whole for counts, two decimals for money (more when it is below 0.01)."""
    if isinstance(value, bool):
        return "是" if value else "否"
    if isinstance(value, int | float) and not (isinstance(value, float) and math.isnan(value)):
        if not money and float(value).is_integer():
            return str(int(value))
        return f"{value:.4f}".rstrip("0") if 0 < abs(value) < 0.01 else f"{value:.2f}"
    return str(value)


class _Blank(dict):
    def __missing__(self, key: str) -> str:
        return ""


def _format(template: str, **values: Any) -> str:
    return template.format_map(_Blank(values)).replace("  ", " ").strip()


# --- across forms ----------------------------------------------------------------------------------------


@lru_cache(maxsize=4096)
def _prefixed(form_code: str, key: Key) -> str:
    return f"{form_code}:{column(key)}"


def _cross_form(rules: Rules, results: list[Checked]) -> None:
    """Rules over a unit's two forms (X-archive), when both are in the batch."""
    cross = [r for r in rules.rules if r.kind == "check" and len(r.forms) > 1]
    if not cross:
        return
    latest: dict[tuple[str, str], Checked] = {}
    for c in results:
        if c.values and c.read.unit:
            latest[(c.read.unit, c.read.form or "")] = c
    for rule in cross:
        units = sorted({u for (u, f) in latest if f == rule.forms[0]})
        pairs: list[tuple[str, list[Checked]]] = []
        for u in units:
            both = [latest.get((u, f)) for f in rule.forms]
            if all(both):
                pairs.append((u, [c for c in both if c is not None]))
        if not pairs:
            continue
        keys = {f: _keys(rules.forms[f]) for f in rule.forms}
        columns = [_prefixed(f, k) for f in rule.forms for k in keys[f]]
        rows = [[v for f, c in zip(rule.forms, cs, strict=True) for v in _row(c.values, keys[f])]
                for _, cs in pairs]
        frame = pd.DataFrame.from_records(rows, columns=columns).astype(float, errors="ignore")
        form_map = {f: rules.forms[f] for f in rule.forms}
        holds, names = _evaluate_rule(rule, form_map, frame, "", rules.tolerance, _lookup(frame, prefixed=True))
        for i in [i for i, ok in enumerate(holds) if not ok]:
            primary = _primary_ref(rule)
            target = pairs[i][1][rule.forms.index(primary.form)]
            assert target is not None
            form = rules.forms[primary.form]
            slot = layout.compute(form).slot(primary.section, primary.row, primary.field)
            sheet, address = _cell_of(target, slot)
            one_names = {k: v.iloc[i] if isinstance(v, pd.Series) else v for k, v in names.items()}
            context = _message_values(rule, form_map, _lookup(frame.iloc[[i]], prefixed=True), one_names, "")
            target.findings.append(Finding(
                rule=rule.id, severity=rule.severity, sheet=sheet, cell=address, field=primary.field,
                row=primary.row, value=_fmt(target.values.get(slot.key), slot.field.type == "money"),
                message=_format(rule.message, cell=address, label=slot.field.caption, **context),
            ))


def _dedupe(findings: list[Finding]) -> list[Finding]:
    seen: set[tuple[str, str, str, str]] = set()
    out = []
    for f in findings:
        key = (f.rule, f.sheet, f.cell, f.message)
        if key not in seen:
            seen.add(key)
            out.append(f)
    return out


__all__ = ["Checked", "validate", "column"]
