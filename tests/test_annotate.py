"""The annotated copy sent back to a unit: its own workbook, error cells red, warning cells yellow, a first
sheet 校验结果 listing every finding; it must survive LibreOffice and still be recognised when resent.

An .xlsx is annotated by editing its XML, or through openpyxl when the edit leaves it alone: the tests of
what a user sees run both ways (the `route` fixture), and check that the XML edit was really taken.
"""

from __future__ import annotations

import io
import re
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import openpyxl
import pytest
from defusedxml import ElementTree as SafeET
from openpyxl.comments import Comment

from pipeline import demo
from pipeline.campaign import config
from pipeline.model import Finding, Severity, cell_order
from pipeline.render import annotate, template
from pipeline.runs import check
from tests.conftest import as_seen, cell_of, correct_values
from tests.test_check_command import CORPUS, corpus_files

TITLE = "海口市总工会 送温暖统计表 校验结果"
UNIT = "海口市总工会"
MISTAKES = {
    ("visits", "trade", "households"): 5,
    ("visits", "trade", "households_archived"): 9,  # W-archived, error
    ("activities", "", "forums"): "见附件",  # R-type, error
    ("activities", "", "wages_recovered"): 12.345,  # R-decimals, warning
}
# What a person could type into a cell that a spreadsheet would otherwise run as a formula.
INJECTIONS = ('=HYPERLINK("http://x","点我")', "@SUM(A1)", "+1+2", "-3-4", "\t=1", "\r=2")


@pytest.fixture
def made(monkeypatch) -> list[bool]:
    """For each .xlsx annotated, in order: whether the XML edit made the copy (False: openpyxl did)."""
    made: list[bool] = []
    edit = annotate._patched

    def watched(*args, **kwargs):
        copy = edit(*args, **kwargs)
        made.append(copy is not None)
        return copy

    monkeypatch.setattr(annotate, "_patched", watched)
    return made


@pytest.fixture(params=["xml", "openpyxl"])
def route(request, monkeypatch, made) -> Iterator[str]:
    """The test runs twice: with every .xlsx copy made by the XML edit (checked afterwards: none may have
    fallen back), and with the edit turned off, as for a workbook it leaves to openpyxl."""
    if request.param == "openpyxl":
        openpyxl_only(monkeypatch)
    yield request.param
    if request.param == "xml":
        assert made and all(made), f"the XML edit did not make every copy: {made}"


WARNING = annotate.WARNING_COLOR


def openpyxl_only(monkeypatch) -> None:
    monkeypatch.setattr(annotate, "_patched", lambda *args, **kwargs: None)


def annotated(path: Path, findings, *, unit_name: str = UNIT, title: str = TITLE) -> bytes:
    return annotate.annotated_workbook(
        path.read_bytes(), path.name, findings, unit_name=unit_name, title=title
    )


def checked(path: Path, rules: config.Rules) -> tuple[Finding, ...]:
    return check.check_paths([path], rules)[0].findings


def filled_cells(wb, rgb: str) -> set[tuple[str, str]]:
    """(sheet, A1) of every cell of the unit's sheets filled with `rgb` ("FFC7CE" or "FFFFC7CE"): solid, or
    as the background of the warnings' stripes."""
    out = set()
    for ws in wb.worksheets:
        if ws.title == annotate.SUMMARY_SHEET:
            continue
        for row in ws.iter_rows():
            for cell in row:
                fill = cell.fill
                color = str((fill.fgColor if fill.fill_type == "solid" else fill.bgColor).rgb or "").upper()
                if (
                    fill.fill_type in ("solid", annotate.WARNING_FILL.fill_type)
                    and color[-6:] == rgb.upper()[-6:]
                ):
                    out.add((ws.title, cell.coordinate))
    return out


def cells_of(findings, severity: str) -> set[tuple[str, str]]:
    return {(f.sheet, f.cell) for f in findings if f.severity == severity and f.cell}


def summary_xml(data: bytes) -> str:
    """The XML of 校验结果 in `data`, found as Excel finds it: by name, then by its relationship."""
    main = "{http://schemas.openxmlformats.org/spreadsheetml/2006/main}"
    rid = "{http://schemas.openxmlformats.org/officeDocument/2006/relationships}id"
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        workbook = SafeET.fromstring(zf.read("xl/workbook.xml"))
        rels = SafeET.fromstring(zf.read("xl/_rels/workbook.xml.rels"))
        (sheet,) = [s for s in workbook.iter(f"{main}sheet") if s.get("name") == annotate.SUMMARY_SHEET]
        (target,) = [r.get("Target") for r in rels if r.get("Id") == sheet.get(rid)]
        return zf.read(target[1:] if target.startswith("/") else f"xl/{target}").decode()


def summary_rows(wb) -> list[tuple]:
    ws = wb[annotate.SUMMARY_SHEET]
    return [r for r in ws.iter_rows(min_row=annotate.HEADER_ROW + 1, values_only=True) if r[0] is not None]


@pytest.fixture
def mistaken(fill, rules) -> tuple[Path, tuple[Finding, ...]]:
    path = fill(changes=MISTAKES)
    findings = checked(path, rules)
    assert {(f.rule, f.severity) for f in findings} == {
        ("W-archived", Severity.ERROR),
        ("R-type", Severity.ERROR),
        ("R-decimals", Severity.WARNING),
    }
    return path, findings


def test_error_cells_are_red_and_warning_cells_yellow_with_comments(mistaken, rules, tmp_path, route):
    path, findings = mistaken
    wb = openpyxl.load_workbook(io.BytesIO(annotated(path, findings)))
    assert filled_cells(wb, "FFC7CE") == cells_of(findings, Severity.ERROR)
    assert filled_cells(wb, WARNING) == cells_of(findings, Severity.WARNING)
    for f in findings:
        cell = wb[f.sheet][f.cell]
        assert cell.comment is not None and cell.comment.author == annotate.AUTHOR
        assert f.message in cell.comment.text
    # Marked, not changed: the typed value and the number format stay.
    ws = wb[rules.forms["warmth"].sheet]
    forums, recovered = (
        cell_of(rules, "warmth", "activities", "", "forums"),
        cell_of(rules, "warmth", "activities", "", "wages_recovered"),
    )
    assert ws[forums].value == "见附件"
    assert ws[recovered].value == 12.345 and ws[recovered].number_format == "0.00"


