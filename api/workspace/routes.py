"""The treasurer's and auditor's workspace (/w/…): server-rendered forms over the same service
functions, schemas, presenters and idempotency as the API.

Every form carries a fresh idempotency key (``idem``) rendered with it: a double-clicked submit
sends the same key twice and the second gets the first's answer, so it records once. Every route
applies the API's authorisation matrix to the project's (or voucher's, or objection's) community.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any, TypeVar

from litestar import Request, Response, get, post
from litestar.datastructures import UploadFile
from litestar.response import Redirect, Template
from sqlalchemy.ext.asyncio import AsyncEngine

from api import schemas as s
from api.auth import Caller
from api.db import Db
from api.errors import ApiError
from api.http import PathId, dump
from api.pages.routes import _today
from api.presenters import entry_out, pledge_out, project_out, voucher_out
from api.routes.attachments import attachment_out
from api.routes.disclosures import _pdf_maker, disclosure_out, objection_out
from api.routes.entries import to_draft
from api.routes.vouchers import actor_of
from api.workspace.forms import FIELDS, FILE_KINDS, FORM_KINDS, Field, FormState, body_from_form, validate
from api.workspace.session import (
    TOKEN_TYPED_MAX,
    Session,
    check_origin,
    clear_session,
    current_session,
    posted_form,
    set_session,
)
from ledger import kinds
from ledger.attachments import SIZE_MAX, read_attachment, store_attachment
from ledger.disclosures import (
    DisclosureDraft,
    list_disclosures,
    list_objections,
    objection_community,
    preview_pdf,
    publish_disclosure,
    respond_to_objection,
)
from ledger.entries import append_entries
from ledger.entry_reads import get_entry, list_entries
from ledger.errors import IdempotencyInFlight, LedgerError, NotFound
from ledger.idempotency import IdempotencyRequest, fingerprint
from ledger.money import format_fen_grouped
from ledger.pledges import get_pledge
from ledger.projects import Project, get_project, list_projects
from ledger.summary import project_summary
from ledger.tokens import authenticate
from ledger.vouchers import approve_voucher, get_voucher, list_vouchers, reject_voucher, submit_voucher

T = TypeVar("T")
LIST_MAX = 200
IN_FLIGHT_WAIT_S = 0.2
IN_FLIGHT_TRIES = 25  # 5 s: a double-click's second request waits for the first to commit
UPLOAD_FORM_MAX = SIZE_MAX + 64 * 1024


def page(name: str, session: Session | None, status_code: int = 200, **context: Any) -> Template:
    if session is not None:
        context.update(session.context())
    return Template(
        template_name=f"workspace/{name}.html.j2",
        context=context,
        status_code=status_code,
        headers={"Cache-Control": "no-store"},
    )


def refused(session: Session | None, message: str, status_code: int = 403) -> Template:
    return page("refused", session, status_code, message=message)


def new_idem() -> str:
    return uuid.uuid4().hex


# -- who may do what (the API's matrix) ---------------------------------------------------------


def may_write(caller: Caller, community_id: int) -> bool:
    return caller.can_write(community_id)


def may_check(caller: Caller, community_id: int) -> bool:
    t = caller.token
    return t is not None and (caller.is_admin or (t.role == "auditor" and t.community_id == community_id))


def may_read(caller: Caller, community_id: int) -> bool:
    return caller.can_read_unmasked(community_id)


async def readable_project(engine: AsyncEngine, session: Session, code: str) -> Project:
    """The project, if this session's community is its own (another community's staff see
    nothing of it, not even that it exists). Errors: NotFound."""
    async with engine.connect() as conn:
        project = await get_project(conn, code)
    if not may_read(session.caller, project.community_id):
        raise NotFound(f"项目 {code} 不存在")
    return project


def idempotency(session: Session, path: str, form: dict[str, Any], *, extra: bytes = b"") -> IdempotencyRequest:
    """The form's key, scoped to the token like the API's; the fingerprint covers what was
    submitted, so the same key with other contents is refused as in the API."""
    key = form.get("idem")
    if not isinstance(key, str) or not key:
        key = new_idem()  # a form without its key still works; it just is not deduplicated
    contents = {k: v for k, v in form.items() if k not in ("csrf", "idem") and isinstance(v, str)}
    canonical = json.dumps(contents, sort_keys=True, ensure_ascii=False).encode()
    return IdempotencyRequest(
        scope=session.caller.scope,
        key=key[:255],
        fingerprint=fingerprint(b"POST", path.encode(), canonical, extra),
    )


async def once(call: Callable[[], Awaitable[T]]) -> T:
    """Run an idempotent write; while the same key's first request is still in flight (a
    double-click), wait for it and return its stored answer."""
    for _ in range(IN_FLIGHT_TRIES):
        try:
            return await call()
        except IdempotencyInFlight:
            await asyncio.sleep(IN_FLIGHT_WAIT_S)
    return await call()


# -- sign in, sign out, home ----------------------------------------------------------------------


@get("/login", name="ws_login")
async def login_page(request: Request) -> Template:
    signed_out = request.query_params.get("out") == "1"
    return page("login", None, next=_safe_next(request.query_params.get("next")), error="", signed_out=signed_out)


def _safe_next(target: str | None) -> str:
    # Only a path inside the workspace: never an open redirect to another site.
    if target and target.startswith("/w/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/w/"


@post("/login", name="ws_login_post", status_code=303)
async def login(request: Request) -> Response[Any]:
    check_origin(request)
    form = await request.form()
    secret = str(form.get("token") or "").strip()
    target = _safe_next(str(form.get("next") or ""))
    token = None
    if 0 < len(secret) <= TOKEN_TYPED_MAX:
        async with request.app.state.engine.connect() as conn:
            token = await authenticate(conn, secret)
    if token is None:
        return page("login", None, 401, next=target, error="令牌无效或已吊销，请核对后重新粘贴。", signed_out=False)
    return set_session(Redirect(target, status_code=303), request, secret)


@post("/logout", name="ws_logout", status_code=303)
async def logout(request: Request) -> Response[Any]:
    session = await current_session(request)
    await posted_form(request, session)
    return clear_session(Redirect("/w/login?out=1", status_code=303), request)


@get("/", name="ws_home")
async def home(request: Request, db: Db) -> Template:
    session = await current_session(request)
    t = session.token
    async with db.connect() as conn:
        projects = await list_projects(
            conn, community_code=t.community_code, stage=None, after_id=0, limit=LIST_MAX + 1, newest_first=True
        )
    return page("home", session, projects=[project_out(p) for p in projects[:LIST_MAX]], more=len(projects) > LIST_MAX)


# -- a project's desk -----------------------------------------------------------------------------


@get("/p/{project:str}", name="ws_project")
async def project_desk(
    request: Request,
    db: Db,
    project: str,
    done: int | None = None,
    submitted: int | None = None,
    imported: int | None = None,
    first: int | None = None,
    last: int | None = None,
) -> Template:
    session = await current_session(request)
    found = await readable_project(db.engine, session, project)
    async with db.connect() as conn:
        summary = await project_summary(conn, found)
        newest = await list_entries(conn, found.code, after_seq=max(summary.ledger_size - 10, 0))
        # A payment just recorded against a pledge: say where the pledge stands (paid beyond it?).
        kept = None
        if done is not None and 0 < done <= summary.ledger_size:
            recorded = await get_entry(conn, found.code, done)
            if recorded.pledge_seq is not None:
                kept = await get_pledge(conn, found.id, recorded.pledge_seq)
        pending = await list_vouchers(conn, found.code, status="pending", limit=LIST_MAX)
    return page(
        "project",
        session,
        project=project_out(found, summary),
        newest=[entry_out(e, unmasked=True) for e in reversed(newest)],
        pending=len(pending),
        kinds=FORM_KINDS,
        can_write=may_write(session.caller, found.community_id),
        can_check=may_check(session.caller, found.community_id),
        done=done,
        done_pledge=pledge_out(kept, unmasked=True) if kept else None,
        submitted=submitted,
        imported={"id": imported, "first": first, "last": last} if imported and first and last else None,
    )


# -- entries and vouchers: one form per kind ------------------------------------------------------


def _fields_for(kind: str, found: Project) -> tuple[Field, ...]:
    fields = FIELDS[kind]
    if kind != "expenditure":
        return fields
    choices = tuple((b.category, b.label) for b in found.budget_lines)
    return tuple(
        Field(f.name, f.label, f.kind, f.required, f.hint, choices) if f.name == "category" else f for f in fields
    )


def _entry_form(session: Session, found: Project, kind: str, state: FormState, status_code: int = 200) -> Template:
    return page(
        "entry_form",
        session,
        status_code,
        project=project_out(found),
        kind=kind,
        fields=_fields_for(kind, found),
        state=state,
        idem=state.values.get("idem") or new_idem(),
        with_file=kind in FILE_KINDS,
        countersign=_countersign_text(found, kind),
        today=_today().isoformat(),
    )


def _countersign_text(found: Project, kind: str) -> str:
    if kind not in kinds.COUNTERSIGNED_KINDS or found.countersign_over_fen is None:
        return ""
    if found.countersign_over_fen == 0:
        return "本项目每笔支出和退款都须经审核人复核：提交后成为待审核凭证，审核通过才记账。"
    return f"超过 {format_fen_grouped(found.countersign_over_fen)} 元的将成为待审核凭证，审核通过才记账。"


def _needs_voucher(found: Project, kind: str, amount_fen: int | None) -> bool:
    threshold = found.countersign_over_fen
    return kind in kinds.COUNTERSIGNED_KINDS and threshold is not None and (amount_fen or 0) > threshold


@get("/p/{project:str}/new/{kind:str}", name="ws_entry_form")
async def entry_form(request: Request, db: Db, project: str, kind: str) -> Template:
    session = await current_session(request)
    found = await readable_project(db.engine, session, project)
    if kind not in FORM_KINDS:
        raise NotFound("没有这种记录类型")
    if not may_write(session.caller, found.community_id):
        return refused(session, "只有本社区的报账员可以记账。")
    return _entry_form(session, found, kind, FormState(values={"occurred_on": _today().isoformat()}))


@post("/p/{project:str}/new/{kind:str}", name="ws_entry_post", status_code=303, request_max_body_size=UPLOAD_FORM_MAX)
async def entry_post(request: Request, db: Db, project: str, kind: str) -> Response[Any]:
    session = await current_session(request)
    form = await posted_form(request, session)
    found = await readable_project(db.engine, session, project)
    if kind not in FORM_KINDS:
        raise NotFound("没有这种记录类型")
    if not may_write(session.caller, found.community_id):
        return refused(session, "只有本社区的报账员可以记账。")
    fields = _fields_for(kind, found)
    body, state = body_from_form(kind, form, fields)
    state.values["idem"] = str(form.get("idem") or "")
    upload = form.get("file")
    file_bytes = b""
    if kind in FILE_KINDS and isinstance(upload, UploadFile) and upload.filename:
        file_bytes = await upload.read()
    parsed = validate(s.EntryRequest, body, state, fields)
    draft = None
    if parsed is not None:
        try:
            draft = to_draft(parsed.root)
        except ApiError as exc:
            for e in exc.errors:
                state.add(e["field"], e["message"], fields)
    if draft is None:
        return _entry_form(session, found, kind, state, 422)
    idem = idempotency(session, request.url.path, form, extra=file_bytes)
    try:
        if file_bytes:
            assert isinstance(upload, UploadFile)
            stored, _ = await store_attachment(
                db.engine,
                found.community_id,
                session.caller.scope,
                file_bytes,
                upload.content_type or "",
                render=lambda a: dump(attachment_out(a)),
            )
            draft = replace(draft, attachments=(json.loads(stored.body)["sha256"],))
        if _needs_voucher(found, kind, draft.amount_fen):
            answer, _ = await once(
                lambda: submit_voucher(
                    db.engine,
                    found.code,
                    draft,
                    actor_of(session.caller),
                    idempotency=idem,
                    render=lambda v: dump(voucher_out(v)),
                )
            )
            voucher_id = json.loads(answer.body)["id"]
            return Redirect(f"/w/p/{found.code}?submitted={voucher_id}", status_code=303)
        result = await once(
            lambda: append_entries(
                db.engine,
                found.code,
                [draft],
                recorded_by=session.caller.scope,
                idempotency=idem,
                render=lambda recorded: dump(entry_out(recorded[0], unmasked=True)),
            )
        )
    except LedgerError as exc:
        if exc.code == "not_found":
            raise
        if exc.code == "unsupported_media_type" or exc.code == "payload_too_large":
            state.errors.setdefault("file", []).append(exc.detail)
        else:
            state.add_ledger_error(exc, fields)
        return _entry_form(session, found, kind, state, 409 if exc.code != "validation_failed" else 422)
    seq = json.loads(result.body)["seq"]
    return Redirect(f"/w/p/{found.code}?done={seq}", status_code=303)


# -- the voucher queue ----------------------------------------------------------------------------


@get("/p/{project:str}/vouchers", name="ws_vouchers")
async def voucher_queue(request: Request, db: Db, project: str, error: str | None = None) -> Template:
    session = await current_session(request)
    found = await readable_project(db.engine, session, project)
    return await _queue(db.engine, session, found, message=(error or "")[:300])


async def _queue(
    engine: AsyncEngine, session: Session, found: Project, *, message: str = "", status: int = 200
) -> Template:
    async with engine.connect() as conn:
        vouchers = await list_vouchers(conn, found.code, limit=LIST_MAX)
    pending = [voucher_out(v) for v in vouchers if v.status == "pending"]
    decided = [voucher_out(v) for v in reversed(vouchers) if v.status != "pending"]
    return page(
        "vouchers",
        session,
        status,
        project=project_out(found),
        pending=pending,
        decided=decided,
        category_labels={b.category: b.label for b in found.budget_lines},
        can_check=may_check(session.caller, found.community_id),
        message=message,
        idem=new_idem,
    )


async def _voucher_for_checker(
    request: Request, engine: AsyncEngine, voucher_id: int
) -> tuple[Session, dict[str, Any], Project]:
    session = await current_session(request)
    form = await posted_form(request, session)
    async with engine.connect() as conn:
        voucher = await get_voucher(conn, voucher_id)
    found = await readable_project(engine, session, voucher.project_code)
    return session, form, found


@post("/vouchers/{voucher_id:int}/approve", name="ws_approve", status_code=303)
async def approve(request: Request, db: Db, voucher_id: PathId) -> Response[Any]:
    session, form, found = await _voucher_for_checker(request, db.engine, voucher_id)
    if not may_check(session.caller, found.community_id):
        return refused(session, "只有本社区的审核人可以审核凭证。")
    idem = idempotency(session, request.url.path, form)
    try:
        await once(
            lambda: approve_voucher(
                db.engine,
                voucher_id,
                actor_of(session.caller),
                idempotency=idem,
                render=lambda v, entry: dump(voucher_out(v, entry)),
            )
        )
    except LedgerError as exc:
        if exc.code == "not_found":
            raise
        return await _queue(db.engine, session, found, message=f"凭证 {voucher_id} 未能通过：{exc.detail}", status=409)
    return Redirect(f"/w/p/{found.code}/vouchers", status_code=303)


@post("/vouchers/{voucher_id:int}/reject", name="ws_reject", status_code=303)
async def reject(request: Request, db: Db, voucher_id: PathId) -> Response[Any]:
    session, form, found = await _voucher_for_checker(request, db.engine, voucher_id)
    if not may_check(session.caller, found.community_id):
        return refused(session, "只有本社区的审核人可以审核凭证。")
    reason = str(form.get("reason") or "").strip()
    idem = idempotency(session, request.url.path, form)
    try:
        await once(
            lambda: reject_voucher(
                db.engine,
                voucher_id,
                actor_of(session.caller),
                reason,
                idempotency=idem,
                render=lambda v: dump(voucher_out(v)),
            )
        )
    except LedgerError as exc:
        if exc.code == "not_found":
            raise
        return await _queue(db.engine, session, found, message=f"凭证 {voucher_id} 未能退回：{exc.detail}", status=422)
    return Redirect(f"/w/p/{found.code}/vouchers", status_code=303)


@get("/a/{sha256:str}", name="ws_attachment")
async def attachment(request: Request, db: Db, sha256: str) -> Response[bytes]:
    """An attachment for the community's own staff (a pending voucher's invoice is not public yet)."""
    session = await current_session(request)
    async with db.connect() as conn:
        access = await read_attachment(conn, sha256)
    if not (access.public or any(may_read(session.caller, c) for c in access.community_ids)):
        raise NotFound("附件不存在")
    f = access.file
    return Response(
        f.content,
        media_type=f.attachment.media_type,
        headers={"Cache-Control": "private, no-store", "X-Content-Type-Options": "nosniff"},
    )


# -- publishing a sheet, with its preview ----------------------------------------------------------


def _period_defaults() -> dict[str, str]:
    today = _today()
    return {
        "period_start": today.replace(day=1).isoformat(),
        "period_end": today.isoformat(),
        "notice_days": "7",
        "title": "",
    }


@get("/p/{project:str}/publish", name="ws_publish")
async def publish_form(request: Request, db: Db, project: str) -> Template:
    session = await current_session(request)
    found = await readable_project(db.engine, session, project)
    if not may_write(session.caller, found.community_id):
        return refused(session, "只有本社区的报账员可以发布公示表。")
    return await _publish_page(db.engine, session, found, _period_defaults(), [])


async def _publish_page(
    engine: AsyncEngine, session: Session, found: Project, values: dict[str, str], errors: list[str], status: int = 200
) -> Template:
    async with engine.connect() as conn:
        sheets = [disclosure_out(d) for d in await list_disclosures(conn, found.code, after_id=0, limit=LIST_MAX)]
    return page(
        "publish",
        session,
        status,
        project=project_out(found),
        values=values,
        errors=errors,
        sheets=list(reversed(sheets)),
        idem=new_idem(),
    )


def _disclosure_body(values: dict[str, str]) -> tuple[s.DisclosureIn | None, list[str]]:
    state = FormState()
    body: dict[str, Any] = {k: v for k, v in values.items() if v and k in ("period_start", "period_end", "title")}
    if values.get("notice_days", "").isdigit():
        body["notice_days"] = int(values["notice_days"])
    fields = (
        Field("period_start", "起始日期"),
        Field("period_end", "截止日期"),
        Field("notice_days", "公示天数"),
        Field("title", "标题"),
    )
    parsed = validate(s.DisclosureIn, body, state, fields)
    labels = {f.name: f.label for f in fields}
    messages = [f"{labels[k]}：{m}" for k, ms in state.errors.items() for m in ms] + state.general
    return parsed, messages


@get("/p/{project:str}/preview.pdf", name="ws_preview")
async def preview(
    request: Request,
    db: Db,
    project: str,
    period_start: str = "",
    period_end: str = "",
    notice_days: str = "7",
) -> Response[Any]:
    session = await current_session(request)
    found = await readable_project(db.engine, session, project)
    if not may_write(session.caller, found.community_id):
        return refused(session, "只有本社区的报账员可以预览公示表。")
    values = {"period_start": period_start, "period_end": period_end, "notice_days": notice_days, "title": ""}
    parsed, errors = _disclosure_body(values)
    if parsed is None:
        return await _publish_page(db.engine, session, found, values, errors, 422)
    try:
        pdf = await preview_pdf(
            db.engine,
            found.code,
            DisclosureDraft(
                period_start=parsed.period_start, period_end=parsed.period_end, notice_days=parsed.notice_days
            ),
            make_pdf=_pdf_maker(request),
        )
    except LedgerError as exc:
        if exc.code == "not_found":
            raise
        return await _publish_page(db.engine, session, found, values, [exc.detail], 422)
    return Response(pdf, media_type="application/pdf", headers={"Cache-Control": "no-store"})


@post("/p/{project:str}/publish", name="ws_publish_post", status_code=303)
async def publish(request: Request, db: Db, project: str) -> Response[Any]:
    session = await current_session(request)
    form = await posted_form(request, session)
    found = await readable_project(db.engine, session, project)
    if not may_write(session.caller, found.community_id):
        return refused(session, "只有本社区的报账员可以发布公示表。")
    values = {k: str(form.get(k) or "").strip() for k in ("period_start", "period_end", "notice_days", "title")}
    parsed, errors = _disclosure_body(values)
    if parsed is None:
        return await _publish_page(db.engine, session, found, values, errors, 422)
    idem = idempotency(session, request.url.path, form)
    try:
        stored, _ = await once(
            lambda: publish_disclosure(
                db.engine,
                found.code,
                DisclosureDraft(
                    period_start=parsed.period_start,
                    period_end=parsed.period_end,
                    notice_days=parsed.notice_days,
                    title=parsed.title,
                ),
                published_by=session.caller.scope,
                make_pdf=_pdf_maker(request),
                render=lambda d: dump(disclosure_out(d)),
                idempotency=idem,
            )
        )
    except LedgerError as exc:
        if exc.code == "not_found":
            raise
        return await _publish_page(db.engine, session, found, values, [exc.detail], 409)
    return Redirect(f"/d/{json.loads(stored.body)['id']}", status_code=303)


# -- answering objections -------------------------------------------------------------------------


@get("/p/{project:str}/objections", name="ws_objections")
async def objections(request: Request, db: Db, project: str) -> Template:
    session = await current_session(request)
    found = await readable_project(db.engine, session, project)
    sheets = []
    async with db.connect() as conn:
        for d in reversed(await list_disclosures(conn, found.code, after_id=0, limit=LIST_MAX)):
            items = [objection_out(o, unmasked=True) for o in await list_objections(conn, d.id)]
            sheets.append((disclosure_out(d), items))
    return page(
        "objections",
        session,
        project=project_out(found),
        sheets=sheets,
        can_write=may_write(session.caller, found.community_id),
        idem=new_idem,
    )


@post("/objections/{objection_id:int}/answer", name="ws_answer", status_code=303)
async def answer(request: Request, db: Db, objection_id: PathId) -> Response[Any]:
    session = await current_session(request)
    form = await posted_form(request, session)
    async with db.connect() as conn:
        community_id = await objection_community(conn, objection_id)
    if not may_write(session.caller, community_id):
        return refused(session, "只有本社区的报账员可以答复异议。")
    message = str(form.get("message") or "").strip()
    project_code = str(form.get("project") or "")
    parsed = validate(s.ObjectionResponseIn, {"message": message}, FormState(), ())
    if parsed is None:
        return refused(session, "答复内容不能为空，且不超过 2000 字。", 422)
    idem = idempotency(session, request.url.path, form)
    await once(
        lambda: respond_to_objection(
            db.engine, objection_id, parsed.message, responded_by=session.caller.scope, idempotency=idem
        )
    )
    found = None
    if project_code:
        async with db.connect() as conn:
            found = await get_project(conn, project_code)
    target = f"/w/p/{found.code}/objections" if found and found.community_id == community_id else "/w/"
    return Redirect(target, status_code=303)


ROUTES = [
    login_page,
    login,
    logout,
    home,
    project_desk,
    entry_form,
    entry_post,
    voucher_queue,
    approve,
    reject,
    attachment,
    publish_form,
    preview,
    publish,
    objections,
    answer,
]
