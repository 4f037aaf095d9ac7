"""What the limited worker processes do (see pipeline.io.workers): read and normalise a file, mark a unit's
workbook and write the e-mail that carries it. Each function takes and returns plain values, so that it
can be sent to a worker; `setup` loads the campaign there once.

The fallbacks say what an item gets when its worker gave up on it (too much memory or time, a crash);
they run in the calling process.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.campaign.config import Limits, Rules, Unit
from pipeline.io.workers import GaveUp, Pool
from pipeline.model import Checked, Finding, Read

_RULES: list[Rules] = []  # the campaign, in a worker: loaded once by `setup`


def setup(rules_path: str) -> None:
    from pipeline import checks

    _RULES[:] = [checks.load(rules_path)]


def _rules() -> Rules:
    return _RULES[0]


def pool(rules: Rules) -> Pool:
    """The workers for one campaign, with the limits its rules.yaml sets."""
    limits = rules.limits
    return Pool(
        setup,
        (str(Path(rules.source).resolve()),),
        memory_mb=limits.worker_memory_mb,
        seconds=limits.worker_seconds,
    )


# --- reading ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FileToCheck:
    data: bytes
    name: str
    today: dt.date


def check_file(item: FileToCheck) -> Checked:
    """One file read and normalised: all the per-file work, so that the parent only runs the schema."""
    from pipeline import checks
    from pipeline.submission import read

    rules = _rules()
    checked = checks.prepare(read.read_submission(item.data, item.name, rules), rules, item.today)
    checked.read.cells = read.Packed(checked.read.cells)  # see Packed
    return checked


def read_file(item: FileToCheck) -> Read:
    from pipeline.submission import read

    return read.read_submission(item.data, item.name, _rules())


def exhausted(limits: Limits, name: str) -> Read:
    """A file its worker gave up on: the one verdict for it, the batch goes on."""
    from pipeline.submission import refusal

    return refusal.refused(name, refusal.over_limits(limits.worker_memory_mb, limits.worker_seconds))


def unchecked(limits: Limits) -> Any:
    """The fallback of `check_file` for `limits`."""

    def fallback(item: FileToCheck, why: GaveUp) -> Checked:
        read = exhausted(limits, item.name)
        return Checked(read, findings=list(read.findings))

    return fallback


def unread(limits: Limits) -> Any:
    """The fallback of `read_file` for `limits`."""

    def fallback(item: FileToCheck, why: GaveUp) -> Read:
        return exhausted(limits, item.name)

    return fallback


# --- marking and writing to the unit ----------------------------------------------------------------------


@dataclass(frozen=True)
class Letter:
    """A unit's annotated copy to make, and the e-mail that carries it (the arguments of
    `letters.feedback_message` but the attachment, which is named `attachment_name`)."""

    data: bytes
    file: str
    findings: Sequence[Finding]
    unit: Unit
    title: str
    letter: dict[str, Any] | None = None


def annotate_file(job: Letter) -> tuple[bytes, bytes, str] | bytes:
    """The unit's workbook marked with its findings; with a letter, also the e-mail's bytes and subject,
    per file too and so written here, on both cores, not by the parent."""
    from pipeline.render import annotate

    rules = _rules()
    marked = annotate.annotated_workbook(
        job.data, job.file, job.findings, unit_name=job.unit.name, title=job.title, limits=rules.limits
    )
    if job.letter is None:
        return marked
    from pipeline.render import letters

    return (marked, *letters.feedback_eml(rules, {**job.letter, "unit": job.unit}, marked))


def listed_only(job: Letter, why: GaveUp) -> bytes:
    """The fallback of `annotate_file`: a workbook that exhausts a worker gets a copy listing its findings
    (made here) and its e-mail is written by the caller."""
    from pipeline.render import annotate

    return annotate.findings_only(job.file, job.findings, unit_name=job.unit.name, title=job.title)


def receipt_eml(letter: dict[str, Any]) -> tuple[bytes, str]:
    """A 回执's .eml bytes and subject (`letters.receipt_message`'s arguments): thousands of them at national
    scale, each mostly the standard library's header folding, so written on both cores, not by the parent."""
    from pipeline.render import letters

    message = letters.receipt_message(_rules(), **letter)
    return letters.write_eml(message), str(message["Subject"])


def receipt_here(rules: Rules) -> Any:
    """The fallback of `receipt_eml`: a worker that gave up (it never should on so short a message) has the
    receipt written by the caller."""

    def fallback(letter: dict[str, Any], why: GaveUp) -> tuple[bytes, str]:
        from pipeline.render import letters

        message = letters.receipt_message(rules, **letter)
        return letters.write_eml(message), str(message["Subject"])

    return fallback


def load_for_annotating() -> None:
    """What annotating needs, loaded before the first copy is asked for: openpyxl, jinja2 and the e-mail
    package with the templates compiled (the first unit's copy would otherwise wait for them)."""
    from pipeline.render import annotate, env, letters  # noqa: F401

    for name in letters.FEEDBACK_TEMPLATES:
        env.environment().get_template(name)
