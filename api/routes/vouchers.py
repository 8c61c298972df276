"""Vouchers (maker-checker): the treasurer submits, an auditor of the community — never the
submitter — approves (the entry is appended) or rejects with a reason."""

from __future__ import annotations

from typing import Annotated

from litestar import Request, Response, get, post
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import Parameter

from api import schemas as s
from api.auth import Caller, caller_of, idempotent_project_write, require_role
from api.db import Db
from api.errors import ApiError
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
    idempotency_request,
    json_response,
    parse_body,
    read_json,
)
from api.presenters import voucher_out
from api.routes.common import BEARER, body_opt, problems
from api.routes.entries import to_draft
from ledger.canonical import Signer
from ledger.projects import get_project
from ledger.vouchers import Actor, Voucher, approve_voucher, get_voucher, list_vouchers, reject_voucher, submit_voucher


def actor_of(caller: Caller) -> Actor:
    assert caller.token is not None
    return Actor(id=caller.scope, signer=Signer(caller.token.role, caller.token.name))


def require_reader(caller: Caller, community_id: int) -> None:
    """Vouchers are the community's working papers: its treasurer and auditor (and admins)."""
    if caller.token is None:
        raise ApiError("unauthorized", "需要有效的 Bearer 令牌")
    if not caller.can_read_unmasked(community_id):
        raise ApiError("forbidden", "只能查看本社区的凭证")


def require_checker(caller: Caller, community_id: int) -> None:
    t = caller.token
    assert t is not None
    if not (caller.is_admin or (t.role == "auditor" and t.community_id == community_id)):
        raise ApiError("forbidden", "只有本社区的审核人可以审核凭证")


@post(
    "/projects/{project:str}/vouchers",
    tags=["vouchers"],
    summary="提交报账凭证（报账员，须带 Idempotency-Key）",
    security=BEARER,
    request_max_body_size=JSON_BODY_MAX,
    opt=body_opt(s.VoucherRequest),
    responses={
        201: ResponseSpec(s.VoucherOut, description="已提交，待审核"),
        **problems(400, 401, 403, 404, 409, 413, 422),
    },
)
async def submit_voucher_route(request: Request, db: Db, project: str) -> Response[bytes]:
    write = await idempotent_project_write(request, project, s.VoucherRequest)
    stored, replayed = await submit_voucher(
        db.engine,
        project,
        to_draft(write.body.root),
        actor_of(write.caller),
        idempotency=write.idempotency,
        render=lambda v: dump(voucher_out(v)),
    )
    return json_response(stored.status, stored.body, replayed=replayed)


async def _decision_prelude(request: Request, voucher_id: int) -> tuple[Caller, Voucher, bytes, str | None]:
    """API.md's precedence: malformed body (400) → token and role (401/403) → voucher (404) →
    its community (403)."""
    raw = await request.body()
    if raw.strip():
        raw = await read_json(request)
    else:
        raw = b"{}"
    key = request.headers.get("idempotency-key")
    if key is not None and (not 1 <= len(key) <= 255 or not all(0x21 <= ord(ch) <= 0x7E for ch in key)):
        raise ApiError("malformed_request", "Idempotency-Key 须为 1–255 个可打印 ASCII 字符")
    caller = await require_role(request, "auditor")
    async with request.app.state.engine.connect() as conn:
        voucher = await get_voucher(conn, existing_id(voucher_id, "凭证"))
    require_checker(caller, voucher.community_id)
    return caller, voucher, raw, key


@post(
    "/vouchers/{voucher_id:int}/approve",
    tags=["vouchers"],
    summary="审核通过并记账（本社区审核人，不能是提交人）",
    security=BEARER,
    request_max_body_size=JSON_BODY_MAX,
    opt=body_opt(s.ApproveIn),
    responses={
        201: ResponseSpec(s.VoucherOut, description="已审核通过，附所记的账"),
        **problems(400, 401, 403, 404, 409, 413, 422),
    },
)
async def approve_voucher_route(request: Request, db: Db, voucher_id: int) -> Response[bytes]:
    caller, voucher, raw, key = await _decision_prelude(request, voucher_id)
    parse_body(s.ApproveIn, raw)
    idem = idempotency_request(request, caller.scope, key, raw) if key is not None else None
    result = await approve_voucher(
        db.engine,
        voucher.id,
        actor_of(caller),
        idempotency=idem,
        render=lambda v, entry: dump(voucher_out(v, entry)),
    )
    return json_response(result.status, result.body, replayed=result.replayed)


@post(
    "/vouchers/{voucher_id:int}/reject",
    tags=["vouchers"],
    summary="退回凭证并说明原因（本社区审核人）",
    security=BEARER,
    request_max_body_size=JSON_BODY_MAX,
    opt=body_opt(s.RejectIn),
    responses={201: ResponseSpec(s.VoucherOut, description="已退回"), **problems(400, 401, 403, 404, 409, 413, 422)},
)
async def reject_voucher_route(request: Request, db: Db, voucher_id: int) -> Response[bytes]:
    caller, voucher, raw, key = await _decision_prelude(request, voucher_id)
    body = parse_body(s.RejectIn, raw)
    idem = idempotency_request(request, caller.scope, key, raw) if key is not None else None
    stored, replayed = await reject_voucher(
        db.engine,
        voucher.id,
        actor_of(caller),
        body.reason,
        idempotency=idem,
        render=lambda v: dump(voucher_out(v)),
    )
    return json_response(stored.status, stored.body, replayed=replayed)


VoucherStatus = Annotated[str, Parameter(pattern=r"^(pending|approved|rejected)$", description="按状态筛选")]


@get(
    "/projects/{project:str}/vouchers",
    tags=["vouchers"],
    summary="凭证列表（本社区报账员、审核人）",
    security=BEARER,
    responses=problems(401, 403, 404, 422),
)
async def list_vouchers_route(
    request: Request,
    db: Db,
    project: str,
    status: VoucherStatus | None = None,
    cursor: Cursor = "",
    limit: Limit = PAGE_SIZE_DEFAULT,
) -> s.VoucherPage:
    caller = await caller_of(request)
    if caller.token is None:
        raise ApiError("unauthorized", "需要有效的 Bearer 令牌")
    size = clamp_limit(limit)
    async with db.connect() as conn:
        found = await get_project(conn, project)
        require_reader(caller, found.community_id)
        items = await list_vouchers(conn, found.code, status=status, after_id=cursor_id(cursor), limit=size + 1)
    nxt = str(items[size - 1].id) if len(items) > size else None
    return s.VoucherPage(items=[voucher_out(v) for v in items[:size]], next=nxt)


@get(
    "/vouchers/{voucher_id:int}",
    tags=["vouchers"],
    summary="单张凭证（本社区报账员、审核人）",
    security=BEARER,
    responses=problems(401, 403, 404),
)
async def get_voucher_route(request: Request, db: Db, voucher_id: PathId) -> s.VoucherOut:
    caller = await caller_of(request)
    if caller.token is None:
        raise ApiError("unauthorized", "需要有效的 Bearer 令牌")
    async with db.connect() as conn:
        voucher = await get_voucher(conn, voucher_id)
    require_reader(caller, voucher.community_id)
    return voucher_out(voucher)


ROUTES = [submit_voucher_route, approve_voucher_route, reject_voucher_route, list_vouchers_route, get_voucher_route]
