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

from api.errors import PROBLEM_MEDIA_TYPE
from api.http import INT64_MAX
from api.schemas import FieldErrorOut, Problem

REF_PREFIX = "#/components/schemas/"


def _body_models(app: Litestar, opt_name: str = "body_model") -> dict[tuple[str, str], Any]:
    found: dict[tuple[str, str], Any] = {}
    for route in app.routes:
        for handler in getattr(route, "route_handlers", []):
            model = handler.opt.get(opt_name)
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
        _state_text_rules(schema)
        for name, definition in schema.pop("$defs", {}).items():
            schemas.setdefault(name, definition)
        name = model.__name__
        schemas[name] = schema
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": REF_PREFIX + name}}},
        }
    # Uploads take the file itself as the body, in one of these media types.
    for (path, method), media_types in _body_models(app, "raw_body").items():
        operation = document.get("paths", {}).get(path, {}).get(method)
        if operation is not None:
            binary = {"schema": {"type": "string", "format": "binary"}}
            # A browser's upload form sends the file as the ``file`` field of a multipart body.
            form = {"schema": {"type": "object", "required": ["file"], "properties": {"file": binary["schema"]}}}
            content = {t: form if t == "multipart/form-data" else binary for t in media_types}
            operation["requestBody"] = {"required": True, "content": content}
    # Downloads answer with the file in its own media type.
    for (path, method), media_types in _body_models(app, "raw_response").items():
        ok = document.get("paths", {}).get(path, {}).get(method, {}).get("responses", {}).get("200")
        if ok is not None:
            ok["content"] = {t: {"schema": {"type": "string", "format": "binary"}} for t in media_types}
    _document_idempotency_keys(document)
    _document_problems(document, schemas)
    _tidy_parameters(document)
    _link_created_resources(document)
    return document


# What each creating POST names in its 201 body, and the path parameter that value fills.
CREATES = {
    "/api/v1/communities": ("code", "code"),
    "/api/v1/projects": ("project", "code"),
    "/api/v1/projects/{project}/entries": ("seq", "seq"),
    "/api/v1/projects/{project}/disclosures": ("disclosure_id", "id"),
    "/api/v1/disclosures/{disclosure_id}/objections": ("objection_id", "id"),
    "/api/v1/tokens": ("token_id", "id"),
    "/api/v1/projects/{project}/vouchers": ("voucher_id", "id"),
}


def _path_parameters(path: str) -> set[str]:
    return {part[1:-1] for part in path.split("/") if part.startswith("{") and part.endswith("}")}


def _link_created_resources(document: dict[str, Any]) -> None:
    """OpenAPI links from every creating POST to the operations on what it created (a project's
    entries, a sheet's objections, a token's revocation), so that a client, or a stateful test,
    can follow them."""
    paths = document.get("paths", {})
    for source, (parameter, field) in CREATES.items():
        created = paths.get(source, {}).get("post", {}).get("responses", {}).get("201")
        if created is None:
            continue
        known = _path_parameters(source)
        links: dict[str, Any] = {}
        for target, item in paths.items():
            needed = _path_parameters(target)
            if parameter not in needed or not needed <= known | {parameter}:
                continue
            for method, operation in item.items():
                if method not in _HTTP_METHODS or "operationId" not in operation:
                    continue
                values = {name: f"$request.path.{name}" for name in needed - {parameter}}
                values[parameter] = f"$response.body#/{field}"
                links[operation["operationId"]] = {"operationId": operation["operationId"], "parameters": values}
        if links:
            created["links"] = links


# RequestBody refuses control characters other than tab and newlines, and strips surrounding
# whitespace before checking a minimum length: the patterns say so.
_NO_CONTROL = "[^\\x00-\\x08\\x0b\\x0c\\x0e-\\x1f]"
TEXT_PATTERN = f"^{_NO_CONTROL}*$"
NONBLANK_TEXT_PATTERN = f"^{_NO_CONTROL}*[^\\s\\x00-\\x1f]{_NO_CONTROL}*$"


def _state_text_rules(node: Any) -> None:
    """Adds the text patterns to every free-text string of a request body schema."""
    if isinstance(node, list):
        for item in node:
            _state_text_rules(item)
        return
    if not isinstance(node, dict):
        return
    free_text = node.get("type") == "string" and not {"pattern", "format", "enum", "const"} & set(node)
    if free_text:
        node["pattern"] = NONBLANK_TEXT_PATTERN if node.get("minLength", 0) > 0 else TEXT_PATTERN
    for value in node.values():
        _state_text_rules(value)


