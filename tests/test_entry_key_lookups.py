"""An entry is looked up by its key through the primary key (migration 0016).

Every posting's foreign key to its entry is checked by PostgreSQL with ``SELECT 1 FROM ONLY entries
x WHERE project_id = $1 AND seq = $2 AND community_id = $3 FOR KEY SHARE OF x``, planned once per
connection and, in an append transaction, as a generic plan (0015). While
``entries_reversed_once`` was a full unique index on ``(project_id, reverses_seq, community_id)``
that generic plan went through it on a small project, reading every entry of the project per
posting: half of PostgreSQL's CPU per append, and growing with the project. These tests hold the
plan to the primary key and the rule "reversed at most once" to the database.
"""

from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from ledger.contributors import ContributorRef
from ledger.drafts import EntryDraft
from ledger.entries import append_entries
from tests.conftest import make_project

DAY = date(2025, 6, 1)

FOREIGN_KEY_LOOKUP = (
    "SELECT 1 FROM ONLY entries x WHERE project_id = $1 AND seq = $2 AND community_id = $3 FOR KEY SHARE OF x"
)


async def _project_with_a_reversal(engine: AsyncEngine, contributions: int) -> tuple[int, int]:
    project = await make_project(engine)
    drafts = [
        EntryDraft(
            kind="contribution",
            occurred_on=DAY,
            amount_fen=10_000 + i,
            contributor=ContributorRef(name=f"居民{i}", household=f"{i % 9 + 1}栋"),
            channel="cash",
        )
        for i in range(contributions)
    ]
    await append_entries(engine, project.code, drafts, recorded_by="test", render=lambda r: None)
    reversal = EntryDraft(kind="reversal", occurred_on=DAY, reverses_seq=2, reason="录入有误")
    await append_entries(engine, project.code, [reversal], recorded_by="test", render=lambda r: None)
    async with engine.connect() as conn:
        row = (
            await conn.execute(text("SELECT id, community_id FROM projects WHERE code = :c"), {"c": project.code})
        ).one()
    return row.id, row.community_id


async def test_reversed_once_indexes_only_reversals(owner_engine: AsyncEngine) -> None:
    async with owner_engine.connect() as conn:
        row = (
            await conn.execute(
                text(
                    "SELECT i.indisunique, pg_get_expr(i.indpred, i.indrelid) AS predicate "
                    "FROM pg_index i WHERE i.indexrelid = 'entries_reversed_once'::regclass"
                )
            )
        ).one()
    assert row.indisunique
    assert row.predicate == "(reverses_seq IS NOT NULL)"


async def test_the_foreign_key_lookup_of_an_entry_uses_the_primary_key(
    engine: AsyncEngine, owner_engine: AsyncEngine
) -> None:
    project_id, community_id = await _project_with_a_reversal(engine, 40)
    async with owner_engine.connect() as conn, conn.begin():
        # As an append transaction plans (0015); the plan is the one a foreign key check caches.
        await conn.execute(text("SET LOCAL plan_cache_mode = force_generic_plan"))
        await conn.exec_driver_sql(f"PREPARE entry_by_key(bigint, bigint, bigint) AS {FOREIGN_KEY_LOOKUP}")
        try:
            plan = "\n".join(
                r[0]
                for r in await conn.exec_driver_sql(
                    f"EXPLAIN (ANALYZE, COSTS off, TIMING off, SUMMARY off) EXECUTE entry_by_key({project_id}, 30, {community_id})"
                )
            )
        finally:
            await conn.exec_driver_sql("DEALLOCATE entry_by_key")
    assert "entries_pkey" in plan, plan
    assert "entries_reversed_once" not in plan, plan
    # One index tuple read, not the project's 41 entries.
    assert "Rows Removed by Filter" not in plan, plan
    assert "rows=1 loops=1" in plan, plan


async def test_an_entry_is_still_reversed_at_most_once(engine: AsyncEngine, owner_engine: AsyncEngine) -> None:
    project_id, _ = await _project_with_a_reversal(engine, 3)
    async with owner_engine.connect() as conn:
        with pytest.raises(IntegrityError) as caught:
            # A second reversal of seq 2 (the first one's row under a new seq), past the service.
            await conn.execute(
                text(
                    "INSERT INTO entries SELECT (jsonb_populate_record(NULL::entries, "
                    "to_jsonb(e) || jsonb_build_object('seq', e.seq + 100))).* "
                    "FROM entries e WHERE e.project_id = :p AND e.reverses_seq = 2"
                ),
                {"p": project_id},
            )
        await conn.rollback()
    assert caught.value.orig.__cause__.constraint_name == "entries_reversed_once"  # type: ignore[union-attr]
