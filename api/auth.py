"""Who is calling, and what they may do.

Roles (API.md): ``admin`` everything; ``treasurer`` writes entries, disclosures and answers for
its community; ``auditor`` reads unmasked and countersigns for its community. Every route checks
the object's community, not only the role: a treasurer of one community can neither write nor
read unmasked data of another.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar, cast

from litestar import Request
from pydantic import BaseModel

from api.errors import ApiError
from api.http import idempotency_key, idempotency_request, parse_body, read_json
from ledger.errors import NotFound
from ledger.idempotency import IdempotencyRequest
from ledger.projects import project_community
from ledger.tokens import Token, authenticate, authenticate_for_project

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
            raise ApiError("unauthorized", "令牌无效或已吊销")
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
    header = request.headers.get("authorization")
    if request.scope.get("ledger_caller") is None and header is not None:
        scheme, _, secret = header.partition(" ")
        if scheme.lower() == "bearer" and secret.strip():
            async with request.app.state.engine.connect() as conn:
                token, community_id = await authenticate_for_project(conn, secret.strip(), project_code)
            if token is None:
                raise ApiError("unauthorized", "令牌无效或已吊销")
            caller = Caller(token=token)
            request.scope["ledger_caller"] = caller  # type: ignore[typeddict-unknown-key]
            await require_role(request, "treasurer")
            if community_id is None:
                raise NotFound(f"项目 {project_code} 不存在")
            require_write(caller, community_id)
            return caller
    caller = await require_role(request, "treasurer")
    async with request.app.state.engine.connect() as conn:
        community_id = await project_community(conn, project_code)
    require_write(caller, community_id)
    return caller


@dataclass(frozen=True)
class ProjectWrite(Generic[M]):
    caller: Caller
    body: M
    idempotency: IdempotencyRequest


@dataclass(frozen=True)
class OptionallyIdempotentWrite(Generic[M]):
    caller: Caller
    body: M
    idempotency: IdempotencyRequest | None


async def idempotent_project_write(request: Request, project_code: str, model: type[M]) -> ProjectWrite[M]:
    """The prelude of every idempotent write to a project, in API.md's error precedence:
    malformed body or missing key (400) → token and role (401/403) → project (404) → its
    community (403) → body validation (422)."""
    raw = await read_json(request)
    key = idempotency_key(request)
    caller = await require_project_writer(request, project_code)
    body = parse_body(model, raw)
    return ProjectWrite(caller, body, idempotency_request(request, caller.scope, key, raw))


async def project_write(request: Request, project_code: str, model: type[M]) -> OptionallyIdempotentWrite[M]:
    """The prelude of a project write that accepts and honours an ``Idempotency-Key`` without
    requiring one (decisions, tallies, progress notes), in API.md's error precedence."""
    raw = await read_json(request)
    key = idempotency_key(request) if "idempotency-key" in request.headers else None
    caller = await require_project_writer(request, project_code)
    body = parse_body(model, raw)
    idem = idempotency_request(request, caller.scope, key, raw) if key is not None else None
    return OptionallyIdempotentWrite(caller, body, idem)
