"""``ledger backup`` and ``ledger restore``: the whole ledger database, with PostgreSQL's own tools.

A custom-format ``pg_dump`` is a complete, consistent copy: the sheets' PDFs live in the database,
so it is the whole record. The programs are the embedded cluster's own (the version that wrote
the data); for an external database, the first of ``LEDGER_PG_BINARIES``, pgserver's and the
system's that is at least the server's version (pg_dump refuses a newer server). Both connect as
the schema owner (``LEDGER_OWNER_DATABASE_URL``): only it can read and recreate everything.

Backup: a REPEATABLE READ transaction exports its snapshot, reads every project's head in it, and
pg_dump dumps exactly that snapshot (``--snapshot``), so the roots printed are the roots in the
file, however busy the service is meanwhile.

Restore refuses a database that holds anything unless ``--force``. pg_restore's SQL goes to psql
as ONE transaction (after the ``--force`` reset, in the same transaction), so a restore that
fails leaves the database exactly as it was. Then migrations bring an older backup up to the
code's head, and every project is verified (leaves, tree, the head's root as backed up, every
sheet's root) as ``ledger verify --all`` would.
"""

from __future__ import annotations

import collections
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import click
from sqlalchemy import make_url, text
from sqlalchemy.ext.asyncio import AsyncEngine

from api.cli.jobs import (
    EXIT_MISMATCH,
    JobFailed,
    Report,
    check_projects,
    database,
    fail,
    run_job,
    summary_line,
)
from api.settings import Settings, get_settings
from ledger.database import DatabaseRuntime, upgrade
from ledger.embedded_pg import binary_candidates, clean_env

PROGRAMS = ("pg_dump", "pg_restore", "psql")
ARCHIVE_MAGIC = b"PGDMP"
# libpq settings a deployment may legitimately put in the environment (certificates, a password
# file); every other PG* variable is dropped so it cannot point the tools at another database.
PASSED_THROUGH = ("PGPASSFILE", "PGSSLROOTCERT", "PGSSLCERT", "PGSSLKEY", "PGSSLCRL", "PGSSLMODE")
LIBPQ_SSLMODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")


def _require_owner_url() -> None:
    settings = get_settings()
    if settings.database_url and not settings.owner_database_url:
        fail("备份和恢复须以拥有账本表的角色连接数据库：请设置 LEDGER_OWNER_DATABASE_URL（见 docs/deploy.md）")


def _query_value(value: str | tuple[str, ...] | None) -> str | None:
    return value[0] if isinstance(value, tuple) else value


def libpq_env(url: str, bin_dir: Path) -> dict[str, str]:
    """The SQLAlchemy URL as libpq environment variables (the password never on a command line)."""
    u = make_url(url)
    env = clean_env(bin_dir)
    env.update({k: os.environ[k] for k in PASSED_THROUGH if k in os.environ})
    host = u.host or _query_value(u.query.get("host"))
    port = u.port or _query_value(u.query.get("port"))
    settings = {
        "PGHOST": host,
        "PGPORT": str(port) if port else None,
        "PGUSER": u.username,
        "PGPASSWORD": u.password if isinstance(u.password, str) else None,
        "PGDATABASE": u.database,
        "PGAPPNAME": "ledger backup",
        "PGCONNECT_TIMEOUT": "30",
        # Notices ("drop cascades to …") are noise here; a restore waits at most 30 s for a lock.
        "PGOPTIONS": "-c client_min_messages=warning -c lock_timeout=30s",
    }
    ssl = _query_value(u.query.get("sslmode")) or _query_value(u.query.get("ssl"))
    if ssl:
        settings["PGSSLMODE"] = ssl if ssl in LIBPQ_SSLMODES else ("require" if ssl in ("true", "1") else ssl)
    env.update({k: v for k, v in settings.items() if v})
    return env


