"""Access tokens (admin only): created with the secret shown once; revoked, never deleted."""

from __future__ import annotations

import uuid

from litestar import Request, delete, post

from api import schemas as s
from api.auth import require_role
from api.db import Db
from api.http import parse_body, read_json
from api.presenters import token_out
from api.routes.common import BEARER, body_opt, problems
from ledger.tokens import create_token, revoke_token


@post(
    "/tokens",
    tags=["tokens"],
    summary="创建访问令牌（管理员；令牌只显示这一次）",
    security=BEARER,
    status_code=201,
    opt=body_opt(s.TokenIn),
    responses=problems(400, 401, 403, 404, 413, 422),
)
async def create_token_route(request: Request, db: Db) -> s.TokenCreatedOut:
    raw = await read_json(request)
    await require_role(request, "admin")
    body = parse_body(s.TokenIn, raw)
    issued = await create_token(db.engine, name=body.name, role=body.role, community_code=body.community)
    return s.TokenCreatedOut(**token_out(issued.token).model_dump(), token=issued.secret)


@delete(
    "/tokens/{token_id:uuid}",
    tags=["tokens"],
    summary="吊销令牌（管理员）",
    security=BEARER,
    status_code=204,
    responses=problems(401, 403, 404),
)
async def revoke_token_route(request: Request, db: Db, token_id: uuid.UUID) -> None:
    await require_role(request, "admin")
    await revoke_token(db.engine, token_id)


ROUTES = [create_token_route, revoke_token_route]
