"""Contributors (出资人/出力人): the only place personal data lives.

Entries point at a contributor by id; their documents carry only the public id, the type and a
salted commitment. Erasure (个人信息保护法) deletes name, household, phone and salt, and leaves every
entry and hash as it was.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
from sqlalchemy import bindparam, text, update
from sqlalchemy.ext.asyncio import AsyncEngine

from ledger import pg
from ledger.canonical import contributor_commitment
from ledger.errors import NotFound, ValidationFailed
from ledger.tables import contributors

CONTRIBUTOR_TYPES = ("resident", "household", "enterprise", "organization", "party_branch")
SALT_BYTES = 16


@dataclass(frozen=True)
class ContributorRef:
    """How a draft names its contributor: by public id, or by name (and household)."""

    id: uuid.UUID | None = None
    name: str | None = None
    household: str | None = None
    type: str = "resident"
    anonymous: bool = False
    phone: str | None = None

    def match_key(self) -> tuple[str, str]:
        assert self.name is not None
        return (self.name, self.household or "")


@dataclass(frozen=True)
class Contributor:
    id: int
    public_id: uuid.UUID
    type: str
    name: str | None
    household: str | None
    commitment: bytes | None  # None once erased

    @property
    def erased(self) -> bool:
        return self.name is None


_FIND = pg.Query(
    """
    SELECT c.*, t.paid_fen, t.refunded_fen, t.pledged_fen, t.in_kind_fen
    FROM contributors c
    LEFT JOIN contributor_totals t ON t.project_id = :pid AND t.contributor_id = c.id
    WHERE c.community_id = :cid AND c.erased_at IS NULL
      AND (c.public_id = ANY(CAST(:ids AS uuid[]))
           OR (c.name, coalesce(c.household, '')) IN (
               SELECT * FROM unnest(CAST(:names AS text[]), CAST(:households AS text[]))))
    """
)
# New people, in a fixed order (so two transactions creating the same people lock alike); a person
# a concurrent transaction has just created is skipped here and read back by _FIND.
_CREATE = pg.Query(
    """
    INSERT INTO contributors (community_id, type, name, household, phone, salt)
    SELECT :cid, n.type, n.name, n.household, n.phone, n.salt
    FROM unnest(CAST(:types AS text[]), CAST(:names AS text[]), CAST(:households AS text[]),
                CAST(:phones AS text[]), CAST(:salts AS bytea[])) AS n(type, name, household, phone, salt)
    ORDER BY n.name, n.household
    ON CONFLICT (community_id, name, (coalesce(household, ''))) WHERE erased_at IS NULL DO NOTHING
    RETURNING *
    """
)


Totals = dict[str, int]  # paid, refunded, pledged, in_kind (fen) in one project


async def resolve_contributors(
    conn: asyncpg.Connection, community_id: int, project_id: int, refs: list[ContributorRef], *, create: list[bool]
) -> tuple[list[Contributor], dict[int, Totals]]:
    """Find (or, where ``create[i]``, create) the contributor of every ref, with their totals in
    ``project_id``, in one or two round trips.

    Errors: ValidationFailed (field ``contributor``) for an unknown or erased id, an unknown type,
    or, where creating is not allowed (refunds), an unknown name.
    """
    ids = list({r.id for r in refs if r.id is not None})
    keys = list({r.match_key() for r in refs if r.id is None and r.name is not None})
    totals: dict[int, Totals] = {}
    by_public_id, by_name = await _find(conn, community_id, project_id, ids, keys, totals)

    missing: dict[tuple[str, str], ContributorRef] = {}
    for i, ref in enumerate(refs):
        if ref.id is not None:
            if ref.id not in by_public_id:
                raise ValidationFailed.on("contributor.id", "出资人不存在或已注销").at(i)
        elif ref.name is None:
            raise ValidationFailed.on("contributor", "须提供出资人 id 或姓名").at(i)
        elif ref.match_key() not in by_name:
            # A refund may name someone an earlier draft of the same batch creates.
            if not create[i] and ref.match_key() not in missing:
                raise ValidationFailed.on("contributor", "该出资人没有出资记录，不能退款").at(i)
            if ref.type not in CONTRIBUTOR_TYPES:
                raise ValidationFailed.on("contributor.type", f"未知的出资人类型 {ref.type}").at(i)
            missing.setdefault(ref.match_key(), ref)
    if missing:
        by_name.update(await _create(conn, community_id, project_id, list(missing.values()), totals))
    return [by_public_id[r.id] if r.id is not None else by_name[r.match_key()] for r in refs], totals


async def _find(
    conn: asyncpg.Connection,
    community_id: int,
    project_id: int,
    ids: list[uuid.UUID],
    keys: list[tuple[str, str]],
    totals: dict[int, Totals],
) -> tuple[dict[uuid.UUID, Contributor], dict[tuple[str, str], Contributor]]:
    if not ids and not keys:
        return {}, {}
    rows = await pg.fetch(
        conn,
        _FIND,
        cid=community_id,
        pid=project_id,
        ids=ids,
        names=[k[0] for k in keys],
        households=[k[1] for k in keys],
    )
    found = [_from_row(r) for r in rows]
    for r in rows:
        if r["paid_fen"] is not None:
            totals[r["id"]] = {
                "paid": r["paid_fen"],
                "refunded": r["refunded_fen"],
                "pledged": r["pledged_fen"],
                "in_kind": r["in_kind_fen"],
            }
    return (
        {c.public_id: c for c in found},
        {(c.name or "", c.household or ""): c for c in found},
    )


async def _create(
    conn: asyncpg.Connection,
    community_id: int,
    project_id: int,
    refs: list[ContributorRef],
    totals: dict[int, Totals],
) -> dict[tuple[str, str], Contributor]:
    rows = await pg.fetch(
        conn,
        _CREATE,
        cid=community_id,
        types=[r.type for r in refs],
        names=[r.name for r in refs],
        households=[r.household or None for r in refs],
        phones=[r.phone for r in refs],
        salts=[os.urandom(SALT_BYTES) for _ in refs],
    )
    created = {(c.name or "", c.household or ""): c for c in map(_from_row, rows)}
    raced = [r.match_key() for r in refs if r.match_key() not in created]
    if raced:
        created.update((await _find(conn, community_id, project_id, [], raced, totals))[1])
    return created


def _from_row(m: Mapping[str, Any]) -> Contributor:
    commitment = (
        contributor_commitment(m["salt"], m["name"], m["household"], m["type"]) if m["salt"] is not None else None
    )
    return Contributor(
        id=m["id"],
        public_id=m["public_id"],
        type=m["type"],
        name=m["name"],
        household=m["household"],
        commitment=commitment,
    )


async def erase_contributor(engine: AsyncEngine, community_id: int, public_id: uuid.UUID) -> None:
    """Remove a person's personal data for good. Their entries and all hashes stay valid.

    Errors: NotFound.
    """
    async with engine.begin() as conn:
        result = await conn.execute(
            update(contributors)
            .where(
                contributors.c.community_id == bindparam("cid"),
                contributors.c.public_id == bindparam("pid"),
                contributors.c.erased_at.is_(None),
            )
            .values(name=None, household=None, phone=None, salt=None, erased_at=datetime.now().astimezone()),
            {"cid": community_id, "pid": public_id},
        )
        if result.rowcount != 1:
            raise NotFound("出资人不存在或已注销")
        # Stored responses of idempotent writes may quote the person (the treasurer saw their
        # name): they are a retry cache, not the record, so they go too.
        await conn.execute(
            text("DELETE FROM idempotency_keys WHERE community_id = :cid AND strpos(body, :pid) > 0"),
            {"cid": community_id, "pid": str(public_id)},
        )
