"""The written summary as a Word document (.docx, through python-docx's public API), in the layout of a
federation document (GB/T 9704): the title in 方正小标宋, the body in 仿宋_GB2312, headings in 黑体, 主送,
body, 附表, 附件, 落款 and date. Where a document font is not installed here, the nearest CJK font that is
takes its place, so that the copy printed or converted here has no missing glyphs.
"""

from __future__ import annotations

import functools
import io
import shutil
import subprocess
import zipfile
from collections.abc import Sequence

from docx import Document
from docx.document import Document as Doc
from docx.enum.section import WD_ORIENT
from docx.enum.style import WD_STYLE_TYPE
from docx.enum.table import WD_TABLE_ALIGNMENT
from docx.enum.text import WD_ALIGN_PARAGRAPH
from docx.oxml.ns import qn
from docx.shared import Cm, Pt, RGBColor
from docx.styles.style import ParagraphStyle
from docx.text.paragraph import Paragraph

from pipeline.render.summary import FIGURE_HEADERS, Written

# The document fonts a federation document asks for, each followed by what stands in where it is missing.
TITLE_FONTS = ("方正小标宋简体", "方正小标宋_GBK", "华文中宋", "Noto Serif CJK SC", "Source Han Serif SC")
HEADING_FONTS = ("黑体", "SimHei", "Noto Sans CJK SC", "Source Han Sans SC")
BODY_FONTS = ("仿宋_GB2312", "仿宋", "FangSong", "Noto Serif CJK SC", "Source Han Serif SC")
LATIN_FONT = "Times New Roman"


