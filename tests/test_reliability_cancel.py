"""Requests cancelled by the client mid-flight leave nothing half-done behind.

The real app runs on the test's own event loop behind ``httpx.ASGITransport``, so cancelling the
client's task cancels the handler wherever it is at that moment: validating, waiting for the
project's lock, inside ``BEGIN``, an INSERT, the ``COMMIT``, or writing the response. That is what
an ASGI server that cancels handlers on disconnect does, and what uvicorn does to requests still
running at shutdown. (uvicorn itself lets a handler finish when only its client goes away.)

Eight clients send 1,000 writes (single appends, batches of three, new projects: the raw asyncpg
path and SQLAlchemy's); each cancels its request after a random delay within a window that
follows the machine's current latency (about half the requests are cancelled, at points spread
over a request's whole life). Afterwards:

- no connection is left *idle in transaction* (pg_stat_activity) and none is still checked out;
- every request that was answered is in the ledger as answered (no acknowledged entry lost);
- the same request retried with its key is replayed if it had committed, or recorded now if it
  had not: each key ends up recorded exactly once, with whole postings (``verify``);
- fresh requests succeed.

Before ledger/database.py's check-in guard, a cancelled ``BEGIN`` left asyncpg's record of the
transaction on the pooled connection: later requests failed with 500 ("nested transaction has a
different isolation level", "current transaction is aborted") or ran as a SAVEPOINT inside a
transaction that was never committed.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from api.app import create_app
from ledger import pg
from ledger.append_group import groups_for
from tests.api_support import World, all_entries, app_settings, contribution, new_key, unique

REQUESTS = 1_000
CLIENTS = 8
WINDOW_STEP = 1.05
FRESH_AFTER = 40
ANSWERED_RETRIED = 100


@dataclass
class Job:
    kind: str  # "entry" | "batch" | "project"
    url: str
    body: dict[str, Any]
    key: str
    status: int | None = None  # the answer, when one came before the cancellation
    answer: dict[str, Any] | None = None
    cancelled: bool = False


def _job(i: int, project: str, community: str, *, only_entries: bool = False) -> Job:
    # Letters only after the index: a run of hex digits can look like a phone number, which a
    # receipt number may not hold.
    key = f"cx-{i}-" + "".join(chr(ord("a") + int(c, 16)) for c in new_key()[:12])
    roll = 0 if only_entries else i % 10
    if roll == 9:
        body = {
            "code": unique("cx"),
            "community": community,
            "title": "楼道照明改造",
            "households_in_scope": 60,
            "budget_lines": [{"category": "materials", "label": "灯具", "source": "crowdfunding", "amount": "3000"}],
            "spending_gate": "waived",
        }
        return Job("project", "/api/v1/projects", body, key)
    if roll == 8:
        entries = [
            contribution(f"{j + 1}.{i % 100:02d}", f"居民{i % 50}", f"{i % 30 + 1}栋", receipt_no=f"{key}-{j}")
            for j in range(3)
        ]
        return Job("batch", f"/api/v1/projects/{project}/entries/batch", {"entries": entries}, key)
    body = contribution(f"{i % 97 + 1}.{i % 100:02d}", f"居民{i % 50}", f"{i % 30 + 1}栋", receipt_no=key)
    return Job("entry", f"/api/v1/projects/{project}/entries", body, key)


async def _post(client: httpx.AsyncClient, job: Job, token: str) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    if job.kind != "project":
        headers["Idempotency-Key"] = job.key
    return await client.post(job.url, content=json.dumps(job.body, ensure_ascii=False).encode(), headers=headers)


async def _all(coroutines: Any) -> None:
    """Run the clients together; the first failure cancels the others and is the one reported."""
    async with asyncio.TaskGroup() as group:
        for coroutine in coroutines:
            group.create_task(coroutine)


async def _in_transaction(superuser_engine: AsyncEngine) -> list[Any]:
    async with superuser_engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT pid, state, left(query, 80) FROM pg_stat_activity "
                "WHERE datname = 'ledger' AND state LIKE 'idle in transaction%'"
            )
        )
        return list(rows)


async def test_cancelled_requests_leave_no_partial_entry_and_no_open_transaction(
    world: World, database: Any, superuser_engine: AsyncEngine, tmp_path: Path
) -> None:
    app = create_app(app_settings(database, tmp_path, log_level="ERROR"))
    project = await world.project()
    token = world.admin  # creates projects and records entries in any community
    jobs = [_job(i, project, world.community) for i in range(REQUESTS)]
    started, cpu = time.perf_counter(), time.process_time()
    async with (
        app.lifespan(),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ledger.test", timeout=60) as client,
    ):
        # Each client cancels after a random delay up to a window that follows the latency the
        # machine has now: it widens after a cancelled request and narrows after an answered one,
        # so about half are cancelled, at points spread over a request's whole life.
        window = [0.05]
        queue = list(reversed(jobs))
        rng = random.Random()

        async def cancelling_client() -> None:
            while queue:
                job = queue.pop()
                task = asyncio.create_task(_post(client, job, token))
                await asyncio.sleep(rng.uniform(0, window[0]))
                if not task.done():
                    task.cancel()
                try:
                    response = await task
                except asyncio.CancelledError:
                    job.cancelled = True
                    window[0] *= WINDOW_STEP
                    continue
                window[0] /= WINDOW_STEP
                job.status = response.status_code
                job.answer = response.json()
                assert job.status == 201, response.text

        await _all(cancelling_client() for _ in range(CLIENTS))
        cancel_phase_s = time.perf_counter() - started

        # A cancelled request's append may still be running in a group-commit task (it is not
        # the request's: ledger/append_group.py); once those are done, nothing may be left open:
        # the pool holds no transaction, the server shows none.
        groups = groups_for(app.state.engine)
        while groups.tasks:
            await asyncio.gather(*list(groups.tasks), return_exceptions=True)
        await asyncio.sleep(0.2)
        assert await _in_transaction(superuser_engine) == []
        engine: AsyncEngine = app.state.engine
        assert engine.pool.checkedout() == 0, engine.pool.status()  # type: ignore[attr-defined]

        # Every answered write is in the ledger exactly as answered.
        leaves = {item["seq"]: item["leaf_hash"] for item in await all_entries(client, project)}
        for job in jobs:
            if job.answer is not None and job.kind != "project":
                for item in job.answer["items"] if job.kind == "batch" else [job.answer]:
                    assert leaves.get(item["seq"]) == item["leaf_hash"], item["seq"]

        # The same request again: a replay if it had committed, recorded now if not. (Replays of
        # answered requests have tests of their own: a sample of them here.)
        outcomes: Counter[str] = Counter()
        answered = [j for j in jobs if not j.cancelled]
        retry_queue = [j for j in jobs if j.cancelled] + rng.sample(answered, min(ANSWERED_RETRIED, len(answered)))

        async def retrying_client() -> None:
            while retry_queue:
                job = retry_queue.pop()
                response = await _post(client, job, token)
                if job.kind == "project":
                    committed = response.status_code == 409
                    assert response.status_code in (201, 409), response.text
                else:
                    assert response.status_code == 201, response.text
                    committed = response.headers.get("Idempotent-Replayed") == "true"
                    if job.answer is not None:
                        assert committed and response.json() == job.answer
                if job.cancelled:
                    outcomes["cancelled, had committed" if committed else "cancelled, had not committed"] += 1
                else:
                    outcomes["answered (sample)"] += 1

        await _all(retrying_client() for _ in range(CLIENTS))

        # Fresh requests succeed, on the same pool.
        for i in range(FRESH_AFTER):
            fresh = _job(REQUESTS + i, project, world.community, only_entries=True)
            assert (await _post(client, fresh, token)).status_code == 201

        # Each key is recorded once, whole: receipts counted, every leaf and posting recomputed.
        receipts = Counter(item["receipt_no"] for item in await all_entries(client, project))
        expected = [j.body["receipt_no"] for j in jobs if j.kind == "entry"]
        expected += [e["receipt_no"] for j in jobs if j.kind == "batch" for e in j.body["entries"]]
        assert all(receipts[r] == 1 for r in expected), [r for r in expected if receipts[r] != 1][:10]
        assert sum(receipts.values()) == len(expected) + FRESH_AFTER
        verify = (await client.get(f"/api/v1/projects/{project}/ledger/verify")).json()
        assert verify["ok"] and not verify["unbalanced_accounts"], verify
        summary = (await client.get(f"/api/v1/projects/{project}")).json()["summary"]
        assert summary["ledger"]["size"] == sum(receipts.values())
        assert await _in_transaction(superuser_engine) == []

    cancelled = sum(j.cancelled for j in jobs)
    print(
        f"\n{REQUESTS} requests, {cancelled} cancelled mid-flight (window at the end {window[0] * 1000:.0f} ms), "
        f"{dict(outcomes)}; cancel phase {cancel_phase_s:.1f} s, total {time.perf_counter() - started:.1f} s, "
        f"CPU {time.process_time() - cpu:.1f} s"
    )
    # The cancellations fell before and after the commit, not all at one end of a request.
    assert cancelled >= REQUESTS // 3, cancelled
    assert outcomes["cancelled, had committed"] >= 1 and outcomes["cancelled, had not committed"] >= 1, outcomes


async def test_a_connection_returned_inside_a_transaction_is_closed_not_reused(
    engine: AsyncEngine, superuser_engine: AsyncEngine
) -> None:
    """What an interrupted ``BEGIN`` leaves, made on purpose: an asyncpg transaction block still
    open on a connection that goes back to the pool. The pool closes it; the next transaction runs
    on a clean connection and really commits (another session sees it)."""
    async with engine.connect() as conn:
        raw = (await conn.get_raw_connection()).driver_connection
        await raw.transaction().start()
        stale_pid = raw.get_server_pid()
    assert raw.is_closed()
    async with pg.transaction(engine) as tx:
        assert tx.get_server_pid() != stale_pid
        marker = await tx.fetchval("SELECT txid_current()")
    async with superuser_engine.connect() as conn:
        status = (await conn.execute(text("SELECT txid_status(:x)"), {"x": marker})).scalar_one()
        alive = (
            await conn.execute(text("SELECT count(*) FROM pg_stat_activity WHERE pid = :p"), {"p": stale_pid})
        ).scalar_one()
    assert status == "committed"
    assert alive == 0 or await _in_transaction(superuser_engine) == []
