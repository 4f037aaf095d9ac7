"""The written summary's frame, as rules.yaml's `consolidation.summary` declares it: to whom, the opening, and
the body's sections in the notice's order, each with its sentences, the figures it tabulates and a hint where
staff write. Part of the loader (consolidation_plan.py calls `parse`); the Word summary reads these objects
and spells no campaign words of its own.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from dataclasses import dataclass

from pipeline.campaign.declared import Form
from pipeline.campaign.node import Node

SUMMARY_PLACEHOLDERS = ("year", "issuer", "document_number", "title")


@dataclass(frozen=True)
class Section:
    """One part of the summary's body: a heading, sentences with figures in them (placeholders as in
    `consolidation.paragraphs`), a table of figures (by name) with their coverage and change from last year,
    and a bracketed hint where staff write what no form holds."""

    heading: str
    text: tuple[str, ...] = ()
    figures: tuple[str, ...] = ()
    hint: str = ""
    form: str = ""  # printed only at a level where some unit owes this form


@dataclass(frozen=True)
class Summary:
    """The written summary's frame: to whom, the opening sentence at the top level and below it, the hint
    where staff write what was done, and the body's sections (none declared: one 基本情况 section with the
    report's paragraphs, then the hints)."""

    recipient: str = "上级单位"
    opening: str = "根据{issuer}{document_number}文件要求,现将{title}有关情况报告如下。"
    opening_below: str = "根据{issuer}{document_number}文件要求,我单位汇总了所属各单位的有关情况,现报告如下。"
    practices: str = "请结合各单位书面报告填写。"
    sections: tuple[Section, ...] = ()


KEYS = ("recipient", "opening", "opening_below", "practices")


def placeholders(node: Node, allowed: set[str] | frozenset[str]) -> str:
    """A text with {placeholders}, each one of `allowed`."""
    text = node.text()
    try:
        fields = [
            (name, spec, conversion)
            for _, name, spec, conversion in string.Formatter().parse(text)
            if name is not None
        ]
    except ValueError:
        raise node.fail("花括号 { } 不成对;要写花括号本身,请写 {{ 或 }}") from None
    for name, spec, conversion in fields:
        if name not in allowed or spec or conversion:
            raise node.fail(f"未知的名称 {{{name}}},可用的名称:{', '.join(sorted(allowed))}")
    return text


def _listed(node: Node) -> list[Node]:
    """A key that holds one item or a list of them (absent: none)."""
    if node.value is None:
        return []
    return node.seq() if isinstance(node.value, list) else [node]


def parse(
    node: Node, forms: Mapping[str, Form], known: set[str], figures: set[str], per_form: set[str]
) -> Summary:
    """The `summary:` node. `known`: the names its sentences may use (`per_form`: those a section about one
    form may use besides); `figures`: the figures its tables may list."""
    if node.value is None:
        return Summary()
    node.keys((*KEYS, "sections"))
    default = Summary()
    values = {}
    for key in KEYS:
        n = node.get(key, required=False)
        values[key] = (
            placeholders(n, set(SUMMARY_PLACEHOLDERS)) if n.value is not None else getattr(default, key)
        )
    return Summary(
        **values,
        sections=tuple(
            _section(n, forms, known, figures, per_form)
            for n in _listed(node.get("sections", required=False))
        ),
    )


def _section(
    n: Node, forms: Mapping[str, Form], known: set[str], figures: set[str], per_form: set[str]
) -> Section:
    n.keys(("heading", "text", "figures", "hint", "form"))
    form = ""
    if n.get("form", required=False).value is not None:
        form = n.get("form").text()
        if form not in forms:
            raise n.get("form").fail(f'不存在的报表 "{form}",已有:{", ".join(forms)}')
    allowed = known | per_form if form else known
    listed = _listed(n.get("figures", required=False))
    for fn in listed:
        if fn.text() not in figures:
            raise fn.fail(f'figures 中没有 "{fn.text()}",已有:{", ".join(sorted(figures))}')
    hint = n.get("hint", required=False)
    return Section(
        heading=n.get("heading").text(),
        text=tuple(placeholders(t, allowed) for t in _listed(n.get("text", required=False))),
        figures=tuple(fn.text() for fn in listed),
        hint=placeholders(hint, set(SUMMARY_PLACEHOLDERS)) if hint.value is not None else "",
        form=form,
    )
