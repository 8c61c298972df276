"""The request's way to the database: a :class:`Db` bound to the engine the request reads.

Handlers take ``db: Db`` (the ``db`` dependency, api/app.py) or, on the hottest routes, call
:func:`db_of` (Litestar's dependency injection, two providers deep, was 4 % of a cached public
read). Nothing is checked out when the ``Db`` is made: a public read answered by api/versioned.py
with a 304 or a cached body never touches the pool beyond its shared version read. A handler
opens a connection with ``async with db.connect() as conn`` and hands it to ``ledger/`` read
functions, which take the connection. Functions that own a transaction with its own isolation or
locking (appends, publishing, vouchers' approval, imports' commit, ``verify`` …) take
``db.engine``.

The engine is the primary, or a read replica for an anonymous public read (:func:`engine_for`,
ledger/replicas.py): ``Db`` only carries that choice, it never makes it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from litestar import Request
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from api.http import WORKSPACE_COOKIE
from ledger.replicas import ReadReplicas


@dataclass(frozen=True, slots=True)
class Db:
    """The request's engine, and connections from it opened only when a handler asks."""

    engine: AsyncEngine

    @asynccontextmanager
    async def connect(self) -> AsyncIterator[AsyncConnection]:
        """A connection for reads (autobegun, rolled back on leaving)."""
        async with self.engine.connect() as conn:
            yield conn


def provide_db(engine: AsyncEngine) -> Db:
    """The ``db`` dependency: built from the ``engine`` dependency, so it reads where it routes."""
    return Db(engine)


def engine_for(request: Request) -> AsyncEngine:
    """The primary, or for a public read a read replica (ledger/replicas.py) when one keeps up.

    Routed by caller: only anonymous GETs outside the workspace — residents' pages and the public
    API — may read a replica. A request with a token or a workspace session (a treasurer, an
    auditor) reads the primary, so it always sees what it has just written.

    Takes the app's state from the request: a ``state: State`` parameter would have Litestar build
    a new ``State`` (and its lock) for every request that reads — 5 % of a cached public read."""
    state = request.app.state
    reads: ReadReplicas | None = state.get("reads")
    if reads is not None and _is_public_read(request):
        return reads.engine_for_read(request.path_params.get("project"))
    return state.engine


def db_of(request: Request) -> Db:
    """What the ``db`` dependency provides, without the dependency injection."""
    return Db(engine_for(request))


def _is_public_read(request: Request) -> bool:
    path = request.url.path
    return (
        request.method in ("GET", "HEAD")
        and "authorization" not in request.headers
        and WORKSPACE_COOKIE not in request.cookies
        and not (path == "/w" or path.startswith("/w/"))
    )