def test_cell_with_an_error_and_a_warning_is_red_with_both_messages(mistaken, route):
    path, findings = mistaken
    error = next(f for f in findings if f.is_error)
    warning = Finding(
        "W-per-head", Severity.WARNING, "人均慰问金额偏高,请核对单位", sheet=error.sheet, cell=error.cell
    )
    wb = openpyxl.load_workbook(io.BytesIO(annotated(path, [warning, *findings])))
    assert (error.sheet, error.cell) in filled_cells(wb, "FFC7CE")
    assert (error.sheet, error.cell) not in filled_cells(wb, WARNING)
    text = wb[error.sheet][error.cell].comment.text
    assert text.index(error.message) < text.index(warning.message)  # one comment, the error first


def test_comment_boxes_are_sized_for_their_text(mistaken, route):
    path, findings = mistaken
    long = Finding("R-type", Severity.ERROR, "很长的说明。" * 40, sheet=findings[0].sheet, cell="B8")
    data = annotated(path, [*findings, long])
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        vml = "".join(zf.read(n).decode() for n in zf.namelist() if n.endswith(".vml"))
    sizes = [(int(w), int(h)) for w, h in re.findall(r"width:(\d+)px;height:(\d+)px", vml)]
    assert len(sizes) == len(findings) + 1
    assert all(w >= 200 and h >= 32 for w, h in sizes)
    assert max(h for _, h in sizes) >= 11 * 16  # 240 full-width characters at about 21 a line


def test_summary_is_the_first_and_active_sheet_with_one_linked_row_per_finding(mistaken, route):
    path, findings = mistaken
    whole_file = Finding("F-identity", Severity.WARNING, '文件名"x.xlsx"像是别的单位的')
    wb = openpyxl.load_workbook(io.BytesIO(annotated(path, [*findings, whole_file])))
    assert wb.sheetnames[0] == annotate.SUMMARY_SHEET
    assert wb.active.title == annotate.SUMMARY_SHEET
    assert [ws.title for ws in wb.worksheets if ws.sheet_view.tabSelected] == [annotate.SUMMARY_SHEET]
    ws = wb[annotate.SUMMARY_SHEET]
    assert ws["A1"].value == TITLE
    assert ws["A3"].value == "共 2 个错误、2 个提醒;结论:未通过"
    header = [ws.cell(annotate.HEADER_ROW, j).value for j in range(1, 8)]
    assert header == ["序号", "类别", "工作表", "单元格", "填写内容", "问题说明", None]  # no rule codes
    rows = summary_rows(wb)
    assert len(rows) == 4
    assert [r[0] for r in rows] == ["1", "2", "3", "4"]
    assert rows[0][1:4] == ("提醒", None, None)  # whole-file first, then the sheet's cells in reading order
    assert rows[0][5] == whole_file.message
    by_cell = {r[3]: r for r in rows if r[3]}
    for f in findings:
        assert by_cell[f.cell][1:6] == ("错误" if f.is_error else "提醒", f.sheet, f.cell, f.value, f.message)
    assert [r[3] for r in rows[1:]] == sorted((r[3] for r in rows[1:]), key=cell_order)
    assert not any(f.rule in str(value) for f in [*findings, whole_file] for r in rows for value in r)
    for r in range(annotate.HEADER_ROW + 1, annotate.HEADER_ROW + 1 + len(rows)):
        link = ws.cell(r, 4)
        if link.value:
            assert link.hyperlink.location == f"'{findings[0].sheet}'!{link.value}"
            assert not link.hyperlink.target  # a place in this workbook, not a file or web address
        else:
            assert link.hyperlink is None
    assert ws.freeze_panes == f"A{annotate.HEADER_ROW + 1}"
    assert ws.page_setup.orientation == "landscape" and int(ws.page_setup.paperSize) == 9  # A4
    assert ws.page_setup.fitToWidth == 1 and ws.sheet_properties.pageSetUpPr.fitToPage
    assert ws.cell(annotate.HEADER_ROW + 1, 6).alignment.wrap_text


def test_passed_form_says_so(fill, rules, route):
    path = fill()
    assert checked(path, rules) == ()
    wb = openpyxl.load_workbook(io.BytesIO(annotated(path, ())))
    ws = wb[annotate.SUMMARY_SHEET]
    assert ws["A3"].value == "共 0 个错误、0 个提醒;结论:通过"
    assert "未发现问题" in ws["A4"].value
    assert summary_rows(wb) == []


def test_annotated_copy_is_recognised_and_gives_the_same_findings(mistaken, rules, tmp_path, route):
    path, findings = mistaken
    copy = tmp_path / "resent" / "海口附件1_校验结果.xlsx"
    copy.parent.mkdir()
    copy.write_bytes(annotated(path, findings))
    (again,) = check.check_paths([copy], rules)
    assert (again.unit, again.form, again.verdict) == ("460100", "warmth", "rejected")
    # Totals keep their cached results, so nothing new (no "formula without a value") appears.
    assert sorted((f.rule, f.cell) for f in again.findings) == sorted((f.rule, f.cell) for f in findings)
    wb = openpyxl.load_workbook(copy)
    assert wb[template.META_SHEET].sheet_state == "hidden"
    assert wb[template.META_SHEET].protection.sheet is True
    assert wb[rules.forms["warmth"].sheet].protection.sheet is True  # its input cells are unlocked
    original = openpyxl.load_workbook(path)
    assert [list(r) for r in wb[template.META_SHEET].values] == [
        list(r) for r in original[template.META_SHEET].values
    ]


