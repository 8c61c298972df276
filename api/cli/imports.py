"""``ledger import FILE --project P [--kind K] [--dry-run]``: the treasurer's spreadsheet from the
command line (a laptop, or the 街道's cron), through the same service as the API and the workspace.

Prints what the file holds (or what was recorded) as a table, the totals per kind and every problem
as 第 12 行「金额」: 无法识别 "两百". Exit status: 0 when the file is clean (a dry run) or recorded;
1 when the file has problems (nothing is recorded); 2 when it is refused as a whole (not a
spreadsheet, already imported, no such project). Works on the embedded database (starting it, or
connecting to the one a running ``ledger serve`` owns) and on ``LEDGER_DATABASE_URL``.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from api.settings import get_settings
from ledger.database import DatabaseRuntime, create_engine, upgrade
from ledger.entry_reads import RecordedEntry
from ledger.errors import LedgerError
from ledger.imports import (
    IMPORT_KINDS,
    KIND_LABELS,
    PREVIEWS_MAX,
    ImportRefused,
    ImportReport,
    ImportRow,
    prepare_import,
    run_import,
)
from ledger.money import format_fen_grouped
from ledger.projects import get_project
from reports.labels import CHANNEL_LABELS

EXIT_PROBLEMS = 1
EXIT_REFUSED = 2


@click.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--project", required=True, help="项目编号，如 jinxiu-road-2026")
@click.option(
    "--kind",
    type=click.Choice(IMPORT_KINDS),
    default="contribution",
    show_default=True,
    help="没有「类型」列时每行的类型",
)
@click.option("--dry-run", is_flag=True, help="只试导入：显示将记录的内容和所有问题，不记账")
def import_command(file: Path, project: str, kind: str, dry_run: bool) -> None:
    """导入表格（.xlsx 或 CSV）：先 --dry-run 试导入，无误后再正式导入。"""
    out = Console(highlight=False, soft_wrap=False, width=_width())
    err = Console(stderr=True, highlight=False)
    data = file.read_bytes()
    settings = get_settings()
    runtime = DatabaseRuntime(settings)
    try:
        urls = runtime.start()
        upgrade(urls.owner, settings.app_role)
        code = asyncio.run(_run(urls.app, settings, data, file.name, project, kind, dry_run, out, err))
    finally:
        runtime.stop()
    sys.exit(code)


def _width() -> int | None:
    # Piped into a file or a cron mail, rich would wrap at 80 columns and cut the Chinese text.
    return None if sys.stdout.isatty() else 160


async def _run(
    url: str,
    settings: Any,
    data: bytes,
    filename: str,
    project: str,
    kind: str,
    dry_run: bool,
    out: Console,
    err: Console,
) -> int:
    engine = create_engine(url, settings)
    try:
        async with engine.connect() as conn:
            found = await get_project(conn, project)
        with _progress(err) as progress:
            task = progress.add_task("读取表格…", total=None)
            report = await asyncio.to_thread(
                prepare_import,
                found,
                data,
                default_kind=kind,
                filename=filename,
                progress=lambda n: progress.update(task, description=f"读取表格：已读 {n:,} 行"),
            )
            progress.update(task, description="核对（现金、预算科目、出资人）…" if dry_run else "记账…")
            result = await run_import(
                engine,
                found,
                report,
                dry_run=dry_run,
                recorded_by="cli",
                render=lambda rep, recorded, import_id: {"import_id": import_id},
            )
    except ImportRefused as exc:
        _show(out, exc.report, None)
        out.print(
            Text(f"未导入：文件有 {len(exc.report.problems)} 处问题，一条也没有记账。改好后再导入。", style="bold red")
        )
        return EXIT_PROBLEMS
    except LedgerError as exc:
        err.print(Text(f"错误：{exc.detail}", style="bold red"))
        return EXIT_REFUSED
    finally:
        await engine.dispose()
    _show(out, report, result.recorded or None)
    if report.problems:
        out.print(Text(f"试导入：发现 {len(report.problems)} 处问题（未记账）。改好后再导入。", style="bold red"))
        return EXIT_PROBLEMS
    if dry_run:
        out.print(
            Text(f"试导入：{len(report.rows)} 行都没有问题（未记账）。去掉 --dry-run 即正式导入。", style="bold green")
        )
        return 0
    first, last = result.recorded[0], result.recorded[-1]
    assert last.root_hash is not None
    import_id = _import_id(result.body)
    out.print(
        Text(
            f"已导入 {len(result.recorded)} 笔：第 {first.seq}–{last.seq} 笔（导入编号 {import_id}）。"
            f"账本大小 {last.seq}，根哈希 {last.root_hash.hex()}",
            style="bold green",
        )
    )
    return 0


def _import_id(body: str) -> str:
    import json

    return str(json.loads(body).get("import_id", "")) if body else ""


def _progress(console: Console) -> Progress:
    return Progress(
        SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console, transient=True
    )


def _show(out: Console, report: ImportReport, recorded: list[RecordedEntry] | None) -> None:
    t = report.table
    where = f"工作表「{t.sheet}」" if t.format == "xlsx" else f"CSV，编码 {t.encoding}"
    line = f"文件：{t.format.upper()}（{where}），表头在第 {t.header_row} 行，数据 {report.data_rows:,} 行"
    if t.total_row is not None:
        line += f"，合计行在第 {t.total_row} 行（已核对，不导入）"
    out.print(Text(line))
    if t.ignored_columns:
        out.print(Text(f"未识别、未导入的列：{'、'.join(t.ignored_columns)}"))
    if report.rows:
        out.print(_rows_table(report.rows[:PREVIEWS_MAX], recorded, "已记账" if recorded else "将记录的内容"))
        if len(report.rows) > PREVIEWS_MAX:
            out.print(Text(f"（只列出前 {PREVIEWS_MAX} 行，另有 {len(report.rows) - PREVIEWS_MAX:,} 行）"))
        totals = Table(title="按类型合计", title_justify="left")
        totals.add_column("类型")
        totals.add_column("笔数", justify="right")
        totals.add_column("金额（元）", justify="right")
        for kind, (count, fen) in report.by_kind().items():
            totals.add_row(KIND_LABELS[kind], f"{count:,}", format_fen_grouped(fen))
        out.print(totals)
    if report.problems:
        out.print(Text(f"问题（{len(report.problems)} 处）：", style="bold red"))
        for p in report.problems:
            out.print(Text(p.text()))


def _rows_table(rows: list[ImportRow], recorded: list[RecordedEntry] | None, title: str) -> Table:
    table = Table(title=title, title_justify="left")
    for name, justify in (
        ("行", "right"),
        ("序号", "right"),
        ("类型", "left"),
        ("日期", "left"),
        ("金额（元）", "right"),
    ):
        if name == "序号" and not recorded:
            continue
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for name in ("出资人／单位", "房号", "方式", "票据号", "备注"):
        table.add_column(name, overflow="fold")
    for i, r in enumerate(rows):
        d = r.draft
        c = d.contributor
        who = c.name if c else (d.payee or d.grantor or "")
        cells = [str(r.row)]
        if recorded:
            cells.append(str(recorded[i].seq))
        cells += [
            KIND_LABELS.get(d.kind, d.kind),
            d.occurred_on.isoformat(),
            format_fen_grouped(d.amount_fen or 0),
            who or "",
            (c.household or "") if c else "",
            CHANNEL_LABELS.get(d.channel or "", ""),
            d.receipt_no or d.invoice_no or d.document_no or "",
            d.memo or d.description or "",
        ]
        table.add_row(*cells)
    return table
