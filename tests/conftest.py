"""Fixtures shared by the tests: the real rules.yaml, and LibreOffice as a second spreadsheet program.

Templates must survive being opened and saved by something other than openpyxl; LibreOffice headless
stands in for the Excel, WPS and LibreOffice the units actually use. Tests that ask for
`soffice_convert` are marked `libreoffice` and are skipped when soffice is missing, except under
CI=true, where a missing soffice fails them: CI has to prove the files really open.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from pipeline import checks
from pipeline.campaign import config

RULES_PATH = Path(__file__).resolve().parent.parent / "rules.yaml"
SOFFICE_TIMEOUT = 120  # seconds for one soffice call, however many files it converts

# Short names for --convert-to filters; any other string is passed to soffice as it is. Calc has no
# "txt" export: CSV with field separator 44 (,), text delimiter 34 (") and character set 76 (UTF-8)
# is a spreadsheet's text. Only the first sheet is exported to csv and pdf.
FILTERS = {
    "csv": "csv:Text - txt - csv (StarCalc):44,34,76",
    "xlsx": "xlsx:Calc MS Excel 2007 XML",
    "xls": "xls:MS Excel 97",
    "ods": "ods:calc8",
    "pdf": "pdf:calc_pdf_Export",
}


@pytest.fixture(scope="session")
def rules_text() -> str:
    return RULES_PATH.read_text(encoding="utf-8")


@pytest.fixture(scope="session")
def rules() -> config.Rules:
    return checks.load(RULES_PATH)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "soffice_convert" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.libreoffice)


def require_program(name: str, package: str) -> str:
    """The program's path; without it the test is skipped, or fails under CI=true."""
    found = shutil.which(name)
    if found is None:
        reason = f"{name} is not on PATH; install {package} (scripts/test.sh does)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{reason}. CI=true: this test must run, not be skipped.", pytrace=False)
        pytest.skip(reason)
    return found


@pytest.fixture(scope="session")
def poppler() -> Callable[..., str]:
    """`poppler("pdftotext", pdf, "-")`: run a poppler-utils program and return its standard output."""

    def run(program: str, *args: str | Path) -> str:
        path = require_program(program, "poppler-utils")
        done = subprocess.run([path, *map(str, args)], capture_output=True, text=True, timeout=60, check=True)
        return done.stdout

    return run


Convert = Callable[..., Path | list[Path]]


@pytest.fixture(scope="session")
def soffice_convert(tmp_path_factory: pytest.TempPathFactory) -> Convert:
    """`soffice_convert(src, fmt, outdir)`: the converted file; given a list of sources, one soffice call
    converts them all and the converted files come back in the same order. `fmt` is a key of FILTERS
    or a full filter string; `outdir` must not be a source's own folder."""
    soffice = require_program("soffice", "libreoffice-calc-nogui")
    # One profile per session: parallel sessions and a desktop LibreOffice do not lock each other out.
    profile = tmp_path_factory.mktemp("soffice-profile")

    def convert(
        src: Path | Sequence[Path], fmt: str, outdir: Path, timeout: float = SOFFICE_TIMEOUT
    ) -> Path | list[Path]:
        sources = [Path(src)] if isinstance(src, str | os.PathLike) else [Path(s) for s in src]
        if not sources:
            raise ValueError("nothing to convert")
        outdir = Path(outdir)
        fmt = FILTERS.get(fmt, fmt)
        ext = fmt.split(":", 1)[0]
        targets = [outdir / f"{s.stem}.{ext}" for s in sources]
        if len(set(targets)) != len(targets):
            raise ValueError("two sources share a file stem; their conversions would overwrite each other")
        for s, t in zip(sources, targets, strict=True):
            if s.resolve() == t.resolve():
                raise ValueError(
                    f"converting {s.name} into its own folder would overwrite it; use another outdir"
                )
        outdir.mkdir(parents=True, exist_ok=True)
        for t in targets:
            t.unlink(missing_ok=True)  # so a stale file cannot pass for a fresh conversion
        command = [
            soffice,
            "--headless",
            "--norestore",
            f"-env:UserInstallation={profile.as_uri()}",
            "--convert-to",
            fmt,
            "--outdir",
            str(outdir),
            *map(str, sources),
        ]
        # soffice is a wrapper that starts soffice.bin: on timeout, end the whole process group.
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
        )
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            pytest.fail(f"soffice did not finish converting {len(sources)} file(s) to {fmt} in {timeout} s")
        missing = [t.name for t in targets if not t.is_file()]
        if process.returncode != 0 or missing:
            pytest.fail(
                f"soffice --convert-to {fmt} exited {process.returncode}; not produced: {missing}\n"
                f"stdout:\n{stdout}\nstderr:\n{stderr}"
            )
        return targets[0] if isinstance(src, str | os.PathLike) else targets

    return convert


