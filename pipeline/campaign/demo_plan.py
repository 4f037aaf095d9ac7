"""How the demo fills the forms, as declared in the `demo:` section of rules.yaml: an expression per field
(the rules' language with a few functions such as `rand`), put in dependency order here, once, with each
合计 computed from its rows; and the classic mistakes to plant, each a generic kind with its cells.

Parsed by the one loader (config.py calls `parse`); `pipeline/demo.py` draws the values and writes the files.
"""

from __future__ import annotations

import heapq
import string
from collections.abc import Mapping
from dataclasses import dataclass, field

from pipeline.campaign import rulelang

# The loader's own YAML node: this module is the part of the loader that reads one section.
from pipeline.campaign.declared import Form, Item, Section
from pipeline.campaign.node import Node

Key = tuple[str, str, str]  # (section, row, field), as layout.Slot.key

# rand(a, b): a number between a and b; randint(a, b): a whole one; min, max, round as in Python;
# person(): a name; phone("0898"): a landline with that area code or a mobile; typed_date(20, 40): a day
# 20 to 40 days after the issue date, typed the way people type dates.
FUNCTIONS = ("rand", "randint", "min", "max", "round", "person", "phone", "typed_date")
SIZE = "size"  # the unit's size, a name every expression may use
FULLWIDTH = "fullwidth"  # a spelling of `cells`: the value in full-width digits
MISTAKE_KINDS = (
    "sends_nothing",
    "forgets",
    "total_typed_over",
    "money_in_yuan",
    "breaks_rule",
    "text_in_number",
    "left_blank",
    "messy_but_fine",
    "xls_copy",
    "resubmission",
    "wrong_level",
)


@dataclass(frozen=True)
class Step:
    """One value of a form, drawn after everything it refers to."""

    key: Key
    type: str  # the field's type: count and money are rounded as typed (whole, to the cent)
    expr: rulelang.Expr | None  # None: a 合计 (the sum of `detail`), or a number nobody declared (0)
    scope: rulelang.Scope | None = None
    names: Mapping[str, float] = field(default_factory=dict)  # the row's constants (weight: 3.0 …)
    detail: tuple[Key, ...] = ()


@dataclass(frozen=True)
class Change:
    """A cell a mistake changes: to the value of `expr` (in the filled form), or typed as `spelling`."""

    key: Key
    type: str
    expr: rulelang.Expr | None = None
    scope: rulelang.Scope | None = None
    spelling: str = ""  # FULLWIDTH, or a text with {value} (约{value}, {value:.2f}万元, 见附件)


@dataclass(frozen=True)
class Mistake:
    kind: str  # one of MISTAKE_KINDS
    note: str  # what the file shows, printed by `pipeline demo`
    form: str = ""
    item: str = ""  # forgets: the item left out
    section: str = ""  # money_in_yuan: the section typed in 元
    changes: tuple[Change, ...] = ()
    rule: str = ""  # breaks_rule: the rule the change makes fail
    days_later: int = 5  # resubmission: when the corrected version follows

    @property
    def per_unit(self) -> bool:
        """A mistake one of the units reporting to the top level makes (wrong_level: a unit below them, the
        first there is)."""
        return self.kind != "wrong_level"


@dataclass(frozen=True)
class Previous:
    """Last year's figures the demo makes (`demo.previous`): each unit's this year's scaled by a factor drawn
    between `low` and `high`; `absent` units did not report last year; `far` units' factors are given, so
    that the demo shows a change beyond the outlier threshold."""

    low: float = 0.85
    high: float = 1.15
    absent: tuple[str, ...] = ()
    far: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Plan:
    """The `demo:` section as a whole."""

    size: rulelang.Expr | None = None  # a unit's size, when `sizes` does not give it
    sizes: Mapping[str, float] = field(default_factory=dict)
    forms: Mapping[str, tuple[Step, ...]] = field(default_factory=dict)
    mistakes: tuple[Mistake, ...] = ()
    previous: Previous | None = (
        None  # last year's consolidated workbook, when `consolidation.previous` names one
    )


# --- parsing ---------------------------------------------------------------------------------------------


