"""The command line framework's own words in Chinese: the help page's headings and the help option, and
usage errors (a missing argument, an unknown command or option) told the way `pipeline`'s own messages are.

Only Click's public API: a `HelpFormatter` the contexts make, `get_help_option`, `resolve_command`, and the
group's `main` run with `standalone_mode=False` so that a `click.UsageError` is shown here, not by Click.
Typer 0.26 and later run their commands with their own copy of Click and export part of it under public
names: `typer.Context` (a Click context; its `formatter_class` is Click's HelpFormatter) and
`typer.BadParameter` (a Click UsageError, itself a ClickException, as Click documents). The classes used
here are taken from those names, never imported from Typer's private module, so a command's exception is
caught whichever Click runs it; the kinds of usage error are told apart by what Click documents them to
carry (a missing parameter's `param_type`, an unknown option's `option_name`).
"""

from __future__ import annotations

import difflib
import re
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, NoReturn

import typer
from typer.core import TyperCommand, TyperGroup

HelpFormatter: Any = typer.Context.formatter_class
UsageError: Any = next(k for k in typer.BadParameter.__mro__ if k.__name__ == "UsageError")
ClickException: Any = next(k for k in typer.BadParameter.__mro__ if k.__name__ == "ClickException")
ClickContext = Any  # a Click context (typer.Context is one; the base class is in Typer's copy of Click)


def _kind(exc: BaseException) -> str:
    """Which usage error: Click's class name (MissingParameter, NoSuchOption, NoArgsIsHelpError, …)."""
    return type(exc).__name__


HEADINGS = {"Options": "选项", "Arguments": "参数", "Commands": "命令"}
HELP = "显示本帮助并退出"
# The framework's notes after an option's help, and the placeholders of a usage line.
NOTES = (
    (re.compile(r"\[required\]"), "[必填]"),
    (re.compile(r"\[env var: ([^\]]*)\]"), r"[环境变量:\1]"),
    (re.compile(r"\[default: ([^\]]*)\]"), r"[默认:\1]"),
)
USAGE = (("[OPTIONS]", "[选项]"), ("COMMAND [ARGS]...", "命令 [参数]..."))


class Formatter(HelpFormatter):
    """Click's help layout with Chinese headings."""

    def write_usage(self, prog: str, args: str = "", prefix: str | None = None) -> None:
        for english, chinese in USAGE:
            args = args.replace(english, chinese)
        super().write_usage(prog, args, prefix="用法:")

    @contextmanager
    def section(self, name: str) -> Iterator[None]:
        with super().section(HEADINGS.get(name, name)):
            yield

    def write_dl(self, rows: Sequence[tuple[str, str]], col_max: int = 30, col_spacing: int = 2) -> None:
        super().write_dl([(term, _notes(text)) for term, text in rows], col_max, col_spacing)


def _notes(text: str) -> str:
    for pattern, chinese in NOTES:
        text = pattern.sub(chinese, text)
    return text


class Context(typer.Context):
    formatter_class = Formatter


class Command(TyperCommand):
    """A `pipeline` command: Chinese help."""

    context_class = Context

    def get_help_option(self, ctx: ClickContext) -> Any:
        return _chinese_help(super().get_help_option(ctx))


