"""Validation: prepared submissions checked together against rules.yaml, a Report for each.

All submissions of a form are concatenated into one wide frame (a row per submission, a column per value)
and validated by that form's pandera schema in one lazy call; each failure case is mapped back, through the
schema's side table, to its rule object, which words the finding at the unit's own sheet and A1 cell. Then
the rules across a unit's forms. Nothing given is changed: the findings are in the reports.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import pandas as pd
import pandera.pandas as pa

from pipeline.campaign import layout
from pipeline.campaign.config import Form, Rules
from pipeline.checks import expressions
from pipeline.checks.expressions import CheckRule
from pipeline.checks.kinds import FrameCheck, column
from pipeline.checks.ruleset import Ruleset, prepare
from pipeline.checks.schema import FormSchema, for_form
from pipeline.model import Checked, Finding, Key, Read, Report


def validate(prepared: Sequence[Checked], rules: Rules) -> list[Report]:
    """A report for each prepared submission (`checks.prepare`, done where each file was read), in the
    order given: forms of one kind in one pandera call, then the rules across a unit's forms."""
    found: list[list[Finding]] = [list(c.findings) for c in prepared]
    by_form: dict[str, list[int]] = {}
    for i, checked in enumerate(prepared):
        if checked.normalised:
            by_form.setdefault(checked.read.form or "", []).append(i)
    for form_code, positions in by_form.items():
        for i, finding in _validate_form(rules, form_code, [prepared[i] for i in positions]):
            found[positions[i]].append(finding)
    for i, finding in _across_forms(rules, prepared):
        found[i].append(finding)
    book = Ruleset.of(rules)
    total_rows, row_rules = _total_rows(rules), book.row_by_row
    return [
        Report(
            c, tuple(_without_symptoms(_without_echoes(_dedupe(f), total_rows, row_rules), book)) if f else ()
        )
        for c, f in zip(prepared, found, strict=True)
    ]


def validate_reads(reads: Sequence[Read], rules: Rules, today: dt.date | None = None) -> list[Report]:
    """`prepare` each read submission here, then `validate` them together."""
    today = today or dt.date.today()
    return validate([prepare(sub, rules, today) for sub in reads], rules)


# --- one form --------------------------------------------------------------------------------------------


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


def _frame(checked: Sequence[Checked], form: Form) -> pd.DataFrame:
    keys = _keys(form)
    rows = [_row(c.values, keys) for c in checked]
    frame = pd.DataFrame.from_records(
        rows, index=pd.RangeIndex(len(checked)), columns=[column(k) for k in keys]
    )
    for name in frame.columns:
        if frame[name].dtype == object and all(isinstance(v, int | float) or v is None for v in frame[name]):
            frame[name] = frame[name].astype(float)
    numeric = [column(s.key) for s in layout.compute(form).slots if s.field.numeric]
    frame[numeric] = frame[numeric].astype(float)
    return frame


def _validate_form(rules: Rules, form_code: str, checked: Sequence[Checked]) -> list[tuple[int, Finding]]:
    """The schema's findings, each with the position in `checked` of the submission it is about, in the
    order of pandera's failure cases."""
    built = for_form(rules, form_code)
    frame = _frame(checked, rules.forms[form_code])
    try:
        built.schema.validate(frame, lazy=True)
        return []
    except pa.errors.SchemaErrors as exc:
        cases = exc.failure_cases
    # A frame check's failure comes once for each column of the row that broke it: keep the first.
    repeated = cases.duplicated(["schema_context", "check_number", "index"]) & (
        cases["schema_context"] != "Column"
    )
    cases = cases[~repeated]
    out: list[tuple[int, Finding | tuple[int, int]]] = []
    failed: dict[int, list[int]] = {}  # frame check number → positions that broke it, in order
    for case in cases.itertuples(index=False):
        index = case.index
        if index is None or (isinstance(index, float) and math.isnan(index)):
            continue
        i = int(index)
        target = checked[i]
        if case.schema_context == "Column":
            slot = built.slots[str(case.column)]
            if case.check == "not_nullable" and built.required is not None:
                out.append((i, built.required.missing(target, slot)))
            elif (str(case.column), _number(case.check_number)) in built.bounds:
                bound = built.bounds[(str(case.column), _number(case.check_number))]
                out.append((i, bound.rule.out_of_bounds(target, slot, bound.hint)))
        else:
            number = _number(case.check_number)
            failed.setdefault(number, []).append(i)
            out.append((i, (number, i)))
    worded = {
        key: f
        for number, positions in failed.items()
        for key, f in _frame_findings(built, number, positions, frame, checked, rules.tolerance).items()
    }
    return [(i, f if isinstance(f, Finding) else worded[f]) for i, f in out]


