"""The service runs on its own PostgreSQL: start, reuse, stop, crash recovery, both binary
sources, external-URL mode, migrations and the application role's limits."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import asyncpg
import psutil
import pytest
from click.testing import CliRunner
from litestar.testing import AsyncTestClient

from api.app import create_app
from api.cli import main as cli
from api.settings import Settings
from ledger.database import (
    DatabaseRuntime,
    UnsafeDatabaseRole,
    create_engine,
    ensure_app_role_owns_nothing,
    head_revision,
)
from ledger.embedded_pg import SUPERUSER, EmbeddedPostgres, find_binaries
from tests.conftest import Database


def _postgres_pids(data_dir: Path) -> list[int]:
    pids = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if "postgres" in cmdline and str(data_dir) in cmdline:
            pids.append(proc.pid)
    return pids


async def _query(dsn: str, sql: str) -> object:
    """Run ``sql`` (one or more statements); the value of the last statement if it is a query."""
    conn = await asyncpg.connect(dsn)
    try:
        *setup, last = [s for s in sql.split(";") if s.strip()]
        for statement in setup:
            await conn.execute(statement)
        return await conn.fetchval(last)
    finally:
        await conn.close()


@pytest.mark.parametrize("binaries", ["auto", "system"])
def test_embedded_start_stop_restart_keeps_data(tmp_path: Path, binaries: str) -> None:
    pg = EmbeddedPostgres(tmp_path / "pg", binaries=binaries)
    if binaries == "system":
        assert "/usr/lib/postgresql" in str(pg.bin_dir) or "pgserver" not in str(pg.bin_dir)
    info = pg.start()
    dsn = info.dsn(SUPERUSER, "postgres")
    asyncio.run(_query(dsn, "CREATE TABLE kept (v int); INSERT INTO kept VALUES (42)"))
    pg.stop()
    assert _postgres_pids(pg.data_dir) == [], "stop leaves no PostgreSQL process behind"

    pg2 = EmbeddedPostgres(tmp_path / "pg", binaries=binaries)
    info2 = pg2.start()
    try:
        assert asyncio.run(_query(info2.dsn(SUPERUSER, "postgres"), "SELECT v FROM kept")) == 42
    finally:
        pg2.stop()
    assert _postgres_pids(pg2.data_dir) == []


def test_server_killed_hard_leaves_stale_lock_that_does_not_block_start(tmp_path: Path) -> None:
    pg = EmbeddedPostgres(tmp_path / "pg")
    pg.start()
    postmaster = int((pg.data_dir / "postmaster.pid").read_text().splitlines()[0])
    os.kill(postmaster, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while psutil.pid_exists(postmaster) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert (pg.data_dir / "postmaster.pid").exists(), "a crash leaves the lock file behind"
    pg.stop()

    again = EmbeddedPostgres(tmp_path / "pg")
    info = again.start()
    try:
        assert asyncio.run(_query(info.dsn(SUPERUSER, "postgres"), "SELECT 1")) == 1
    finally:
        again.stop()


def test_owner_process_killed_hard_is_adopted_and_then_stopped(tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import time
        from pathlib import Path
        from ledger.embedded_pg import EmbeddedPostgres
        EmbeddedPostgres(Path({str(tmp_path / "pg")!r})).start()
        print("started", flush=True)
        time.sleep(600)
        """
    )
    owner = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert owner.stdout is not None and owner.stdout.readline().strip() == "started"
    owner.kill()
    owner.wait()
    orphans = _postgres_pids((tmp_path / "pg" / "data").resolve())
    assert orphans, "after kill -9 of its owner the server is still running"

    pg = EmbeddedPostgres(tmp_path / "pg")
    info = pg.start()
    assert pg.owner
    assert asyncio.run(_query(info.dsn(SUPERUSER, "postgres"), "SELECT 1")) == 1
    pg.stop()
    assert _postgres_pids(pg.data_dir) == []


def test_second_process_on_same_folder_connects_without_stopping_it(tmp_path: Path) -> None:
    first = EmbeddedPostgres(tmp_path / "pg")
    info = first.start()
    second = EmbeddedPostgres(tmp_path / "pg")
    second.start()
    assert not second.owner
    second.stop()
    try:
        assert asyncio.run(_query(info.dsn(SUPERUSER, "postgres"), "SELECT 1")) == 1
    finally:
        first.stop()


def test_system_binaries_are_found() -> None:
    assert (find_binaries("system") / "postgres").exists()


async def test_app_role_cannot_create_tables(database: Database) -> None:
    dsn = database.urls.app.replace("postgresql+asyncpg://", "postgresql://")
    conn = await asyncpg.connect(dsn)
    try:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("CREATE TABLE smuggled (v int)")
        owns = await conn.fetchval(
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public' AND tableowner = current_user"
        )
        assert owns == 0
    finally:
        await conn.close()


