"""The `pipeline` command: a thin layer that parses arguments, calls one library function, prints.

Heavy imports (pandas, pandera, openpyxl) happen inside the commands, so `pipeline --help` is instant.
"""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

if TYPE_CHECKING:
    import datetime as dt
    from collections.abc import Iterator

    from pipeline.campaign.config import Rules
    from pipeline.runs.batch import Progress

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
    from pipeline import checks

    if path is None:
        path = Path("rules.yaml") if Path("rules.yaml").is_file() else PROJECT_ROOT / "rules.yaml"
    try:
        rules = checks.load(path)
    except checks.ConfigError as exc:
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
    from pipeline.render import template

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

    from pipeline.runs import check as check_mod

    rules = _rules(rules_path)
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        _fail("找不到文件:" + "、".join(missing))
    results = check_mod.check_paths(files, rules, isolated=True)
    if as_json:
        typer.echo(json.dumps([r.as_json() for r in results], ensure_ascii=False, indent=2))
    else:
        typer.echo(check_mod.render_text(results, rules))
    raise typer.Exit(0 if all(r.verdict == "accepted" for r in results) else 1)


InboxOption = Annotated[Path, typer.Option("--inbox", help="收件箱目录(各单位报来的文件,可有子目录)")]
OutboxOption = Annotated[Path, typer.Option("--outbox", help="输出目录")]
StateOption = Annotated[Path, typer.Option("--state", help="台账与存档目录(SQLite 台账、原始文件存档)")]
AsOfOption = Annotated[
    str | None, typer.Option("--as-of", help="按这个时点运行,如 2017-02-01T10:00(默认现在),便于重现")
]
SendOption = Annotated[bool, typer.Option("--send", help="真正发送邮件(默认只把邮件写成 .eml 文件)")]


def _moment(text: str | None, rules: Rules) -> dt.datetime:
    from pipeline.runs import batch

    try:
        return batch.moment(text, rules)
    except ValueError as exc:
        _fail(str(exc))


def _password(rules: Rules, send: bool) -> str | None:
    if not send:
        return None
    value = os.environ.get(rules.mail.password_env)
    if rules.mail.username and not value:
        _fail(f"要发送邮件,请先设置环境变量 {rules.mail.password_env}(邮箱密码或授权码)")
    return value


@app.command()
def run(
    inbox: InboxOption = Path("inbox"),
    outbox: OutboxOption = Path("outbox"),
    state: StateOption = Path("state"),
    as_of: AsOfOption = None,
    send: SendOption = False,
    final: Annotated[bool, typer.Option("--final", help="截止后生成编号的终稿(不会被覆盖)")] = False,
    for_unit: Annotated[
        str | None, typer.Option("--for", help="在下级汇总单位运行,如 ZX:只收其下属单位,并生成本单位的汇总报表")
    ] = None,
    leader: Annotated[str, typer.Option("--leader", help="汇总报表的单位负责人(与 --for 同用)")] = "",
    preparer: Annotated[str, typer.Option("--preparer", help="汇总报表的填表人(与 --for 同用)")] = "",
    phone: Annotated[str, typer.Option("--phone", help="汇总报表的联系电话(与 --for 同用)")] = "",
    rules_path: RulesOption = None,
) -> None:
    """每周运行:收取新文件、校验、给有问题的单位写反馈邮件、更新报送情况、生成汇总(草稿或终稿)。"""
    from pipeline.runs import batch

    rules = _rules(rules_path)
    when = _moment(as_of, rules)
    if not inbox.is_dir():
        _fail(f"找不到收件箱目录 {inbox}")
    parent = for_unit or "province"
    if for_unit and (for_unit not in {u.code for u in rules.units} or not rules.children(for_unit)):
        _fail(f"--for {for_unit}:不是有下属报送单位的单位代码")
    sign = {"leader": leader, "preparer": preparer, "phone": phone, "date": when.date()}
    try:
        with _progress() as progress:
            result = batch.run(rules, inbox, outbox, state, when, send=send, progress=progress,
                               password=_password(rules, send), final=final, parent=parent, sign=sign)
    except (batch.RunLocked, batch.NotYetFinal) as exc:
        _fail(str(exc))
    taken = result.intake
    typer.echo(f"时点 {when:%Y-%m-%d %H:%M};收件箱 {taken.seen} 个文件,新文件 {len(taken.new)} 个,"
               f"未变化 {taken.unchanged} 个,跳过 {len(taken.skipped)} 个")
    for skipped in taken.skipped:
        typer.echo(f"  跳过 {skipped.path}:{skipped.reason}")
    if result.checked:
        words = {"accepted": "通过", "rejected": "未通过", "unreadable": "无法读取", "received": "报告已收到"}
        typer.echo("校验:" + ",".join(f"{words.get(k, k)} {v}" for k, v in sorted(result.checked.items())))
    if result.messages:
        words = {"written": "已写成 .eml", "sent": "已发送", "tempfail": "暂时失败(下次重试)",
                 "refused": "被拒收", "unknown": "送达不明"}
        typer.echo("邮件:" + ",".join(f"{words.get(k, k)} {v}" for k, v in sorted(result.messages.items())))
    if result.status is not None:
        s = result.status
        typer.echo(f"报送情况:{s.units_done()}/{len({r.unit for r in s.rows})} 个单位已全部报齐;"
                   + ("已过截止时间" if s.past_deadline else f"距截止还有 {s.days_left} 天"))
    for path in result.outputs:
        typer.echo(f"  输出:{path}")
    typer.echo("用时:" + ",".join(f"{stage} {sec:.1f} 秒" for stage, sec in result.seconds.items()))


