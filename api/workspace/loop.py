"""The workspace's 共评 and 进展公开 pages: issue evaluation codes and print their slips, record a
paper questionnaire's or a meeting's tally with a photo of its sheet, post progress notes with
photos. The same services, idempotency and authorisation as the API.

A batch's codes are unwrapped with the signed-in token's own secret (the session keeps it): the
treasurer who issued a batch can show and print its codes again; nobody else can.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from litestar import Request, Response, get, post
from litestar.datastructures import UploadFile
from litestar.response import Redirect, Template
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncEngine

from api import schemas as s
from api.db import Db
from api.errors import validation_errors
from api.http import PathId, dump
from api.pages.routes import _today
from api.presenters import project_out
from api.routes.attachments import attachment_out
from api.routes.evaluations import results_out, slips_pdf, tally_out
from api.routes.progress import progress_out
from api.workspace.routes import idempotency, may_write, new_idem, once, page, readable_project, refused
from api.workspace.session import Session, current_session, posted_form
from ledger.attachments import SIZE_MAX, store_attachment
from ledger.errors import Forbidden, LedgerError, NotFound
from ledger.evaluations import (
    BATCH_MAX,
    METHODS,
    Issuer,
    TallyDraft,
    batch_codes,
    display_code,
    evaluation_results,
    issue_codes,
    list_batches,
    record_tally,
    window_refusal,
)
from ledger.progress import PHOTOS_MAX, NoteDraft, list_notes, post_note
from ledger.projects import Project

TALLY_FORM_MAX = SIZE_MAX + 64 * 1024
# Ten phone photos of 3–4 MB each; a larger post is refused (413) before it is read.
PROGRESS_FORM_MAX = 4 * SIZE_MAX + 64 * 1024
NOTES_SHOWN = 20


def _issuer(session: Session) -> Issuer:
    return Issuer(session.caller.scope, session.secret)


# -- 共评 -------------------------------------------------------------------------------------------


async def _evaluation_page(
    engine: AsyncEngine,
    session: Session,
    found: Project,
    *,
    shown_batch: int | None = None,
    messages: list[str] | None = None,
    values: dict[str, str] | None = None,
    status: int = 200,
) -> Template:
    codes: list[str] = []
    async with engine.connect() as conn:
        batches = await list_batches(conn, found.code)
        if shown_batch is not None:
            try:
                issued = await batch_codes(conn, found.code, shown_batch, _issuer(session))
                codes = [display_code(c) for c in issued.codes]
            except (NotFound, Forbidden):
                shown_batch = None
        results = await evaluation_results(conn, found.id, found.code)
    return page(
        "evaluation",
        session,
        status,
        project=project_out(found),
        batches=batches,
        own=session.caller.scope,
        shown_batch=shown_batch,
        codes=codes,
        evaluation=results_out(found.code, found.stage, results, [], None),
        tallies=[tally_out(t) for t in results.tallies],
        window=window_refusal(found.stage),
        can_write=may_write(session.caller, found.community_id),
        messages=messages or [],
        values={"count": "", "held_on": _today().isoformat(), "method": "meeting", **(values or {})},
        methods=METHODS,
        batch_max=BATCH_MAX,
        idem=new_idem,
    )


@get("/p/{project:str}/evaluation", name="ws_evaluation")
async def evaluation_desk(request: Request, db: Db, project: str, batch: int | None = None) -> Template:
    session = await current_session(request)
    found = await readable_project(db.engine, session, project)
    return await _evaluation_page(db.engine, session, found, shown_batch=batch)


@post("/p/{project:str}/evaluation/codes", name="ws_issue_codes", status_code=303)
async def issue_codes_form(request: Request, db: Db, project: str) -> Response[Any]:
    session = await current_session(request)
    form = await posted_form(request, session)
    found = await readable_project(db.engine, session, project)
    if not may_write(session.caller, found.community_id):
        return refused(session, "只有本社区的报账员可以发放评价码。")
    count_text = str(form.get("count") or "").strip()
    try:
        body = s.EvaluationCodesIn.model_validate({"count": int(count_text) if count_text.isdigit() else count_text})
    except ValidationError:
        message = f"份数须为 1 到 {BATCH_MAX} 的整数（一户一份）"
        return await _evaluation_page(
            db.engine, session, found, messages=[message], values={"count": count_text}, status=422
        )
    idem = idempotency(session, request.url.path, form)
    try:
        issued = await once(lambda: issue_codes(db.engine, found.code, body.count, _issuer(session), idempotency=idem))
    except LedgerError as exc:
        if exc.code == "not_found":
            raise
        return await _evaluation_page(
            db.engine, session, found, messages=[exc.detail], values={"count": count_text}, status=409
        )
    return Redirect(f"/w/p/{found.code}/evaluation?batch={issued.batch.batch_no}#codes", status_code=303)


@get("/p/{project:str}/evaluation/{batch:int}/slips.pdf", name="ws_slips")
async def slips(request: Request, db: Db, project: str, batch: PathId) -> Response[bytes]:
    session = await current_session(request)
    found = await readable_project(db.engine, session, project)
    async with db.connect() as conn:
        issued = await batch_codes(conn, found.code, batch, _issuer(session))
    return Response(
        await slips_pdf(request, issued),
        media_type="application/pdf",
        headers={
            "Cache-Control": "no-store",
            "Content-Disposition": f'inline; filename="slips-{found.code}-{batch}.pdf"',
        },
    )


async def _upload(engine: AsyncEngine, session: Session, found: Project, upload: UploadFile) -> str:
    """Store one uploaded file (cleaned, hashed); its SHA-256. Errors: those of store_attachment."""
    stored, _ = await store_attachment(
        engine,
        found.community_id,
        session.caller.scope,
        await upload.read(),
        upload.content_type or "",
        render=lambda a: dump(attachment_out(a)),
    )
    sha256: str = json.loads(stored.body)["sha256"]
    return sha256


def _files(form: Any, name: str) -> list[UploadFile]:
    return [f for f in form.getall(name, []) if isinstance(f, UploadFile) and f.filename]


@post("/p/{project:str}/evaluation/tallies", name="ws_tally", status_code=303, request_max_body_size=TALLY_FORM_MAX)
async def tally_form(request: Request, db: Db, project: str) -> Response[Any]:
    session = await current_session(request)
    form = await posted_form(request, session)
    found = await readable_project(db.engine, session, project)
    if not may_write(session.caller, found.community_id):
        return refused(session, "只有本社区的报账员可以记录线下评价。")
    values = {k: str(form.get(k) or "").strip() for k in ("held_on", "method", "c1", "c2", "c3", "c4", "c5")}
    counts = {str(n): int(v) if v.isdigit() else v for n in range(1, 6) if (v := values[f"c{n}"])}
    sheet = _files(await request.form(), "sheet")
    messages: list[str] = []
    parsed = None
    try:
        # JSON mode, as the API parses a request: a date is a string there.
        parsed = s.TallyIn.model_validate_json(
            json.dumps(
                {"held_on": values["held_on"], "method": values["method"], "counts": counts, "sheet_sha256": "0" * 64}
            )
        )
    except ValidationError as exc:
        labels = {"held_on": "日期", "method": "方式", "counts": "票数"}
        messages = [
            f"{labels.get(e['field'].split('.')[0], e['field'])}：{e['message']}" for e in validation_errors(exc)
        ]
    if not sheet:
        messages.append("请上传统计表的照片或扫描件（JPEG、PNG 或 PDF）")
    if parsed is None or messages:
        return await _evaluation_page(db.engine, session, found, messages=messages, values=values, status=422)
    content = await sheet[0].read()
    await sheet[0].seek(0)
    idem = idempotency(session, request.url.path, form, extra=hashlib.sha256(content).digest())
    try:
        sha256 = await _upload(db.engine, session, found, sheet[0])
        draft = TallyDraft(parsed.held_on, parsed.method, parsed.counts.as_tuple(), sha256)
        await once(
            lambda: record_tally(
                db.engine,
                found.code,
                draft,
                recorded_by=session.caller.scope,
                render=lambda t: dump(tally_out(t)),
                idempotency=idem,
            )
        )
    except LedgerError as exc:
        if exc.code == "not_found":
            raise
        status = 422 if exc.code in ("validation_failed", "unsupported_media_type", "payload_too_large") else 409
        return await _evaluation_page(db.engine, session, found, messages=[exc.detail], values=values, status=status)
    return Redirect(f"/w/p/{found.code}/evaluation#tallies", status_code=303)


# -- 进展公开 ---------------------------------------------------------------------------------------


async def _progress_page(
    engine: AsyncEngine,
    session: Session,
    found: Project,
    *,
    messages: list[str] | None = None,
    values: dict[str, str] | None = None,
    status: int = 200,
) -> Template:
    async with engine.connect() as conn:
        notes = await list_notes(conn, found.id, found.code, limit=NOTES_SHOWN)
    return page(
        "progress",
        session,
        status,
        project=project_out(found),
        notes=[progress_out(n) for n in notes],
        can_write=may_write(session.caller, found.community_id),
        messages=messages or [],
        values={"happened_on": _today().isoformat(), "text": "", **(values or {})},
        photos_max=PHOTOS_MAX,
        idem=new_idem(),
    )


@get("/p/{project:str}/progress", name="ws_progress")
async def progress_desk(request: Request, db: Db, project: str) -> Template:
    session = await current_session(request)
    found = await readable_project(db.engine, session, project)
    return await _progress_page(db.engine, session, found)


@post("/p/{project:str}/progress", name="ws_progress_post", status_code=303, request_max_body_size=PROGRESS_FORM_MAX)
async def progress_form(request: Request, db: Db, project: str) -> Response[Any]:
    session = await current_session(request)
    form = await posted_form(request, session)
    found = await readable_project(db.engine, session, project)
    if not may_write(session.caller, found.community_id):
        return refused(session, "只有本社区的报账员可以发布进展。")
    values = {k: str(form.get(k) or "").strip() for k in ("happened_on", "text")}
    photos = _files(await request.form(), "photos")
    try:
        parsed = s.ProgressIn.model_validate_json(
            json.dumps({"happened_on": values["happened_on"], "text": values["text"]}, ensure_ascii=False)
        )
    except ValidationError as exc:
        labels = {"happened_on": "日期", "text": "内容"}
        messages = [f"{labels.get(e['field'], e['field'])}：{e['message']}" for e in validation_errors(exc)]
        return await _progress_page(db.engine, session, found, messages=messages, values=values, status=422)
    if len(photos) > PHOTOS_MAX:
        message = f"每条进展最多 {PHOTOS_MAX} 张照片"
        return await _progress_page(db.engine, session, found, messages=[message], values=values, status=422)
    contents = [await p.read() for p in photos]
    for p in photos:
        await p.seek(0)
    idem = idempotency(session, request.url.path, form, extra=b"".join(hashlib.sha256(c).digest() for c in contents))
    try:
        digests = [await _upload(db.engine, session, found, p) for p in photos]
        draft = NoteDraft(parsed.happened_on, parsed.text, tuple(digests))
        await once(
            lambda: post_note(
                db.engine,
                found.code,
                draft,
                posted_by=session.caller.scope,
                render=lambda n: dump(progress_out(n)),
                idempotency=idem,
            )
        )
    except LedgerError as exc:
        if exc.code == "not_found":
            raise
        status = 409 if exc.code.startswith("idempotency") else 422
        return await _progress_page(db.engine, session, found, messages=[exc.detail], values=values, status=status)
    return Redirect(f"/w/p/{found.code}/progress#notes", status_code=303)


ROUTES = [evaluation_desk, issue_codes_form, slips, tally_form, progress_desk, progress_form]
