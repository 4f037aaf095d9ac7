"""The consolidation step: the draft rewritten each run, or with --final a numbered edition written once.

A level that consolidates units below it (ZX) also gets its own roll-up form, ready to send upward. A rerun
with nothing new rewrites nothing: the outputs are recorded with a digest of what they were made from.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.campaign.config import PROVINCE, Rules
from pipeline.consolidation import history, levels, status
from pipeline.io import atomic, outbox
from pipeline.model import VERSION, Finding, ItemState, Refused, Submission
from pipeline.runs.context import Run
from pipeline.runs.overlap import WorkbookProcess

if TYPE_CHECKING:
    from pipeline.consolidation.consolidate import Consolidation
    from pipeline.consolidation.lastyear import LastYear

Made = tuple[dict[Path, bytes], int, Path]  # the files of a consolidation, its edition and folder


class NotYetFinal(Refused):
    """--final before the deadline."""


def missing(now: status.Status) -> list[str]:
    """Each expected unit whose figures are not all in, with what is missing and why."""
    out: dict[str, list[str]] = {}
    for r in now.rows:
        if r.state in (ItemState.MISSING, ItemState.OVERDUE) or (
            r.state == ItemState.FAILED and r.version_used is None
        ):
            out.setdefault(r.unit_name, []).append(f"{r.item_label}({r.state.label})")
    return [f"{name}:{'、'.join(items)}" for name, items in out.items()]


def refuse_too_early(run: Run) -> None:
    """A final edition only after the deadline: said before the run does anything."""
    deadline = run.rules.campaign.deadline
    if run.options.final and run.as_of < deadline:
        raise NotYetFinal(f"还没到截止时间({deadline:%Y-%m-%d %H:%M}),只能生成草稿;去掉 --final 再运行")


def refuse_incomplete(run: Run, now: status.Status) -> None:
    """A final edition with units missing is made only when staff say why (--allow-missing)."""
    gaps = missing(now)
    if run.options.final and gaps and not run.options.allow_missing.strip():
        listed = "\n".join(f"  {g}" for g in gaps)
        raise Refused(
            f"还有 {len(gaps)} 个单位的材料不全,终稿未生成:\n{listed}\n"
            '如确需在缺报的情况下出终稿,请加 --allow-missing "缺报原因",该说明会写入终稿的说明和总结'
        )


def consolidation(
    run: Run, now: status.Status, made: Made | None = None, aside: WorkbookProcess | None = None
) -> list[Path]:
    """The consolidated workbook, the HTML report and the summary draft; a numbered 终稿 with --final.
    `made`: the same, already built by `started` for this very status; else built now, the workbook by
    `aside`'s process if given."""
    paths, edition, folder = made or started(run, now, aside)()
    if not run.options.final:
        for path, data in paths.items():
            atomic.write_bytes(path, data)
        return list(paths)
    # An edition appears whole or not at all: written in a hidden folder beside it, renamed when complete,
    # then recorded (what a killed run leaves behind is removed by the next, see outbox.remove_leftovers).
    hidden = folder.with_name(f".{folder.name}{outbox.PARTIAL}{os.getpid()}")
    for path, data in paths.items():
        atomic.write_bytes(hidden / path.relative_to(folder), data, durable=False)
    atomic.sync(hidden)
    os.rename(hidden, folder)
    atomic.sync(folder.parent)
    run.ledger.add_edition(edition, run.as_of, folder.relative_to(run.outbox).as_posix())
    return list(paths)


def _open_findings(
    latest: dict[tuple[str, str], Submission], codes: set[str]
) -> dict[str, list[tuple[str, Finding]]]:
    """Each expected unit's findings in the latest version of each item, with the file they are in."""
    findings: dict[str, list[tuple[str, Finding]]] = {}
    for (unit, _), v in sorted(latest.items()):
        if unit in codes:
            findings.setdefault(unit, []).extend((v.file, f) for f in v.findings)
    return findings


def _folder(run: Run) -> tuple[Path, int, str, str]:
    """Where the outputs go, the edition's number (0 for the draft), the names' prefix and suffix."""
    rules, final = run.rules, run.options.final
    refuse_too_early(run)
    level = "" if run.level == PROVINCE else f"{rules.unit(run.level).name}_"
    if not final:
        return run.outbox / outbox.SUMMARY_DIR, 0, level, "(草稿)"
    edition = len(run.ledger.editions()) + 1
    folder = run.outbox / outbox.SUMMARY_DIR / f"{level}终稿第{edition}版"
    while folder.exists():  # never overwrite an edition, even one the ledger forgot
        edition += 1
        folder = run.outbox / outbox.SUMMARY_DIR / f"{level}终稿第{edition}版"
    return folder, edition, level, f"(终稿第{edition}版)"


