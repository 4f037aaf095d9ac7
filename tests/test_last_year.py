"""Last year beside this year: rules.yaml names last year's final consolidated workbook; every headline
figure, each unit's row and the by-industry figures show 上年 and 增减; a unit absent last year says so."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipeline.campaign import config
from pipeline.cli import app
from pipeline.consolidation.lastyear import change_text
from pipeline.io import previous
from pipeline.io.outbox import SUMMARY_DIR
from tests.conftest import docx_text

runner = CliRunner()
PROJECT = Path(__file__).resolve().parent.parent
DRAFT_AS_OF = "2017-02-01T12:00"
SUMMARY = "2017年元旦春节送温暖活动总结(草稿).docx"
REPORT = "2017年元旦春节送温暖活动情况报告(草稿).html"


@pytest.fixture(scope="module")
def campaign(tmp_path_factory) -> Path:
    """A copy of the demo campaign, its demo inbox and last year's workbook made, and one run."""
    folder = tmp_path_factory.mktemp("lastyear")
    shutil.copy(PROJECT / "rules.yaml", folder / "rules.yaml")
    made = runner.invoke(app, ["demo", "--rules", str(folder / "rules.yaml")])
    assert made.exit_code == 0, made.output
    assert "上年汇总表(演示,供同比)" in made.output
    ran = runner.invoke(app, ["run", "--rules", str(folder / "rules.yaml"), "--as-of", DRAFT_AS_OF])
    assert ran.exit_code == 0, ran.output
    return folder


def test_the_demo_writes_last_years_workbook_where_rules_yaml_names_it(campaign):
    rules = config.load(campaign / "rules.yaml")
    path = previous.path_of(rules)
    assert path is not None and path.is_file() and path.parent.name == "上年"
    last, why = previous.read(rules)
    assert last is not None and why == ""
    households = ("warmth", ("visits", "total", "households"))
    # 洋浦 is absent from last year (demo.previous.absent): no row, not a row of zeros
    assert last.unit("YP", *households) is None and "YP" not in last.units
    assert last.unit("460100", *households) is not None and last.unit("460100", *households) > 0
    assert last.reported["warmth"] == 20
    assert last.totals[households] == sum(v[households] for v in last.units.values() if households in v)
    agri = ("warmth", ("visits", "agri", "households"))
    assert last.rows[agri] > 0  # the by-industry sheet is read too


def test_the_summary_shows_last_year_and_the_change_in_libreoffice(campaign, soffice_convert, poppler):
    docx = campaign / "outbox" / SUMMARY_DIR / SUMMARY
    text = docx_text(docx.read_bytes())
    row = next(line for line in text.splitlines() if line.startswith("慰问困难职工  "))
    label, now, before, change, coverage = row.split("  ")
    assert now.endswith(" 户") and before.endswith(" 户")
    assert change == change_text(int(now.split()[0]), float(before.split()[0]))
    assert coverage == "已汇总 15/21,其中 1 个上年无"  # 洋浦 is in this year, not last year
    yp = next(line for line in text.splitlines() if line.startswith("洋浦经济开发区工会"))
    assert yp.endswith("上年无  上年无")
    pdf = soffice_convert(docx, "pdf:writer_pdf_Export", campaign / "pdf")
    flat = "".join(poppler("pdftotext", pdf, "-").split())
    assert "上年" in flat and change.replace(" ", "") in flat and "已汇总15/21" in flat


def test_a_unit_far_from_its_last_year_is_listed_to_verify(campaign):
    text = docx_text((campaign / "outbox" / SUMMARY_DIR / SUMMARY).read_bytes())
    checks = text[text.index("需核实的数据") :].split("附表")[0]
    assert "万宁市总工会:慰问困难职工" in checks and "上年" in checks  # demo.previous.far
    flagged = {line.split(":")[0] for line in checks.splitlines()[1:] if ":" in line}
    assert flagged == {"万宁市总工会"}  # the demo's clean units are not flagged, against peers or last year
    report = (campaign / "outbox" / SUMMARY_DIR / REPORT).read_text(encoding="utf-8")
    assert "、需核实</h2>" in report and "万宁市总工会:慰问困难职工" in report
    assert "上年 " in report  # beside the cards


def test_without_last_years_workbook_the_run_goes_on_and_says_so(tmp_path):
    shutil.copy(PROJECT / "rules.yaml", tmp_path / "rules.yaml")
    made = runner.invoke(app, ["demo", "--rules", str(tmp_path / "rules.yaml")])
    assert made.exit_code == 0, made.output
    shutil.rmtree(tmp_path / "上年")
    ran = runner.invoke(app, ["run", "--rules", str(tmp_path / "rules.yaml"), "--as-of", DRAFT_AS_OF])
    assert ran.exit_code == 0, ran.output
    text = docx_text((tmp_path / "outbox" / SUMMARY_DIR / SUMMARY).read_bytes())
    assert "读不到上年汇总表 2016年元旦春节送温暖活动汇总表(终稿第1版).xlsx" in text
    assert "上年无" not in text  # no comparison at all, rather than every figure "absent"


def test_the_workbook_compares_each_unit_and_each_industry_with_last_year(campaign):
    import openpyxl

    book = openpyxl.load_workbook(
        campaign / "outbox" / SUMMARY_DIR / "2017年元旦春节送温暖活动汇总表(草稿).xlsx"
    )
    assert {"送温暖汇总(上年)", "分行业汇总(上年)", "帮扶中心汇总(上年)"} <= set(book.sheetnames)
    units = {row[0]: row for row in book["送温暖汇总(上年)"].iter_rows(min_row=5, values_only=True)}
    sanya = units["三亚市总工会"]
    assert sanya[3] == pytest.approx((sanya[1] - sanya[2]) / sanya[2])
    assert units["洋浦经济开发区工会"][2] == "上年无" and units["洋浦经济开发区工会"][3] in ("", None)
    haikou = units["海口市总工会"]  # not consolidated this year, known last year
    assert haikou[1] is None and haikou[2] > 0 and haikou[3] is None
    industries = {row[0]: row for row in book["分行业汇总(上年)"].iter_rows(min_row=5, values_only=True)}
    agri = industries["农、林、牧、渔业"]
    assert isinstance(agri[2], int) and agri[3] == pytest.approx((agri[1] - agri[2]) / agri[2])


def test_the_unit_far_from_its_last_year_is_told_in_its_feedback(campaign):
    import email
    from email import policy

    letters = [
        email.message_from_bytes(p.read_bytes(), policy=policy.default)
        for p in (campaign / "outbox" / "邮件").glob("万宁市总工会_反馈_*.eml")
    ]
    bodies = [m.get_body(("plain",)).get_content() for m in letters]
    warmth = next(b for b in bodies if "送温暖统计表!B18" in b)
    assert "【提醒】送温暖统计表!B18:慰问困难职工" in warmth and "上年" in warmth and "填报说明" in warmth
    report = (campaign / "outbox" / SUMMARY_DIR / REPORT).read_text(encoding="utf-8")
    problems = report[report.index("尚未解决的校验问题") :]
    assert len(re.findall(r"慰问困难职工 \d+ 户,上年", problems)) == 1  # told once, as it stands now