def _major(program: Path) -> int | None:
    try:
        out = subprocess.run([str(program), "--version"], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    found = re.search(r"\)\s*(\d+)", out.stdout)
    return int(found.group(1)) if found else None


def postgres_programs(runtime: DatabaseRuntime, settings: Settings, server_major: int) -> Path:
    """The ``bin/`` with pg_dump, pg_restore and psql to use against this server."""
    if runtime.embedded is not None:
        return runtime.embedded.bin_dir
    on_path = shutil.which("pg_dump")
    candidates = [*binary_candidates(settings.pg_binaries), *binary_candidates("auto")]
    if on_path:
        candidates.append(Path(on_path).resolve().parent)
    for bin_dir in dict.fromkeys(candidates):
        if all((bin_dir / p).exists() for p in PROGRAMS) and (_major(bin_dir / "pg_dump") or 0) >= server_major:
            return bin_dir
    raise JobFailed(
        f"找不到 PostgreSQL {server_major} 或更新版本的 pg_dump、pg_restore 和 psql："
        f"请安装 postgresql-client-{server_major}，或用 LEDGER_PG_BINARIES 指向它们所在的 bin 目录"
    )


def _failure(lines: collections.deque[str]) -> str:
    errors = [line for line in lines if "error" in line.lower() or "错误" in line]
    return "\n".join(errors or list(lines)).strip()


def _count_steps(proc: subprocess.Popen[bytes], marker: str, advance: Callable[[int], None]) -> collections.deque[str]:
    """Read a verbose PostgreSQL program's stderr: each ``marker`` line is a step done; keep the
    last lines for an error message."""
    tail: collections.deque[str] = collections.deque(maxlen=30)
    done = 0
    assert proc.stderr is not None
    for raw in proc.stderr:
        line = raw.decode("utf-8", errors="replace").rstrip()
        if marker in line:
            done += 1
            advance(done)
        else:
            tail.append(line)
    return tail


# -- backup -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Head:
    code: str
    size: int
    root_hash: bytes


_HEADS_SQL = text(
    "SELECT p.code, h.size, h.root_hash FROM projects p JOIN project_heads h ON h.project_id = p.id ORDER BY p.code"
)
_TABLES_SQL = text(
    "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
    "WHERE n.nspname = 'public' AND c.relkind = 'r'"
)


async def _dump(
    engine: AsyncEngine, runtime: DatabaseRuntime, settings: Settings, url: str, partial: Path, report: Report
) -> list[Head]:
    import asyncio

    async with engine.connect() as conn:
        await conn.execution_options(isolation_level="REPEATABLE READ")
        # The transaction's snapshot, exported: pg_dump reads exactly what the heads below say.
        snapshot = (await conn.execute(text("SELECT pg_export_snapshot()"))).scalar_one()
        heads = [Head(r.code, r.size, bytes(r.root_hash)) for r in await conn.execute(_HEADS_SQL)]
        tables = (await conn.execute(_TABLES_SQL)).scalar_one()
        server_major = int((await conn.execute(text("SHOW server_version_num"))).scalar_one()) // 10000
        bin_dir = postgres_programs(runtime, settings, server_major)
        args = [
            str(bin_dir / "pg_dump"),
            "--format=custom",
            "--verbose",
            "--no-password",
            f"--snapshot={snapshot}",
            f"--file={partial}",
        ]

        def run(advance: Callable[[int], None]) -> None:
            proc = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                env=libpq_env(url, bin_dir),
            )
            tail = _count_steps(proc, "dumping contents of table", advance)
            if proc.wait() != 0:
                raise JobFailed(f"pg_dump 失败，未写出备份：\n{_failure(tail)}")

        with report.bar("正在备份数据库", total=tables) as advance:
            # The snapshot lives as long as this transaction: pg_dump runs while it is open.
            await asyncio.to_thread(run, advance)
        await conn.rollback()
    return heads


@click.command()
@click.option(
    "--output",
    "-o",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="备份文件，如 ledger-2026-11-30.dump",
)
def backup(output: Path) -> None:
    """备份整个账本数据库（pg_dump 自定义格式，含已发布公示表的 PDF），并打印每个项目的根哈希。"""
    report = Report()
    _require_owner_url()
    if not output.parent.is_dir():
        fail(f"目录不存在：{output.parent}")
    partial = output.with_name(f".{output.name}.partial-{os.getpid()}")
    try:
        # Names and phone numbers are in the backup: readable by its owner only (pg_dump keeps the
        # mode of the file it truncates).
        partial.unlink(missing_ok=True)
        os.close(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        with database(migrate=False) as (settings, runtime, urls):
            heads = run_job(
                settings, urls.owner, lambda engine: _dump(engine, runtime, settings, urls.owner, partial, report)
            )
            with partial.open("rb") as fh:
                os.fsync(fh.fileno())
                digest = hashlib.file_digest(fh, "sha256").hexdigest()
            partial.replace(output)
    finally:
        partial.unlink(missing_ok=True)
    report.say(f"已备份到 {output}（{output.stat().st_size:,} 字节，{len(heads)} 个项目）")
    report.say(f"备份文件 SHA-256：{digest}")
    for head in heads:
        report.say(f"  {head.code}：{head.size} 笔，根哈希 {head.root_hash.hex()}")


# -- restore ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    server_major: int
    objects: int
    projects: int | None


async def _inspect(engine: AsyncEngine) -> Target:
    async with engine.connect() as conn:
        objects = (
            await conn.execute(
                text(
                    "SELECT (SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                    "        WHERE n.nspname = 'public')"
                    "     + (SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
                    "        WHERE n.nspname = 'public')"
                )
            )
        ).scalar_one()
        has_projects = (await conn.execute(text("SELECT to_regclass('public.projects') IS NOT NULL"))).scalar_one()
        projects = (await conn.execute(text("SELECT count(*) FROM projects"))).scalar_one() if has_projects else None
        server_major = int((await conn.execute(text("SHOW server_version_num"))).scalar_one()) // 10000
    return Target(server_major, objects, projects)


