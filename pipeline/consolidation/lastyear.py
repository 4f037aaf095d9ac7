"""Last year's figures beside this year's: the values of the previous campaign's final consolidated workbook
(read by io/previous.py), and how a figure changed. A unit or a field absent last year is absent here, never
0, and every comparison says so.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

Key = tuple[str, str, str]  # (section, row, field), as layout.Slot.key
FormKey = tuple[str, Key]  # (form, key)

ABSENT = "上年无"


@dataclass(frozen=True)
class LastYear:
    """What last year's consolidated workbook holds, by form and slot: each unit's row of the per-unit sheets,
    their 合计 rows, and the rows of a by_row sheet (分行业) summed over units."""

    source: str  # the workbook's file name, as the documents cite it
    units: Mapping[str, Mapping[FormKey, float]] = field(default_factory=dict)  # unit code → values
    totals: Mapping[FormKey, float] = field(default_factory=dict)
    rows: Mapping[FormKey, float] = field(default_factory=dict)
    reported: Mapping[str, int] = field(default_factory=dict)  # form → units with a row of figures

    def unit(self, code: str, form: str, key: Key) -> float | None:
        return self.units.get(code, {}).get((form, key))

    def total(self, form: str, key: Key) -> float | None:
        return self.totals.get((form, key), self.rows.get((form, key)))


def number(value: Any) -> float | None:
    """A figure as a float, None when there is none (blank, NA, a range written as text)."""
    if value is None or isinstance(value, bool | str):
        return None
    try:
        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        return None
    out = float(value)
    return None if math.isnan(out) else out


def change(now: Any, before: float | None) -> float | None:
    """The relative change from last year (0.25 for +25 %); None when either year has no figure or last year's
    was 0 (a change from nothing has no percentage)."""
    current = number(now)
    if current is None or before is None or before == 0:
        return None
    return (current - before) / before


def change_text(now: Any, before: float | None) -> str:
    """增减 as people read it: +12.3%, −4.0%, 持平; 上年无 when last year has no figure; 上年为0 when it was 0."""
    if before is None:
        return ABSENT
    if number(now) is None:
        return ""
    if before == 0:
        return "上年为0" if number(now) else "持平"
    rate = change(now, before)
    assert rate is not None
    if abs(rate) < 0.0005:
        return "持平"
    return f"{rate * 100:+.1f}%".replace("-", "−")
