"""Communities (社区/小区): the unit that owns projects, contributors and tokens."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ledger.errors import Conflict, NotFound
from ledger.masking import refuse_personal_numbers
from ledger.tables import communities


@dataclass(frozen=True)
class Community:
    id: int
    code: str
    name: str
    district: str
    households: int | None
    created_at: datetime


@dataclass(frozen=True)
class NewCommunity:
    code: str
    name: str
    district: str = ""
    households: int | None = None


def _from_row(row: object) -> Community:
    m = row._mapping  # type: ignore[attr-defined]
    return Community(
        id=m["id"],
        code=m["code"],
        name=m["name"],
        district=m["district"],
        households=m["households"],
        created_at=m["created_at"],
    )


async def create_community(engine: AsyncEngine, new: NewCommunity) -> Community:
    """Errors: ValidationFailed (a phone or ID number in published text), Conflict if the code is taken."""
    refuse_personal_numbers({"name": new.name, "district": new.district})
    try:
        async with engine.begin() as conn:
            row = (
                await conn.execute(
                    communities.insert()
                    .values(code=new.code, name=new.name, district=new.district, households=new.households)
                    .returning(*communities.c)
                )
            ).one()
    except IntegrityError as exc:
        if "communities_code_unique" in str(exc.orig):
            raise Conflict(f"社区编号 {new.code} 已存在") from exc
        raise
    return _from_row(row)


async def get_community(conn: AsyncConnection, code: str) -> Community:
    row = (await conn.execute(select(communities).where(communities.c.code == code))).one_or_none()
    if row is None:
        raise NotFound(f"社区 {code} 不存在")
    return _from_row(row)


async def list_communities(conn: AsyncConnection, *, after_id: int, limit: int) -> list[Community]:
    rows = await conn.execute(
        select(communities).where(communities.c.id > after_id).order_by(communities.c.id).limit(limit)
    )
    return [_from_row(r) for r in rows]
