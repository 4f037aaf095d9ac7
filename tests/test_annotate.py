"""The annotated copy sent back to a unit: its own workbook, error cells red, warning cells yellow, a first
sheet 校验结果 listing every finding; it must survive LibreOffice and still be recognised when resent."""

from __future__ import annotations

import io
import re
import zipfile
from collections.abc import Callable
from pathlib import Path

import openpyxl
import pytest
from defusedxml import ElementTree as SafeET
from openpyxl.comments import Comment

from pipeline import annotate, check, config, demo, template
from pipeline.findings import ERROR, WARNING, Finding
from tests.conftest import cell_of, correct_values

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


def annotated(path: Path, findings, *, unit_name: str = UNIT, title: str = TITLE) -> bytes:
    return annotate.annotated_workbook(
        path.read_bytes(), path.name, findings, unit_name=unit_name, title=title
    )


def checked(path: Path, rules: config.Rules) -> tuple[Finding, ...]:
    return check.check_paths([path], rules)[0].findings


def filled_cells(wb, rgb: str) -> set[tuple[str, str]]:
    """(sheet, A1) of every cell of the unit's sheets filled solid with `rgb` ("FFC7CE" or "FFFFC7CE")."""
    out = set()
    for ws in wb.worksheets:
        if ws.title == annotate.SUMMARY_SHEET:
            continue
        for row in ws.iter_rows():
            for cell in row:
                color = str(cell.fill.fgColor.rgb or "").upper()
                if cell.fill.fill_type == "solid" and color[-6:] == rgb.upper()[-6:] and len(color) in (6, 8):
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
        ("W-archived", ERROR),
        ("R-type", ERROR),
        ("R-decimals", WARNING),
    }
    return path, findings


def test_error_cells_are_red_and_warning_cells_yellow_with_comments(mistaken, rules, tmp_path):
    path, findings = mistaken
    wb = openpyxl.load_workbook(io.BytesIO(annotated(path, findings)))
    assert filled_cells(wb, "FFC7CE") == cells_of(findings, ERROR)
    assert filled_cells(wb, "FFEB9C") == cells_of(findings, WARNING)
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


def test_cell_with_an_error_and_a_warning_is_red_with_both_messages(mistaken):
    path, findings = mistaken
    error = next(f for f in findings if f.is_error)
    warning = Finding(
        "W-per-head", WARNING, "人均慰问金额偏高,请核对单位", sheet=error.sheet, cell=error.cell
    )
    wb = openpyxl.load_workbook(io.BytesIO(annotated(path, [warning, *findings])))
    assert (error.sheet, error.cell) in filled_cells(wb, "FFC7CE")
    assert (error.sheet, error.cell) not in filled_cells(wb, "FFEB9C")
    text = wb[error.sheet][error.cell].comment.text
    assert text.index(error.message) < text.index(warning.message)  # one comment, the error first


def test_comment_boxes_are_sized_for_their_text(mistaken):
    path, findings = mistaken
    long = Finding("R-type", ERROR, "很长的说明。" * 40, sheet=findings[0].sheet, cell="B8")
    data = annotated(path, [*findings, long])
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        vml = "".join(zf.read(n).decode() for n in zf.namelist() if n.endswith(".vml"))
    sizes = [(int(w), int(h)) for w, h in re.findall(r"width:(\d+)px;height:(\d+)px", vml)]
    assert len(sizes) == len(findings) + 1
    assert all(w >= 200 and h >= 32 for w, h in sizes)
    assert max(h for _, h in sizes) >= 11 * 16  # 240 full-width characters at about 21 a line


def test_summary_is_the_first_and_active_sheet_with_one_linked_row_per_finding(mistaken):
    path, findings = mistaken
    whole_file = Finding("F-identity", WARNING, '文件名"x.xlsx"像是别的单位的')
    wb = openpyxl.load_workbook(io.BytesIO(annotated(path, [*findings, whole_file])))
    assert wb.sheetnames[0] == annotate.SUMMARY_SHEET
    assert wb.active.title == annotate.SUMMARY_SHEET
    assert [ws.title for ws in wb.worksheets if ws.sheet_view.tabSelected] == [annotate.SUMMARY_SHEET]
    ws = wb[annotate.SUMMARY_SHEET]
    assert ws["A1"].value == TITLE
    assert ws["A3"].value == "共 2 个错误、2 个提醒;结论:未通过"
    header = [ws.cell(annotate.HEADER_ROW, j).value for j in range(1, 8)]
    assert header == ["序号", "类别", "规则", "工作表", "单元格", "填写内容", "问题说明"]
    rows = summary_rows(wb)
    assert len(rows) == 4
    assert [r[1] for r in rows] == ["错误", "错误", "提醒", "提醒"]
    assert [r[0] for r in rows] == ["1", "2", "3", "4"]
    assert rows[2][2] == "F-identity" and rows[2][4] is None  # whole-file: first of its kind, no cell
    by_cell = {r[4]: r for r in rows if r[4]}
    for f in findings:
        assert by_cell[f.cell][2:] == (f.rule, f.sheet, f.cell, f.value, f.message)
    errors = [r[4] for r in rows if r[1] == "错误"]
    assert errors == sorted(errors, key=lambda a: (int(a[1:]), a))  # by row within errors
    for r in range(annotate.HEADER_ROW + 1, annotate.HEADER_ROW + 1 + len(rows)):
        link = ws.cell(r, 5)
        if link.value:
            assert link.hyperlink.location == f"'{findings[0].sheet}'!{link.value}"
            assert not link.hyperlink.target  # a place in this workbook, not a file or web address
        else:
            assert link.hyperlink is None
    assert ws.freeze_panes == f"A{annotate.HEADER_ROW + 1}"
    assert ws.page_setup.orientation == "landscape" and int(ws.page_setup.paperSize) == 9  # A4
    assert ws.page_setup.fitToWidth == 1 and ws.sheet_properties.pageSetUpPr.fitToPage
    assert ws.cell(annotate.HEADER_ROW + 1, 7).alignment.wrap_text


