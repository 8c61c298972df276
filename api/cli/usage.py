"""Click's usage errors in Chinese: a treasurer who mistypes a command or forgets ``--project``
should be told so in the language of the rest of the output.

Click words these messages in English (through gettext, with no Chinese catalogue). The root group
catches every usage error raised below it and shows it again, translated from the exception's
own fields (which option, which choices), never by parsing English text.
"""

from __future__ import annotations

from typing import IO, Any

import click
from click import exceptions as ce


def _hint(exc: ce.BadParameter) -> str:
    if exc.param_hint is not None:
        hint = exc.param_hint
        return hint if isinstance(hint, str) else " / ".join(hint)
    if exc.param is not None:
        return exc.param.get_error_hint(exc.ctx)
    return "参数"


def _has_chinese(text: str) -> bool:
    return any("\u4e00" <= ch <= "\u9fff" for ch in text)


def translate(exc: click.UsageError) -> str:
    """The error in Chinese; an error already worded in Chinese (our own callbacks) is kept."""
    if isinstance(exc, ce.MissingParameter):
        return f"缺少必需的参数 {_hint(exc)}"
    if isinstance(exc, ce.BadParameter):
        if _has_chinese(exc.message):
            return exc.message
        kind = exc.param.type if exc.param is not None else None
        if isinstance(kind, click.Choice):
            return f"{_hint(exc)} 须为 {'、'.join(map(str, kind.choices))} 之一"
        if isinstance(kind, click.IntRange):
            return f"{_hint(exc)} 须为 {kind.min} 到 {kind.max} 之间的整数"
        if isinstance(kind, click.Path):
            return f"{_hint(exc)}：找不到这个文件，或它不是文件（{exc.message}）"
        return f"{_hint(exc)} 的值无效（{exc.message}）"
    if isinstance(exc, ce.NoSuchOption):
        maybe = f"（是否想写 {'、'.join(exc.possibilities)}？）" if exc.possibilities else ""
        return f"没有选项 {exc.option_name}{maybe}"
    if isinstance(exc, ce.BadOptionUsage):
        return f"选项 {exc.option_name} 后面要写一个值"
    # NoSuchCommand is new in click 8.4; older versions raise a plain UsageError (kept as it is).
    no_such_command: Any = getattr(ce, "NoSuchCommand", None)
    if no_such_command is not None and isinstance(exc, no_such_command):
        unknown: Any = exc
        maybe = f"（是否想写 {'、'.join(unknown.possibilities)}？）" if unknown.possibilities else ""
        return f"没有命令 {unknown.command_name}{maybe}"
    return exc.format_message()


class ChineseUsageError(click.UsageError):
    def __init__(self, original: click.UsageError) -> None:
        super().__init__(translate(original), original.ctx)

    def show(self, file: IO[Any] | None = None) -> None:
        if self.ctx is not None:
            click.echo(self.ctx.get_usage(), err=True)
            click.echo(f"用 {self.ctx.command_path} --help 查看说明", err=True)
        click.echo(f"错误：{self.message}", err=True)


class ChineseUsageGroup(click.Group):
    """The root ``ledger`` group: usage errors of any command below it are shown in Chinese."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ChineseUsageError:
            raise
        except click.UsageError as exc:
            raise ChineseUsageError(exc) from None
