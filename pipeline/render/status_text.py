"""报送情况.txt: the status as staff read it in Notepad, columns lined up by display width (a Chinese
character takes two columns, as it does on screen), then the on-time rate of each item."""

from __future__ import annotations

import unicodedata

from pipeline.campaign.config import Rules
from pipeline.consolidation.status import ItemStatus, Status


def width(text: str) -> int:
    """Columns `text` takes in a fixed-width font: wide and full-width characters take two."""
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def pad(text: str, columns: int) -> str:
    return text + " " * max(columns - width(text), 1)


def render_text(status: Status, rules: Rules) -> str:
    c = rules.campaign
    when = "已过截止时间" if status.past_deadline else f"距截止还有 {status.days_left} 天"
    lines = [
        f"{c.title} 报送情况(截至 {status.as_of:%Y-%m-%d %H:%M},截止 {status.deadline:%Y-%m-%d %H:%M},{when})",
        "",
    ]
    items = list(rules.items)
    by_unit: dict[str, dict[str, ItemStatus]] = {}
    for r in status.rows:
        by_unit.setdefault(r.unit, {})[r.item] = r
    table = [["单位", *(rules.items[i].label for i in items)]]
    notes: list[list[str]] = [[]]
    for rows in by_unit.values():
        table.append([next(iter(rows.values())).unit_name, *(_cell(rows.get(i)) for i in items)])
        noted = [f"{rules.items[r.item].label}:{r.note}" for r in rows.values() if r.note]
        notes.append(noted + sorted({r.mail_problem for r in rows.values() if r.mail_problem}))
    columns = [max(width(row[j]) for row in table) + 2 for j in range(len(items) + 1)]
    for row, noted in zip(table, notes, strict=True):
        lines.append("".join(pad(cell, columns[j]) for j, cell in enumerate(row)).rstrip())
        lines += [" " * columns[0] + f"↳ {n}" for n in noted]
    counts: dict[str, int] = {}
    for r in status.rows:
        counts[r.state.label] = counts.get(r.state.label, 0) + 1
    lines += ["", "合计:" + ",".join(f"{k} {v}" for k, v in counts.items())]
    for t in status.timeliness().values():
        lines.append(
            f"按时报送率:{t.label} {t.on_time}/{t.expected}({t.rate:.1%}),逾期 {t.late},未报 {t.missing}"
        )
    for v in status.stray:
        name = rules.unit(v.unit).name if rules.has_unit(v.unit) else v.unit
        parent = rules.unit(v.unit).reports_to if rules.has_unit(v.unit) else "province"
        lines.append(
            f"报送对象有误:{v.file}({name}应报送{rules.name_of(parent)} {rules.address_of(parent)},"
            "不计入本级汇总)"
        )
    for path, reason in status.skipped:
        lines.append(f"跳过:{path}:{reason}")
    return "\n".join(lines)


def _cell(row: ItemStatus | None) -> str:
    if row is None:
        return "—"
    text = row.state.label
    if row.versions > 1:
        text += f"(共{row.versions}版)"
    if row.late:
        text += "(逾期)"
    return text
