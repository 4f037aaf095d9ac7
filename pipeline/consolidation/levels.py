"""Who reports to whom: a form that reached the wrong level, and a roll-up form that sums fewer units
than report to the unit that made it (or others). Decided here, once, for the check step and the status.
"""

from __future__ import annotations

from dataclasses import replace

from pipeline.campaign.config import Rules, Unit
from pipeline.model import F_LEVEL, F_ROLLUP, Finding, Report, Severity


def wrong_level(rules: Rules, unit_code: str | None, level: str) -> Finding | None:
    """A form from a unit that reports to another level than `level` (province or a unit's code): it is
    told where to send it instead, and it is not counted here."""
    if not unit_code or not rules.has_unit(unit_code):
        return None
    unit = rules.unit(unit_code)
    if unit.reports_to == level or unit.code == level:
        return None
    to, address = rules.name_of(unit.reports_to), rules.address_of(unit.reports_to)
    here = rules.name_of(level)
    return Finding(
        F_LEVEL,
        Severity.ERROR,
        f"{unit.name}的报表应报送{to}({address}),由其汇总上报;这份报表发给了{here},"
        f"不计入本级汇总,请改发至 {address}",
    )


def owing(rules: Rules, parent: str, form: str) -> list[Unit]:
    """The units below `parent` that owe `form`: what its roll-up of `form` should sum."""
    return [u for u in rules.children(parent) if any(rules.items[i].form == form for i in u.items)]


def coverage_note(rules: Rules, parent: str, form: str, covers: tuple[str, ...]) -> str:
    """What a roll-up covers, in words for its 填报说明 and for the status: "" when it covers every unit."""
    expected = owing(rules, parent, form)
    missing = [u.name for u in expected if u.code not in covers]
    if not missing:
        return ""
    return f"已汇总 {len(expected) - len(missing)}/{len(expected)} 个下属单位;未汇总:{'、'.join(missing)}"


def rollup_findings(
    rules: Rules, unit_code: str | None, form: str | None, covers: tuple[str, ...] | None
) -> list[Finding]:
    """A roll-up form naming units that are not its maker's is an error; one that leaves some out is a
    warning naming them, carried wherever its figures are used."""
    if covers is None or not unit_code or not form or not rules.has_unit(unit_code):
        return []
    unit = rules.unit(unit_code)
    children = {u.code for u in rules.children(unit.code)}
    strangers = [c for c in covers if c not in children]
    if strangers:
        return [
            Finding(
                F_ROLLUP,
                Severity.ERROR,
                f"汇总表记录的下属单位 {'、'.join(strangers)} 不是{unit.name}的下属单位;"
                "请用本单位一级的 pipeline run --for 重新生成汇总表",
            )
        ]
    note = coverage_note(rules, unit.code, form, covers)
    return (
        [Finding(F_ROLLUP, Severity.WARNING, f"{unit.name}的汇总表{note},汇总数不含这些单位")] if note else []
    )


def with_rollup(rules: Rules, report: Report) -> Report:
    """A roll-up form's report with what it covers checked (`rollup_findings`); any other unchanged."""
    more = rollup_findings(rules, report.read.unit, report.read.form, report.read.covers)
    return replace(report, findings=(*report.findings, *more)) if more else report
