"""Request plumbing shared by the write routes, in the order API.md's error precedence demands:
400 (malformed body, missing key) → 401/403 → 404 → 422 → 409."""

from __future__ import annotations

import json
from typing import Any, TypeVar

from litestar import Request, Response
from pydantic import BaseModel, ValidationError

from api.errors import ApiError, validation_errors
from ledger.idempotency import IdempotencyRequest, fingerprint

JSON_BODY_MAX = 64 * 1024
BATCH_BODY_MAX = 8 * 1024 * 1024
PAGE_SIZE_DEFAULT = 50
PAGE_SIZE_MAX = 500

M = TypeVar("M", bound=BaseModel)


async def read_json(request: Request) -> bytes:
    """The raw body, checked to be well-formed JSON (400 otherwise)."""
    content_type = request.headers.get("content-type", "application/json")
    if "json" not in content_type.lower():
        raise ApiError("malformed_request", "请求体须为 JSON（Content-Type: application/json）")
    raw = await request.body()
    try:
        json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError("malformed_request", "请求体不是合法的 UTF-8 JSON") from exc
    return raw


def reject_nul_in_url(request: Request) -> None:
    """PostgreSQL text cannot hold NUL: a path or query carrying one is malformed (400), where it
    would otherwise reach the database as a parameter and fail there."""
    path: str = request.scope.get("path", "")
    query: bytes = request.scope.get("query_string", b"")
    if "\x00" in path or b"\x00" in query or b"%00" in query:
        raise ApiError("malformed_request", "地址或查询参数中不能含有 NUL 字符")


def idempotency_key(request: Request) -> str:
    key = request.headers.get("idempotency-key")
    if key is None:
        raise ApiError("idempotency_key_missing", "写入请求须带 Idempotency-Key 请求头")
    if not 1 <= len(key) <= 255 or not all(0x21 <= ord(ch) <= 0x7E for ch in key):
        raise ApiError("malformed_request", "Idempotency-Key 须为 1–255 个可打印 ASCII 字符")
    return key


def idempotency_request(request: Request, scope: str, key: str, raw: bytes) -> IdempotencyRequest:
    """Fingerprint = method, path and the body in canonical form (key order and spacing do not
    count as a different request)."""
    body = json.dumps(json.loads(raw), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return IdempotencyRequest(
        scope=scope,
        key=key,
        fingerprint=fingerprint(request.method.encode(), request.url.path.encode(), body.encode()),
    )


def parse_body(model: type[M], raw: bytes) -> M:
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        raise ApiError("validation_failed", "请求数据未通过校验", validation_errors(exc)) from exc


def json_response(status: int, body: str, *, replayed: bool) -> Response[bytes]:
    headers = {"Idempotent-Replayed": "true"} if replayed else {}
    return Response(body.encode(), status_code=status, media_type="application/json", headers=headers)


def clamp_limit(limit: int | None) -> int:
    if limit is None:
        return PAGE_SIZE_DEFAULT
    if limit < 1:
        raise ApiError("validation_failed", "limit 须为正整数", [{"field": "limit", "message": "须 ≥ 1"}])
    return min(limit, PAGE_SIZE_MAX)


def dump(model: BaseModel) -> Any:
    return model.model_dump(mode="json", by_alias=True)
