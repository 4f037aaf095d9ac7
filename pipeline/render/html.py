"""The HTML report (情况报告.html): the headline figures in sentences and cards, charts, a summary table,
who still owes what and every open finding, in one self-contained page (inline CSS and SVG) that prints
on A4. Rendered from templates/report.html.j2 through the render package's Jinja environment.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping, Sequence
from typing import Any

from pipeline.campaign.config import Rules
from pipeline.consolidation import consolidate
from pipeline.consolidation.consolidate import Consolidation
from pipeline.consolidation.lastyear import LastYear
from pipeline.consolidation.status import Status
from pipeline.render import coverage
from pipeline.render.charts import report_charts
from pipeline.render.env import render
from pipeline.render.summary import figure_rows, unit_table
from pipeline.render.words import (
    FindingEntry,
    cards,
    field_label,
    figure,
    figure_text,
    open_problems,
    overview,
)


def _cards(rules: Rules, c: Consolidation, last: LastYear | None) -> list[tuple[str, str, str, str]]:
    """The headline cards: label, figure, unit of measure, and last year's figure and change for the same
    units ("" without last year)."""
    # Both skip a figure no unit owes, so they pair up in order (a card's label may carry its coverage).
    rows = figure_rows(rules, c, [f.name for f in rules.consolidation.figures if f.card], last)
    out = []
    for (label, value, unit), row in zip(cards(rules, c), rows, strict=True):
        prior = f"上年 {row[2]} · {row[3]}" if last is not None and row[2] != "—" else ""
        out.append((label, value, unit, prior))
    return out


def _table(rules: Rules, c: Consolidation, last: LastYear | None = None) -> dict[str, Any] | None:
    """A few columns of a by_unit table (rules.yaml's `consolidation.report_table`), with its 小计 and 合计
    rows, and with last year the first column's 上年 and 增减; None when none is declared."""
    plan = rules.consolidation.report_table
    if plan is None:
        return None
    table = c.tables[plan.table]
    known = {col.name: col for col in table.columns}
    columns = [(known[name], short) for name, short in plan.columns]
    rows = []
    compared = unit_table(rules, c, last) if last is not None else ()
    for position, row in enumerate(table.frame.to_dict("records")):
        cells = [_cell(table, position, row, col) for col, _ in columns]
        if compared:
            cells += list(compared[position + 1][-2:])
        rows.append(
            dict(
                name=row["name"],
                level=row["level"],
                cells=cells,
                missing=row["level"] == "unit" and not row["reported"],
            )
        )
    headers = [(short, _unit_of(col)) for col, short in columns]
    if compared:
        headers += [(f"{columns[0][1]}上年", _unit_of(columns[0][0])), ("增减", "%")]
    return dict(headers=headers, rows=rows)


def _coverage(rules: Rules, c: Consolidation, status: Status) -> list[dict[str, Any]]:
    """Per form: how many units its totals hold, as a bar (green only when all), and who is left out why."""
    out = []
    for form, (done, owed) in c.coverage.items():
        if owed:
            out.append(
                dict(
                    label=rules.item_for_form(form).label,
                    done=done,
                    owed=owed,
                    percent=round(100 * done / owed, 1),
                    whole=done == owed,
                    left_out=coverage.left_out_line(rules, c, status, form),
                )
            )
    return out


def _cell(table: consolidate.Table, position: int, row: Mapping[Any, Any], col: consolidate.Column) -> str:
    span = table.spans.get((position, col.name))
    return figure_text(span, col.type) if span is not None else figure(row[col.name], col.type)


def _unit_of(col: consolidate.Column) -> str:
    return re.sub(r"^[((]|[))]$", "", col.caption[len(field_label(col.caption)) :])


def html_report(
    rules: Rules,
    c: Consolidation,
    status: Status,
    findings_by_unit: Mapping[str, Sequence[FindingEntry]],
    *,
    as_of: dt.datetime,
    final: bool,
    edition: int,
    checks: Sequence[str] = (),
    last: LastYear | None = None,
    allow_missing: str = "",
) -> str:
    """A self-contained HTML report (inline CSS and SVG, nothing fetched), printable on A4. `checks`: the
    figures to verify (需核实), one line each; `last`: last year's figures, beside the cards and the table;
    `allow_missing`: staff's explanation of a final edition made with units missing (run --allow-missing)."""
    problems = open_problems(rules, c, findings_by_unit)
    grouped: list[dict[str, Any]] = []  # unit → file → findings
    for p in problems:
        if not grouped or grouped[-1]["unit"] != p.unit:
            grouped.append(dict(unit=p.unit, name=p.unit_name, files=[]))
        files = grouped[-1]["files"]
        if not files or files[-1]["file"] != p.file:
            files.append(dict(file=p.file, entries=[]))
        f = p.finding
        files[-1]["entries"].append(
            dict(
                error=f.is_error,
                severity=f.severity.label,
                where=f.place,
                message=f.message,
            )
        )
    context = overview(rules, c, status, as_of, final, edition)
    context.update(
        cards=_cards(rules, c, last),
        checks=list(checks),
        outlier_rule=rules.consolidation.review.outliers,
        charts=report_charts(rules, c),
        table=_table(rules, c, last),
        problems=grouped,
        errors=sum(p.finding.is_error for p in problems),
        warnings=sum(not p.finding.is_error for p in problems),
        coverage=_coverage(rules, c, status),
        allow_missing=allow_missing.strip(),
        timeliness=[
            dict(label=t.label, on_time=t.on_time, late=t.late, missing=t.missing, rate=f"{t.rate:.0%}")
            for t in status.timeliness().values()
            if t.expected
        ],
    )
    return render("report.html.j2", **context)
