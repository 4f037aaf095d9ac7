"""Written reports (送温暖报告: .doc, .docx, .wps, .pdf …): only their receipt is tracked. Which files are
reports, and whose, is decided here.
"""

from __future__ import annotations

from pathlib import PurePosixPath

from pipeline.campaign.config import Rules


def is_report(rules: Rules, name: str) -> bool:
    """Whether a file is a written report (by its extension), not a form to read."""
    suffix = PurePosixPath(name.replace("\\", "/")).suffix.lower()
    return suffix in {ext for item in rules.items.values() for ext in item.extensions}


def report_item(rules: Rules) -> str | None:
    """The item that is a written report (the one without a form), if the campaign has one."""
    return next((i.code for i in rules.items.values() if i.form is None), None)


def owner(rules: Rules, name: str) -> str | None:
    """The unit whose name or alias, the longest that fits, occurs in the file name (as for a form)."""
    from pipeline.submission.read import Reader

    return Reader.of(rules).units.from_filename(name)
