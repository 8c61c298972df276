"""Idempotent writes: a retried request never records twice.

The key is scoped to the caller (its token). Claiming a key takes a transaction-scoped advisory
lock on (scope, key) *without waiting*: if another transaction holds it, the first request is
still in flight (409 ``idempotency_in_flight``). Once the lock is ours, a fresh statement (a new
snapshot, so a just-committed first request is visible) looks the key up: the same fingerprint
replays the stored status and body; a different one is ``idempotency_key_reused``. The writer
stores its response in the same transaction as its effect, so both commit or neither does.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from ledger.errors import IdempotencyInFlight, IdempotencyKeyReused, ValidationFailed

# The community of a stored response that belongs to none (creating a community, issuing a token):
# idempotency_keys is distributed by community_id (migrations/0013, docs/scale.md).
NO_COMMUNITY = 0
KEY_FORMAT = re.compile(r"^[\x21-\x7e]{1,255}$")


class JsonText(str):
    """A response body its renderer has already written as compact JSON (pydantic's
    ``model_dump_json`` takes three fifths of the time of ``model_dump`` and ``json.dumps``, a
    few percent of a single append): stored and sent as it is."""


def response_body(rendered: Any) -> str:
    """The stored body of a write's response: what its renderer returned, as compact JSON."""
    if isinstance(rendered, JsonText):
        return rendered
    return json.dumps(rendered, ensure_ascii=False, separators=(",", ":"))


@dataclass(frozen=True)
class IdempotencyRequest:
    scope: str  # who: the token's id
    key: str
    fingerprint: bytes  # SHA-256 of what was asked (method, path, canonical body)

    def __post_init__(self) -> None:
        if not KEY_FORMAT.fullmatch(self.key):
            raise ValidationFailed.on("Idempotency-Key", "Idempotency-Key 须为 1–255 个可打印 ASCII 字符")
        assert len(self.fingerprint) == 32


@dataclass(frozen=True)
class StoredResponse:
    status: int
    body: str


def fingerprint(*parts: bytes) -> bytes:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.digest()


# The key's advisory lock id. The same expression is used by ledger_append_begin (migrations/0003)
# and by a publisher holding its key for a whole session (ledger/disclosures.py): one lock per key.
KEY_LOCK_ID = "hashtextextended(:scope || chr(31) || :key, 7)"
_LOCK_SQL = f"SELECT pg_try_advisory_xact_lock({KEY_LOCK_ID})"
_LOOKUP_SQL = "SELECT fingerprint, status, body FROM idempotency_keys WHERE scope = :scope AND key = :key"


def _outcome(locked: bool, row: Any, request: IdempotencyRequest) -> StoredResponse | None:
    if not locked:
        raise IdempotencyInFlight("相同 Idempotency-Key 的请求正在处理中，请稍后重试")
    if row is None:
        return None
    if bytes(row["fingerprint"]) != request.fingerprint:
        raise IdempotencyKeyReused("该 Idempotency-Key 已用于另一个不同的请求")
    return StoredResponse(status=row["status"], body=row["body"])


async def claim(conn: AsyncConnection, request: IdempotencyRequest) -> StoredResponse | None:
    """Take the key for this transaction. Returns the stored response of a completed first
    request, or None when this request is the first. Errors: IdempotencyInFlight,
    IdempotencyKeyReused."""
    params = {"scope": request.scope, "key": request.key}
    locked = (await conn.execute(text(_LOCK_SQL), params)).scalar_one()
    # A second statement, hence, under READ COMMITTED, a fresh snapshot: a first request that
    # committed just before our try-lock is visible here. A REPEATABLE READ transaction keeps the
    # snapshot of its first statement, taken before the lock was granted; such a caller must hold
    # the key before its transaction begins (publish_disclosure does).
    row = (await conn.execute(text(_LOOKUP_SQL), params)).mappings().one_or_none() if locked else None
    return _outcome(locked, row, request)


async def store(
    conn: AsyncConnection, request: IdempotencyRequest, community_id: int | None, status: int, body: str
) -> None:
    """Record the response of a write that is not an entry append (decisions, disclosures)."""
    await conn.execute(
        text(
            """
            INSERT INTO idempotency_keys (scope, key, community_id, fingerprint, status, body)
            VALUES (:scope, :key, :cid, :fingerprint, :status, :body)
            """
        ),
        {
            "scope": request.scope,
            "key": request.key,
            "cid": NO_COMMUNITY if community_id is None else community_id,
            "fingerprint": request.fingerprint,
            "status": status,
            "body": body,
        },
    )
