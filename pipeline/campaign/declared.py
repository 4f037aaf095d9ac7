"""What rules.yaml declares, part by part: the campaign, its items, units, forms (sections, rows, fields),
rules, mail and limits, as typed frozen objects. `config.Rules` holds them together; `config.load` makes them."""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from pipeline.model import Severity

if TYPE_CHECKING:
    from pipeline.campaign.layout import Layout
    from pipeline.campaign.node import Node

PROVINCE = "province"  # the top level: units that report to it name it in reports_to


@dataclass(frozen=True)
class Campaign:
    id: str
    title: str
    issuer: str
    department: str
    document_number: str
    issue_date: dt.date
    statistics_year: int
    deadline: dt.datetime  # aware, in `timezone`
    timezone: str
    contact_phone: str

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


@dataclass(frozen=True)
class Item:
    code: str
    label: str
    form: str | None  # the form this item is, or None for a written report tracked for receipt only
    extensions: tuple[str, ...] = ()
    rollup: bool = False  # a unit with units below it makes this form by summing theirs (ZX's 附件1)


@dataclass(frozen=True)
class Unit:
    code: str
    name: str
    kind: str
    reports_to: str  # PROVINCE or a unit code
    items: tuple[str, ...]
    email: str
    aliases: tuple[str, ...]
    mailbox: str = ""  # where the units below it send their forms, if not `email`

    def owes(self, item: str) -> bool:
        return item in self.items


@dataclass(frozen=True)
class Field:
    code: str
    label: str
    type: str
    unit: str = ""
    required: bool = True
    min: float | None = None
    max: float | None = None
    group: str = ""
    wide: bool = False
    explains: bool = False  # filled in, it explains the unit's warnings (填报说明)

    @property
    def numeric(self) -> bool:
        return self.type in ("count", "money")

    @property
    def caption(self) -> str:
        """The column header a person reads: label and unit of measure, as in 慰问困难职工(户)."""
        return f"{self.label}({self.unit})" if self.unit else self.label

    @property
    def header(self) -> str:
        """The caption as drawn in a narrow header cell, the unit on its own line."""
        return f"{self.label}\n({self.unit})" if self.unit else self.label


@dataclass(frozen=True)
class Row:
    code: str
    label: str
    total: bool = False


@dataclass(frozen=True)
class Section:
    code: str
    title: str
    fields: tuple[Field, ...]
    rows: tuple[Row, ...] = ()  # empty for a section of single values
    row_header: str = ""
    value_label: str = ""
    footer: bool = False

    @property
    def tabular(self) -> bool:
        return bool(self.rows)

    @property
    def total_row(self) -> Row | None:
        return next((r for r in self.rows if r.total), None)

    @property
    def detail_rows(self) -> tuple[Row, ...]:
        return tuple(r for r in self.rows if not r.total)

    def field(self, code: str) -> Field:
        return next(f for f in self.fields if f.code == code)


@dataclass(frozen=True)
class Form:
    code: str
    attachment: str
    title: str
    sheet: str
    version: str
    sections: tuple[Section, ...]
    notes: tuple[str, ...] = ()

    def section(self, code: str) -> Section:
        return next(s for s in self.sections if s.code == code)

    @functools.cached_property
    def layout(self) -> Layout:
        """Where each value sits in the form's template (see campaign/layout.py), worked out once."""
        from pipeline.campaign.layout import lay_out

        return lay_out(self)

    def slots(self) -> Iterator[tuple[Section, Row | None, Field]]:
        """Every value of the form in reading order: (section, row or None, field)."""
        for section in self.sections:
            if section.tabular:
                for row in section.rows:
                    for f in section.fields:
                        yield section, row, f
            else:
                for f in section.fields:
                    yield section, None, f


@dataclass(frozen=True)
class Rule:
    """What every rule of rules.yaml declares, whatever its kind. The kind's own keys (`places`, `section`,
    `check` …) are parsed by pipeline.checks from `node`, which keeps the YAML path for its complaints."""

    id: str
    severity: Severity
    kind: str
    message: str
    forms: tuple[str, ...]  # empty: applies to every form
    index: int = 0  # position in rules.yaml
    node: Node | None = field(default=None, compare=False, repr=False)  # the rule as written, at rules[index]

    @property
    def path(self) -> str:
        return self.node.path if self.node is not None else ""


@dataclass(frozen=True)
class Mail:
    sender: str
    reply_to: str
    smtp_host: str
    smtp_port: int
    tls: str
    username: str
    password_env: str
    send_seconds: float = 300  # all sending of one run ends by then; what is left goes on the next run
    # The campaign mailbox units send their files to, read over IMAP (never changed there): no host, no mailbox.
    imap_host: str = ""
    imap_port: int = 993
    imap_tls: str = "ssl"
    imap_user: str = ""
    imap_password_env: str = ""
    imap_folder: str = "INBOX"

    @property
    def reply_to_address(self) -> str:
        """The address alone of `reply_to` (which may carry a display name)."""
        from email.utils import parseaddr

        return parseaddr(self.reply_to)[1] or self.reply_to


@dataclass(frozen=True)
class Limits:
    """How much an untrusted file may cost before it is refused (F-too-large); `limits:` in rules.yaml."""

    max_file_mb: float = 20  # a filled form is tens of KB; a file a thousand times that is not one
    max_unzipped_mb: float = 200  # what the parts of an .xlsx may add up to once decompressed
    max_ratio: float = 100  # real workbooks compress 5-20 times; zip bombs a thousand and more
    worker_memory_mb: int = 1024  # address space of the child process that parses one file
    worker_seconds: float = 20  # wall time for one file in that child

    @property
    def max_bytes(self) -> int:
        return int(self.max_file_mb * 2**20)

    @property
    def max_unzipped(self) -> int:
        return int(self.max_unzipped_mb * 2**20)