async def _analyze(engine: AsyncEngine) -> None:
    # A restore brings no planner statistics; without them the first queries plan blind.
    async with engine.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        await conn.execute(text("ANALYZE"))


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _restore_into(bin_dir: Path, env: dict[str, str], archive: Path, reset: str | None, report: Report) -> None:
    listing = subprocess.run(
        [str(bin_dir / "pg_restore"), "--list", str(archive)], capture_output=True, env=env, check=False
    )
    if listing.returncode != 0:
        raise JobFailed(f"无法读取备份文件 {archive}：{listing.stderr.decode('utf-8', errors='replace').strip()}")
    tables = sum(1 for line in listing.stdout.decode("utf-8", errors="replace").splitlines() if " TABLE DATA " in line)
    psql = [str(bin_dir / "psql"), "-X", "-q", "--no-password", "-v", "ON_ERROR_STOP=1", "--single-transaction"]
    if reset is not None:
        psql += ["-c", reset]
    psql += ["-f", "-"]
    with tempfile.TemporaryFile() as psql_errors, report.bar("正在恢复数据库", total=tables) as advance:
        # pg_restore writes the SQL (no owner: the restoring role owns what it creates); psql runs
        # it, and the reset before it, as one transaction.
        dump = subprocess.Popen(
            [str(bin_dir / "pg_restore"), "--no-owner", "--verbose", "--file=-", str(archive)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        assert dump.stdout is not None
        load = subprocess.Popen(psql, stdin=dump.stdout, stdout=subprocess.DEVNULL, stderr=psql_errors, env=env)
        dump.stdout.close()  # psql owns the pipe now; if it stops, pg_restore sees a broken pipe
        tail = _count_steps(dump, "processing data for table", advance)
        dump_status, load_status = dump.wait(), load.wait()
        psql_errors.seek(0)
        load_tail = psql_errors.read().decode("utf-8", errors="replace").strip()
    if load_status != 0 or dump_status != 0:
        why = load_tail or _failure(tail)
        raise JobFailed(f"恢复失败，数据库没有任何改动：\n{why}")


@click.command()
@click.argument("archive", metavar="FILE", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="覆盖已有数据的数据库（其中现有的账本全部被替换）")
def restore(archive: Path, force: bool) -> None:
    """从 ledger backup 的备份文件恢复到空的数据库（内置数据库的新数据目录会自动创建），迁移到最新结构后核验全部项目。"""
    report = Report()
    with archive.open("rb") as fh:
        if fh.read(len(ARCHIVE_MAGIC)) != ARCHIVE_MAGIC:
            fail(f"{archive} 不是 ledger backup（pg_dump 自定义格式）生成的备份文件")
    _require_owner_url()
    with database(migrate=False) as (settings, runtime, urls):
        target = run_job(settings, urls.owner, _inspect)
        reset = None
        if target.objects:
            if not force:
                held = f"，含 {target.projects} 个项目的账本" if target.projects else ""
                raise JobFailed(
                    f"拒绝恢复：目标数据库不是空的（已有 {target.objects} 个表、序列或函数{held}）。"
                    "恢复会用备份替换其中的全部数据；确认要覆盖，请加 --force"
                )
            # The owner owns the schema (docs/deploy.md); a new one gets the same grants.
            reset = (
                "DROP SCHEMA public CASCADE; CREATE SCHEMA public; REVOKE ALL ON SCHEMA public FROM PUBLIC; "
                f"GRANT USAGE ON SCHEMA public TO {_quote_ident(settings.app_role)};"
            )
        bin_dir = postgres_programs(runtime, settings, target.server_major)
        _restore_into(bin_dir, libpq_env(urls.owner, bin_dir), archive, reset, report)
        # "Migrates as needed": a backup made by an older version comes up to this code's schema.
        upgrade(urls.owner, settings.app_role)
        run_job(settings, urls.owner, _analyze)
        report.say(f"已从 {archive} 恢复{'（覆盖了原有数据）' if reset else ''}，正在核验全部项目：")
        results = run_job(settings, urls.app, lambda engine: check_projects(engine, None, report))
    report.say(summary_line(results))
    if any(not r.ok for r in results):
        raise SystemExit(EXIT_MISMATCH)


COMMANDS = [backup, restore]