def test_passed_form_says_so(fill, rules):
    path = fill()
    assert checked(path, rules) == ()
    wb = openpyxl.load_workbook(io.BytesIO(annotated(path, ())))
    ws = wb[annotate.SUMMARY_SHEET]
    assert ws["A3"].value == "共 0 个错误、0 个提醒;结论:通过"
    assert "未发现问题" in ws["A4"].value
    assert summary_rows(wb) == []


def test_annotated_copy_is_recognised_and_gives_the_same_findings(mistaken, rules, tmp_path):
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
    assert wb[rules.forms["warmth"].sheet].protection.sheet is False  # the unit corrects right here
    original = openpyxl.load_workbook(path)
    assert [list(r) for r in wb[template.META_SHEET].values] == [
        list(r) for r in original[template.META_SHEET].values
    ]


def test_second_round_replaces_the_first_rounds_marks(mistaken):
    """A unit corrects D26 in the annotated copy and resends it; C12 is still wrong."""
    path, findings = mistaken
    first = annotated(path, findings)
    still_wrong = [f for f in findings if f.rule == "W-archived"]
    wb = openpyxl.load_workbook(
        io.BytesIO(
            annotate.annotated_workbook(first, "resent.xlsx", still_wrong, unit_name=UNIT, title=TITLE)
        )
    )
    assert wb.sheetnames.count(annotate.SUMMARY_SHEET) == 1 and len(summary_rows(wb)) == 1
    assert filled_cells(wb, "FFC7CE") == cells_of(still_wrong, ERROR)
    assert filled_cells(wb, "FFEB9C") == set()
    commented = {
        (ws.title, c.coordinate) for ws in wb.worksheets for row in ws.iter_rows() for c in row if c.comment
    }
    assert commented == cells_of(still_wrong, ERROR)


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
    assert filled_cells(wb, "FFC7CE") == cells_of(findings, ERROR)
    ws = wb[form.sheet]
    assert ws[cell_of(rules, "warmth", "activities", "", "forums")].value == "见附件"
    households = cell_of(rules, "warmth", "visits", "agri", "households")
    assert ws[households].value == values[("visits", "agri", "households")]
    assert "原文件为 .xls 格式,此为转换后的副本" in wb[annotate.SUMMARY_SHEET]["A4"].value
    copy = tmp_path / "copy.xlsx"
    copy.write_bytes(data)
    (again,) = check.check_paths([copy], rules)
    assert (again.unit, again.form) == ("460100", "warmth")
    assert sorted((f.rule, f.cell) for f in again.findings) == sorted((f.rule, f.cell) for f in findings)


def test_xlsm_macros_are_not_carried_along(fill, rules):
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
        Finding("R-type", ERROR, f"说明 {text}", sheet=sheet, cell=f"B{8 + i}", value=text)
        for i, text in enumerate(INJECTIONS)
    ]
    # Echoed sheet names and messages are user text too; a control character must not break the file.
    found.append(
        Finding("F-structure", WARNING, '=HYPERLINK("http://x","点我")', sheet="=1+1", value="响\x07铃")
    )
    return found


def test_values_that_look_like_formulas_stay_text(fill, rules):
    path = fill()
    findings = injection_findings(rules.forms["warmth"].sheet)
    data = annotated(path, findings, unit_name="=1+1", title='=HYPERLINK("http://x","点我")')
    assert "<f>" not in summary_xml(data)  # the summary holds no formula
    wb = openpyxl.load_workbook(io.BytesIO(data))
    ws = wb[annotate.SUMMARY_SHEET]
    assert ws["A1"].value == '=HYPERLINK("http://x","点我")' and ws["A1"].data_type == "s"
    written = {r[5]: r for r in summary_rows(wb)}
    for typed in INJECTIONS:
        text = typed.replace("\r", "\n")  # XML reads a carriage return back as a line feed
        assert written[text][6] == f"说明 {text}"
    assert written["响\ufffd铃"][3] == "=1+1"
    for row in ws.iter_rows():
        for cell in row:
            assert cell.data_type in ("s", "n"), cell.coordinate


