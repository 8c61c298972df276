"""Raw asyncpg on the hot path, borrowed from SQLAlchemy's pool.

The append path runs a handful of fixed statements per entry under a row lock; there SQLAlchemy's
statement compilation and its greenlet bridge cost more CPU than the database work (bench/append.py
measured ~60% of client CPU). So the append path takes the pooled connection's asyncpg driver and
runs prepared statements on it directly, in an asyncpg transaction. SQLAlchemy never starts a
transaction on that connection, so returning it to the pool is clean.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import asyncpg

if TYPE_CHECKING:  # only the helpers below touch SQLAlchemy, through the objects they are given:
    # verify's worker processes import this module and need no SQLAlchemy (23 MB each).
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

_NAMED = re.compile(r"(?<![:\w]):([a-z_][a-z0-9_]*)")


class Query:
    """SQL written with ``:name`` parameters, compiled once to asyncpg's ``$n``."""

    def __init__(self, sql: str) -> None:
        self.names: list[str] = []

        def number(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in self.names:
                self.names.append(name)
            return f"${self.names.index(name) + 1}"

        self.sql = _NAMED.sub(number, sql)

    def args(self, params: Mapping[str, Any]) -> list[Any]:
        return [params[name] for name in self.names]


@asynccontextmanager
async def connection(engine: AsyncEngine) -> AsyncIterator[asyncpg.Connection]:
    """A pooled connection's asyncpg driver, for single read statements on a hot path."""
    async with engine.connect() as sa_connection:
        pooled = await sa_connection.get_raw_connection()
        yield pooled.driver_connection


async def driver(conn: AsyncConnection) -> asyncpg.Connection:
    """The asyncpg driver under a SQLAlchemy connection (the request's), for raw reads on it."""
    pooled = await conn.get_raw_connection()
    raw: asyncpg.Connection = pooled.driver_connection
    return raw


@asynccontextmanager
async def transaction(engine: AsyncEngine, isolation: str = "read_committed") -> AsyncIterator[asyncpg.Connection]:
    async with engine.connect() as sa_connection:
        pooled = await sa_connection.get_raw_connection()
        connection: asyncpg.Connection = pooled.driver_connection
        async with connection.transaction(isolation=isolation):
            yield connection


async def fetch(conn: asyncpg.Connection, query: Query, **params: Any) -> list[asyncpg.Record]:
    return await conn.fetch(query.sql, *query.args(params))


async def fetchrow(conn: asyncpg.Connection, query: Query, **params: Any) -> asyncpg.Record | None:
    return await conn.fetchrow(query.sql, *query.args(params))


async def execute(conn: asyncpg.Connection, query: Query, **params: Any) -> str:
    return await conn.execute(query.sql, *query.args(params))


async def fetchval(conn: asyncpg.Connection, query: Query, **params: Any) -> Any:
    return await conn.fetchval(query.sql, *query.args(params))
