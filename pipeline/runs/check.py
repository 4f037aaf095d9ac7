"""`pipeline check`: read files, validate them together, and tell the verdict of each.

The JSON shape is a contract other tools rely on:
`{"file", "unit", "form", "verdict", "findings": [{"rule", "severity", "sheet", "cell", "field", "row", "value", "message"}]}`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.campaign.config import Rules
from pipeline.checks import validate
from pipeline.consolidation import levels
from pipeline.io.intake import readable  # a name from Chinese Windows (GBK) shown as its sender reads it
from pipeline.model import (
    F_UNREADABLE,
    Checked,
    Finding,
    Read,
    Report,
    Severity,
    Verdict,
    in_order,
)
from pipeline.submission import read, refusal, reports

VERDICT_WORDS = {
    Verdict.ACCEPTED: "通过",
    Verdict.REJECTED: "未通过",
    Verdict.UNREADABLE: "无法读取",
    Verdict.RECEIVED: "已收到",
}


@dataclass(frozen=True)
class FileResult:
    """`pipeline check`'s answer for one file: the file as given, and its checked form."""

    file: str
    report: Report
    item: str | None = None  # a written report's item: only received, never checked

    @property
    def unit(self) -> str | None:
        return self.report.read.unit

    @property
    def form(self) -> str | None:
        return self.report.read.form

    @property
    def verdict(self) -> Verdict:
        verdict = self.report.verdict
        return Verdict.RECEIVED if self.item and verdict == Verdict.ACCEPTED else verdict

    @property
    def findings(self) -> tuple[Finding, ...]:
        return self.report.findings

    def as_json(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "unit": self.unit,
            "form": self.form,
            "verdict": str(self.verdict),
            "findings": [f.as_json() for f in self.findings],
        }


def check_paths(
    paths: Sequence[Path], rules: Rules, today: dt.date | None = None, *, isolated: bool = False
) -> list[FileResult]:
    """Check files as one batch, so a unit's two forms are also checked against each other.

    `isolated` reads each file in a limited worker process (pipeline.io.workers), so a file built to
    exhaust resources gets a verdict instead of taking the process down.
    """
    written = {p: _written_report(p, rules) for p in paths if reports.is_report(rules, p.name)}
    forms = [p for p in paths if p not in written]
    reads = (
        _read_isolated(forms, rules)
        if isolated
        else [read.read_path(p, rules, readable(p.name)) for p in forms]
    )
    checked = iter([levels.with_rollup(rules, r) for r in validate.validate_reads(reads, rules, today)])
    item = reports.report_item(rules)
    return [
        FileResult(readable(str(p)), written[p], item)
        if p in written
        else FileResult(readable(str(p)), next(checked))
        for p in paths
    ]


def _written_report(path: Path, rules: Rules) -> Report:
    """A written report as `check` tells it: whose, and 已收到 or 无法读取 (with the reason)."""
    name = readable(path.name)
    problem: Finding | None = None
    try:
        with path.open("rb") as fh:
            data = fh.read(rules.limits.max_bytes + 1)
    except OSError as exc:
        data, problem = b"", Finding(F_UNREADABLE, Severity.ERROR, f"无法打开文件:{exc.strerror or exc}")
    if len(data) > rules.limits.max_bytes:
        seen = reports.Examined(reports.owner(rules, name), refusal.too_large(len(data), rules.limits))
    else:
        seen = reports.examine(rules, name, data, rules.limits.max_bytes)
    findings = [f for f in (problem or seen.unreadable,) if f is not None]
    got = Read(name, None, seen.unit, {}, findings, readable=not findings)
    return Report(Checked(got, findings=findings), tuple(findings))


def _read_isolated(paths: Sequence[Path], rules: Rules) -> list[Read]:
    from pipeline.runs import tasks

    limits = rules.limits
    out: list[Read | None] = []
    items: list[tasks.FileToCheck] = []
    today = dt.date.today()
    for p in paths:
        try:
            with p.open("rb") as fh:
                data = fh.read(limits.max_bytes + 1)
        except OSError:
            out.append(
                read.read_path(p, rules, readable(p.name))
            )  # the same verdict as unisolated: cannot open
            continue
        if len(data) > limits.max_bytes:
            out.append(
                read.read_path(p, rules, readable(p.name))
            )  # refused by size alone, without reading it
            continue
        out.append(None)
        items.append(tasks.FileToCheck(data, readable(p.name), today))
    pool = tasks.pool(rules)
    try:
        done = iter(pool.map(tasks.read_file, items, tasks.unread(limits)) if items else [])
    finally:
        pool.close()
    return [s if s is not None else next(done) for s in out]


def render_text(results: Sequence[FileResult], rules: Rules) -> str:
    lines: list[str] = []
    names = {u.code: u.name for u in rules.units}
    for r in results:
        errors = sum(f.is_error for f in r.findings)
        warnings = len(r.findings) - errors
        lines.append(f"【{Path(r.file).name}】")
        form = rules.forms.get(r.form or "")
        unit = f"{names.get(r.unit, r.unit)}({r.unit})" if r.unit else "未识别"
        what = (
            f"{form.attachment} {form.title}" if form else rules.items[r.item].label if r.item else "未识别"
        )
        lines.append(
            f"  单位:{unit}  报表:{what}  结论:{VERDICT_WORDS[r.verdict]}"
            + (f"({errors} 个错误,{warnings} 个提醒)" if r.findings else "")
        )
        for f in in_order(r.findings):  # the rule's code is for --json, not for people
            mark = "✗ 错误" if f.is_error else "! 提醒"
            lines.append(f"  {mark} {f.place}  {f.message}")
        lines.append("")
    counts = {v: sum(r.verdict == v for r in results) for v in VERDICT_WORDS}
    lines.append(
        f"共 {len(results)} 个文件:通过 {counts[Verdict.ACCEPTED]},未通过 {counts[Verdict.REJECTED]},无法读取 {counts[Verdict.UNREADABLE]}"
        + (f",报告已收到 {counts[Verdict.RECEIVED]}" if counts[Verdict.RECEIVED] else "")
    )
    return "\n".join(lines)
