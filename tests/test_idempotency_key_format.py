"""The database holds an idempotency key to 1–255 printable ASCII characters, no space
(``idempotency_keys_key_format``; migration 0018 rewrote the check without a bounded repetition,
which PostgreSQL's regular expressions unroll at ~27 µs per key). The API refuses such keys first
(tests/test_api_idempotency.py); this is the rule underneath it, for any writer."""

from __future__ import annotations

import asyncpg
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from ledger import pg

ACCEPTED = ["!", "~" * 255, "0b8e4f7c-3d2a-4e5b-9c1d-7a6f5e4d3c2b", "import:2026-07/第1行".encode().hex()]
REFUSED = ["", "~" * 256, "a b", "a\tb", "a\nb", "a\x7fb", "键", "é", "key\u3000"]


async def _insert(conn: asyncpg.Connection, key: str) -> None:
    await conn.execute(
        "INSERT INTO idempotency_keys (scope, key, fingerprint, status, body) VALUES ($1, $2, $3, 201, '{}')",
        "test-key-format",
        key,
        bytes(32),
    )


async def test_printable_ascii_keys_of_1_to_255_characters_are_stored(engine: AsyncEngine) -> None:
    async with pg.connection(engine) as conn:
        tx = conn.transaction()
        await tx.start()
        try:
            for key in ACCEPTED:
                await _insert(conn, key)
        finally:
            await tx.rollback()  # nothing stays behind


@pytest.mark.parametrize("key", REFUSED, ids=lambda k: repr(k) if len(k) < 20 else f"{len(k)} characters")
async def test_other_keys_are_refused_by_the_check(engine: AsyncEngine, key: str) -> None:
    async with pg.connection(engine) as conn:
        with pytest.raises(asyncpg.CheckViolationError) as refused:
            await _insert(conn, key)
    assert refused.value.constraint_name == "idempotency_keys_key_format"


async def test_the_check_has_no_bounded_repetition(engine: AsyncEngine) -> None:
    async with pg.connection(engine) as conn:
        definition = await conn.fetchval(
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = 'idempotency_keys_key_format'"
        )
    assert "char_length(key)" in definition and "{" not in definition, definition