def _exact(bound: Any) -> Any:
    """Litestar writes numeric bounds as floats, and 2^63-1 as a float is 2^63: a generator would
    send a number the server must refuse. Bounds are integers here."""
    if isinstance(bound, float) and bound.is_integer():
        return min(int(bound), INT64_MAX) if bound > 0 else int(bound)
    return bound


def _tidy_parameters(document: dict[str, Any]) -> None:
    """Litestar writes an optional parameter as ``oneOf [integer, null]`` with its bounds beside
    the ``oneOf``, where generators do not look: the bounds move into the integer branch."""
    for item in document.get("paths", {}).values():
        for method, operation in item.items():
            if method not in _HTTP_METHODS:
                continue
            for parameter in operation.get("parameters", []):
                schema = parameter.get("schema", {})
                variants = schema.get("oneOf")
                if variants and {"type": "null"} in variants:
                    bounds = {k: schema.pop(k) for k in ("minimum", "maximum") if k in schema}
                    for variant in variants:
                        if variant.get("type") == "integer":
                            variant.update(bounds)
                            for key in ("minimum", "maximum"):
                                if key in variant:
                                    variant[key] = _exact(variant[key])
                if parameter.get("in") == "path" and schema.get("type") == "integer":
                    # Every integer in a path is a BIGINT id (write routes check it by hand).
                    schema.setdefault("minimum", 1)
                    schema.setdefault("maximum", INT64_MAX)
                for key in ("minimum", "maximum"):
                    if key in schema:
                        schema[key] = _exact(schema[key])
                parameter["schema"] = schema


_HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


# The writes that take an Idempotency-Key, by the end of their path (the README's "API" section
# says the same; tests/test_docs_truth.py holds the two and the routes' behaviour together).
IDEMPOTENCY_KEY_REQUIRED = ("/entries", "/entries/batch", "/disclosures", "/vouchers", "/evaluation-codes")
IDEMPOTENCY_KEY_OPTIONAL = ("/decisions", "/attachments", "/approve", "/reject", "/evaluation-tallies", "/progress")


def _document_idempotency_keys(document: dict[str, Any]) -> None:
    for path, item in document.get("paths", {}).items():
        operation = item.get("post")
        if operation is None or any(p.get("name") == "Idempotency-Key" for p in operation.get("parameters", [])):
            continue
        required = path.endswith(IDEMPOTENCY_KEY_REQUIRED)
        if required or path.endswith(IDEMPOTENCY_KEY_OPTIONAL):
            _document_replay_header(operation)
            operation.setdefault("parameters", []).append(
                {
                    "name": "Idempotency-Key",
                    "in": "header",
                    "required": required,
                    "description": "1–255 个可打印 ASCII 字符；同一令牌下重试同一请求不会重复记账",
                    "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[\\x21-\\x7e]+$"},
                }
            )


def _document_replay_header(operation: dict[str, Any]) -> None:
    created = operation.get("responses", {}).get("201")
    if created is not None:
        created.setdefault("headers", {})["Idempotent-Replayed"] = {
            "description": "true：同一 Idempotency-Key 的重试，返回的是第一次的状态与响应体",
            "required": False,
            "schema": {"type": "string", "enum": ["true"]},
        }


def _document_problems(document: dict[str, Any], schemas: dict[str, Any]) -> None:
    """Every error answer is RFC 9457 problem+json (Litestar documents its own 400 shape by
    default). Every route refuses a NUL byte in its URL (400), and every API route refuses a
    present but unknown or revoked token (401), public reads included."""
    schemas.setdefault("Problem", TypeAdapter(Problem).json_schema(ref_template=REF_PREFIX + "{model}"))
    schemas.setdefault("FieldErrorOut", TypeAdapter(FieldErrorOut).json_schema(ref_template=REF_PREFIX + "{model}"))
    problem = {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": REF_PREFIX + "Problem"}}}
    for path, item in document.get("paths", {}).items():
        for method, operation in item.items():
            if method not in _HTTP_METHODS:
                continue
            responses = operation.setdefault("responses", {})
            responses.setdefault("400", {"description": "malformed_request（请求格式错误）"})
            if path.startswith("/api/"):
                responses.setdefault("401", {"description": "unauthorized（令牌无效或已吊销）"})
            for status, response in responses.items():
                if status[:1] in ("4", "5"):
                    response["content"] = problem
