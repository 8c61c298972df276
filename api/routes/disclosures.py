"""Disclosure sheets (公示): publish (treasurer, idempotent), read and download (public), preview
(treasurer), objections (public, rate limited) and answers (treasurer)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated

from litestar import Request, Response, get, post
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import Parameter

from api import schemas as s
from api.auth import Caller, idempotent_project_write, require_project_writer, require_role, require_write
from api.db import Db
from api.http import (
    JSON_BODY_MAX,
    PAGE_SIZE_DEFAULT,
    Cursor,
    Limit,
    PathId,
    clamp_limit,
    cursor_id,
    dump,
    existing_id,
    json_response,
    parse_body,
    read_json,
)
from api.presenters import cosignature_out
from api.routes.common import BEARER, OPTIONAL_BEARER, body_opt, problems
from api.sheets import pdf_maker
from ledger.canonical import SHANGHAI
from ledger.disclosures import (
    Disclosure,
    DisclosureDraft,
    Objection,
    ObjectionResponse,
    PdfMaker,
    disclosure_pdf,
    file_objection,
    get_disclosure,
    list_disclosures,
    list_objections,
    objection_community,
    preview_pdf,
    publish_disclosure,
    respond_to_objection,
)
from ledger.masking import mask_phones
from ledger.witnesses import Cosignature, list_cosignatures

PDF = "application/pdf"
NoticeDays = Annotated[int, Parameter(ge=1, le=90)]
TAGS = ["disclosures"]


def disclosure_out(
    d: Disclosure, today: date | None = None, cosignatures: list[Cosignature] | None = None
) -> s.DisclosureOut:
    today = today or datetime.now(SHANGHAI).date()
    previous = (
        s.PreviousSheetOut(
            id=d.previous.id,
            sheet_number=d.previous.sheet_number,
            tree_size=d.previous.tree_size,
            root_hash=d.previous.root_hash.hex(),
        )
        if d.previous
        else None
    )
    return s.DisclosureOut(
        id=d.id,
        project=d.project_code,
        sheet_number=d.sheet_number,
        title=d.title,
        period_start=d.period_start,
        period_end=d.period_end,
        tree_size=d.tree_size,
        root_hash=d.root_hash.hex(),
        previous=previous,
        pdf_sha256=d.pdf_sha256,
        pdf_url=f"/api/v1/disclosures/{d.id}/pdf",
        checkpoint_url=f"/api/v1/disclosures/{d.id}/checkpoint",
        cosignatures=[cosignature_out(c) for c in cosignatures or []],
        notice_days=d.notice_days,
        notice_start=d.notice_start,
        notice_end=d.notice_end,
        status="公示期满" if today > d.notice_end else "公示中",
        published_at=d.published_at,
    )


def _shown(text: str, unmasked: bool) -> str:
    # Residents write what they like; a phone or ID number in it is kept for the community's
    # treasurer and auditor (who may call back) and masked everywhere else.
    return text if unmasked else mask_phones(text)


def objection_out(o: Objection, *, unmasked: bool = False) -> s.ObjectionOut:
    """The contact is never shown; numbers in the message are masked unless ``unmasked``."""
    return s.ObjectionOut(
        id=o.id,
        disclosure_id=o.disclosure_id,
        message=_shown(o.message, unmasked),
        created_at=o.created_at,
        responses=[response_out(r, unmasked=unmasked) for r in o.responses],
    )


def response_out(r: ObjectionResponse, *, unmasked: bool = False) -> s.ObjectionResponseOut:
    return s.ObjectionResponseOut(
        id=r.id, objection_id=r.objection_id, message=_shown(r.message, unmasked), created_at=r.created_at
    )


def _pdf_maker(request: Request) -> PdfMaker:
    return pdf_maker(request.app.state.renderer, request.app.state.settings.public_base_url)


@post(
    "/projects/{project:str}/disclosures",
    tags=TAGS,
    summary="发布公示表（报账员，须带 Idempotency-Key）",
    security=BEARER,
    request_max_body_size=JSON_BODY_MAX,
    opt=body_opt(s.DisclosureIn),
    responses={
        201: ResponseSpec(s.DisclosureOut, description="已发布；PDF 只渲染一次并永久保存"),
        **problems(400, 401, 403, 404, 409, 413, 422),
    },
)
async def publish_route(request: Request, db: Db, project: str) -> Response[bytes]:
    write = await idempotent_project_write(request, project, s.DisclosureIn)
    body = write.body
    stored, replayed = await publish_disclosure(
        db.engine,
        project,
        DisclosureDraft(
            period_start=body.period_start, period_end=body.period_end, notice_days=body.notice_days, title=body.title
        ),
        published_by=write.caller.scope,
        make_pdf=_pdf_maker(request),
        render=lambda d: dump(disclosure_out(d)),
        idempotency=write.idempotency,
    )
    return json_response(stored.status, stored.body, replayed=replayed)


@get(
    "/projects/{project:str}/disclosures",
    tags=TAGS,
    summary="项目的公示表（公开）",
    security=OPTIONAL_BEARER,
    responses=problems(401, 404, 422),
)
async def list_route(db: Db, project: str, limit: Limit = PAGE_SIZE_DEFAULT, cursor: Cursor = "") -> s.DisclosurePage:
    size = clamp_limit(limit)
    async with db.connect() as conn:
        items = await list_disclosures(conn, project, after_id=cursor_id(cursor), limit=size + 1)
        signed = await list_cosignatures(conn, [d.id for d in items[:size]])
    nxt = str(items[size - 1].id) if len(items) > size else None
    return s.DisclosurePage(items=[disclosure_out(d, cosignatures=signed[d.id]) for d in items[:size]], next=nxt)


@get(
    "/projects/{project:str}/disclosures/preview.pdf",
    tags=TAGS,
    summary="预览公示表（报账员；不保存）",
    security=BEARER,
    media_type=PDF,
    responses={200: ResponseSpec(bytes, description="PDF", media_type=PDF), **problems(401, 403, 404, 422)},
)
async def preview_route(
    request: Request,
    db: Db,
    project: str,
    period_start: date,
    period_end: date,
    notice_days: NoticeDays = 7,
) -> Response[bytes]:
    await require_project_writer(request, project)
    pdf = await preview_pdf(
        db.engine,
        project,
        DisclosureDraft(period_start=period_start, period_end=period_end, notice_days=notice_days),
        make_pdf=_pdf_maker(request),
    )
    return Response(pdf, media_type=PDF, headers={"Cache-Control": "no-store"})


@get(
    "/disclosures/{disclosure_id:int}",
    tags=TAGS,
    summary="公示表详情（公开）",
    security=OPTIONAL_BEARER,
    responses=problems(401, 404),
)
async def get_route(db: Db, disclosure_id: PathId) -> s.DisclosureOut:
    async with db.connect() as conn:
        found = await get_disclosure(conn, disclosure_id)
        signed = await list_cosignatures(conn, [found.id])
    return disclosure_out(found, cosignatures=signed[found.id])


@get(
    "/disclosures/{disclosure_id:int}/pdf",
    tags=TAGS,
    summary="下载公示表 PDF（发布时保存的原件，永不改变）",
    security=OPTIONAL_BEARER,
    media_type=PDF,
    responses={200: ResponseSpec(bytes, description="PDF", media_type=PDF), **problems(401, 404)},
)
async def pdf_route(request: Request, db: Db, disclosure_id: PathId) -> Response[bytes]:
    async with db.connect() as conn:
        pdf, sha = await disclosure_pdf(conn, disclosure_id)
    etag = f'"{sha}"'
    headers = {"ETag": etag, "Cache-Control": "public, max-age=31536000, immutable"}
    if request.headers.get("if-none-match") == etag:
        return Response(b"", status_code=304, headers=headers)
    headers["Content-Disposition"] = f'inline; filename="disclosure-{disclosure_id}.pdf"'
    return Response(pdf, media_type=PDF, headers=headers)


@post(
    "/disclosures/{disclosure_id:int}/objections",
    tags=TAGS,
    summary="对公示提出异议（公开，限流；联系方式不公开）",
    status_code=201,
    request_max_body_size=JSON_BODY_MAX,
    opt={**body_opt(s.ObjectionIn), "public_write": True},
    responses=problems(400, 404, 409, 413, 422, 429),
)
async def objection_route(request: Request, db: Db, disclosure_id: int) -> s.ObjectionOut:
    raw = await read_json(request)
    existing_id(disclosure_id, "公示表")
    body = parse_body(s.ObjectionIn, raw)
    return objection_out(await file_objection(db.engine, disclosure_id, body.message, body.contact))


@get(
    "/disclosures/{disclosure_id:int}/objections",
    tags=TAGS,
    summary="异议与答复（公开）",
    security=OPTIONAL_BEARER,
    responses=problems(401, 404),
)
async def objections_route(db: Db, caller: Caller, disclosure_id: PathId) -> s.ObjectionList:
    async with db.connect() as conn:
        objections = await list_objections(conn, disclosure_id)
    return s.ObjectionList(
        items=[objection_out(o, unmasked=caller.can_read_unmasked(o.community_id)) for o in objections]
    )


@post(
    "/objections/{objection_id:int}/responses",
    tags=TAGS,
    summary="答复异议（报账员）",
    security=BEARER,
    status_code=201,
    request_max_body_size=JSON_BODY_MAX,
    opt=body_opt(s.ObjectionResponseIn),
    responses=problems(400, 401, 403, 404, 413, 422),
)
async def respond_route(request: Request, db: Db, objection_id: int) -> s.ObjectionResponseOut:
    raw = await read_json(request)
    caller = await require_role(request, "treasurer")
    async with db.connect() as conn:
        community_id = await objection_community(conn, existing_id(objection_id, "异议"))
    require_write(caller, community_id)
    body = parse_body(s.ObjectionResponseIn, raw)
    answer = await respond_to_objection(db.engine, objection_id, body.message, responded_by=caller.scope)
    assert answer is not None, "only a repeated idempotent request answers None"
    return response_out(answer, unmasked=caller.can_read_unmasked(community_id))


ROUTES = [
    publish_route,
    list_route,
    preview_route,
    get_route,
    pdf_route,
    objection_route,
    objections_route,
    respond_route,
]
