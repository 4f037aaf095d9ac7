"""Charts of the HTML report, drawn as inline SVG: nothing is fetched when the report is opened or printed.

Horizontal bars, one row per unit or industry, labels left and figures right; every text that came from
rules.yaml or a unit is escaped.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
from markupsafe import Markup, escape

from pipeline.campaign.config import Rules
from pipeline.campaign.consolidation_plan import Chart
from pipeline.consolidation.consolidate import UNIT_ROW, Consolidation, Table
from pipeline.render.words import field_label, figure, short, width

CHART_WIDTH = 720
VALUE_WIDTH = 128  # room right of the longest bar for its figures
BAR_HEIGHT = 15
ROW_HEIGHT = 21
PALETTE = ("#b22222", "#d9822b", "#e6b422", "#3a7d44", "#2f5f8a")
BAR_COLOR = "#b22222"
GRID_COLOR = "#d9d9d9"
CHAR_PX = 6.2  # half the width of a 12px CJK character: `width` counts a CJK character as 2


def _nice_step(top: float) -> float:
    raw = top / 5
    magnitude = 10 ** math.floor(math.log10(raw))
    return next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)


def _num(x: float) -> str:
    return f"{x:.1f}".removesuffix(".0")


@dataclass(frozen=True)
class _Frame:
    """The drawing area of a horizontal bar chart: labels left, bars, figures right."""

    left: float  # x where the bars start
    plot: float  # width of the bar area
    top: float  # y of the first row
    rows: int
    scale: float  # the value at the right end of the bar area
    step: float  # between grid lines

    @property
    def bottom(self) -> float:
        return self.top + ROW_HEIGHT * self.rows

    def x(self, value: float) -> float:
        return self.left + self.plot * value / self.scale

    def grid(self) -> list[str]:
        """Vertical grid lines at round values, labelled under the chart."""
        step = self.step
        parts = []
        i = 0
        while step * i <= self.scale + 1e-9:
            x, value = self.x(step * i), step * i
            text = _num(value) if step < 1 else str(int(round(value)))
            parts.append(
                f'<line x1="{_num(x)}" y1="{_num(self.top - 4)}" x2="{_num(x)}" y2="{_num(self.bottom)}" '
                f'stroke="{GRID_COLOR}" stroke-width="{1.2 if i == 0 else 1}"/>'
            )
            parts.append(
                f'<text x="{_num(x)}" y="{_num(self.bottom + 13)}" text-anchor="middle" class="tick">{text}</text>'
            )
            i += 1
        return parts

    def label(self, i: int, text: str) -> str:
        return (
            f'<text x="{_num(self.left - 8)}" y="{_num(self.mid(i))}" text-anchor="end" class="label">'
            f"{escape(text)}</text>"
        )

    def mid(self, i: int) -> float:
        return self.top + ROW_HEIGHT * i + ROW_HEIGHT / 2 + 4

    def bar(self, i: int, start: float, value: float, color: str) -> str:
        x0, x1 = self.x(start), self.x(start + value)
        y = self.top + ROW_HEIGHT * i + (ROW_HEIGHT - BAR_HEIGHT) / 2
        return f'<rect x="{_num(x0)}" y="{_num(y)}" width="{_num(x1 - x0)}" height="{BAR_HEIGHT}" fill="{color}"/>'

    def figure(self, i: int, end: float, text: str, css: str = "value") -> str:
        return (
            f'<text x="{_num(self.x(end) + 6)}" y="{_num(self.mid(i))}" class="{css}">{escape(text)}</text>'
        )


def _chart_frame(labels: Sequence[str], top: float, rows: int, largest: float) -> _Frame:
    left = min(260.0, max(60.0, CHAR_PX * max([width(t) for t in labels] or [4]) + 16))
    plot = CHART_WIDTH - left - VALUE_WIDTH
    if largest <= 0:
        return _Frame(left, plot, top, rows, 5.0, 1.0)
    step = _nice_step(largest)
    return _Frame(left, plot, top, rows, step * math.ceil(largest / step - 1e-9), step)


def _svg(title: str, height: float, parts: list[str]) -> Markup:
    head = (
        f'<svg class="chart" viewBox="0 0 {CHART_WIDTH} {_num(height)}" width="100%" role="img" '
        f'aria-label="{escape(title)}"><title>{escape(title)}</title>'
    )
    return Markup(head + "".join(parts) + "</svg>")


def bar_chart(title: str, rows: Sequence[tuple[str, float | None, str]]) -> Markup:
    """Horizontal bars: (label, value or None when there is no figure, the figure as text)."""
    frame = _chart_frame(
        [r[0] for r in rows], 8, len(rows), max([v for _, v, _ in rows if v is not None] or [0.0])
    )
    parts = frame.grid()
    for i, (label, value, text) in enumerate(rows):
        parts.append(frame.label(i, label))
        if value is None:
            parts.append(frame.figure(i, 0, text, "missing"))
            continue
        parts.append(frame.bar(i, 0, value, BAR_COLOR))
        parts.append(frame.figure(i, value, text))
    return _svg(title, frame.bottom + 20, parts)


def stacked_chart(
    title: str, series: Sequence[str], rows: Sequence[tuple[str, Sequence[float] | None, str]]
) -> Markup:
    """Horizontal stacked bars, one colour per series, with the legend above."""
    largest = max([sum(v) for _, v, _ in rows if v is not None] or [0.0])
    frame = _chart_frame([r[0] for r in rows], 34, len(rows), largest)
    parts = []
    x = frame.left
    for k, name in enumerate(series):
        color = PALETTE[k % len(PALETTE)]
        parts.append(f'<rect x="{_num(x)}" y="8" width="12" height="12" fill="{color}"/>')
        parts.append(f'<text x="{_num(x + 16)}" y="18.5" class="legend">{escape(name)}</text>')
        x += 16 + CHAR_PX * width(name) + 14
    parts += frame.grid()
    for i, (label, values, text) in enumerate(rows):
        parts.append(frame.label(i, label))
        if values is None:
            parts.append(frame.figure(i, 0, text, "missing"))
            continue
        start = 0.0
        for k, value in enumerate(values):
            if value > 0:
                parts.append(frame.bar(i, start, value, PALETTE[k % len(PALETTE)]))
            start += value
        parts.append(frame.figure(i, start, text))
    return _svg(title, frame.bottom + 20, parts)


def report_charts(rules: Rules, c: Consolidation) -> list[dict[str, Any]]:
    """The HTML report's charts as rules.yaml declares them (`consolidation.charts`): each a title, a note
    under it and the SVG."""
    out = []
    for chart in rules.consolidation.charts:
        done, owed = c.coverage.get(c.tables[chart.table].plan.form, (0, 0))
        title = chart.title + (f"(已汇总 {done}/{owed} 个单位)" if done < owed else "")
        out.append(dict(title=title, note=chart.note, svg=_chart(rules, c, chart)))
    return out


def _rows(rules: Rules, table: Table) -> list[tuple[str, Mapping[Any, Any]]]:
    """The rows a chart draws, with their labels: a by_unit table's units (by short name), a by_row
    table's rows but the 合计."""
    frame = table.frame
    if table.plan.kind == "by_unit":
        return [(short(rules, r["code"]), r) for r in frame[frame["level"] == UNIT_ROW].to_dict("records")]
    section = rules.forms[table.plan.form].section(table.plan.section)
    total = section.total_row.code if section.total_row else None
    return [(r["label"], r) for r in frame.to_dict("records") if r["code"] != total]


