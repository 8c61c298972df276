"""One mapping from failures to RFC 9457 problem+json, with the stable codes of API.md.

No stack trace, SQL text or internal path ever reaches a client: unexpected errors are logged
here and answered with a bare 500.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from litestar import Request, Response
from litestar.exceptions import (
    HTTPException,
    MethodNotAllowedException,
    NotAuthorizedException,
    NotFoundException,
    PermissionDeniedException,
    TooManyRequestsException,
    ValidationException,
)
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR
from pydantic import ValidationError

from ledger import errors as le
from ledger import kinds
from reports.render import RendererBusyError

log = logging.getLogger("api")

PROBLEM_MEDIA_TYPE = "application/problem+json"

STATUS_BY_CODE: dict[str, int] = {
    "malformed_request": 400,
    "idempotency_key_missing": 400,
    "unauthorized": 401,
    "forbidden": 403,
    "not_found": 404,
    "method_not_allowed": 405,
    "insufficient_funds": 409,
    "already_reversed": 409,
    "stage_forbids_entry": 409,
    "countersign_required": 409,
    "idempotency_in_flight": 409,
    "conflict": 409,
    "payload_too_large": 413,
    "export_too_large": 413,
    "unsupported_media_type": 415,
    "validation_failed": 422,
    "idempotency_key_reused": 422,
    "rate_limited": 429,
    "internal_error": 500,
    "renderer_busy": 503,
}

TITLES: dict[str, str] = {
    "malformed_request": "请求格式错误",
    "idempotency_key_missing": "缺少 Idempotency-Key",
    "unauthorized": "未认证",
    "forbidden": "无权操作",
    "not_found": "不存在",
    "method_not_allowed": "不支持的方法",
    "insufficient_funds": "余额不足",
    "already_reversed": "已冲正",
    "stage_forbids_entry": "当前阶段不允许该记录",
    "countersign_required": "须经审核人复核",
    "idempotency_in_flight": "请求处理中",
    "conflict": "冲突",
    "payload_too_large": "请求体过大",
    "export_too_large": "导出行数超过上限",
    "unsupported_media_type": "不支持的内容类型",
    "validation_failed": "数据校验未通过",
    "idempotency_key_reused": "Idempotency-Key 被重复用于不同请求",
    "rate_limited": "请求过于频繁",
    "internal_error": "服务器内部错误",
    "renderer_busy": "公示表生成繁忙",
}


class ApiError(Exception):
    """An error raised by the API layer itself (auth, headers, malformed bodies)."""

    def __init__(self, code: str, detail: str, errors: list[dict[str, str]] | None = None) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.errors = errors or []


def problem(
    code: str, detail: str, errors: list[dict[str, Any]] | None = None, headers: dict[str, str] | None = None
) -> Response[dict[str, Any]]:
    status = STATUS_BY_CODE[code]
    body = {
        "type": f"/problems/{code}",
        "title": TITLES[code],
        "status": status,
        "detail": detail,
        "code": code,
        "errors": errors or [],
    }
    return Response(body, status_code=status, media_type=PROBLEM_MEDIA_TYPE, headers=headers)


_PYDANTIC_MESSAGES = {
    "missing": "必填",
    "extra_forbidden": "不允许的字段",
    "string_too_short": "不能为空或过短",
    "string_too_long": "过长",
    "string_pattern_mismatch": "格式不正确",
    "literal_error": "取值不在允许范围内",
    "int_type": "须为整数",
    "bool_type": "须为 true 或 false",
    "string_type": "须为字符串",
    "date_type": "须为 YYYY-MM-DD 日期",
    "date_from_datetime_parsing": "须为 YYYY-MM-DD 日期",
    "date_parsing": "须为 YYYY-MM-DD 日期",
    "uuid_parsing": "须为 UUID",
    "uuid_type": "须为 UUID",
    "greater_than_equal": "数值过小",
    "less_than_equal": "数值过大",
    "too_long": "条目过多",
    "too_short": "条目过少",
    "union_tag_invalid": "kind 不是已知的记录类型",
    "union_tag_not_found": "缺少 kind",
    "model_type": "须为 JSON 对象",
    "model_attributes_type": "须为 JSON 对象",
    "list_type": "须为数组",
    "dict_type": "须为 JSON 对象",
}
_UNION_TAGS = frozenset(kinds.NAMES)  # pydantic names a discriminated union's member by its tag


def field_path(loc: tuple[int | str, ...]) -> str:
    """('entries', 41, 'contribution', 'amount') → 'entries[41].amount' (union tags dropped)."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in _UNION_TAGS or part.startswith("function-"):
            continue
        else:
            out += f".{part}" if out else part
    return out


def validation_errors(exc: ValidationError) -> list[dict[str, str]]:
    result = []
    for err in exc.errors(include_url=False):
        message = _PYDANTIC_MESSAGES.get(err["type"])
        if err["type"] == "value_error":
            message = str(err.get("ctx", {}).get("error", err["msg"]))
        result.append({"field": field_path(tuple(err["loc"])), "message": message or err["msg"]})
    return result


_MSGSPEC_MESSAGES = (
    (re.compile(r"^Expected `int` >= (-?\d+)"), "须为不小于 {0} 的整数"),
    (re.compile(r"^Expected `int` <= (-?\d+)"), "须为不大于 {0} 的整数"),
    (re.compile(r"^Expected `int`"), "须为整数"),
    (re.compile(r"^Expected `str` matching regex"), "格式不正确"),
    (re.compile(r"^Invalid enum value"), "取值不在允许范围内"),
    (re.compile(r"^Expected `date`"), "须为 YYYY-MM-DD 日期"),
    (re.compile(r"^Missing required"), "必填"),
)


