"""ledger/tables.py, the SQLAlchemy Core description of the tables that Core queries use, holds
no constraints (the migrations do): it must not drift from the migrated schema. Every table and
column it names exists in the database with a compatible type, and a table it describes has no
NOT NULL column without a default that it leaves out (an INSERT through Core would fail)."""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Date, DateTime, Integer, LargeBinary, SmallInteger, Text, Uuid, text
from sqlalchemy.ext.asyncio import AsyncEngine

from ledger.tables import metadata

# information_schema's data_type for each Core type the module uses.
DATA_TYPES = {
    BigInteger: {"bigint"},  # subclasses of Integer first: the first match counts
    SmallInteger: {"smallint"},
    Integer: {"integer"},
    Text: {"text"},
    Boolean: {"boolean"},
    Date: {"date"},
    DateTime: {"timestamp with time zone"},
    LargeBinary: {"bytea"},
    Uuid: {"uuid"},
}


async def test_tables_match_the_migrated_schema(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                text(
                    "SELECT table_name, column_name, data_type, is_nullable, column_default, is_identity, "
                    "is_generated FROM information_schema.columns WHERE table_schema = current_schema()"
                )
            )
        ).all()
    schema: dict[str, dict[str, tuple[str, bool]]] = {}
    for r in rows:
        required = (
            r.is_nullable == "NO" and r.column_default is None and r.is_identity == "NO" and r.is_generated == "NEVER"
        )
        schema.setdefault(r.table_name, {})[r.column_name] = (r.data_type, required)
    problems = []
    assert len(metadata.sorted_tables) >= 10, "the module describes the tables Core queries use"
    for table in metadata.sorted_tables:
        columns = schema.get(table.name)
        if columns is None:
            problems.append(f"{table.name}: no such table")
            continue
        for column in table.columns:
            found = columns.get(column.name)
            if found is None:
                problems.append(f"{table.name}.{column.name}: no such column")
                continue
            expected = next(v for k, v in DATA_TYPES.items() if isinstance(column.type, k))
            if found[0] not in expected and not (found[0] == "ARRAY" or found[0] == "USER-DEFINED"):
                problems.append(f"{table.name}.{column.name}: {found[0]} in the database, {column.type} here")
        described = {c.name for c in table.columns}
        for name, (_, required) in columns.items():
            if required and name not in described:
                problems.append(f"{table.name}.{name}: NOT NULL without a default, missing here")
    assert problems == []
