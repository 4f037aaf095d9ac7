"""The values every stage shares: a finding, the states a submission and a message go through, a cell
and its A1 name, and the chain of submission types from bytes received to a verdict stored:
Read → Checked (prepared) → Report (validated) → Submission (kept by the ledger).

Nothing here reads a file or knows the campaign; the layers above import it and nothing below it.
Each state is an enum whose value is the stable code (kept in the ledger, `--json` and 报送情况.json)
and whose `label` is what a person reads.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from functools import lru_cache
from typing import Any

VERSION = "0.2.0"  # the program's; outputs made by another version are made again

Key = tuple[str, str, str]  # a value of a form: (section, row, field); row "" for a single value


class Labelled(StrEnum):
    """A state: its value is the code, `label` the Chinese a person reads (see LABELS)."""

    @property
    def label(self) -> str:
        return LABELS[self]


class Severity(Labelled):
    ERROR = "error"
    WARNING = "warning"


class Verdict(Labelled):
    """What checking one file concluded."""

    ACCEPTED = "accepted"
    REJECTED = "rejected"
    UNREADABLE = "unreadable"
    RECEIVED = "received"  # a written report: tracked for receipt only
    WRONG_LEVEL = "wrong_level"  # from a unit that reports to another level: told where, never counted here


class ItemState(Labelled):
    """Where a unit stands with one item it owes, at a moment: the review states of statistical offices."""

    PASSED = "passed"
    WARNED = "warned"  # passed with warnings the unit has not explained
    EXPLAINED = "explained"  # passed, its warnings explained in the form's 填报说明
    ACCEPTED = "accepted_by_staff"  # failed the checks, accepted by staff (`pipeline accept`)
    FAILED = "failed"
    RETURNED = "returned"  # usable, returned by staff (`pipeline return`): not counted
    MISSING = "missing"
    OVERDUE = "overdue"
    RECEIVED = "received"


class MessageStatus(Labelled):
    """An e-mail's way from written to delivered, as the ledger records it."""

    PENDING = "pending"
    WRITTEN = "written"
    SENDING = "sending"
    SENT = "sent"
    TEMPFAIL = "tempfail"  # nothing was delivered: tried again on the next run
    REFUSED = "refused"  # the server said no for good (5xx): not tried again
    UNKNOWN = "unknown"  # the connection died after the whole message went: may have been delivered


LABELS: dict[Labelled, str] = {
    Severity.ERROR: "错误",
    Severity.WARNING: "提醒",
    Verdict.ACCEPTED: "通过",
    Verdict.REJECTED: "未通过",
    Verdict.UNREADABLE: "无法读取",
    Verdict.RECEIVED: "已收到",
    Verdict.WRONG_LEVEL: "报送对象有误",
    ItemState.PASSED: "通过",
    ItemState.WARNED: "通过(有提醒)",
    ItemState.EXPLAINED: "已说明",
    ItemState.ACCEPTED: "省总接受",
    ItemState.FAILED: "未通过",
    ItemState.RETURNED: "退回",
    ItemState.MISSING: "未报送",
    ItemState.OVERDUE: "逾期",
    ItemState.RECEIVED: "已收到",
    MessageStatus.PENDING: "待写出",
    MessageStatus.WRITTEN: "已写成 .eml",
    MessageStatus.SENDING: "发送中",
    MessageStatus.SENT: "已发送",
    MessageStatus.TEMPFAIL: "暂时失败(下次重试)",
    MessageStatus.REFUSED: "被拒收",
    MessageStatus.UNKNOWN: "送达不明",
}


class Refused(Exception):
    """A command that cannot go on as asked; the message, in Chinese, says why and what to do. Shown to
    staff as it is, without a traceback."""


# Whole-file findings, beside the rule ids of rules.yaml.
F_UNREADABLE = "F-unreadable"
F_ENCRYPTED = "F-encrypted"
F_UNRECOGNISED = "F-unrecognised"
F_IDENTITY = "F-identity"
F_STRUCTURE = "F-structure"
F_TOO_LARGE = "F-too-large"
F_MACRO = "F-macro"  # a warning: the workbook carries VBA, which is never run
F_LINK = "F-link"  # a warning: formulas refer to other files, which are never opened
F_LEVEL = "F-level"  # the file reached a level its unit does not report to
F_ROLLUP = "F-rollup"  # a roll-up form covers fewer units than report to it, or others


