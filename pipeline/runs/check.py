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
from pipeline.io.intake import readable  # a name from Chinese Windows (GBK) shown as its sender reads it
from pipeline.model import Finding, Read, Severity, Verdict
from pipeline.submission import read

VERDICT_WORDS = {Verdict.ACCEPTED: "通过", Verdict.REJECTED: "未通过", Verdict.UNREADABLE: "无法读取"}


@dataclass(frozen=True)
class FileResult:
    file: str
    unit: str | None
    form: str | None
    verdict: str
    findings: tuple[Finding, ...]

    def as_json(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "unit": self.unit,
            "form": self.form,
            "verdict": self.verdict,
            "findings": [f.as_json() for f in self.findings],
        }


def check_paths(paths: Sequence[Path], rules: Rules, today: dt.date | None = None, *,
                isolated: bool = False) -> list[FileResult]:
    """Check files as one batch, so a unit's two forms are also checked against each other.

    `isolated` reads each file in a child process with memory and time limits (pipeline.sandbox), so a
    file built to exhaust resources gets a verdict instead of taking the process down.
    """
    submissions = (_read_isolated(paths, rules) if isolated
                   else [read.read_path(p, rules, readable(p.name)) for p in paths])
    checked = validate.validate_reads(submissions, rules, today)
    return [
        FileResult(readable(str(p)), c.read.unit, c.read.form, c.verdict, tuple(c.findings))
        for p, c in zip(paths, checked, strict=True)
    ]


def _read_isolated(paths: Sequence[Path], rules: Rules) -> list[Read]:
    from pipeline.io import sandbox

    limits = rules.limits
    out: list[Read | None] = []
    items: list[tuple[bytes, str]] = []
    for p in paths:
        try:
            with p.open("rb") as fh:
                data = fh.read(limits.max_bytes + 1)
        except OSError:
            out.append(read.read_path(p, rules, readable(p.name)))  # the same verdict as unisolated: cannot open
            continue
        if len(data) > limits.max_bytes:
            out.append(read.read_path(p, rules, readable(p.name)))  # refused by size alone, without reading it
            continue
        out.append(None)
        items.append((data, readable(p.name)))
    done = iter(sandbox.read_many(items, rules.source, memory_mb=limits.worker_memory_mb,
                                  seconds=limits.worker_seconds))
    return [s if s is not None else next(done) for s in out]


def render_text(results: Sequence[FileResult], rules: Rules) -> str:
    lines: list[str] = []
    names = {u.code: u.name for u in rules.units}
    for r in results:
        errors = sum(f.severity == Severity.ERROR for f in r.findings)
        warnings = len(r.findings) - errors
        lines.append(f"【{Path(r.file).name}】")
        form = rules.forms.get(r.form or "")
        unit = f"{names.get(r.unit, r.unit)}({r.unit})" if r.unit else "未识别"
        what = f"{form.attachment} {form.title}" if form else "未识别"
        lines.append(
            f"  单位:{unit}  报表:{what}  结论:{VERDICT_WORDS[Verdict(r.verdict)]}"
            + (f"({errors} 个错误,{warnings} 个提醒)" if r.findings else "")
        )
        for f in sorted(r.findings, key=lambda f: (f.severity != Severity.ERROR, _cell_order(f.cell))):
            mark = "✗ 错误" if f.severity == Severity.ERROR else "! 提醒"
            where = f"{f.sheet}!{f.cell}" if f.cell else (f.sheet or "整个文件")
            lines.append(f"  {mark} [{f.rule}] {where}  {f.message}")
        lines.append("")
    counts = {v: sum(r.verdict == v for r in results) for v in VERDICT_WORDS}
    lines.append(
        f"共 {len(results)} 个文件:通过 {counts[Verdict.ACCEPTED]},未通过 {counts[Verdict.REJECTED]},无法读取 {counts[Verdict.UNREADABLE]}"
    )
    return "\n".join(lines)


def _cell_order(cell: str) -> tuple[int, str]:
    digits = "".join(ch for ch in cell if ch.isdigit())
    return (int(digits) if digits else 0, cell)
