"""Reading filled forms: what people send back (moved rows, renamed sheets, .xls, photos) and what comes out."""

from __future__ import annotations

import io
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path

import openpyxl
import pytest
import xlwt
from openpyxl.workbook import Workbook
from openpyxl.worksheet.worksheet import Worksheet

from pipeline import checks
from pipeline.campaign import config, layout
from pipeline.model import (
    F_ENCRYPTED,
    F_IDENTITY,
    F_MACRO,
    F_STRUCTURE,
    F_TOO_LARGE,
    F_UNREADABLE,
    F_UNRECOGNISED,
    Finding,
    Read,
    Severity,
)
from pipeline.render import template
from pipeline.submission import read, workbook
from pipeline.submission.sniff import Package

RULES = checks.load(Path(__file__).parents[1] / "rules.yaml")
WARMTH = RULES.forms["warmth"]
CENTER = RULES.forms["center"]
LAY = layout.compute(WARMTH)

AGRI_HOUSEHOLDS = ("visits", "agri", "households")
TOTAL_HOUSEHOLDS = ("visits", "total", "households")
FUND_UNION = ("funds", "", "fund_union")
LEADER = ("sign", "", "leader")


def cell_of(key: tuple[str, str, str], lay: layout.Layout = LAY) -> str:
    return lay.slot(*key).cell


def filled(unit: str = "460100", form: config.Form = WARMTH) -> tuple[Workbook, Worksheet]:
    """A template as a person fills it in Excel: a few numbers and the footer."""
    wb = template.build(RULES, form, RULES.unit(unit))
    ws = wb[form.sheet]
    if form is WARMTH:
        ws[cell_of(AGRI_HOUSEHOLDS)] = 12
        ws[cell_of(FUND_UNION)] = 3.5
        ws[cell_of(LEADER)] = "张三"
    return wb, ws


def save(wb: Workbook, tmp_path: Path, name: str = "海口市总工会_附件1_2016年工会送温暖统计表.xlsx") -> Path:
    path = tmp_path / name
    wb.save(path)
    return path


def read_wb(wb: Workbook, tmp_path: Path, name: str = "海口市总工会_附件1_2016年工会送温暖统计表.xlsx"):
    return read.read_path(save(wb, tmp_path, name), RULES)


def only(findings: list[Finding], rule: str) -> list[Finding]:
    return [f for f in findings if f.rule == rule]


def values(sub: Read) -> dict[tuple[str, str, str], object]:
    return {k: c.raw for k, c in sub.cells.items()}


# --- identity ----------------------------------------------------------------------------------------------


def test_template_is_identified_by_its_hidden_meta_sheet(tmp_path: Path) -> None:
    wb, _ = filled()
    sub = read_wb(wb, tmp_path)
    assert (sub.form, sub.unit, sub.identity_source, sub.readable) == ("warmth", "460100", "_meta", True)
    assert sub.findings == []
    assert len(sub.cells) == len(LAY.slots)
    got = values(sub)
    assert got[AGRI_HOUSEHOLDS] == 12
    assert got[FUND_UNION] == 3.5
    assert got[LEADER] == "张三"
    assert got[("visits", "mfg", "households")] is None
    cell = sub.cells[AGRI_HOUSEHOLDS]
    assert (cell.sheet, cell.address) == (WARMTH.sheet, cell_of(AGRI_HOUSEHOLDS))


def test_center_form_of_the_help_center_is_identified(tmp_path: Path) -> None:
    wb, ws = filled("ZX", CENTER)
    lay = layout.compute(CENTER)
    ws[cell_of(("aid", "medical", "amount"), lay)] = 2.25
    sub = read_wb(wb, tmp_path, "帮扶中心统计表.xlsx")
    assert (sub.form, sub.unit) == ("center", "ZX")
    assert sub.findings == []
    assert sub.cells[("aid", "medical", "amount")].raw == 2.25


