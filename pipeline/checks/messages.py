"""The one place a rule's message template of rules.yaml is filled in, for every kind of rule.

A message names the cell and the figures that disagree (`{cell} 资金合计 {left} 万元 …`). Each kind of rule
says which placeholders it can fill; a template that asks for another is refused when rules.yaml is loaded,
so filling one here never fails. A placeholder with nothing to say for one finding (the row of a single
value) is left out together with the space the template put before it.
"""

from __future__ import annotations

import math
import string
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from pipeline.campaign.config import Rule
from pipeline.model import Finding

_FORMATTER = string.Formatter()


def placeholders(template: str) -> list[str]:
    """The names a template quotes, in order; ValueError (in Chinese) when one cannot be filled by name."""
    try:
        parsed = list(_FORMATTER.parse(template))
    except ValueError:
        raise ValueError("花括号不成对:占位符写成 {cell} 这样,文字中的花括号要写两次 {{ }}") from None
    names = []
    for _, name, spec, _ in parsed:
        if name is None:
            continue
        if not name.isidentifier() or "{" in (spec or ""):
            raise ValueError(f"占位符 {{{name}}} 写法有误:只能写名字,如 {{cell}}")
        names.append(name)
    return names


def unknown(template: str, words: Collection[str]) -> list[str]:
    """The placeholders of `template` not among `words`; ValueError when the template does not parse."""
    return [name for name in placeholders(template) if name not in words]


def word(template: str, values: Mapping[str, Any]) -> str:
    """The template with its placeholders filled from `values` (a missing one is blank)."""
    out = ""
    blank = False
    for literal, name, spec, conversion in _FORMATTER.parse(template):
        if blank and literal.startswith(" ") and (not out or out.endswith(" ")):
            literal = literal[1:]  # "{cell} {row} {label}" without a row: one space, not two
        out += literal
        if name is None:
            break
        value = values.get(name, "")
        if conversion:
            value = _FORMATTER.convert_field(value, conversion)
        text = format(value, spec or "")
        out += text
        blank = text == ""
    return out.strip()


def finding(
    rule: Rule,
    *,
    sheet: str,
    cell: str,
    field: str,
    row: str = "",
    value: str = "",
    said: Mapping[str, Any] | None = None,
    suggested: Sequence[tuple[str, str]] = (),
) -> Finding:
    """A finding of `rule` at one cell; its message quotes `cell` and `value` and whatever else is `said`
    (`said["row"]` is the row's label, where `row` is its code). `suggested` is what to type, by cell of
    `sheet`: the message's own hint, for a program to follow."""
    message = word(rule.message, {"cell": cell, "value": value, **(said or {})})
    return Finding(
        rule=rule.id,
        severity=rule.severity,
        message=message,
        sheet=sheet,
        cell=cell,
        field=field,
        row=row,
        value=value,
        suggested=tuple(suggested),
    )


def quantity(value: Any, money: bool = True) -> str:
    """A computed figure for a message: whole for counts, two decimals for money (more below 0.01)."""
    if isinstance(value, bool):
        return "是" if value else "否"
    if isinstance(value, int | float) and not (isinstance(value, float) and math.isnan(value)):
        if not money and float(value).is_integer():
            return str(int(value))
        return f"{value:.4f}".rstrip("0") if 0 < abs(value) < 0.01 else f"{value:.2f}"
    return str(value)
