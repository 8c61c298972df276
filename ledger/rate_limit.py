"""A per-client rate limit held in PostgreSQL, so that every worker process (and every replica of
the service) shares one budget per client.

GCRA (the generic cell rate algorithm): each key keeps one timestamp, its "theoretical arrival
time" (TAT). A limit of ``n`` per minute spaces requests ``60/n`` s apart and tolerates a burst of
``n``: a request at ``now`` is allowed when ``TAT - now <= 60 s - 60/n s``, and then moves the TAT to
``max(TAT, now) + 60/n s``. Both the check and the move are one ``INSERT … ON CONFLICT DO UPDATE …
WHERE``: the row lock serialises concurrent requests of one client, whichever process serves them,
and the database's clock is the only clock. A refused request changes nothing.
"""

from __future__ import annotations

import math
import random
from datetime import timedelta

import asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine

from ledger import pg

WINDOW = timedelta(minutes=1)
# Expired rows are deleted now and then (about one call in this many), never on every call.
SWEEP_EVERY = 200

_TAKE = pg.Query(
    """
    INSERT INTO rate_limits AS r (key, tat) VALUES (:key, now() + :interval::interval)
    ON CONFLICT (key) DO UPDATE SET tat = greatest(r.tat, now()) + :interval::interval
        WHERE r.tat - now() <= :tolerance::interval
    RETURNING tat
    """
)
_WAIT = pg.Query("SELECT extract(epoch FROM tat - now() - :tolerance::interval) FROM rate_limits WHERE key = :key")
_SWEEP = pg.Query("DELETE FROM rate_limits WHERE tat < now() - :window::interval")


async def take(engine: AsyncEngine, key: str, per_minute: int) -> float | None:
    """One request of ``key`` against ``per_minute``: None when allowed, else the seconds to wait."""
    interval = WINDOW / per_minute
    tolerance = WINDOW - interval
    async with pg.connection(engine) as conn:
        allowed = await conn.fetchval(
            _TAKE.sql, *_TAKE.args({"key": key, "interval": interval, "tolerance": tolerance})
        )
        if random.randrange(SWEEP_EVERY) == 0:
            await _sweep(conn)
        if allowed is not None:
            return None
        wait = await conn.fetchval(_WAIT.sql, *_WAIT.args({"key": key, "tolerance": tolerance}))
    return max(1.0, math.ceil(float(wait or 0)))


async def _sweep(conn: asyncpg.Connection) -> None:
    await conn.execute(_SWEEP.sql, *_SWEEP.args({"window": WINDOW}))


async def sweep(engine: AsyncEngine) -> None:
    """Delete the rows whose budget is whole again (their TAT is past)."""
    async with pg.connection(engine) as conn:
        await _sweep(conn)
