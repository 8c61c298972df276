"""The single append without Litestar's request cycle, for a caller this worker already knows.

``POST /api/v1/projects/{code}/entries`` is the hottest write (a 众筹 evening is hundreds of them).
Once a worker has accepted a treasurer's token for a project through the ordinary route
(api/auth.py ``KnownWriters``), its further appends there are answered here, before Litestar
routes the request: the body is read and checked by the same functions, the same
``append_entries`` call writes the entry, and the answer is the same bytes and headers the route
would send. Skipping Litestar's cycle — routing, the request object, hooks, dependency
resolution, the response object — takes 9–15 % off the server's CPU per append
(docs/performance.md §5).

Only the plain success is answered here. Anything else goes to Litestar, which gives it the
answer it always gave:

- before the append (an unknown caller or project, a header missing, twice or malformed, a body
  too big, not JSON, invalid, a NUL in the address, a path prefix, read replicas to fence) the
  request is handed on untouched: the body already read is replayed to the route, and nothing was
  written, so the route answers exactly as if it had been first;
- an append that failed (a refusal, a revoked token, a conflict, a database error) is not tried
  again: the route gets the failure (``APPEND_FAILED`` in the scope) and raises it where its own
  ``append_entries`` would have, after the same checks, so the error, its status and its headers
  come from the same handlers and in API.md's order.

The guarantees are those of the route, because it is the route's own code: acknowledged after
commit, idempotent per key (the same fingerprint: method, path, canonical body), and the token
checked inside the transaction that writes (``live_token``).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from litestar.datastructures import URL

from api import schemas as s
from api.auth import Caller, KnownWriters, bearer_secret
from api.http import (
    JSON_BODY_MAX,
    checked_idempotency_key,
    is_json_media_type,
    parse_body,
    parse_json,
    request_fingerprint,
)
from api.routes.entries import APPEND_FAILED, entry_body, to_draft
from ledger.drafts import EntryDraft
from ledger.entries import append_entries
from ledger.idempotency import IdempotencyRequest
from ledger.tokens import hash_secret

if TYPE_CHECKING:
    from litestar import Litestar
    from litestar.datastructures import State
    from litestar.types import (
        ASGIApp,
        HTTPResponseBodyEvent,
        HTTPResponseStartEvent,
        Receive,
        ReceiveMessage,
        Scope,
        Send,
    )

# The route's path, for a project code as api/schemas.py CODE_PATTERN admits it.
ENTRIES_PATH = re.compile(r"/api/v1/projects/([a-z0-9-]{2,64})/entries")

# The request headers the route reads; any of them sent twice is left to the route.
_READ = frozenset((b"authorization", b"idempotency-key", b"content-type", b"content-length"))


def project_of(scope: Scope) -> str | None:
    """The project code, if this is a single append the fast path may take; None otherwise."""
    if scope.get("method") != "POST" or scope.get("root_path") or scope.get("query_string"):
        return None
    match = ENTRIES_PATH.fullmatch(scope["path"])
    return match.group(1) if match else None


async def serve(
    app: Litestar, project_code: str, scope: Scope, receive: Receive, send: Send, *, downstream: ASGIApp
) -> None:
    """Answer the single append here, or hand it to ``downstream`` (the app's Litestar cycle) as it came."""
    taken: list[ReceiveMessage] = []

    async def replay() -> ReceiveMessage:
        return taken.pop(0) if taken else await receive()

    answered = await _append(app, project_code, scope, receive, send, taken)
    if not answered:
        await downstream(scope, replay, send)


async def _append(
    app: Litestar, project_code: str, scope: Scope, receive: Receive, send: Send, taken: list[ReceiveMessage]
) -> bool:
    state = app.state
    try:
        accepted = await _accept(state, project_code, scope, receive, taken)
    except Exception:
        return False  # the route meets the same fault and answers it
    if accepted is None:
        return False
    caller, draft, idempotency = accepted
    assert caller.token is not None
    try:
        result = await append_entries(
            state.engine,
            project_code,
            [draft],
            recorded_by=caller.scope,
            idempotency=idempotency,
            render=entry_body,
            live_token=caller.token.id,
        )
    except Exception as exc:
        scope[APPEND_FAILED] = exc  # type: ignore[literal-required]
        return False
    body = result.body.encode()
    # The headers, in their order, of the route's json_response (Litestar's Response).
    out: list[tuple[bytes, bytes]] = [(b"idempotent-replayed", b"true")] if result.replayed else []
    out += [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    start: HTTPResponseStartEvent = {"type": "http.response.start", "status": result.status, "headers": out}
    end: HTTPResponseBodyEvent = {"type": "http.response.body", "body": body, "more_body": False}
    await send(start)
    await send(end)
    return True


async def _accept(
    state: State, project_code: str, scope: Scope, receive: Receive, taken: list[ReceiveMessage]
) -> tuple[Caller, EntryDraft, IdempotencyRequest] | None:
    """The caller, the draft and the idempotency of a single append the fast path takes, or None
    (then the route takes it). Nothing is written here."""
    known: KnownWriters | None = state.get("known_writers")
    if known is None or state.get("reads") is not None or "\x00" in scope["path"]:
        return None
    headers: dict[bytes, bytes] = {}
    for name, value in scope["headers"]:
        if name in _READ:
            if name in headers:
                return None
            headers[name] = value
    secret = bearer_secret(headers.get(b"authorization", b"").decode("latin-1"))
    if secret is None:
        return None
    caller = known.caller(hash_secret(secret), project_code)
    if caller is None or caller.token is None:
        return None
    length = headers.get(b"content-length", b"")
    if not length.isdigit() or int(length) > JSON_BODY_MAX:
        return None
    if not is_json_media_type(headers.get(b"content-type", b"application/json").decode("latin-1")):
        return None
    raw = await _read_body(receive, taken)
    if raw is None:
        return None
    parsed = parse_json(raw)
    key_header = headers.get(b"idempotency-key")
    key = checked_idempotency_key(key_header.decode("latin-1") if key_header is not None else None)
    draft = to_draft(parse_body(s.EntryRequest, raw).root)
    path = URL.from_scope(scope).path  # as the route's request.url.path
    return caller, draft, IdempotencyRequest(caller.scope, key, request_fingerprint("POST", path, parsed))


async def _read_body(receive: Receive, taken: list[ReceiveMessage]) -> bytes | None:
    """The whole body, or None (the client went away, or sent more than the route accepts);
    every message read is kept in ``taken`` for the route."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message: Any = await receive()
        taken.append(message)
        if message["type"] != "http.request":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > JSON_BODY_MAX:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)