def started(run: Run, now: status.Status, aside: WorkbookProcess | None = None) -> Callable[[], Made]:
    """What `consolidation` writes, begun: the forms summed, the workbook under way (by `aside`'s process if
    given) and the report and summary made meanwhile; what it returns makes the rest and gives them all,
    built and not written."""
    from pipeline.consolidation import consolidate
    from pipeline.io import previous
    from pipeline.render import detail, html, summary, wordfile

    rules, as_of, final = run.rules, run.as_of, run.options.final
    expected = rules.children(run.level)
    every = history.checked_by(run.ledger.submissions(), as_of)
    c = consolidate.consolidate(rules, every, expected)
    last, unread = previous.read(rules)
    findings, checks = _to_verify(
        rules, c, last, _open_findings(history.latest(every), {u.code for u in expected})
    )
    folder, edition, level, suffix = _folder(run)
    title = rules.campaign.title
    # The workbook lists the versions, not their figures: the second process need not be sent them, but for
    # its 明细 sheet when the flat table is small; a large one goes to a CSV made here meanwhile.
    bare = [replace(v, values={}) for v in every]
    workbook = folder / f"{level}{rules.campaign.title}汇总表{suffix}.xlsx"
    small = sum(len(v.values) for v in c.used) <= detail.SHEET_LIMIT
    flat = "" if small else detail.csv_name(workbook.name)
    edition_of: dict[str, Any] = dict(as_of=as_of, final=final, edition=edition, last=last)
    missing = run.options.allow_missing if final else ""
    small_c = c if small else replace(c, used=tuple(replace(v, values={}) for v in c.used))
    book = (aside or WorkbookProcess()).workbook(
        rules, small_c, now, findings, bare, **edition_of, allow_missing=missing, detail_csv=flat
    )
    # The report and the summary while the workbook is being built.
    report = html.html_report(rules, c, now, findings, **edition_of, checks=checks, allow_missing=missing)
    paths = {workbook: b"", folder / f"{level}{title}情况报告{suffix}.html": report.encode("utf-8")}
    written = summary.written_summary(
        rules,
        c,
        now,
        **edition_of,
        unread=unread,
        checks=checks,
        table=summary.unit_table(rules, c, last),
        attachments=[p.name for p in paths],
    )
    paths[folder / f"{level}{title}总结{suffix}.docx"] = wordfile.summary_docx(written)
    if flat:
        paths[folder / flat] = detail.to_csv(detail.rows(rules, c.used))

    def finish() -> Made:
        if run.level != PROVINCE:
            paths.update({folder / name: data for name, data in _rollups(run, every)})
        paths[workbook] = book()
        return paths, edition, folder

    return finish


def _to_verify(
    rules: Rules, c: Consolidation, last: LastYear | None, findings: dict[str, list[tuple[str, Finding]]]
) -> tuple[dict[str, list[tuple[str, Finding]]], list[str]]:
    """The open findings with what stands out now (outliers) in place of what stood out when each form was
    checked (the peers have changed since), and the report's 需核实 lines."""
    from pipeline.consolidation import outliers

    stand_out = outliers.outliers(rules, c, last)
    for entries in findings.values():
        entries[:] = [(file, f) for file, f in entries if f.rule not in outliers.RULES]
    files = {(v.unit, v.form): v.file for v in c.used}
    for o in stand_out:  # with the unit's other open findings in the report and the workbook
        if o.finding is not None:
            findings.setdefault(o.unit, []).append((files.get((o.unit, o.form), ""), o.finding))
    explained = {(v.unit, v.form) for v in c.used if v.explained}
    checks = [
        o.line + ("(单位已在填报说明中说明)" if (o.unit, o.form) in explained else "") for o in stand_out
    ]
    return findings, checks


def _rollups(run: Run, every: Sequence[Submission]) -> Iterator[tuple[str, bytes]]:
    """The level's own forms rolled up from its units' (ZX's 附件1), each carrying what it covers: in `_meta`
    for the level above to check, and in its 填报说明."""
    from pipeline.consolidation import consolidate
    from pipeline.render import template

    rules = run.rules
    unit = rules.unit(run.level)
    for item in rules.rollup_items():
        form = rules.forms[item.form or ""]
        values = consolidate.rollup_values(rules, run.level, form.code, every, run.options.sign)
        covers = tuple(history.used_forms(every, levels.owing(rules, run.level, form.code), form.code))
        note = levels.coverage_note(rules, run.level, form.code, covers)
        explanation = rules.explanation_key(form.code)
        if note and explanation is not None:
            values[explanation] = ";".join(str(x) for x in (values.get(explanation), note) if x)
        yield template.file_name(unit, form), template.fill(rules, form, unit, values, covers)


def outputs_key(run: Run) -> str:
    """What the status files and the draft consolidation are made from, as one digest."""
    made_from = [
        VERSION,
        run.rules.sha256,
        run.ledger.generation(),
        run.as_of.isoformat(),
        run.level,
        sorted((k, str(v)) for k, v in run.options.sign.items()),
    ]
    return hashlib.sha256(repr(made_from).encode("utf-8")).hexdigest()


def unchanged_outputs(run: Run, scope: str, key: str) -> list[Path] | None:
    """The outputs of the last run when they were made from the same things and nobody has touched them."""
    recorded = run.ledger.outputs(scope)
    if recorded is None or recorded[0] != key:
        return None
    paths = []
    for rel, digest in recorded[1].items():
        path = run.outbox / rel
        if not path.is_file() or sha256_of(path) != digest:
            return None
        paths.append(path)
    return paths


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
