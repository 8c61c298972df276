"""A real ``ledger serve`` killed with SIGKILL mid-request: its retry records the entry exactly once.

No hook in the service: the test stops two requests at the exact points it wants from the database
side, kills the process with both in flight, and starts a new one for the retries.

- **After its commit, before its response.** ``synchronous_standby_names`` names a standby that
  never connects, so PostgreSQL makes every COMMIT wait for it *after* the commit record is
  flushed and the commit log marks the transaction committed (a wait that ends early leaves it
  "committed locally"; other sessions see its rows once the wait ends). The server's COMMIT of the
  entry therefore never returns: the test sees the server's backend waiting on ``SyncRep``, kills
  the server, lets the backend go, checks that the entry is there, starts a new server and sends
  the same request with the same key: 201, ``Idempotent-Replayed: true``, the very entry that was
  committed, and the ledger holds it once.
- **Before its commit.** The test holds the project's head row lock, so the server's append waits
  inside its transaction; killed there, nothing of it remains, and the retry records it now.

The ``synchronous_standby_names`` setting holds every commit in the cluster while it is set, so it
is set for well under a second and reset in a ``finally``.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
import time
from asyncio.subprocess import DEVNULL, Process
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from tests.api_support import World, all_entries, contribution, new_key

LEDGER = Path(sys.executable).with_name("ledger")
READY_TIMEOUT_S = 90
NEVER_STANDBY = "reliability_standby_that_never_connects"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@asynccontextmanager
async def _server(database: Any, data_dir: Path) -> AsyncIterator[tuple[Process, str]]:
    """``ledger serve`` on the session's database as its application role, until ready."""
    port = _free_port()
    env = {
        **os.environ,
        "LEDGER_DATABASE_URL": database.urls.app,
        "LEDGER_OWNER_DATABASE_URL": database.urls.owner,
        "LEDGER_DATA_DIR": str(data_dir),
        "LEDGER_AUTO_MIGRATE": "false",
        "LEDGER_PDF_RENDER_MODE": "thread",
        "LEDGER_LOG_LEVEL": "WARNING",
    }
    proc = await asyncio.create_subprocess_exec(
        str(LEDGER), "serve", "--port", str(port), env=env, stdout=DEVNULL, stderr=DEVNULL
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        async with httpx.AsyncClient(base_url=base, timeout=2) as probe:
            while True:
                assert proc.returncode is None, "ledger serve exited during start-up"
                assert time.monotonic() < deadline, "ledger serve was not ready in time"
                try:
                    if (await probe.get("/readyz")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.2)
        yield proc, base
    finally:
        if proc.returncode is None:
            proc.kill()
        await asyncio.wait_for(proc.wait(), 30)


async def _until(check: Callable[[], Awaitable[Any]], what: str, timeout_s: float = 30) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        found = await check()
        if found:
            return found
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def _set_standby(superuser_engine: AsyncEngine, names: str | None) -> None:
    """Name a synchronous standby (every COMMIT then waits for it) or none; ALTER SYSTEM cannot
    run inside a transaction block, hence AUTOCOMMIT."""
    async with superuser_engine.connect() as conn:
        conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
        if names is None:
            await conn.execute(text("ALTER SYSTEM RESET synchronous_standby_names"))
        else:
            await conn.execute(text(f"ALTER SYSTEM SET synchronous_standby_names = '{names}'"))
        await conn.execute(text("SELECT pg_reload_conf()"))
    expected = names or ""

    async def applied() -> bool:
        async with superuser_engine.connect() as fresh:
            return (await fresh.execute(text("SHOW synchronous_standby_names"))).scalar_one() == expected

    await _until(applied, f"synchronous_standby_names = {expected!r}")


async def _entry_rows(superuser_engine: AsyncEngine, project: str, receipt: str) -> list[Any]:
    async with superuser_engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT e.seq, encode(e.leaf_hash, 'hex') AS leaf FROM entries e JOIN projects p ON p.id = e.project_id"
                " WHERE p.code = :code AND e.receipt_no = :receipt"
            ),
            {"code": project, "receipt": receipt},
        )
        return list(rows)


async def _server_backend(superuser_engine: AsyncEngine, wait_event: str, query_like: str) -> int | None:
    """The pid of a backend of the service waiting on ``wait_event`` in a statement like ``query_like``."""
    async with superuser_engine.connect() as conn:
        return (
            await conn.execute(
                text(
                    "SELECT pid FROM pg_stat_activity"
                    " WHERE datname = 'ledger' AND usename = 'ledger_app'"
                    " AND wait_event = :event AND query ILIKE :query LIMIT 1"
                ),
                {"event": wait_event, "query": query_like},
            )
        ).scalar_one_or_none()


async def _backend_gone(superuser_engine: AsyncEngine, pid: int) -> bool:
    async with superuser_engine.connect() as conn:
        return not (
            await conn.execute(text("SELECT count(*) FROM pg_stat_activity WHERE pid = :pid"), {"pid": pid})
        ).scalar_one()