@pytest.mark.parametrize("first_round", ["xml", "openpyxl"])
def test_second_round_replaces_the_first_rounds_marks(mistaken, made, monkeypatch, first_round):
    """A unit corrects D26 in the annotated copy and resends it; C12 is still wrong."""
    path, findings = mistaken
    with monkeypatch.context() as m:
        if first_round == "openpyxl":
            openpyxl_only(m)
        first = annotated(path, findings)
    still_wrong = [f for f in findings if f.rule == "W-archived"]
    wb = openpyxl.load_workbook(
        io.BytesIO(
            annotate.annotated_workbook(first, "resent.xlsx", still_wrong, unit_name=UNIT, title=TITLE)
        )
    )
    assert wb.sheetnames.count(annotate.SUMMARY_SHEET) == 1 and len(summary_rows(wb)) == 1
    assert filled_cells(wb, "FFC7CE") == cells_of(still_wrong, Severity.ERROR)
    assert filled_cells(wb, WARNING) == set()
    commented = {
        (ws.title, c.coordinate) for ws in wb.worksheets for row in ws.iter_rows() for c in row if c.comment
    }
    assert commented == cells_of(still_wrong, Severity.ERROR)
    # Our copy sent back has our marks and 校验结果 to clear: that is left to openpyxl.
    assert made == ([True] if first_round == "xml" else []) + [False]


def assert_read_back_alike(data: bytes, findings, rules, tmp_path: Path) -> None:
    """The annotated copy, sent back as it is, is recognised as 海口's 附件1 with the same findings."""
    copy = tmp_path / "copy.xlsx"
    copy.write_bytes(data)
    (again,) = check.check_paths([copy], rules)
    assert (again.unit, again.form) == ("460100", "warmth")
    assert sorted((f.rule, f.cell) for f in again.findings) == sorted((f.rule, f.cell) for f in findings)


def test_xls_original_is_annotated_as_an_xlsx_copy(rules, tmp_path):
    values = correct_values(rules, "warmth", "460100")
    values[("activities", "", "forums")] = "见附件"
    form = rules.forms["warmth"]
    original = tmp_path / "海口附件1.xls"
    original.write_bytes(demo.as_xls(rules, form, rules.unit("460100"), values))
    findings = checked(original, rules)
    assert [f.rule for f in findings if f.is_error] == ["R-type"]
    data = annotated(original, findings)
    assert data.startswith(b"PK")
    wb = openpyxl.load_workbook(io.BytesIO(data))
    assert wb.sheetnames == [annotate.SUMMARY_SHEET, form.sheet, template.META_SHEET]
    assert wb[template.META_SHEET].sheet_state == "hidden"
    assert filled_cells(wb, "FFC7CE") == cells_of(findings, Severity.ERROR)
    ws = wb[form.sheet]
    assert ws[cell_of(rules, "warmth", "activities", "", "forums")].value == "见附件"
    households = cell_of(rules, "warmth", "visits", "agri", "households")
    assert ws[households].value == values[("visits", "agri", "households")]
    assert "原文件为 .xls 格式,此为转换后的副本" in wb[annotate.SUMMARY_SHEET]["A4"].value
    assert_read_back_alike(data, findings, rules, tmp_path)


def test_xlsm_macros_are_not_carried_along(fill, rules, route):
    path = fill()
    macro_enabled = _with_macros(path.read_bytes())
    data = annotate.annotated_workbook(macro_enabled, "海口附件1.xlsm", (), unit_name=UNIT, title=TITLE)
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert not [n for n in zf.namelist() if "vba" in n.lower()]
        types = zf.read("[Content_Types].xml").decode()
    assert "macroEnabled" not in types and "spreadsheetml.sheet.main+xml" in types


def _with_macros(xlsx: bytes) -> bytes:
    """The same workbook as Excel saves an .xlsm: a vbaProject part and the macro-enabled content type."""
    src = zipfile.ZipFile(io.BytesIO(xlsx))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as dst:
        for name in src.namelist():
            content = src.read(name)
            if name == "[Content_Types].xml":
                content = content.replace(
                    b"application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml",
                    b"application/vnd.ms-excel.sheet.macroEnabled.main+xml",
                ).replace(
                    b"</Types>",
                    b'<Default Extension="bin" ContentType="application/vnd.ms-office.vbaProject"/></Types>',
                )
            elif name == "xl/_rels/workbook.xml.rels":
                content = content.replace(
                    b"</Relationships>",
                    b'<Relationship Id="rIdVba" Type="http://schemas.microsoft.com/office/2006/relationships/'
                    b'vbaProject" Target="vbaProject.bin"/></Relationships>',
                )
            dst.writestr(name, content)
        dst.writestr("xl/vbaProject.bin", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 504)
    return out.getvalue()


def injection_findings(sheet: str) -> list[Finding]:
    found = [
        Finding("R-type", Severity.ERROR, f"说明 {text}", sheet=sheet, cell=f"B{8 + i}", value=text)
        for i, text in enumerate(INJECTIONS)
    ]
    # Echoed sheet names and messages are user text too; a control character must not break the file.
    found.append(
        Finding(
            "F-structure", Severity.WARNING, '=HYPERLINK("http://x","点我")', sheet="=1+1", value="响\x07铃"
        )
    )
    return found


def test_values_that_look_like_formulas_stay_text(fill, rules, route):
    path = fill()
    findings = injection_findings(rules.forms["warmth"].sheet)
    data = annotated(path, findings, unit_name="=1+1", title='=HYPERLINK("http://x","点我")')
    assert "<f>" not in summary_xml(data)  # the summary holds no formula
    wb = openpyxl.load_workbook(io.BytesIO(data))
    ws = wb[annotate.SUMMARY_SHEET]
    assert ws["A1"].value == '=HYPERLINK("http://x","点我")' and ws["A1"].data_type == "s"
    written = {r[4]: r for r in summary_rows(wb)}
    for typed in INJECTIONS:
        text = typed.replace("\r", "\n")  # XML reads a carriage return back as a line feed
        assert written[text][5] == f"说明 {text}"
    assert written["响\ufffd铃"][2] == "=1+1"
    for row in ws.iter_rows():
        for cell in row:
            assert cell.data_type in ("s", "n"), cell.coordinate


def test_same_input_gives_the_same_bytes(mistaken, route):
    path, findings = mistaken
    assert annotated(path, findings) == annotated(path, findings)
    assert annotated(path, findings) != annotated(path, findings[:1])


