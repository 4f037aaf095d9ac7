"""Who has reported what, against the deadline: one row per expected unit and item.

Computed from the ledger's submissions as values; rendered as text, JSON, and by the consolidation.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pipeline.campaign.config import Rules, Unit
from pipeline.consolidation import history
from pipeline.model import ACCEPT, F_ROLLUP, ItemState, Submission, Verdict

# Short names for the states, as the renderers compare them.
PASSED, WARNED, FAILED = ItemState.PASSED, ItemState.WARNED, ItemState.FAILED
EXPLAINED, ACCEPTED, RETURNED = ItemState.EXPLAINED, ItemState.ACCEPTED, ItemState.RETURNED
MISSING, OVERDUE, RECEIVED = ItemState.MISSING, ItemState.OVERDUE, ItemState.RECEIVED
DONE = (PASSED, WARNED, EXPLAINED, ACCEPTED, RECEIVED)  # states whose version counts


@dataclass(frozen=True)
class ItemStatus:
    unit: str
    unit_name: str
    kind: str
    item: str
    item_label: str
    state: ItemState
    received: dt.datetime | None  # of the latest version
    first_received: dt.datetime | None  # of the first version: whether it came on time
    versions: int
    version_used: int | None  # the version consolidation uses (latest accepted), if any
    late: bool  # received after the deadline (still processed)
    note: str = ""
    mail_problem: str = ""  # a recipient refused, a message whose delivery is unknown
    # why the latest version is 省总接受, 退回 or 已说明: staff's reason, or the unit's 填报说明
    reason: str = ""

    def as_json(self) -> dict[str, Any]:
        return {
            "unit": self.unit,
            "unit_name": self.unit_name,
            "kind": self.kind,
            "item": self.item,
            "item_label": self.item_label,
            "state": str(self.state),
            "state_label": self.state.label,
            "received": self.received.isoformat() if self.received else None,
            "first_received": self.first_received.isoformat() if self.first_received else None,
            "versions": self.versions,
            "version_used": self.version_used,
            "late": self.late,
            "note": self.note,
            "mail_problem": self.mail_problem,
            "reason": self.reason,
        }


@dataclass
class Timeliness:
    """One item's 按时报送率: units that sent it by the deadline, after it, or not yet."""

    label: str
    on_time: int = 0
    late: int = 0
    missing: int = 0

    @property
    def expected(self) -> int:
        return self.on_time + self.late + self.missing

    @property
    def rate(self) -> float:
        return self.on_time / self.expected if self.expected else 0.0

    def as_json(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "on_time": self.on_time,
            "late": self.late,
            "missing": self.missing,
            "expected": self.expected,
            "rate": round(self.rate, 4),
        }


@dataclass(frozen=True)
class Status:
    as_of: dt.datetime
    deadline: dt.datetime
    rows: tuple[ItemStatus, ...]
    stray: tuple[Submission, ...] = ()  # files from units that report elsewhere (sent to the wrong place)
    skipped: tuple[tuple[str, str], ...] = ()  # what the last intake passed over: (path, reason)

    @property
    def days_left(self) -> int:
        return (self.deadline.date() - self.as_of.date()).days

    @property
    def past_deadline(self) -> bool:
        return self.as_of > self.deadline

    def units_done(self) -> int:
        by_unit: dict[str, bool] = {}
        for r in self.rows:
            ok = r.state in DONE or r.version_used is not None
            by_unit[r.unit] = by_unit.get(r.unit, True) and ok
        return sum(by_unit.values())

    def timeliness(self) -> dict[str, Timeliness]:
        """Per item: how many units sent it by the deadline, after it, or not at all."""
        out: dict[str, Timeliness] = {}
        for r in self.rows:
            t = out.setdefault(r.item, Timeliness(r.item_label))
            if r.first_received is None:
                t.missing += 1
            elif r.first_received > self.deadline:
                t.late += 1
            else:
                t.on_time += 1
        return out

    def as_json(self) -> dict[str, Any]:
        return {
            "as_of": self.as_of.isoformat(),
            "timeliness": {item: t.as_json() for item, t in self.timeliness().items()},
            "deadline": self.deadline.isoformat(),
            "days_left": self.days_left,
            "rows": [r.as_json() for r in self.rows],
            "stray": [{"unit": v.unit, "item": v.item, "file": v.file} for v in self.stray],
            "skipped": [{"path": path, "reason": reason} for path, reason in self.skipped],
        }


