"""Append-only is enforced by PostgreSQL: grants for the application role, ALWAYS triggers for
everyone else (the owner, and a superuser in replica mode).

Every destructive probe runs inside a transaction that is always rolled back, so a broken guard
fails this test without wiping the session's shared database.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import date

import asyncpg
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from ledger.contributors import ContributorRef
from ledger.decisions import DecisionDraft, record_decision
from ledger.drafts import EntryDraft
from ledger.entries import append_entries
from ledger.idempotency import IdempotencyRequest, fingerprint
from tests.conftest import Database, make_project, unique

GUARDED = ("entries", "postings", "merkle_nodes", "decisions")
DAY = date(2025, 6, 1)


def dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://")


@dataclass(frozen=True)
class Seeded:
    project_id: int
    scope: str

    def where(self, table: str) -> str:
        """A WHERE clause that matches existing rows of ``table`` (row triggers need a row)."""
        if table == "idempotency_keys":
            return f"scope = '{self.scope}'"
        return f"project_id = {self.project_id}"


@pytest.fixture
async def seeded(engine: AsyncEngine) -> Seeded:
    """A project with rows in every guarded table."""
    project = await make_project(engine)
    scope = unique("token")
    drafts = [
        EntryDraft(
            kind="contribution",
            occurred_on=DAY,
            amount_fen=10_000 * (i + 1),
            contributor=ContributorRef(name=f"居民{i}"),
        )
        for i in range(4)
    ]
    await append_entries(
        engine,
        project.code,
        drafts,
        recorded_by="test",
        render=lambda recorded: [r.seq for r in recorded],
        idempotency=IdempotencyRequest(scope, "seed", fingerprint(b"seed")),
    )
    await record_decision(
        engine, project.code, DecisionDraft("proposal", DAY, "居民议事会"), recorded_by="test", render=lambda d: d.id
    )
    return Seeded(project.id, scope)


@asynccontextmanager
async def rolled_back(url: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(dsn(url))
    try:
        transaction = conn.transaction()
        await transaction.start()
        try:
            yield conn
        finally:
            await transaction.rollback()
    finally:
        await conn.close()


async def refused(url: str, sql: str, message: str) -> None:
    """``sql`` fails with InsufficientPrivilege and a message matching ``message``."""
    async with rolled_back(url) as conn:
        with pytest.raises(asyncpg.InsufficientPrivilegeError) as info:
            await conn.execute(sql)
    assert re.search(message, str(info.value)), str(info.value)


async def counts(database: Database, seeded: Seeded) -> dict[str, int]:
    conn = await asyncpg.connect(dsn(database.urls.owner))
    try:
        return {t: await conn.fetchval(f"SELECT count(*) FROM {t} WHERE {seeded.where(t)}") for t in GUARDED}
    finally:
        await conn.close()


def destructive(table: str, where: str) -> list[str]:
    first_column = {"idempotency_keys": "body", "decisions": "body"}.get(table, "community_id")
    return [
        f"UPDATE {table} SET {first_column} = {first_column} WHERE {where}",
        f"DELETE FROM {table} WHERE {where}",
    ]


@pytest.mark.parametrize("table", GUARDED)
async def test_app_role_has_no_update_delete_truncate(database: Database, seeded: Seeded, table: str) -> None:
    before = await counts(database, seeded)
    for sql in destructive(table, seeded.where(table)):
        await refused(database.urls.app, sql, rf"permission denied for table {table}")
    await refused(database.urls.app, f"TRUNCATE {table}", rf"permission denied for table {table}")
    assert await counts(database, seeded) == before


async def test_stored_responses_can_be_deleted_but_never_rewritten(database: Database, seeded: Seeded) -> None:
    """idempotency_keys is a retry cache: no stored response can be altered in place (a replay must
    be what the first request got); erasure replaces one that quotes a person (delete + insert)."""
    where = f"scope = '{seeded.scope}'"
    await refused(
        database.urls.app,
        f"UPDATE idempotency_keys SET body = 'x' WHERE {where}",
        "permission denied for table idempotency_keys",
    )
    await refused(database.urls.app, "TRUNCATE idempotency_keys", "permission denied for table idempotency_keys")
    async with rolled_back(database.urls.app) as conn:
        assert await conn.execute(f"DELETE FROM idempotency_keys WHERE {where}") == "DELETE 1"


@pytest.mark.parametrize("table", GUARDED)
async def test_owner_is_stopped_by_the_triggers(database: Database, seeded: Seeded, table: str) -> None:
    before = await counts(database, seeded)
    for sql in destructive(table, seeded.where(table)):
        op = sql.split()[0]
        await refused(database.urls.owner, sql, rf"{op} on public\.{table} is refused: the table is append-only")
    # CASCADE: otherwise the foreign keys into entries refuse TRUNCATE before any trigger runs.
    await refused(
        database.urls.owner, f"TRUNCATE {table} CASCADE", r"TRUNCATE on public\.\w+ is refused: .*append-only"
    )
    assert await counts(database, seeded) == before


@pytest.mark.parametrize(
    "sql",
    [
        "ALTER TABLE entries DISABLE TRIGGER entries_no_update_delete",
        "ALTER TABLE entries DISABLE TRIGGER ALL",
        "ALTER TABLE postings ENABLE REPLICA TRIGGER postings_no_update_delete",
        "DROP TRIGGER entries_no_truncate ON entries",
        "ALTER TABLE entries OWNER TO CURRENT_USER",
        "DROP TABLE merkle_nodes",
    ],
)
async def test_app_role_cannot_touch_the_triggers_or_tables(database: Database, sql: str) -> None:
    await refused(database.urls.app, sql, r"must be owner of (table|relation)|permission denied")


@pytest.mark.parametrize("role", ["app", "owner"])
async def test_only_a_superuser_may_set_replica_mode(database: Database, role: str) -> None:
    url = database.urls.app if role == "app" else database.urls.owner
    for sql in ("SET session_replication_role = replica", "SET LOCAL session_replication_role = replica"):
        await refused(url, sql, r'permission denied to set parameter "session_replication_role"')


async def test_replica_mode_does_not_skip_the_always_triggers(database: Database, seeded: Seeded) -> None:
    before = await counts(database, seeded)
    for table in GUARDED:
        for sql in [*destructive(table, seeded.where(table)), f"TRUNCATE {table} CASCADE"]:
            async with rolled_back(database.superuser_url) as conn:
                await conn.execute("SET LOCAL session_replication_role = replica")
                assert await conn.fetchval("SHOW session_replication_role") == "replica"
                with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
                    await conn.execute(sql)
    assert await counts(database, seeded) == before


async def test_guard_triggers_are_enabled_always(database: Database) -> None:
    conn = await asyncpg.connect(dsn(database.urls.owner))
    try:
        rows = await conn.fetch(
            """
            SELECT c.relname, t.tgname, t.tgenabled, t.tgtype
            FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
            WHERE NOT t.tgisinternal AND c.relnamespace = 'public'::regnamespace
            """
        )
    finally:
        await conn.close()
    # "char" columns come back as bytes; 'A' is ENABLE ALWAYS ('O' would let replica mode skip it).
    found = {(r["relname"], r["tgname"]): bytes(r["tgenabled"]).decode() for r in rows}
    for table in GUARDED:
        for trigger in (f"{table}_no_update_delete", f"{table}_no_truncate"):
            assert found.get((table, trigger)) == "A", f"{trigger} is enabled ALWAYS"
    guards = {key: state for key, state in found.items() if key[1].endswith(("_no_update_delete", "_no_truncate"))}
    assert set(guards.values()) == {"A"}, f"every guard trigger, also of later tables: {guards}"


async def test_app_role_owns_nothing_and_cannot_loosen_the_money_rules(database: Database, seeded: Seeded) -> None:
    conn = await asyncpg.connect(dsn(database.urls.app))
    try:
        owned = await conn.fetchval(
            "SELECT count(*) FROM pg_class WHERE relnamespace = 'public'::regnamespace "
            "AND relowner = (SELECT oid FROM pg_roles WHERE rolname = current_user)"
        )
        assert owned == 0
        grants = await conn.fetch(
            "SELECT table_name, string_agg(privilege_type, ',' ORDER BY privilege_type) AS privileges "
            "FROM information_schema.role_table_grants WHERE grantee = current_user GROUP BY table_name"
        )
    finally:
        await conn.close()
    table_grants = {r["table_name"]: r["privileges"] for r in grants}
    for table in GUARDED:
        assert table_grants[table] == "INSERT,SELECT", json.dumps(table_grants)
    # Column grants only: the cash floor and the spending gate are not the service's to change.
    await refused(
        database.urls.app,
        f"UPDATE balances SET floor_fen = NULL WHERE project_id = {seeded.project_id}",
        r"permission denied for table balances",
    )
    await refused(
        database.urls.app,
        f"UPDATE projects SET spending_gate = 'waived' WHERE id = {seeded.project_id}",
        r"permission denied for table projects",
    )
