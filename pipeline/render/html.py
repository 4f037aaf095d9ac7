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
from pipeline.consolidation.status import Status
from pipeline.render.charts import report_charts
from pipeline.render.env import render
from pipeline.render.words import FindingEntry, field_label, figure, figure_text, open_problems, overview


def _table(rules: Rules, c: Consolidation) -> dict[str, Any] | None:
    """A few columns of a by_unit table (rules.yaml's `consolidation.report_table`), with its 小计 and 合计
    rows; None when none is declared."""
    plan = rules.consolidation.report_table
    if plan is None:
        return None
    table = c.tables[plan.table]
    known = {col.name: col for col in table.columns}
    columns = [(known[name], short) for name, short in plan.columns]
    rows = []
    for position, row in enumerate(table.frame.to_dict("records")):
        rows.append(
            dict(
                name=row["name"],
                level=row["level"],
                cells=[_cell(table, position, row, col) for col, _ in columns],
                missing=row["level"] == "unit" and not row["reported"],
            )
        )
    return dict(headers=[(short, _unit_of(col)) for col, short in columns], rows=rows)


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
) -> str:
    """A self-contained HTML report (inline CSS and SVG, nothing fetched), printable on A4."""
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
        charts=report_charts(rules, c),
        table=_table(rules, c),
        problems=grouped,
        errors=sum(p.finding.is_error for p in problems),
        warnings=sum(not p.finding.is_error for p in problems),
    )
    return render("report.html.j2", **context)
