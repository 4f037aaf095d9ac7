"""What leadership holds in its hands: the consolidated workbook and the report as printed (LibreOffice's and
Chromium's PDF, read back with poppler), on a final edition made with units missing (issues 14 and 18)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipeline import demo
from pipeline.cli import app
from pipeline.io.outbox import SUMMARY_DIR
from tests.conftest import require_program

runner = CliRunner()
FINAL_AS_OF = "2017-02-06T09:00"
EXPLANATION = "儋州市总工会等单位因故缺报,已电话催报"


@pytest.fixture(scope="module")
def final_edition(rules, tmp_path_factory) -> Path:
    """The demo campaign's first final edition, made after the deadline with units missing."""
    root = tmp_path_factory.mktemp("final")
    inbox, out, state = root / "inbox", root / "out", root / "state"
    demo.make(rules, inbox)
    folders = ("--inbox", str(inbox), "--outbox", str(out), "--state", str(state))
    args = ["run", *folders, "--as-of", FINAL_AS_OF, "--final", "--allow-missing", EXPLANATION]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return out


def _pages(pdf: Path, poppler) -> list[str]:
    count = int(re.search(r"Pages:\s+(\d+)", poppler("pdfinfo", pdf)).group(1))
    return [
        poppler("pdftotext", "-f", str(n), "-l", str(n), "-layout", pdf, "-") for n in range(1, count + 1)
    ]


def _bare(text: str) -> str:
    """A page's text without the spaces and line breaks that layout puts inside a wrapped cell."""
    return re.sub(r"\s+", "", text)


def _left_out(out: Path, item: str) -> list[tuple[str, str]]:
    """From 报送情况.json: the units whose `item` is not in the totals, with the state that says why."""
    rows = json.loads((out / "报送情况.json").read_text(encoding="utf-8"))["rows"]
    return [
        (r["unit_name"], r["state_label"]) for r in rows if r["item"] == item and r["version_used"] is None
    ]


def test_a_final_edition_with_six_units_missing_names_them_beside_every_total_it_prints(
    final_edition, tmp_path, soffice_convert, poppler
):
    missing = {"warmth": _left_out(final_edition, "warmth"), "center": _left_out(final_edition, "center")}
    assert len(missing["warmth"]) == 6 and missing["center"]  # the case: six units without 附件1
    (workbook,) = (final_edition / SUMMARY_DIR / "终稿第1版").glob("*汇总表*.xlsx")
    pages = _pages(soffice_convert(workbook, "pdf", tmp_path / "pdf"), poppler)
    text = "".join(pages)
    assert "全省合计" not in text  # a total short of units never carries the whole level's label
    seen = 0
    for units in missing.values():
        label = f"已汇总单位合计({21 - len(units)}/21)"
        with_total = [page for page in pages if label in page]
        assert with_total, label
        for page in with_total:  # the page that prints the total names who is not in it, and why
            for name, reason in units:
                assert f"{name}({reason})" in _bare(page), (label, name)
        seen += len(with_total)
    # 送温暖汇总 (three pages across), 分行业汇总, 市县×行业, 帮扶中心汇总 (three pages across)
    assert seen >= 8
    readme = _bare(pages[0])
    assert _bare(EXPLANATION) in readme and "缺报说明" in readme


def test_the_consolidated_sheets_print_without_spill_pages_or_cut_titles(
    final_edition, tmp_path, soffice_convert, poppler
):
    (workbook,) = (final_edition / SUMMARY_DIR / "终稿第1版").glob("*汇总表*.xlsx")
    pages = _pages(soffice_convert(workbook, "pdf", tmp_path / "pdf"), poppler)
    warmth = [
        p for p in pages if "2016年工会送温暖统计汇总表\n" in p or "2016年工会送温暖统计汇总表(续)" in p
    ]
    assert len(warmth) == 3  # a page per section, none spilling a few rows onto a page of their own
    centre = [p for p in pages if "2016年度困难职工帮扶中心工作统计汇总表" in p]
    assert len(centre) == 3
    # the title on one line and the scope line whole (it was cut at "数据截至:2017-02-0")
    assert "2016年度困难职工帮扶中心工作统计汇总表" in centre[0].splitlines()[0]
    assert "数据截至:2017-02-0609:00" in _bare(centre[0])
    for page in pages[:-1]:  # no page but the workbook's very last is nearly empty
        assert len([line for line in page.splitlines() if line.strip()]) >= 12, page[:200]


def test_the_report_prints_without_blank_pages_and_with_a_footer_for_people(final_edition, tmp_path, poppler):
    chromium = require_program("chromium", "chromium")
    (report,) = (final_edition / SUMMARY_DIR / "终稿第1版").glob("*情况报告*.html")
    html = report.read_text(encoding="utf-8")
    assert "SHA-256" not in html and "按时报送率" in html and EXPLANATION in html
    pdf = tmp_path / "report.pdf"
    subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-pdf-header-footer",
            f"--user-data-dir={tmp_path / 'profile'}",
            f"--print-to-pdf={pdf}",
            report.as_uri(),
        ],
        capture_output=True,
        timeout=120,
        check=True,
    )
    pages = _pages(pdf, poppler)
    for page in pages[:-1]:
        assert len([line for line in page.splitlines() if line.strip()]) >= 20, page[:200]
    last = _bare(pages[-1])
    assert "终稿(第1版)" in last and "数据截至2017-02-0609:00" in last
    # the headline's page names the units its totals leave out, and the bars do not show a whole level
    first = _bare(pages[0])
    for name, reason in _left_out(final_edition, "warmth"):
        assert f"{name}({reason})" in first
    assert (
        'class="whole"'
        not in html.split("二、报送情况")[1].split("</section>")[0].split("送温暖统计表")[1][:200]
    )
