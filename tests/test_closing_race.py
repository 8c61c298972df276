"""结项 (closure) against expenditures in flight, with real concurrency.

The invariant: once a ``closure`` decision has committed, no expenditure commits after it. Every
expenditure either committed before the closure (it is counted the moment the closure returns)
or is refused with 409 ``stage_forbids_entry``. Appends and decisions serialise on the project's
head row, so a closure waits for an append that already checked the gate, and an append that
starts after the closure sees it. Every way an expenditure is appended races here: a batch, single
appends, and an auditor approving a voucher (its entry is appended when approved).
"""

from __future__ import annotations

import asyncio
import json
from datetime import date

import asyncpg
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from ledger.canonical import Signer
from ledger.decisions import DecisionDraft, record_decision
from ledger.drafts import EntryDraft
from ledger.entries import AppendResult, append_entries
from ledger.errors import StageForbidsEntry
from ledger.projects import Project
from ledger.vouchers import Actor, approve_voucher, get_voucher, submit_voucher
from tests.conftest import Database, make_project
from tests.test_ledger_append_only import dsn

DAY = date(2025, 6, 1)
BIG_BATCH = 5000  # long enough under the lock for the queue and the closure to arrive meanwhile
SINGLES = 40
VOUCHERS = 10
MAKER = Actor("maker-token", Signer("treasurer", "报账员甲"))
CHECKER = Actor("checker-token", Signer("auditor", "审核员乙"))


def expenditure(n: int) -> EntryDraft:
    return EntryDraft(kind="expenditure", occurred_on=DAY, amount_fen=100 + n, payee="某工程公司", category="materials")


async def _expenditures(engine: AsyncEngine, project: Project) -> int:
    async with engine.connect() as conn:
        query = "SELECT count(*) FROM entries WHERE project_id = :pid AND kind = 'expenditure'"
        return int((await conn.execute(text(query), {"pid": project.id})).scalar_one())


async def _until_head_locked(database: Database, project: Project) -> None:
    """Wait until an append holds the project's head row (so the closure races a real one)."""
    conn = await asyncpg.connect(dsn(database.urls.app))
    try:
        for _ in range(2000):
            try:
                async with conn.transaction():
                    await conn.execute(
                        "SELECT 1 FROM project_heads WHERE project_id = $1 FOR UPDATE NOWAIT", project.id
                    )
            except asyncpg.LockNotAvailableError:
                return
            await asyncio.sleep(0.002)
        raise AssertionError("the batch never took the head lock")
    finally:
        await conn.close()


async def _until_waiting(database: Database, count: int, unless: asyncio.Task[object] | None = None) -> None:
    """Wait until ``count`` sessions wait for a lock (queued on the head row), or ``unless`` ended
    (a closure that did not wait for the appends in flight: the invariant below then fails)."""
    conn = await asyncpg.connect(dsn(database.urls.app))
    try:
        for _ in range(5000):
            if unless is not None and unless.done():
                return
            waiting = await conn.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
            if waiting >= count:
                return
            await asyncio.sleep(0.002)
        raise AssertionError(f"{count} sessions never queued on the head row")
    finally:
        await conn.close()


async def test_no_expenditure_commits_after_a_closure(engine: AsyncEngine, database: Database) -> None:
    project = await make_project(engine)
    grant = EntryDraft(kind="grant", occurred_on=DAY, amount_fen=100_000_000, grantor="住建局")
    await append_entries(engine, project.code, [grant], recorded_by="t", render=lambda r: {})

    async def spend(drafts: list[EntryDraft]) -> AppendResult | StageForbidsEntry:
        try:
            return await append_entries(engine, project.code, drafts, recorded_by="t", render=lambda r: {})
        except StageForbidsEntry as exc:
            return exc

    vouchers = [
        json.loads(
            (await submit_voucher(engine, project.code, expenditure(i), MAKER, render=lambda v: {"id": v.id}))[0].body
        )["id"]
        for i in range(VOUCHERS)
    ]

    async def approve(voucher_id: int) -> AppendResult | StageForbidsEntry:
        try:
            return await approve_voucher(engine, voucher_id, CHECKER, render=lambda v, e: {})
        except StageForbidsEntry as exc:
            return exc

    batch = asyncio.create_task(spend([expenditure(i) for i in range(BIG_BATCH)]))
    await _until_head_locked(database, project)
    # Half the singles and approvals queue on the head row before the closure, half after it.
    early = [spend([expenditure(i)]) for i in range(SINGLES // 2)] + [approve(v) for v in vouchers[: VOUCHERS // 2]]
    late = [spend([expenditure(i)]) for i in range(SINGLES // 2)] + [approve(v) for v in vouchers[VOUCHERS // 2 :]]
    early_tasks = [asyncio.create_task(c) for c in early]
    await _until_waiting(database, len(early))
    closure = asyncio.create_task(
        record_decision(
            engine, project.code, DecisionDraft("closure", DAY, "结项"), recorded_by="t", render=lambda d: d.id
        )
    )
    await _until_waiting(database, len(early) + 1, unless=closure)
    late_tasks = [asyncio.create_task(c) for c in late]
    await closure
    committed_at_closure = await _expenditures(engine, project)

    outcomes = await asyncio.gather(batch, *early_tasks, *late_tasks)
    committed = sum(len(o.entries) for o in outcomes if isinstance(o, AppendResult))
    refused = [o for o in outcomes if isinstance(o, StageForbidsEntry)]
    assert await _expenditures(engine, project) == committed == committed_at_closure, (
        "every expenditure committed before the closure, or was refused"
    )
    assert isinstance(outcomes[0], AppendResult), "the batch that held the lock finished first"
    assert all(o.code == "stage_forbids_entry" for o in refused)
    assert isinstance(await spend([expenditure(0)]), StageForbidsEntry)
    # An approval, queued before or after the closure, either committed (its voucher approved and
    # counted above) or was refused (its voucher still pending). Row-lock waiters are not served
    # strictly in arrival order, so how many of each varies from run to run.
    approvals = outcomes[1 + SINGLES // 2 : 1 + len(early)] + outcomes[1 + len(early) + SINGLES // 2 :]
    async with engine.connect() as conn:
        statuses = [(await get_voucher(conn, v)).status for v in vouchers]
    assert statuses == ["approved" if isinstance(o, AppendResult) else "pending" for o in approvals]
    print(f"approvals committed before the closure: {statuses.count('approved')}, refused: {statuses.count('pending')}")
