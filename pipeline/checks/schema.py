"""The pandera schema of one form, built from its declaration and the rules that apply to it.

A check's name is only its rule's id; what a failure is about (which rule object, row, field, bound) is in
a side table keyed by the check's number, which pandera's failure cases carry.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache

import pandera.pandas as pa

from pipeline.campaign import layout
from pipeline.campaign.config import Rules
from pipeline.checks.expressions import CheckRule
from pipeline.checks.kinds import FrameCheck, MoneyUnitRule, RequiredRule, RowTotalRule, TypeRule, column
from pipeline.checks.ruleset import Ruleset


@dataclass(frozen=True)
class Bound:
    """What a column check stands for: the type rule, and the hint its finding ends with."""

    rule: TypeRule
    hint: str


@dataclass(frozen=True)
class FormSchema:
    schema: pa.DataFrameSchema
    slots: Mapping[str, layout.Slot]  # by column name
    bounds: Mapping[tuple[str, int], Bound]  # by (column, check number)
    checks: tuple[FrameCheck, ...]  # the frame's checks, by check number
    required: RequiredRule | None  # the rule that tells a blank required field


@lru_cache(maxsize=8)
def for_form(rules: Rules, form_code: str) -> FormSchema:
    form = rules.forms[form_code]
    book = Ruleset.of(rules)
    type_rule: TypeRule | None = book.declared("type", form_code)
    required: RequiredRule | None = book.declared("required", form_code)
    columns: dict[str, pa.Column] = {}
    slots: dict[str, layout.Slot] = {}
    bounds: dict[tuple[str, int], Bound] = {}
    for slot in layout.compute(form).slots:
        name = column(slot.key)
        slots[name] = slot
        f = slot.field
        if f.numeric:
            checks = []
            if type_rule is not None and not slot.is_total:
                for number, (holds, hint) in enumerate(type_rule.column_checks(f)):
                    checks.append(pa.Check(holds, name=type_rule.rule.id))
                    bounds[(name, number)] = Bound(type_rule, hint)
            columns[name] = pa.Column(float, checks, nullable=True, coerce=False, required=True)
        else:
            # A required footer field must not be null; pandera reports it as the check "not_nullable".
            # Its dtype is not checked: text comes as pandas' str, a date as object, a blank column as
            # float, and a column's dtype failure points at no form (it cost 4 failure cases a batch).
            columns[name] = pa.Column(None, nullable=not (f.required and required is not None), required=True)
    frame_checks = tuple(
        check
        for rule in book.for_form(form_code)
        if isinstance(rule, RowTotalRule | CheckRule | MoneyUnitRule)
        for check in rule.frame_checks(rules.tolerance)
    )
    # Every check holds where a value it names is blank (CheckRule.evaluate, row_total), so also on a form
    # whose values are all blank: pandera's search for those (ignore_na), a pass over the whole frame for
    # each of its ~50 checks, could not change a verdict.
    schema = pa.DataFrameSchema(
        columns,
        checks=[pa.Check(c.holds, name=c.rule.rule.id, ignore_na=False) for c in frame_checks],
        strict=False,
        coerce=False,
    )
    return FormSchema(schema, slots, bounds, frame_checks, required)
