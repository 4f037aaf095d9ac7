"""Staff's decisions on a unit's latest version of an item (`pipeline accept` / `pipeline return`): checked
against what the version is, and recorded in the ledger with who, when and why. The status and the
consolidation read them from there (consolidation/history.py `usable`).
"""

from __future__ import annotations

import getpass
import os

from pipeline.campaign.config import Rules, Unit
from pipeline.consolidation import history, status
from pipeline.model import ACCEPT, RETURN, Refused, Review, Submission, Verdict
from pipeline.runs.context import Run


def who(by: str | None) -> str:
    """Who decides: as given (`--by`), else the user logged in to this machine."""
    if by and by.strip():
        return by.strip()
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no user name in a bare container
        return os.environ.get("USER") or "未知用户"


def unit_of(rules: Rules, text: str) -> Unit:
    """A unit by its code, its name or one of its aliases (`Rules.find_unit`); refused with the valid codes
    otherwise."""
    unit = rules.find_unit(text)
    if unit is None:
        codes = "、".join(u.code for u in rules.units)
        raise Refused(f"没有“{text.strip()}”这个单位;请写单位代码、名称或简称。可用的单位代码:{codes}")
    return unit


def item_of(rules: Rules, unit: Unit, text: str) -> str:
    """An item the unit owes, by its code (warmth) or its label (送温暖统计表)."""
    wanted = text.strip()
    for code in unit.items:
        if wanted in (code, rules.items[code].label):
            return code
    owed = "、".join(f"{code}({rules.items[code].label})" for code in unit.items)
    raise Refused(f"{unit.name}不报送“{wanted}”;它报送的事项:{owed}")


def decide(run: Run, unit_text: str, item_text: str, action: str, reason: str, by: str | None) -> Submission:
    """Record staff's decision on the unit's latest version of the item; returns that version as decided.

    Accepting takes a form that failed the checks (or one returned before) into the consolidation;
    returning takes a usable one out of it. A later version from the unit is not covered by either."""
    rules = run.rules
    unit = unit_of(rules, unit_text)
    item = item_of(rules, unit, item_text)
    if not reason.strip():
        raise Refused("请用 --reason 写明原因(会记入台账,并写在汇总表的“数据来源”和“说明”中)")
    label = rules.items[item].label
    if rules.items[item].form is None:
        raise Refused(f"{label}只登记是否收到,不参加汇总,无需接受或退回")
    seen = history.checked_by(run.ledger.submissions(), run.as_of)
    latest = history.latest(seen).get((unit.code, item))
    if latest is None:
        raise Refused(
            f"{unit.name}还没有报送{label}(或仍待确认),无从{'接受' if action == ACCEPT else '退回'}"
        )
    state = status.state_of(latest)
    version = f"{unit.name}{label}第{latest.version}版({latest.file})"
    if action == ACCEPT and not history.acceptable(latest):
        if latest.verdict in (Verdict.UNREADABLE, Verdict.WRONG_LEVEL):
            raise Refused(f"{version}{latest.verdict.label},没有可用的数据,不能接受;请单位重新报送")
        raise Refused(f"{version}的状态是“{state.label}”,已计入汇总,无需接受")
    if action == ACCEPT and not latest.values:
        raise Refused(f"{version}没有读全,没有可汇总的数据,不能接受;请单位按模板重新报送")
    if action == RETURN and not history.returnable(latest):
        raise Refused(f"{version}的状态是“{state.label}”,没有计入汇总,无需退回")
    review = Review(action, reason.strip(), who(by), run.as_of)
    run.ledger.add_review(latest, review)
    return history.latest(history.checked_by(run.ledger.submissions(), run.as_of))[(unit.code, item)]


def said(rules: Rules, sub: Submission) -> str:
    """What staff are told once a decision is recorded: the version, its state, and who, when and why."""
    review = sub.review
    assert review is not None
    return (
        f"{rules.unit(sub.unit).name} {rules.items[sub.item].label} 第{sub.version}版({sub.file}):"
        f"{status.state_of(sub).label}。原因:{review.reason};决定人:{review.by};"
        f"时间:{review.at:%Y-%m-%d %H:%M}。下次运行 pipeline run 时汇总随之更新"
    )