# --- cells and their names ------------------------------------------------------------------------------


def column_letters(n: int) -> str:
    """Column letters of a 1-based column number (1 → A, 28 → AB)."""
    letters = ""
    while n:
        n, rest = divmod(n - 1, 26)
        letters = chr(65 + rest) + letters
    return letters


@lru_cache(maxsize=4096)  # the same few hundred cells in every form
def cell_name(row: int, col: int) -> str:
    """The A1 name of a 0-based (row, column) position."""
    return f"{column_letters(col + 1)}{row + 1}"


# One plain e-mail address (what a header, an envelope or rules.yaml may carry): nothing that could end an
# SMTP command or name a second address.
EMAIL_ADDRESS = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+@(?:[A-Za-z0-9-]+\.)+[A-Za-z0-9-]+")


_A1 = re.compile(r"\$?([A-Za-z]{1,3})\$?(\d{1,7})")


@lru_cache(maxsize=4096)
def cell_position(address: str) -> tuple[int, int]:
    """The 0-based (row, column) of an A1 name such as B7 or $B$7; ValueError for anything else."""
    m = _A1.fullmatch(address.strip())
    if not m:
        raise ValueError(f"not an A1 address: {address!r}")
    col = 0
    for ch in m.group(1).upper():
        col = col * 26 + ord(ch) - 64
    return int(m.group(2)) - 1, col - 1


def cell_order(address: str) -> tuple[int, int]:
    """A cell's place in reading order (row, then column); (-1, -1) for a blank or odd name."""
    try:
        return cell_position(address)
    except ValueError:
        return -1, -1


@dataclass(frozen=True)
class Cell:
    sheet: str
    address: str  # A1
    raw: object  # value exactly as read: None, str, int, float, bool, datetime/date/time
    formula_without_value: bool = False  # an xlsx formula cell that has no cached value
    formula: str = ""  # the formula text when the file records one (xlsx/xlsm only; "" for shared copies)


# --- findings -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Finding:
    """One problem of one submission, at one cell, in Chinese. Reports, annotated workbooks, e-mails and
    `--json` are all renderings of findings."""

    rule: str
    severity: Severity
    message: str
    sheet: str = ""
    cell: str = ""
    field: str = ""  # field code, e.g. households
    row: str = ""  # row code, e.g. agri or total; "" for single values
    value: str = ""  # what the cell held, as the person typed it
    # What to type instead, cell by cell of `sheet` (A1, text as it is to be typed): the hint of the message
    # in a form a program can follow. Empty when no value can be told (which of two figures is wrong?).
    suggested: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if type(self.severity) is not Severity:  # read back from JSON, or written as "error"
            object.__setattr__(self, "severity", Severity(self.severity))
        if not isinstance(self.suggested, tuple):  # read back from JSON as {cell: value}
            pairs = self.suggested.items() if isinstance(self.suggested, Mapping) else self.suggested
            object.__setattr__(self, "suggested", tuple((str(c), str(v)) for c, v in pairs))

    def as_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["severity"] = str(self.severity)
        d["suggested"] = dict(self.suggested)
        keys = ("rule", "severity", "sheet", "cell", "field", "row", "value", "message", "suggested")
        return {k: d[k] for k in keys}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Finding:
        return cls(**{**data, "severity": Severity(data["severity"])})

    @property
    def is_error(self) -> bool:
        return self.severity is Severity.ERROR

    @property
    def place(self) -> str:
        """Where a person finds it: 送温暖统计表!I18, the sheet alone, or the whole file."""
        if self.cell:
            return f"{self.sheet}!{self.cell}" if self.sheet else self.cell
        return self.sheet or "整个文件"

    @property
    def order(self) -> tuple[str, int, int]:
        """Sheet, row, column: the order findings are shown in everywhere."""
        return (self.sheet, *cell_order(self.cell))