@app.command()
def status(
    as_json: Annotated[bool, typer.Option("--json", help="以 JSON 输出")] = False,
    state: StateOption = Path("state"),
    as_of: AsOfOption = None,
    rules_path: RulesOption = None,
) -> None:
    """各单位各事项的报送情况:已通过/有警告/未通过/未报送/逾期,收到时间、版本数、剩余天数。"""
    import json

    from pipeline.consolidation import status as status_mod
    from pipeline.io import ledger
    from pipeline.runs import batch

    rules = _rules(rules_path)
    when = _moment(as_of, rules)
    book = ledger.Ledger(state)
    try:
        now = batch.current_status(rules, book, when)
    finally:
        book.close()
    if as_json:
        typer.echo(json.dumps(now.as_json(), ensure_ascii=False, indent=2))
    else:
        typer.echo(status_mod.render_text(now, rules))


@app.command()
def remind(
    outbox: OutboxOption = Path("outbox"),
    state: StateOption = Path("state"),
    as_of: AsOfOption = None,
    send: SendOption = False,
    rules_path: RulesOption = None,
) -> None:
    """给尚未报送或仍未通过的单位发催报邮件(每个单位每天最多一封)。"""
    from pipeline.runs import batch

    rules = _rules(rules_path)
    when = _moment(as_of, rules)
    try:
        reminded = batch.remind(rules, state, outbox, when, send, password=_password(rules, send))
    except batch.RunLocked as exc:
        _fail(str(exc))
    typer.echo(f"催报 {len(reminded)} 个单位:" + ("、".join(reminded) if reminded else "今天已催报过或无需催报"))


@app.command()
def verify(state: StateOption = Path("state")) -> None:
    """核对存档:重新计算每个原始文件的 sha256,与台账比对。"""
    from pipeline.io import ledger

    book = ledger.Ledger(state)
    try:
        problems = book.verify()
        count = len(book.submissions())
    finally:
        book.close()
    for line in problems:
        typer.echo(line)
    typer.echo(f"核对 {count} 个存档文件:" + ("全部一致" if not problems else f"{len(problems)} 处不一致"))
    raise typer.Exit(0 if not problems else 1)


@contextmanager
def _progress() -> Iterator[Progress]:
    """A progress bar on the terminal for long runs; silent when output goes to a file."""
    bars: dict[str, Any] = {}

    def update(stage: str, done: int, total: int) -> None:
        if not sys.stderr.isatty() or total < 20:
            return
        bar = bars.get(stage)
        if bar is None:
            bar = bars[stage] = typer.progressbar(length=total, label=stage, file=sys.stderr)
            bar.__enter__()
        bar.update(1)
        if done >= total:
            bar.__exit__(None, None, None)

    try:
        yield update
    finally:
        for bar in bars.values():
            bar.__exit__(None, None, None)


def main() -> None:
    """Entry point: no traceback ever reaches the user; an unexpected error says where its log is."""
    try:
        app()
    except SystemExit as done:  # how click ends every command, on success too
        _leave(done.code)
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


def _leave(code: object) -> NoReturn:
    """Exit without the interpreter freeing, one by one, the millions of objects a national run holds (0.2 s
    at 3,000 units): everything the command wrote is written and synced, its ledger closed, its children
    and second process ended by then. What is printed is flushed first."""
    import logging

    if code is not None and not isinstance(code, int):
        typer.echo(str(code), err=True)
        code = 1
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with suppress(OSError, ValueError):
            stream.flush()
    os._exit(code or 0)
