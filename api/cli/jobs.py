"""The treasurer's and the 街道's jobs on the command line: ``export``, ``disclose``, ``verify``
(``backup`` and ``restore`` are in api/cli/backup.py).

Composed the way api/cli/__init__.py composes ``serve``: each command resolves the database (the
embedded cluster, or ``LEDGER_DATABASE_URL``), runs one async job, and stops what it started.
Spreadsheets and PDFs (``reports``) are imported inside the commands that make them, so importing
the ledger package never pulls in a renderer.

Output: the result goes to stdout, one fact a line, for a cron log or a script; progress bars
(rich, only on a terminal) and errors go to stderr. Exit status: 0 success, 1 a mismatch found by
verification, 2 any other failure (bad input, no such project, no database).
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from api.settings import Settings, get_settings
from ledger import tree
from ledger.database import DatabaseRuntime, DatabaseUrls, create_engine, upgrade
from ledger.disclosures import list_disclosures
from ledger.drafts import ENTRY_KINDS
from ledger.embedded_pg import EmbeddedPostgresError
from ledger.entry_reads import RecordedEntry, list_entries
from ledger.errors import LedgerError
from ledger.projects import get_project, list_projects

T = TypeVar("T")
EXIT_MISMATCH = 1
EXIT_FAILURE = 2
EXPORT_PAGE = 5000
# undefined_table, undefined_column: the code is newer than the database's schema.
SCHEMA_BEHIND = ("42P01", "42703")


# -- shared by every job ------------------------------------------------------------------------


class JobFailed(Exception):
    """A failure already worded for the user (Chinese); the command prints it and exits 2."""


def fail(message: str) -> NoReturn:
    click.echo(f"错误：{message}", err=True)
    sys.exit(EXIT_FAILURE)


@contextmanager
def database(*, migrate: bool) -> Iterator[tuple[Settings, DatabaseRuntime, DatabaseUrls]]:
    """Settings, the runtime and its URLs; migrates first (as ``token create`` does) when asked
    and ``LEDGER_AUTO_MIGRATE`` allows. Known failures become one Chinese line and exit 2."""
    settings = get_settings()
    runtime = DatabaseRuntime(settings)
    try:
        urls = runtime.start()
        if migrate and settings.auto_migrate:
            upgrade(urls.owner, settings.app_role)
        yield settings, runtime, urls
    except (LedgerError, JobFailed) as exc:
        fail(exc.detail if isinstance(exc, LedgerError) else str(exc))
    except EmbeddedPostgresError as exc:
        fail(f"内置数据库无法启动：{exc}")
    except (DBAPIError, OSError) as exc:
        if getattr(getattr(exc, "orig", None), "sqlstate", None) in SCHEMA_BEHIND:
            # Read-only jobs do not migrate (a backup must be taken as it is): say what to run.
            fail("数据库结构比本程序旧（缺少表或列）：请先运行 ledger db upgrade（或启动一次 ledger serve）")
        # The driver's own first line names what went wrong (refused, no such role, …).
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        fail(f"数据库连接或操作失败：{reason}")
    finally:
        runtime.stop()


def run_job(settings: Settings, url: str, job: Callable[[AsyncEngine], Awaitable[T]]) -> T:
    async def main() -> T:
        engine = create_engine(url, settings)
        try:
            return await job(engine)
        finally:
            await engine.dispose()

    return asyncio.run(main())


class Report:
    """Results on stdout, progress on stderr (only when stderr is a terminal: a cron log stays clean)."""

    def __init__(self) -> None:
        self.err = Console(stderr=True, highlight=False)
        self.live = self.err.is_terminal
        self._progress: Progress | None = None

    def say(self, line: str) -> None:
        # While a bar is drawn on the same terminal, print above it instead of through it.
        if self._progress is not None and sys.stdout.isatty():
            # soft_wrap: a root hash wrapped by rich would no longer copy and paste as one.
            self._progress.console.print(line, markup=False, highlight=False, soft_wrap=True)
        else:
            click.echo(line)

    @contextmanager
    def bar(self, description: str, total: int | None) -> Iterator[Callable[[int], None]]:
        """A progress bar (``total`` steps; None: a spinner); yields ``advance_to(done)``."""
        columns: list[Any] = [SpinnerColumn(), TextColumn("{task.description}")]
        if total is not None:
            columns += [BarColumn(), MofNCompleteColumn()]
        columns.append(TimeElapsedColumn())
        progress = Progress(
            *columns,
            console=self.err,
            disable=not self.live,
            transient=True,
            redirect_stdout=False,
            redirect_stderr=False,
        )
        with progress:
            task = progress.add_task(description, total=total)
            self._progress = progress
            try:
                yield lambda done: progress.update(task, completed=done)
            finally:
                self._progress = None


def _date(_ctx: click.Context | None, param: click.Parameter, value: str | None) -> date | None:
    if value is None:
        return None
    text = value.strip().replace("/", "-").replace(".", "-").replace("年", "-").replace("月", "-").removesuffix("日")
    try:
        return date.fromisoformat(text) if len(text) == 10 else datetime.strptime(text, "%Y-%m-%d").date()
    except ValueError:
        raise click.BadParameter(f"无法识别日期 {value!r}，请写成 2026-11-30", param=param) from None


# -- export -------------------------------------------------------------------------------------


@dataclass
class _Export:
    title: str
    tree_size: int
    root_hash: bytes
    entries: list[RecordedEntry]


async def _read_entries(engine: AsyncEngine, code: str, kind: str | None, advance: Callable[[int], None]) -> _Export:
    async with engine.connect() as conn:
        # One snapshot: the head printed with the file is the one its rows were read at.
        await conn.execution_options(isolation_level="REPEATABLE READ")
        project = await get_project(conn, code)
        head = await tree.head(conn, code)
        rows: list[RecordedEntry] = []
        while True:
            page = await list_entries(
                conn, code, kind=kind, after_seq=rows[-1].seq if rows else 0, limit=EXPORT_PAGE, seq_max=head.size
            )
            rows.extend(page)
            if rows:
                advance(rows[-1].seq)
            if len(page) < EXPORT_PAGE:
                break
    advance(head.size)
    return _Export(project.title, head.size, head.root_hash, rows)


def _write_atomically(path: Path, data: bytes) -> None:
    """Write beside the target and rename, so a reader (or a cron's next run) never sees half a file."""
    partial = path.with_name(f".{path.name}.partial-{os.getpid()}")
    try:
        with partial.open("wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        partial.replace(path)
    finally:
        partial.unlink(missing_ok=True)


FORMAT_LABELS = {"csv": "CSV", "xlsx": "XLSX", "json": "JSON"}


@click.command()
@click.option("--project", "-p", "code", required=True, help="项目编号，如 jinxiu-road-2026")
@click.option("--format", "-f", "fmt", type=click.Choice(["csv", "xlsx", "json"]), required=True, help="文件格式")
@click.option(
    "--output", "-o", type=click.Path(dir_okay=False, writable=True, path_type=Path), required=True, help="写到哪个文件"
)
@click.option("--kind", type=click.Choice(ENTRY_KINDS), default=None, help="只导出这一类记录")
def export(code: str, fmt: str, output: Path, kind: str | None) -> None:
    """导出记账凭证（与公开的 API 导出相同：姓名脱敏，住址只到楼栋）。"""
    from reports.exports import entries_csv, entries_json, entries_xlsx

    report = Report()
    if not output.parent.is_dir():
        fail(f"目录不存在：{output.parent}")
    with database(migrate=False) as (settings, _, urls):

        async def job(engine: AsyncEngine) -> _Export:
            with report.bar("读取记账凭证", total=None) as advance:
                return await _read_entries(engine, code, kind, advance)

        got = run_job(settings, urls.app, job)
        # The public export: the command has no caller to decide otherwise, and a file on a laptop
        # travels further than a page does.
        if fmt == "csv":
            data = entries_csv(got.entries, unmasked=False)
        elif fmt == "xlsx":
            data = entries_xlsx(got.entries, unmasked=False, title=got.title)
        else:
            data = entries_json(
                got.entries,
                unmasked=False,
                project=code,
                title=got.title,
                tree_size=got.tree_size,
                root_hash=got.root_hash,
            )
        _write_atomically(output, data)
    report.say(f"已导出 {len(got.entries)} 笔记录到 {output}（{FORMAT_LABELS[fmt]}，{len(data):,} 字节，姓名已脱敏）")
    report.say(f"账本大小：{got.tree_size}")
    report.say(f"根哈希：{got.root_hash.hex()}")


# -- disclose -----------------------------------------------------------------------------------


@click.command()
@click.option("--project", "-p", "code", required=True, help="项目编号")
@click.option("--from", "period_start", required=True, callback=_date, help="公示期间起，如 2026-11-01")
@click.option("--to", "period_end", required=True, callback=_date, help="公示期间止，如 2026-11-30")
@click.option("--notice-days", type=click.IntRange(1, 90), default=7, show_default=True, help="公示天数")
@click.option("--title", default=None, help="标题（默认：社区 + 项目 + 资金收支公示）")
@click.option(
    "--key",
    default=None,
    help="幂等键：同一个键再次运行（如定时任务重试）只显示已发布的那一期，不会重复发布",
)
def disclose(
    code: str, period_start: date, period_end: date, notice_days: int, title: str | None, key: str | None
) -> None:
    """发布公示表（与 API 相同：PDF 只生成一次并永久保存），打印网址、账本大小、根哈希和 PDF 的 SHA-256。"""
    import json

    from api.sheets import pdf_maker
    from ledger.disclosures import Disclosure, DisclosureDraft, publish_disclosure
    from ledger.idempotency import IdempotencyRequest, fingerprint
    from reports.render import PdfRenderer, check_cjk_font

    report = Report()
    try:
        # Without a CJK font every 汉字 on the sheet would print as an empty box.
        check_cjk_font()
    except RuntimeError as exc:
        fail(str(exc))
    draft = DisclosureDraft(period_start=period_start, period_end=period_end, notice_days=notice_days, title=title)
    with database(migrate=True) as (settings, _, urls):
        idempotency = None
        if key is not None:
            asked = json.dumps([code, str(period_start), str(period_end), notice_days, title], ensure_ascii=False)
            idempotency = IdempotencyRequest("cli", key, fingerprint(b"ledger disclose", asked.encode()))

        def shown(d: Disclosure) -> dict[str, Any]:
            return {
                "id": d.id,
                "sheet_number": d.sheet_number,
                "title": d.title,
                "tree_size": d.tree_size,
                "root_hash": d.root_hash.hex(),
                "pdf_sha256": d.pdf_sha256,
                "notice_start": d.notice_start.isoformat(),
                "notice_end": d.notice_end.isoformat(),
            }

        async def job(engine: AsyncEngine) -> tuple[dict[str, Any], bool]:
            # One sheet: a thread is enough (the service renders in worker processes to keep
            # serving meanwhile).
            async with PdfRenderer(max_concurrent=1, mode="thread") as renderer:
                make = pdf_maker(renderer, settings.public_base_url)

                with report.bar("正在生成并保存公示表 PDF", total=None):
                    stored, replayed = await publish_disclosure(
                        engine,
                        code,
                        draft,
                        published_by="cli",
                        make_pdf=make,
                        render=shown,
                        idempotency=idempotency,
                    )
            return json.loads(stored.body), replayed

        sheet, replayed = run_job(settings, urls.app, job)
    base = settings.public_base_url.rstrip("/")
    report.say(f"{'此幂等键已发布过' if replayed else '已发布'}公示表第 {sheet['sheet_number']} 期：{sheet['title']}")
    report.say(f"网址：{base}/d/{sheet['id']}")
    report.say(f"PDF：{base}/api/v1/disclosures/{sheet['id']}/pdf")
    report.say(f"账本大小：{sheet['tree_size']}")
    report.say(f"根哈希：{sheet['root_hash']}")
    report.say(f"PDF SHA-256：{sheet['pdf_sha256']}")
    report.say(f"公示期：{sheet['notice_start']} 至 {sheet['notice_end']}")


# -- verify -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProjectCheck:
    code: str
    size: int
    root_hash: bytes
    sheets: int
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.problems

    def line(self) -> str:
        if self.ok:
            sheets = f"公示表 {self.sheets} 期的根哈希相符" if self.sheets else "尚无公示表"
            return f"✓ {self.code}：{self.size} 笔，根哈希 {self.root_hash.hex()}，{sheets}，核验通过"
        return f"✗ {self.code}：{'；'.join(self.problems)}"


async def check_project(engine: AsyncEngine, code: str) -> ProjectCheck:
    """Recompute the project's log (ledger.tree.verify) and hold every published sheet's root
    against it: a rewrite consistent all the way up to the head still differs from the paper."""
    v = await tree.verify(engine, code)
    problems: list[str] = []
    if v.first_bad_seq is not None:
        problems.append(f"第 {v.first_bad_seq} 笔（seq={v.first_bad_seq}）起与存储的哈希不符")
    if v.unbalanced_accounts:
        problems.append(f"账户余额与分录合计不符：{', '.join(v.unbalanced_accounts)}")
    if not v.contributor_totals_ok:
        problems.append("出资人累计金额与记录不符")
    if not v.pledge_totals_ok:
        problems.append("认筹兑现合计与记录不符")
    sheets = 0
    after = 0
    while True:
        async with engine.connect() as conn:
            page = await list_disclosures(conn, code, after_id=after, limit=200)
        for d in page:
            sheets += 1
            if d.tree_size > v.size:
                problems.append(f"公示表第 {d.sheet_number} 期的账本大小 {d.tree_size} 超过账本现有的 {v.size} 笔")
                continue
            async with engine.connect() as conn:
                _, root = await tree.root_at(conn, code, d.tree_size)
            if root != d.root_hash:
                problems.append(f"公示表第 {d.sheet_number} 期（大小 {d.tree_size}）的根哈希与账本不符")
        if len(page) < 200:
            break
        after = page[-1].id
    return ProjectCheck(code, v.size, v.root_hash, sheets, tuple(problems))


async def all_project_codes(engine: AsyncEngine) -> list[str]:
    codes: list[str] = []
    after = 0
    while True:
        async with engine.connect() as conn:
            page = await list_projects(conn, community_code=None, stage=None, after_id=after, limit=500)
        codes.extend(p.code for p in page)
        if len(page) < 500:
            return codes
        after = page[-1].id


async def check_projects(engine: AsyncEngine, codes: list[str] | None, report: Report) -> list[ProjectCheck]:
    """Check ``codes`` (None: every project), printing a line per project as it is done."""
    if codes is None:
        codes = await all_project_codes(engine)
    else:
        for code in codes:
            async with engine.connect() as conn:
                await get_project(conn, code)  # NotFound before any work
    results = []
    with report.bar("核验账本", total=len(codes)) as advance:
        for done, code in enumerate(codes, start=1):
            result = await check_project(engine, code)
            report.say(result.line())
            results.append(result)
            advance(done)
    return results


def summary_line(results: list[ProjectCheck]) -> str:
    bad = [r.code for r in results if not r.ok]
    if not results:
        return "没有项目需要核验"
    if not bad:
        return f"核验 {len(results)} 个项目：全部通过"
    return f"核验 {len(results)} 个项目：{len(bad)} 个不符（{', '.join(bad)}）"


@click.command()
@click.option("--project", "-p", "codes", multiple=True, help="只核验这个项目（可重复）")
@click.option("--all", "all_projects", is_flag=True, help="核验全部项目（不写 --project 时也是全部）")
def verify(codes: tuple[str, ...], all_projects: bool) -> None:
    """从存储的字段重算每一笔的哈希和整棵默克尔树，并与已发布公示表上的根哈希核对；有任何不符则退出码为 1。"""
    if codes and all_projects:
        fail("--project 与 --all 只能选一个")
    report = Report()
    with database(migrate=False) as (settings, _, urls):
        results = run_job(settings, urls.app, lambda engine: check_projects(engine, list(codes) or None, report))
    report.say(summary_line(results))
    if any(not r.ok for r in results):
        sys.exit(EXIT_MISMATCH)


COMMANDS = [export, disclose, verify]
