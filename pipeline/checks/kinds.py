"""The kinds of rule of rules.yaml as classes: each parses its own keys, says what it checks and words its
findings (through `messages`). The `check` kind, rules written in the expression language, is in
`expressions`; `ruleset` compiles a campaign's rules into these objects.

Nothing here imports pandas: a child process that reads and normalises files compiles the rules too.
Frames are only handed in, by `schema` and `validate`.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, ClassVar, Self

from pipeline.campaign import layout
from pipeline.campaign.config import ConfigError, Field, Form, Node, Rule, Rules
from pipeline.checks import messages
from pipeline.model import Checked, Finding, Key, Severity, cell_order
from pipeline.submission.normalize import Issue, as_typed, fmt_number

if TYPE_CHECKING:
    import pandas as pd

    from pipeline.checks.expressions import CheckRule


ColumnTest = Callable[["pd.Series"], "pd.Series"]  # True where a column's values hold


@functools.lru_cache(maxsize=4096)
def column(key: Key) -> str:
    """The frame's column name of a value: asked for each of 6,000 forms' 70 values at national scale."""
    section, row, fld = key
    return f"{section}.{row}.{fld}" if row else f"{section}.{fld}"


@dataclass(frozen=True)
class FrameCheck:
    """One check over a frame of submissions (a row each), and what a failure of it is about: the entry of
    the side table that maps pandera's check number back to the rule, row and field."""

    rule: RowTotalRule | CheckRule | MoneyUnitRule  # the rule object that contributed it
    holds: Callable[[pd.DataFrame], pd.Series]  # per submission: True where the rule holds
    row: str = ""  # the row checked: each_row rules, and row_total's 合计
    field: str = ""  # row_total: the column checked


def place(target: Checked, slot: layout.Slot) -> tuple[str, str]:
    """Sheet and A1 cell of a value in the file as the unit sent it (where the reader found it)."""
    cell = target.read.cells.get(slot.key)
    return (cell.sheet, cell.address) if cell else (slot.section.code, slot.cell)


def _typed(target: Checked, key: Key) -> str:
    cell = target.read.cells.get(key)
    return "" if cell is None or cell.raw is None else as_typed(cell.raw)


def needs_form(rule: Rule, node: Node) -> None:
    """Refuse a rule of a kind that reads one form's cells but names no form."""
    if not rule.forms:
        raise ConfigError(f"{node.path}.form", "此类规则必须指明报表(form)")


def tabular_section(node: Node, form: Form) -> str:
    """The code of a section with rows named at `node` (each_row, section), refused with its path if not."""
    code = node.text()
    if code not in [s.code for s in form.sections]:
        raise node.fail(f'报表 {form.code} 中没有 "{code}" 这一节')
    if not form.section(code).tabular:
        raise node.fail(f'"{code}" 这一节没有分行,不能逐行检查')
    return code


# --- the kinds that speak of one cell: told by normalisation, and for type and required by the schema ------


@dataclass(frozen=True, eq=False)  # one object per rule of rules.yaml
class CellRule:
    """A rule of one cell's value. Normalisation finds its issues (submission.normalize); it words them."""

    kind: ClassVar[str]
    keys: ClassVar[tuple[str, ...]] = ()
    words: ClassVar[frozenset[str]] = frozenset(
        {"cell", "label", "row", "value", "unit", "expected", "hint", "rounded", "problem"}
    )

    rule: Rule

    @classmethod
    def parse(cls, rule: Rule, node: Node, campaign: Rules) -> Self:
        return cls(rule)

    @functools.cached_property
    def _names_row(self) -> bool:
        return "row" in messages.placeholders(self.rule.message)

    def word(self, issue: Issue) -> Finding:
        """An issue of normalisation as this rule's finding."""
        f = issue.field
        label = f.caption
        if issue.row_label and not self._names_row:
            label = f"{issue.row_label} {label}"  # a tabular cell is named by its row as well as its column
        said = {"label": label, "row": issue.row_label, "unit": f.unit, **issue.params}
        return messages.finding(
            self.rule,
            sheet=issue.sheet,
            cell=issue.cell,
            field=f.code,
            row=issue.row,
            value=issue.shown,
            said=said,
        )


