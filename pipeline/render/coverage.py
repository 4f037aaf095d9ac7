"""What a total covers, in its own words (issue 14): a total short of units is labelled with how many it
holds ("已汇总单位合计(15/21)"), and the units left out are named with the reason, wherever the total is shown
(the workbook's sheets, the HTML report's cards and sentences, the charts).
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.campaign.config import Rules
from pipeline.consolidation.consolidate import SHORT_TOTAL_LABEL, Consolidation
from pipeline.consolidation.status import Status

WRONG_LEVEL = "报送对象有误"


@dataclass(frozen=True)
class LeftOut:
    """An expected unit whose form is not in a total, and why (未报送 / 未通过 / 逾期 / 报送对象有误)."""

    unit: str
    name: str
    reason: str


def short(c: Consolidation, form: str) -> bool:
    """Whether the totals of `form` cover fewer units than owe it."""
    done, owed = c.coverage.get(form, (0, 0))
    return done < owed


def total_label(c: Consolidation, form: str) -> str:
    """The label of the total row of a table of `form`: the level's own (全省合计) only when every unit owing
    the form is in it."""
    done, owed = c.coverage.get(form, (0, 0))
    return SHORT_TOTAL_LABEL.format(done=done, owed=owed) if done < owed else c.total_label


def left_out(rules: Rules, c: Consolidation, status: Status, form: str) -> list[LeftOut]:
    """The units owing `form` whose figures are not in its totals, in the status's order, with the reason."""
    item = rules.item_for_form(form).code
    used = {v.unit for v in c.used if v.form == form}
    strayed = {v.unit for v in status.stray}
    out = []
    for r in status.rows:
        if r.item != item or r.unit in used:
            continue
        reason = WRONG_LEVEL if r.unit in strayed and r.versions == 0 else r.state.label
        out.append(LeftOut(r.unit, r.unit_name, reason))
    return out


def left_out_line(rules: Rules, c: Consolidation, status: Status, form: str) -> str:
    """One line for under a total: who is not in it and why; "" when nobody is missing."""
    missing = left_out(rules, c, status, form)
    if not missing:
        return ""
    done, owed = c.coverage.get(form, (0, 0))
    names = "、".join(f"{m.name}({m.reason})" for m in missing)
    return f"合计仅含 {done}/{owed} 个单位,未纳入的 {len(missing)} 个单位:{names}"