def test_unit_is_recognised_from_the_unit_cell_when_meta_is_deleted(tmp_path: Path) -> None:
    wb, ws = filled()
    del wb[template.META_SHEET]
    ws[LAY.unit_name_cell] = "海口"
    sub = read_wb(wb, tmp_path, "统计表.xlsx")
    assert (sub.form, sub.unit, sub.identity_source) == ("warmth", "460100", "title")
    assert sub.findings == []
    assert sub.cells[AGRI_HOUSEHOLDS].raw == 12


def test_unit_typed_into_the_label_cell_itself_is_recognised(tmp_path: Path) -> None:
    wb, ws = filled()
    del wb[template.META_SHEET]
    ws[LAY.unit_label_cell] = "填报单位:【白沙县】"
    ws[LAY.unit_name_cell] = None
    sub = read_wb(wb, tmp_path, "统计表.xlsx")
    assert (sub.unit, sub.identity_source) == ("469025", "title")


def test_unit_comes_from_the_file_name_when_meta_and_unit_cell_are_missing(tmp_path: Path) -> None:
    wb, ws = filled()
    del wb[template.META_SHEET]
    ws[LAY.unit_name_cell] = None
    sub = read_wb(wb, tmp_path, "三亚市总工会_附件1_2016年工会送温暖统计表.xlsx")
    assert (sub.form, sub.unit, sub.identity_source) == ("warmth", "460200", "filename")
    assert sub.findings == []


def test_form_title_in_the_file_name_is_not_taken_for_the_help_center_unit(tmp_path: Path) -> None:
    wb, ws = filled("469005", CENTER)
    del wb[template.META_SHEET]
    ws[layout.compute(CENTER).unit_name_cell] = None
    sub = read_wb(wb, tmp_path, "文昌_附件2_2016年度困难职工帮扶中心工作统计表.xlsx")
    assert (sub.form, sub.unit) == ("center", "469005")


def test_meta_and_unit_cell_naming_different_units_is_an_identity_error(tmp_path: Path) -> None:
    wb, ws = filled()
    ws[LAY.unit_name_cell] = "三亚市总工会"
    sub = read_wb(wb, tmp_path)
    assert sub.unit == "460100"
    [f] = only(sub.findings, F_IDENTITY)
    assert f.severity == Severity.ERROR
    assert f.message.startswith('隐藏信息显示为 海口市总工会(460100),而填报单位填写的是"三亚市总工会"')


def test_unknown_unit_everywhere_is_an_identity_error(tmp_path: Path) -> None:
    wb, ws = filled()
    del wb[template.META_SHEET]
    ws[LAY.unit_name_cell] = "某某公司"
    sub = read_wb(wb, tmp_path, "统计表.xlsx")
    assert sub.form == "warmth" and sub.unit is None
    [f] = only(sub.findings, F_IDENTITY)
    assert f.severity == Severity.ERROR and "某某公司" in f.message and "统计表.xlsx" in f.message


def test_meta_codes_resaved_as_numbers_are_read_as_text(tmp_path: Path) -> None:
    wb, _ = filled()
    meta = wb[template.META_SHEET]
    assert meta["A2"].value == "unit"
    meta["B2"] = 460100  # what a spreadsheet program makes of a code typed without the text format
    sub = read_wb(wb, tmp_path)
    assert (sub.unit, sub.identity_source) == ("460100", "_meta")


def test_each_copy_of_a_template_keeps_its_own_unit_and_cells(tmp_path: Path) -> None:
    # The copies share the `_meta` map, read once; the unit's code and the figures are each file's own.
    first, ws = filled("460100")
    second, other = filled("460200")
    other[cell_of(AGRI_HOUSEHOLDS)] = 7
    a = read_wb(first, tmp_path, "海口.xlsx")
    b = read_wb(second, tmp_path, "三亚.xlsx")
    assert [(s.unit, s.identity_source, s.findings) for s in (a, b)] == [
        ("460100", "_meta", []),
        ("460200", "_meta", []),
    ]
    assert (values(a)[AGRI_HOUSEHOLDS], values(b)[AGRI_HOUSEHOLDS]) == (12, 7)
    assert b.cells[AGRI_HOUSEHOLDS].address == cell_of(AGRI_HOUSEHOLDS)