@dataclass(frozen=True, eq=False)
class TypeRule(CellRule):
    """R-type: what is not a number where one belongs (told by normalisation), and a number outside its
    field's bounds or a fraction of a count (told by the schema, across all submissions at once)."""

    kind = "type"

    def column_checks(self, f: Field) -> list[tuple[ColumnTest, str]]:
        """The checks of one numeric column, each with the hint its findings end with."""
        low = f.min if f.min is not None else 0.0
        high = f.max

        def at_least(s: pd.Series) -> pd.Series:
            return s.isna() | (s >= low)

        def at_most(s: pd.Series) -> pd.Series:
            return s.isna() | (s <= high)

        def whole(s: pd.Series) -> pd.Series:
            return s.isna() | (s == s.round())

        checks: list[tuple[ColumnTest, str]] = [(at_least, "不能为负数" if low == 0 else f"不能小于 {low:g}")]
        if high is not None:
            checks.append((at_most, f"不能超过 {high:g}"))
        if f.type == "count":
            checks.append((whole, "不能有小数"))
        return checks

    def out_of_bounds(self, target: Checked, slot: layout.Slot, hint: str) -> Finding:
        sheet, address = place(target, slot)
        f = slot.field
        label = f"{slot.row.label}“{f.caption}”" if slot.row else f.caption
        said = {"label": label, "expected": "整数" if f.type == "count" else "数字", "hint": hint}
        return messages.finding(
            self.rule,
            sheet=sheet,
            cell=address,
            field=f.code,
            row=slot.key[1],
            value=_typed(target, slot.key),
            said=said,
        )


@dataclass(frozen=True, eq=False)
class DecimalsRule(CellRule):
    """R-decimals: money with more decimals than `places` is rounded, and the unit told so."""

    kind = "decimals"
    keys = ("places",)

    places: int = 2

    @classmethod
    def parse(cls, rule: Rule, node: Node, campaign: Rules) -> Self:
        places = node.get("places", required=False)
        return cls(rule, places.integer() if places.value is not None else 2)


@dataclass(frozen=True, eq=False)
class RequiredRule(CellRule):
    """R-required: a field the form requires is blank (told by the schema), or a phone or date in it does
    not parse (told by normalisation)."""

    kind = "required"

    def missing(self, target: Checked, slot: layout.Slot) -> Finding:
        sheet, address = place(target, slot)
        said = {"label": slot.field.label, "problem": "未填写,请补充"}
        return messages.finding(self.rule, sheet=sheet, cell=address, field=slot.field.code, said=said)


# The wording of the three kinds above when rules.yaml declares no rule of that kind for a form:
# normalisation still finds their issues. Tests check that these equal the shipped rules.yaml.
DEFAULTS: Mapping[str, CellRule] = {
    "type": TypeRule(
        Rule(
            id="R-type",
            severity=Severity.ERROR,
            kind="type",
            forms=(),
            message="{cell} {label}应填{expected},实际填写“{value}”。{hint}",
        )
    ),
    "decimals": DecimalsRule(
        Rule(
            id="R-decimals",
            severity=Severity.WARNING,
            kind="decimals",
            forms=(),
            message="{cell} {label} {value} 超过两位小数,已按 {rounded} 计算",
        ),
        places=2,
    ),
    "required": RequiredRule(
        Rule(
            id="R-required",
            severity=Severity.ERROR,
            kind="required",
            forms=(),
            message="{cell} {label}{problem}",
        )
    ),
}


