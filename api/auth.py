"""Who is calling, and what they may do.

Roles (API.md): ``admin`` everything; ``treasurer`` writes entries, disclosures and answers for
its community; ``auditor`` reads unmasked and countersigns for its community. Every route checks
the object's community, not only the role: a treasurer of one community can neither write nor
read unmasked data of another.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Generic, TypeVar, cast

from litestar import Request
from pydantic import BaseModel

from api.errors import ApiError
from api.http import idempotency_key, idempotency_request, parse_body, read_json
from ledger.errors import NotFound
from ledger.idempotency import IdempotencyRequest
from ledger.projects import project_community
from ledger.tokens import TOKEN_REVOKED, Token, authenticate, authenticate_for_project, hash_secret

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class Caller:
    token: Token | None

    @property
    def is_admin(self) -> bool:
        return self.token is not None and self.token.role == "admin"

    @property
    def scope(self) -> str:
        """What idempotency keys are scoped to."""
        assert self.token is not None
        return str(self.token.id)

    def can_write(self, community_id: int) -> bool:
        t = self.token
        return t is not None and (t.role == "admin" or (t.role == "treasurer" and t.community_id == community_id))

    def can_read_unmasked(self, community_id: int) -> bool:
        t = self.token
        return t is not None and (
            t.role == "admin" or (t.role in ("treasurer", "auditor") and t.community_id == community_id)
        )


ANONYMOUS = Caller(token=None)


async def caller_of(request: Request) -> Caller:
    """The caller; a present but unknown or revoked token is 401 even on public routes."""
    cached = request.scope.get("ledger_caller")
    if cached is not None:
        return cast(Caller, cached)
    header = request.headers.get("authorization")
    caller = ANONYMOUS
    if header is not None:
        scheme, _, secret = header.partition(" ")
        if scheme.lower() != "bearer" or not secret.strip():
            raise ApiError("unauthorized", "Authorization 须为 Bearer <令牌>")
        async with request.app.state.engine.connect() as conn:
            token = await authenticate(conn, secret.strip())
        if token is None:
            raise ApiError("unauthorized", TOKEN_REVOKED)
        caller = Caller(token=token)
    request.scope["ledger_caller"] = caller  # type: ignore[typeddict-unknown-key]
    return caller


async def require_role(request: Request, *roles: str) -> Caller:
    """401 without a token; 403 if its role is not one of ``roles`` (admin always passes)."""
    caller = await caller_of(request)
    if caller.token is None:
        raise ApiError("unauthorized", "需要有效的 Bearer 令牌")
    if not caller.is_admin and caller.token.role not in roles:
        raise ApiError("forbidden", "令牌角色无权进行此操作")
    return caller


def require_write(caller: Caller, community_id: int) -> None:
    if not caller.can_write(community_id):
        raise ApiError("forbidden", "只能为本社区的项目记账")


async def require_project_writer(request: Request, project_code: str) -> Caller:
    """The treasurer of the project's community (or an admin): 401/403 by role, then 404 for an
    unknown project, then 403 for another community's project. The token and the project's
    community are one read (the hot path of every append)."""
    caller, _ = await _project_writer(request, project_code)
    return caller


async def _project_writer(request: Request, project_code: str) -> tuple[Caller, int]:
    """:func:`require_project_writer`, and the project's community."""
    header = request.headers.get("authorization")
    if request.scope.get("ledger_caller") is None and header is not None:
        scheme, _, secret = header.partition(" ")
        if scheme.lower() == "bearer" and secret.strip():
            async with request.app.state.engine.connect() as conn:
                token, community_id = await authenticate_for_project(conn, secret.strip(), project_code)
            if token is None:
                raise ApiError("unauthorized", TOKEN_REVOKED)
            caller = Caller(token=token)
            request.scope["ledger_caller"] = caller  # type: ignore[typeddict-unknown-key]
            await require_role(request, "treasurer")
            if community_id is None:
                raise NotFound(f"项目 {project_code} 不存在")
            require_write(caller, community_id)
            return caller, community_id
    caller = await require_role(request, "treasurer")
    async with request.app.state.engine.connect() as conn:
        community_id = await project_community(conn, project_code)
    require_write(caller, community_id)
    return caller, community_id


@dataclass(frozen=True)
class ProjectWrite(Generic[M]):
    caller: Caller
    body: M
    idempotency: IdempotencyRequest
    # The caller was authenticated from what this worker remembers (see KnownWriters): the write
    # must check its token still stands, in its own transaction.
    remembered: bool = False


@dataclass(frozen=True)
class OptionallyIdempotentWrite(Generic[M]):
    caller: Caller
    body: M
    idempotency: IdempotencyRequest | None


