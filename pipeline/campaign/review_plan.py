"""What the consolidation compares, as rules.yaml's `consolidation:` section declares it: last year's final
consolidated workbook (`previous:`) and the figures to verify (`outliers:`): per-head amounts and ratios
compared across units, and each unit's figures compared with its own last year. Part of the loader
(consolidation_plan.py calls `parse`); the method is docs/OUTLIERS.md.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from pipeline.campaign.declared import Form, Section
from pipeline.campaign.node import Node

Key = tuple[str, str, str]  # (section, row, field), as layout.Slot.key
PathOf = Callable[[Node, Mapping[str, Form]], tuple[Form, Section, str, str]]


@dataclass(frozen=True)
class Ratio:
    """A figure of one unit compared with its peers': `of` divided by the sum of `per`, times `scale`
    (人均慰问金额: 慰问金额合计 万元 × 10000 / the persons visited, in 元)."""

    name: str
    label: str
    form: str
    of: Key
    per: tuple[Key, ...]
    scale: float = 1.0
    unit: str = ""


@dataclass(frozen=True)
class Outliers:
    """The thresholds of docs/OUTLIERS.md. `peers`: the modified z-score beyond which a ratio stands out
    (Iglewicz–Hoaglin's 3.5); `least`: fewer units with the ratio than this and none is compared; `change`:
    the relative change from a unit's own last year beyond which a figure of `compare` is flagged, `floor`
    the larger of the two years must reach (so 2 households becoming 4 is not news); `apart`: how far from the
    peers' median, relatively, a ratio must also be (where units are much alike, MAD is tiny and a score
    above 3.5 can be a few per cent)."""

    ratios: tuple[Ratio, ...] = ()
    compare: tuple[str, ...] = ()  # figure names
    peers: float = 3.5
    apart: float = 0.25
    least: int = 8
    change: float = 0.5
    floor: float = 10.0


@dataclass(frozen=True)
class Review:
    previous: str = ""  # last year's final consolidated workbook, relative to rules.yaml ("" : none)
    outliers: Outliers = Outliers()


def parse(
    previous: Node, outliers: Node, forms: Mapping[str, Form], figures: set[str], path_of: PathOf
) -> Review:
    """`previous:` and `outliers:`; `path_of` reads a `表.节.行.字段` path (consolidation_plan's)."""
    prior = previous.text() if previous.value is not None else ""
    if outliers.value is None:
        return Review(prior)
    outliers.keys(("ratios", "compare", "peers", "apart", "least", "change", "floor"))
    ratios = []
    for n in (
        outliers.get("ratios", required=False).seq() if outliers.get("ratios", required=False).value else ()
    ):
        n.keys(("name", "label", "of", "per", "scale", "unit"))
        form, section, row, code = path_of(n.get("of"), forms)
        per = []
        for p in n.get("per").seq():
            pform, psection, prow, pcode = path_of(p, forms)
            if pform.code != form.code:
                raise p.fail(f"应与 of 属于同一张报表({form.code})")
            per.append((psection.code, prow, pcode))
        scale, unit = n.get("scale", required=False), n.get("unit", required=False)
        ratios.append(
            Ratio(
                name=n.get("name").code(),
                label=n.get("label").text(),
                form=form.code,
                of=(section.code, row, code),
                per=tuple(per),
                scale=scale.number() if scale.value is not None else 1.0,
                unit=unit.text() if unit.value is not None else "",
            )
        )
    compare = outliers.get("compare", required=False)
    for c in compare.seq() if compare.value else ():
        if c.text() not in figures:
            raise c.fail(f'figures 中没有 "{c.text()}",已有:{", ".join(sorted(figures))}')
    default = Outliers()

    def number(key: str) -> float:
        n = outliers.get(key, required=False)
        value = n.number() if n.value is not None else getattr(default, key)
        if value < 0:
            raise n.fail("应为不小于 0 的数")
        return float(value)

    return Review(
        prior,
        Outliers(
            ratios=tuple(ratios),
            compare=compare.strings() if compare.value else (),
            peers=number("peers"),
            apart=number("apart"),
            least=int(number("least")),
            change=number("change"),
            floor=number("floor"),
        ),
    )
