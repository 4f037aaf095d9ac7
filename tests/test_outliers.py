"""Figures to verify: a unit far from its peers (modified z-score) or from its own last year is flagged with
the numbers that make it stand out; clean forms mostly are not."""

from __future__ import annotations

import datetime as dt
import random

import pandas as pd
import pytest

from pipeline import demo
from pipeline.campaign.config import PROVINCE, Rules
from pipeline.consolidation import consolidate, outliers, status
from pipeline.consolidation.lastyear import LastYear
from pipeline.model import Severity, Submission, Verdict

AS_OF = dt.datetime(2017, 2, 3, 12, 0)


def _forms(rules: Rules, seed: int, change: dict[str, float] | None = None) -> list[Submission]:
    """Every direct unit's correct forms as the demo fills them (drawn from `seed`); `change`: a unit's
    amounts of 慰问 multiplied, its persons left alone (a per-head amount that stands out)."""
    rng = random.Random(seed)
    out = []
    for unit in rules.children(PROVINCE):
        size = rng.uniform(0.4, 2.0)
        for item in unit.items:
            form = rules.items[item].form
            if form is None:
                continue
            values = demo.form_values(rules, form, rng, size)
            factor = (change or {}).get(unit.code)
            if factor and form == "warmth":
                for key, value in list(values.items()):
                    if key[0] == "visits" and key[2].startswith("amount"):
                        values[key] = round(value * factor, 2)
            out.append(
                Submission(
                    sha256=f"{unit.code}{item}{seed}",
                    unit=unit.code,
                    item=item,
                    form=form,
                    file=f"{unit.name}_{form}.xlsx",
                    received=AS_OF.replace(tzinfo=rules.campaign.tz),
                    version=1,
                    verdict=Verdict.ACCEPTED,
                    values=values,
                )
            )
    return out


def _consolidated(rules: Rules, forms: list[Submission]) -> consolidate.Consolidation:
    return consolidate.consolidate(rules, forms, status.expected_units(rules))


def test_modified_z_score_is_iglewicz_hoaglins():
    values = pd.Series([10.0, 11.0, 12.0, 13.0, 14.0, 100.0], index=list("abcdef"))
    scores = outliers.modified_z(values)
    # median 12.5, absolute deviations 2.5 1.5 .5 .5 1.5 87.5: MAD 1.5
    assert scores["f"] == pytest.approx(0.6745 * 87.5 / 1.5)
    assert scores["c"] == pytest.approx(0.6745 * -0.5 / 1.5)
    alike = pd.Series([5.0, 5.0, 5.0, 5.0, 9.0])  # MAD 0: the mean absolute deviation stands in
    assert outliers.modified_z(alike).iloc[-1] == pytest.approx(4.0 / (1.253314 * 0.8))
    assert (outliers.modified_z(pd.Series([3.0, 3.0, 3.0])) == 0).all()


def test_a_unit_whose_per_head_amount_is_far_from_its_peers_is_flagged_with_the_numbers(rules):
    c = _consolidated(rules, _forms(rules, seed=5, change={"469002": 4.0}))
    found = outliers.outliers(rules, c)
    flagged = [o for o in found if o.rule == outliers.PEERS_RULE]
    assert [(o.unit, o.label) for o in flagged] == [("469002", "人均慰问金额")]
    o = flagged[0]
    assert o.score is not None and o.score > 3.5 and o.median is not None and o.value > 3 * o.median
    f = o.finding
    assert f is not None and f.severity is Severity.WARNING and f.rule == "O-peers"
    assert f.sheet == rules.forms["warmth"].sheet and f.cell  # the 合计 cell of 慰问金额
    assert f"{o.value:.2f}" in f.message and f"{o.median:.2f}" in f.message and "偏高" in f.message
    assert "填报说明" in f.message
    assert outliers.by_unit(found) == {"469002": [f]}


def test_a_unit_far_from_its_own_last_year_is_flagged_and_one_absent_last_year_is_not(rules):
    c = _consolidated(rules, _forms(rules, seed=6))
    frame = c["by_unit"].set_index("code")
    before = {
        code: {("warmth", ("visits", "total", "households")): float(frame.loc[code, "households"]) * 1.1}
        for code in frame.index
        if code and code not in ("469005", "YP")
    }
    before["469005"] = {
        ("warmth", ("visits", "total", "households")): float(int(frame.loc["469005", "households"]) // 3)
    }
    last = LastYear("2016年汇总表.xlsx", units=before)
    found = [o for o in outliers.outliers(rules, c, last) if o.rule == outliers.CHANGE_RULE]
    assert [(o.unit, o.label) for o in found] == [("469005", "慰问困难职工")]
    o = found[0]
    assert o.change > 1.9 and o.finding is not None
    assert (
        f"上年 {o.before:.0f} 户" in o.finding.message and f"增加 {o.change * 100:.0f}%" in o.finding.message
    )


@pytest.mark.parametrize("seed", range(5))
def test_clean_forms_are_mostly_not_flagged(rules, seed):
    """Five consolidations of the 21 units' two forms (42 clean forms each, 210 in all): at most a few
    warnings per hundred forms."""
    forms = _forms(rules, seed=100 + seed)
    found = outliers.outliers(rules, _consolidated(rules, forms))
    assert len(found) <= 2, [o.line for o in found]


def test_nothing_is_compared_with_too_few_peers(rules):
    forms = [v for v in _forms(rules, seed=7, change={"469002": 4.0}) if v.unit in ("460100", "469002")]
    assert outliers.outliers(rules, _consolidated(rules, forms)) == []