class Group(TyperGroup):
    """The `pipeline` command group: Chinese help, an unknown command answered with the nearest ones, and
    every usage error shown in Chinese."""

    context_class = Context

    def get_help_option(self, ctx: ClickContext) -> Any:
        return _chinese_help(super().get_help_option(ctx))

    def resolve_command(self, ctx: ClickContext, args: list[str]) -> tuple[str | None, Any, list[str]]:
        name = args[0] if args else ""
        if name and not name.startswith("-") and self.get_command(ctx, name) is None:
            near = difflib.get_close_matches(name, self.list_commands(ctx))
            hint = (
                f"是不是要用 {'、'.join(near)}?"
                if near
                else f"可用的命令:{'、'.join(self.list_commands(ctx))}"
            )
            raise UsageError(f"没有 {name} 这个命令;{hint}", ctx)
        return super().resolve_command(ctx, args)

    def main(  # type: ignore[override]  # the same parameters, passed on by keyword
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        try:
            done = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except UsageError as exc:
            if not standalone_mode:
                raise
            _show(exc)
        except ClickException as exc:
            if not standalone_mode:
                raise
            typer.echo(f"错误:{exc.format_message()}", err=True)
            sys.exit(exc.exit_code)
        except typer.Abort:
            if not standalone_mode:
                raise
            typer.echo("已取消。", err=True)
            sys.exit(1)
        if not standalone_mode:
            return done
        sys.exit(done if isinstance(done, int) else 0)


def _chinese_help(option: Any) -> Any:
    if option is not None:
        option.help = HELP
    return option


def _show(exc: UsageError) -> NoReturn:
    """A usage error as Click lays it out (usage line, where to find help, the error), in Chinese."""
    ctx = exc.ctx
    if _kind(exc) == "NoArgsIsHelpError" and ctx is not None:
        typer.echo(ctx.get_help(), err=True)
        sys.exit(exc.exit_code)
    if ctx is not None:
        typer.echo(ctx.get_usage(), err=True)
        typer.echo(f"查看用法:{ctx.command_path} --help\n", err=True)
    typer.echo(f"错误:{message(exc)}", err=True)
    sys.exit(exc.exit_code)


def message(exc: UsageError) -> str:
    """What went wrong, in Chinese: Click words its usage errors in English."""
    ctx = exc.ctx
    if _kind(exc) == "MissingParameter" and exc.param is not None:
        param = exc.param
        kind = "参数" if param.param_type_name == "argument" else "选项"
        name = param.get_error_hint(ctx) if ctx is not None else param.name
        said = getattr(param, "help", None)
        return f"缺少{kind} {name}" + (f"({said})" if said else "")
    if _kind(exc) == "NoSuchOption":
        near = f";是不是要用 {'、'.join(exc.possibilities)}?" if exc.possibilities else ""
        return f"没有 {exc.option_name} 这个选项{near}"
    if isinstance(exc, typer.BadParameter):
        hint = exc.param_hint or (exc.param.get_error_hint(ctx) if exc.param and ctx else "")
        return f"{hint} 的值不对:{_value_error(exc.message)}".lstrip()
    text = exc.format_message()
    for pattern, chinese in _USAGE_ERRORS:
        found = pattern.fullmatch(text)
        if found:
            return found.expand(chinese)
    return text


def _value_error(text: str) -> str:
    for pattern, chinese in _VALUE_ERRORS:
        found = pattern.fullmatch(text)
        if found:
            return found.expand(chinese)
    return text


_USAGE_ERRORS = (
    (re.compile(r"Got unexpected extra argument(s|\(s\))? \((.*)\)"), r"多出了参数 \2"),
    (re.compile(r"Option '(.*)' requires an argument\."), r"选项 \1 后面要写一个值"),
    (re.compile(r"Option '(.*)' requires (\d+) arguments\."), r"选项 \1 后面要写 \2 个值"),
    (re.compile(r"Option '(.*)' does not take a value\."), r"选项 \1 后面不能写值"),
    (re.compile(r"Missing command\."), "缺少命令"),
)
_VALUE_ERRORS = (
    (re.compile(r"'(.*)' is not a valid int(eger)?( range)?\."), r"“\1”不是整数"),
    (re.compile(r"'(.*)' is not a valid float( range)?\."), r"“\1”不是数字"),
    (re.compile(r"'(.*)' is not a valid boolean\."), r"“\1”应为 yes 或 no"),
    (re.compile(r"(File|Directory|Path) '(.*)' does not exist\."), r"找不到 \2"),
    (re.compile(r"'(.*)' is not one of (.*)\."), r"“\1”不在可选值 \2 之中"),
)
