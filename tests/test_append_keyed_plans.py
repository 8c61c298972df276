"""An append transaction looks rows up by key at any table size (migration 0017).

The statements of an append join the rows they were given to ``balances``, ``project_heads`` and
``contributor_totals`` by key, as generic plans made once per connection (0015). Planned while
those tables were small, they scanned the whole table and hashed it, on every group of appends,
through every dead row version the appends leave behind: PostgreSQL's CPU per append grew as the
benchmark ran. Both begin functions now switch sequential scans, hash and merge joins off for
the rest of the append transaction. These tests hold the settings to the append transaction, and
the plans of the statements that run in it to index look-ups, with statistics taken on small
tables (where the planner, left alone, scans).
"""

from __future__ import annotations

import asyncpg
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from ledger import pg
from ledger.contributors import _FIND
from ledger.entries import _TOTALS, _WRITE_SQL, append_entries
from tests.conftest import make_project
from tests.test_append_group import contribution

PLANNER_SWITCHES = ("enable_seqscan", "enable_hashjoin", "enable_mergejoin")
BEGINS = {
    "plain": "SELECT * FROM ledger_append_begin($1, NULL, NULL)",
    "group": "SELECT * FROM ledger_append_begin_many(ARRAY[$1], ARRAY[NULL], ARRAY[NULL])",
}


async def _generic_plan(conn: asyncpg.Connection, name: str, sql: str) -> str:
    """EXPLAIN of the statement's generic plan, every parameter NULL (nothing runs)."""
    await conn.execute(f"PREPARE {name} AS {sql}")
    try:
        count = await conn.fetchval(
            "SELECT cardinality(parameter_types) FROM pg_prepared_statements WHERE name = $1", name
        )
        rows = await conn.fetch(f"EXPLAIN EXECUTE {name}({', '.join(['NULL'] * count)})")
    finally:
        await conn.execute(f"DEALLOCATE {name}")
    return "\n".join(r[0] for r in rows)


@pytest.fixture
async def project_code(engine: AsyncEngine, owner_engine: AsyncEngine) -> str:
    project = await make_project(engine)
    drafts = [contribution(f"居民{i}", 10_000 + i) for i in range(5)]
    await append_entries(engine, project.code, drafts, recorded_by="test", render=lambda r: None)
    async with pg.connection(owner_engine) as conn:
        await conn.execute("ANALYZE balances, project_heads, contributor_totals, accounts")
    return project.code


@pytest.mark.parametrize("begin", sorted(BEGINS))
async def test_an_append_transaction_plans_key_lookups_and_leaves_the_session_as_it_was(
    engine: AsyncEngine, project_code: str, begin: str
) -> None:
    async with pg.transaction(engine) as conn:
        (row,) = await conn.fetch(BEGINS[begin], project_code)
        assert row["outcome"] == "locked"
        settings = {s: await conn.fetchval("SELECT current_setting($1)", s) for s in PLANNER_SWITCHES}
        assert settings == dict.fromkeys(PLANNER_SWITCHES, "off")
        plans = {
            "write": await _generic_plan(conn, "keyed_write", _WRITE_SQL.sql),
            "find": await _generic_plan(conn, "keyed_find", _FIND.sql),
            "totals": await _generic_plan(conn, "keyed_totals", _TOTALS.sql),
        }
    for name, plan in plans.items():
        for node in ("Seq Scan", "Hash Join", "Merge Join"):
            assert node not in plan, f"{name}: {plan}"
    assert "balances_pkey" in plans["write"] and "project_heads_pkey" in plans["write"], plans["write"]
    assert "contributor_totals_pkey" in plans["find"], plans["find"]
    # Only for that transaction (set_config(…, true)): the next one on the connection plans as usual.
    async with pg.transaction(engine) as conn:
        for s in PLANNER_SWITCHES:
            assert await conn.fetchval("SELECT current_setting($1)", s) == "on"
