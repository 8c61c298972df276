"""The OpenAPI document at /schema/openapi.json.

Litestar generates paths, parameters and responses from the handlers. Write routes parse their
JSON bodies by hand (so that API.md's error precedence holds: 400 → 401/403 → 404 → 422 → 409), so
their request bodies are added here from the pydantic models named in each handler's
``opt["body_model"]``.
"""

from __future__ import annotations

from typing import Any

from litestar import Litestar
from pydantic import TypeAdapter

REF_PREFIX = "#/components/schemas/"


def _body_models(app: Litestar) -> dict[tuple[str, str], Any]:
    found: dict[tuple[str, str], Any] = {}
    for route in app.routes:
        for handler in getattr(route, "route_handlers", []):
            model = handler.opt.get("body_model")
            if model is None:
                continue
            for method in handler.http_methods:
                found[(route.path_format, method.lower())] = model
    return found


def build_openapi(app: Litestar) -> dict[str, Any]:
    document = app.openapi_schema.to_schema()
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    for (path, method), model in _body_models(app).items():
        operation = document.get("paths", {}).get(path, {}).get(method)
        if operation is None:
            continue
        schema = TypeAdapter(model).json_schema(ref_template=REF_PREFIX + "{model}", mode="validation")
        for name, definition in schema.pop("$defs", {}).items():
            schemas.setdefault(name, definition)
        name = model.__name__
        schemas[name] = schema
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": REF_PREFIX + name}}},
        }
        if any(p.get("name") == "Idempotency-Key" for p in operation.get("parameters", [])):
            continue
        if path.endswith(("/entries", "/entries/batch", "/disclosures")) or path.endswith("/decisions"):
            operation.setdefault("parameters", []).append(
                {
                    "name": "Idempotency-Key",
                    "in": "header",
                    "required": not path.endswith("/decisions"),
                    "description": "1–255 个可打印 ASCII 字符；同一令牌下重试同一请求不会重复记账",
                    "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[\\x21-\\x7e]+$"},
                }
            )
    return document