def test_a_campaign_is_prepared_once_and_its_template_map_kept_for_the_next_copies(tmp_path: Path) -> None:
    reader = read.Reader.of(RULES)
    assert read.Reader.of(RULES) is reader  # one per loaded rules, whichever caller reads
    read_wb(filled("460100")[0], tmp_path, "海口.xlsx")
    shared = reader.templates.known(("warmth", WARMTH.version, RULES.sha256))
    assert shared is not None and shared[AGRI_HOUSEHOLDS] == (WARMTH.sheet, cell_of(AGRI_HOUSEHOLDS))
    other = config.load(RULES.source)  # another load is another campaign as far as caching goes
    assert read.Reader.of(other) is not reader and other.sha256 == RULES.sha256


@pytest.mark.parametrize("code", ["460100", 460100])
def test_meta_of_a_form_resaved_by_libreoffice_is_read_from_its_shared_strings(
    tmp_path: Path, soffice_convert: Callable[..., Path], code: object
) -> None:
    # LibreOffice, like Excel, keeps text in a shared-strings part: the `_meta` head is read from there.
    wb, _ = filled()
    wb[template.META_SHEET]["B2"] = code
    (tmp_path / "sent").mkdir()
    resaved = soffice_convert(save(wb, tmp_path / "sent", "海口.xlsx"), "xlsx", tmp_path / "resaved")
    data = resaved.read_bytes()
    assert b"sharedStrings" in zipfile.ZipFile(io.BytesIO(data)).read("[Content_Types].xml")
    head = workbook.meta_head(Package(data))
    assert head is not None and (head.form, head.unit, head.version) == ("warmth", "460100", WARMTH.version)
    sub = read.read_submission(data, "海口.xlsx", RULES)
    assert (sub.form, sub.unit, sub.identity_source, sub.findings) == ("warmth", "460100", "_meta", [])
    assert values(sub)[AGRI_HOUSEHOLDS] == 12


def test_cells_sent_from_a_child_arrive_whole_and_are_unpacked_only_when_looked_at(tmp_path: Path) -> None:
    import pickle

    sub = read_wb(filled()[0], tmp_path)
    arrived = pickle.loads(pickle.dumps(read.Packed(sub.cells)))
    assert arrived._packed is not None  # nothing unpacked yet: most forms never need their cells again
    assert arrived[AGRI_HOUSEHOLDS] == sub.cells[AGRI_HOUSEHOLDS] and dict(arrived) == dict(sub.cells)
    assert pickle.loads(pickle.dumps(arrived)) == sub.cells


def test_workbook_that_is_not_one_of_our_forms_is_unrecognised(tmp_path: Path) -> None:
    wb = openpyxl.Workbook()
    ws = wb.active
    assert ws is not None
    ws["A1"] = "2016年职工工资表"
    ws["A2"] = "姓名"
    sub = read_wb(wb, tmp_path, "工资.xlsx")
    assert sub.readable and sub.form is None
    [f] = sub.findings
    assert f.rule == F_UNRECOGNISED and f.severity == Severity.ERROR
    assert f.message.startswith("无法识别为本次活动的报表:")
    assert "2016年职工工资表" in f.message and "工资.xlsx" in f.message


def test_two_forms_in_one_file_is_an_error_and_the_first_is_read(tmp_path: Path) -> None:
    wb, _ = filled()
    other = wb.create_sheet("附件2")
    other["A2"] = CENTER.title  # the other form pasted into a second sheet
    sub = read_wb(wb, tmp_path)
    assert (sub.form, sub.unit) == ("warmth", "460100")
    [f] = sub.findings
    assert (f.rule, f.severity) == (F_STRUCTURE, Severity.ERROR)
    assert (
        f.message
        == f"一个文件中有多张报表(《{WARMTH.title}》、《{CENTER.title}》),请每张报表单独保存为一个文件后分别报送"
    )
    assert sub.cells[AGRI_HOUSEHOLDS].raw == 12


