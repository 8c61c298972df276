"""以奖代补: award policies (administrators publish, anyone reads) and a project's computed award."""

from __future__ import annotations

from litestar import Request, get, post

from api import schemas as s
from api.auth import require_role
from api.db import Db
from api.http import PAGE_SIZE_DEFAULT, Cursor, Limit, clamp_limit, cursor_id, parse_body, read_json
from api.presenters import award_out, award_policy_out
from api.routes.common import BEARER, OPTIONAL_BEARER, body_opt, problems
from ledger.awards import NewPolicy, assign_policy_to_project, create_policy, list_policies, project_award_by_code

TAGS = ["awards"]


@post(
    "/award-policies",
    tags=TAGS,
    summary="发布以奖代补政策（管理员；同一编号再发布即为新一版，旧版保留）",
    security=BEARER,
    status_code=201,
    opt=body_opt(s.AwardPolicyIn),
    responses=problems(400, 401, 403, 413, 422),
)
async def create_policy_route(request: Request, db: Db) -> s.AwardPolicyOut:
    raw = await read_json(request)
    caller = await require_role(request, "admin")
    body = parse_body(s.AwardPolicyIn, raw)
    policy = await create_policy(
        db.engine,
        NewPolicy(
            code=body.code,
            name=body.name,
            issuer=body.issuer,
            document_no=body.document_no,
            rate=body.rate,
            cap_fen=body.cap,
            min_participation=body.min_participation,
            min_satisfaction=body.min_satisfaction,
        ),
        created_by=caller.scope,
    )
    return award_policy_out(policy)


@get(
    "/award-policies",
    tags=TAGS,
    summary="以奖代补政策的每一版（公开）",
    security=OPTIONAL_BEARER,
    responses=problems(401, 422),
)
async def list_policies_route(
    db: Db, code: str | None = None, limit: Limit = PAGE_SIZE_DEFAULT, cursor: Cursor = ""
) -> s.AwardPolicyPage:
    size = clamp_limit(limit)
    async with db.connect() as conn:
        items = await list_policies(conn, code=code, after_id=cursor_id(cursor), limit=size + 1)
    nxt = str(items[size - 1].id) if len(items) > size else None
    return s.AwardPolicyPage(items=[award_policy_out(p) for p in items[:size]], next=nxt)


@post(
    "/projects/{project:str}/award-policy",
    tags=TAGS,
    summary="改变项目适用的以奖代补政策（管理员；记录保留）",
    security=BEARER,
    status_code=201,
    opt=body_opt(s.AwardPolicyAssignIn),
    responses=problems(400, 401, 403, 404, 409, 413, 422),
)
async def assign_policy_route(request: Request, db: Db, project: str) -> s.AwardOut:
    raw = await read_json(request)
    caller = await require_role(request, "admin")
    body = parse_body(s.AwardPolicyAssignIn, raw)
    await assign_policy_to_project(db.engine, project, body.policy, assigned_by=caller.scope)
    return award_out(await project_award_by_code(db.engine, project))


@get(
    "/projects/{project:str}/award",
    tags=TAGS,
    summary="项目的以奖代补核算：每一项输入和每一步（公开）",
    security=OPTIONAL_BEARER,
    responses=problems(401, 404),
)
async def project_award_route(db: Db, project: str) -> s.AwardOut:
    return award_out(await project_award_by_code(db.engine, project))


ROUTES = [create_policy_route, list_policies_route, assign_policy_route, project_award_route]