def parse(node: Node, forms: Mapping[str, Form], items: Mapping[str, Item], rule_ids: set[str]) -> Plan:
    """The `demo:` section (absent: forms are filled with zeros and no mistake is planted)."""
    zeros = {code: _ordered(form, {}, {}, node) for code, form in forms.items()}
    if node.value is None:
        return Plan(forms=zeros)
    node.keys(("size", "sizes", "forms", "mistakes", "previous"))
    none: Mapping[str, Form] = {}
    size_node = node.get("size", required=False)
    size = (
        _expr(size_node, rulelang.Scope(forms=none, functions=FUNCTIONS))
        if size_node.value is not None
        else None
    )
    # Units may come from a contact list staff keep apart (units_file): a size or a mistake the units do not
    # allow for (a code not in the list, no unit below another) is left out of the demo, never refused here,
    # where it would stop every command.
    sizes_node = node.get("sizes", required=False)
    sizes = {code: n.number() for code, n in sizes_node.items()} if sizes_node.value is not None else {}
    steps = dict(zeros)
    forms_node = node.get("forms", required=False)
    if forms_node.value is not None:
        for code, n in forms_node.items():
            if code not in forms:
                raise n.fail(f'不存在的报表 "{code}",已有:{", ".join(forms)}')
            steps[code] = _form_steps(n, forms[code])
    mistakes_node = node.get("mistakes", required=False)
    mistakes = (
        tuple(_mistake(n, forms, items, rule_ids) for n in mistakes_node.seq()) if mistakes_node.value else ()
    )
    return Plan(size, sizes, steps, mistakes, _previous(node.get("previous", required=False)))


def _previous(node: Node) -> Previous | None:
    if node.value is None:
        return None
    node.keys(("factor", "absent", "far"))
    default = Previous()
    factor = node.get("factor", required=False)
    low, high = default.low, default.high
    if factor.value is not None:
        pair = factor.seq()
        if len(pair) != 2 or not 0 < pair[0].number() <= pair[1].number():
            raise factor.fail("应写成 [最小, 最大],两个大于 0 的数")
        low, high = pair[0].number(), pair[1].number()
    absent = node.get("absent", required=False)
    far = node.get("far", required=False)
    return Previous(
        low,
        high,
        absent.strings() if absent.value is not None else (),
        {code: n.number() for code, n in far.items()} if far.value is not None else {},
    )


def _expr(node: Node, scope: rulelang.Scope) -> rulelang.Expr:
    try:
        return rulelang.parse(node.text(), scope)
    except rulelang.ExprError as exc:
        raise node.fail(str(exc)) from None


def _scope(form: Form, section: Section, names: tuple[str, ...]) -> rulelang.Scope:
    """Bare field names are the section's own (the current row of a tabular one); `节.字段` and
    `节.行.字段` reach the rest of the form."""
    return rulelang.Scope(
        forms={form.code: form}, each_row=section.code, names=(SIZE, *names), functions=FUNCTIONS
    )


def _form_steps(node: Node, form: Form) -> tuple[Step, ...]:
    """Every value of the form as a step, in an order where each comes after what it refers to: the rows of
    a section before its 合计, the 合计 before what refers to it, otherwise as declared."""
    declared: dict[Key, tuple[int, Step]] = {}
    where: dict[Key, Node] = {}
    sections = {s.code: s for s in form.sections}
    for position, (code, sn) in enumerate(node.items()):
        if code not in sections:
            raise sn.fail(f'报表 {form.code} 中没有 "{code}" 这一节')
        section = sections[code]
        constants: dict[str, dict[str, float]] = {}
        for name, value in sn.items():
            if isinstance(value.value, dict):  # a constant per row
                if not section.tabular or name in {f.code for f in section.fields}:
                    raise value.fail(f'"{name}" 是逐行常数(各行取不同的值),只能用于分行的节,且不能与字段同名')
                rows = {r.code for r in section.detail_rows}
                for code_of_row, v in value.items():
                    if code_of_row not in rows:
                        raise v.fail(f'{section.code} 中没有行 "{code_of_row}"')
                constants[name] = {code_of_row: v.number() for code_of_row, v in value.items()}
        scope = _scope(form, section, tuple(constants))
        fields = {f.code: f for f in section.fields}
        for index, (name, value) in enumerate(sn.items()):
            if name in constants:
                continue
            if name not in fields:
                raise value.fail(f'{section.code} 中没有字段 "{name}",已有:{", ".join(fields)}')
            expr = _expr(value, scope)
            for detail in section.detail_rows or (None,):
                row_code = detail.code if detail is not None else ""
                key = (section.code, row_code, name)
                names = {n: table.get(row_code, 0.0) for n, table in constants.items()}
                declared[key] = (position * 10_000 + index, Step(key, fields[name].type, expr, scope, names))
                where[key] = value
    return _ordered(form, declared, where, node)


