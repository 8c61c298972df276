"""Public reads on a real streaming standby (issue 15): ``pg_basebackup -R`` of the session's
embedded primary over its Unix socket, started on a socket of its own (no TCP anywhere).

How a read is known to come from the standby: its WAL replay is paused (``pg_wal_replay_pause``),
a treasurer records an entry, and an anonymous read does not show it — only the paused standby can
answer that — while the treasurer's own read (with its token) does (read-your-writes on the
primary). Once the standby is further behind than the bound, public reads fall back to the primary;
resumed, it serves again; stopped, it is skipped and reads fall back.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from litestar.testing import AsyncTestClient

from api.app import create_app
from ledger.embedded_pg import PORT, SUPERUSER
from ledger.replicas import lsn_int, parse_read_urls
from tests.api_support import Api, World, all_entries, app_settings, contribution, new_key
from tests.conftest import Database
from tests.scale_support import Standby

LAG_MAX_S = 3.0
WAIT_S = 60.0


@pytest.fixture(scope="module")
def standby(database: Database, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Standby]:
    assert database.runtime.embedded is not None
    replica = Standby(database.runtime.embedded, tmp_path_factory.mktemp("standby")).create()
    replica.start()
    try:
        yield replica
    finally:
        replica.stop()


def _standby_dsn(standby: Standby) -> str:
    return f"postgresql://{SUPERUSER}@/ledger?host={standby.socket_dir}&port={PORT}"


async def _replica_when(client: httpx.AsyncClient, ok: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    """Poll /readyz until the (only) replica's report satisfies ``ok``; /readyz stays 200 throughout."""
    deadline = asyncio.get_running_loop().time() + WAIT_S
    while True:
        ready = await client.get("/readyz")
        assert ready.status_code == 200, ready.text
        (replica,) = ready.json()["replicas"]
        if ok(replica):
            return replica  # type: ignore[no-any-return]
        assert asyncio.get_running_loop().time() < deadline, f"replica stayed {replica}"
        await asyncio.sleep(0.1)


async def test_public_reads_come_from_the_standby_fall_back_when_it_lags_or_stops(
    world: World, database: Database, standby: Standby, tmp_path: Path
) -> None:
    """Paused replay, an entry recorded by another service process: the treasurer's read shows it,
    a resident's (JSON and page) does not — only the standby can answer so; lagging past the bound,
    the standby is skipped; resumed, it serves; stopped, reads fall back to the primary."""
    code = await world.project()
    await world.entry(code, contribution("200", "张三", "3栋2单元501"))
    settings = app_settings(
        database, tmp_path, read_database_url=standby.url(database.settings.app_role), replica_lag_max_s=LAG_MAX_S
    )
    async with AsyncTestClient(create_app(settings)) as client:
        api = Api(client)
        treasurer = {"Authorization": f"Bearer {world.treasurer}"}
        replica = await _replica_when(client, lambda r: r["state"] == "ok")
        assert replica["name"] == "replica-1" and replica["lag_s"] <= LAG_MAX_S
        assert len(await all_entries(client, code)) == 1  # the standby has replayed the first entry

        paused = await asyncpg.connect(_standby_dsn(standby))
        try:
            await paused.execute("SELECT pg_wal_replay_pause()")
            # Recorded through another service process (the suite's shared app): this one has no
            # fence for it, so only the replica's replay decides what its residents see.
            await world.entry(code, contribution("300", "李四"))
            # The treasurer reads the primary: the entry just recorded is there.
            assert [e["seq"] for e in await all_entries(client, code, **treasurer)] == [1, 2]
            assert (await api.get(f"/api/v1/projects/{code}/entries/2", token=world.treasurer)).status_code == 200
            # A resident's read is served by the paused standby: not there yet.
            reads_before = (await _replica_when(client, lambda r: True))["reads"]
            assert [e["seq"] for e in await all_entries(client, code)] == [1]
            # The summary and one entry take their engine the same way (api.db.db_of, no injection).
            public = (await api.get(f"/api/v1/projects/{code}")).json()["summary"]["ledger"]
            staff = (await api.get(f"/api/v1/projects/{code}", token=world.treasurer)).json()["summary"]["ledger"]
            assert (public["size"], staff["size"]) == (1, 2)
            assert (await api.get(f"/api/v1/projects/{code}/entries/2")).status_code == 404
            page = await client.get(f"/p/{code}")
            assert page.status_code == 200
            after = await _replica_when(client, lambda r: True)
            assert after["reads"] >= reads_before + 4, "the public JSON reads and the page went to the standby"
            assert after["state"] == "ok", "still within the lag bound when it answered"
            # Further behind than the bound: skipped, public reads fall back to the primary.
            lagging = await _replica_when(client, lambda r: r["state"] == "lagging")
            assert lagging["lag_s"] > LAG_MAX_S
            assert [e["seq"] for e in await all_entries(client, code)] == [1, 2]
        finally:
            await paused.execute("SELECT pg_wal_replay_resume()")
            await paused.close()

        caught_up = await _replica_when(client, lambda r: r["state"] == "ok")
        assert caught_up["lag_s"] <= LAG_MAX_S
        assert [e["seq"] for e in await all_entries(client, code)] == [1, 2]

        standby.stop()
        try:
            await _replica_when(client, lambda r: r["state"] == "down")
            assert [e["seq"] for e in await all_entries(client, code)] == [1, 2]
            assert (await client.get(f"/p/{code}")).status_code == 200
        finally:
            standby.start()