# --- moved things ------------------------------------------------------------------------------------------


def test_renamed_sheet_is_found_by_content_with_a_warning(tmp_path: Path) -> None:
    wb, ws = filled()
    ws.title = "Sheet1"
    sub = read_wb(wb, tmp_path)
    [f] = sub.findings
    assert (f.rule, f.severity) == (F_STRUCTURE, Severity.WARNING)
    assert f.message == '工作表名称已由"送温暖统计表"改为"Sheet1",已按内容识别'
    assert sub.cells[AGRI_HOUSEHOLDS].raw == 12
    assert sub.cells[AGRI_HOUSEHOLDS].sheet == "Sheet1"


def test_rows_inserted_above_table_are_found_with_a_warning(tmp_path: Path) -> None:
    wb, ws = filled()
    ws.insert_rows(1, 2)  # the hidden map now points two rows too high
    sub = read_wb(wb, tmp_path)
    [f] = sub.findings
    assert (f.rule, f.severity) == (F_STRUCTURE, Severity.WARNING)
    assert f.message == "表格位置与模板不同(在上方插入了 2 行),已按标签识别"
    assert sub.cells[AGRI_HOUSEHOLDS].raw == 12
    assert sub.cells[AGRI_HOUSEHOLDS].address == "B10"
    assert sub.cells[FUND_UNION].raw == 3.5
    assert sub.cells[LEADER].raw == "张三"
    assert sub.unit == "460100"


def test_row_inserted_inside_a_table_moves_only_what_is_below(tmp_path: Path) -> None:
    wb, ws = filled()
    mfg_row = int(cell_of(("visits", "mfg", "households"))[1:])
    ws.insert_rows(mfg_row)
    ws[f"A{mfg_row}"] = "自行添加的行业"
    sub = read_wb(wb, tmp_path)
    [f] = sub.findings
    assert f.severity == Severity.WARNING
    assert "表一 慰问情况(按行业)中有行被插入或删除" in f.message
    assert "表二 资金来源下移 1 行" in f.message
    assert sub.cells[AGRI_HOUSEHOLDS].raw == 12
    assert sub.cells[FUND_UNION].raw == 3.5


def test_deleted_column_leaves_its_field_unlocated_as_a_structure_error(tmp_path: Path) -> None:
    wb, ws = filled()
    ws.delete_cols(3)  # C: 其中:建档困难职工 in 表一 (and a field of each section below)
    sub = read_wb(wb, tmp_path)
    errors = [f for f in only(sub.findings, F_STRUCTURE) if f.severity == Severity.ERROR]
    missing = [f for f in errors if f.field == "households_archived"]
    assert len(missing) == 1
    assert '找不到表一 慰问情况(按行业)的"其中:建档困难职工(户)"' in missing[0].message
    assert missing[0].message.startswith('工作表"送温暖统计表"')
    assert ("visits", "agri", "households_archived") not in sub.cells
    assert sub.cells[AGRI_HOUSEHOLDS].raw == 12  # column B did not move


# --- formulas ----------------------------------------------------------------------------------------------


def test_formula_without_cached_value_is_flagged(tmp_path: Path) -> None:
    wb, ws = filled()
    ws[cell_of(AGRI_HOUSEHOLDS)] = "=1+1"  # openpyxl, like any script, stores no result
    sub = read_wb(wb, tmp_path)
    cell = sub.cells[AGRI_HOUSEHOLDS]
    assert cell.formula_without_value and cell.formula == "1+1" and cell.raw is None
    assert sub.cells[TOTAL_HOUSEHOLDS].formula_without_value  # the template's own SUM, never computed
    assert not sub.cells[FUND_UNION].formula_without_value


