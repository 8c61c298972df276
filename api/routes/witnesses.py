"""Witnesses (见证): registered by an administrator; they cosign sheets' checkpoints with their own
keys, offline (``ledger witness sign``), and post the signature without a token."""

from __future__ import annotations

import json

from litestar import Request, Response, get, post
from litestar.openapi.datastructures import ResponseSpec

from api import schemas as s
from api.auth import require_role
from api.db import Db
from api.http import JSON_BODY_MAX, PathId, dump, existing_id, json_response, parse_body, read_json
from api.presenters import cosignature_out, witness_out
from api.routes.common import BEARER, OPTIONAL_BEARER, body_opt, problems
from ledger.witnesses import (
    add_cosignature,
    list_cosignatures,
    list_witnesses,
    parse_public_key,
    register_witness,
    sheet_checkpoint,
    signed_note,
    unb64,
)

TAGS = ["witnesses"]


@post(
    "/communities/{code:str}/witnesses",
    tags=TAGS,
    summary="登记见证人（管理员）：居委会、业委会、监督委员会、街道及其 Ed25519 公钥",
    security=BEARER,
    status_code=201,
    request_max_body_size=JSON_BODY_MAX,
    opt=body_opt(s.WitnessIn),
    responses=problems(400, 401, 403, 404, 409, 413, 422),
)
async def register_route(request: Request, db: Db, code: str) -> s.WitnessOut:
    raw = await read_json(request)
    caller = await require_role(request, "admin")
    body = parse_body(s.WitnessIn, raw)
    key = parse_public_key(body.public_key, body.name)
    return witness_out(await register_witness(db.engine, code, body.name, body.kind, key, created_by=caller.scope))


@get(
    "/communities/{code:str}/witnesses",
    tags=TAGS,
    summary="社区的见证人及其公钥（公开）",
    security=OPTIONAL_BEARER,
    responses=problems(401, 404),
)
async def list_route(db: Db, code: str) -> s.WitnessList:
    async with db.connect() as conn:
        return s.WitnessList(items=[witness_out(w) for w in await list_witnesses(conn, code)])


@get(
    "/disclosures/{disclosure_id:int}/checkpoint",
    tags=TAGS,
    summary="公示表的 C2SP 检查点（及见证人的签名行）",
    security=OPTIONAL_BEARER,
    media_type="text/plain",
    responses={200: ResponseSpec(str, description="C2SP signed note", media_type="text/plain"), **problems(401, 404)},
)
async def checkpoint_route(request: Request, db: Db, disclosure_id: PathId) -> Response[str]:
    async with db.connect() as conn:
        text, _ = await sheet_checkpoint(conn, disclosure_id, request.app.state.settings.public_base_url)
        signed = await list_cosignatures(conn, [disclosure_id])
    return Response(signed_note(text, signed[disclosure_id]), media_type="text/plain; charset=utf-8")


@post(
    "/disclosures/{disclosure_id:int}/cosignatures",
    tags=TAGS,
    summary="提交见证签名（无需令牌：签名即凭证；限流）",
    status_code=201,
    request_max_body_size=JSON_BODY_MAX,
    opt={**body_opt(s.CosignatureIn), "public_write": True},
    responses={
        201: ResponseSpec(s.CosignatureOut, description="签名已验证并保存"),
        200: ResponseSpec(s.CosignatureOut, description="这位见证人已签过同一检查点"),
        **problems(400, 404, 413, 422, 429),
    },
)
async def cosign_route(request: Request, db: Db, disclosure_id: int) -> Response[bytes]:
    raw = await read_json(request)
    existing_id(disclosure_id, "公示表")
    body = parse_body(s.CosignatureIn, raw)
    signature = unb64(body.signature, "signature", "签名")
    stored, created = await add_cosignature(
        db.engine, disclosure_id, body.witness, signature, request.app.state.settings.public_base_url
    )
    return json_response(
        201 if created else 200, json.dumps(dump(cosignature_out(stored)), ensure_ascii=False), replayed=False
    )


@get(
    "/disclosures/{disclosure_id:int}/cosignatures",
    tags=TAGS,
    summary="公示表的见证签名（公开）",
    security=OPTIONAL_BEARER,
    responses=problems(401, 404),
)
async def cosignatures_route(request: Request, db: Db, disclosure_id: PathId) -> s.CosignatureList:
    async with db.connect() as conn:
        await sheet_checkpoint(conn, disclosure_id, request.app.state.settings.public_base_url)  # 404 if none
        signed = await list_cosignatures(conn, [disclosure_id])
    return s.CosignatureList(items=[cosignature_out(c) for c in signed[disclosure_id]])


ROUTES = [register_route, list_route, checkpoint_route, cosign_route, cosignatures_route]