def test_same_input_gives_the_same_bytes(mistaken):
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
    findings = [Finding("F-unreadable", ERROR, "文件已损坏或不完整")]
    data = annotate.annotated_workbook(content, "海口附件1.xlsx", findings, unit_name=UNIT, title=TITLE)
    wb = openpyxl.load_workbook(io.BytesIO(data))
    assert wb.sheetnames == [annotate.SUMMARY_SHEET]
    assert "无法在原表上标注" in wb.active["A4"].value
    assert summary_rows(wb)[0][6] == "文件已损坏或不完整"


def test_workbook_openpyxl_rejects_falls_back_to_a_copy_of_its_values(fill, rules):
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
    assert filled_cells(wb, "FFC7CE") == cells_of(findings, ERROR)


def test_findings_pointing_nowhere_are_listed_without_a_link(fill, rules):
    path = fill()
    sheet = rules.forms["warmth"].sheet
    findings = [
        Finding("R-type", ERROR, "不存在的工作表", sheet="别的表", cell="B8"),
        Finding("R-type", ERROR, "不是单元格地址", sheet=sheet, cell="第8行"),
        Finding("R-type", ERROR, "超出工作表范围", sheet=sheet, cell="XFE1"),
        Finding("R-type", ERROR, "合并单元格中间", sheet=sheet, cell="C2"),  # the title spans A2:I2
    ]
    wb = openpyxl.load_workbook(io.BytesIO(annotated(path, findings)))
    rows = {r[6]: r for r in summary_rows(wb)}
    ws = wb[annotate.SUMMARY_SHEET]
    links = {
        ws.cell(r, 7).value: ws.cell(r, 5).hyperlink for r in range(annotate.HEADER_ROW + 1, ws.max_row + 1)
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
    mistaken, rules, soffice_convert, poppler: Callable[..., str], tmp_path
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
        assert filled_cells(wb, "FFC7CE") == cells_of(found, ERROR), again.name
        assert filled_cells(wb, "FFEB9C") == cells_of(found, WARNING), again.name
        assert wb.sheetnames[0] == annotate.SUMMARY_SHEET and wb.active.title == annotate.SUMMARY_SHEET
        assert wb[template.META_SHEET].sheet_state == "hidden"
        for f in found:
            assert f.message in wb[f.sheet][f.cell].comment.text
        ws = wb[annotate.SUMMARY_SHEET]
        links = [ws.cell(r, 5).hyperlink for r in range(annotate.HEADER_ROW + 1, ws.max_row + 1)]
        assert sorted(link.location for link in links if link) == sorted(
            f"'{f.sheet}'!{f.cell}" for f in source if f.cell
        )
        (result,) = check.check_paths([again], rules)
        assert (result.unit, result.form) == ("460100", "warmth")
        assert sorted((f.rule, f.cell) for f in result.findings) == sorted((f.rule, f.cell) for f in found)

    wb = openpyxl.load_workbook(resaved[2])
    texts = {r[5] for r in summary_rows(wb)}
    assert {t.replace("\r", "\n") for t in INJECTIONS} <= texts  # LibreOffice, too, keeps them as text
    assert all(c.data_type != "f" for row in wb[annotate.SUMMARY_SHEET].iter_rows() for c in row)

    (fixed,) = check.check_paths([resaved[3]], rules)
    assert (fixed.unit, fixed.form, fixed.verdict) == ("460100", "warmth", "accepted"), fixed.findings

    info = poppler("pdfinfo", pdf)
    width, height = map(float, re.search(r"Page size:\s+([\d.]+) x ([\d.]+)", info).groups())
    assert width > height  # landscape
    text = poppler("pdftotext", "-l", "1", pdf, "-")
    assert TITLE in text and "问题说明" in text


def test_units_own_comment_survives_two_rounds(fill, rules):
    path = fill()
    sheet = rules.forms["warmth"].sheet
    wb = openpyxl.load_workbook(path)
    wb[sheet]["B8"].comment = Comment("含两户返乡职工", "填表人")
    wb.save(path)
    finding = Finding("R-type", ERROR, "应填整数", sheet=sheet, cell="B8")
    first = annotated(path, [finding])
    assert openpyxl.load_workbook(io.BytesIO(first))[sheet]["B8"].comment.text.endswith("含两户返乡职工")
    second = annotate.annotated_workbook(first, path.name, (), unit_name=UNIT, title=TITLE)
    assert openpyxl.load_workbook(io.BytesIO(second))[sheet]["B8"].comment.text == "含两户返乡职工"


def test_resent_copy_with_renamed_sheet_and_full_title_is_still_read(rules, tmp_path):
    form, unit = rules.forms["warmth"], rules.unit("460100")
    values = correct_values(rules, "warmth", "460100")
    values[("activities", "", "forums")] = "见附件"
    wb = openpyxl.load_workbook(io.BytesIO(demo.fill(rules, form, unit, values)))
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
