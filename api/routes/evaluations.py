"""共评: evaluation codes and their slips (treasurer), scores (public, rate limited), paper tallies
(treasurer) and the results (public)."""

from __future__ import annotations

import json

from litestar import Request, Response, get, post
from litestar.openapi.datastructures import ResponseSpec
from sqlalchemy.ext.asyncio import AsyncEngine

from api import schemas as s
from api.auth import Caller, idempotent_project_write, project_write, require_project_writer
from api.db import Db
from api.http import (
    JSON_BODY_MAX,
    PAGE_SIZE_DEFAULT,
    Cursor,
    Limit,
    PathId,
    clamp_limit,
    dump,
    json_response,
    parse_body,
    read_json,
)
from api.routes.common import BEARER, OPTIONAL_BEARER, body_opt, problems
from ledger.canonical import SHANGHAI
from ledger.evaluations import (
    Comment,
    Evaluation,
    IssuedBatch,
    Issuer,
    Results,
    Scores,
    Tally,
    TallyDraft,
    batch_codes,
    display_code,
    evaluation_open,
    evaluation_results,
    issue_codes,
    list_comments,
    record_tally,
    submit_evaluation,
)
from ledger.masking import mask_phones
from ledger.projects import get_project
from reports.render import PdfRenderer
from reports.slips import SlipsModel, render_slips_pdf

TAGS = ["evaluation"]
PDF = "application/pdf"


# -- presenters -----------------------------------------------------------------------------------


def slips_url(project: str, batch_no: int) -> str:
    return f"/api/v1/projects/{project}/evaluation-codes/{batch_no}/slips.pdf"


def codes_out(issued: IssuedBatch) -> s.EvaluationCodesOut:
    b = issued.batch
    return s.EvaluationCodesOut(
        project=b.project_code,
        batch=b.batch_no,
        count=b.count,
        issued_total=b.issued_total,
        codes=[display_code(c) for c in issued.codes],
        slips_pdf_url=slips_url(b.project_code, b.batch_no),
        issued_at=b.issued_at,
    )


def _shown(comment: str | None, unmasked: bool) -> str | None:
    # A resident's words are kept as written for the community's treasurer and auditor (who may
    # call back); every public output masks phone and ID numbers in them.
    if comment is None or unmasked:
        return comment
    return mask_phones(comment)


def evaluation_out(e: Evaluation, *, unmasked: bool = False) -> s.EvaluationOut:
    return s.EvaluationOut(
        id=e.id, project=e.project_code, score=e.score, comment=_shown(e.comment, unmasked), created_at=e.created_at
    )


def comment_out(c: Comment, *, unmasked: bool) -> s.EvaluationCommentOut:
    return s.EvaluationCommentOut(
        id=c.id, score=c.score, comment=_shown(c.comment, unmasked) or "", created_at=c.created_at
    )


def counts_out(counts: tuple[int, ...]) -> s.ScoreCounts:
    return {str(score): n for score, n in enumerate(counts, start=1)}


def tally_out(t: Tally) -> s.TallyOut:
    return s.TallyOut(
        id=t.id,
        project=t.project_code,
        held_on=t.held_on,
        method=t.method,  # type: ignore[arg-type]
        counts=counts_out(t.counts),
        total=t.total,
        sheet_sha256=t.sheet_sha256,
        recorded_at=t.recorded_at,
    )


def _number(value: object) -> float | None:
    # The Decimal is already rounded (two places for the average, four for the rate): as a JSON
    # number it prints the same digits.
    return None if value is None else float(value)  # type: ignore[arg-type]


def score_summary_out(x: Scores) -> s.ScoreSummaryOut:
    return s.ScoreSummaryOut(total=x.total, average=_number(x.average), satisfied_rate=_number(x.satisfied_rate))


# -- codes and slips ------------------------------------------------------------------------------


def bearer_secret(request: Request) -> str:
    """The caller's token itself: the batch's seed is wrapped under a key derived from it."""
    return request.headers.get("authorization", "").partition(" ")[2].strip()


@post(
    "/projects/{project:str}/evaluation-codes",
    tags=TAGS,
    summary="发放一批评价码（报账员，须带 Idempotency-Key；一户一码，只以哈希保存）",
    security=BEARER,
    request_max_body_size=JSON_BODY_MAX,
    opt=body_opt(s.EvaluationCodesIn),
    responses={
        201: ResponseSpec(s.EvaluationCodesOut, description="已发放；评价码只在此响应和评价卡 PDF 中出现"),
        **problems(400, 401, 403, 404, 409, 413, 422),
    },
)
async def issue_codes_route(request: Request, db: Db, project: str) -> Response[bytes]:
    write = await idempotent_project_write(request, project, s.EvaluationCodesIn)
    issued = await issue_codes(
        db.engine,
        project,
        write.body.count,
        Issuer(write.caller.scope, bearer_secret(request)),
        idempotency=write.idempotency,
    )
    body = json.dumps(dump(codes_out(issued)), ensure_ascii=False, separators=(",", ":"))
    return json_response(201, body, replayed=issued.replayed)