@pytest.mark.parametrize(
    "content",
    [
        b"%PDF-1.4 a scanned form",
        b"PK\x03\x04 cut short while copying",
        b"",
    ],
    ids=["pdf", "broken-zip", "empty"],
)
def test_unopenable_original_gets_the_summary_alone(content):
    findings = [Finding("F-unreadable", Severity.ERROR, "文件已损坏或不完整")]
    data = annotate.annotated_workbook(content, "海口附件1.xlsx", findings, unit_name=UNIT, title=TITLE)
    wb = openpyxl.load_workbook(io.BytesIO(data))
    assert wb.sheetnames == [annotate.SUMMARY_SHEET]
    assert "无法在原表上标注" in wb.active["A4"].value
    assert summary_rows(wb)[0][5] == "文件已损坏或不完整"


def test_workbook_openpyxl_rejects_falls_back_to_a_copy_of_its_values(fill, rules, made):
    """An .xlsx whose document properties openpyxl cannot parse (calamine reads the values): a rebuilt copy."""
    path = fill(changes={("activities", "", "forums"): "见附件"})
    findings = checked(path, rules)
    src = zipfile.ZipFile(io.BytesIO(path.read_bytes()))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as dst:
        for name in src.namelist():
            dst.writestr(name, b"<cp:coreProperties" if name == "docProps/core.xml" else src.read(name))
    data = annotate.annotated_workbook(out.getvalue(), path.name, findings, unit_name=UNIT, title=TITLE)
    wb = openpyxl.load_workbook(io.BytesIO(data))
    assert "转换后的副本" in wb[annotate.SUMMARY_SHEET]["A4"].value
    assert filled_cells(wb, "FFC7CE") == cells_of(findings, Severity.ERROR)
    assert made == [False]  # nor is a part that is not well-formed copied into ours


def test_findings_pointing_nowhere_are_listed_without_a_link(fill, rules, route):
    path = fill()
    sheet = rules.forms["warmth"].sheet
    findings = [
        Finding("R-type", Severity.ERROR, "不存在的工作表", sheet="别的表", cell="B8"),
        Finding("R-type", Severity.ERROR, "不是单元格地址", sheet=sheet, cell="第8行"),
        Finding("R-type", Severity.ERROR, "超出工作表范围", sheet=sheet, cell="XFE1"),
        Finding("R-type", Severity.ERROR, "合并单元格中间", sheet=sheet, cell="C2"),  # the title spans A2:I2
    ]
    wb = openpyxl.load_workbook(io.BytesIO(annotated(path, findings)))
    rows = {r[5]: r for r in summary_rows(wb)}
    ws = wb[annotate.SUMMARY_SHEET]
    links = {
        ws.cell(r, 6).value: ws.cell(r, 4).hyperlink for r in range(annotate.HEADER_ROW + 1, ws.max_row + 1)
    }
    assert len(rows) == 4
    assert (
        links["不存在的工作表"] is None
        and links["不是单元格地址"] is None
        and links["超出工作表范围"] is None
    )
    assert links["合并单元格中间"].location == f"'{sheet}'!A2"  # the merged range's own cell
    assert filled_cells(wb, "FFC7CE") == {(sheet, "A2")}


# --- LibreOffice: what a unit or the staff see after opening and saving the copy ---------------------------


def _corrected(annotated_copy: bytes, rules: config.Rules, dest: Path) -> Path:
    """What a person does with the copy: types over each red and yellow cell, leaves 校验结果 in place."""
    wb = openpyxl.load_workbook(io.BytesIO(annotated_copy))
    ws = wb[rules.forms["warmth"].sheet]
    ws[cell_of(rules, "warmth", "visits", "trade", "households_archived")] = 4
    ws[cell_of(rules, "warmth", "activities", "", "forums")] = 3
    ws[cell_of(rules, "warmth", "activities", "", "wages_recovered")] = 12.35
    wb.save(dest)
    return dest


def test_libreoffice_keeps_marks_links_and_recognition(
    mistaken, rules, soffice_convert, poppler: Callable[..., str], tmp_path, route
):
    path, findings = mistaken
    out = tmp_path / "annotated"
    out.mkdir()
    copy = out / "海口附件1_校验结果.xlsx"
    copy.write_bytes(annotated(path, findings))
    injected = out / "injected.xlsx"
    injected.write_bytes(annotated(path, injection_findings(rules.forms["warmth"].sheet)))
    values = correct_values(rules, "warmth", "460100")
    values[("activities", "", "forums")] = "见附件"
    xls = tmp_path / "海口附件1.xls"
    xls.write_bytes(demo.as_xls(rules, rules.forms["warmth"], rules.unit("460100"), values))
    xls_findings = checked(xls, rules)
    from_xls = out / "from_xls.xlsx"
    from_xls.write_bytes(annotated(xls, xls_findings))
    corrected = _corrected(copy.read_bytes(), rules, out / "corrected.xlsx")

    resaved = soffice_convert([copy, from_xls, injected, corrected], "xlsx", tmp_path / "resaved")
    pdf = soffice_convert(copy, "pdf", tmp_path / "pdf")

    for source, found, again in ((findings, findings, resaved[0]), (xls_findings, xls_findings, resaved[1])):
        wb = openpyxl.load_workbook(again)
        assert filled_cells(wb, "FFC7CE") == cells_of(found, Severity.ERROR), again.name
        for sheet, cell in cells_of(found, Severity.WARNING):  # LibreOffice saves the stripes as one colour
            fill = wb[sheet][cell].fill
            assert fill.fill_type and fill.fgColor.rgb[-6:] not in ("FFF2CC", "000000", "FFFFFF"), cell
        assert wb.sheetnames[0] == annotate.SUMMARY_SHEET and wb.active.title == annotate.SUMMARY_SHEET
        assert wb[template.META_SHEET].sheet_state == "hidden"
        for f in found:
            assert f.message in wb[f.sheet][f.cell].comment.text
        ws = wb[annotate.SUMMARY_SHEET]
        links = [ws.cell(r, 4).hyperlink for r in range(annotate.HEADER_ROW + 1, ws.max_row + 1)]
        assert sorted(link.location for link in links if link) == sorted(
            f"'{f.sheet}'!{f.cell}" for f in source if f.cell
        )
        (result,) = check.check_paths([again], rules)
        assert (result.unit, result.form) == ("460100", "warmth")
        assert sorted((f.rule, f.cell) for f in result.findings) == sorted((f.rule, f.cell) for f in found)

    wb = openpyxl.load_workbook(resaved[2])
    texts = {r[4] for r in summary_rows(wb)}
    assert {t.replace("\r", "\n") for t in INJECTIONS} <= texts  # LibreOffice, too, keeps them as text
    assert all(c.data_type != "f" for row in wb[annotate.SUMMARY_SHEET].iter_rows() for c in row)

    (fixed,) = check.check_paths([resaved[3]], rules)
    assert (fixed.unit, fixed.form, fixed.verdict) == ("460100", "warmth", "accepted"), fixed.findings

    info = poppler("pdfinfo", pdf)
    width, height = map(float, re.search(r"Page size:\s+([\d.]+) x ([\d.]+)", info).groups())
    assert width > height  # landscape
    text = poppler("pdftotext", "-l", "1", pdf, "-")
    assert TITLE in text and "问题说明" in text