# --- a 合计 row ----------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)  # one object per rule of rules.yaml
class RowTotalRule:
    """W-total, C-total: each field of a section's 合计 row equals the sum of its rows (a blank 合计 was
    computed by normalisation, so it holds)."""

    kind: ClassVar[str] = "row_total"
    keys: ClassVar[tuple[str, ...]] = ("section",)
    words: ClassVar[frozenset[str]] = frozenset({"cell", "row", "label", "value", "range", "sum"})

    rule: Rule
    form: Form
    section: str

    @classmethod
    def parse(cls, rule: Rule, node: Node, campaign: Rules) -> Self:
        needs_form(rule, node)
        form = campaign.forms[rule.forms[0]]
        section = tabular_section(node.get("section"), form)
        if form.section(section).total_row is None:
            raise node.get("section").fail("这一节没有合计行(total: true)")
        return cls(rule, form, section)

    def frame_checks(self, tolerance: float) -> Iterator[FrameCheck]:
        section = self.form.section(self.section)
        total = section.total_row
        assert total is not None
        for f in section.fields:
            detail = [column((section.code, r.code, f.code)) for r in section.detail_rows]
            given = column((section.code, total.code, f.code))

            def holds(frame: pd.DataFrame, detail: list[str] = detail, given: str = given) -> pd.Series:
                sums = frame[detail].sum(axis=1, skipna=False)
                return frame[given].isna() | sums.isna() | ((frame[given] - sums).abs() <= tolerance + 1e-9)

            yield FrameCheck(self, holds, total.code, f.code)

    def finding(self, target: Checked, check: FrameCheck) -> Finding:
        section = self.form.section(self.section)
        lay = layout.compute(self.form)
        f = section.field(check.field)
        slot = lay.slot(section.code, check.row, f.code)
        sheet, address = place(target, slot)
        first = lay.slot(section.code, section.detail_rows[0].code, f.code)
        last = lay.slot(section.code, section.detail_rows[-1].code, f.code)
        detail = sum(target.values[(section.code, r.code, f.code)] for r in section.detail_rows)
        value = fmt_number(target.values[slot.key], f)
        said = {
            "row": slot.row.label if slot.row else "",
            "label": f.caption,
            "range": f"{place(target, first)[1]}:{place(target, last)[1]}",
            "sum": fmt_number(detail, f),
        }
        return messages.finding(
            self.rule,
            sheet=sheet,
            cell=address,
            field=f.code,
            row=check.row,
            value=value,
            said=said,
            suggested=[
                (address, said["sum"])
            ],  # the 合计 typed over: its rows' sum is what the template computes
        )


