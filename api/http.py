"""Request plumbing shared by the write routes, in the order API.md's error precedence demands:
400 (malformed body, missing key) → 401/403 → 404 → 422 → 409."""

from __future__ import annotations

import json
import re
from typing import Annotated, Any, TypeVar

from litestar import Request, Response
from litestar.params import Parameter
from pydantic import BaseModel, ValidationError

from api.errors import ApiError, validation_errors
from ledger.idempotency import IdempotencyRequest, fingerprint

# The treasurer's workspace session cookie (api/workspace/session.py); named here, where both the
# workspace and the database routing (api/db.py: a session never reads a replica) can import it.
WORKSPACE_COOKIE = "ws_session"

JSON_BODY_MAX = 64 * 1024
BATCH_BODY_MAX = 8 * 1024 * 1024
PAGE_SIZE_DEFAULT = 50
PAGE_SIZE_MAX = 500
# Ids, sequence numbers and tree sizes are BIGINT columns: a number outside 1..2^63-1 names
# nothing (404 in a path, 422 in a query) instead of overflowing the driver (500).
INT64_MAX = 2**63 - 1

PathId = Annotated[int, Parameter(ge=1, le=INT64_MAX, description="1 到 2^63−1 的整数")]
Limit = Annotated[int, Parameter(ge=1, le=INT64_MAX, description="每页条数：默认 50，超过 500 按 500 计")]
# Empty means the first page, so every value the pattern admits is accepted.
Cursor = Annotated[str, Parameter(pattern=r"^[0-9]{0,18}$", description="上一页响应中的 next；留空为第一页")]

M = TypeVar("M", bound=BaseModel)


async def read_json(request: Request) -> bytes:
    """The raw body, checked to be well-formed JSON (400 otherwise)."""
    content_type = request.headers.get("content-type", "application/json")
    if not is_json_media_type(content_type):
        raise ApiError("malformed_request", "请求体须为 JSON（Content-Type: application/json）")
    raw = await request.body()
    parsed = parse_json(raw)
    # Kept for idempotency_request, which fingerprints the same body: one parse, not two.
    request.scope["ledger_json"] = (raw, parsed)  # type: ignore[typeddict-unknown-key]
    return raw


def is_json_media_type(content_type: str) -> bool:
    return "json" in content_type.lower()


def parse_json(raw: bytes) -> Any:
    """A request body parsed, or 400: not UTF-8 JSON, nested too deep, or holding a lone surrogate."""
    too_deep = ApiError("malformed_request", f"请求体 JSON 嵌套过深（最多 {JSON_DEPTH_MAX} 层）")
    try:
        parsed = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError("malformed_request", "请求体不是合法的 UTF-8 JSON") from exc
    except RecursionError as exc:
        # Python's parser gives up around 1,000 levels (a 20 KB body of brackets) with an error
        # that is no ValueError: it was a 500.
        raise too_deep from exc
    if _deeper_than(parsed, JSON_DEPTH_MAX):
        raise too_deep
    # Raw UTF-8 cannot carry a surrogate (decoding refuses it), an escape can: "\\ud800" alone is
    # no character, and could be neither stored nor shown. The scan of the parsed strings runs only
    # when the body holds such an escape.
    if _ESCAPED_SURROGATE.search(raw) and _has_lone_surrogate(parsed):
        raise ApiError("malformed_request", "请求体含有无效的 Unicode 字符（孤立的代理项 \\ud800–\\udfff）")
    return parsed


# No request body of this API nests deeper than four levels (a batch's entry's contributor).
JSON_DEPTH_MAX = 32
_ESCAPED_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F]")


def _deeper_than(parsed: Any, limit: int) -> bool:
    """Whether arrays and objects nest deeper than ``limit``, level by level (a 10,000-entry batch
    takes about a tenth of its parsing time)."""
    level, depth = [parsed], 0
    while level:
        depth += 1
        if depth > limit:
            return True
        deeper: list[Any] = []
        for node in level:
            if isinstance(node, dict | list):
                deeper.extend(
                    v for v in (node.values() if isinstance(node, dict) else node) if isinstance(v, dict | list)
                )
        level = deeper
    return False


def _has_lone_surrogate(node: Any) -> bool:
    if isinstance(node, str):
        try:
            node.encode("utf-8")
        except UnicodeEncodeError:
            return True
        return False
    if isinstance(node, dict):
        return any(_has_lone_surrogate(k) or _has_lone_surrogate(v) for k, v in node.items())
    if isinstance(node, list):
        return any(_has_lone_surrogate(v) for v in node)
    return False


def reject_nul_in_url(request: Request) -> None:
    """PostgreSQL text cannot hold NUL: a path or query carrying one is malformed (400), where it
    would otherwise reach the database as a parameter and fail there."""
    path: str = request.scope.get("path", "")
    query: bytes = request.scope.get("query_string", b"")
    if "\x00" in path or b"\x00" in query or b"%00" in query:
        raise ApiError("malformed_request", "地址或查询参数中不能含有 NUL 字符")


def idempotency_key(request: Request) -> str:
    return checked_idempotency_key(request.headers.get("idempotency-key"))


def checked_idempotency_key(key: str | None) -> str:
    if key is None:
        raise ApiError("idempotency_key_missing", "写入请求须带 Idempotency-Key 请求头")
    if not 1 <= len(key) <= 255 or not all(0x21 <= ord(ch) <= 0x7E for ch in key):
        raise ApiError("malformed_request", "Idempotency-Key 须为 1–255 个可打印 ASCII 字符")
    return key


def idempotency_request(request: Request, scope: str, key: str, raw: bytes) -> IdempotencyRequest:
    """Fingerprint = method, path and the body in canonical form (key order and spacing do not
    count as a different request)."""
    read: tuple[bytes, Any] | None = request.scope.get("ledger_json")  # type: ignore[assignment]
    parsed = read[1] if read is not None and read[0] is raw else json.loads(raw)
    return IdempotencyRequest(
        scope=scope, key=key, fingerprint=request_fingerprint(request.method, request.url.path, parsed)
    )


def request_fingerprint(method: str, path: str, parsed_body: Any) -> bytes:
    body = json.dumps(parsed_body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return fingerprint(method.encode(), path.encode(), body.encode())


def parse_body(model: type[M], raw: bytes) -> M:
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        raise ApiError("validation_failed", "请求数据未通过校验", validation_errors(exc)) from exc


def json_response(status: int, body: str, *, replayed: bool) -> Response[bytes]:
    headers = {"Idempotent-Replayed": "true"} if replayed else {}
    return Response(body.encode(), status_code=status, media_type="application/json", headers=headers)


def clamp_limit(limit: int) -> int:
    """The route's ``Limit`` parameter already refused anything below 1."""
    return min(limit, PAGE_SIZE_MAX)


def existing_id(value: int, what: str) -> int:
    """For write routes, which check their path id only after the body and the token (API.md's
    precedence); read routes declare ``PathId`` and Litestar answers 404 before the handler."""
    if not 1 <= value <= INT64_MAX:
        raise ApiError("not_found", f"{what}不存在")
    return value


def cursor_id(cursor: str) -> int:
    """The id after which a page starts (``Cursor`` admits only up to 18 digits)."""
    return int(cursor or 0)


def dump(model: BaseModel) -> Any:
    return model.model_dump(mode="json", by_alias=True)
