"""四议两公开 decisions: recorded by the treasurer, public to read."""

from __future__ import annotations

from litestar import Request, Response, get, post
from litestar.openapi.datastructures import ResponseSpec

from api import schemas as s
from api.auth import project_write
from api.db import Db
from api.http import JSON_BODY_MAX, dump, json_response
from api.presenters import decision_out
from api.routes.common import BEARER, OPTIONAL_BEARER, body_opt, problems
from ledger.decisions import DecisionDraft, list_decisions, record_decision


@post(
    "/projects/{project:str}/decisions",
    tags=["decisions"],
    summary="记录一项决策（报账员）",
    security=BEARER,
    request_max_body_size=JSON_BODY_MAX,
    opt=body_opt(s.DecisionIn),
    responses={201: ResponseSpec(s.DecisionOut, description="已记录"), **problems(400, 401, 403, 404, 409, 413, 422)},
)
async def create_decision(request: Request, db: Db, project: str) -> Response[bytes]:
    write = await project_write(request, project, s.DecisionIn)
    stored, replayed = await record_decision(
        db.engine,
        project,
        DecisionDraft(**write.body.model_dump()),
        recorded_by=write.caller.scope,
        idempotency=write.idempotency,
        render=lambda decision: dump(decision_out(decision)),
    )
    return json_response(stored.status, stored.body, replayed=replayed)


@get(
    "/projects/{project:str}/decisions",
    tags=["decisions"],
    summary="决策记录（公开）",
    security=OPTIONAL_BEARER,
    responses=problems(401, 404),
)
async def list_decisions_route(db: Db, project: str) -> s.DecisionList:
    async with db.connect() as conn:
        return s.DecisionList(items=[decision_out(d) for d in await list_decisions(conn, project)])


ROUTES = [create_decision, list_decisions_route]