async def test_migrations_reach_head_from_empty(database: Database) -> None:
    dsn = database.urls.owner.replace("postgresql+asyncpg://", "postgresql://")
    assert await _query(dsn, "SELECT version_num FROM alembic_version") == head_revision()
    tables = await _query(dsn, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
    assert isinstance(tables, int) and tables >= 12


async def test_external_url_mode_starts_nothing_and_is_ready(database: Database, tmp_path: Path) -> None:
    settings = Settings(
        database_url=database.urls.app, owner_database_url=database.urls.owner, data_dir=tmp_path / "unused"
    )
    app = create_app(settings)
    async with AsyncTestClient(app) as client:
        assert (await client.get("/healthz")).status_code == 200
        ready = await client.get("/readyz")
        assert ready.status_code == 200, ready.text
        assert ready.json()["revision"] == head_revision()
    assert not (tmp_path / "unused").exists(), "with a URL no embedded cluster is created"


async def test_readyz_reports_unmigrated_database(database: Database, tmp_path: Path) -> None:
    """A database that is reachable but not at the code's head is not ready."""
    su = database.superuser_url.replace("postgresql+asyncpg://", "postgresql://")
    name = f"empty_{os.getpid()}"
    await _query(su, f"CREATE DATABASE {name}")
    # The owner role owns nothing in the new, empty database, so start-up's role check lets it in.
    url = database.urls.owner.replace("/ledger?", f"/{name}?")
    app = create_app(Settings(database_url=url, auto_migrate=False, data_dir=tmp_path))
    async with AsyncTestClient(app) as client:
        response = await client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["status"] == "database_unreachable" or response.json()["revision"] is None


@pytest.mark.parametrize("who", ["owner", "superuser"])
async def test_refuses_to_serve_as_a_role_that_could_disable_the_triggers(
    database: Database, tmp_path: Path, who: str
) -> None:
    """Only LEDGER_DATABASE_URL set, pointing at the tables' owner (or a superuser): the service
    would run as a role that can DISABLE the append-only triggers, so it must not start at all."""
    url = database.urls.owner if who == "owner" else database.superuser_url
    app = create_app(Settings(database_url=url, data_dir=tmp_path / "unused"))
    # The lifespan's error reaches the caller inside anyio's exception group.
    with pytest.raises(BaseExceptionGroup) as refused:
        async with AsyncTestClient(app):
            pass
    matched, _ = refused.value.split(UnsafeDatabaseRole)
    assert matched is not None, refused.value
    message = str(matched.exceptions[0])
    assert "LEDGER_OWNER_DATABASE_URL" in message and "LEDGER_DATABASE_URL" in message
    assert ("拥有账本表" in message and "entries" in message) if who == "owner" else "超级用户" in message


async def test_app_role_passes_the_role_check(database: Database) -> None:
    engine = create_engine(database.urls.app, database.settings)
    try:
        await ensure_app_role_owns_nothing(engine)
    finally:
        await engine.dispose()


def test_cli_db_upgrade_current_and_token(tmp_path: Path) -> None:
    env = {"LEDGER_DATA_DIR": str(tmp_path / "var")}
    runner = CliRunner()
    from api.settings import get_settings

    get_settings.cache_clear()
    try:
        result = runner.invoke(cli, ["db", "upgrade"], env=env)
        assert result.exit_code == 0, result.output
        result = runner.invoke(cli, ["db", "current"], env=env)
        assert result.exit_code == 0, result.output
        assert f"current: {head_revision()}" in result.output
        result = runner.invoke(cli, ["token", "create", "--role", "admin", "--name", "街道平台管理员"], env=env)
        assert result.exit_code == 0, result.output
        assert result.stdout.strip().startswith("gtl_")
        result = runner.invoke(cli, ["token", "create", "--role", "treasurer", "--name", "x"], env=env)
        assert result.exit_code == 2
    finally:
        get_settings.cache_clear()
    assert _postgres_pids((tmp_path / "var" / "pg" / "data").resolve()) == []


def test_runtime_uses_url_when_given(database: Database) -> None:
    runtime = DatabaseRuntime(Settings(database_url=database.urls.app))
    urls = runtime.start()
    assert urls.app == database.urls.app and runtime.embedded is None


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _serve_until_ready(data_dir: Path, port: int, *extra: str) -> subprocess.Popen[bytes]:
    import urllib.request

    env = {**os.environ, "LEDGER_DATA_DIR": str(data_dir), "LEDGER_PDF_RENDER_MODE": "thread"}
    proc = subprocess.Popen(
        [str(Path(sys.executable).with_name("ledger")), "serve", "--port", str(port), *extra],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as response:
                if response.status == 200:
                    return proc
        except OSError:
            time.sleep(0.3)
    proc.kill()
    raise AssertionError("ledger serve did not become ready within 60 s")


def test_serve_demo_ctrl_c_stops_postgres_and_restart_reuses_data(tmp_path: Path) -> None:
    """The README's first command, end to end: serve with demo data, Ctrl-C, serve again."""
    import json
    import urllib.request

    data_dir = tmp_path / "var"
    port = _free_port()
    url = f"http://127.0.0.1:{port}/api/v1/projects/jinxiu-road-2026/ledger"
    proc = _serve_until_ready(data_dir, port, "--demo")
    # The demo publishes two sheets with entries between them (in the background, once the
    # service is up), so its pages show a sheet, its QR target and a real history check.
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        with urllib.request.urlopen(f"{base}/api/v1/projects/jinxiu-road-2026/disclosures") as response:
            sheets = json.load(response)["items"]
        if len(sheets) == 2 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    with urllib.request.urlopen(url) as response:
        first = json.load(response)
    assert first["size"] > 0, "demo entries were loaded"
    assert [d["sheet_number"] for d in sheets] == [1, 2] and sheets[1]["previous"]["id"] == sheets[0]["id"]
    assert sheets[0]["tree_size"] < sheets[1]["tree_size"] == first["size"]
    with urllib.request.urlopen(f"{base}/d/{sheets[1]['id']}") as response:
        assert response.status == 200 and 'id="history-form"' in response.read().decode()
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=30) == 0
    assert _postgres_pids((data_dir / "pg" / "data").resolve()) == [], "Ctrl-C leaves no PostgreSQL behind"

    proc = _serve_until_ready(data_dir, port, "--demo")
    try:
        with urllib.request.urlopen(url) as response:
            again = json.load(response)
        assert again == first, "the data is reused and the demo is not loaded twice"
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
    assert _postgres_pids((data_dir / "pg" / "data").resolve()) == []
