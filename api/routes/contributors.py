"""Personal data (个人信息保护法): erasing a contributor (admin only)."""

from __future__ import annotations

import uuid

from litestar import Request, post

from api import schemas as s
from api.auth import require_role
from api.db import Db
from api.http import parse_body, read_json
from api.routes.common import BEARER, body_opt, problems
from ledger.contributors import erase_contributor
from ledger.errors import NotFound


@post(
    "/contributors/{contributor_id:str}/erasure",
    tags=["contributors"],
    summary="注销出资人个人信息（管理员；记录与哈希保持有效）",
    security=BEARER,
    status_code=201,
    opt=body_opt(s.ErasureIn),
    responses=problems(400, 401, 403, 404, 413, 422),
)
async def erase_contributor_route(request: Request, db: Db, contributor_id: str) -> s.ErasureOut:
    raw = await read_json(request)
    caller = await require_role(request, "admin")
    body = parse_body(s.ErasureIn, raw)
    try:
        public_id = uuid.UUID(contributor_id)
    except ValueError:
        # No contributor has an id that is not a UUID: the same answer as an unknown one.
        raise NotFound("出资人不存在或已注销") from None
    erasure = await erase_contributor(db.engine, None, public_id, reason=body.reason, erased_by=caller.scope)
    return s.ErasureOut(id=str(erasure.public_id), reason=erasure.reason, erased_at=erasure.erased_at)


ROUTES = [erase_contributor_route]
