"""Figures to verify: after the consolidation, each unit's per-head amounts and ratios compared with its peers'
(the modified z-score of Iglewicz and Hoaglin) and its figures compared with its own last year, as rules.yaml's
`consolidation.outliers` declares them (method and thresholds: docs/OUTLIERS.md). Each is a warning to the unit,
which it may explain in its 填报说明, and a line of the documents' 需核实 section.

Vectorised over units (pandas), since a national consolidation has 3,000 of them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from pipeline.campaign import layout
from pipeline.campaign.config import Rules
from pipeline.campaign.review_plan import Ratio
from pipeline.consolidation.consolidate import UNIT_ROW, Consolidation
from pipeline.consolidation.lastyear import FormKey, LastYear
from pipeline.model import Finding, Severity

PEERS_RULE, CHANGE_RULE = "O-peers", "O-change"
RULES = (PEERS_RULE, CHANGE_RULE)
Z_SCALE = 0.6745  # the normal distribution's MAD in standard deviations: M is then comparable with a z-score
MEAN_AD_SCALE = 1.253314  # MAD is 0 (most units alike): the mean absolute deviation stands in, so scaled


@dataclass(frozen=True)
class Outlier:
    """One figure of one unit that stands out, with the numbers that make it stand out."""

    unit: str
    unit_name: str
    form: str
    label: str  # 人均慰问金额, 慰问困难职工
    rule: str  # PEERS_RULE or CHANGE_RULE
    value: float
    unit_of_measure: str
    median: float | None = None  # PEERS_RULE: the peers' median and the unit's modified z-score
    score: float | None = None
    before: float | None = None  # CHANGE_RULE: last year's figure and the relative change
    change: float | None = None
    finding: Finding | None = None

    @property
    def line(self) -> str:
        """The 需核实 line: who, what, and the numbers."""
        return f"{self.unit_name}:{self.finding.message if self.finding else self.label}"


def unit_figures(c: Consolidation) -> pd.DataFrame:
    """Every unit's figures in the per-unit tables: index unit code, columns (form, key)."""
    parts = []
    for t in c.tables.values():
        if t.plan.kind not in ("by_unit", "per_unit"):
            continue
        frame = t.frame[(t.frame["level"] == UNIT_ROW) & (t.frame["reported"] == 1)]
        block = frame.set_index("code")[[col.name for col in t.columns]].astype("float64")
        block.columns = pd.Index([(t.plan.form, col.key) for col in t.columns], tupleize_cols=False)
        parts.append(block)
    if not parts:
        return pd.DataFrame()
    every = pd.concat(parts, axis=1)
    return every.loc[:, ~every.columns.duplicated()]


def modified_z(values: pd.Series) -> pd.Series:
    """Iglewicz–Hoaglin's modified z-score of each value: 0.6745 (x − median) / MAD; where MAD is 0, the
    mean absolute deviation × 1.253314 stands in; where that is 0 too, every score is 0."""
    median = values.median()
    deviation = (values - median).abs()
    mad = deviation.median()
    if mad > 0:
        return Z_SCALE * (values - median) / mad
    mean_ad = deviation.mean()
    if mean_ad > 0:
        return (values - median) / (MEAN_AD_SCALE * mean_ad)
    return pd.Series(0.0, index=values.index)


def _ratio(figures: pd.DataFrame, r: Ratio) -> pd.Series:
    """A declared ratio of each unit that has both parts (a denominator of 0 gives none)."""
    needed = [(r.form, r.of), *((r.form, key) for key in r.per)]
    if any(k not in figures.columns for k in needed):
        return pd.Series(dtype="float64")
    denominator = figures[[(r.form, key) for key in r.per]].fillna(0).sum(axis=1)
    ratio = figures[(r.form, r.of)] / denominator.where(denominator > 0) * r.scale
    return ratio.dropna()


def _number(value: float, unit: str) -> str:
    """A figure as the documents print it: whole, or to the cent, then its unit."""
    text = f"{value:.0f}" if float(value).is_integer() else f"{value:.2f}"
    return f"{text} {unit}".rstrip() if unit != "%" else f"{value:.1f}%"


def _cell(rules: Rules, form: str, key: tuple[str, str, str]) -> str:
    try:
        return layout.compute(rules.forms[form]).slot(*key).cell
    except (KeyError, StopIteration, ValueError):
        return ""


