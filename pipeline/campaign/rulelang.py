"""The small expression language of `check` rules in rules.yaml, e.g.
`visits.total.amount_goods <= funds.fund_union + funds.fund_social`.

Expressions are parsed with Python's own parser, then only arithmetic, comparisons, and/or/not,
numbers and field references are allowed. Evaluation works on plain numbers and equally on pandas
Series, so one rule can be checked across many submissions at once. The demo's expressions (`demo:` in
rules.yaml) are the same language with a few functions (`rand(0.4, 1.3)`), allowed only where the scope
names them, and are compiled once into Python functions (`compiled`): the demo fills thousands of forms.
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pipeline.campaign.config import Form

CURRENT_ROW = "*"


class ExprError(Exception):
    pass


@dataclass(frozen=True)
class Ref:
    """A value of a form: (form, section, row, field). row is "" for single values, CURRENT_ROW in each_row rules."""

    form: str
    section: str
    row: str
    field: str

    def at_row(self, row: str) -> Ref:
        return replace(self, row=row) if self.row == CURRENT_ROW else self


@dataclass(frozen=True)
class Scope:
    forms: Mapping[str, Form]
    each_row: str = ""
    cross_form: bool = False
    names: tuple[str, ...] = ()
    functions: tuple[str, ...] = ()  # callable by name, with text constants as arguments: the demo's only

    def with_name(self, name: str) -> Scope:
        return replace(self, names=(*self.names, name))


@dataclass(frozen=True)
class Expr:
    source: str
    tree: ast.expr = field(compare=False)
    refs: tuple[Ref, ...]  # in reading order, through nothing: let names are kept apart
    names: tuple[str, ...]  # let names used

    @property
    def sides(self) -> tuple[ast.expr, ast.expr] | None:
        """Left and right of a simple comparison, for messages that quote both numbers."""
        t = self.tree
        if isinstance(t, ast.Compare) and len(t.ops) == 1:
            return t.left, t.comparators[0]
        return None


_BINOPS: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
}
_CMPOPS: dict[type, str] = {
    ast.Lt: "<",
    ast.LtE: "<=",
    ast.Gt: ">",
    ast.GtE: ">=",
    ast.Eq: "==",
    ast.NotEq: "!=",
}


MAX_LENGTH = 2000  # the longest expression of the shipped rules is under 120 characters


def parse(source: str, scope: Scope) -> Expr:
    if len(source) > MAX_LENGTH:
        raise ExprError(
            f"表达式有 {len(source)} 个字符,超过 {MAX_LENGTH} 个字符的上限;请拆成几条规则或用 let 定义中间量"
        )
    try:
        tree = ast.parse(source.strip(), mode="eval").body
        refs: list[Ref] = []
        names: list[str] = []
        _walk(tree, scope, refs, names, source)
    except SyntaxError as exc:
        raise ExprError(f'表达式 "{source}" 写法有误:{exc.msg}') from None
    except (RecursionError, MemoryError):
        raise ExprError("表达式嵌套过深,无法计算;请拆成几条规则或用 let 定义中间量") from None
    return Expr(source=source, tree=tree, refs=tuple(refs), names=tuple(names))


def _walk(node: ast.AST, scope: Scope, refs: list[Ref], names: list[str], source: str) -> None:
    if isinstance(node, ast.Constant):
        if isinstance(node.value, str) and scope.functions:
            return
        if isinstance(node.value, bool) or not isinstance(node.value, int | float):
            raise ExprError(f'表达式 "{source}" 中只能用数字常量,不能用 {node.value!r}')
        return
    if isinstance(node, ast.Call) and scope.functions:
        name = node.func.id if isinstance(node.func, ast.Name) else ast.unparse(node.func)
        if name not in scope.functions or node.keywords:
            raise ExprError(
                f'表达式 "{source}" 中的 "{name}(…)" 不可用,可用的函数:{", ".join(scope.functions)}'
            )
        for arg in node.args:
            _walk(arg, scope, refs, names, source)
        return
    if isinstance(node, ast.Name | ast.Attribute):
        ref_or_name = _resolve(node, scope, source)
        if isinstance(ref_or_name, Ref):
            refs.append(ref_or_name)
        else:
            names.append(ref_or_name)
        return
    if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
        _walk(node.left, scope, refs, names, source)
        _walk(node.right, scope, refs, names, source)
        return
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.Not):
        _walk(node.operand, scope, refs, names, source)
        return
    if isinstance(node, ast.Compare) and all(type(op) in _CMPOPS for op in node.ops):
        for part in (node.left, *node.comparators):
            _walk(part, scope, refs, names, source)
        return
    if isinstance(node, ast.BoolOp):
        for v in node.values:
            _walk(v, scope, refs, names, source)
        return
    raise ExprError(
        f'表达式 "{source}" 中有不支持的写法 "{ast.unparse(node)}":只能用 + - * /、比较、and/or/not'
    )


def _dotted(node: ast.AST) -> list[str]:
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        raise ExprError(f'无法识别的引用 "{ast.unparse(node)}"')
    parts.append(node.id)
    return parts[::-1]


def _resolve(node: ast.Name | ast.Attribute, scope: Scope, source: str) -> Ref | str:
    parts = _dotted(node)
    text = ".".join(parts)
    if len(parts) == 1 and parts[0] in scope.names:
        return parts[0]
    if not scope.forms:
        raise ExprError(f'"{text}" 不是可用的名称:这里只能用数字和函数')
    if scope.cross_form:
        form_code, parts = parts[0], parts[1:]
        if form_code not in scope.forms:
            raise ExprError(f'"{text}" 引用了规则未声明的报表 "{form_code}"(跨表规则写 表.节.字段)')
    else:
        form_code = next(iter(scope.forms))
    form = scope.forms[form_code]
    sections = {s.code: s for s in form.sections}
    if len(parts) == 1 and scope.each_row and not scope.cross_form:
        section = sections[scope.each_row]
        if parts[0] not in [f.code for f in section.fields]:
            raise ExprError(f'"{text}" 不是 {form_code}.{section.code} 的字段,已有:{_codes(section.fields)}')
        return Ref(form_code, section.code, CURRENT_ROW, parts[0])
    if len(parts) not in (2, 3) or parts[0] not in sections:
        raise ExprError(
            f'"{text}" 不是报表 {form_code} 的字段,应写成 节.字段 或 节.行.字段,节有:{_codes(form.sections)}'
        )
    section = sections[parts[0]]
    if len(parts) == 3:
        if not section.tabular or parts[1] not in [r.code for r in section.rows]:
            raise ExprError(f'"{text}":{section.code} 中没有行 "{parts[1]}"')
        row = parts[1]
    elif section.tabular:
        raise ExprError(f'"{text}":{section.code} 分行填写,应写成 {section.code}.行.{parts[-1]}')
    else:
        row = ""
    if parts[-1] not in [f.code for f in section.fields]:
        raise ExprError(
            f'"{text}" 引用了不存在的字段 "{parts[-1]}",{section.code} 的字段有:{_codes(section.fields)}'
        )
    if not section.field(parts[-1]).numeric:
        raise ExprError(f'"{text}" 不是数值字段,不能参与计算')
    return Ref(form_code, section.code, row, parts[-1])


def _codes(things: Any) -> str:
    return ", ".join(t.code for t in things)


# --- evaluation -----------------------------------------------------------------------------------------


def evaluate(
    expr: Expr,
    lookup: Callable[[Ref], Any],
    names: Mapping[str, Any],
    scope: Scope,
    row: str = "",
    tolerance: float = 0.01,
) -> Any:
    """Evaluate with `lookup(ref)` giving a number or a Series; and/or work element-wise.

    Equality holds within `tolerance` (money is compared to 0.01 万元); orderings are exact.
    """

    def ev(node: ast.AST) -> Any:
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Name | ast.Attribute):
            resolved = _resolve(node, scope, expr.source)
            return names[resolved] if isinstance(resolved, str) else lookup(resolved.at_row(row))
        if isinstance(node, ast.BinOp):
            return _BINOPS[type(node.op)](ev(node.left), ev(node.right))
        if isinstance(node, ast.UnaryOp):
            value = ev(node.operand)
            return -value if isinstance(node.op, ast.USub) else _not(value)
        if isinstance(node, ast.Compare):
            result: Any = True
            left = ev(node.left)
            for op, comp in zip(node.ops, node.comparators, strict=True):
                right = ev(comp)
                result = _and(result, _compare(_CMPOPS[type(op)], left, right, tolerance))
                left = right
            return result
        if isinstance(node, ast.BoolOp):
            values = [ev(v) for v in node.values]
            out = values[0]
            for v in values[1:]:
                out = _and(out, v) if isinstance(node.op, ast.And) else _or(out, v)
            return out
        raise ExprError(f"不支持的写法 {ast.unparse(node)}")

    return ev(expr.tree)


def evaluate_node(
    node: ast.expr,
    expr: Expr,
    lookup: Callable[[Ref], Any],
    names: Mapping[str, Any],
    scope: Scope,
    row: str = "",
) -> Any:
    """Evaluate one part of an expression (a side of a comparison), for quoting it in a message."""
    sub = Expr(source=expr.source, tree=node, refs=(), names=())
    return evaluate(sub, lookup, names, scope, row)


def compiled(
    expr: Expr, scope: Scope, functions: Mapping[str, Callable[..., Any]], tolerance: float = 0.01
) -> Callable[[Callable[[Ref], Any], Mapping[str, Any]], Any]:
    """The expression as a Python function of (`lookup`, names), every reference resolved now, not at each
    evaluation: for one expression evaluated many times on plain numbers (the demo's). `functions` gives
    the callables of `scope.functions`."""
    Compiled = Callable[[Callable[[Ref], Any], Mapping[str, Any]], Any]

    def build(node: ast.AST) -> Compiled:
        if isinstance(node, ast.Constant):
            value = node.value
            return lambda lookup, names: value
        if isinstance(node, ast.Name | ast.Attribute):
            resolved = _resolve(node, scope, expr.source)
            if isinstance(resolved, str):
                return lambda lookup, names: names[resolved]
            return lambda lookup, names: lookup(resolved)
        if isinstance(node, ast.Call):
            function = functions[node.func.id]  # type: ignore[attr-defined]  # checked by parse
            args = [build(a) for a in node.args]
            return lambda lookup, names: function(*(a(lookup, names) for a in args))
        if isinstance(node, ast.BinOp):
            op, left, right = _BINOPS[type(node.op)], build(node.left), build(node.right)
            return lambda lookup, names: op(left(lookup, names), right(lookup, names))
        if isinstance(node, ast.UnaryOp):
            operand = build(node.operand)
            if isinstance(node.op, ast.USub):
                return lambda lookup, names: -operand(lookup, names)
            return lambda lookup, names: not operand(lookup, names)
        if isinstance(node, ast.Compare):
            parts = [build(n) for n in (node.left, *node.comparators)]
            ops = [_CMPOPS[type(op)] for op in node.ops]

            def compare(lookup: Callable[[Ref], Any], names: Mapping[str, Any]) -> bool:
                values = [p(lookup, names) for p in parts]
                return all(
                    _compare(op, a, b, tolerance) for op, a, b in zip(ops, values, values[1:], strict=False)
                )

            return compare
        if isinstance(node, ast.BoolOp):
            values = [build(v) for v in node.values]
            if isinstance(node.op, ast.And):
                return lambda lookup, names: all(v(lookup, names) for v in values)
            return lambda lookup, names: any(v(lookup, names) for v in values)
        raise ExprError(f"不支持的写法 {ast.unparse(node)}")

    return build(expr.tree)


_EPS = 1e-9  # floating-point noise, not a tolerance


def _compare(op: str, left: Any, right: Any, tolerance: float) -> Any:
    if op == "==":
        return abs(left - right) <= tolerance + _EPS
    if op == "!=":
        return abs(left - right) > tolerance + _EPS
    if op == "<=":
        return left <= right + _EPS
    if op == ">=":
        return left + _EPS >= right
    if op == "<":
        return left < right
    return left > right


def _and(a: Any, b: Any) -> Any:
    if a is True:
        return b
    if b is True:
        return a
    return a & b


def _or(a: Any, b: Any) -> Any:
    if a is True or b is True:
        return True
    return a | b


def _not(a: Any) -> Any:
    return not a if isinstance(a, bool) else ~a