def test_units_own_comment_survives_two_rounds(fill, rules, made):
    path = fill()
    sheet = rules.forms["warmth"].sheet
    wb = openpyxl.load_workbook(path)
    wb[sheet]["B8"].comment = Comment("含两户返乡职工", "填表人")
    wb.save(path)
    finding = Finding("R-type", Severity.ERROR, "应填整数", sheet=sheet, cell="B8")
    first = annotated(path, [finding])
    assert openpyxl.load_workbook(io.BytesIO(first))[sheet]["B8"].comment.text.endswith("含两户返乡职工")
    second = annotate.annotated_workbook(first, path.name, (), unit_name=UNIT, title=TITLE)
    assert openpyxl.load_workbook(io.BytesIO(second))[sheet]["B8"].comment.text == "含两户返乡职工"
    assert made == [False, False]  # a workbook with comments, the unit's or ours, is left to openpyxl


def test_resent_copy_with_renamed_sheet_and_full_title_is_still_read(rules, tmp_path, route):
    form, unit = rules.forms["warmth"], rules.unit("460100")
    values = correct_values(rules, "warmth", "460100")
    values[("activities", "", "forums")] = "见附件"
    wb = openpyxl.load_workbook(io.BytesIO(template.fill(rules, form, unit, values)))
    wb[form.sheet].title = "Sheet1"  # retyped or pasted into a fresh workbook: no _meta, another sheet name
    del wb[template.META_SHEET]
    original = tmp_path / "海口附件1.xlsx"
    wb.save(original)
    findings = checked(original, rules)
    copy = tmp_path / "copy.xlsx"
    copy.write_bytes(
        annotated(original, findings, title=f"{unit.name} {form.attachment} {form.title} 校验结果")
    )
    (again,) = check.check_paths([copy], rules)
    assert (again.unit, again.form) == ("460100", "warmth")
    assert sorted((f.rule, f.cell) for f in again.findings) == sorted((f.rule, f.cell) for f in findings)


# --- the XML edit and openpyxl give the same copy ------------------------------------------------------------


def comment_boxes(data: bytes) -> list[tuple[int, int]]:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        vml = "".join(zf.read(n).decode() for n in zf.namelist() if n.endswith(".vml"))
    return sorted((int(w), int(h)) for w, h in re.findall(r"width:(\d+)px;height:(\d+)px", vml))


def _mistakes(fill, rules):
    path = fill(changes=MISTAKES)
    findings = checked(path, rules)
    error = next(f for f in findings if f.is_error)
    return (
        path,
        [
            *findings,
            Finding(
                "W-per-head", Severity.WARNING, "人均慰问金额偏高,请核对", sheet=error.sheet, cell=error.cell
            ),
            Finding("F-identity", Severity.WARNING, '文件名"x.xlsx"像是别的单位的'),
        ],
        UNIT,
        TITLE,
    )


def _odd_places(fill, rules):
    """Cells inside a merged range, never written (after a row's last cell, between two, in a new row)."""
    path = fill("center", changes={("sign", "", "phone"): "见附件"})
    sheet = rules.forms["center"].sheet
    places = ["C2", "B3", "G3", "K7", "B300", "XFE1", "第8行"]
    return (
        path,
        [
            *checked(path, rules),
            *(
                Finding(
                    "R-type", Severity.ERROR if i % 2 else Severity.WARNING, f"说明 {p}", sheet=sheet, cell=p
                )
                for i, p in enumerate(places)
            ),
            Finding("R-type", Severity.ERROR, "不存在的工作表", sheet="别的表", cell="B8"),
        ],
        "三亚市总工会",
        "三亚 帮扶中心 校验结果",
    )


def _injections(fill, rules):
    return fill(), injection_findings(rules.forms["warmth"].sheet), "=1+1", '=HYPERLINK("http://x","点我")'


def _passed(fill, rules):
    return fill(), [], UNIT, TITLE


@pytest.mark.parametrize(
    "scenario",
    [_mistakes, _odd_places, _injections, _passed],
    ids=["mistakes", "odd-places", "injections", "passed"],
)
def test_both_ways_give_the_copy_a_user_sees_the_same(scenario, fill, rules, made, monkeypatch):
    path, findings, unit_name, title = scenario(fill, rules)
    by_xml = annotated(path, findings, unit_name=unit_name, title=title)
    assert made == [True]
    openpyxl_only(monkeypatch)
    by_openpyxl = annotated(path, findings, unit_name=unit_name, title=title)
    assert as_seen(by_xml) == as_seen(by_openpyxl)
    assert comment_boxes(by_xml) == comment_boxes(by_openpyxl)


# --- what Excel, stricter than openpyxl and LibreOffice, needs of the package ---------------------------------