def peers(rules: Rules, c: Consolidation, figures: pd.DataFrame) -> list[Outlier]:
    """Each declared ratio of each unit whose modified z-score is beyond the threshold and which is also
    `apart` (relatively) from the peers' median."""
    plan = rules.consolidation.review.outliers
    names = {u.code: u.name for u in rules.units}
    out = []
    for r in plan.ratios:
        ratio = _ratio(figures, r)
        if len(ratio) < plan.least:
            continue
        scores = modified_z(ratio)
        median = float(ratio.median())
        sheet = rules.forms[r.form].sheet
        apart = (ratio - median).abs() > plan.apart * abs(median)
        for code in scores.index[(scores.abs() > plan.peers) & apart]:
            value, score = float(ratio[code]), float(scores[code])
            side = "偏高" if score > 0 else "偏低"
            message = (
                f"{r.label} {_number(value, r.unit)},明显{side}于各单位的中位数 {_number(median, r.unit)}"
                f"(稳健 Z 值 {score:.1f},超过 ±{plan.peers:g}):请核实,如无误请在填报说明中说明"
            )
            out.append(
                Outlier(
                    str(code),
                    names.get(str(code), str(code)),
                    r.form,
                    r.label,
                    PEERS_RULE,
                    value,
                    r.unit,
                    median=median,
                    score=score,
                    finding=Finding(
                        PEERS_RULE,
                        Severity.WARNING,
                        message,
                        sheet=sheet,
                        cell=_cell(rules, r.form, r.of),
                        field=r.of[2],
                        row=r.of[1],
                        value=f"{value:.2f}",
                    ),
                )
            )
    return out


def _last_frame(last: LastYear, wanted: Sequence[FormKey]) -> pd.DataFrame:
    rows = {code: [values.get(k, np.nan) for k in wanted] for code, values in last.units.items()}
    frame = pd.DataFrame.from_dict(rows, orient="index", columns=range(len(wanted)), dtype="float64")
    frame.columns = pd.Index(list(wanted), tupleize_cols=False)
    return frame


def against_last_year(
    rules: Rules, c: Consolidation, figures: pd.DataFrame, last: LastYear | None
) -> list[Outlier]:
    """Each compared figure of each unit that changed from its own last year beyond the threshold (both years
    with a figure; the larger at least `floor`, so that 2 becoming 4 is not news)."""
    plan = rules.consolidation.review.outliers
    if last is None or not plan.compare or figures.empty:
        return []
    declared = {f.name: f for f in rules.consolidation.figures}
    chosen = [declared[n] for n in plan.compare if (declared[n].form, declared[n].key) in figures.columns]
    wanted = [(f.form, f.key) for f in chosen]
    before = _last_frame(last, wanted).reindex(figures.index)
    now = figures[wanted]
    change = (now - before) / before.where(before > 0)
    big = (change.abs() > plan.change) & (np.maximum(now, before) >= plan.floor)
    names = {u.code: u.name for u in rules.units}
    out = []
    for j, f in enumerate(chosen):
        flagged = big.iloc[:, j].fillna(False).astype(bool)
        sheet = rules.forms[f.form].sheet
        rows = zip(
            now.iloc[:, j][flagged].items(),
            before.iloc[:, j][flagged],
            change.iloc[:, j][flagged],
            strict=True,
        )
        for (code, value), prior, rate in rows:
            message = (
                f"{f.label} {_number(value, f.unit)},上年 {_number(prior, f.unit)},"
                f"{'增加' if rate > 0 else '减少'} {abs(rate) * 100:.0f}%(超过 ±{plan.change * 100:.0f}%):"
                "请核实,如无误请在填报说明中说明"
            )
            out.append(
                Outlier(
                    str(code),
                    names.get(str(code), str(code)),
                    f.form,
                    f.label,
                    CHANGE_RULE,
                    value,
                    f.unit,
                    before=prior,
                    change=rate,
                    finding=Finding(
                        CHANGE_RULE,
                        Severity.WARNING,
                        message,
                        sheet=sheet,
                        cell=_cell(rules, f.form, f.key),
                        field=f.key[2],
                        row=f.key[1],
                        value=_number(value, ""),
                    ),
                )
            )
    return out


def outliers(rules: Rules, c: Consolidation, last: LastYear | None = None) -> list[Outlier]:
    """The figures to verify at this level, in the order of the units in rules.yaml, then peers before
    last year."""
    figures = unit_figures(c)
    if figures.empty:
        return []
    found = peers(rules, c, figures) + against_last_year(rules, c, figures, last)
    position = {u.code: i for i, u in enumerate(rules.units)}
    return sorted(found, key=lambda o: (position.get(o.unit, len(position)), o.rule != PEERS_RULE, o.label))


def by_unit(found: Sequence[Outlier]) -> Mapping[str, list[Finding]]:
    """The warnings each unit is told, by unit code."""
    out: dict[str, list[Finding]] = {}
    for o in found:
        if o.finding is not None:
            out.setdefault(o.unit, []).append(o.finding)
    return out
