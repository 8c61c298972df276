"""The request's way to the database: a :class:`Db` bound to the engine the request reads.

Handlers take ``db: Db`` (the ``db`` dependency, api/app.py). Nothing is checked out when the
dependency is provided: a public read answered by api/versioned.py with a 304 or a cached body
never touches the pool beyond its shared version read. A handler opens a connection with
``async with db.connect() as conn`` and hands it to ``ledger/`` read functions, which take the connection. Functions that own a transaction
with its own isolation or locking (appends, publishing, vouchers' approval, imports' commit,
``verify`` …) take ``db.engine``.

The engine is the primary, or a read replica for an anonymous public read (api/app.py
``_engine``, ledger/replicas.py): ``Db`` only carries that choice, it never makes it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine


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