async def slips_pdf(request: Request, issued: IssuedBatch) -> bytes:
    engine: AsyncEngine = request.app.state.engine
    async with engine.connect() as conn:
        found = await get_project(conn, issued.batch.project_code)
    model = SlipsModel(
        project_code=found.code,
        project_title=found.title,
        community_name=found.community_name,
        batch_no=issued.batch.batch_no,
        codes=issued.codes,
        public_base_url=request.app.state.settings.public_base_url,
        issued_on=issued.batch.issued_at.astimezone(SHANGHAI).date(),
    )
    renderer: PdfRenderer = request.app.state.renderer
    return await renderer.run(render_slips_pdf, model)


@get(
    "/projects/{project:str}/evaluation-codes/{batch:int}/slips.pdf",
    tags=TAGS,
    summary="打印评价卡（发放这批评价码的报账员令牌）",
    security=BEARER,
    media_type=PDF,
    responses={200: ResponseSpec(bytes, description="PDF", media_type=PDF), **problems(401, 403, 404)},
)
async def slips_route(request: Request, db: Db, project: str, batch: PathId) -> Response[bytes]:
    caller = await require_project_writer(request, project)
    async with db.connect() as conn:
        issued = await batch_codes(conn, project, batch, Issuer(caller.scope, bearer_secret(request)))
    return Response(
        await slips_pdf(request, issued),
        media_type=PDF,
        headers={
            # The codes are credentials: never kept by a cache on the way.
            "Cache-Control": "no-store",
            "Content-Disposition": f'inline; filename="slips-{project}-{batch}.pdf"',
        },
    )


# -- scores ---------------------------------------------------------------------------------------


@post(
    "/projects/{project:str}/evaluations",
    tags=TAGS,
    summary="凭评价码评分 1–5 分（公开，限流；每码一次，验收后至结项前）",
    status_code=201,
    request_max_body_size=JSON_BODY_MAX,
    opt={**body_opt(s.EvaluationIn), "public_write": True},
    responses={
        201: ResponseSpec(s.EvaluationOut, description="已记录"),
        **problems(400, 404, 409, 413, 422, 429),
    },
)
async def evaluate_route(request: Request, db: Db, project: str) -> s.EvaluationOut:
    raw = await read_json(request)
    async with db.connect() as conn:
        await get_project(conn, project)
    body = parse_body(s.EvaluationIn, raw)
    return evaluation_out(await submit_evaluation(db.engine, project, body.household_code, body.score, body.comment))


@post(
    "/projects/{project:str}/evaluation-tallies",
    tags=TAGS,
    summary="记录纸质问卷或共评会的统计结果（报账员；附统计表的 SHA-256）",
    security=BEARER,
    request_max_body_size=JSON_BODY_MAX,
    opt=body_opt(s.TallyIn),
    responses={201: ResponseSpec(s.TallyOut, description="已记录"), **problems(400, 401, 403, 404, 409, 413, 422)},
)
async def tally_route(request: Request, db: Db, project: str) -> Response[bytes]:
    write = await project_write(request, project, s.TallyIn)
    body = write.body
    stored, replayed = await record_tally(
        db.engine,
        project,
        TallyDraft(body.held_on, body.method, body.counts.as_tuple(), body.sheet_sha256),
        recorded_by=write.caller.scope,
        render=lambda t: dump(tally_out(t)),
        idempotency=write.idempotency,
    )
    return json_response(stored.status, stored.body, replayed=replayed)


# -- results --------------------------------------------------------------------------------------


def results_out(
    project: str, stage: str, r: Results, comments: list[s.EvaluationCommentOut], nxt: str | None
) -> s.EvaluationResultsOut:
    overall = r.overall
    return s.EvaluationResultsOut(
        project=project,
        accepting=evaluation_open(stage),
        online=counts_out(r.online.counts),
        paper=counts_out(r.paper.counts),
        counts=counts_out(overall.counts),
        total=overall.total,
        average=_number(overall.average),
        satisfied_rate=_number(overall.satisfied_rate),
        by_source={"online": score_summary_out(r.online), "paper": score_summary_out(r.paper)},
        codes_issued=r.codes_issued,
        tallies=[tally_out(t) for t in r.tallies],
        comments=comments,
        next=nxt,
    )


@get(
    "/projects/{project:str}/evaluations",
    tags=TAGS,
    summary="共评结果：线上、线下各分数份数，平均分，满意率，意见（公开）",
    security=OPTIONAL_BEARER,
    responses=problems(401, 404, 422),
)
async def results_route(
    db: Db, caller: Caller, project: str, limit: Limit = PAGE_SIZE_DEFAULT, cursor: Cursor = ""
) -> s.EvaluationResultsOut:
    size = clamp_limit(limit)
    async with db.connect() as conn:
        found = await get_project(conn, project)
        results = await evaluation_results(conn, found.id, found.code)
        comments = await list_comments(conn, found.id, before_id=int(cursor) if cursor else None, limit=size + 1)
    unmasked = caller.can_read_unmasked(found.community_id)
    shown = [comment_out(c, unmasked=unmasked) for c in comments[:size]]
    nxt = str(comments[size - 1].id) if len(comments) > size else None
    return results_out(found.code, found.stage, results, shown, nxt)


ROUTES = [issue_codes_route, slips_route, evaluate_route, tally_route, results_route]
