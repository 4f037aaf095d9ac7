"""A unit's versions of an item, and which of them is which: the latest it sent (what feedback and the
status speak of) and the one the consolidation uses (the latest usable: passed and not returned by staff,
or accepted by staff despite its errors). Decided here, once.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence

from pipeline.campaign.config import Unit
from pipeline.model import ACCEPT, RETURN, Submission, Verdict

Pair = tuple[str, str]  # (unit, item)


def _rank(s: Submission) -> tuple[int, dt.datetime, str]:
    return s.version, s.received, s.id


def checked_by(subs: Iterable[Submission], as_of: dt.datetime) -> list[Submission]:
    """Every submission checked and attributed to a unit's item, received by `as_of` and not held (待确认):
    what the status and the consolidation see."""
    return [s for s in subs if s.unit and s.item and s.verdict and s.received <= as_of and not s.held]


def histories(subs: Iterable[Submission]) -> dict[Pair, list[Submission]]:
    """Each unit's versions of each item, oldest first."""
    out: dict[Pair, list[Submission]] = {}
    for s in subs:
        if s.unit and s.item:
            out.setdefault((s.unit, s.item), []).append(s)
    for versions in out.values():
        versions.sort(key=_rank)
    return out


def latest(subs: Iterable[Submission]) -> dict[Pair, Submission]:
    """The version each unit sent last of each item."""
    out: dict[Pair, Submission] = {}
    for s in subs:
        if s.unit and s.item:
            held = out.get((s.unit, s.item))
            if held is None or _rank(s) > _rank(held):
                out[(s.unit, s.item)] = s
    return out


def usable(s: Submission) -> bool:
    """Whether a version's figures may be used: accepted by the checks and not returned by staff, accepted
    by staff despite its errors, or a report received."""
    if s.review is not None:
        return s.review.action == ACCEPT
    return s.verdict in (Verdict.ACCEPTED, Verdict.RECEIVED)


def returnable(s: Submission) -> bool:
    """Whether staff may return a version: its figures are usable."""
    return usable(s) and s.verdict != Verdict.RECEIVED


def acceptable(s: Submission) -> bool:
    """Whether staff may accept a version despite its errors: a form read whole that failed the checks (or
    one they returned)."""
    return s.kind == "form" and (
        s.verdict == Verdict.REJECTED or (s.review is not None and s.review.action == RETURN)
    )


def used(history: Sequence[Submission]) -> Submission | None:
    """The version of one unit's item the consolidation uses: the latest usable one."""
    return max((s for s in history if usable(s)), key=_rank, default=None)


def used_forms(subs: Iterable[Submission], units: Sequence[Unit], form: str) -> dict[str, Submission]:
    """The version of `form` used for each of `units` that has one."""
    codes = {u.code for u in units}
    chosen: dict[str, Submission] = {}
    for s in subs:
        if s.unit in codes and s.form == form and usable(s):
            held = chosen.get(s.unit)
            if held is None or _rank(s) > _rank(held):
                chosen[s.unit] = s
    return chosen
