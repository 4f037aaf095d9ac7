"""Intake of `pipeline check`: one file's bytes become the raw values of one form's cells, with its form
and unit; normalize and the checks come after.

The steps, each in its own module: `sniff` (what the bytes are), `workbook` (the sheets through calamine,
the hidden `_meta`, formulas without results), `identify` (which form, which unit), `locate` (where each
value is, by the template or by its labels). A `Reader` holds what one campaign's rules give every file
(the form plans, the unit index, the `_meta` maps seen), so it is prepared once per process.
"""

from __future__ import annotations

import functools
import logging
import pickle
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from pipeline.campaign.config import Limits, Rules
from pipeline.model import (
    F_UNREADABLE,
    F_UNRECOGNISED,
    Cell,
    Finding,
    Key,
    Read,
    Severity,
    cell_name,
)
from pipeline.submission import identify
from pipeline.submission.identify import UnitIndex
from pipeline.submission.locate import FormPlan, Placement, find_sheet, locate
from pipeline.submission.refusal import Refusal, refused, too_large
from pipeline.submission.sniff import sniff
from pipeline.submission.workbook import (
    FEEDBACK_SHEET,
    META_SHEET,
    Book,
    Formula,
    Grid,
    Meta,
    Pos,
    TemplateMaps,
    at,
    formula_cells,
    formula_results,
)

__all__ = [
    "DEFAULT_LIMITS",
    "FEEDBACK_SHEET",
    "Formula",
    "Packed",
    "Reader",
    "formula_results",
    "read_path",
    "read_submission",
]

log = logging.getLogger(__name__)

# The limits themselves are set in rules.yaml (`limits:`, config.Limits); these are its defaults, for code
# that has no rules at hand.
DEFAULT_LIMITS = Limits()


def read_path(path: Path, rules: Rules, name: str | None = None) -> Read:
    """Read the file at `path`; `name` is its name as messages show it (default: the path's own)."""
    name = path.name if name is None else name
    limit = rules.limits.max_bytes
    try:
        with path.open("rb") as fh:
            data = fh.read(limit + 1)  # a huge file is refused without holding all of it
            if len(data) > limit:
                return refused(name, too_large(path.stat().st_size, rules.limits))
    except OSError as exc:
        # A file still being copied or removed meanwhile: a verdict for it, and the batch goes on.
        log.info("cannot open %s: %r", path, exc)
        return refused(
            name, Finding(F_UNREADABLE, Severity.ERROR, "文件无法打开(可能已被移走、没有权限或仍在复制中)")
        )
    return read_submission(data, name, rules)


def read_submission(data: bytes, name: str, rules: Rules) -> Read:
    """Read one file; every problem becomes a finding, never an exception."""
    return Reader.of(rules).read(data, name)


