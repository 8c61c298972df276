"""进展公开: progress notes posted by the treasurer (photos through the attachment service), public."""

from __future__ import annotations

from litestar import Request, Response, get, post
from litestar.openapi.datastructures import ResponseSpec

from api import schemas as s
from api.auth import project_write
from api.db import Db
from api.http import (
    JSON_BODY_MAX,
    PAGE_SIZE_DEFAULT,
    Cursor,
    Limit,
    clamp_limit,
    dump,
    json_response,
)
from api.routes.common import BEARER, OPTIONAL_BEARER, body_opt, problems
from ledger.progress import NoteDraft, ProgressNote, list_notes, post_note
from ledger.projects import get_project

TAGS = ["progress"]


def progress_out(n: ProgressNote) -> s.ProgressOut:
    return s.ProgressOut(
        id=n.id,
        project=n.project_code,
        happened_on=n.happened_on,
        text=n.text,
        attachments=list(n.attachments),
        document=n.document,
        document_sha256=n.document_sha256,
        posted_at=n.posted_at,
    )


@post(
    "/projects/{project:str}/progress",
    tags=TAGS,
    summary="发布项目进展（报账员；照片先上传为附件，发布后公开）",
    security=BEARER,
    request_max_body_size=JSON_BODY_MAX,
    opt=body_opt(s.ProgressIn),
    responses={201: ResponseSpec(s.ProgressOut, description="已发布"), **problems(400, 401, 403, 404, 409, 413, 422)},
)
async def post_progress_route(request: Request, db: Db, project: str) -> Response[bytes]:
    write = await project_write(request, project, s.ProgressIn)
    body = write.body
    stored, replayed = await post_note(
        db.engine,
        project,
        NoteDraft(body.happened_on, body.text, tuple(body.attachments)),
        posted_by=write.caller.scope,
        render=lambda n: dump(progress_out(n)),
        idempotency=write.idempotency,
    )
    return json_response(stored.status, stored.body, replayed=replayed)


@get(
    "/projects/{project:str}/progress",
    tags=TAGS,
    summary="项目进展（公开，新的在前）",
    security=OPTIONAL_BEARER,
    responses=problems(401, 404, 422),
)
async def list_progress_route(
    db: Db, project: str, limit: Limit = PAGE_SIZE_DEFAULT, cursor: Cursor = ""
) -> s.ProgressPage:
    size = clamp_limit(limit)
    async with db.connect() as conn:
        found = await get_project(conn, project)
        notes = await list_notes(conn, found.id, found.code, before_id=int(cursor) if cursor else None, limit=size + 1)
    nxt = str(notes[size - 1].id) if len(notes) > size else None
    return s.ProgressPage(items=[progress_out(n) for n in notes[:size]], next=nxt)


ROUTES = [post_progress_route, list_progress_route]