# --- filled forms, made by the project's own template writer and filled as a person would ---------------

Key = tuple[str, str, str]


def correct_values(rules: config.Rules, form: str, unit: str, seed: int = 1) -> dict[Key, object]:
    """A form every rule accepts: the demo's figures for one unit (deterministic per seed)."""
    import datetime as dt
    import random

    from pipeline import demo

    assert rules.has_unit(unit)
    values = demo.form_values(rules, form, random.Random(seed), 1.0)
    values[("sign", "", "date")] = dt.datetime(2017, 1, 20)
    return values


@pytest.fixture
def fill(rules: config.Rules, tmp_path: Path) -> Callable[..., Path]:
    """fill(form, unit, {key: typed value}) -> path of a saved workbook.

    合计 cells keep their SUM formula (with the result Excel would cache) unless the change types
    over them, as a person does who unprotects the sheet.
    """
    from pipeline.render import template

    def make(
        form: str = "warmth",
        unit: str = "460100",
        changes: dict[Key, object] | None = None,
        name: str | None = None,
        seed: int = 1,
    ) -> Path:
        values = correct_values(rules, form, unit, seed)
        changes = changes or {}
        for key in list(values):
            if key[1] == "total" and key not in changes:
                values[key] = None  # the formula stays
        values.update(changes)
        f = rules.forms[form]
        data = template.fill(rules, f, rules.unit(unit), values)
        path = tmp_path / (name or template.file_name(rules.unit(unit), f))
        path.write_bytes(data)
        return path

    return make


def cell_of(rules: config.Rules, form: str, section: str, row: str, field: str) -> str:
    from pipeline.campaign import layout

    return layout.compute(rules.forms[form]).slot(section, row, field).cell


# --- what a user sees of a workbook ------------------------------------------------------------------------


def _rgb(color) -> str | None:
    return None if color is None else str(color.rgb)


