"""API tokens: shown once at creation, stored only as SHA-256, scoped to a role and community."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import insert, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ledger import pg
from ledger.communities import get_community
from ledger.errors import NotFound, ValidationFailed
from ledger.tables import api_tokens

ROLES = ("admin", "treasurer", "auditor")

TOKEN_PREFIX = "gtl_"
# What a write made with a revoked token is told (API.md: 401).
TOKEN_REVOKED = "令牌无效或已吊销"


@dataclass(frozen=True)
class Token:
    id: uuid.UUID
    name: str
    role: str
    community_code: str | None
    community_id: int | None
    created_at: datetime
    revoked_at: datetime | None


@dataclass(frozen=True)
class IssuedToken:
    token: Token
    secret: str  # the bearer value; never stored, never shown again


def hash_secret(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


async def create_token(engine: AsyncEngine, *, name: str, role: str, community_code: str | None) -> IssuedToken:
    """Errors: ValidationFailed (role/community mismatch), NotFound (community)."""
    if role not in ROLES:
        raise ValidationFailed.on("role", f"角色须为 {', '.join(ROLES)} 之一")
    if (role == "admin") != (community_code is None):
        raise ValidationFailed.on("community", "管理员令牌不属于社区；报账员和审核人令牌必须指定社区")
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    async with engine.begin() as conn:
        community = await get_community(conn, community_code) if community_code else None
        row = (
            await conn.execute(
                insert(api_tokens)
                .values(
                    name=name,
                    role=role,
                    community_id=community.id if community else None,
                    token_hash=hash_secret(secret),
                )
                .returning(*api_tokens.c)
            )
        ).one()
    token = Token(row.id, row.name, row.role, community_code, row.community_id, row.created_at, row.revoked_at)
    return IssuedToken(token=token, secret=secret)


_AUTHENTICATE = pg.Query(
    """
    SELECT t.id, t.name, t.role, c.code AS community_code, t.community_id, t.created_at, t.revoked_at
    FROM api_tokens t LEFT JOIN communities c ON c.id = t.community_id
    WHERE t.token_hash = :hash AND t.revoked_at IS NULL
    """
)


async def authenticate(conn: AsyncConnection, secret: str) -> Token | None:
    """The live token for this bearer value, or None. Every authenticated request runs this, so
    it is one prepared statement on the raw driver."""
    record = await pg.fetchrow(await pg.driver(conn), _AUTHENTICATE, hash=hash_secret(secret))
    if record is None:
        return None
    return Token(**dict(record))


_AUTHENTICATE_FOR_PROJECT = pg.Query(
    """
    SELECT t.id, t.name, t.role, c.code AS community_code, t.community_id, t.created_at, t.revoked_at,
           (SELECT p.community_id FROM projects p WHERE p.code = :code) AS project_community_id
    FROM api_tokens t LEFT JOIN communities c ON c.id = t.community_id
    WHERE t.token_hash = :hash AND t.revoked_at IS NULL
    """
)


async def authenticate_for_project(
    conn: AsyncConnection, secret: str, project_code: str
) -> tuple[Token | None, int | None]:
    """The live token for this bearer value and the community of the project it is about to write
    (None: no such project), in one round trip: what every write to a project checks first."""
    record = await pg.fetchrow(
        await pg.driver(conn), _AUTHENTICATE_FOR_PROJECT, hash=hash_secret(secret), code=project_code
    )
    if record is None:
        return None, None
    fields = dict(record)
    community_id = fields.pop("project_community_id")
    return Token(**fields), community_id


async def revoke_token(engine: AsyncEngine, token_id: uuid.UUID) -> None:
    """Errors: NotFound (unknown or already revoked)."""
    async with engine.begin() as conn:
        result = await conn.execute(
            update(api_tokens)
            .where(api_tokens.c.id == token_id, api_tokens.c.revoked_at.is_(None))
            .values(revoked_at=datetime.now().astimezone())
        )
        if result.rowcount != 1:
            raise NotFound("令牌不存在或已吊销")


# Which of the tokens :tokens are not revoked. A write whose caller was authenticated from facts
# kept in memory (api/auth.py) reads it inside the transaction that writes, in the statement that
# begins the append (ledger/entries.py, ledger/append_group.py), so that its token still stands.
LIVE_TOKENS_SQL = "SELECT t.id FROM api_tokens t WHERE t.id = ANY(CAST(:tokens AS uuid[])) AND t.revoked_at IS NULL"