def _parameter_message(item: dict[str, Any]) -> str:
    """Litestar's parameter messages (from msgspec) are English: residents and treasurers read Chinese."""
    message = str(item.get("message", ""))
    for pattern, chinese in _MSGSPEC_MESSAGES:
        match = pattern.match(message)
        if match:
            return chinese.format(*match.groups())
    return "取值无效"


PAGE_MESSAGES = {
    404: "没有找到这个页面。地址可能抄错了，或者这条记录不存在。",
    429: "提交太频繁了，请过一分钟再试。",
    500: "服务器出了点问题，请稍后再试。",
}


def _page_error(request: Request, status: int) -> Response[Any] | None:
    """Residents' pages answer errors with a page in Chinese, the API with problem+json."""
    from api.pages import error_page, wants_page  # the pages import this module

    if not wants_page(request):
        return None
    return error_page(status, PAGE_MESSAGES.get(status, "请求有误，请检查地址后再试。"))


def ledger_error_handler(request: Request, exc: le.LedgerError) -> Response[Any]:
    page = _page_error(request, STATUS_BY_CODE[exc.code])
    if page is not None:
        return page
    errors = [{"field": e.field, "message": e.message} for e in exc.errors]
    return problem(exc.code, exc.detail, errors)


def api_error_handler(_: Request, exc: ApiError) -> Response[dict[str, Any]]:
    # RFC 9110: a 401 names the scheme the client should use.
    headers = {"WWW-Authenticate": "Bearer"} if exc.code == "unauthorized" else None
    return problem(exc.code, exc.detail, exc.errors, headers=headers)


def pydantic_error_handler(_: Request, exc: ValidationError) -> Response[dict[str, Any]]:
    return problem("validation_failed", "请求数据未通过校验", validation_errors(exc))


def _names_path(exc: HTTPException) -> bool:
    """A path parameter failed validation (e.g. an id above 2^63-1): the address names nothing
    that can exist, so it is a 404, for pages as for the API."""
    extra = exc.extra if isinstance(exc, ValidationException) and isinstance(exc.extra, list) else []
    return any(isinstance(item, dict) and item.get("source") == "path" for item in extra)


def http_exception_handler(request: Request, exc: HTTPException) -> Response[Any]:
    if exc.status_code < 500:
        page = _page_error(request, 404 if _names_path(exc) else exc.status_code)
        if page is not None:
            return page
    if isinstance(exc, NotFoundException):
        return problem("not_found", "没有这个地址或资源")
    if isinstance(exc, MethodNotAllowedException):
        return problem(
            "method_not_allowed", "该地址不支持此方法：记账凭证、分录和已发布的公示不可修改或删除", headers=exc.headers
        )
    if isinstance(exc, NotAuthorizedException):
        return problem("unauthorized", "需要有效的 Bearer 令牌", headers={"WWW-Authenticate": "Bearer"})
    if isinstance(exc, PermissionDeniedException):
        return problem("forbidden", "令牌无权进行此操作")
    if isinstance(exc, TooManyRequestsException):
        return problem("rate_limited", "请求过于频繁，请稍后再试", headers=exc.headers)
    if isinstance(exc, ValidationException):
        if _names_path(exc):
            return problem("not_found", "没有这个地址或资源")
        extra = [item for item in (exc.extra if isinstance(exc.extra, list) else []) if isinstance(item, dict)]
        errors = [{"field": str(item.get("key", "")), "message": _parameter_message(item)} for item in extra]
        return problem("validation_failed", "请求参数未通过校验", errors)
    if exc.status_code == 413:
        return problem("payload_too_large", "请求体超过上限（JSON 64 KiB，批量导入 8 MiB，表格和附件 10 MiB）")
    if exc.status_code == 415:
        return problem("unsupported_media_type", "请求体须为 application/json")
    if exc.status_code == 400:
        return problem("malformed_request", "请求格式错误")
    if exc.status_code == 429:
        return problem("rate_limited", "请求过于频繁，请稍后再试")
    if exc.status_code >= 500:
        log.error("HTTP %s on %s %s: %s", exc.status_code, request.method, request.url.path, exc.detail)
        return problem("internal_error", "服务器内部错误，请稍后再试")
    return problem("malformed_request", str(exc.detail)[:200])


def internal_error_handler(request: Request, exc: Exception) -> Response[Any]:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    page = _page_error(request, 500)
    if page is not None:
        return page
    response = problem("internal_error", "服务器内部错误，请稍后再试")
    response.status_code = HTTP_500_INTERNAL_SERVER_ERROR
    return response


def renderer_busy_handler(_: Request, exc: RendererBusyError) -> Response[dict[str, Any]]:
    return problem("renderer_busy", "正在生成的公示表过多，请稍后重试", headers={"Retry-After": "10"})


EXCEPTION_HANDLERS = {
    RendererBusyError: renderer_busy_handler,
    le.LedgerError: ledger_error_handler,
    ApiError: api_error_handler,
    ValidationError: pydantic_error_handler,
    HTTPException: http_exception_handler,
    Exception: internal_error_handler,
}