def _ordered(
    form: Form, declared: dict[Key, tuple[int, Step]], where: dict[Key, Node], node: Node
) -> tuple[Step, ...]:
    """Kahn's algorithm over the steps, ties broken by declaration (section, row, field), so that the same
    seed draws the same numbers."""
    steps: dict[Key, tuple[tuple[int, int], Step]] = {}
    for s_index, section in enumerate(form.sections):
        for r_index, row in enumerate(section.rows or (None,)):
            for f in section.fields:
                key = (section.code, row.code if row else "", f.code)
                if row is not None and row.total:
                    if f.numeric:
                        detail = tuple((section.code, r.code, f.code) for r in section.detail_rows)
                        steps[key] = (
                            (s_index * 1000 + r_index, 10**9),
                            Step(key, f.type, None, detail=detail),
                        )
                elif key in declared:
                    order, step = declared[key]
                    steps[key] = ((s_index * 1000 + r_index, order), step)
                elif f.numeric:
                    steps[key] = ((s_index * 1000 + r_index, 10**9), Step(key, f.type, None))
    needs: dict[Key, set[Key]] = {}
    for key, (_, step) in steps.items():
        refs = (
            {(r.section, key[1] if r.row == rulelang.CURRENT_ROW else r.row, r.field) for r in step.expr.refs}
            if step.expr
            else set()
        )
        needs[key] = (refs | set(step.detail)) & steps.keys()
    users: dict[Key, list[Key]] = {}
    for key, wanted in needs.items():
        for w in wanted:
            users.setdefault(w, []).append(key)
    waiting = {key: len(wanted) for key, wanted in needs.items()}
    ready = [(steps[k][0], k) for k, n in waiting.items() if n == 0]
    heapq.heapify(ready)
    out: list[Step] = []
    while ready:
        _, key = heapq.heappop(ready)
        out.append(steps[key][1])
        for user in users.get(key, ()):
            waiting[user] -= 1
            if waiting[user] == 0:
                heapq.heappush(ready, (steps[user][0], user))
    if len(out) < len(steps):
        stuck = sorted(k for k, n in waiting.items() if n and k in where)
        at = where[stuck[0]] if stuck else node
        raise at.fail(
            "式子互相引用,无法确定计算顺序:" + "、".join(".".join(p for p in k if p) for k in stuck[:6])
        )
    return tuple(out)


# --- mistakes --------------------------------------------------------------------------------------------


def _slot(node: Node, forms: Mapping[str, Form]) -> tuple[Form, Section, Key]:
    """Any value of a form, `表.节.字段` or `表.节.行.字段` (text fields too: a blank 填表人)."""
    text = node.text()
    parts = text.split(".")
    if len(parts) not in (3, 4) or parts[0] not in forms:
        raise node.fail(f'"{text}" 应写成 表.节.字段 或 表.节.行.字段,表有:{", ".join(forms)}')
    form = forms[parts[0]]
    section = next((s for s in form.sections if s.code == parts[1]), None)
    if section is None:
        raise node.fail(f'报表 {form.code} 中没有 "{parts[1]}" 这一节')
    if section.tabular != (len(parts) == 4):
        raise node.fail(
            f'"{text}":{section.code} ' + ("分行填写,应写明行" if section.tabular else "不分行,不要写行")
        )
    if len(parts) == 4 and parts[2] not in {r.code for r in section.rows}:
        raise node.fail(f'"{text}":{section.code} 中没有行 "{parts[2]}"')
    if parts[-1] not in {f.code for f in section.fields}:
        raise node.fail(f'"{text}":{section.code} 中没有字段 "{parts[-1]}"')
    return form, section, (section.code, parts[2] if len(parts) == 4 else "", parts[-1])


