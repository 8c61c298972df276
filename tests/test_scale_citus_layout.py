"""The migrated schema is ready for Citus (issue 15): read from the catalog, every table is either
distributed by ``community_id`` — the column is NOT NULL, and its primary key, every unique
constraint or unique index, and every foreign key to another community table include it (on both
sides of the key) — or a small reference table, or one of the two tables that stay on the
coordinator alone. No reference or coordinator table points at a community table.

docs/scale.md gives the ``create_distributed_table`` / ``create_reference_table`` call of each table;
that it names every table, as classified here, is checked too.
"""

from __future__ import annotations

import re
import uuid
from pathlib import Path
from typing import Any

import asyncpg

from tests.conftest import Database
from tests.test_ledger_append_only import dsn

ROOT = Path(__file__).resolve().parents[1]
DISTRIBUTION_COLUMN = "community_id"

# Small, rarely written, read by every community's queries: a copy on every node.
REFERENCE = {
    "communities": "one row per 小区/社区; every community table points at it",
    "api_tokens": "checked on every authenticated request, a few per community",
    "award_policies": "the 以奖代补 policies of a district, shared by its communities",
    "project_codes": "a project's code → its community: routes /p/{code} to the right shard",
}
# Neither ledger data nor read by a community's queries.
COORDINATOR = {
    "alembic_version": "the schema's revision",
    "rate_limits": "scratch state of the public write limit, keyed by client address",
}

_TABLES = """
SELECT c.oid, c.relname AS name,
       (SELECT a.attnum FROM pg_attribute a
        WHERE a.attrelid = c.oid AND a.attname = $2 AND NOT a.attisdropped) AS dist_attnum,
       (SELECT a.attnotnull FROM pg_attribute a
        WHERE a.attrelid = c.oid AND a.attname = $2 AND NOT a.attisdropped) AS dist_not_null
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') AND NOT c.relispartition
ORDER BY c.relname
"""
_CONSTRAINTS = """
SELECT con.conname AS name, con.contype::text AS type, con.conrelid AS table_oid, con.confrelid AS ref_oid,
       con.conkey AS columns, con.confkey AS ref_columns
FROM pg_constraint con JOIN pg_namespace n ON n.oid = con.connamespace
WHERE n.nspname = $1 AND con.contype IN ('p', 'u', 'f')
"""
# Unique indexes that back no constraint (an expression or a partial unique index).
_UNIQUE_INDEXES = """
SELECT i.indexrelid::regclass::text AS name, i.indrelid AS table_oid, i.indkey::int2[] AS columns,
       pg_get_indexdef(i.indexrelid) AS definition
FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = $1 AND i.indisunique
  AND NOT EXISTS (SELECT 1 FROM pg_constraint k
                  WHERE k.conindid = i.indexrelid AND k.contype IN ('p', 'u', 'x'))
"""


async def layout_violations(
    conn: asyncpg.Connection, schema: str, reference: set[str], coordinator: set[str]
) -> list[str]:
    """Every way a table of ``schema`` breaks the rule, as readable sentences (empty: none)."""
    tables = {r["oid"]: r for r in await conn.fetch(_TABLES, schema, DISTRIBUTION_COLUMN)}
    names = {oid: r["name"] for oid, r in tables.items()}
    distributed = {oid for oid, r in tables.items() if r["name"] not in reference | coordinator}
    problems: list[str] = []
    for oid in sorted(distributed, key=names.__getitem__):
        table = tables[oid]
        if table["dist_attnum"] is None:
            problems.append(f"{table['name']}: no {DISTRIBUTION_COLUMN} column (nor a reference table)")
        elif not table["dist_not_null"]:
            problems.append(f"{table['name']}.{DISTRIBUTION_COLUMN} may be NULL")
    constraints = await conn.fetch(_CONSTRAINTS, schema)
    has_primary_key = {c["table_oid"] for c in constraints if c["type"] == "p"}
    for oid in distributed - has_primary_key:
        problems.append(f"{names[oid]}: no primary key")
    for c in constraints:
        table_oid, ref_oid = c["table_oid"], c["ref_oid"]
        if table_oid not in tables:
            continue
        where = f"{names[table_oid]}.{c['name']}"
        if c["type"] in ("p", "u"):
            if table_oid in distributed and tables[table_oid]["dist_attnum"] not in c["columns"]:
                problems.append(f"{where}: {'primary key' if c['type'] == 'p' else 'unique'} lacks the community")
            continue
        # A foreign key: into a community table only from a community table, community to community.
        if ref_oid not in distributed:
            continue
        if table_oid not in distributed:
            problems.append(f"{where}: a reference or coordinator table points at community table {names[ref_oid]}")
            continue
        pairs = list(zip(c["columns"], c["ref_columns"], strict=True))
        if (tables[table_oid]["dist_attnum"], tables[ref_oid]["dist_attnum"]) not in pairs:
            problems.append(f"{where}: foreign key to {names[ref_oid]} without community_id on both sides")
    for index in await conn.fetch(_UNIQUE_INDEXES, schema):
        oid = index["table_oid"]
        if oid in distributed and tables[oid]["dist_attnum"] not in index["columns"]:
            problems.append(f"{names[oid]}.{index['name']}: unique index lacks the community")
    return problems


