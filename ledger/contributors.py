"""Contributors (出资人/出力人): the only place personal data lives.

Entries point at a contributor by id; their documents carry only the public id, the type and a
salted commitment. Erasure (个人信息保护法) deletes name, household, phone and salt, and leaves every
entry and hash as it was.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import bindparam, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

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


async def resolve_contributors(
    conn: AsyncConnection, community_id: int, refs: list[ContributorRef], *, create: list[bool]
) -> list[Contributor]:
    """Find (or, where ``create[i]``, create) the contributor of every ref, in few round trips.

    Errors: ValidationFailed (field ``contributor``) for an unknown id or, where creating is not
    allowed (refunds), an unknown name.
    """
    by_public_id: dict[uuid.UUID, Contributor] = {}
    ids = list({r.id for r in refs if r.id is not None})
    if ids:
        rows = await conn.execute(
            select(contributors).where(contributors.c.community_id == community_id, contributors.c.public_id.in_(ids))
        )
        by_public_id = {r.public_id: _from_row(r) for r in rows}

    by_name: dict[tuple[str, str], Contributor] = {}
    keys = list({r.match_key() for r in refs if r.id is None and r.name is not None})
    if keys:
        rows = await conn.execute(
            text(
                """
                SELECT DISTINCT ON (c.name, coalesce(c.household, '')) c.*
                FROM contributors c
                JOIN unnest(CAST(:names AS text[]), CAST(:households AS text[])) AS k(name, household)
                  ON c.name = k.name AND coalesce(c.household, '') = k.household
                WHERE c.community_id = :community_id AND c.erased_at IS NULL
                ORDER BY c.name, coalesce(c.household, ''), c.id
                """
            ),
            {"names": [k[0] for k in keys], "households": [k[1] for k in keys], "community_id": community_id},
        )
        by_name = {(r.name, r.household or ""): _from_row(r) for r in rows}

    missing: dict[tuple[str, str], ContributorRef] = {}
    for i, ref in enumerate(refs):
        if ref.id is not None:
            if ref.id not in by_public_id:
                raise ValidationFailed.on("contributor.id", "出资人不存在").at(i)
        elif ref.name is None:
            raise ValidationFailed.on("contributor", "须提供出资人 id 或姓名").at(i)
        elif ref.match_key() not in by_name:
            if not create[i]:
                raise ValidationFailed.on("contributor", "该出资人没有出资记录，不能退款").at(i)
            missing.setdefault(ref.match_key(), ref)
    if missing:
        by_name.update(await _create(conn, community_id, list(missing.values())))
    return [by_public_id[r.id] if r.id is not None else by_name[r.match_key()] for r in refs]


async def _create(
    conn: AsyncConnection, community_id: int, refs: list[ContributorRef]
) -> dict[tuple[str, str], Contributor]:
    rows = []
    for ref in refs:
        if ref.type not in CONTRIBUTOR_TYPES:
            raise ValidationFailed.on("contributor.type", f"未知的出资人类型 {ref.type}")
        rows.append(
            {
                "community_id": community_id,
                "type": ref.type,
                "name": ref.name,
                "household": ref.household or None,
                "phone": ref.phone,
                "salt": os.urandom(SALT_BYTES),
            }
        )
    created = await conn.execute(contributors.insert().returning(*contributors.c), rows)
    return {(r.name, r.household or ""): _from_row(r) for r in created}


def _from_row(row: object) -> Contributor:
    m = row._mapping  # type: ignore[attr-defined]
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
