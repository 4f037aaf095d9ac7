"""A finding is a value: one problem of one submission, at one cell, in Chinese.

Reports, annotated workbooks, e-mails and `--json` are all renderings of the same findings.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

ERROR = "error"
WARNING = "warning"

# Whole-file verdicts, beside the rule ids of rules.yaml.
F_UNREADABLE = "F-unreadable"
F_ENCRYPTED = "F-encrypted"
F_UNRECOGNISED = "F-unrecognised"
F_IDENTITY = "F-identity"
F_STRUCTURE = "F-structure"
F_TOO_LARGE = "F-too-large"
F_MACRO = "F-macro"  # a warning: the workbook carries VBA, which is never run
F_LINK = "F-link"  # a warning: formulas refer to other files, which are never opened

ACCEPTED = "accepted"
REJECTED = "rejected"
UNREADABLE = "unreadable"


@dataclass(frozen=True)
class Finding:
    rule: str
    severity: str
    message: str
    sheet: str = ""
    cell: str = ""
    field: str = ""  # field code, e.g. households
    row: str = ""  # row code, e.g. agri or total; "" for single values
    value: str = ""  # what the cell held, as the person typed it

    def as_json(self) -> dict[str, Any]:
        d = asdict(self)
        return {k: d[k] for k in ("rule", "severity", "sheet", "cell", "field", "row", "value", "message")}

    @property
    def is_error(self) -> bool:
        return self.severity == ERROR


def verdict(findings: list[Finding] | tuple[Finding, ...], readable: bool = True) -> str:
    if not readable:
        return UNREADABLE
    return REJECTED if any(f.is_error for f in findings) else ACCEPTED
