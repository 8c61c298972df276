"""结项 (closure) against expenditures in flight, with real concurrency.

The invariant: once a ``closure`` decision has committed, no expenditure commits after it. Every
expenditure either committed before the closure (it is counted the moment the closure returns)
or is refused with 409 ``stage_forbids_entry``. Appends and decisions serialise on the project's
head row, so a closure waits for an append that already checked the gate, and an append that
starts after the closure sees it.
"""

from __future__ import annotations

import asyncio
from datetime import date

import asyncpg
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from ledger.decisions import DecisionDraft, record_decision
from ledger.entries import AppendResult, EntryDraft, append_entries
from ledger.errors import StageForbidsEntry
from ledger.projects import Project
from tests.conftest import Database, make_project
from tests.test_ledger_append_only import dsn

DAY = date(2025, 6, 1)
BIG_BATCH = 2000  # long enough under the lock for the closure to arrive meanwhile
SINGLES = 40


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


async def test_no_expenditure_commits_after_a_closure(engine: AsyncEngine, database: Database) -> None:
    project = await make_project(engine)
    grant = EntryDraft(kind="grant", occurred_on=DAY, amount_fen=100_000_000, grantor="住建局")
    await append_entries(engine, project.code, [grant], recorded_by="t", render=lambda r: {})

    async def spend(drafts: list[EntryDraft]) -> AppendResult | StageForbidsEntry:
        try:
            return await append_entries(engine, project.code, drafts, recorded_by="t", render=lambda r: {})
        except StageForbidsEntry as exc:
            return exc

    batch = asyncio.create_task(spend([expenditure(i) for i in range(BIG_BATCH)]))
    await _until_head_locked(database, project)
    singles = [asyncio.create_task(spend([expenditure(i)])) for i in range(SINGLES)]
    await asyncio.sleep(0)  # let the singles start: they queue on the head row with the closure
    await record_decision(
        engine, project.code, DecisionDraft("closure", DAY, "结项"), recorded_by="t", render=lambda d: d.id
    )
    committed_at_closure = await _expenditures(engine, project)

    outcomes = await asyncio.gather(batch, *singles)
    committed = sum(len(o.entries) for o in outcomes if isinstance(o, AppendResult))
    refused = [o for o in outcomes if isinstance(o, StageForbidsEntry)]
    assert await _expenditures(engine, project) == committed == committed_at_closure, (
        "every expenditure committed before the closure, or was refused"
    )
    assert isinstance(outcomes[0], AppendResult), "the batch that held the lock finished first"
    assert all(o.code == "stage_forbids_entry" for o in refused)
    assert isinstance(await spend([expenditure(0)]), StageForbidsEntry)
