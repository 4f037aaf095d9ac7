"""Hostile and broken input: every file gets a verdict in Chinese, in bounded time, and the batch goes on."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import functools
import io
import os
import re
import socket
import subprocess
import sys
import time
import unicodedata
import zipfile
from collections.abc import Callable
from pathlib import Path

import openpyxl
import pytest
import yaml

from pipeline import checks, demo
from pipeline.campaign import config
from pipeline.io import ledger
from pipeline.io import outbox as names
from pipeline.io.workers import Pool
from pipeline.model import F_LINK, F_MACRO, F_TOO_LARGE, Severity, Verdict
from pipeline.runs import check, tasks
from pipeline.submission import read
from tests.conftest import campaign_at, cell_of

ROOT = Path(__file__).resolve().parents[1]
CHINESE = re.compile(r"[\u4e00-\u9fff]")
SHEET = "xl/worksheets/sheet1.xml"
HYPERLINK = '=HYPERLINK("http://x","点我")'
AT_SUM = "@SUM(A1)"
INJECTED = {HYPERLINK, AT_SUM, HYPERLINK.lstrip("=")}


# --- hostile files, built from a real filled form ----------------------------------------------------------


def _rebuild(
    base: bytes,
    out: Path,
    replace: dict[str, bytes | None],
    extra: Callable[[zipfile.ZipFile], None] | None = None,
) -> Path:
    """Copy the xlsx `base` into `out`, with parts replaced (None: written by `extra`)."""
    with zipfile.ZipFile(io.BytesIO(base)) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            if info.filename in replace:
                data = replace[info.filename]
                if data is not None:
                    dst.writestr(info.filename, data)
            else:
                dst.writestr(info, src.read(info.filename))
        for name, data in replace.items():
            if data is not None and name not in src.namelist():
                dst.writestr(name, data)
        if extra:
            extra(dst)
    return out


def zip_bomb(base: bytes, out: Path, megabytes: int = 300) -> Path:
    """sheet1.xml is ~`megabytes` MB of zeros; written in chunks, never held in memory."""
    head = b'<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData><row r="1"><c r="A1"><v>'
    chunk = b"0" * 2**20

    def write(zf: zipfile.ZipFile) -> None:
        with zf.open(SHEET, "w", force_zip64=True) as fh:
            fh.write(head)
            for _ in range(megabytes):
                fh.write(chunk)
            fh.write(b"</v></c></row></sheetData></worksheet>")

    return _rebuild(base, out, {SHEET: None}, write)


def billion_laughs(base: bytes, out: Path) -> Path:
    entities = ['<!ENTITY lol "lol">'] + [
        f'<!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">' for i in range(1, 10)
    ]
    sst = (
        '<?xml version="1.0" encoding="UTF-8"?><!DOCTYPE lolz [' + "".join(entities) + "]>"
        '<sst xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" count="1" uniqueCount="1">'
        "<si><t>&lol9;</t></si></sst>"
    ).encode()
    with zipfile.ZipFile(io.BytesIO(base)) as z:
        rels = z.read("xl/_rels/workbook.xml.rels").decode()
        types = z.read("[Content_Types].xml").decode()
        sheet = z.read(SHEET).decode()
    rels = rels.replace(
        "</Relationships>",
        '<Relationship Id="rIdSST" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/'
        'sharedStrings" Target="sharedStrings.xml"/></Relationships>',
    )
    types = types.replace(
        "</Types>",
        '<Override PartName="/xl/sharedStrings.xml" ContentType="application/vnd.openxmlformats-officedocument.'
        'spreadsheetml.sharedStrings+xml"/></Types>',
    )
    sheet = sheet.replace("</sheetData>", '<row r="60"><c r="A60" t="s"><v>0</v></c></row></sheetData>', 1)
    return _rebuild(
        base,
        out,
        {
            "xl/sharedStrings.xml": sst,
            "xl/_rels/workbook.xml.rels": rels.encode(),
            "[Content_Types].xml": types.encode(),
            SHEET: sheet.encode(),
        },
    )


def forged_dimension(base: bytes, out: Path) -> Path:
    with zipfile.ZipFile(io.BytesIO(base)) as z:
        sheet = z.read(SHEET).decode()
    sheet = re.sub(r'<dimension ref="[^"]*"\s*/>', '<dimension ref="A1:XFD1048576"/>', sheet, count=1)
    sheet = sheet.replace(
        "</sheetData>",
        '<row r="1048576"><c r="XFD1048576" t="inlineStr"><is><t>x</t></is></c></row></sheetData>',
        1,
    )
    return _rebuild(base, out, {SHEET: sheet.encode()})


def encrypted(base: bytes, out: Path) -> Path:
    from msoffcrypto.format.ooxml import OOXMLFile

    with out.open("wb") as fh:
        OOXMLFile(io.BytesIO(base)).encrypt("pw", fh)
    return out


def truncated(base: bytes, out: Path) -> Path:
    out.write_bytes(base[: len(base) // 2])
    return out


def empty(base: bytes, out: Path) -> Path:
    out.write_bytes(b"")
    return out


def macro_enabled(base: bytes, out: Path) -> Path:
    """The filled form saved as Excel saves a workbook with VBA: a vbaProject.bin part and the .xlsm type."""
    with zipfile.ZipFile(io.BytesIO(base)) as z:
        rels = z.read("xl/_rels/workbook.xml.rels").decode()
        types = z.read("[Content_Types].xml").decode()
    rels = rels.replace(
        "</Relationships>",
        '<Relationship Id="rIdVBA" Type="http://schemas.microsoft.com/office/2006/relationships/vbaProject" '
        'Target="vbaProject.bin"/></Relationships>',
    )
    types = types.replace(
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml",
        "application/vnd.ms-excel.sheet.macroEnabled.main+xml",
    ).replace(
        "</Types>", '<Default Extension="bin" ContentType="application/vnd.ms-office.vbaProject"/></Types>'
    )
    assert "macroEnabled" in types
    # Not a working VBA project: nothing in the pipeline may try to run or even parse it.
    vba = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b'Sub Auto_Open(): Shell "calc.exe": End Sub'.ljust(
        504, b"\0"
    )
    return _rebuild(
        base,
        out.with_suffix(".xlsm"),
        {
            "xl/vbaProject.bin": vba,
            "xl/_rels/workbook.xml.rels": rels.encode(),
            "[Content_Types].xml": types.encode(),
        },
    )


LINKED_CELL = "B8"  # 慰问困难职工(户) of 农业, in a fresh template (checked by the test)


def external_link(base: bytes, out: Path, *targets: str) -> Path:
    """The filled form with LINKED_CELL computed from other workbooks, `[1]Sheet1!A1 + [2]…`, its result
    saved as Excel saves it; each target is where Excel would look for the other workbook."""
    targets = targets or ("http://127.0.0.1:9/台账.xlsx",)
    with zipfile.ZipFile(io.BytesIO(base)) as z:
        book = z.read("xl/workbook.xml").decode()
        rels = z.read("xl/_rels/workbook.xml.rels").decode()
        types = z.read("[Content_Types].xml").decode()
        sheet = z.read(SHEET).decode()
    cell = re.search(rf'<c r="{LINKED_CELL}"([^>]*)><v>([^<]*)</v></c>', sheet)
    assert cell, "the template moved: LINKED_CELL no longer holds a plain number"
    formula = "+".join(f"[{i}]Sheet1!A1" for i in range(1, len(targets) + 1))
    sheet = sheet.replace(
        cell.group(0), f'<c r="{LINKED_CELL}"{cell.group(1)}><f>{formula}</f><v>{cell.group(2)}</v></c>'
    )
    parts: dict[str, bytes | None] = {SHEET: sheet.encode()}
    refs = ""
    for i, target in enumerate(targets, start=1):
        value = cell.group(2) if i == 1 else "0"
        parts[f"xl/externalLinks/externalLink{i}.xml"] = (
            '<externalLink xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" '
            'xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships">'
            '<externalBook r:id="rId1"><sheetNames><sheetName val="Sheet1"/></sheetNames><sheetDataSet>'
            f'<sheetData sheetId="0"><row r="1"><cell r="A1"><v>{value}</v></cell></row></sheetData>'
            "</sheetDataSet></externalBook></externalLink>"
        ).encode()
        parts[f"xl/externalLinks/_rels/externalLink{i}.xml.rels"] = (
            '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
            '<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/'
            f'externalLinkPath" Target="{target}" TargetMode="External"/></Relationships>'
        ).encode()
        rels = rels.replace(
            "</Relationships>",
            f'<Relationship Id="rIdExt{i}" Type="http://schemas.openxmlformats.org/officeDocument/2006/'
            f'relationships/externalLink" Target="externalLinks/externalLink{i}.xml"/></Relationships>',
        )
        types = types.replace(
            "</Types>",
            f'<Override PartName="/xl/externalLinks/externalLink{i}.xml" ContentType="application/'
            'vnd.openxmlformats-officedocument.spreadsheetml.externalLink+xml"/></Types>',
        )
        # The prefix declared here: openpyxl with lxml declares it on each <sheet>, not on the root.
        refs += (
            '<externalReference xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships" '
            f'r:id="rIdExt{i}"/>'
        )
    book = book.replace("</sheets>", f"</sheets><externalReferences>{refs}</externalReferences>", 1)
    parts.update(
        {
            "xl/workbook.xml": book.encode(),
            "xl/_rels/workbook.xml.rels": rels.encode(),
            "[Content_Types].xml": types.encode(),
        }
    )
    return _rebuild(base, out, parts)


CASES: dict[str, Callable[[bytes, Path], Path]] = {
    "zip_bomb": zip_bomb,
    "billion_laughs": billion_laughs,
    "forged_dimension": forged_dimension,
    "encrypted": encrypted,
    "truncated": truncated,
    "empty": empty,
}


# Files that carry active content but are honest forms: read as saved, with a warning, never acted on.
ACTIVE: dict[str, Callable[[bytes, Path], Path]] = {
    "macro": macro_enabled,
    "external_link": external_link,
}


def base_form(rules) -> bytes:
    """A real, correct filled form (the demo's figures) of 海口市总工会."""
    from pipeline.render import template
    from tests.conftest import correct_values

    return template.fill(
        rules, rules.forms["warmth"], rules.unit("460100"), correct_values(rules, "warmth", "460100")
    )


def build(case: str, rules, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return (CASES | ACTIVE)[case](base_form(rules), folder / f"{case}_附件1.xlsx")


# --- one file at a time ----------------------------------------------------------------------------------


@pytest.mark.parametrize("case", sorted(CASES))
def test_hostile_file_gets_a_verdict(case, rules, tmp_path):
    path = build(case, rules, tmp_path)
    start = time.monotonic()
    (result,) = check.check_paths([path], rules, isolated=True)
    assert time.monotonic() - start < 60
    assert result.verdict != Verdict.ACCEPTED
    errors = [f for f in result.findings if f.is_error]
    assert errors and all(CHINESE.search(f.message) for f in errors)
    assert all("Traceback" not in f.message for f in result.findings)


def workers(rules, memory_mb: int = 512, seconds: float = 10, count: int = 2) -> Pool:
    """Limited workers for the campaign, as a run has them."""
    return Pool(tasks.setup, (str(rules.source),), memory_mb=memory_mb, seconds=seconds, workers=count)


def read_isolated(rules, items: list[tuple[bytes, str]], **limits) -> list:
    """Each (bytes, name) read by a limited worker, as `pipeline check` reads a file."""
    pool = workers(rules, **limits)
    try:
        files = [tasks.FileToCheck(data, name, dt.date(2017, 2, 1)) for data, name in items]
        return pool.map(tasks.read_file, files, tasks.unread(rules.limits))
    finally:
        pool.close()


def test_dying_child_costs_one_finding_not_the_batch(rules, tmp_path):
    good = base_form(rules)
    bomb = forged_dimension(good, tmp_path / "forged.xlsx").read_bytes()
    subs = read_isolated(rules, [(good, "a.xlsx"), (bomb, "b.xlsx"), (good, "c.xlsx")])
    assert [s.file for s in subs] == ["a.xlsx", "b.xlsx", "c.xlsx"]
    assert subs[0].readable and subs[2].readable and subs[0].unit == "460100"
    assert not subs[1].readable and subs[1].findings[0].rule in {"F-too-large", "F-unreadable"}
    assert CHINESE.search(subs[1].findings[0].message)


def test_files_sent_with_one_that_kills_the_worker_are_read_again_each_alone(rules, tmp_path):
    """One worker, the files handed over together: those that came with the bomb get their own verdicts."""
    good = base_form(rules)
    bomb = forged_dimension(good, tmp_path / "forged.xlsx").read_bytes()
    names = ["a.xlsx", "bomb1.xlsx", "c.xlsx", "bomb2.xlsx", "e.xlsx", "f.xlsx"]
    items = [(bomb if n.startswith("bomb") else good, n) for n in names]
    subs = read_isolated(rules, items, count=1)
    assert [s.file for s in subs] == names
    assert [s.readable for s in subs] == [not n.startswith("bomb") for n in names]
    assert {s.unit for s in subs if s.readable} == {"460100"}


def _gave_up(item, why):
    return why.reason


def test_workers_give_way_when_asked_and_still_read(rules):
    """Once the run waits on its workbook, not on the annotated copies, the workers run at a lower priority."""
    pool = workers(rules)
    try:
        priority = functools.partial(os.getpriority, os.PRIO_PROCESS)
        own = os.getpriority(os.PRIO_PROCESS, 0)
        assert pool.map(priority, [0, 0], _gave_up, chunk=1) == [own, own]
        assert all(p >= 10 for p in pool.map(priority, [0, 0], _gave_up, chunk=1, niceness=10))
        files = [tasks.FileToCheck(base_form(rules), "a.xlsx", dt.date(2017, 2, 1))]
        (sub,) = pool.map(tasks.read_file, files, tasks.unread(rules.limits))
        assert sub.readable and sub.unit == "460100"
    finally:
        pool.close()


def test_workers_warmed_up_for_annotating_still_read_and_one_that_dies_is_replaced(rules):
    """Between reading and annotating, the workers load what annotating needs; a worker that dies meanwhile
    is replaced, and what it held gets its verdict."""
    pool = workers(rules)
    try:
        pool.warm(tasks.load_for_annotating)
        assert pool.map(os._exit, [1], _gave_up) == ["crash"]
        files = [tasks.FileToCheck(base_form(rules), f"{n}.xlsx", dt.date(2017, 2, 1)) for n in "abcd"]
        subs = pool.map(tasks.read_file, files, tasks.unread(rules.limits))
        assert [(s.readable, s.unit) for s in subs] == [(True, "460100")] * 4
    finally:
        pool.close()


def test_entities_in_the_workbook_part_are_never_expanded_by_our_own_parsing(rules, tmp_path, caplog):
    """calamine reads the values; the formula scan's own look at workbook.xml refuses the DTD instead of
    expanding it, and the file still gets its verdict."""
    import logging

    base = base_form(rules)
    with zipfile.ZipFile(io.BytesIO(base)) as z:
        workbook = z.read("xl/workbook.xml").decode()
    lol = '<!DOCTYPE workbook [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]>'
    workbook = workbook.replace("<workbook", lol + "<workbook", 1)
    path = _rebuild(base, tmp_path / "dtd_附件1.xlsx", {"xl/workbook.xml": workbook.encode()})
    with caplog.at_level(logging.INFO, logger="pipeline.submission"):
        sub = read.read_submission(path.read_bytes(), path.name, rules)
    assert sub.readable and sub.form == "warmth" and sub.unit == "460100"
    assert "formula scan" in caplog.text and "DTD" in caplog.text


def test_submission_is_picklable(rules):
    import pickle

    sub = read.read_submission(base_form(rules), "海口市总工会_附件1.xlsx", rules)
    assert pickle.loads(pickle.dumps(sub)) == sub


def test_hung_worker_is_killed_after_the_wall_time(rules):
    pool = workers(rules, seconds=0.5)
    try:
        start = time.monotonic()
        assert pool.map(time.sleep, [60], _gave_up) == ["time"]
        assert time.monotonic() - start < 5
    finally:
        pool.close()


# --- limits from rules.yaml, and files that are honest but unusual ------------------------------------------


def rules_with_limits(folder: Path, **limits: object) -> config.Rules:
    """A copy of rules.yaml with `limits:` changed, loaded from its own path (the workers load it again)."""
    data = yaml.safe_load((ROOT / "rules.yaml").read_text(encoding="utf-8"))
    data["limits"] = {**(data.get("limits") or {}), **limits}
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "rules.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return checks.load(path)


def test_file_over_the_size_limit_set_in_rules_yaml_is_refused_as_too_large(rules, tmp_path, fill):
    path = fill()
    assert 10_000 < path.stat().st_size < 100_000  # an ordinary filled form
    strict = rules_with_limits(tmp_path / "strict", max_file_mb=0.01)
    (result,) = check.check_paths([path], strict, isolated=True)
    assert result.verdict == Verdict.UNREADABLE
    [finding] = result.findings
    assert finding.rule == F_TOO_LARGE and "超过 0.01 MB 的上限" in finding.message
    (same,) = check.check_paths([path], rules, isolated=True)  # under the shipped limits it is fine
    assert same.verdict == Verdict.ACCEPTED


def test_file_over_the_size_limit_is_refused_in_the_same_words_by_a_run_and_by_check(rules, tmp_path, fill):
    """The run never reads a file over the limit (intake does not keep it); its verdict says what check says."""
    from typer.testing import CliRunner

    from pipeline.cli import app
    from pipeline.io.ledger import Ledger

    path = fill()
    strict = rules_with_limits(tmp_path / "strict", max_file_mb=0.01)
    inbox, outbox, state = tmp_path / "inbox", tmp_path / "outbox", tmp_path / "state"
    (inbox / "2017-01-30").mkdir(parents=True)
    sent = inbox / "2017-01-30" / path.name
    sent.write_bytes(path.read_bytes())
    received = dt.datetime(2017, 1, 30, 12, tzinfo=dt.timezone(dt.timedelta(hours=8))).timestamp()
    os.utime(sent, (received, received))  # received before the run's time
    result = CliRunner().invoke(
        app,
        [
            "run",
            "--rules",
            str(strict.source),
            "--inbox",
            str(inbox),
            "--outbox",
            str(outbox),
            "--state",
            str(state),
            "--as-of",
            "2017-02-01T12:00",
        ],
    )
    assert result.exit_code == 0, result.output
    [stored] = Ledger(state).submissions()
    [finding] = stored.findings
    assert (stored.verdict, finding.rule) == (Verdict.UNREADABLE, F_TOO_LARGE)
    (checked,) = check.check_paths([sent], strict)
    assert [finding] == list(checked.findings)
    assert "超过 0.01 MB 的上限" in finding.message


def test_macro_enabled_workbook_is_read_with_a_warning_and_its_macros_never_run(rules, tmp_path):
    """A unit's .xlsm (Excel with VBA): the figures are read as saved, the unit is told macros were not run."""
    path = build("macro", rules, tmp_path)
    assert path.suffix == ".xlsm"
    (result,) = check.check_paths([path], rules, isolated=True)
    assert (result.verdict, result.unit, result.form) == (Verdict.ACCEPTED, "460100", "warmth")
    [warning] = [f for f in result.findings if f.rule == F_MACRO]
    assert warning.severity == Severity.WARNING
    assert "宏" in warning.message and "不运行宏" in warning.message and "读取" in warning.message
    (sub,) = read_isolated(rules, [(path.read_bytes(), path.name)])
    plain = read.read_submission(base_form(rules), "海口市总工会_附件1.xlsx", rules)
    assert {k: c.raw for k, c in sub.cells.items()} == {k: c.raw for k, c in plain.cells.items()}


def test_external_links_are_never_followed_and_the_saved_figures_are_read(rules, tmp_path):
    """A form whose 农业 households come from the unit's own ledger workbook, on a web server and on disk.

    What a user expects: the figure as it was saved in the form is what counts, the pipeline never reaches
    for the other workbook (no connection to the server, no opening of the file), and the unit is told in
    a warning that the links were not refreshed. The file on disk is a named pipe, so opening it would
    hang the reader until its worker is given up, and that would show as an F-too-large verdict.
    """
    server = socket.create_server(("127.0.0.1", 0))
    server.setblocking(False)
    fifo = tmp_path / "台账" / "送温暖台账.xlsx"
    fifo.parent.mkdir()
    os.mkfifo(fifo)
    port = server.getsockname()[1]
    path = external_link(
        base_form(rules),
        tmp_path / "海口市总工会_附件1.xlsx",
        f"http://127.0.0.1:{port}/送温暖台账.xlsx",
        str(fifo),
    )
    try:
        (result,) = check.check_paths([path], rules, isolated=True)
        (sub,) = read_isolated(rules, [(path.read_bytes(), path.name)])
        with pytest.raises(BlockingIOError):
            server.accept()  # nobody knocked
    finally:
        server.close()
    assert (result.verdict, result.unit) == (Verdict.ACCEPTED, "460100"), result.findings
    [warning] = [f for f in result.findings if f.rule == F_LINK]
    assert (
        warning.severity == Severity.WARNING
        and "外部链接" in warning.message
        and "保存的数值" in warning.message
    )
    assert cell_of(rules, "warmth", "visits", "agri", "households") == LINKED_CELL
    cell = sub.cells[("visits", "agri", "households")]
    assert cell.address == LINKED_CELL and cell.formula == "[1]Sheet1!A1+[2]Sheet1!A1"
    plain = read.read_submission(base_form(rules), "海口市总工会_附件1.xlsx", rules)
    assert cell.raw == plain.cells[("visits", "agri", "households")].raw and not cell.formula_without_value


def test_xlsx_saved_under_an_xls_name_is_read_by_its_content(rules, tmp_path, fill):
    """Someone renamed 海口市总工会_附件1.xlsx to .xls to "make it the old format": the content decides."""
    path = fill()
    renamed = path.rename(path.with_suffix(".xls"))
    (result,) = check.check_paths([renamed], rules, isolated=True)
    assert (result.verdict, result.unit, result.form) == (Verdict.ACCEPTED, "460100", "warmth")
    assert not result.findings


# --- names derived from user files stay in the outbox ---------------------------------------------------------

LONGEST = "统" * 83 + ".xlsx"  # 254 bytes: the longest name a Linux inbox can hold
ODD_NAMES = {
    "windows_parent_dirs": "海口\\..\\..\\..\\..\\etc\\cron.d\\附件1.xlsx",
    "absolute_windows_path": "C:\\Users\\Public\\送温暖统计表.xlsx",
    "right_to_left_override": "附件1_\u202exslx.exe",  # shows as 附件1_exe.xlsx
    "zero_width": "附\u200b件\u200d1\ufeff\u2060.xlsx",
    "emoji": "附件1🎉👍🏽.xlsx",
    "line_break": "附件1\r\nBcc: all@example.org.xlsx",
    "longest": LONGEST,
}


def test_odd_file_names_give_feedback_files_inside_the_outbox_with_valid_names(rules, tmp_path, fill):
    """Whatever a file is called, its annotated copy and message land in the outbox under a name that any
    file system accepts (at most 255 bytes a component) and that shows nothing invisible or reversed."""
    inbox, outbox, state = tmp_path / "inbox", tmp_path / "outbox", tmp_path / "state"
    (inbox / "2017-01-30").mkdir(parents=True)
    units = [u for u in rules.units_owing_form("warmth") if u.reports_to == "province"][: len(ODD_NAMES)]
    for unit, name in zip(units, ODD_NAMES.values(), strict=True):
        made = fill(unit=unit.code, changes={("sign", "", "preparer"): None})  # an error: feedback is due
        target = made.rename(inbox / "2017-01-30" / name)
        os.utime(target, (1485820800,) * 2)  # 2017-01-31 08:00 +08:00
    result = campaign_at(rules, inbox, outbox, state).run("2017-02-01T12:00")

    assert sorted(p.name for p in tmp_path.iterdir()) == ["inbox", "outbox", "state"]  # nothing got out
    assert result.checked["rejected"] == len(ODD_NAMES)
    written = [p for p in outbox.rglob("*")]
    for path in written:
        assert path.resolve().is_relative_to(outbox.resolve())
        for part in path.relative_to(outbox).parts:
            assert len(part.encode("utf-8")) <= 255, part
            assert not any(unicodedata.category(ch) in ("Cc", "Cf") for ch in part), repr(part)
            assert "\\" not in part and part not in (".", "..")
    for unit in units:
        (annotated,) = (outbox / names.FEEDBACK_DIR / unit.name).glob("*_校验结果.xlsx")
        assert "校验结果" in openpyxl.load_workbook(annotated).sheetnames
    emls = sorted((outbox / names.MAIL_DIR).glob("*.eml"))
    assert len(emls) == len(units)
    for eml in emls:
        message = email.message_from_bytes(eml.read_bytes(), policy=email.policy.default)
        assert message["Bcc"] is None
    assert any("统" * 60 in p.name for p in written)  # a long name is shortened, not replaced


def test_very_long_name_is_cut_by_bytes_keeping_its_extension():
    """300 CJK characters are 900 bytes; file systems count bytes (255 on Linux), not characters."""
    name = names.safe_name("统" * 300 + ".xlsx")
    assert len(name.encode("utf-8")) <= 255 and name.endswith(".xlsx") and name.startswith("统" * 50)
    assert names.safe_name("../../etc/passwd") == "_.._etc_passwd"
    assert names.safe_name("..") == names.safe_name("") == "未命名"


def test_form_checked_against_the_archived_other_form_reads_that_form_in_a_worker(
    rules, tmp_path, fill, monkeypatch
):
    """The cross-form check (X-archive) still warns when the 帮扶中心 form came in an earlier run, and the
    archived form is parsed in a worker process like any new file, never in the batch's own process."""
    inbox, outbox, state = tmp_path / "inbox", tmp_path / "outbox", tmp_path / "state"
    level = campaign_at(rules, inbox, outbox, state)
    center = fill(
        "center", changes={("archive", "", "archived_households"): 1, ("archive", "", "new_archived"): 0}
    )
    (inbox / "2017-01-29").mkdir(parents=True)
    os.utime(center.rename(inbox / "2017-01-29" / center.name), (1485820800,) * 2)
    level.run("2017-02-01T12:00")  # the 帮扶中心 form is checked and archived

    def in_process(*args, **kwargs):
        raise AssertionError("an archived file was parsed in the batch's own process")

    monkeypatch.setattr(read, "read_submission", in_process)
    warmth = fill("warmth", seed=3)
    (inbox / "2017-01-30").mkdir()
    os.utime(warmth.rename(inbox / "2017-01-30" / warmth.name), (1485820800,) * 2)
    level.run("2017-02-01T12:00")
    book = ledger.Ledger(state)
    try:
        (warmth,) = [s for s in book.submissions() if s.form == "warmth"]
    finally:
        book.close()
    (warning,) = [f for f in warmth.findings if f.rule == "X-archive"]
    assert "多于帮扶中心统计表年末建档困难职工 1 户" in warning.message


# --- the weekly run on a mixed inbox ---------------------------------------------------------------------


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pipeline", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_mixed_inbox_run(rules, tmp_path, fill):
    inbox, outbox, state = tmp_path / "inbox", tmp_path / "outbox", tmp_path / "state"
    demo.make(rules, inbox, seed=2017)
    hostile = inbox / "2017-01-30"
    for case in CASES:
        build(case, rules, hostile)
    injected = fill(
        unit="460200", changes={("sign", "", "preparer"): HYPERLINK, ("sign", "", "leader"): AT_SUM}
    )
    (hostile / injected.name).write_bytes(injected.read_bytes())
    received = dt.datetime(2017, 1, 30, 12, tzinfo=dt.timezone(dt.timedelta(hours=8))).timestamp()
    for path in hostile.iterdir():
        os.utime(path, (received, received))  # as received, before the run's time

    run = _cli(
        "run",
        "--inbox",
        str(inbox),
        "--outbox",
        str(outbox),
        "--state",
        str(state),
        "--as-of",
        "2017-02-01T12:00",
    )  # a hang fails here, at _cli's timeout
    assert run.returncode == 0, run.stderr
    assert "Traceback" not in run.stderr + run.stdout
    assert list((outbox / "汇总").glob("*.xlsx"))

    status = _cli("status", "--json", "--state", str(state), "--as-of", "2017-02-01T12:00")
    assert status.returncode == 0, status.stderr
    assert "跳过 0 个" in run.stdout  # every hostile file was taken in and checked
    table = _cli("status", "--state", str(state), "--as-of", "2017-02-01T12:00").stdout
    passed = [line for line in table.splitlines() if line.split()[1:2] == ["通过"]]
    assert len(passed) >= 10, table  # the good units are still counted as passed

    # No workbook we write holds the injected texts as formulas.
    seen = 0
    for path in outbox.rglob("*.xlsx"):
        wb = openpyxl.load_workbook(path)
        for ws in wb.worksheets:
            for row in ws.iter_rows():
                for cell in row:
                    if isinstance(cell.value, str) and ("HYPERLINK" in cell.value or AT_SUM in cell.value):
                        seen += 1
                        assert cell.data_type != "f", (path.name, ws.title, cell.coordinate, cell.value)
    assert seen, "the injected texts should show up (as text) in the feedback or the consolidation"


def test_workbook_too_big_to_annotate_still_gets_its_findings_and_the_others_their_marks(rules, tmp_path):
    """A form padded with 1.5 million cells: calamine reads it in a blink, openpyxl would need gigabytes
    to mark it. Within a 300 MB worker the unit still gets a copy listing its findings, and the next
    unit's workbook is marked as usual."""
    from pipeline.model import Finding, Severity

    base = base_form(rules)
    rows = b"".join(
        b'<row r="%d">' % r
        + b"".join(b'<c r="%s%d"><v>%d</v></c>' % (c, r, r) for c in (b"AA", b"AB", b"AC", b"AD", b"AE"))
        + b"</row>"
        for r in range(1000, 301000)
    )
    with zipfile.ZipFile(io.BytesIO(base)) as zf:
        sheet = zf.read(SHEET)
    padded = _rebuild(
        base, tmp_path / "padded.xlsx", {SHEET: sheet.replace(b"</sheetData>", rows + b"</sheetData>")}
    )
    assert padded.stat().st_size < 20 * 2**20
    finding = Finding("R-sum", Severity.ERROR, "合计与分项之和不符", sheet="附件1", cell="C8")
    small = rules_with_limits(tmp_path / "small", worker_memory_mb=300)
    haikou = rules.unit("460100")
    letters = [
        dict(
            file_name=name,
            verdict="rejected",
            findings=[finding],
            version=1,
            item="warmth",
            now=dt.datetime(2017, 2, 1, 12, tzinfo=rules.campaign.tz),
            attachment_name=f"{name}_校验结果.xlsx",
        )
        for name in ("padded", "ok")
    ]
    jobs = [
        tasks.Letter(padded.read_bytes(), "padded.xlsx", [finding], haikou, "校验结果", letters[0]),
        tasks.Letter(base, "ok.xlsx", [finding], haikou, "校验结果", letters[1]),
    ]
    pool = workers(small, memory_mb=300, seconds=small.limits.worker_seconds)
    try:
        big, (ok, eml, subject) = pool.map(tasks.annotate_file, jobs, tasks.listed_only)
    finally:
        pool.close()
    # The worker that marked the second also wrote its e-mail; the first one's is written by the caller.
    assert isinstance(big, bytes) and "海口市总工会" in subject
    attached = email.message_from_bytes(eml, policy=email.policy.SMTP)
    assert [(a.get_filename(), a.get_content()) for a in attached.iter_attachments()] == [
        ("ok_校验结果.xlsx", ok)
    ]
    listed = openpyxl.load_workbook(io.BytesIO(big))
    assert listed.sheetnames == [read.FEEDBACK_SHEET]  # the findings alone, not a half-marked copy
    texts = [str(c.value) for row in listed[read.FEEDBACK_SHEET].iter_rows() for c in row if c.value]
    assert any("原文件无法打开" in t for t in texts) and any("合计与分项之和不符" in t for t in texts)
    marked = openpyxl.load_workbook(io.BytesIO(ok))
    assert marked.sheetnames[0] == read.FEEDBACK_SHEET and len(marked.sheetnames) > 2
