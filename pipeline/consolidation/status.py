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
from pipeline.model import ItemState, Submission, Verdict

# Short names for the states, as the renderers compare them.
PASSED, WARNED, FAILED = ItemState.PASSED, ItemState.WARNED, ItemState.FAILED
MISSING, OVERDUE, RECEIVED = ItemState.MISSING, ItemState.OVERDUE, ItemState.RECEIVED


@dataclass(frozen=True)
class ItemStatus:
    unit: str
    unit_name: str
    kind: str
    item: str
    item_label: str
    state: ItemState
    received: dt.datetime | None  # of the latest version
    versions: int
    version_used: int | None  # the version consolidation uses (latest accepted), if any
    late: bool  # received after the deadline (still processed)
    note: str = ""
    mail_problem: str = ""  # a recipient refused, a message whose delivery is unknown

    def as_json(self) -> dict[str, Any]:
        return {
            "unit": self.unit, "unit_name": self.unit_name, "kind": self.kind, "item": self.item,
            "item_label": self.item_label, "state": str(self.state), "state_label": self.state.label,
            "received": self.received.isoformat() if self.received else None,
            "versions": self.versions, "version_used": self.version_used, "late": self.late,
            "note": self.note, "mail_problem": self.mail_problem,
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
            ok = r.state in (PASSED, WARNED, RECEIVED) or r.version_used is not None
            by_unit[r.unit] = by_unit.get(r.unit, True) and ok
        return sum(by_unit.values())

    def as_json(self) -> dict[str, Any]:
        return {
            "as_of": self.as_of.isoformat(),
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
            rows.append(_row(rules, unit, item, versions_of, as_of, deadline, (mail_problems or {}).get(unit.code, "")))
    return Status(as_of, deadline, tuple(rows), tuple(sorted(stray, key=lambda v: (v.unit, v.received))),
                  tuple(skipped))


def _row(rules: Rules, unit: Unit, item: str, versions: Sequence[Submission], as_of: dt.datetime,
         deadline: dt.datetime, mail_problem: str) -> ItemStatus:
    label = rules.items[item].label
    base = dict(unit=unit.code, unit_name=unit.name, kind=unit.kind, item=item, item_label=label,
                mail_problem=mail_problem)
    if not versions:
        state = OVERDUE if as_of > deadline else MISSING
        return ItemStatus(**base, state=state, received=None, versions=0, version_used=None, late=False)
    latest = versions[-1]
    used = history.used(versions)
    late = latest.received > deadline
    note = ""
    if rules.items[item].form is None:
        state = RECEIVED
    elif latest.verdict == Verdict.ACCEPTED:
        state = WARNED if latest.warnings and not latest.explained else PASSED
    else:
        state = FAILED
        if used is not None:
            note = f"第{latest.version}版未通过,汇总暂用第{used.version}版"
    if late:
        note = "逾期报送" + (f";{note}" if note else "")
    return ItemStatus(
        **base, state=state, received=latest.received, versions=len(versions),
        version_used=used.version if used and rules.items[item].form is not None else None, late=late, note=note,
    )


def render_text(status: Status, rules: Rules) -> str:
    c = rules.campaign
    when = "已过截止时间" if status.past_deadline else f"距截止还有 {status.days_left} 天"
    lines = [
        f"{c.title} 报送情况(截至 {status.as_of:%Y-%m-%d %H:%M},截止 {status.deadline:%Y-%m-%d %H:%M},{when})",
        "",
    ]
    items = [i for i in rules.items]
    header = f"{'单位':<20}" + "".join(f"{rules.items[i].label:<14}" for i in items)
    lines.append(header)
    by_unit: dict[str, dict[str, ItemStatus]] = {}
    order: list[str] = []
    for r in status.rows:
        if r.unit not in by_unit:
            order.append(r.unit)
        by_unit.setdefault(r.unit, {})[r.item] = r
    for code in order:
        cells = []
        name = next(iter(by_unit[code].values())).unit_name
        for item in items:
            row = by_unit[code].get(item)
            if row is None:
                cells.append("—")
                continue
            text = row.state.label
            if row.versions > 1:
                text += f"(共{row.versions}版)"
            if row.late:
                text += "(逾期)"
            cells.append(text)
        lines.append(f"{name:<20}" + "".join(f"{c:<14}" for c in cells))
        notes = [f"{rules.items[r.item].label}:{r.note}" for r in by_unit[code].values() if r.note]
        problems = {r.mail_problem for r in by_unit[code].values() if r.mail_problem}
        for n in notes + sorted(problems):
            lines.append(f"{'':<20}  ↳ {n}")
    counts: dict[str, int] = {}
    for r in status.rows:
        counts[r.state.label] = counts.get(r.state.label, 0) + 1
    lines.append("")
    lines.append("合计:" + ",".join(f"{k} {v}" for k, v in counts.items()))
    for v in status.stray:
        lines.append(f"报错地方:{v.file}({v.unit} 应向其上级单位报送,不计入本级汇总)")
    for path, reason in status.skipped:
        lines.append(f"跳过:{path}:{reason}")
    return "\n".join(lines)