async def idempotent_project_write(
    request: Request, project_code: str, model: type[M], *, remember: bool = False
) -> ProjectWrite[M]:
    """The prelude of every idempotent write to a project, in API.md's error precedence:
    malformed body or missing key (400) → token and role (401/403) → project (404) → its
    community (403) → body validation (422).

    ``remember`` (the single append only): the token and the project come from
    :class:`KnownWriters` when this worker has accepted them before; the write must then pass
    ``live_token`` to ``append_entries`` and call :func:`recheck_remembered` on any failure."""
    raw = await read_json(request)
    key = idempotency_key(request)
    secret = _bearer_secret(request) if remember else None
    digest = hash_secret(secret) if secret is not None else None
    caller = known_writers(request).caller(digest, project_code) if digest is not None else None
    remembered = caller is not None
    if caller is None:
        caller, community_id = await _project_writer(request, project_code)
        if digest is not None and caller.token is not None:
            known_writers(request).remember(digest, caller.token, project_code, community_id)
    else:
        request.scope["ledger_caller"] = caller  # type: ignore[typeddict-unknown-key]
    try:
        body = parse_body(model, raw)
    except ApiError:
        if remembered:
            await recheck_remembered(request)
        raise
    return ProjectWrite(caller, body, idempotency_request(request, caller.scope, key, raw), remembered)


async def project_write(request: Request, project_code: str, model: type[M]) -> OptionallyIdempotentWrite[M]:
    """The prelude of a project write that accepts and honours an ``Idempotency-Key`` without
    requiring one (decisions, tallies, progress notes), in API.md's error precedence."""
    raw = await read_json(request)
    key = idempotency_key(request) if "idempotency-key" in request.headers else None
    caller = await require_project_writer(request, project_code)
    body = parse_body(model, raw)
    idem = idempotency_request(request, caller.scope, key, raw) if key is not None else None
    return OptionallyIdempotentWrite(caller, body, idem)


class KnownWriters:
    """Tokens and projects a worker has already checked, for the single append.

    Every write to a project reads its token and the project's community first: on the single
    append, the hottest write, that read was a fifth of its CPU in the service and in PostgreSQL
    alike (docs/performance.md §5). What it reads does not change once written — a token's role
    and community are fixed when it is made (only ``revoked_at`` ever changes), a project never
    moves to another community — so a worker keeps them (a bounded LRU each). What can change,
    revocation, is checked where it matters: inside the transaction that writes
    (``append_entries(live_token=…)``, ledger/append_group.py), so a revoked token writes nothing;
    and a remembered request that fails before its write re-reads its token
    (:func:`recheck_remembered`), so a revoked token still gets 401 before any 404 or 422
    (API.md's order of errors)."""

    TOKENS_MAX = 1024
    PROJECTS_MAX = 4096

    def __init__(self) -> None:
        self.tokens: OrderedDict[bytes, Token] = OrderedDict()  # by the secret's SHA-256
        self.projects: OrderedDict[str, int] = OrderedDict()  # project code → community id

    def caller(self, digest: bytes, project_code: str) -> Caller | None:
        """A treasurer (or admin) of the project's community, if both are known; None otherwise
        (unknown, or any answer but yes: the database path gives the precise error)."""
        token = self.tokens.get(digest)
        community_id = self.projects.get(project_code)
        if token is None or community_id is None:
            return None
        caller = Caller(token=token)
        if not (caller.is_admin or token.role == "treasurer") or not caller.can_write(community_id):
            return None
        self.tokens.move_to_end(digest)
        self.projects.move_to_end(project_code)
        return caller

    def remember(self, digest: bytes, token: Token, project_code: str, community_id: int) -> None:
        self.tokens[digest] = token
        self.tokens.move_to_end(digest)
        if len(self.tokens) > self.TOKENS_MAX:
            self.tokens.popitem(last=False)
        self.projects[project_code] = community_id
        self.projects.move_to_end(project_code)
        if len(self.projects) > self.PROJECTS_MAX:
            self.projects.popitem(last=False)

    def forget(self, digest: bytes) -> None:
        self.tokens.pop(digest, None)


def known_writers(request: Request) -> KnownWriters:
    state = request.app.state
    known = state.get("known_writers")
    if known is None:
        known = state["known_writers"] = KnownWriters()
    return cast(KnownWriters, known)


def _bearer_secret(request: Request) -> str | None:
    return bearer_secret(request.headers.get("authorization", ""))


def bearer_secret(authorization: str) -> str | None:
    """The secret of an ``Authorization: Bearer <secret>`` header; None for any other header."""
    scheme, _, secret = authorization.partition(" ")
    return secret.strip() if scheme.lower() == "bearer" and secret.strip() else None


async def recheck_remembered(request: Request) -> None:
    """A remembered caller's request failed: 401 if its token has been revoked meanwhile (and
    the worker forgets it), as the database path would have answered first."""
    secret = _bearer_secret(request) or ""
    async with request.app.state.engine.connect() as conn:
        token = await authenticate(conn, secret)
    if token is None:
        known_writers(request).forget(hash_secret(secret))
        raise ApiError("unauthorized", TOKEN_REVOKED)