def test_formula_with_cached_value_is_read_as_its_value(tmp_path: Path) -> None:
    wb, _ = filled()
    total = cell_of(TOTAL_HOUSEHOLDS)
    data = template.to_bytes(wb, results={total: 12})  # as Excel, WPS and LibreOffice save it
    sub = read.read_submission(data, "海口.xlsx", RULES)
    cell = sub.cells[TOTAL_HOUSEHOLDS]
    assert cell.raw == 12 and not cell.formula_without_value
    assert cell.formula.startswith("SUM(")


# --- files that are not what they claim ----------------------------------------------------------------------


def xls_bytes(wb: Workbook) -> bytes:
    """The workbook retyped as a real .xls (BIFF8), as units save it from old Excel or WPS."""
    book = xlwt.Workbook(encoding="utf-8")
    for ws in wb.worksheets:
        sheet = book.add_sheet(ws.title)
        for row in ws.iter_rows():
            for c in row:
                if c.value is None or (isinstance(c.value, str) and c.value.startswith("=")):
                    continue
                sheet.write(c.row - 1, c.column - 1, c.value)
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


def test_xls_named_xlsx_is_read_by_its_content() -> None:
    wb, _ = filled()
    sub = read.read_submission(xls_bytes(wb), "海口市总工会.xlsx", RULES)
    assert (sub.form, sub.unit, sub.readable) == ("warmth", "460100", True)
    assert sub.findings == []
    assert sub.cells[AGRI_HOUSEHOLDS].raw == 12
    assert sub.cells[LEADER].raw == "张三"


def _name_entry(data: bytearray, at: int, name: str) -> None:
    """Write `name` into the OLE2 directory entry at offset `at` ([MS-CFB] 2.6.1: UTF-16 name, its length)."""
    encoded = f"{name}\0".encode("utf-16-le")
    data[at : at + 64] = encoded.ljust(64, b"\0")
    data[at + 64 : at + 66] = len(encoded).to_bytes(2, "little")


def renamed_stream(data: bytes, new: str) -> bytes:
    """The .xls with its Workbook stream renamed: the OLE2 container of another kind of file."""
    out = bytearray(data)
    _name_entry(out, out.index("Workbook\0".encode("utf-16-le")), new)
    return bytes(out)


def with_storages(data: bytes, *names: str) -> bytes:
    """The .xls (as xlwt writes it: a Workbook stream, then free directory entries) with a chain of empty
    storages added beside Workbook, each inside the one before, as _VBA_PROJECT_CUR/VBA holds a macro project."""
    out = bytearray(data)
    directory = (int.from_bytes(out[0x30:0x34], "little") + 1) * 512
    for i, name in enumerate(names):
        at = directory + 128 * (2 + i)
        _name_entry(out, at, name)
        out[at + 66 : at + 68] = b"\x01\x01"  # a storage, black in the red-black tree
        out[at + 68 : at + 80] = b"\xff" * 12  # no siblings, no child yet
        link = directory + 128 + 72 if i == 0 else at - 128 + 76  # Workbook's right sibling, else the child
        out[link : link + 4] = (2 + i).to_bytes(4, "little")
    return bytes(out)


def encrypted_bytes() -> bytes:
    """An OLE2 file holding an EncryptionInfo stream: how Office wraps a password-protected .xlsx."""
    return renamed_stream(xls_bytes(openpyxl.Workbook()), "EncryptionInfo")