async def test_every_table_is_distributed_by_community_or_a_reference_table(database: Database) -> None:
    conn = await asyncpg.connect(dsn(database.urls.owner))
    try:
        assert await layout_violations(conn, "public", set(REFERENCE), set(COORDINATOR)) == []
        present = {r["name"] for r in await conn.fetch(_TABLES.replace("$2", "'x'"), "public")}
    finally:
        await conn.close()
    assert set(REFERENCE) | set(COORDINATOR) <= present, "a listed table no longer exists: update the lists"


async def test_the_check_finds_each_kind_of_break(database: Database) -> None:
    """The checker itself, on a scratch schema with one table per way of breaking the rule."""
    schema = f"citus_probe_{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(dsn(database.superuser_url))
    try:
        await conn.execute(
            f"""
            CREATE SCHEMA {schema};
            SET search_path = {schema};
            CREATE TABLE ref (id bigint PRIMARY KEY);
            CREATE TABLE good (id bigint, community_id bigint NOT NULL REFERENCES ref (id),
                               code text, PRIMARY KEY (id, community_id), UNIQUE (code, community_id));
            CREATE TABLE no_column (id bigint PRIMARY KEY);
            CREATE TABLE nullable (id bigint, community_id bigint, PRIMARY KEY (id));
            CREATE TABLE no_key (community_id bigint NOT NULL);
            CREATE TABLE narrow_unique (id bigint, community_id bigint NOT NULL, code text UNIQUE,
                                        PRIMARY KEY (id, community_id));
            CREATE TABLE narrow_index (id bigint, community_id bigint NOT NULL, code text,
                                       PRIMARY KEY (id, community_id));
            CREATE UNIQUE INDEX narrow_index_code ON narrow_index (lower(code));
            CREATE TABLE narrow_fk (id bigint, community_id bigint NOT NULL, good_id bigint,
                                    PRIMARY KEY (id, community_id));
            CREATE UNIQUE INDEX good_id_only ON good (id);
            ALTER TABLE narrow_fk ADD FOREIGN KEY (good_id) REFERENCES good (id);
            CREATE TABLE crossed_fk (id bigint, community_id bigint NOT NULL, good_id bigint, other bigint,
                                     PRIMARY KEY (id, community_id),
                                     FOREIGN KEY (good_id, other) REFERENCES good (id, community_id));
            CREATE TABLE ref_to_dist (id bigint PRIMARY KEY, good_id bigint, community_id bigint,
                                      FOREIGN KEY (good_id, community_id) REFERENCES good (id, community_id));
            """
        )
        found = await layout_violations(conn, schema, {"ref", "ref_to_dist"}, set())
    finally:
        await conn.execute(f"DROP SCHEMA {schema} CASCADE")
        await conn.close()
    text = "\n".join(found)
    assert not any(line.startswith("good") and "good_id_only" not in line for line in found), text
    for expected in (
        "no_column: no community_id column",
        "nullable.community_id may be NULL",
        "nullable.nullable_pkey: primary key lacks the community",
        "no_key: no primary key",
        "narrow_unique.narrow_unique_code_key: unique lacks the community",
        "narrow_index.narrow_index_code: unique index lacks the community",
        "narrow_fk.narrow_fk_good_id_fkey: foreign key to good without community_id on both sides",
        "crossed_fk.crossed_fk_good_id_other_fkey: foreign key to good without community_id on both sides",
        "ref_to_dist.ref_to_dist_good_id_community_id_fkey: a reference or coordinator table points at",
        "good.good_id_only: unique index lacks the community",
    ):
        assert any(line.startswith(expected) for line in found), f"missing {expected!r} in:\n{text}"


_CITUS_CALL = re.compile(
    r"create_(distributed|reference)_table\('(\w+)'(?:,\s*'(\w+)')?(?:,\s*colocate_with\s*=>\s*'(\w+)')?\)"
)


async def test_docs_scale_gives_each_table_its_citus_call(database: Database) -> None:
    conn = await asyncpg.connect(dsn(database.urls.owner))
    try:
        tables = {r["name"] for r in await conn.fetch(_TABLES, "public", DISTRIBUTION_COLUMN)}
    finally:
        await conn.close()
    calls: dict[str, Any] = {}
    for kind, table, column, _ in _CITUS_CALL.findall((ROOT / "docs" / "scale.md").read_text(encoding="utf-8")):
        calls[table] = (kind, column)
    for table in sorted(tables - set(COORDINATOR)):
        expected = ("reference", "") if table in REFERENCE else ("distributed", DISTRIBUTION_COLUMN)
        assert calls.get(table) == expected, f"docs/scale.md: {table} should be {expected}, is {calls.get(table)}"
    assert not set(calls) & set(COORDINATOR)
    assert set(calls) <= tables, f"docs/scale.md names tables that do not exist: {set(calls) - tables}"
