"""The `check` kind of rule: a condition in the expression language (campaign.rulelang) over one form,
row by row over a section (`each_row`), or across a unit's forms (`forms: [warmth, center]`).

A rule is evaluated on a whole frame of submissions at once (pandas Series through rulelang); its message
quotes its `let` values and both sides of its comparison, evaluated again only for the rows that failed.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Self

from pipeline.campaign import layout, rulelang
from pipeline.campaign.config import Field, Form, Node, Rule, Rules
from pipeline.checks import messages
from pipeline.checks.kinds import FrameCheck, column, needs_form, place, tabular_section
from pipeline.model import Checked, Finding
from pipeline.submission.normalize import fmt_number

if TYPE_CHECKING:
    import pandas as pd

Lookup = Callable[[rulelang.Ref], Any]  # a value's Series in a frame of submissions


def lookup(frame: pd.DataFrame, prefixed: bool = False) -> Lookup:
    """Values of a reference in a wide frame; cross-form frames prefix columns with the form code."""

    def get(ref: rulelang.Ref) -> pd.Series:
        name = column((ref.section, ref.row, ref.field))
        return frame[f"{ref.form}:{name}" if prefixed else name]

    return get


def expression(node: Node, scope: rulelang.Scope) -> rulelang.Expr:
    try:
        return rulelang.parse(node.text(), scope)
    except rulelang.ExprError as exc:
        raise node.fail(str(exc)) from None


@dataclass(frozen=True, eq=False)  # one object per rule of rules.yaml
class CheckRule:
    """W-archived, W-funds, C-duty, X-archive …: `check` must hold for each submission (each row of
    `each_row`) wherever `when` holds and every value it names is known. Its finding points at the first
    value named in `when`, else in `check` (through `let` names)."""

    kind: ClassVar[str] = "check"
    keys: ClassVar[tuple[str, ...]] = ("each_row", "check", "when", "let", "suggest")

    rule: Rule
    forms: tuple[Form, ...]  # the forms it reads, as `rule.forms`
    each_row: str
    let: tuple[tuple[str, rulelang.Expr], ...]
    check: rulelang.Expr
    when: rulelang.Expr | None
    primary: rulelang.Ref
    suggest: rulelang.Expr | None = None  # what to type in the primary cell instead, when it can be told

    @classmethod
    def parse(cls, rule: Rule, node: Node, campaign: Rules) -> Self:
        needs_form(rule, node)
        forms = tuple(campaign.forms[code] for code in rule.forms)
        each = node.get("each_row", required=False)
        each_row = tabular_section(each, forms[0]) if each.value is not None else ""
        scope = rulelang.Scope(forms={f.code: f for f in forms}, each_row=each_row, cross_form=len(forms) > 1)
        lets: list[tuple[str, rulelang.Expr]] = []
        let_node = node.get("let", required=False)
        if let_node.value is not None:
            for name, ln in let_node.items():
                lets.append((name, expression(ln, scope)))
                scope = scope.with_name(name)
        check = expression(node.get("check"), scope)
        when_node = node.get("when", required=False)
        when = expression(when_node, scope) if when_node.value is not None else None
        primary = _primary(dict(lets), when, check)
        if primary is None:
            raise node.get("check").fail("规则没有引用任何字段,无法指出是哪个单元格")
        suggest_node = node.get("suggest", required=False)
        suggest = expression(suggest_node, scope) if suggest_node.value is not None else None
        return cls(rule, forms, each_row, tuple(lets), check, when, primary, suggest)

    @property
    def words(self) -> frozenset[str]:
        said = {"cell", "label", "row", "value", "left", "right", *(name for name, _ in self.let)}
        return frozenset(said | ({"suggest"} if self.suggest is not None else set()))

    @property
    def cross_form(self) -> bool:
        return len(self.forms) > 1

    @functools.cached_property
    def scope(self) -> rulelang.Scope:
        scope = rulelang.Scope(
            forms={f.code: f for f in self.forms}, each_row=self.each_row, cross_form=self.cross_form
        )
        for name, _ in self.let:
            scope = scope.with_name(name)
        return scope

    @functools.cached_property
    def refs(self) -> tuple[rulelang.Ref, ...]:
        exprs = [e for _, e in self.let] + [e for e in (self.check, self.when) if e is not None]
        return tuple(r for e in exprs for r in e.refs)

    @functools.cached_property
    def _money(self) -> bool:
        return any(_field(self.scope, ref).type == "money" for ref in self.refs)

    def rows(self) -> tuple[str, ...]:
        """The rows it is checked on: each row of `each_row`, or the form as a whole ("")."""
        if not self.each_row:
            return ("",)
        return tuple(r.code for r in self.forms[0].section(self.each_row).rows)

    def frame_checks(self, tolerance: float) -> Iterator[FrameCheck]:
        """A check per row over a frame of one form's submissions (not for a rule across forms)."""
        for row in self.rows():

            def holds(frame: pd.DataFrame, row: str = row) -> pd.Series:
                return self.evaluate(lookup(frame), frame.index, row, tolerance)[0]

            yield FrameCheck(self, holds, row)

    def evaluate(
        self, get: Lookup, index: pd.Index, row: str, tolerance: float
    ) -> tuple[pd.Series, dict[str, Any]]:
        """Whether it holds, per submission of the frame, and its `let` values (for the messages)."""
        import pandas as pd  # only once frames are checked: a reading child compiles rules without pandas

        names: dict[str, Any] = {}
        for name, expr in self.let:
            names[name] = rulelang.evaluate(expr, get, names, self.scope, row, tolerance)
        holds = _series(rulelang.evaluate(self.check, get, names, self.scope, row, tolerance), index, pd)
        unknown = pd.Series(False, index=index)
        for ref in self.refs:
            value = get(ref.at_row(row))
            if isinstance(value, pd.Series):
                unknown |= value.isna()
        if self.when is not None:
            applies = _series(rulelang.evaluate(self.when, get, names, self.scope, row, tolerance), index, pd)
            holds = holds | ~applies
        return holds | unknown, names

    def findings(
        self, failed: pd.DataFrame, get: Lookup, targets: Sequence[Checked], row: str, tolerance: float
    ) -> list[Finding]:
        """The findings of the submissions in `failed` (a frame of those that broke it, `get` its lookup);
        `targets[i]` is the submission of the i-th, in the form the finding points at."""
        _, names = self.evaluate(get, failed.index, row, tolerance)
        sides = self.check.sides
        if sides is not None:
            left, right = (rulelang.evaluate_node(s, self.check, get, names, self.scope, row) for s in sides)
        if self.suggest is not None:
            better = rulelang.evaluate(self.suggest, get, names, self.scope, row, tolerance)
        primary = self.primary.at_row(row)
        form = next(f for f in self.forms if f.code == primary.form)
        slot = layout.compute(form).slot(primary.section, primary.row, primary.field)
        out = []
        for i, target in enumerate(targets):
            said = {k: messages.quantity(_at(v, i), self._money) for k, v in names.items()}
            if sides is not None:
                said["left"] = messages.quantity(_at(left, i), self._money)
                said["right"] = messages.quantity(_at(right, i), self._money)
            sheet, address = place(target, slot)
            value = target.values.get(slot.key)
            shown = fmt_number(value, slot.field) if isinstance(value, int | float) else ""
            said.update(label=slot.field.caption, row=slot.row.label if slot.row else "")
            suggested = []
            if self.suggest is not None and _known(_at(better, i)):
                said["suggest"] = fmt_number(float(_at(better, i)), slot.field)
                suggested.append((address, said["suggest"]))
            out.append(
                messages.finding(
                    self.rule,
                    sheet=sheet,
                    cell=address,
                    field=primary.field,
                    row=primary.row,
                    value=shown,
                    said=said,
                    suggested=suggested,
                )
            )
        return out


def _primary(
    lets: dict[str, rulelang.Expr], when: rulelang.Expr | None, check: rulelang.Expr
) -> rulelang.Ref | None:
    for expr in (when, check):
        if expr is None:
            continue
        if expr.refs:
            return expr.refs[0]
        for name in expr.names:
            if lets[name].refs:
                return lets[name].refs[0]
    return None


def _field(scope: rulelang.Scope, ref: rulelang.Ref) -> Field:
    return scope.forms[ref.form].section(ref.section).field(ref.field)


def _series(value: Any, index: pd.Index, pd: Any) -> pd.Series:
    if isinstance(value, pd.Series):
        return value.fillna(False).astype(bool)
    return pd.Series(bool(value), index=index)


def _known(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _at(value: Any, i: int) -> Any:
    return value.iloc[i] if hasattr(value, "iloc") else value
