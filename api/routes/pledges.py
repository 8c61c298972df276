"""Pledges kept (认筹兑现): each pledge's promise and what was paid against it (public, masked)."""

from __future__ import annotations

from typing import Literal

from litestar import get

from api import schemas as s
from api.auth import Caller
from api.db import Db
from api.http import PAGE_SIZE_DEFAULT, Cursor, Limit, clamp_limit, cursor_id
from api.presenters import pledge_out, pledge_totals_out
from api.routes.common import OPTIONAL_BEARER, problems
from ledger.pledges import list_pledges, pledge_totals
from ledger.projects import get_project


@get(
    "/projects/{project:str}/pledges",
    tags=["entries"],
    summary="认筹兑现：每笔认筹的认筹额、实缴与未缴（公开，姓名脱敏）",
    security=OPTIONAL_BEARER,
    responses=problems(401, 404, 422),
)
async def list_pledges_route(
    db: Db,
    caller: Caller,
    project: str,
    status: Literal["open", "fulfilled", "reversed"] | None = None,
    limit: Limit = PAGE_SIZE_DEFAULT,
    cursor: Cursor = "",
) -> s.PledgePage:
    size = clamp_limit(limit)
    async with db.connect() as conn:
        found = await get_project(conn, project)
        totals = await pledge_totals(conn, found.id)
        items = await list_pledges(conn, found.id, status=status, after_seq=cursor_id(cursor), limit=size + 1)
    unmasked = caller.can_read_unmasked(found.community_id)
    return s.PledgePage(
        totals=pledge_totals_out(totals),
        items=[pledge_out(p, unmasked=unmasked) for p in items[:size]],
        next=str(items[size - 1].seq) if len(items) > size else None,
    )


ROUTES = [list_pledges_route]
