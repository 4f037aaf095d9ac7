"""The `pipeline` command: a thin layer that parses arguments, calls one library function, prints.

Heavy imports (pandas, pandera, openpyxl) happen inside the commands, so `pipeline --help` is instant.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer

if TYPE_CHECKING:
    from pipeline.config import Rules

app = typer.Typer(
    help="送温暖统计表流水线:生成模板、校验报表、汇总。各命令加 --help 查看用法。",
    add_completion=False,
    no_args_is_help=True,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
)

PROJECT_ROOT = Path(__file__).resolve().parent.parent

RulesOption = Annotated[
    Path | None,
    typer.Option("--rules", help="活动配置文件,默认为当前目录(或项目目录)下的 rules.yaml", envvar="PIPELINE_RULES"),
]


def _fail(message: str, code: int = 2) -> NoReturn:
    typer.echo(message, err=True)
    raise typer.Exit(code)


def _rules(path: Path | None) -> Rules:
    from pipeline import config

    if path is None:
        path = Path("rules.yaml") if Path("rules.yaml").is_file() else PROJECT_ROOT / "rules.yaml"
    try:
        rules = config.load(path)
    except config.ConfigError as exc:
        _fail(f"配置文件 {path} 有误:\n  {exc}")
    for warning in rules.warnings:
        typer.echo(f"提醒:{warning}", err=True)
    return rules


@app.command()
def templates(
    out: Annotated[Path, typer.Option("--out", help="模板输出目录")] = Path("outbox/templates"),
    unit: Annotated[str | None, typer.Option("--unit", help="只生成这个单位代码的模板,如 460100")] = None,
    rules_path: RulesOption = None,
) -> None:
    """为每个单位生成空白报表模板(已填好单位名称和代码,受保护)。"""
    from pipeline import template

    rules = _rules(rules_path)
    if unit is not None and unit not in {u.code for u in rules.units}:
        _fail(f"没有单位代码为 {unit} 的单位;可用的代码见 rules.yaml 的 units 一节")
    count = 0
    for written in template.write_all(rules, out, unit):
        count += 1
        typer.echo(f"  {written.path}")
    typer.echo(f"已生成 {count} 个模板,保存在 {out}/")


@app.command()
def demo(
    inbox: Annotated[Path, typer.Option("--inbox", help="演示收件箱目录")] = Path("inbox"),
    seed: Annotated[int, typer.Option("--seed", help="随机种子:同一种子生成完全相同的文件")] = 2017,
    rules_path: RulesOption = None,
) -> None:
    """按各单位常见的填法(含典型错误)填好模板,放入演示收件箱。"""
    from pipeline import demo as demo_mod

    rules = _rules(rules_path)
    made = demo_mod.make(rules, inbox, seed)
    for f in made.files:
        typer.echo(f"  {f.path.relative_to(inbox)}  ——  {f.note}")
    names = {u.code: u.name for u in rules.units}
    missing = "、".join(f"{names[c]}({rules.items[i].label})" for c, i in made.missing)
    typer.echo(f"已在 {inbox}/ 生成 {len(made.files)} 个文件;未报送:{missing or '无'}")


@app.command()
def check(
    files: Annotated[list[Path], typer.Argument(help="要校验的报表文件(.xlsx/.xlsm/.xls/.ods),可以多个")],
    as_json: Annotated[bool, typer.Option("--json", help="以 JSON 输出(供其他程序使用)")] = False,
    rules_path: RulesOption = None,
) -> None:
    """校验填好的报表,逐个单元格列出问题;全部通过时退出码为 0,否则为 1。"""
    import json

    from pipeline import check as check_mod

    rules = _rules(rules_path)
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        _fail("找不到文件:" + "、".join(missing))
    results = check_mod.check_paths(files, rules)
    if as_json:
        typer.echo(json.dumps([r.as_json() for r in results], ensure_ascii=False, indent=2))
    else:
        typer.echo(check_mod.render_text(results, rules))
    raise typer.Exit(0 if all(r.verdict == "accepted" for r in results) else 1)


def main() -> None:
    """Entry point: no traceback ever reaches the user; an unexpected error says where its log is."""
    try:
        app()
    except KeyboardInterrupt:
        typer.echo("已中断。", err=True)
        sys.exit(130)
    except Exception as exc:  # the last line of defence for office staff
        import tempfile
        import traceback

        log = Path(tempfile.gettempdir()) / f"pipeline-error-{os.getpid()}.log"
        log.write_text(traceback.format_exc(), encoding="utf-8")
        typer.echo(f"程序出错:{exc.__class__.__name__}: {exc}\n详细信息已写入 {log},请发给技术人员。", err=True)
        sys.exit(3)
