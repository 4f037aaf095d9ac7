"""The check step of a run: every file taken in and not yet checked gets its verdict in the ledger.

Forms are read and normalised by the limited workers (many of them already while intake kept them);
all forms of the batch then go through the schema together, with a unit's other form from the ledger for
the rules across forms. Written reports are only attributed to their unit.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from pipeline.consolidation import history, levels
from pipeline.model import F_UNRECOGNISED, Checked, Finding, Read, Report, Severity, Submission, Verdict
from pipeline.runs import overlap, senders, tasks
from pipeline.runs.context import Run
from pipeline.submission import refusal, reports


def check_pending(
    run: Run, early: Mapping[tuple[str, str], Checked] | None = None, read: Any = None
) -> Counter[str]:
    """Check every submission without a verdict; `early`: forms already read and normalised, by (sha256,
    file name); `read()` is called once the workers have read the forms, before validating here."""
    rules, ledger = run.rules, run.ledger
    pending = ledger.unchecked()
    if not pending:
        return Counter()
    loading = overlap.import_meanwhile("pipeline.checks.validate")
    early = early or {}
    written = [sub for sub in pending if reports.is_report(rules, sub.file)]
    texts = ledger.kept_bytes([sub.sha256 for sub in written])
    results = [(sub.id, _report_fields(run, sub, texts.get(sub.sha256))) for sub in written]
    forms = [sub for sub in pending if not reports.is_report(rules, sub.file)]
    todo = [sub for sub in forms if (sub.sha256, sub.file) not in early]
    kept = ledger.kept_bytes([sub.sha256 for sub in todo])
    results += [(sub.id, _too_large(run, sub)) for sub in todo if sub.sha256 not in kept]
    forms = [sub for sub in forms if (sub.sha256, sub.file) in early or sub.sha256 in kept]
    today = run.as_of.date()
    fresh = iter(
        run.workers().map(
            tasks.check_file,
            [tasks.FileToCheck(kept[sub.sha256], sub.file, today) for sub in todo if sub.sha256 in kept],
            tasks.unchecked(rules.limits),
        )
    )
    prepared = [early.get((sub.sha256, sub.file)) or next(fresh) for sub in forms]
    run.workers().warm(
        tasks.load_for_annotating
    )  # the workers would otherwise sit idle until copies to mark come
    if read:
        read()
    loading.join()
    from pipeline.checks import validate

    overlap.set_aside()
    companions = _companions(run, [c.read for c in prepared], {s.id for s in pending})
    validated = validate.validate(prepared + companions, rules)[: len(prepared)]
    for sub, report in zip(forms, validated, strict=True):
        results.append((sub.id, _form_fields(run, report)))
    _against_others(run, {sub.id: sub for sub in forms}, results)
    senders.hold_unconfirmed(run, pending, results)  # recorded with the verdicts: never counted meanwhile
    ledger.record_checks(results)
    return Counter(fields["verdict"] for _, fields in results)


def _against_others(
    run: Run, new: Mapping[str, Submission], results: list[tuple[str, dict[str, Any]]]
) -> None:
    """The cross-unit step: each newly accepted form's figures that stand out from the other units' latest
    accepted ones, or from the unit's own last year (consolidation/outliers.py), join its findings as
    warnings, so that its feedback tells it and it may explain them in its 填报说明."""
    plan = run.rules.consolidation.review
    if not (plan.outliers.ratios or (plan.previous and plan.outliers.compare)):
        return
    before = history.checked_by(run.ledger.submissions(), run.as_of)
    # The batch's versions rank after every version already in the ledger: they are each unit's latest.
    after = max((v.version for v in before), default=0) + 1
    accepted = {
        sub_id: replace(
            new[sub_id],
            unit=f["unit"],
            item=f["item"],
            form=f["form"],
            verdict=Verdict.ACCEPTED,
            values=f["values"],
            version=after,
        )
        for sub_id, f in results
        if sub_id in new and f["verdict"] == Verdict.ACCEPTED and f["unit"] and f["form"]
    }
    if not accepted:
        return
    from pipeline.consolidation import consolidate, outliers
    from pipeline.io import previous

    every = [*before, *accepted.values()]
    c = consolidate.consolidate(run.rules, every, run.rules.children(run.level))
    flagged = outliers.by_unit(outliers.outliers(run.rules, c, previous.read(run.rules)[0]))
    for sub_id, fields in results:
        mine = accepted.get(sub_id)
        if mine is not None and mine.unit in flagged:
            sheet = run.rules.forms[mine.form].sheet
            fields["findings"] = [*fields["findings"], *(f for f in flagged[mine.unit] if f.sheet == sheet)]


def _report_fields(run: Run, sub: Submission, data: bytes | None) -> dict[str, Any]:
    """A written report is only recorded as received, from the unit its file name (or its title) names;
    an empty or broken one as unreadable, with the reason. `data`: None when over the size limit."""
    item = reports.report_item(run.rules)
    if data is None:
        seen = reports.Examined(
            reports.owner(run.rules, sub.file), refusal.too_large(sub.size, run.rules.limits)
        )
    else:
        seen = reports.examine(run.rules, sub.file, data, run.rules.limits.max_bytes)
    if seen.unit and item:
        if seen.unreadable is not None:
            findings = [seen.unreadable]
            return dict(
                kind="report",
                unit=seen.unit,
                item=item,
                form=None,
                verdict=Verdict.UNREADABLE,
                findings=findings,
            )
        return dict(
            kind="report", unit=seen.unit, item=item, form=None, verdict=Verdict.RECEIVED, findings=[]
        )
    finding = seen.unreadable or Finding(
        F_UNRECOGNISED,
        Severity.ERROR,
        f"无法从文件名“{sub.file}”或报告标题识别报送单位:请在文件名中写明单位名称,如“海口市总工会送温暖报告.docx”",
    )
    return dict(
        kind="report", unit=None, item=None, form=None, verdict=Verdict.UNREADABLE, findings=[finding]
    )


def _too_large(run: Run, sub: Submission) -> dict[str, Any]:
    finding = refusal.too_large(sub.size, run.rules.limits)
    return dict(
        kind="unknown", unit=None, item=None, form=None, verdict=Verdict.UNREADABLE, findings=[finding]
    )


def _form_fields(run: Run, c: Report) -> dict[str, Any]:
    rules, read = run.rules, c.read
    c = levels.with_rollup(rules, c)
    findings, verdict = list(c.findings), c.verdict
    stray = levels.wrong_level(rules, read.unit, run.level)
    if stray is not None:  # its own verdict: neither passed nor failed here, and never counted
        findings, verdict = [stray, *findings], Verdict.WRONG_LEVEL
    explanation = rules.explanation_key(read.form) if read.form else None
    note = c.values.get(explanation) if explanation else None
    return dict(
        kind="form" if read.form else "unknown",
        unit=read.unit,
        item=rules.item_for_form(read.form).code if read.form else None,
        form=read.form,
        verdict=verdict,
        findings=findings,
        values=c.values if verdict == Verdict.ACCEPTED or _whole(c, verdict) else {},
        explained=bool(note and str(note).strip()),
        explanation=str(note).strip() if note else "",
    )


def _whole(c: Report, verdict: Verdict) -> bool:
    """Whether a failed form was read whole, so that staff may accept it despite its errors (`pipeline
    accept`): its figures are kept then, a number the checks could not use as blank."""
    return verdict == Verdict.REJECTED and c.checked.normalised


def _companions(run: Run, reads: Sequence[Read], new: set[str]) -> list[Checked]:
    """For rules across forms: the unit's other form already in the ledger, read again to check against.
    Archived bytes are as untrusted as new ones, so they are read by the workers too."""
    rules, ledger = run.rules, run.ledger
    from pipeline.checks import Ruleset

    cross = {form.code for rule in Ruleset.of(rules).across_forms for form in rule.forms}
    arriving = {(r.unit, r.form) for r in reads}
    wanted = [
        (unit, other)
        for unit, form in sorted((u, f) for u, f in arriving if u and f and f in cross)
        for other in sorted(cross - {form})
        if (unit, other) not in arriving
    ]
    if not wanted:
        return []
    latest = history.latest(ledger.submissions(values=False))
    found = [
        last
        for unit, other in wanted
        if (last := latest.get((unit, rules.item_for_form(other).code))) is not None and last.id not in new
    ]
    kept = ledger.kept_bytes([sub.sha256 for sub in found])
    today = run.as_of.date()
    items = [tasks.FileToCheck(kept[sub.sha256], sub.file, today) for sub in found if sub.sha256 in kept]
    return run.workers().map(tasks.check_file, items, tasks.unchecked(rules.limits))