def truncated_xlsx() -> bytes:
    wb, _ = filled()
    data = template.to_bytes(wb)
    return data[: len(data) // 2]


def zip_of(name: str, content: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(name, content)
    return buffer.getvalue()


Case = tuple[str, Callable[[], bytes], str, str, str]

REFUSED: list[Case] = [
    ("zero-byte", lambda: b"", "a.xlsx", F_UNREADABLE, "文件是空的(0 字节)"),
    (
        "pdf",
        lambda: b"%PDF-1.4\n1 0 obj\n",
        "海口.xlsx",
        F_UNREADABLE,
        "内容实际是一个 PDF 文件,不是 Excel 表格",
    ),
    ("photo", lambda: b"\xff\xd8\xff\xe0\x00\x10JFIF\x00", "表.jpg", F_UNREADABLE, "这是一张图片(JPEG)"),
    ("truncated zip", truncated_xlsx, "海口.xlsx", F_UNREADABLE, "文件已损坏或不完整"),
    (
        "text named xlsx",
        lambda: "单位,户数\n海口,12\n".encode(),
        "海口.xlsx",
        F_UNREADABLE,
        '内容实际是一个纯文本文件(开头是"单位,户数")',
    ),
    (
        "word in a zip",
        lambda: zip_of("word/document.xml", b"<w/>"),
        "海口.docx",
        F_UNREADABLE,
        "文字处理文档",
    ),
    ("encrypted xlsx", encrypted_bytes, "海口.xlsx", F_ENCRYPTED, "文件设置了打开密码,请取消密码后重新报送"),
    (
        "word 97 named xls",
        lambda: renamed_stream(xls_bytes(openpyxl.Workbook()), "WordDocument"),
        "海口.xls",
        F_UNREADABLE,
        "文件扩展名是 .xls,但内容实际是一个 Word 文档(.doc)",
    ),
    (
        "powerpoint 97",
        lambda: renamed_stream(xls_bytes(openpyxl.Workbook()), "PowerPoint Document"),
        "海口.ppt",
        F_UNREADABLE,
        "这是一个演示文稿(.ppt),不是 Excel 表格",
    ),
    (
        "ole header only",
        lambda: xls_bytes(openpyxl.Workbook())[:512],
        "海口.xls",
        F_UNREADABLE,
        "文件已损坏或不完整",
    ),
    (
        "too large",
        lambda: b"PK\x03\x04" + bytes(read.DEFAULT_LIMITS.max_bytes),
        "海口.xlsx",
        F_TOO_LARGE,
        "超过 20 MB 的上限",
    ),
    ("zip bomb", lambda: zip_of("xl/workbook.xml", bytes(4 * 2**20)), "海口.xlsx", F_TOO_LARGE, "压缩比高达"),
]


@pytest.mark.parametrize(
    ("data", "name", "rule", "words"), [c[1:] for c in REFUSED], ids=[c[0] for c in REFUSED]
)
def test_file_that_cannot_be_read_gets_one_clear_verdict(
    data: Callable[[], bytes], name: str, rule: str, words: str
) -> None:
    sub = read.read_submission(data(), name, RULES)
    assert not sub.readable
    assert (sub.form, sub.unit, sub.cells) == (None, None, {})
    [f] = sub.findings
    assert (f.rule, f.severity) == (rule, Severity.ERROR)
    assert words in f.message


def test_xls_with_a_macro_project_is_read_with_a_warning() -> None:
    wb, _ = filled()
    sub = read.read_submission(
        with_storages(xls_bytes(wb), "_VBA_PROJECT_CUR", "VBA"), "海口市总工会.xls", RULES
    )
    assert (sub.form, sub.unit, sub.readable) == ("warmth", "460100", True)
    assert [(f.rule, f.severity) for f in sub.findings] == [(F_MACRO, Severity.WARNING)]
    assert sub.cells[AGRI_HOUSEHOLDS].raw == 12


def test_xls_with_other_storages_has_no_macro_warning() -> None:
    wb, _ = filled()
    sub = read.read_submission(with_storages(xls_bytes(wb), "ObjectPool"), "海口市总工会.xls", RULES)
    assert (sub.form, sub.unit, sub.findings) == ("warmth", "460100", [])


def test_file_vanishing_before_it_is_read_is_unreadable(tmp_path: Path) -> None:
    sub = read.read_path(tmp_path / "已删除.xlsx", RULES)
    assert not sub.readable and sub.file == "已删除.xlsx"
    assert sub.findings[0].rule == F_UNREADABLE


def test_reading_does_not_import_openpyxl() -> None:
    code = "import sys, pipeline.submission.read; sys.exit('openpyxl' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).parents[1]).returncode == 0
