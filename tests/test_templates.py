"""Each unit's blank form: one file per unit and form it owes, protected, with its identity filled in, the
hidden `_meta` map of every slot, and a shape that survives LibreOffice opening and saving it."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from pathlib import Path

import openpyxl
import pytest
from openpyxl.cell import Cell
from openpyxl.utils.cell import coordinate_from_string
from openpyxl.workbook import Workbook
from openpyxl.worksheet.worksheet import Worksheet
from python_calamine import CalamineWorkbook

from pipeline.campaign import config, layout
from pipeline.io import atomic
from pipeline.render import template

CHINESE = re.compile(r"[\u4e00-\u9fff]")
META_KEYS = ("form", "unit", "template_version", "rules_sha256")
META_HEADER = ("sheet", "cell", "section", "row", "field")
SLOT_LINES = {"warmth": 11 * 8 + 8 + 8 + 5, "center": 5 + 7 * 2 + 6 + 5}
INPUT_FILL = "FFF2CC"  # pale yellow


@dataclass(frozen=True)
class Written:
    unit: config.Unit
    form: config.Form
    path: Path


def written(rules: config.Rules, folder: Path, unit_code: str | None = None) -> list[Written]:
    """The blank templates written to `folder`, as `pipeline templates` writes them."""
    out = []
    for blank in template.blank_forms(rules, unit_code):
        atomic.write_bytes(folder / blank.name, blank.data)
        out.append(Written(blank.unit, blank.form, folder / blank.name))
    return out


@pytest.fixture(scope="module")
def templates(rules: config.Rules, tmp_path_factory: pytest.TempPathFactory) -> list[Written]:
    return written(rules, tmp_path_factory.mktemp("templates"))


MetaSlot = tuple[str, str, str, str, str]  # sheet, cell, section, row ("" for single values), field


def read_meta(wb: Workbook) -> tuple[list[tuple[str, str]], tuple[str, ...], list[MetaSlot]]:
    """The `_meta` sheet as (key, value) pairs, the header, and the slot lines; blanks read as ""."""
    rows = [
        tuple("" if v is None else v for v in (*r, *[None] * 5)[:5])
        for r in wb["_meta"].iter_rows(values_only=True)
    ]
    keys = [(str(r[0]), r[1]) for r in rows[:4]]
    return keys, rows[4], [tuple(r) for r in rows[5:]]  # type: ignore[misc]


def row_of(cell: str) -> int:
    return coordinate_from_string(cell)[1]


def column_of(cell: str) -> str:
    return coordinate_from_string(cell)[0]


# --- which files --------------------------------------------------------------------------------------


def test_one_file_per_unit_and_form(templates: list[Written]) -> None:
    assert len(templates) == 49
    assert sum(t.form.code == "warmth" for t in templates) == 28
    assert sum(t.form.code == "center" for t in templates) == 21
    names = {t.path.name for t in templates}
    assert len(names) == 49
    assert "海口市总工会_附件1_2016年工会送温暖统计表.xlsx" in names
    assert "海口市总工会_附件2_2016年度困难职工帮扶中心工作统计表.xlsx" in names
    assert "海南省职工服务(帮扶)中心_附件2_2016年度困难职工帮扶中心工作统计表.xlsx" in names
    assert "海南省教育工会_附件1_2016年工会送温暖统计表.xlsx" in names
    assert not any(n.startswith("海南省教育工会_附件2") for n in names)  # industry unions owe warmth only
    folder = templates[0].path.parent
    assert sorted(p.name for p in folder.iterdir()) == sorted(names)  # and no half-written leftovers


def test_unit_filter_writes_only_that_units_forms(rules: config.Rules, tmp_path: Path) -> None:
    made = written(rules, tmp_path, unit_code="ZX")
    assert len(made) == 2
    assert {t.form.code for t in made} == {"warmth", "center"}
    assert {t.unit.code for t in made} == {"ZX"}
    assert len(list(tmp_path.iterdir())) == 2


def test_meta_of_every_template_names_its_form_and_unit(
    rules: config.Rules, templates: list[Written]
) -> None:
    for t in templates:
        wb = openpyxl.load_workbook(t.path, read_only=True)
        keys, _, slots = read_meta(wb)
        wb.close()
        assert keys == [
            ("form", t.form.code),
            ("unit", t.unit.code),
            ("template_version", t.form.version),
            ("rules_sha256", rules.sha256),
        ], t.path.name
        assert len(slots) == SLOT_LINES[t.form.code], t.path.name


# --- one template, opened as a person's spreadsheet program would --------------------------------------


@dataclass
class Opened:
    file: Written
    wb: Workbook
    ws: Worksheet
    keys: list[tuple[str, str]]
    header: tuple[str, ...]
    slots: list[MetaSlot]

    @property
    def input_cells(self) -> set[str]:
        return {s[1] for s in self.slots if s[3] != "total"}

    @property
    def total_cells(self) -> set[str]:
        return {s[1] for s in self.slots if s[3] == "total"}

    def field(self, slot: MetaSlot) -> config.Field:
        return self.file.form.section(slot[2]).field(slot[4])


SAMPLES = [("460100", "warmth"), ("460100", "center"), ("ZX", "center"), ("XT01", "warmth")]


@pytest.fixture(scope="module", params=SAMPLES, ids=[f"{u}-{f}" for u, f in SAMPLES])
def opened(request: pytest.FixtureRequest, templates: list[Written]) -> Opened:
    unit, form = request.param
    file = next(t for t in templates if t.unit.code == unit and t.form.code == form)
    wb = openpyxl.load_workbook(file.path)
    keys, header, slots = read_meta(wb)
    return Opened(file, wb, wb[file.form.sheet], keys, header, slots)


def test_heading_names_the_unit_and_is_locked(opened: Opened) -> None:
    lay = layout.compute(opened.file.form)
    ws, unit = opened.ws, opened.file.unit
    assert ws[lay.title_cell].value == opened.file.form.title
    assert ws[lay.attachment_cell].value == opened.file.form.attachment
    assert ws[lay.unit_label_cell].value.startswith("填报单位")
    assert ws[lay.unit_name_cell].value == unit.name
    assert ws[lay.code_label_cell].value.startswith("单位代码")
    assert ws[lay.unit_code_cell].value == unit.code  # text, also for 460100
    for cell in (lay.title_cell, lay.unit_name_cell, lay.unit_code_cell):
        assert ws[cell].protection.locked, cell


def test_sheet_is_protected_without_a_password(opened: Opened) -> None:
    assert opened.ws.protection.sheet is True
    assert not opened.ws.protection.password
    assert opened.wb["_meta"].protection.sheet is True


def test_input_cells_are_unlocked_and_yellow_everything_else_locked(opened: Opened) -> None:
    ws = opened.ws
    for cell in opened.input_cells:
        assert ws[cell].protection.locked is False, cell
        assert ws[cell].fill.fill_type == "solid", cell
        assert ws[cell].fill.fgColor.rgb.upper().endswith(INPUT_FILL), cell
    written = [c for row in ws.iter_rows() for c in row if isinstance(c, Cell) and c.value is not None]
    assert written
    for c in written:
        if c.coordinate not in opened.input_cells:
            assert c.protection.locked is True, c.coordinate
            assert not (c.fill.fgColor.rgb or "").upper().endswith(INPUT_FILL), c.coordinate


def test_total_row_sums_exactly_the_detail_rows_above(opened: Opened) -> None:
    form = opened.file.form
    totals = [s for s in opened.slots if s[3] == "total"]
    assert len(totals) == sum(len(s.fields) for s in form.sections if s.total_row is not None)
    for _, cell, section, _, fld in totals:
        details = [s[1] for s in opened.slots if s[2] == section and s[4] == fld and s[3] != "total"]
        assert len(details) == len(form.section(section).detail_rows)
        assert {column_of(d) for d in details} == {column_of(cell)}
        rows = [row_of(d) for d in details]
        assert rows == list(range(rows[0], row_of(cell))), f"{cell}: detail rows {rows} are not just above it"
        assert opened.ws[cell].value == f"=SUM({details[0]}:{details[-1]})"
        assert opened.ws[cell].protection.locked is True


def test_numeric_cells_have_chinese_validation(opened: Opened) -> None:
    validations = opened.ws.data_validations.dataValidation
    for slot in opened.slots:
        cell, f = slot[1], opened.field(slot)
        covering = [dv for dv in validations if cell in dv.sqref]
        if slot[3] == "total" or f.type in ("text", "phone"):
            assert covering == [], cell
            continue
        assert len(covering) == 1, cell
        dv = covering[0]
        assert dv.type == {"count": "whole", "money": "decimal", "date": "date"}[f.type], cell
        assert dv.showInputMessage and dv.showErrorMessage, cell
        assert CHINESE.search(dv.prompt) and CHINESE.search(dv.error), cell
        if f.numeric:
            assert dv.formula1 == "0", cell
        if f.max is not None:
            assert (dv.operator, dv.formula2) == ("between", str(int(f.max))), cell


def test_validation_prompt_names_the_cells_own_field(opened: Opened) -> None:
    validations = opened.ws.data_validations.dataValidation
    for slot in opened.slots:
        f = opened.field(slot)
        if slot[3] == "total" or not f.numeric:
            continue
        dv = next(dv for dv in validations if slot[1] in dv.sqref)
        assert f.label in dv.promptTitle and f.label in dv.error, f"{slot[1]} {f.label}: {dv.promptTitle}"


def test_frozen_header_and_a4_print_setup(opened: Opened) -> None:
    ws = opened.ws
    assert ws.freeze_panes is not None
    assert row_of(ws.freeze_panes) > row_of(layout.compute(opened.file.form).unit_name_cell)
    assert str(ws.page_setup.paperSize) == str(ws.PAPERSIZE_A4)
    assert int(ws.page_setup.fitToWidth) == 1
    assert ws.sheet_properties.pageSetUpPr.fitToPage is True
    assert ws.print_title_rows == "$1:$3"
    assert ws.print_area


def test_meta_sheet_is_hidden_and_maps_every_slot(rules: config.Rules, opened: Opened) -> None:
    form, unit = opened.file.form, opened.file.unit
    meta = opened.wb["_meta"]
    assert meta.sheet_state == "hidden"
    assert opened.wb.sheetnames == [form.sheet, "_meta"]
    assert opened.keys == [
        ("form", form.code),
        ("unit", unit.code),
        ("template_version", form.version),
        ("rules_sha256", rules.sha256),
    ]
    assert opened.header == META_HEADER
    assert len(opened.slots) == SLOT_LINES[form.code]
    expected = [
        (form.sheet, section.code, row.code if row else "", f.code) for section, row, f in form.slots()
    ]
    assert [(s[0], s[2], s[3], s[4]) for s in opened.slots] == expected
    assert len({s[1] for s in opened.slots}) == len(opened.slots)  # no cell serves two slots


def test_meta_cells_sit_beside_the_labels_a_person_reads(opened: Opened) -> None:
    ws, form = opened.ws, opened.file.form
    for slot in opened.slots:
        cell, section, row_code, f = slot[1], form.section(slot[2]), slot[3], opened.field(slot)
        r, c = row_of(cell), column_of(cell)
        if section.tabular:
            row = next(x for x in section.rows if x.code == row_code)
            assert ws[f"A{r}"].value == row.label, cell
            assert f.header in [ws[f"{c}{above}"].value for above in range(1, r)], cell
        elif section.footer:
            left = ws.cell(r, ws[cell].column - 1)
            assert left.value == f"{f.label}:", cell
        else:
            assert ws[f"{c}{r - 1}"].value == f.header, cell


# --- LibreOffice --------------------------------------------------------------------------------------


def test_libreoffice_opens_every_template(templates: list[Written], soffice_convert, tmp_path: Path) -> None:
    texts = soffice_convert([t.path for t in templates], "csv", tmp_path / "csv")
    assert len(texts) == len(templates)
    for t, text_path in zip(templates, texts, strict=True):
        text = text_path.read_text(encoding="utf-8")
        assert t.form.title in text, t.path.name
        assert t.unit.name in text, t.path.name
        assert f",{t.unit.code}," in text, t.path.name  # the code stays text: 460100, not 460100.0
        assert "合计" in text, t.path.name


def test_template_prints_as_one_a4_page_wide(
    templates: list[Written], soffice_convert, poppler, tmp_path: Path
) -> None:
    t = next(t for t in templates if t.unit.code == "460100" and t.form.code == "warmth")
    pdf = soffice_convert(t.path, "pdf", tmp_path / "pdf")
    assert pdf.read_bytes().startswith(b"%PDF")
    info = poppler("pdfinfo", pdf)
    assert "(A4)" in info
    first_page = poppler("pdftotext", "-layout", "-f", "1", "-l", "1", pdf, "-")
    assert t.form.title in first_page
    assert t.unit.name in first_page
    # fitToWidth: the table's last column is on the first page, beside the first.
    visits = t.form.section("visits")
    assert visits.rows[0].label in first_page
    assert visits.fields[-1].label in first_page


def test_each_template_prints_on_one_page_with_its_notes_signatures_and_seal(
    templates: list[Written], soffice_convert, poppler, tmp_path: Path
) -> None:
    """附件1's 填表说明 spilled onto a second page and 附件2's signatures sat apart from the figures: each form
    is one A4 landscape page, figures, signatures, 单位(盖章) and notes together."""
    chosen = [t for t in templates if t.unit.code == "469006" and t.form.code in ("warmth", "center")]
    assert len(chosen) == 2
    pdfs = soffice_convert([t.path for t in chosen], "pdf", tmp_path / "pdf")
    for t, pdf in zip(chosen, pdfs, strict=True):
        info = poppler("pdfinfo", pdf)
        assert re.search(r"Pages:\s+1\n", info) and "(A4)" in info, t.path.name
        page = poppler("pdftotext", "-layout", pdf, "-")
        width, height = map(float, re.search(r"Page size:\s+([\d.]+) x ([\d.]+)", info).groups())
        assert width > height  # landscape
        for text in (
            "单位负责人",
            "填表人",
            "联系电话",
            "填报日期",
            "单位(盖章)",
            "填表说明",
            t.form.sections[0].title,
        ):
            assert text in page, (t.path.name, text)
        assert "联系电话 0898-66553663" in page, t.path.name  # the last note, on the same page


# --- filled by a person, saved by LibreOffice ----------------------------------------------------------

SIGN = {
    "leader": "王海",
    "preparer": "李明",
    "phone": "0898-66553663",
    "date": dt.date(2017, 1, 20),
    "note": "春节前已全部发放到户",
}


def fill(opened_wb: Workbook, form: config.Form) -> dict[str, object]:
    """Type a value into every input cell of `_meta`, as a person would; return what went where."""
    _, _, slots = read_meta(opened_wb)
    ws = opened_wb[form.sheet]
    typed: dict[str, object] = {}
    for i, (_, cell, section, row, code) in enumerate(slots):
        if row == "total":
            continue
        f = form.section(section).field(code)
        if f.type == "count":
            value: object = (i * 7) % 40 + 1
        elif f.type == "money":
            value = round(((i * 13) % 97) / 4 + 0.05, 2)
        else:
            value = SIGN[code]
        ws[cell] = value
        typed[cell] = value
    return typed


def test_filled_template_survives_libreoffice_resave(
    rules: config.Rules, templates: list[Written], soffice_convert, tmp_path: Path
) -> None:
    chosen = [t for t in templates if t.unit.code == "460100"]  # both forms, one soffice call
    assert len(chosen) == 2
    filled_dir = tmp_path / "filled"
    filled_dir.mkdir()
    typed_by_form: dict[str, dict[str, object]] = {}
    originals: dict[str, tuple] = {}
    sources = []
    for t in chosen:
        wb = openpyxl.load_workbook(t.path)
        originals[t.form.code] = read_meta(wb)
        typed_by_form[t.form.code] = fill(wb, t.form)
        wb.save(filled_dir / t.path.name)
        sources.append(filled_dir / t.path.name)

    resaved = soffice_convert(sources, "xlsx", tmp_path / "resaved")

    for t, path in zip(chosen, resaved, strict=True):
        typed = typed_by_form[t.form.code]
        wb = openpyxl.load_workbook(path, data_only=True)
        assert wb["_meta"].sheet_state == "hidden"
        assert read_meta(wb) == originals[t.form.code]
        ws = wb[t.form.sheet]
        assert ws.protection.sheet is True
        _, _, slots = originals[t.form.code]
        for _, cell, section, row, code in slots:
            value = ws[cell].value
            if row == "total":
                details = [s[1] for s in slots if s[2] == section and s[4] == code and s[3] != "total"]
                assert value == pytest.approx(sum(typed[d] for d in details)), cell  # type: ignore[misc]
            elif isinstance(typed[cell], dt.date):
                assert isinstance(value, dt.datetime) and value.date() == typed[cell], cell
            elif isinstance(typed[cell], float):
                assert value == pytest.approx(typed[cell]), cell
            else:
                assert value == typed[cell], cell
            if row != "total":
                assert ws[cell].protection.locked is False, cell

        # What a reader built on calamine sees: the hidden map, codes as text.
        book = CalamineWorkbook.from_path(str(path))
        visibility = {s.name: str(s.visible) for s in book.sheets_metadata}
        assert "hidden" in visibility["_meta"].lower()
        meta_rows = book.get_sheet_by_name("_meta").to_python()
        assert [tuple(r[:2]) for r in meta_rows[:4]] == [
            ("form", t.form.code),
            ("unit", "460100"),
            ("template_version", t.form.version),
            ("rules_sha256", rules.sha256),
        ]