# --- a diagnosis: money typed in 元 --------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)  # one object per rule of rules.yaml
class MoneyUnitRule:
    """W-yuan: most rows of a section give a sum per person `beyond` times the top of its `plausible` range
    (万元): the unit typed its money in 元. One finding for the form, which lists every money cell of the
    section with its value divided by `factor` and rounded; a row's `parts` total and the 合计 row are
    derived from the rounded values, so the values entered as given pass the equality rules. The findings
    those amounts cause (rules that read them) are the same mistake: validation leaves them out."""

    kind: ClassVar[str] = "money_unit"
    keys: ClassVar[tuple[str, ...]] = (
        "section",
        "amount",
        "persons",
        "plausible",
        "beyond",
        "factor",
        "most",
        "parts",
    )
    words: ClassVar[frozenset[str]] = frozenset({"cell", "low", "high", "beyond", "factor", "fixes", "rows"})

    rule: Rule
    form: Form
    section: str
    amount: str
    persons: tuple[str, ...]
    low: float
    high: float
    beyond: float
    factor: float
    most: float
    parts: tuple[tuple[str, tuple[str, ...]], ...]  # a money field that is the sum of others, row by row

    @classmethod
    def parse(cls, rule: Rule, node: Node, campaign: Rules) -> Self:
        needs_form(rule, node)
        form = campaign.forms[rule.forms[0]]
        section = form.section(tabular_section(node.get("section"), form))

        def known(n: Node, money: bool | None = None) -> str:
            code = n.text()
            if code not in [f.code for f in section.fields]:
                raise n.fail(f'"{section.code}" 这一节没有字段 "{code}"')
            if money is not None and (section.field(code).type == "money") != money:
                raise n.fail(f'字段 "{code}" 应为{"金额" if money else "人数"}字段')
            return code

        plausible = node.get("plausible").seq()
        if len(plausible) != 2 or not 0 < plausible[0].number() < plausible[1].number():
            raise node.get("plausible").fail("应写成 [下限, 上限],如 [0.005, 1]")
        parts = node.get("parts", required=False)
        return cls(
            rule,
            form,
            section.code,
            known(node.get("amount"), money=True),
            tuple(known(n, money=False) for n in node.get("persons").seq()),
            plausible[0].number(),
            plausible[1].number(),
            node.get("beyond", required=False, default=100).number(),
            node.get("factor", required=False, default=10000).number(),
            node.get("most", required=False, default=0.5).number(),
            tuple(
                (known(Node(total, n.path), money=True), tuple(known(p, money=True) for p in n.seq()))
                for total, n in (parts.items() if parts.value is not None else ())
            ),
        )

    @functools.cached_property
    def money(self) -> tuple[Field, ...]:
        return tuple(f for f in self.form.section(self.section).fields if f.type == "money")

    def frame_checks(self, tolerance: float) -> Iterator[FrameCheck]:
        import pandas as pd  # only once frames are checked: a reading child compiles rules without pandas

        section = self.form.section(self.section)

        def holds(frame: pd.DataFrame) -> pd.Series:
            counted: list[pd.Series] = []  # per row: it has money and people (else nothing can be told)
            yuan: list[pd.Series] = []  # per row: its sum per person is `beyond` times the plausible top
            for r in section.detail_rows:
                amount = frame[column((self.section, r.code, self.amount))]
                persons = frame[[column((self.section, r.code, p)) for p in self.persons]].sum(
                    axis=1, skipna=False
                )
                has = (amount > 0) & (persons > 0)
                counted.append(has)
                yuan.append(has & (amount / persons >= self.high * self.beyond))
            many = pd.concat(yuan, axis=1).sum(axis=1) > pd.concat(counted, axis=1).sum(axis=1) * self.most
            return ~many

        yield FrameCheck(self, holds)

    def corrected(self, target: Checked) -> dict[Key, Decimal]:
        """The section's money in 万元: each value divided and rounded, then the derived ones summed again."""
        section = self.form.section(self.section)
        out: dict[Key, Decimal] = {}
        for r in section.rows:
            for f in self.money:
                v = target.values.get((self.section, r.code, f.code))
                if isinstance(v, int | float) and math.isfinite(v):
                    out[(self.section, r.code, f.code)] = Decimal(fmt_number(v / self.factor, f))
        for total, parts in self.parts:
            for r in section.detail_rows:
                given = [out.get((self.section, r.code, p)) for p in parts]
                if all(g is not None for g in given):
                    out[(self.section, r.code, total)] = sum((g for g in given if g is not None), Decimal(0))
        if section.total_row is not None:
            for f in self.money:
                rows = [out.get((self.section, r.code, f.code)) for r in section.detail_rows]
                if all(v is not None for v in rows):
                    out[(self.section, section.total_row.code, f.code)] = sum(
                        (v for v in rows if v is not None), Decimal(0)
                    )
        return out

    def finding(self, target: Checked, check: FrameCheck) -> Finding:
        lay = layout.compute(self.form)
        fixes: list[tuple[str, str]] = []
        sheet = place(
            target, lay.slot(self.section, self.form.section(self.section).rows[0].code, self.amount)
        )[0]
        for key, value in self.corrected(target).items():
            cell = target.read.cells.get(key)
            if cell is not None and cell.formula:
                continue  # the template's SUM (or the unit's formula) follows the cells it sums
            slot = lay.slot(*key)
            fixes.append((place(target, slot)[1], f"{value:.2f}"))
        fixes.sort(key=lambda fix: cell_order(fix[0]))
        said = {
            "low": f"{self.low:g}",
            "high": f"{self.high:g}",
            "beyond": f"{self.beyond:g}",
            "factor": f"{self.factor:g}",
            "fixes": "、".join(f"{c} 填 {v}" for c, v in fixes),
        }
        return messages.finding(self.rule, sheet=sheet, cell="", field="", said=said, suggested=fixes)

    def causes(self, finding: Finding, rule: object) -> bool:
        """Whether `finding`, of `rule`, follows from this section's money being in 元: a rule that reads it,
        or a note about one of its cells (too many decimals). Text in a money cell is not: it is told."""
        fields = {f.code for f in self.money}
        if isinstance(rule, RowTotalRule):
            return rule.section == self.section and finding.field in fields
        if isinstance(rule, DecimalsRule):
            return finding.field in fields and finding.row in {
                r.code for r in self.form.section(self.section).rows
            }
        refs = getattr(rule, "refs", ())
        return any(ref.section == self.section and ref.field in fields for ref in refs)