def _chart(rules: Rules, c: Consolidation, chart: Chart) -> Markup:
    table = c.tables[chart.table]
    columns = {col.name: col for col in table.columns}
    title = field_label(chart.title)  # the chart's own title without the unit of measure in brackets

    def text(row: Mapping[Any, Any], name: str) -> str:
        col = columns[name]
        unit = rules.forms[table.plan.form].section(col.key[0]).field(col.key[2]).unit
        return f"{figure(row[name], col.type)} {unit}".rstrip()

    if chart.stack:
        share = rules.consolidation.share(chart.stack)
        parts = [next(col.name for col in table.columns if col.key == p.key) for p in share.parts]
        whole = next(col.name for col in table.columns if share.whole and col.key == share.whole.key)
        stacked: list[tuple[str, list[float] | None, str]] = [
            (label, None, "未汇总")
            if pd.isna(row[whole])
            else (label, [float(row[p]) for p in parts], text(row, whole))
            for label, row in _rows(rules, table)
        ]
        return stacked_chart(title, [p.label for p in share.parts], stacked)
    bars: list[tuple[str, float | None, str]] = []
    for label, row in _rows(rules, table):
        if pd.isna(row[chart.bar]):
            bars.append((label, None, "未汇总"))
        else:
            quoted = " · ".join(text(row, name) for name in (chart.bar, chart.also) if name)
            bars.append((label, float(row[chart.bar]), quoted))
    return bar_chart(title, bars)