def _post(client: httpx.AsyncClient, project: str, token: str, key: str, body: dict[str, Any]) -> Any:
    return client.post(
        f"/api/v1/projects/{project}/entries",
        content=json.dumps(body, ensure_ascii=False).encode(),
        headers={"Authorization": f"Bearer {token}", "Idempotency-Key": key, "Content-Type": "application/json"},
    )


async def _retry(base: str, project: str, token: str, key: str, body: dict[str, Any]) -> httpx.Response:
    """A client's retry after a lost answer: the same key and body; while the first attempt's
    transaction is still being torn down by the server, 409 idempotency_in_flight says try again."""
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        for _ in range(200):
            response = await _post(client, project, token, key, body)
            if response.status_code == 409 and response.json()["code"] == "idempotency_in_flight":
                await asyncio.sleep(0.05)
                continue
            return response
    raise AssertionError("the key stayed in flight")


async def _lock_head(conn: AsyncConnection, project: str) -> None:
    await conn.execute(
        text(
            "SELECT 1 FROM project_heads h JOIN projects p ON p.id = h.project_id WHERE p.code = :code FOR UPDATE OF h"
        ),
        {"code": project},
    )


async def test_killed_before_and_after_commit_the_retry_records_each_entry_once(
    world: World, database: Any, superuser_engine: AsyncEngine, owner_engine: AsyncEngine, tmp_path: Path
) -> None:
    """Two requests in flight when the server is killed: one waiting for its project's lock (before
    its commit), one inside its COMMIT (after the commit, before the response)."""
    before_project, after_project = await world.project(), await world.project()
    await world.entry(after_project, contribution("100", receipt_no="SJ-earlier"))
    before_key, before_body = f"kill-before-{new_key()}", contribution("80", "周九", "2栋", receipt_no="SJ-before")
    after_key, after_body = f"kill-after-{new_key()}", contribution("250.50", "孙八", "6栋", receipt_no="SJ-after")

    async with _server(database, tmp_path / "first") as (proc, base), owner_engine.connect() as holder:
        client = httpx.AsyncClient(base_url=base, timeout=60)
        try:
            await _lock_head(holder, before_project)
            before = asyncio.create_task(_post(client, before_project, world.treasurer, before_key, before_body))
            before_pid = await _until(
                lambda: _server_backend(superuser_engine, "transactionid", "%ledger_append_begin%"),
                "the first append waiting for its project's lock",
            )
            await _set_standby(superuser_engine, NEVER_STANDBY)
            try:
                after = asyncio.create_task(_post(client, after_project, world.treasurer, after_key, after_body))
                # The server's backend is inside its COMMIT, waiting for the standby: PostgreSQL
                # waits only once the commit record is flushed and the commit log says committed
                # (other sessions see the rows when the wait ends). The server has not answered.
                after_pid = await _until(
                    lambda: _server_backend(superuser_engine, "SyncRep", "%COMMIT%"), "the second append's COMMIT"
                )
                assert not before.done() and not after.done()
                proc.send_signal(signal.SIGKILL)
                assert await asyncio.wait_for(proc.wait(), 30) == -signal.SIGKILL
                for request in (before, after):
                    with pytest.raises(httpx.TransportError):
                        await request
            finally:
                await _set_standby(superuser_engine, None)
            await holder.rollback()
        finally:
            await client.aclose()
    for pid in (before_pid, after_pid):
        await _until(lambda pid=pid: _backend_gone(superuser_engine, pid), "the killed server's backends to end")
    assert await _entry_rows(superuser_engine, before_project, "SJ-before") == [], "nothing before the commit"
    committed = await _entry_rows(superuser_engine, after_project, "SJ-after")
    assert [r.seq for r in committed] == [2], "the commit before the kill stands"

    async with _server(database, tmp_path / "second") as (_, base):
        # Killed before its commit: the retry records it now, and a further retry replays that.
        first = await _retry(base, before_project, world.treasurer, before_key, before_body)
        assert first.status_code == 201 and "Idempotent-Replayed" not in first.headers, first.text
        again = await _retry(base, before_project, world.treasurer, before_key, before_body)
        assert again.headers.get("Idempotent-Replayed") == "true" and again.json() == first.json()
        # Killed after its commit: the retry returns the entry that was committed, records nothing.
        replay = await _retry(base, after_project, world.treasurer, after_key, after_body)
        assert replay.status_code == 201 and replay.headers.get("Idempotent-Replayed") == "true", replay.text
        entry = replay.json()
        assert (entry["seq"], entry["leaf_hash"], entry["receipt"]["tree_size"]) == (2, committed[0].leaf, 2)
        async with httpx.AsyncClient(base_url=base, timeout=30) as reader:
            receipts = {
                p: [e["receipt_no"] for e in await all_entries(reader, p)] for p in (before_project, after_project)
            }
            verified = [(await reader.get(f"/api/v1/projects/{p}/ledger/verify")).json() for p in receipts]
    assert receipts == {before_project: ["SJ-before"], after_project: ["SJ-earlier", "SJ-after"]}
    assert all(v["ok"] for v in verified), verified