def _spelling(node: Node) -> str:
    text = node.text()
    if text == FULLWIDTH:
        return text
    try:
        names = {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}
    except ValueError:
        raise node.fail("花括号 { } 不成对") from None
    if names - {"value"}:
        raise node.fail(f"只能用 {{value}}(原来的数值),不能用 {', '.join(sorted(names - {'value'}))}")
    return text


def _changes(node: Node, forms: Mapping[str, Form], typed: bool) -> tuple[str, tuple[Change, ...]]:
    """The cells of one form a mistake changes: typed spellings (`typed`), else values by expression."""
    changes, owners = [], set()
    for path, value in node.items():
        form, section, key = _slot(Node(path, f"{node.path}.{path}"), forms)
        owners.add(form.code)
        ftype = section.field(key[2]).type
        if typed:
            changes.append(Change(key, ftype, spelling=_spelling(value)))
        else:
            scope = _scope(form, section, ())
            changes.append(Change(key, ftype, _expr(value, scope), scope))
    if len(owners) != 1:
        raise node.fail("应改同一张报表中的单元格(至少一个)")
    return owners.pop(), tuple(changes)


def _mistake(node: Node, forms: Mapping[str, Form], items: Mapping[str, Item], rule_ids: set[str]) -> Mistake:
    node.keys(("kind", "note", "item", "at", "section", "set", "cells", "rule", "form", "days_later"))
    kind = node.get("kind").text()
    if kind not in MISTAKE_KINDS:
        raise node.get("kind").fail(f'未知的错误类型 "{kind}",可选:{", ".join(MISTAKE_KINDS)}')
    note_node = node.get("note", required=kind not in ("sends_nothing", "forgets"))
    m: dict[str, object] = dict(kind=kind, note=note_node.text() if note_node.value is not None else "")
    if kind == "forgets":
        item = node.get("item").text()
        if item not in items:
            raise node.get("item").fail(f'未知的报送事项 "{item}",可选:{", ".join(items)}')
        m["item"] = item
    elif kind in ("total_typed_over", "left_blank"):
        form, section, key = _slot(node.get("at"), forms)
        total = section.total_row
        if kind == "total_typed_over" and (
            total is None or key[1] != total.code or not section.field(key[2]).numeric
        ):
            raise node.get("at").fail("应为某一节合计行的数值字段")
        m.update(form=form.code, changes=(Change(key, section.field(key[2]).type),))
    elif kind == "money_in_yuan":
        text = node.get("section").text()
        form_code, _, section_code = text.partition(".")
        if form_code not in forms or section_code not in {s.code for s in forms[form_code].sections}:
            raise node.get("section").fail(f'"{text}" 应写成 表.节')
        m.update(form=form_code, section=section_code)
    elif kind in ("breaks_rule", "resubmission"):
        m["form"], m["changes"] = _changes(node.get("set"), forms, typed=False)
        rule = node.get("rule", required=kind == "breaks_rule")
        if rule.value is not None:
            if rule.text() not in rule_ids:
                raise rule.fail(f'rules 中没有编号为 "{rule.text()}" 的规则')
            m["rule"] = rule.text()
        days = node.get("days_later", required=False)
        if days.value is not None:
            m["days_later"] = days.integer()
    elif kind in ("text_in_number", "messy_but_fine"):
        m["form"], m["changes"] = _changes(node.get("cells"), forms, typed=True)
    elif kind == "xls_copy":
        form_code = node.get("form").text()
        if form_code not in forms:
            raise node.get("form").fail(f'不存在的报表 "{form_code}",已有:{", ".join(forms)}')
        m["form"] = form_code
    return Mistake(**m)  # type: ignore[arg-type]