class Reader:
    """What reading needs from one campaign, prepared once and kept for every file it reads: each form's
    plan (its values and their labels), the unit index, and the `_meta` maps and placements of the
    templates seen so far (the same in every copy of a template)."""

    def __init__(self, rules: Rules):
        self.rules = rules
        self.forms = {code: FormPlan.of(form) for code, form in rules.forms.items()}
        self.titles = {code: plan.title for code, plan in self.forms.items()}
        self.units = UnitIndex.of(rules)
        self.templates = TemplateMaps()
        self._placements: dict[tuple[str, tuple[str, str, str] | None], Placement] = {}

    @staticmethod
    @functools.lru_cache(maxsize=4)  # Rules hash by identity: one reader per loaded campaign
    def of(rules: Rules) -> Reader:
        return Reader(rules)

    def read(self, data: bytes, name: str) -> Read:
        """Read one file; every problem becomes a finding, never an exception."""
        try:
            return self._read(data, name)
        except Refusal as r:
            return refused(name, r.finding)
        except MemoryError:
            raise  # the worker's limit turns it into F-too-large
        except Exception:
            # A fault of this program must not stop the batch; the log keeps the traceback for staff.
            log.exception("reading %s failed", name)
            return refused(
                name,
                Finding(
                    F_UNREADABLE,
                    Severity.ERROR,
                    "读取本文件时程序出错(已记录,将由省总工作人员处理),暂无法给出结论",
                ),
            )

    def _read(self, data: bytes, name: str) -> Read:
        sniffed = sniff(data, name, self.rules.limits)
        findings = sniffed.findings()
        book = Book(data)
        meta = None
        if META_SHEET in book.names:
            meta = self.templates.meta_of(book, sniffed.package if sniffed.format == "xlsx" else None)
        titled = identify.titled_sheets(book, self.titles)
        form = identify.form_of(meta, titled, book, self.rules, name)
        if form is None:
            findings.append(
                Finding(F_UNRECOGNISED, Severity.ERROR, identify.unrecognised(book, self.rules, name))
            )
            unit = self.units.from_filename(name)
            return Read(name, None, unit, {}, findings, identity_source="filename" if unit else "")
        findings += identify.other_forms(self.rules, form, titled)

        plan = self.forms[form]
        place = self._placement(plan, meta if meta is not None and meta.form == form else None)
        sheet, problems = find_sheet(book, plan, place.sheet, titled)
        findings += problems
        who = identify.identify_unit(meta, book.grid(sheet) if sheet else None, name, self.units)
        findings += who.findings
        if sheet is None:
            return Read(name, form, who.unit, {}, findings, identity_source=who.source)

        found, problems = locate(plan, book.grid(sheet), sheet, place)
        findings += problems
        xlsx = sniffed.package if sniffed.format == "xlsx" else None
        formulas = formula_cells(xlsx, sheet) if xlsx is not None else {}
        cells = _cells(found, book.grid(sheet), sheet, formulas)
        covers = tuple(meta.covers.split()) if meta is not None and meta.covers else None
        return Read(name, form, who.unit, cells, findings, identity_source=who.source, covers=covers)

    def _placement(self, plan: FormPlan, meta: Meta | None) -> Placement:
        """Where `plan`'s cells should be: by the file's `_meta` map, else by the layout. The copies of one
        template share their map, and so this, computed once for all of them."""
        if meta is not None and meta.cells is not self.templates.known(meta.template):
            return Placement.of(plan, meta.cells)  # a map read from this file alone
        key = (plan.form.code, meta.template if meta is not None else None)
        if key not in self._placements:
            if len(self._placements) >= TemplateMaps.LIMIT:
                self._placements.clear()
            self._placements[key] = Placement.of(plan, meta.cells if meta is not None else None)
        return self._placements[key]


def _cells(found: dict[Key, Pos], grid: Grid, sheet: str, formulas: dict[str, Formula]) -> dict[Key, Cell]:
    """The raw value of each located key, and whether it is a formula the file has no result for."""
    cells = {}
    for key, pos in found.items():
        address = cell_name(*pos)
        formula = formulas.get(address)
        cells[key] = Cell(
            sheet=sheet,
            address=address,
            raw=at(grid, pos),
            formula_without_value=formula is not None and not formula.value,
            formula=formula.text if formula else "",
        )
    return cells


class Packed(Mapping[Key, Cell]):
    """A form's cells as they travel from the child that read them: pickled there as one string, unpacked
    here only when a finding needs a cell's place or text. Most forms have none, and unpickling a hundred
    cells each was the parent's largest share of the reading (6,000 forms at national scale)."""

    def __init__(self, cells: Mapping[Key, Cell], packed: bytes | None = None):
        self._cells = cells
        self._packed = packed

    def __reduce__(self) -> tuple[Any, ...]:
        packed = self._packed if self._packed is not None else pickle.dumps(dict(self._cells), protocol=5)
        return Packed, ({}, packed)

    def _unpacked(self) -> Mapping[Key, Cell]:
        if self._packed is not None:
            self._cells, self._packed = pickle.loads(self._packed), None
        return self._cells

    def __getitem__(self, key: Key) -> Cell:
        return self._unpacked()[key]

    def __iter__(self) -> Iterator[Key]:
        return iter(self._unpacked())

    def __len__(self) -> int:
        return len(self._unpacked())
