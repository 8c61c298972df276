"""Communities and projects."""

from __future__ import annotations

from litestar import Request, Response, get, post

from api import schemas as s
from api.auth import caller_of, require_role
from api.db import Db, db_of
from api.errors import ApiError
from api.http import PAGE_SIZE_DEFAULT, Cursor, Limit, clamp_limit, cursor_id, parse_body, read_json
from api.presenters import community_out, project_out
from api.routes.common import BEARER, OPTIONAL_BEARER, body_opt, problems, versioned_ok
from api.versioned import JSON, json_bytes, versioned
from ledger.communities import NewCommunity, create_community, get_community, list_communities
from ledger.decisions import STAGES
from ledger.projects import BudgetLine, NewProject, ProjectState, get_project, list_projects
from ledger.projects import create_project as ledger_create_project
from ledger.summary import project_summary


@post(
    "/communities",
    tags=["communities"],
    summary="创建社区（管理员）",
    security=BEARER,
    status_code=201,
    opt=body_opt(s.CommunityIn),
    responses=problems(400, 401, 403, 409, 413, 422),
)
async def create_community_route(request: Request, db: Db) -> s.CommunityOut:
    raw = await read_json(request)
    await require_role(request, "admin")
    body = parse_body(s.CommunityIn, raw)
    community = await create_community(
        db.engine, NewCommunity(code=body.code, name=body.name, district=body.district, households=body.households)
    )
    return community_out(community)


@get("/communities", tags=["communities"], summary="社区列表", security=OPTIONAL_BEARER, responses=problems(401, 422))
async def list_communities_route(db: Db, limit: Limit = PAGE_SIZE_DEFAULT, cursor: Cursor = "") -> s.CommunityPage:
    size = clamp_limit(limit)
    async with db.connect() as conn:
        items = await list_communities(conn, after_id=cursor_id(cursor), limit=size + 1)
    nxt = str(items[size - 1].id) if len(items) > size else None
    return s.CommunityPage(items=[community_out(c) for c in items[:size]], next=nxt)


@get(
    "/communities/{code:str}",
    tags=["communities"],
    summary="社区详情",
    security=OPTIONAL_BEARER,
    responses=problems(401, 404),
)
async def get_community_route(db: Db, code: str) -> s.CommunityOut:
    async with db.connect() as conn:
        return community_out(await get_community(conn, code))


@post(
    "/projects",
    tags=["projects"],
    summary="创建项目（管理员或本社区报账员）",
    security=BEARER,
    status_code=201,
    opt=body_opt(s.ProjectIn),
    responses=problems(400, 401, 403, 404, 409, 413, 422),
)
async def create_project_route(request: Request, db: Db) -> s.ProjectOut:
    raw = await read_json(request)
    caller = await require_role(request, "treasurer")
    body = parse_body(s.ProjectIn, raw)
    async with db.connect() as conn:
        community = await get_community(conn, body.community)
    if not caller.can_write(community.id):
        raise ApiError("forbidden", "只能为本社区创建项目")
    if body.spending_gate == "waived" and not caller.is_admin:
        raise ApiError("forbidden", "只有管理员可以豁免支出门槛（项目决策在系统上线前完成）")
    project = await ledger_create_project(
        db.engine,
        NewProject(
            code=body.code,
            community_code=body.community,
            title=body.title,
            description=body.description,
            households_in_scope=body.households_in_scope,
            spending_gate=body.spending_gate,
            countersign_over_fen=body.countersign_over,
            award_policy=body.award_policy,
            created_by=caller.scope,
            budget_lines=[BudgetLine(b.category, b.label, b.source, b.amount) for b in body.budget_lines],
        ),
    )
    async with db.connect() as conn:
        summary = await project_summary(conn, project)
    return project_out(project, summary)


@get("/projects", tags=["projects"], summary="项目列表", security=OPTIONAL_BEARER, responses=problems(401, 422))
async def list_projects_route(
    db: Db,
    community: str | None = None,
    stage: s.Stage | None = None,
    limit: Limit = PAGE_SIZE_DEFAULT,
    cursor: Cursor = "",
) -> s.ProjectPage:
    if stage is not None and stage not in STAGES:
        raise ApiError(
            "validation_failed", "未知的阶段", [{"field": "stage", "message": f"须为 {', '.join(STAGES)} 之一"}]
        )
    size = clamp_limit(limit)
    async with db.connect() as conn:
        items = await list_projects(
            conn, community_code=community, stage=stage, after_id=cursor_id(cursor), limit=size + 1
        )
    nxt = str(items[size - 1].id) if len(items) > size else None
    return s.ProjectPage(items=[project_out(p) for p in items[:size]], next=nxt)


@get(
    "/projects/{project:str}",
    tags=["projects"],
    summary="项目详情与收支汇总",
    security=OPTIONAL_BEARER,
    responses={**versioned_ok(s.ProjectOut, "项目详情与收支汇总"), **problems(401, 404)},
)
async def get_project_route(request: Request, project: str) -> Response[bytes]:
    # The token (if any) is checked, but the summary is the same for every reader.
    await caller_of(request)
    db = db_of(request)

    async def build(_: ProjectState) -> bytes:
        async with db.connect() as conn:
            found = await get_project(conn, project)
            summary = await project_summary(conn, found)
        return json_bytes(project_out(found, summary))

    return await versioned(request, db.engine, project, build, media_type=JSON)


ROUTES = [
    create_community_route,
    list_communities_route,
    get_community_route,
    create_project_route,
    list_projects_route,
    get_project_route,
]