def expected_units(rules: Rules, parent: str = "province") -> tuple[Unit, ...]:
    return rules.children(parent)


def compute(
    rules: Rules,
    versions: Sequence[Submission],
    as_of: dt.datetime,
    parent: str = "province",
    mail_problems: dict[str, str] | None = None,
    skipped: Sequence[tuple[str, str]] = (),
) -> Status:
    """The status of every expected unit and item at `as_of`, from all versions received so far."""
    deadline = rules.campaign.deadline
    expected = expected_units(rules, parent)
    codes = {u.code for u in expected}
    by_pair = history.histories(v for v in versions if v.unit in codes)
    stray = [v for v in versions if v.unit not in codes]
    rows = []
    for unit in expected:
        for item in unit.items:
            versions_of = by_pair.get((unit.code, item), [])
            rows.append(
                _row(
                    rules, unit, item, versions_of, as_of, deadline, (mail_problems or {}).get(unit.code, "")
                )
            )
    return Status(
        as_of, deadline, tuple(rows), tuple(sorted(stray, key=lambda v: (v.unit, v.received))), tuple(skipped)
    )


def _row(
    rules: Rules,
    unit: Unit,
    item: str,
    versions: Sequence[Submission],
    as_of: dt.datetime,
    deadline: dt.datetime,
    mail_problem: str,
) -> ItemStatus:
    label = rules.items[item].label
    base = dict(
        unit=unit.code,
        unit_name=unit.name,
        kind=unit.kind,
        item=item,
        item_label=label,
        mail_problem=mail_problem,
    )
    if not versions:
        state = OVERDUE if as_of > deadline else MISSING
        return ItemStatus(
            **base, state=state, received=None, first_received=None, versions=0, version_used=None, late=False
        )
    latest = versions[-1]
    used = history.used(versions)
    late = latest.received > deadline
    if rules.items[item].form is None:  # a written report: received, or a file that cannot be read
        state = RECEIVED if latest.verdict == Verdict.RECEIVED else FAILED
    else:
        state = state_of(latest)
    reason = taken_under(latest)
    note = f"{state.label}:{reason}" if reason else ""
    if state == FAILED and rules.items[item].form is None:
        note = "".join(f.message for f in latest.findings[:1]) or Verdict.UNREADABLE.label
    if state in (FAILED, RETURNED) and used is not None:
        why = "未通过" if state == FAILED else "已退回"
        note = ";".join(x for x in (note, f"第{latest.version}版{why},汇总暂用第{used.version}版") if x)
    covered = next((f.message for f in latest.findings if f.rule == F_ROLLUP), "")
    if covered:  # a roll-up that leaves units out: said wherever its figures are used
        note = ";".join(x for x in (note, covered) if x)
    if late:
        note = "逾期报送" + (f";{note}" if note else "")
    return ItemStatus(
        **base,
        state=state,
        received=latest.received,
        first_received=versions[0].received,
        versions=len(versions),
        version_used=used.version if used and rules.items[item].form is not None else None,
        late=late,
        note=note,
        reason=reason,
    )


def state_of(version: Submission) -> ItemState:
    """The review state of one version of a form: staff's decision first, then the checks' verdict."""
    if version.review is not None:
        return ACCEPTED if version.review.action == ACCEPT else RETURNED
    if version.verdict != Verdict.ACCEPTED:
        return FAILED
    if not version.warnings:
        return PASSED
    return EXPLAINED if version.explained else WARNED


def taken_under(version: Submission) -> str:
    """Why a version is 省总接受, 退回 or 已说明, in words: staff's reason (who, when), or the unit's 填报说明;
    "" for any other version."""
    review = version.review
    if review is not None:
        return f"{review.reason}({review.by},{review.at:%Y-%m-%d %H:%M})"
    if version.verdict == Verdict.ACCEPTED and version.warnings and version.explained:
        return f"单位填报说明:{version.explanation}" if version.explanation else "单位已在填报说明中说明"
    return ""
