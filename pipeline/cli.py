"""The `pipeline` command: a thin layer that parses arguments, calls one library function, prints.

Heavy imports (pandas, pandera, openpyxl) happen inside the commands, so `pipeline --help` is instant.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from pipeline import clitext

if TYPE_CHECKING:
    from collections.abc import Iterator

    from pipeline.api import Campaign
    from pipeline.campaign.config import Rules
    from pipeline.runs.context import Progress

app = typer.Typer(
    cls=clitext.Group,
    help="送温暖统计表流水线:生成模板、校验报表、汇总。各命令加 --help 查看用法。",
    add_completion=False,
    no_args_is_help=True,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
)
command = functools.partial(app.command, cls=clitext.Command)  # every command's help in Chinese


RulesOption = Annotated[
    Path | None,
    typer.Option("--rules", help="活动配置文件,默认为活动文件夹中的 rules.yaml", envvar="PIPELINE_RULES"),
]
WorkspaceOption = Annotated[
    Path | None,
    typer.Option(
        "--workspace",
        help="活动文件夹(放 rules.yaml,收件箱、输出、台账都在其中);也可用环境变量 PIPELINE_HOME",
        envvar="PIPELINE_HOME",
    ),
]


def _fail(message: str, code: int = 2) -> NoReturn:
    typer.echo(message, err=True)
    raise typer.Exit(code)


def _told(command: Callable[..., None]) -> Callable[..., None]:
    """A command whose library call refuses (a lock held, a ledger damaged, a final edition with units
    missing) prints why and what to do, with exit code 2: the same under CliRunner as in a real process."""

    @functools.wraps(command)
    def told(*args: Any, **kwargs: Any) -> None:
        from pipeline.model import Refused

        try:
            command(*args, **kwargs)
        except Refused as exc:
            _fail(str(exc))

    return told


def _campaign(
    path: Path | None,
    workspace: Path | None = None,
    inbox: Path | None = None,
    outbox: Path | None = None,
    state: Path | None = None,
    level: str = "province",
) -> Campaign:
    from pipeline.api import Campaign
    from pipeline.campaign import config

    try:
        campaign = Campaign.load(
            path, workspace=workspace, inbox=inbox, outbox=outbox, state=state, level=level
        )
    except config.ConfigError as exc:
        _fail(f"配置文件 {path or 'rules.yaml'} 有误:\n  {exc}")
    for warning in campaign.rules.warnings:
        typer.echo(f"提醒:{warning}", err=True)
    return campaign


@command()
@_told
def templates(
    out: Annotated[
        Path | None, typer.Option("--out", help="模板输出目录,默认为输出目录下的 templates")
    ] = None,
    unit: Annotated[
        str | None, typer.Option("--unit", help="只生成这个单位的模板:代码、名称或简称,如 460100 或 海口")
    ] = None,
    rules_path: RulesOption = None,
    workspace: WorkspaceOption = None,
) -> None:
    """为每个单位生成空白报表模板(已填好单位名称和代码,受保护)。"""
    campaign = _campaign(rules_path, workspace)
    unit = _unit(campaign.rules, unit)
    out = out or campaign.folders.outbox / "templates"
    count = 0
    for path in campaign.templates(out, unit):
        count += 1
        typer.echo(f"  {path}")
    typer.echo(f"已生成 {count} 个模板,保存在 {out}/")


@command()
@_told
def demo(
    inbox: Annotated[
        Path | None, typer.Option("--inbox", help="演示收件箱目录,默认为活动文件夹中的 inbox")
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="随机种子:同一种子生成完全相同的文件")] = 2017,
    rules_path: RulesOption = None,
    workspace: WorkspaceOption = None,
) -> None:
    """按各单位常见的填法(含典型错误)填好模板,放入演示收件箱。"""
    campaign = _campaign(rules_path, workspace, inbox)
    rules = campaign.rules
    inbox = campaign.folders.inbox
    made = campaign.demo(inbox, seed)
    for f in made.files:
        typer.echo(f"  {f.path.relative_to(inbox)}  ——  {f.note}")
    if made.previous is not None:
        typer.echo(f"上年汇总表(演示,供同比):{made.previous}")
    names = {u.code: u.name for u in rules.units}
    missing = "、".join(f"{names[c]}({rules.items[i].label})" for c, i in made.missing)
    typer.echo(f"已在 {inbox}/ 生成 {len(made.files)} 个文件;未报送:{missing or '无'}")


@command()
@_told
def check(
    files: Annotated[
        list[Path],
        typer.Argument(
            help="要校验的报表文件(.xlsx/.xlsm/.xls/.ods,书面报告 .docx/.pdf 等只看能否读取),可以多个"
        ),
    ],
    as_json: Annotated[bool, typer.Option("--json", help="以 JSON 输出(供其他程序使用)")] = False,
    rules_path: RulesOption = None,
    workspace: WorkspaceOption = None,
) -> None:
    """校验填好的报表,逐个单元格列出问题;全部通过时退出码为 0,否则为 1。"""
    import json

    from pipeline.runs import check as check_mod

    campaign = _campaign(rules_path, workspace)
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        _fail("找不到文件:" + "、".join(missing))
    results = campaign.check(files)
    if as_json:
        typer.echo(json.dumps([r.as_json() for r in results], ensure_ascii=False, indent=2))
    else:
        typer.echo(check_mod.render_text(results, campaign.rules))
    raise typer.Exit(0 if all(r.verdict in ("accepted", "received") for r in results) else 1)


InboxOption = Annotated[
    Path | None, typer.Option("--inbox", help="收件箱目录(各单位报来的文件,可有子目录),默认为本级的 inbox")
]
OutboxOption = Annotated[Path | None, typer.Option("--outbox", help="输出目录,默认为本级的 outbox")]
StateOption = Annotated[
    Path | None, typer.Option("--state", help="台账与存档目录(SQLite 台账、原始文件存档),默认为本级的 state")
]
ForOption = Annotated[
    str | None,
    typer.Option(
        "--for", help="在下级汇总单位一级运行:代码、名称或简称,如 ZX 或 帮扶中心(默认文件夹为 levels/ZX/…)"
    ),
]
AsOfOption = Annotated[
    str | None, typer.Option("--as-of", help="按这个时点运行,如 2017-02-01T10:00(默认现在),便于重现")
]
SendOption = Annotated[bool, typer.Option("--send", help="真正发送邮件(默认只把邮件写成 .eml 文件)")]


def _unit(rules: Rules, text: str | None) -> str | None:
    """The code of the unit an option names by code, name or alias; refused with the valid codes."""
    if text is None:
        return None
    found = rules.find_unit(text)
    if found is None:
        codes = "、".join(u.code for u in rules.units)
        _fail(f"没有“{text}”这个单位;可以写单位代码、名称或简称,可用的代码:{codes}")
    return found.code


def _moment(campaign: Campaign, text: str | None) -> Any:
    try:
        return campaign.moment(text)
    except ValueError as exc:
        _fail(str(exc))


def _password(rules: Rules, send: bool) -> str | None:
    if not send:
        return None
    value = os.environ.get(rules.mail.password_env)
    if rules.mail.username and not value:
        _fail(f"要发送邮件,请先设置环境变量 {rules.mail.password_env}(邮箱密码或授权码)")
    return value


@command()
@_told
def run(
    inbox: InboxOption = None,
    outbox: OutboxOption = None,
    state: StateOption = None,
    as_of: AsOfOption = None,
    send: SendOption = False,
    final: Annotated[bool, typer.Option("--final", help="截止后生成编号的终稿(不会被覆盖)")] = False,
    allow_missing: Annotated[
        str, typer.Option("--allow-missing", help="终稿时仍有单位缺报:写明原因,才生成终稿")
    ] = "",
    for_unit: ForOption = None,
    leader: Annotated[str, typer.Option("--leader", help="汇总报表的单位负责人(与 --for 同用)")] = "",
    preparer: Annotated[str, typer.Option("--preparer", help="汇总报表的填表人(与 --for 同用)")] = "",
    phone: Annotated[str, typer.Option("--phone", help="汇总报表的联系电话(与 --for 同用)")] = "",
    fetch: Annotated[bool, typer.Option("--fetch", help="先收取活动邮箱中的新邮件(附件存入收件箱)")] = False,
    rules_path: RulesOption = None,
    workspace: WorkspaceOption = None,
) -> None:
    """每周运行:收取新文件、校验、给有问题的单位写反馈邮件、更新报送情况、生成汇总(草稿或终稿)。"""
    campaign = _campaign(rules_path, workspace, inbox, outbox, state, level=for_unit or "province")
    rules = campaign.rules
    when = _moment(campaign, as_of)
    if fetch:
        campaign.folders.inbox.mkdir(parents=True, exist_ok=True)  # the mailbox's files go there
    if not campaign.folders.inbox.is_dir():
        _fail(f"找不到收件箱目录 {campaign.folders.inbox}")
    sign = {"leader": leader, "preparer": preparer, "phone": phone, "date": when.date()}
    with _progress() as progress:
        result = campaign.run(
            when,
            send=send,
            final=final,
            password=_password(rules, send),
            sign=sign,
            allow_missing=allow_missing,
            progress=progress,
            fetch=fetch,
            imap_password=_imap_password(rules, fetch),
        )
    if result.fetched is not None:
        _print_fetched(result.fetched)
    _print_run(result)


def _verdicts(counts: Mapping[str, int]) -> str:
    """How many files got each verdict, in words: 通过 34,报告已收到 19,未通过 6."""
    from pipeline.model import Verdict

    shown = {Verdict.RECEIVED: "报告已收到"}
    return ",".join(f"{shown.get(Verdict(k), Verdict(k).label)} {v}" for k, v in sorted(counts.items()))


def _sent(counts: Mapping[str, int]) -> str:
    """How many e-mails are in each state, in words: 已写成 .eml 6."""
    from pipeline.model import MessageStatus

    return ",".join(f"{MessageStatus(k).label} {v}" for k, v in sorted(counts.items()))


def _print_run(result: Any) -> None:

    taken, when = result.intake, result.as_of
    typer.echo(
        f"时点 {when:%Y-%m-%d %H:%M};收件箱 {taken.seen} 个文件,新文件 {len(taken.new)} 个,"
        f"未变化 {taken.unchanged} 个,跳过 {len(taken.skipped)} 个"
    )
    for skipped in taken.skipped:
        typer.echo(f"  跳过 {skipped.path}:{skipped.reason}")
    if result.checked:
        typer.echo("校验:" + _verdicts(result.checked))
    if result.messages:
        typer.echo("邮件:" + _sent(result.messages))
    if result.status is not None:
        s = result.status
        typer.echo(
            f"报送情况:{s.units_done()}/{len({r.unit for r in s.rows})} 个单位已全部报齐;"
            + ("已过截止时间" if s.past_deadline else f"距截止还有 {s.days_left} 天")
        )
    for path in result.outputs:
        typer.echo(f"  输出:{path}")
    typer.echo("用时:" + ",".join(f"{stage} {sec:.1f} 秒" for stage, sec in result.seconds.items()))


def _imap_password(rules: Rules, fetch: bool = True) -> str | None:
    if not fetch:
        return None
    if not rules.mail.imap_host:
        _fail("rules.yaml 的 mail 一节没有设置活动邮箱(imap_host、imap_user、imap_password_env),无法收取邮件")
    value = os.environ.get(rules.mail.imap_password_env)
    if not value:
        _fail(f"要收取邮件,请先设置环境变量 {rules.mail.imap_password_env}(邮箱密码或授权码)")
    return value


def _print_fetched(got: Any) -> None:
    from pipeline.io.incoming import AUTO, BOUNCE, BULK

    words = {
        "submission": "报送",
        "empty": "无附件",
        "unusable": "附件无法收取",
        BOUNCE: "退信",
        AUTO: "自动回复",
        BULK: "群发",
        "duplicate": "重复投递",
    }
    kinds = ",".join(f"{words.get(k, k)} {v}" for k, v in sorted(got.taken.items()))
    typer.echo(
        f"邮箱:共 {got.in_mailbox} 封,新收 {sum(got.taken.values())} 封"
        + (f"({kinds})" if kinds else "")
        + f",存入收件箱 {got.files} 个文件"
        + (f",确认 {got.confirmed} 个待确认文件" if got.confirmed else "")
        + (f",退信对应到 {got.bounced} 封已发邮件" if got.bounced else "")
    )
    for line in got.notes:
        typer.echo(f"  {line}")


@command()
@_told
def fetch(
    inbox: InboxOption = None,
    outbox: OutboxOption = None,
    state: StateOption = None,
    as_of: AsOfOption = None,
    send: SendOption = False,
    rules_path: RulesOption = None,
    workspace: WorkspaceOption = None,
) -> None:
    """收取活动邮箱(只读,不删除、不标为已读):每封新邮件的附件存入收件箱,并给没有可用附件的邮件写回复。"""

    campaign = _campaign(rules_path, workspace, inbox, outbox, state)
    rules = campaign.rules
    imap_password = _imap_password(rules)
    got, sent = campaign.fetch(
        _moment(campaign, as_of), send=send, password=_password(rules, send), imap_password=imap_password
    )
    _print_fetched(got)
    if sent:
        typer.echo("邮件:" + _sent(sent))


@command()
@_told
def watch(
    inbox: InboxOption = None,
    outbox: OutboxOption = None,
    state: StateOption = None,
    send: SendOption = False,
    rules_path: RulesOption = None,
    workspace: WorkspaceOption = None,
) -> None:
    """守候活动邮箱:每来一封新邮件,立即收取、校验并回复(按 Ctrl-C 停止);与 pipeline run 可交替使用。"""
    import datetime as dt
    import signal
    import threading

    stop = threading.Event()  # asked to stop while the campaign loads: it stops before the first round
    for which in (signal.SIGINT, signal.SIGTERM):
        signal.signal(which, lambda *_: stop.set())
    campaign = _campaign(rules_path, workspace, inbox, outbox, state)
    rules = campaign.rules
    imap_password, password = _imap_password(rules), _password(rules, send)

    def said(line: str) -> None:
        typer.echo(f"{dt.datetime.now():%H:%M:%S} {line}")

    def done(round_: Any) -> None:
        taken = sum(round_.fetched.taken.values())
        checked, sent = _verdicts(round_.checked), _sent(round_.messages)
        said(
            f"新收 {taken} 封邮件、{round_.fetched.files} 个文件;校验 {checked or '无'};邮件 {sent or '无'};"
            f"用时 {round_.seconds:.1f} 秒"
        )
        for line in round_.fetched.notes:
            said(f"  {line}")

    said(f"开始守候邮箱 {rules.mail.imap_user}({rules.mail.imap_host}),按 Ctrl-C 停止")
    campaign.watch(stop, send=send, password=password, imap_password=imap_password, report=said, rounds=done)
    said("已停止守候。")


@command()
@_told
def confirm(
    numbers: Annotated[
        list[str] | None, typer.Argument(help="要确认的文件编号(不写则列出全部待确认文件)")
    ] = None,
    state: StateOption = None,
    rules_path: RulesOption = None,
    workspace: WorkspaceOption = None,
) -> None:
    """待确认的文件:发件邮箱不是该单位登记的邮箱。列出它们;工作人员核实后写编号确认,文件即计入。"""
    campaign = _campaign(rules_path, workspace, state=state)
    if numbers:
        for row in campaign.confirm(numbers):
            typer.echo(f"已确认:{row['file']}(发件人 {row['sender']}),下次运行时计入并回复校验结果")
        return
    rows = campaign.held()
    for row in rows:
        typer.echo(f"  {row['submission'][:12]}  {row['unit']}  {row['file']}\n      {row['held']}")
    typer.echo(f"待确认的文件 {len(rows)} 个" + ("(核实后用 pipeline confirm 编号 确认)" if rows else ""))


@command("send-templates")
@_told
def send_templates(
    unit: Annotated[
        str | None, typer.Option("--unit", help="只发给这个单位:代码、名称或简称,如 460100 或 海口")
    ] = None,
    outbox: OutboxOption = None,
    state: StateOption = None,
    as_of: AsOfOption = None,
    send: SendOption = False,
    rules_path: RulesOption = None,
    workspace: WorkspaceOption = None,
) -> None:
    """给每个单位发送它自己的空白模板和报送要求(报什么、发到哪个邮箱、何时截止);每个模板版本只发一次。"""

    campaign = _campaign(rules_path, workspace, outbox=outbox, state=state)
    unit = _unit(campaign.rules, unit)
    names, sent = campaign.send_templates(
        unit, _moment(campaign, as_of), send=send, password=_password(campaign.rules, send)
    )
    typer.echo(f"模板邮件 {len(names)} 封:" + ("、".join(names) if names else "各单位都已发过这一版模板"))
    if sent:
        typer.echo("邮件:" + _sent(sent))


@command()
@_told
def status(
    as_json: Annotated[bool, typer.Option("--json", help="以 JSON 输出")] = False,
    state: StateOption = None,
    as_of: AsOfOption = None,
    for_unit: ForOption = None,
    rules_path: RulesOption = None,
    workspace: WorkspaceOption = None,
) -> None:
    """各单位各事项的报送情况、收到时间、版本数、剩余天数。

    状态:通过、通过(有提醒)、已说明、省总接受、未通过、退回、未报送、逾期、已收到。
    """
    import json

    from pipeline.render import status_text

    campaign = _campaign(rules_path, workspace, state=state, level=for_unit or "province")
    now = campaign.status(_moment(campaign, as_of))
    if as_json:
        typer.echo(json.dumps(now.as_json(), ensure_ascii=False, indent=2))
    else:
        typer.echo(status_text.render_text(now, campaign.rules))


ReasonOption = Annotated[str, typer.Option("--reason", help="原因(必填),记入台账并写在汇总表中")]
ByOption = Annotated[str | None, typer.Option("--by", help="决定人,默认为本机登录的用户名")]
UnitArgument = Annotated[str, typer.Argument(help="单位代码、名称或简称(见 rules.yaml 的 units 一节)")]
ItemArgument = Annotated[str, typer.Argument(help="报送事项代码或名称(见 rules.yaml 的 items 一节)")]


def _review(action: str) -> Callable[..., None]:
    """`pipeline accept` or `pipeline return`: the same arguments, the decision `action`."""

    def command(
        unit: UnitArgument,
        item: ItemArgument,
        reason: ReasonOption = "",
        by: ByOption = None,
        state: StateOption = None,
        for_unit: ForOption = None,
        rules_path: RulesOption = None,
        workspace: WorkspaceOption = None,
    ) -> None:
        from pipeline.runs.reviews import said

        campaign = _campaign(rules_path, workspace, state=state, level=for_unit or "province")
        decide = campaign.accept if action == "accept" else campaign.return_
        typer.echo(said(campaign.rules, decide(unit, item, reason, by=by)))

    return _told(command)


ONLY_LATEST = "针对该单位该事项最新的一版,决定人、时间、原因记入台账;单位再报送新版本时以新版本为准。"
command("accept", help=f"省总接受:未通过校验的报表仍计入汇总(写明原因)。\n\n{ONLY_LATEST}")(_review("accept"))
command("return", help=f"退回:已通过(或已接受)的报表不再计入汇总(写明原因)。\n\n{ONLY_LATEST}")(
    _review("return")
)


@command()
@_told
def remind(
    outbox: OutboxOption = None,
    state: StateOption = None,
    as_of: AsOfOption = None,
    send: SendOption = False,
    for_unit: ForOption = None,
    rules_path: RulesOption = None,
    workspace: WorkspaceOption = None,
) -> None:
    """给尚未报送或仍未通过的单位发催报邮件(每个单位每天最多一封)。"""
    campaign = _campaign(rules_path, workspace, outbox=outbox, state=state, level=for_unit or "province")
    reminded = campaign.remind(_moment(campaign, as_of), send=send, password=_password(campaign.rules, send))
    typer.echo(
        f"催报 {len(reminded)} 个单位:" + ("、".join(reminded) if reminded else "今天已催报过或无需催报")
    )


@command()
@_told
def verify(
    state: StateOption = None,
    rebuild: Annotated[
        bool,
        typer.Option("--rebuild", help="台账损坏或丢失时:用最近一次自动备份恢复台账(损坏的文件改名保留)"),
    ] = False,
    for_unit: ForOption = None,
    rules_path: RulesOption = None,
    workspace: WorkspaceOption = None,
) -> None:
    """核对存档:重新计算每个原始文件的 sha256,与台账比对;--rebuild 从自动备份恢复台账。"""
    campaign = _campaign(rules_path, workspace, state=state, level=for_unit or "province")
    if rebuild:
        used = campaign.rebuild()
        typer.echo(f"已用备份 {used.name} 恢复台账;之后收到的文件会在下次 pipeline run 时重新收取")
    count, problems = campaign.verify()
    for line in problems:
        typer.echo(line)
    typer.echo(f"核对 {count} 个存档文件:" + ("全部一致" if not problems else f"{len(problems)} 处不一致"))
    raise typer.Exit(0 if not problems else 1)


@command("mail")
@_told
def mail_command(
    unknown: Annotated[bool, typer.Option("--unknown", help="列出是否送达不明的邮件")] = False,
    resend: Annotated[
        list[str] | None, typer.Option("--resend", help="确认未送达:下次 --send 时重发这封邮件(写邮件编号)")
    ] = None,
    mark_sent: Annotated[
        list[str] | None, typer.Option("--mark-sent", help="确认已送达:不再发送这封邮件(写邮件编号)")
    ] = None,
    state: StateOption = None,
    for_unit: ForOption = None,
    rules_path: RulesOption = None,
    workspace: WorkspaceOption = None,
) -> None:
    """邮件:列出送达不明的邮件,并由工作人员确认重发(--resend)或已送达(--mark-sent)。"""
    campaign = _campaign(rules_path, workspace, state=state, level=for_unit or "province")
    for key in resend or []:
        typer.echo(f"将重发:{campaign.resolve_message(key, sent=False)}")
    for key in mark_sent or []:
        typer.echo(f"已标记为送达:{campaign.resolve_message(key, sent=True)}")
    rows = campaign.messages(("unknown",) if unknown or not (resend or mark_sent) else None)
    if unknown or not (resend or mark_sent):
        for row in rows:
            typer.echo(
                f"  {row['key'].split(':')[-1][:12]}  {row['recipient']}  {row['subject']}\n      {row['detail'] or ''}"
            )
        typer.echo(
            f"送达不明的邮件 {len(rows)} 封"
            + ("(确认后用 --resend 或 --mark-sent 加邮件编号处理)" if rows else "")
        )


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
        from pipeline.model import Refused

        if isinstance(exc, Refused):  # says what to do: no log, no traceback
            typer.echo(str(exc), err=True)
            _leave(2)
        import tempfile
        import traceback

        log = Path(tempfile.gettempdir()) / f"pipeline-error-{os.getpid()}.log"
        log.write_text(traceback.format_exc(), encoding="utf-8")
        typer.echo(
            f"程序出错:{exc.__class__.__name__}: {exc}\n详细信息已写入 {log},请发给技术人员。", err=True
        )
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