async def test_a_replica_that_never_answers_is_skipped(world: World, database: Database, tmp_path: Path) -> None:
    """Two replicas configured, neither reachable (no server on their sockets): the service starts,
    /readyz reports both down, public reads are served by the primary."""
    code = await world.project()
    await world.entry(code, contribution("200"))
    nowhere = [f"postgresql+asyncpg://ledger_app@/ledger?host={tmp_path / f'none{n}'}&port={PORT}" for n in (1, 2)]
    settings = app_settings(database, tmp_path, read_database_url=" , ".join(nowhere))
    async with AsyncTestClient(create_app(settings)) as client:
        ready = await client.get("/readyz")
        assert ready.status_code == 200
        assert [(r["name"], r["state"]) for r in ready.json()["replicas"]] == [
            ("replica-1", "down"),
            ("replica-2", "down"),
        ]
        assert len(await all_entries(client, code)) == 1


async def test_a_treasurers_write_fences_its_project_from_the_replica_until_replayed(
    world: World, database: Database, standby: Standby, tmp_path: Path
) -> None:
    """Read-your-writes on the public pages too: a treasurer records an entry through this process
    while the standby's replay is paused; a resident's read of that project — the treasurer opening
    the public page — comes from the primary and shows it, while a resident's read of another
    project is still served by the standby. Once replay resumes, the project is served by the
    standby again."""
    code, elsewhere = await world.project(), await world.project()
    await world.entry(code, contribution("200", "张三", "3栋2单元501"))
    await world.entry(elsewhere, contribution("100", "王五"))
    settings = app_settings(
        database, tmp_path, read_database_url=standby.url(database.settings.app_role), replica_lag_max_s=30.0
    )
    async with AsyncTestClient(create_app(settings)) as client:
        api = Api(client)
        await _replica_when(client, lambda r: r["state"] == "ok")
        assert len(await all_entries(client, code)) == 1 and len(await all_entries(client, elsewhere)) == 1
        paused = await asyncpg.connect(_standby_dsn(standby))
        try:
            await paused.execute("SELECT pg_wal_replay_pause()")
            posted = await api.post(
                f"/api/v1/projects/{code}/entries", contribution("300", "李四"), token=world.treasurer, key=new_key()
            )
            assert posted.status_code == 201, posted.text
            await world.entry(elsewhere, contribution("400", "赵六"))  # through another process
            reads_before = (await _replica_when(client, lambda r: True))["reads"]
            assert [e["seq"] for e in await all_entries(client, code)] == [1, 2], "the fence sends it to the primary"
            assert [e["seq"] for e in await all_entries(client, elsewhere)] == [1], "still on the paused standby"
            after = await _replica_when(client, lambda r: True)
            assert after["state"] == "ok" and after["reads"] == reads_before + 1
        finally:
            await paused.execute("SELECT pg_wal_replay_resume()")
            await paused.close()
        # Replayed past the write: the project's public reads go back to the standby.
        deadline = asyncio.get_running_loop().time() + WAIT_S
        while True:
            before = (await _replica_when(client, lambda r: r["state"] == "ok"))["reads"]
            assert [e["seq"] for e in await all_entries(client, code)] == [1, 2]
            if (await _replica_when(client, lambda r: True))["reads"] > before:
                break
            assert asyncio.get_running_loop().time() < deadline, "the fence never lifted"
            await asyncio.sleep(0.1)


def test_read_urls_and_lsns_parse() -> None:
    assert parse_read_urls(None) == [] and parse_read_urls(" ") == []
    assert parse_read_urls("postgresql+asyncpg://a@/l?host=/x, postgresql+asyncpg://b@/l") == [
        "postgresql+asyncpg://a@/l?host=/x",
        "postgresql+asyncpg://b@/l",
    ]
    assert lsn_int("0/0") == 0 and lsn_int("16/B374D848") == (0x16 << 32) | 0xB374D848