@functools.lru_cache(maxsize=1)
def _installed() -> frozenset[str]:
    """The CJK font families fontconfig knows (none where it is absent, e.g. on Windows)."""
    if shutil.which("fc-list") is None:
        return frozenset()
    try:
        out = subprocess.run(
            ["fc-list", ":lang=zh", "family"], capture_output=True, text=True, timeout=10, check=False
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return frozenset()
    return frozenset(name.strip() for line in out.splitlines() for name in line.split(","))


def font(wanted: Sequence[str]) -> str:
    """The first of `wanted` installed here; the first of all when none is or fonts cannot be listed."""
    known = _installed()
    return next((name for name in wanted if name in known), wanted[0])


def _style(doc: Doc, name: str, east_asian: str, size: float, bold: bool = False) -> ParagraphStyle:
    styles = doc.styles
    style = (
        styles[name] if name in [s.name for s in styles] else styles.add_style(name, WD_STYLE_TYPE.PARAGRAPH)
    )
    style.font.name = LATIN_FONT
    style.font.size = Pt(size)
    style.font.bold = bold
    style.font.color.rgb = RGBColor(0, 0, 0)
    # Word takes Chinese text's font from eastAsia, not from the name python-docx sets.
    style.element.get_or_add_rPr().get_or_add_rFonts().set(qn("w:eastAsia"), east_asian)
    return style


def _styles(doc: Doc) -> dict[str, ParagraphStyle]:
    body = font(BODY_FONTS)
    out = {
        "Normal": _style(doc, "Normal", body, 16),  # 三号
        "公文标题": _style(doc, "公文标题", font(TITLE_FONTS), 22),  # 二号
        "一级标题": _style(doc, "一级标题", font(HEADING_FONTS), 16),
        "表格": _style(doc, "表格", body, 10.5),  # 五号
        "说明": _style(doc, "说明", body, 12),
    }
    for name in ("Normal", "表格", "说明"):
        fmt = out[name].paragraph_format
        fmt.space_before, fmt.space_after = Pt(0), Pt(0)
    out["Normal"].paragraph_format.line_spacing = Pt(28)
    return out


def _paragraph(
    doc: Doc, text: str, style: str, indent: bool = True, align: WD_ALIGN_PARAGRAPH | None = None
) -> Paragraph:
    p = doc.add_paragraph(text, style=style)
    if indent:
        p.paragraph_format.first_line_indent = Pt(32)  # two characters of 三号
    if align is not None:
        p.alignment = align
    return p


# The per-unit table goes into the summary up to this many rows (a province's units and subtotals): python-docx
# builds each cell through its style lookup, about 10 ms a row, and a summary is not where 3,000 rows are read.
TABLE_ROWS = 200


def _table(doc: Doc, rows: Sequence[Sequence[str]], widths: Sequence[float] = ()) -> None:
    table = doc.add_table(rows=len(rows), cols=len(rows[0]))
    table.style = "Table Grid"
    table.alignment = WD_TABLE_ALIGNMENT.CENTER
    table.autofit = False
    # Word reads a column's width from its cells; the first column holds a name, the others figures.
    widths = widths or (3.2, *[(15.6 - 3.2) / (len(rows[0]) - 1)] * (len(rows[0]) - 1))
    # A row's own cells: table.cell(i, j) walks the whole table each time (hours for 3,000 units).
    for i, (row, line) in enumerate(zip(rows, table.rows, strict=True)):
        for j, (text, cell) in enumerate(zip(row, line.cells, strict=True)):
            cell.text = ""
            p = cell.paragraphs[0]
            p.style = "表格"
            run = p.add_run(text)
            run.bold = i == 0
            p.alignment = WD_ALIGN_PARAGRAPH.LEFT if j == 0 else WD_ALIGN_PARAGRAPH.CENTER
            cell.width = Cm(widths[j])


def summary_docx(w: Written) -> bytes:
    """The summary as .docx bytes, A4 portrait with a federation document's margins."""
    doc = Document()
    section = doc.sections[0]
    section.orientation = WD_ORIENT.PORTRAIT
    section.page_width, section.page_height = Cm(21), Cm(29.7)
    section.top_margin, section.bottom_margin = Cm(3.7), Cm(3.5)
    section.left_margin, section.right_margin = Cm(2.8), Cm(2.6)
    _styles(doc)
    props = doc.core_properties
    props.title, props.author, props.comments = w.title, w.author, ""
    _paragraph(doc, w.stamp, "说明", indent=False, align=WD_ALIGN_PARAGRAPH.RIGHT)
    _paragraph(doc, w.title, "公文标题", indent=False, align=WD_ALIGN_PARAGRAPH.CENTER)
    _paragraph(doc, "【编辑说明,上报前删去】", "说明", indent=False)
    for note in w.notes:
        _paragraph(doc, note, "说明", indent=False)
    _paragraph(doc, f"{w.recipient}:", "Normal", indent=False)
    _paragraph(doc, w.opening, "Normal")
    for part in w.parts:
        _paragraph(doc, part.heading, "一级标题")
        for text in part.text:
            _paragraph(doc, text, "Normal")
        if part.figures:
            _table(doc, [FIGURE_HEADERS, *part.figures], (4.4, 3.4, 3.4, 2.0, 2.4))
        if part.hint:
            _paragraph(doc, part.hint, "Normal")
    if w.checks:
        _paragraph(doc, f"{'一二三四五六七八九十'[min(len(w.parts), 9)]}、需核实的数据", "一级标题")
        for line in w.checks:
            _paragraph(doc, line, "说明", indent=False)
    if len(w.table) > TABLE_ROWS:  # a national roll-up: pages of rows nobody reads in a summary
        _paragraph(doc, "附表:分单位汇总", "一级标题")
        _paragraph(doc, f"共 {len(w.table) - 1} 行,见附件汇总表(分单位的各张工作表)。", "Normal")
    elif w.table:
        _paragraph(doc, "附表:分单位汇总", "一级标题")
        _table(doc, w.table)
    if w.attachments:
        _paragraph(doc, "", "Normal", indent=False)
        for i, name in enumerate(w.attachments, start=1):
            _paragraph(doc, f"{'附件:' if i == 1 else '　　　'}{i}. {name}", "Normal", indent=False)
    _paragraph(doc, "", "Normal", indent=False)
    _paragraph(doc, w.author, "Normal", indent=False, align=WD_ALIGN_PARAGRAPH.RIGHT)
    _paragraph(doc, w.date, "Normal", indent=False, align=WD_ALIGN_PARAGRAPH.RIGHT)
    out = io.BytesIO()
    doc.save(out)
    return _fixed(out.getvalue())


def _fixed(data: bytes) -> bytes:
    """The package with every member dated 1980-01-01: python-docx stamps each with the time of saving, and
    the same consolidation must give the same bytes (a rerun with nothing new rewrites nothing)."""
    out = io.BytesIO()
    with (
        zipfile.ZipFile(io.BytesIO(data)) as source,
        zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target,
    ):
        for info in source.infolist():
            member = zipfile.ZipInfo(info.filename, date_time=(1980, 1, 1, 0, 0, 0))
            member.compress_type = zipfile.ZIP_DEFLATED
            target.writestr(member, source.read(info.filename))
    return out.getvalue()
