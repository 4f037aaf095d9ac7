"""`pipeline check`: the readable report, the --json contract, exit codes, and the real-world corpus."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.runs import check

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"
runner = CliRunner()
KEYS = {"file", "unit", "form", "verdict", "findings"}
FINDING_KEYS = {"rule", "severity", "sheet", "cell", "field", "row", "value", "message", "suggested"}


def test_json_output_equals_the_library_result(rules, fill):
    good = fill("center")
    bad = fill(changes={("activities", "", "forums"): "见附件"})
    result = runner.invoke(app, ["check", str(good), str(bad), "--json"])
    assert result.exit_code == 1
    printed = json.loads(result.stdout)
    assert printed == [r.as_json() for r in check.check_paths([good, bad], rules)]
    assert [set(o) for o in printed] == [KEYS, KEYS]
    assert [o["verdict"] for o in printed] == ["accepted", "rejected"]
    assert all(set(f) == FINDING_KEYS for o in printed for f in o["findings"])


def test_all_accepted_exits_zero_and_says_so_in_chinese(fill):
    result = runner.invoke(app, ["check", str(fill())])
    assert result.exit_code == 0
    assert "结论:通过" in result.output and "共 1 个文件:通过 1" in result.output


def test_report_groups_findings_by_file_with_sheet_and_cell(rules, fill):
    path = fill(changes={("visits", "total", "households"): 1})
    result = runner.invoke(app, ["check", str(path)])
    assert result.exit_code == 1
    assert f"【{path.name}】" in result.output
    assert "✗ 错误 送温暖统计表!B18" in result.output and "W-total" not in result.output


def test_missing_file_is_named(tmp_path):
    result = runner.invoke(app, ["check", str(tmp_path / "没有这个文件.xlsx")])
    assert result.exit_code == 2
    assert "找不到文件" in result.output and "没有这个文件.xlsx" in result.output


def corpus_files() -> list[Path]:
    if not CORPUS.is_dir():
        return []
    return sorted(p for p in CORPUS.rglob("*") if p.is_file() and p.suffix.lower() not in (".md", ".txt"))


@pytest.mark.skipif(not CORPUS.is_dir(), reason=f"the shared corpus is absent ({CORPUS})")
def test_every_corpus_file_gets_a_verdict_and_a_message_without_traceback():
    files = corpus_files()
    assert len(files) > 100
    result = runner.invoke(app, ["check", "--json", *map(str, files)], catch_exceptions=False)
    assert result.exit_code == 1  # none of them is one of our forms
    assert "Traceback" not in result.output
    printed = json.loads(result.stdout)
    assert [o["file"] for o in printed] == [str(f) for f in files]
    for o in printed:
        assert o["verdict"] in ("rejected", "unreadable"), o["file"]
        assert o["findings"] and all(f["message"] for f in o["findings"]), o["file"]
    verdicts = {o["file"].split("/")[-1]: o["verdict"] for o in printed}
    assert verdicts["pass_protected.xlsx"] == "unreadable"
    rules_of = {o["file"].split("/")[-1]: {f["rule"] for f in o["findings"]} for o in printed}
    assert "F-encrypted" in rules_of["pass_protected.xlsx"]


def test_file_named_by_chinese_windows_is_shown_by_its_chinese_name(fill, tmp_path):
    """A name an unzip tool or mail client wrote in GBK: the report names the file as its sender reads it."""
    import os

    name = "海口市总工会附件1.xlsx"
    folder = tmp_path / "解压"
    folder.mkdir()
    gbk = os.path.join(os.fsencode(folder), name.encode("gbk"))
    with open(gbk, "wb") as out:
        out.write(fill().read_bytes())
    path = Path(os.fsdecode(gbk))  # as a shell hands it over: undecodable bytes as surrogate escapes
    text = runner.invoke(app, ["check", str(path)])
    assert text.exit_code == 0 and f"【{name}】" in text.output, text.output
    printed = json.loads(runner.invoke(app, ["check", "--json", str(path)]).stdout)
    assert printed[0]["file"] == str(folder / name) and printed[0]["unit"] == "460100"
