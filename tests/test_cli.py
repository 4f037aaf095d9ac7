"""The command line: every command documented, arguments checked, one real subprocess."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipeline.cli import app

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


def commands() -> list[str]:
    out = runner.invoke(app, ["--help"]).output
    block = out.split("命令:")[1]
    return re.findall(r"^\s{2}([a-z][a-z-]*)\s+\S", block, flags=re.M)


def test_help_lists_every_command_with_a_chinese_line():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    names = commands()
    assert {"templates", "demo", "check"} <= set(names)
    for name in names:
        line = next(ln for ln in result.output.splitlines() if ln.strip().startswith(name + " "))
        assert re.search(r"[\u4e00-\u9fff]", line), f"{name} has no Chinese one-line description"


@pytest.mark.parametrize("name", ["templates", "demo", "check"])
def test_every_command_has_help(name):
    result = runner.invoke(app, [name, "--help"])
    assert result.exit_code == 0
    assert "用法:" in result.output and "显示本帮助并退出" in result.output
    assert not ENGLISH.search(result.output), result.output


def test_readme_shows_every_command():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for name in commands():
        assert f"pipeline {name}" in readme, f"README does not show `pipeline {name}`"


def test_readme_begins_with_the_two_commands():
    lines = [ln for ln in (ROOT / "README.md").read_text(encoding="utf-8").splitlines() if ln.strip()]
    block = lines[lines.index("```bash") + 1 : lines.index("```bash") + 3]
    assert block[0].startswith("bash scripts/demo.sh")
    assert block[1].startswith("bash scripts/test.sh")
    assert (ROOT / "scripts/demo.sh").is_file() and (ROOT / "scripts/test.sh").is_file()
    assert "scripts/test.sh" in (ROOT / ".ci/run").read_text()


def test_templates_for_one_unit(tmp_path):
    result = runner.invoke(app, ["templates", "--out", str(tmp_path), "--unit", "460100"])
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [
        "海口市总工会_附件1_2016年工会送温暖统计表.xlsx",
        "海口市总工会_附件2_2016年度困难职工帮扶中心工作统计表.xlsx",
    ]
    assert "已生成 2 个模板" in result.output


def test_unknown_unit_is_refused_in_chinese(tmp_path):
    result = runner.invoke(app, ["templates", "--out", str(tmp_path), "--unit", "999999"])
    assert result.exit_code == 2
    assert "没有“999999”这个单位" in result.output and "可用的代码:460100、" in result.output
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("typed", ["海口", "海口市总工会", "海口市工会", "460100"])
def test_a_unit_option_takes_a_code_a_name_or_an_alias(tmp_path, typed):
    result = runner.invoke(app, ["templates", "--out", str(tmp_path), "--unit", typed])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in tmp_path.iterdir())[0].startswith("海口市总工会_附件1")


def test_for_takes_an_alias_and_an_unknown_level_lists_the_valid_ones(tmp_path):
    (tmp_path / "rules.yaml").write_bytes((ROOT / "rules.yaml").read_bytes())
    ok = runner.invoke(app, ["status", "--for", "帮扶中心", "--workspace", str(tmp_path)])
    assert "levels/ZX" in ok.output, ok.output  # ZX's own folders: no ledger there yet
    wrong = runner.invoke(app, ["status", "--for", "海口", "--workspace", str(tmp_path)])
    assert wrong.exit_code == 2 and "可用:ZX(" in wrong.output


# The framework's own English, which no user should meet.
ENGLISH = re.compile(
    r"Usage|Options|Arguments|Commands|Missing|No such|Error|Show this|Try |required|env var"
)


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["chek"], "没有 chek 这个命令;是不是要用 check?"),
        (["statu"], "是不是要用 status"),
        (["check"], "缺少参数 'files'"),
        (["check", "x.xlsx", "--jsn"], "没有 --jsn 这个选项;是不是要用 --json?"),
        (["demo", "--seed", "abc"], "'--seed' 的值不对:“abc”不是整数"),
        (["templates", "a", "b"], "多出了参数"),
    ],
)
def test_usage_errors_are_told_in_chinese(args, said):
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert said in result.output and "用法:" in result.output and "错误:" in result.output
    assert not ENGLISH.search(result.output), result.output
    assert "Traceback" not in result.output


def test_help_of_the_group_is_chinese():
    result = runner.invoke(app, ["--help"])
    assert "[选项] 命令 [参数]..." in result.output and "命令:" in result.output
    assert not ENGLISH.search(result.output), result.output


def test_bad_rules_file_names_the_yaml_path_without_traceback(tmp_path):
    text = (
        (ROOT / "rules.yaml")
        .read_text(encoding="utf-8")
        .replace("type: count, group: 慰问对象}", "type: int32, group: 慰问对象}", 1)
    )
    bad = tmp_path / "rules.yaml"
    bad.write_text(text, encoding="utf-8")
    result = runner.invoke(app, ["templates", "--out", str(tmp_path / "out"), "--rules", str(bad)])
    assert result.exit_code == 2
    assert 'forms.warmth.sections.visits.fields[0].type: 未知类型 "int32"' in result.output
    assert "Traceback" not in result.output


def test_demo_twice_with_one_seed_gives_identical_files(tmp_path):
    for name in ("a", "b"):
        result = runner.invoke(app, ["demo", "--inbox", str(tmp_path / name), "--seed", "5"])
        assert result.exit_code == 0, result.output
    a = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    b = sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*") if p.is_file())
    assert a == b and len(a) > 40
    for rel in a:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel


def test_python_dash_m_pipeline_runs_as_a_real_process(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline", "templates", "--out", str(tmp_path), "--unit", "ZX"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert len(list(tmp_path.glob("*.xlsx"))) == 2
    assert "已生成 2 个模板" in proc.stdout
    # A failing command's message reaches the pipe whole, and its exit code is kept.
    missing = tmp_path / "没有这个文件.xlsx"
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline", "check", str(missing)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert (proc.returncode, proc.stdout + proc.stderr) == (2, f"找不到文件:{missing}\n")


def test_a_mistyped_command_in_a_real_process_is_answered_in_chinese():
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline", "chek"], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert proc.returncode == 2
    assert "没有 chek 这个命令;是不是要用 check?" in proc.stderr and "Traceback" not in proc.stderr
