"""OpenAPI helpers shared by route modules."""

from __future__ import annotations

from typing import Any

from litestar.openapi.datastructures import ResponseSpec

from api.errors import PROBLEM_MEDIA_TYPE, TITLES
from api.schemas import Problem

BEARER: list[dict[str, list[str]]] = [{"bearer": []}]
# Public reads accept an optional token (it unmasks names for the community's own staff).
OPTIONAL_BEARER: list[dict[str, list[str]]] = [{}, {"bearer": []}]


def problems(*statuses: int) -> dict[int, ResponseSpec]:
    by_status: dict[int, list[str]] = {}
    from api.errors import STATUS_BY_CODE

    for code, status in STATUS_BY_CODE.items():
        by_status.setdefault(status, []).append(code)
    return {
        status: ResponseSpec(
            Problem,
            description="；".join(f"{code}（{TITLES[code]}）" for code in by_status.get(status, [])) or "错误",
            media_type=PROBLEM_MEDIA_TYPE,
            generate_examples=False,
        )
        for status in statuses
    }


def body_opt(model: Any, max_bytes: int | None = None) -> dict[str, Any]:
    """Marks a handler's JSON request body for the OpenAPI document (bodies are parsed by hand,
    after auth and look-ups, to keep API.md's error precedence)."""
    return {"body_model": model}


def versioned_ok(model: Any, description: str) -> dict[int, ResponseSpec]:
    """A public read keyed by the project's version (api/versioned.py): 200 with an ETag, or 304."""
    return {
        200: ResponseSpec(model, description=f"{description}（带 ETag，随项目版本变化）"),
        304: ResponseSpec(None, description="未变化：If-None-Match 与当前 ETag 相同"),
    }