MAIN = "{http://schemas.openxmlformats.org/spreadsheetml/2006/main}"
R_ID = "{http://schemas.openxmlformats.org/officeDocument/2006/relationships}id"
PKG_RELS = "{http://schemas.openxmlformats.org/package/2006/relationships}"
CONTENT_TYPES = "{http://schemas.openxmlformats.org/package/2006/content-types}"
VML_X = "{urn:schemas-microsoft-com:office:excel}"
# The order ECMA-376 gives a worksheet's and a workbook's children; Excel calls a file out of it corrupt.
WORKSHEET_ORDER = (
    "sheetPr",
    "dimension",
    "sheetViews",
    "sheetFormatPr",
    "cols",
    "sheetData",
    "sheetCalcPr",
    "sheetProtection",
    "protectedRanges",
    "scenarios",
    "autoFilter",
    "sortState",
    "dataConsolidate",
    "customSheetViews",
    "mergeCells",
    "phoneticPr",
    "conditionalFormatting",
    "dataValidations",
    "hyperlinks",
    "printOptions",
    "pageMargins",
    "pageSetup",
    "headerFooter",
    "rowBreaks",
    "colBreaks",
    "customProperties",
    "cellWatches",
    "ignoredErrors",
    "smartTags",
    "drawing",
    "legacyDrawing",
    "legacyDrawingHF",
    "drawingHF",
    "picture",
    "oleObjects",
    "controls",
    "webPublishItems",
    "tableParts",
    "extLst",
)
WORKBOOK_ORDER = (
    "fileVersion",
    "fileSharing",
    "workbookPr",
    "workbookProtection",
    "bookViews",
    "sheets",
    "functionGroups",
    "externalReferences",
    "definedNames",
    "calcPr",
    "oleSize",
    "customWorkbookViews",
    "pivotCaches",
    "smartTagPr",
    "smartTagTypes",
    "webPublishing",
    "fileRecoveryPr",
    "webPublishObjects",
    "extLst",
)


def _in_order(element, order: tuple[str, ...]) -> bool:
    places = [order.index(child.tag.removeprefix(MAIN)) for child in element if child.tag.startswith(MAIN)]
    return places == sorted(places)


def _rels(zf: zipfile.ZipFile, part: str) -> dict[str, tuple[str, str]]:
    """Id -> (type, part) of the relationships of `part`."""
    folder, name = part.rsplit("/", 1)
    rels = f"{folder}/_rels/{name}.rels"
    if rels not in zf.namelist():
        return {}
    out = {}
    for rel in SafeET.fromstring(zf.read(rels)).iter(f"{PKG_RELS}Relationship"):
        target = rel.get("Target")
        path = target[1:] if target.startswith("/") else f"{folder}/{target}"
        out[rel.get("Id")] = (rel.get("Type").rsplit("/", 1)[1], re.sub(r"[^/]+/\.\./", "", path))
    return out


def package_problems(data: bytes) -> list[str]:
    """What Excel would refuse in the copy's package, or repair, that openpyxl and LibreOffice let pass."""
    problems = []
    zf = zipfile.ZipFile(io.BytesIO(data))
    names = set(zf.namelist())
    types = SafeET.fromstring(zf.read("[Content_Types].xml"))
    defaults = {
        d.get("Extension").lower(): d.get("ContentType") for d in types.iter(f"{CONTENT_TYPES}Default")
    }
    overrides = {
        o.get("PartName")[1:].lower(): o.get("ContentType") for o in types.iter(f"{CONTENT_TYPES}Override")
    }
    problems += [f"override for missing {n}" for n in overrides if n not in {m.lower() for m in names}]
    for name in names:
        if name.lower() not in overrides and name.rsplit(".", 1)[-1].lower() not in defaults:
            problems.append(f"no content type for {name}")
    workbook = SafeET.fromstring(zf.read("xl/workbook.xml"))
    if not _in_order(workbook, WORKBOOK_ORDER):
        problems.append("workbook.xml out of order")
    sheets = list(workbook.iter(f"{MAIN}sheet"))
    if len({s.get("sheetId") for s in sheets}) != len(sheets):
        problems.append("two sheets of one sheetId")
    for name in workbook.iter(f"{MAIN}definedName"):
        local = name.get("localSheetId")
        if local is None:
            continue
        owner = sheets[int(local)].get("name") if int(local) < len(sheets) else None
        if name.text.split("!")[0].strip("'") != owner:  # a print area or titles names its own sheet
            problems.append(f"{name.get('name')} {name.text} given to sheet {local}")
    book_rels = _rels(zf, "xl/workbook.xml")
    selected = 0
    for sheet in sheets:
        kind, part = book_rels[sheet.get(R_ID)]
        ws = SafeET.fromstring(zf.read(part))
        if not _in_order(ws, WORKSHEET_ORDER):
            problems.append(f"{part} out of order: {[c.tag.removeprefix(MAIN) for c in ws]}")
        selected += sum(v.get("tabSelected") in ("1", "true") for v in ws.iter(f"{MAIN}sheetView"))
        rows = [int(r.get("r")) for r in ws.iter(f"{MAIN}row")]
        if rows != sorted(set(rows)):
            problems.append(f"{part}: rows out of order")
        for row in ws.iter(f"{MAIN}row"):
            cols = [openpyxl.utils.column_index_from_string(re.sub(r"\d", "", c.get("r"))) for c in row]
            if cols != sorted(set(cols)):
                problems.append(f"{part} row {row.get('r')}: cells out of order")
        rels = _rels(zf, part)
        comments = [p for k, p in rels.values() if k == "comments"]
        drawings = [rels.get(d.get(R_ID)) for d in ws.iter(f"{MAIN}legacyDrawing")]
        if comments:
            if len(drawings) != 1 or drawings[0] is None or drawings[0][0] != "vmlDrawing":
                problems.append(f"{part}: comments without their drawing")
                continue
            refs = {c.get("ref") for c in SafeET.fromstring(zf.read(comments[0])).iter(f"{MAIN}comment")}
            vml = SafeET.fromstring(zf.read(drawings[0][1]))
            shapes = {
                openpyxl.utils.get_column_letter(int(box.find(f"{VML_X}Column").text) + 1)
                + str(int(box.find(f"{VML_X}Row").text) + 1)
                for box in vml.iter(f"{VML_X}ClientData")
            }
            if shapes != refs:
                problems.append(f"{part}: comment boxes at {shapes}, comments at {refs}")
    if selected != 1:
        problems.append(f"{selected} sheets selected")
    return problems


def test_copy_is_a_package_excel_opens_without_repairs(mistaken, fill, rules, route):
    path, findings = mistaken
    assert package_problems(annotated(path, findings)) == []
    _, odd, unit_name, title = _odd_places(fill, rules)
    center = fill("center", name="center.xlsx")
    assert package_problems(annotated(center, odd, unit_name=unit_name, title=title)) == []


