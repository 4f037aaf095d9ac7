"""The written summary for leadership: a Word document in the federation's layout, named once per edition,
which LibreOffice opens and prints with the headline figures, their coverage and last year's change."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from pipeline import demo
from pipeline.cli import app
from pipeline.io.outbox import SUMMARY_DIR
from pipeline.render import wordfile
from tests.conftest import docx_text

runner = CliRunner()
DRAFT_AS_OF = "2017-02-01T12:00"
WRITER_PDF = "pdf:writer_pdf_Export"


def _run(inbox: Path, out: Path, state: Path, *extra: str) -> str:
    result = runner.invoke(
        app, ["run", "--inbox", str(inbox), "--outbox", str(out), "--state", str(state), *extra]
    )
    assert result.exit_code == 0, result.output
    return result.output


def test_the_draft_summary_is_a_word_document_and_no_markdown(rules, tmp_path):
    inbox, out, state = tmp_path / "inbox", tmp_path / "out", tmp_path / "state"
    demo.make(rules, inbox, seed=3)
    _run(inbox, out, state, "--as-of", DRAFT_AS_OF)
    names = sorted(p.name for p in (out / SUMMARY_DIR).iterdir() if p.is_file())
    assert "2017年元旦春节送温暖活动总结(草稿).docx" in names
    assert not [n for n in names if n.endswith(".md")]
    text = docx_text((out / SUMMARY_DIR / "2017年元旦春节送温暖活动总结(草稿).docx").read_bytes())
    headings = [
        line.strip() for line in text.splitlines() if line.strip()[:2] in {f"{n}、" for n in "一二三四五六"}
    ]
    assert headings == [
        "一、组织开展情况",
        "二、筹集和发放资金情况",
        "三、走访慰问情况",
        "四、帮扶中心工作情况",
        "五、存在的问题",
        "六、下步打算",
    ]
    assert (
        text.index("中华全国总工会:")
        < text.index("一、组织开展情况")
        < text.index("海南省总工会\n2017年2月1日")
    )
    assert "附件:1. 2017年元旦春节送温暖活动汇总表(草稿).xlsx" in text


def test_the_summary_opens_in_libreoffice_with_figures_and_coverage(
    rules, tmp_path, soffice_convert, poppler
):
    inbox, out, state = tmp_path / "inbox", tmp_path / "out", tmp_path / "state"
    demo.make(rules, inbox, seed=3)
    _run(inbox, out, state, "--as-of", DRAFT_AS_OF)
    docx = out / SUMMARY_DIR / "2017年元旦春节送温暖活动总结(草稿).docx"
    pdf = soffice_convert(docx, WRITER_PDF, tmp_path / "pdf")
    text = poppler("pdftotext", pdf, "-")
    flat = "".join(text.split())
    assert "关于2017年元旦春节送温暖活动情况的报告" in flat
    assert "已汇总15/21" in flat and "已汇总19/21" in flat  # 附件1 from 15 units, 附件2 from 19
    assert "慰问困难职工" in flat and "筹集送温暖资金" in flat
    fonts = poppler("pdffonts", pdf)
    assert "CJK" in fonts  # the Chinese text has a font that has its glyphs


def test_a_document_font_missing_here_gives_way_to_an_installed_one(monkeypatch):
    monkeypatch.setattr(wordfile, "_installed", lambda: frozenset({"Noto Serif CJK SC"}))
    assert wordfile.font(wordfile.BODY_FONTS) == "Noto Serif CJK SC"
    monkeypatch.setattr(wordfile, "_installed", lambda: frozenset({"仿宋_GB2312", "Noto Serif CJK SC"}))
    assert wordfile.font(wordfile.BODY_FONTS) == "仿宋_GB2312"
    monkeypatch.setattr(wordfile, "_installed", lambda: frozenset())
    assert wordfile.font(wordfile.TITLE_FONTS) == "方正小标宋简体"