def as_seen(data: bytes) -> dict:
    """What a user sees of a workbook, read with openpyxl: the sheets' order and states, the active one, and
    per sheet every cell's value (formula and cached result) and look, its comment and link, the merged
    cells, sizes, frozen panes, validations, protection and print settings."""
    import io

    import openpyxl
    from openpyxl.cell.cell import MergedCell

    wb = openpyxl.load_workbook(io.BytesIO(data))
    results = openpyxl.load_workbook(io.BytesIO(data), data_only=True)
    seen: dict = {
        "sheets": wb.sheetnames,
        "active": wb.active.title,
        "locked structure": wb.security is not None and bool(wb.security.lockStructure),
        "names": sorted((n, str(d.value)) for n, d in wb.defined_names.items()),
    }
    for ws in wb.worksheets:
        cells = {}
        for cell in ws._cells.values():
            if isinstance(cell, MergedCell):
                continue
            font, fill, al, border = cell.font, cell.fill, cell.alignment, cell.border
            sides = [getattr(border, s) for s in ("left", "right", "top", "bottom")]
            cells[cell.coordinate] = (
                cell.value,
                results[ws.title][cell.coordinate].value,
                cell.data_type,
                cell.number_format,
                fill.fill_type,
                _rgb(fill.fgColor),
                font.name,
                font.b,
                font.sz,
                _rgb(font.color),
                font.u,
                tuple((getattr(s, "style", None), _rgb(getattr(s, "color", None))) for s in sides),
                al.horizontal,
                al.vertical,
                al.wrap_text,
                cell.quotePrefix,
                cell.protection.locked,
                (cell.comment.text, cell.comment.author) if cell.comment else None,
                (cell.hyperlink.location, cell.hyperlink.target) if cell.hyperlink else None,
            )
        setup, margins = ws.page_setup, ws.page_margins
        seen[ws.title] = {
            "state": ws.sheet_state,
            "selected": bool(ws.sheet_view.tabSelected),
            "protected": bool(ws.protection.sheet),
            "cells": cells,
            "merged": sorted(str(r) for r in ws.merged_cells.ranges),
            "widths": {k: d.width for k, d in ws.column_dimensions.items() if d.customWidth},
            "heights": {k: d.height for k, d in ws.row_dimensions.items() if d.height is not None},
            "frozen": ws.freeze_panes,
            "validations": sorted(str(dv.sqref) for dv in ws.data_validations.dataValidation),
            "print": (
                ws.print_title_rows,
                ws.print_title_cols,
                ws.print_area,
                setup.orientation,
                setup.paperSize,
                setup.scale,
                setup.fitToWidth,
                setup.fitToHeight,
                ws.sheet_properties.pageSetUpPr.fitToPage,
                ws.print_options.horizontalCentered,
                [b.id for b in ws.col_breaks.brk],
                (margins.left, margins.right, margins.top, margins.bottom, margins.header, margins.footer),
                (ws.oddHeader.center.text, ws.oddFooter.center.text),
            ),
        }
    return seen


# --- a level's folders, run through the library's face -----------------------------------------------------


def docx_text(data: bytes) -> str:
    """A Word document's text as python-docx reads it: its paragraphs, then each table's cells row by row."""
    import io

    import docx

    document = docx.Document(io.BytesIO(data))
    lines = [p.text for p in document.paragraphs]
    for table in document.tables:
        lines += ["  ".join(cell.text for cell in row.cells) for row in table.rows]
    return "\n".join(lines)


def docx(paragraphs: list[str]) -> bytes:
    """A written report as Word saves one, reduced to what is read of it: its paragraphs' text."""
    import io
    import zipfile

    body = "".join(f"<w:p><w:r><w:t>{p}</w:t></w:r></w:p>" for p in paragraphs)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        z.writestr("[Content_Types].xml", '<?xml version="1.0"?><Types/>')
        z.writestr(
            "word/document.xml",
            '<?xml version="1.0" encoding="UTF-8"?><w:document xmlns:w="http://schemas.openxmlformats.org/'
            f'wordprocessingml/2006/main"><w:body>{body}</w:body></w:document>',
        )
    return out.getvalue()


def campaign_at(rules: config.Rules, inbox: Path, outbox: Path, state: Path, level: str = "province"):
    """The library's `Campaign` over these folders: what `pipeline run --inbox … --outbox … --state …` runs."""
    from pipeline import Campaign
    from pipeline.runs.context import Folders

    return Campaign(rules, Folders(Path(inbox), Path(outbox), Path(state)), level)


# --- real servers on 127.0.0.1 ----------------------------------------------------------------------------


@pytest.fixture
def server(rules: config.Rules) -> Iterator[Any]:
    """A real SMTP server (aiosmtpd) for one test; `server.mail` is rules.yaml's mail pointed at it."""
    from tests.smtpserver import serving

    with serving(rules.mail) as running:
        yield running


@pytest.fixture
def dovecot(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A real Dovecot IMAP server for one test, its password in the environment variable rules.yaml names."""
    from tests.dovecot import PASSWORD, PASSWORD_ENV, running

    try:
        with running() as mailbox:
            monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
            yield mailbox
    except RuntimeError as exc:
        pytest.fail(str(exc))