def in_order(findings: Any) -> list[Finding]:
    """Findings sorted by sheet, row and column, file-level ones first; errors before warnings at one cell."""
    return sorted(findings, key=lambda f: (f.order, not f.is_error, f.rule, f.message))


def verdict_of(findings: Any, readable: bool = True) -> Verdict:
    if not readable:
        return Verdict.UNREADABLE
    return Verdict.REJECTED if any(f.is_error for f in findings) else Verdict.ACCEPTED


# --- the chain of a submission ------------------------------------------------------------------------


@dataclass
class Read:
    """What reading one file found: its form and unit, and the raw cells of the form by key."""

    file: str  # display name (the file name)
    form: str | None  # form code, or None if not recognised
    unit: str | None  # unit code, or None
    cells: Mapping[Key, Cell]
    findings: list[Finding]  # file-level findings and structure warnings found while reading
    readable: bool = True  # False when the file could not be read at all (verdict unreadable)
    identity_source: str = ""  # where the unit was found: "_meta" / "title" / "filename"
    covers: tuple[str, ...] | None = None  # a roll-up form: the codes of the units it sums (from `_meta`)


@dataclass
class Checked:
    """A read form prepared for validation: its normalised values, and the findings of reading and
    normalising (pipeline.checks.prepare). Validation reads it and adds its findings in a Report."""

    read: Read
    values: dict[Key, Any] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)
    normalised: bool = False  # its values are complete and go on to the schema

    @property
    def verdict(self) -> Verdict:
        return verdict_of(self.findings, self.read.readable)


@dataclass(frozen=True)
class Report:
    """What validation concluded about one prepared form: every finding (reading and normalising ones
    first) and the verdict they give. The form it is about is left as it was."""

    checked: Checked
    findings: tuple[Finding, ...]

    @property
    def read(self) -> Read:
        return self.checked.read

    @property
    def values(self) -> dict[Key, Any]:
        return self.checked.values

    @property
    def verdict(self) -> Verdict:
        return verdict_of(self.findings, self.read.readable)


ACCEPT, RETURN = "accept", "return"  # what staff may decide about a unit's version


@dataclass(frozen=True)
class Review:
    """Staff's decision on one version: accepted despite its errors, or returned although it passed; who
    decided, when and why. A later version from the unit is not covered by it."""

    action: str  # ACCEPT / RETURN
    reason: str
    by: str
    at: dt.datetime

    @property
    def label(self) -> str:
        return ItemState.ACCEPTED.label if self.action == ACCEPT else ItemState.RETURNED.label


@dataclass(frozen=True)
class Submission:
    """A file as the ledger keeps it, once checked: who sent which item, its version and verdict."""

    sha256: str  # its bytes
    unit: str  # "" when not recognised, as item and form
    item: str
    form: str
    file: str  # the name it first came under
    received: dt.datetime  # when it reached the inbox
    version: int  # among the unit's versions of the item, by time received (0 until checked)
    verdict: Verdict | None  # None until checked
    findings: tuple[Finding, ...] = ()
    values: Mapping[Key, Any] = field(default_factory=dict, compare=False)  # normalised, of a form read whole
    explained: bool = False  # the unit filled the form's explanation field: its warnings count as explained
    explanation: str = ""  # what it wrote there
    kind: str = ""  # form / report / unknown
    path: str = ""  # where in the inbox
    size: int = 0
    first_seen: dt.datetime | None = None  # when a run first saw it
    id: str = ""  # the event: its sha256, or sha256#n when the same bytes came back later as a new version
    held: str = ""  # why it is not counted yet (待确认: mailed from an address not on file for its unit)
    review: Review | None = None  # staff's decision on this version, if any

    def __post_init__(self) -> None:
        if not self.id:
            object.__setattr__(self, "id", self.sha256)

    @property
    def errors(self) -> int:
        return sum(f.is_error for f in self.findings)

    @property
    def warnings(self) -> int:
        return sum(not f.is_error for f in self.findings)