def _number(value: Any) -> int:
    return -1 if value is None or (isinstance(value, float) and math.isnan(value)) else int(value)


def _frame_findings(
    built: FormSchema,
    number: int,
    positions: list[int],
    frame: pd.DataFrame,
    checked: Sequence[Checked],
    tolerance: float,
) -> dict[tuple[int, int], Finding]:
    """The findings of one frame check, worded together: a check rule's message values are evaluated once
    over the rows that broke it, not once a row."""
    check: FrameCheck = built.checks[number]
    targets = [checked[i] for i in positions]
    if isinstance(check.rule, CheckRule):
        failed = frame.iloc[positions]
        found = check.rule.findings(failed, expressions.lookup(failed), targets, check.row, tolerance)
    else:
        found = [check.rule.finding(t, check) for t in targets]
    return {(number, i): f for i, f in zip(positions, found, strict=True)}


# --- across forms ----------------------------------------------------------------------------------------


@lru_cache(maxsize=4096)
def _prefixed(form_code: str, key: Key) -> str:
    return f"{form_code}:{column(key)}"


def _across_forms(rules: Rules, prepared: Sequence[Checked]) -> list[tuple[int, Finding]]:
    """Rules over a unit's several forms (X-archive), when they are all in the batch (its last of each)."""
    cross = Ruleset.of(rules).across_forms
    if not cross:
        return []
    latest: dict[tuple[str, str], int] = {}
    for i, c in enumerate(prepared):
        if c.values and c.read.unit:
            latest[(c.read.unit, c.read.form or "")] = i
    out: list[tuple[int, Finding]] = []
    for rule in cross:
        codes = [f.code for f in rule.forms]
        units = sorted({u for (u, f) in latest if f == codes[0]})
        sets = [[latest[(u, f)] for f in codes] for u in units if all((u, f) in latest for f in codes)]
        if not sets:
            continue
        keys = {f.code: _keys(f) for f in rule.forms}
        names = [_prefixed(f, k) for f in codes for k in keys[f]]
        rows = [
            [v for f, i in zip(codes, s, strict=True) for v in _row(prepared[i].values, keys[f])]
            for s in sets
        ]
        frame = pd.DataFrame.from_records(rows, columns=names).astype(float, errors="ignore")
        holds, _ = rule.evaluate(expressions.lookup(frame, prefixed=True), frame.index, "", rules.tolerance)
        broken = [j for j, ok in enumerate(holds) if not ok]
        if not broken:
            continue
        failed = frame.iloc[broken]
        pointed = codes.index(rule.primary.form)
        positions = [sets[j][pointed] for j in broken]
        found = rule.findings(
            failed,
            expressions.lookup(failed, prefixed=True),
            [prepared[i] for i in positions],
            "",
            rules.tolerance,
        )
        out.extend(zip(positions, found, strict=True))
    return out


# --- what is told once -----------------------------------------------------------------------------------


@lru_cache(maxsize=8)
def _total_rows(rules: Rules) -> frozenset[str]:
    """The 合计 rows' codes of the campaign's forms."""
    return frozenset(
        r.code for form in rules.forms.values() for s in form.sections for r in s.rows if r.total
    )


def _without_echoes(
    findings: list[Finding], total_rows: frozenset[str], row_rules: frozenset[str]
) -> list[Finding]:
    """A row-by-row rule broken in a detail row also breaks on the 合计 row that sums it: tell it once."""
    broken_in_detail = {f.rule for f in findings if f.rule in row_rules and f.row and f.row not in total_rows}
    return [f for f in findings if not (f.row in total_rows and f.rule in broken_in_detail)]


def _without_symptoms(findings: list[Finding], book: Ruleset) -> list[Finding]:
    """Money typed in 元 breaks every rule that reads it: tell the diagnosis, not its symptoms."""
    diagnosed = [book.diagnoses[f.rule] for f in findings if f.rule in book.diagnoses]
    if not diagnosed:
        return findings
    return [
        f
        for f in findings
        if f.rule in book.diagnoses
        or not any(d.causes(f, rule) for d in diagnosed for rule in book.by_id(f.rule))
    ]


def _dedupe(findings: list[Finding]) -> list[Finding]:
    seen: set[tuple[str, str, str, str]] = set()
    out = []
    for f in findings:
        key = (f.rule, f.sheet, f.cell, f.message)
        if key not in seen:
            seen.add(key)
            out.append(f)
    return out


__all__ = ["Report", "validate", "validate_reads"]