def _as_excel_saves(xlsx: bytes) -> bytes:
    """The workbook with what Excel adds and a rewriting parser would break: the declaration, namespaces
    that mc:Ignorable names by prefix, x14ac attributes and a sheet extLst after where comments go."""
    mc = 'xmlns:mc="http://schemas.openxmlformats.org/markup-compatibility/2006"'
    ac = 'xmlns:x14ac="http://schemas.microsoft.com/office/spreadsheetml/2009/9/ac"'
    declaration = '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\r\n'
    src = zipfile.ZipFile(io.BytesIO(xlsx))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for name in src.namelist():
            text = src.read(name).decode()
            if name == "xl/worksheets/sheet1.xml":
                text = text.replace("<worksheet ", f'<worksheet {mc} {ac} mc:Ignorable="x14ac" ', 1)
                text = declaration + text
                text = text.replace("<row ", '<row x14ac:dyDescent="0.25" ').replace(
                    "</worksheet>",
                    '<extLst><ext uri="{78C0D931-6437-407d-A8EE-F0AAD7539E65}" '
                    'xmlns:x14="http://schemas.microsoft.com/office/spreadsheetml/2009/9/main">'
                    "<x14:conditionalFormattings/></ext></extLst></worksheet>",
                )
            elif name == "xl/styles.xml":
                text = text.replace("<styleSheet ", f'<styleSheet {mc} {ac} mc:Ignorable="x14ac" ', 1)
                text = declaration + text
                text = text.replace("<fonts ", '<fonts x14ac:knownFonts="1" ', 1)
            elif name == "xl/workbook.xml":
                text = declaration + text.replace("<workbook ", f'<workbook {mc} mc:Ignorable="x15" ', 1)
                text = text.replace(
                    "<bookViews>",
                    '<mc:AlternateContent><mc:Choice Requires="x15"><x15ac:absPath url="D:\\报表\\" '
                    'xmlns:x15ac="http://schemas.microsoft.com/office/spreadsheetml/2010/11/ac"/></mc:Choice>'
                    "</mc:AlternateContent><bookViews>",
                )
            dst.writestr(name, text.encode())
    return out.getvalue()


@pytest.mark.filterwarnings(
    "ignore:Conditional Formatting extension is not supported"
)  # openpyxl reading ours
def test_form_saved_by_excel_keeps_its_namespaces_and_untouched_parts(mistaken, made):
    path, findings = mistaken
    original = _as_excel_saves(path.read_bytes())
    data = annotate.annotated_workbook(original, path.name, findings, unit_name=UNIT, title=TITLE)
    assert made == [True]
    assert package_problems(data) == []
    before, after = zipfile.ZipFile(io.BytesIO(original)), zipfile.ZipFile(io.BytesIO(data))
    for part in ("xl/worksheets/sheet1.xml", "xl/styles.xml", "xl/workbook.xml"):
        old, new = before.read(part).decode(), after.read(part).decode()
        assert new[: new.index(">", 60) + 1] == old[: old.index(">", 60) + 1], part  # as sent
    sheet = after.read("xl/worksheets/sheet1.xml").decode()
    rows = before.read("xl/worksheets/sheet1.xml").decode().count("<row ")
    assert sheet.count('x14ac:dyDescent="0.25"') == rows
    assert sheet.index("<legacyDrawing") < sheet.index("<extLst>")
    assert 'x14ac:knownFonts="1"' in after.read("xl/styles.xml").decode()
    assert "x15ac:absPath" in after.read("xl/workbook.xml").decode()
    unchanged = {"xl/theme/theme1.xml", "docProps/core.xml", "docProps/app.xml", "xl/worksheets/sheet2.xml"}
    assert unchanged <= set(after.namelist())
    for part in unchanged:  # the hidden _meta sheet among them
        assert after.read(part) == before.read(part), part
    wb = openpyxl.load_workbook(io.BytesIO(data))
    assert filled_cells(wb, "FFC7CE") == cells_of(findings, Severity.ERROR)


def _with_relationships_prefix_on_each_sheet(xlsx: bytes) -> bytes:
    """The workbook part as openpyxl writes it when lxml is installed: the relationships' prefix declared on
    each <sheet> element instead of on the root, as any producer may."""
    declaration = ' xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships"'
    src = zipfile.ZipFile(io.BytesIO(xlsx))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for name in src.namelist():
            content = src.read(name)
            if name == "xl/workbook.xml":
                text = content.decode()
                if text.count(declaration) != text.count(
                    "<sheet "
                ):  # with lxml, openpyxl writes it so itself
                    assert text.count(declaration) == 1 and text.startswith("<workbook ")
                    text = text.replace(declaration, "", 1).replace("<sheet ", f"<sheet{declaration} ")
                assert declaration not in text.split("<sheets>")[0]
                content = text.encode()
            dst.writestr(name, content)
    return out.getvalue()


def test_sheets_that_declare_their_own_prefix_are_annotated_by_the_xml_edit(mistaken, rules, made, tmp_path):
    path, findings = mistaken
    original = _with_relationships_prefix_on_each_sheet(path.read_bytes())
    data = annotate.annotated_workbook(original, path.name, findings, unit_name=UNIT, title=TITLE)
    assert made == [True]
    assert package_problems(data) == []  # the new sheet's prefix is declared: the workbook part parses
    workbook = zipfile.ZipFile(io.BytesIO(data)).read("xl/workbook.xml").decode()
    assert not workbook.startswith("<workbook xmlns:r=")  # the sheets keep their own declarations
    wb = openpyxl.load_workbook(io.BytesIO(data))
    assert wb.sheetnames == [annotate.SUMMARY_SHEET, rules.forms["warmth"].sheet, template.META_SHEET]
    assert filled_cells(wb, "FFC7CE") == cells_of(findings, Severity.ERROR)
    assert filled_cells(wb, WARNING) == cells_of(findings, Severity.WARNING)
    assert_read_back_alike(data, findings, rules, tmp_path)


def _with_formula_typed(path: Path, rules) -> None:
    wb = openpyxl.load_workbook(path)
    wb[rules.forms["warmth"].sheet]["C30"] = '=WEBSERVICE("http://example.invalid/x")'
    wb.save(path)


def _with_prefixed_namespace(path: Path, rules) -> None:
    """The form sheet with its namespace under a prefix (x:row, x:c …), as some generators write it."""
    src = zipfile.ZipFile(io.BytesIO(path.read_bytes()))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as dst:
        for name in src.namelist():
            content = src.read(name)
            if name == "xl/worksheets/sheet1.xml":
                text = re.sub(r"<(/?)(\w+)", r"<\1x:\2", content.decode()).replace(
                    ' xmlns="', ' xmlns:x="', 1
                )
                content = text.encode()
            dst.writestr(name, content)
    path.write_bytes(out.getvalue())


def _with_comment_elsewhere(path: Path, rules) -> None:
    wb = openpyxl.load_workbook(path)
    wb[rules.forms["warmth"].sheet]["A1"].comment = Comment("附件一", "填表人")
    wb.save(path)


@pytest.mark.parametrize(
    "change, why",
    [
        (_with_formula_typed, "a formula that is not a form's own"),
        (_with_prefixed_namespace, "a root other than worksheet"),
        (_with_comment_elsewhere, "comments or VML drawings"),
    ],
    ids=["formula-typed", "prefixed-namespace", "comment-elsewhere"],
)
def test_workbook_the_xml_edit_leaves_to_openpyxl_is_still_marked(mistaken, rules, made, caplog, change, why):
    path, findings = mistaken
    change(path, rules)
    with caplog.at_level("INFO", logger=annotate.log.name):
        wb = openpyxl.load_workbook(io.BytesIO(annotated(path, findings)))
    assert made == [False]
    assert why in caplog.text
    assert filled_cells(wb, "FFC7CE") == cells_of(findings, Severity.ERROR)
    assert filled_cells(wb, WARNING) == cells_of(findings, Severity.WARNING)
    assert all(wb[f.sheet][f.cell].comment.author == annotate.AUTHOR for f in findings)
    assert wb.sheetnames[0] == annotate.SUMMARY_SHEET
    typed = wb[rules.forms["warmth"].sheet]["C30"]
    if change is _with_formula_typed:  # kept as what was typed, never as a formula that runs
        assert typed.value == '=WEBSERVICE("http://example.invalid/x")' and typed.data_type == "s"


def test_form_saved_by_libreoffice_is_annotated_by_the_xml_edit(
    mistaken, rules, soffice_convert, made, tmp_path
):
    path, findings = mistaken
    saved = soffice_convert(path, "xlsx", tmp_path / "saved")
    data = annotated(saved, findings)
    assert made == [True]
    assert package_problems(data) == []
    wb = openpyxl.load_workbook(io.BytesIO(data))
    assert filled_cells(wb, "FFC7CE") == cells_of(findings, Severity.ERROR)
    assert filled_cells(wb, WARNING) == cells_of(findings, Severity.WARNING)
    assert [ws.title for ws in wb.worksheets if ws.sheet_view.tabSelected] == [annotate.SUMMARY_SHEET]
    assert_read_back_alike(data, findings, rules, tmp_path)


def test_marks_on_two_sheets_each_get_their_comments(fill, rules, route):
    path = fill()
    wb = openpyxl.load_workbook(path)
    wb.create_sheet("补充说明", 1)["B2"] = "见附件"  # a sheet the unit added, between the form and _meta
    wb.save(path)
    sheet = rules.forms["warmth"].sheet
    findings = [
        Finding("R-type", Severity.ERROR, "应填整数", sheet=sheet, cell="B8"),
        Finding("R-other", Severity.WARNING, "请核对", sheet="补充说明", cell="B2"),
        Finding("R-other", Severity.ERROR, "不应填写", sheet="补充说明", cell="D5"),
    ]
    data = annotated(path, findings)
    assert package_problems(data) == []
    wb = openpyxl.load_workbook(io.BytesIO(data))
    assert wb.sheetnames == [annotate.SUMMARY_SHEET, sheet, "补充说明", template.META_SHEET]
    for f in findings:
        assert wb[f.sheet][f.cell].comment.text == f"【{'错误' if f.is_error else '提醒'}】{f.message}"
    assert filled_cells(wb, "FFC7CE") == cells_of(findings, Severity.ERROR)
    if route == "xml":  # each drawing its own block of shape ids, as Excel numbers them
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            vml = [zf.read(n).decode() for n in zf.namelist() if n.endswith(".vml")]
        blocks = [re.search(r'o:idmap v:ext="edit" data="(\d+)"', v).group(1) for v in vml]
        assert len(vml) == 2 and len(set(blocks)) == 2


@pytest.mark.skipif(not CORPUS.is_dir(), reason=f"the shared corpus is absent ({CORPUS})")
def test_every_corpus_workbook_gets_a_copy_that_opens_with_its_findings_first(made):
    """Real-world workbooks from other projects' test suites: each gets a copy that opens (read back by
    calamine, as LibreOffice and Excel would show it) with 校验结果 first; most take the XML edit."""
    import python_calamine

    books = [f for f in corpus_files() if f.suffix.lower() in (".xlsx", ".xlsm", ".xls", ".ods", ".xlsb")]
    assert len(books) > 60
    for path in books:
        data = path.read_bytes()
        try:
            first = python_calamine.CalamineWorkbook.from_filelike(io.BytesIO(data)).sheet_names[0]
        except Exception:  # damaged, encrypted or empty: the finding points nowhere, the copy lists it
            first = "Sheet1"
        finding = Finding("R-type", Severity.ERROR, "应填整数", sheet=first, cell="B2")
        copy = annotate.annotated_workbook(data, path.name, [finding], unit_name=UNIT, title=TITLE)
        book = python_calamine.CalamineWorkbook.from_filelike(io.BytesIO(copy))
        assert book.sheet_names[0] == annotate.SUMMARY_SHEET, path.name
        lines = book.get_sheet_by_name(annotate.SUMMARY_SHEET).to_python()
        assert lines[2][0].startswith("共 1 个错误"), path.name
    assert sum(made) >= len(made) // 2  # the ordinary ones are edited, the odd ones go to openpyxl
