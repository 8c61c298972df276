"""Public reads on PostgreSQL streaming replicas (``LEDGER_READ_DATABASE_URL``, one or more URLs,
comma-separated).

Who reads where is decided by the caller (api/app.py): anonymous reads — residents' pages and the
public GETs — go to a replica; writes, and every read of a caller with a token or a workspace
session, stay on the primary, so a treasurer always sees the entry just recorded. Besides, a staff
write acknowledged by this process fences its project (:meth:`ReadReplicas.note_write`): anonymous
reads of that project skip a replica until it is known to have replayed past the write, so the
treasurer who opens the public page right after recording an entry sees it there too.

A monitor samples, every ``interval`` seconds, the primary's WAL position (``pg_current_wal_lsn``)
and each replica's replayed position (``pg_last_wal_replay_lsn``). A replica's *lag* is how long
ago the primary was at the newest sampled position the replica has replayed: 0 while it keeps up,
growing while it falls behind or while replay is paused, whether or not anything is written
(``now() - pg_last_xact_replay_timestamp()`` would instead grow on an idle primary). A replica that
is unreachable, not in recovery, or lagging more than ``lag_max_s`` is skipped: reads fall back to
the next replica or to the primary. A connection error on a replica marks it down at once; the
monitor brings it back when it answers and keeps up again.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncEngine

from ledger.settings import DatabaseSettings

log = logging.getLogger(__name__)

LAG_MAX_S = 5.0
CHECK_INTERVAL_S = 0.5
CHECK_TIMEOUT_S = 2.0
WRITE_CHECK_SPACING_S = 0.05

State = Literal["unknown", "ok", "lagging", "down", "not_standby"]


def parse_read_urls(value: str | None) -> list[str]:
    """``LEDGER_READ_DATABASE_URL``: one URL, or several separated by commas."""
    return [u.strip() for u in (value or "").split(",") if u.strip()]


def lsn_int(lsn: str) -> int:
    """A ``pg_lsn`` text (``16/B374D848``) as a number."""
    high, _, low = lsn.partition("/")
    return (int(high, 16) << 32) | int(low, 16)


@dataclass
class Replica:
    name: str
    url: str
    engine: AsyncEngine
    state: State = "unknown"
    lag_s: float | None = None
    replay_lsn: str | None = None
    reads: int = 0  # how many reads were routed to it (a diagnostic for /readyz and bench/)
    # Monotonic time of the newest primary sample it has replayed: it holds every write
    # acknowledged before then.
    fresh_as_of: float | None = None

    def report(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "state": self.state,
            "lag_s": None if self.lag_s is None else round(self.lag_s, 3),
            "replay_lsn": self.replay_lsn,
            "reads": self.reads,
        }


class ReadReplicas:
    """The replicas of one primary, their health, and which engine serves a public read."""

    def __init__(
        self,
        primary: AsyncEngine,
        urls: list[str],
        settings: DatabaseSettings,
        *,
        lag_max_s: float | None = None,
        interval_s: float = CHECK_INTERVAL_S,
    ) -> None:
        from ledger.database import create_engine

        self.primary = primary
        self.lag_max_s = settings.replica_lag_max_s if lag_max_s is None else lag_max_s
        self.interval_s = interval_s
        self.replicas = [
            Replica(f"replica-{n}", url, create_engine(url, settings, application_name="ledger-read"))
            for n, url in enumerate(urls, 1)
        ]
        for replica in self.replicas:
            event.listen(replica.engine.sync_engine, "handle_error", self._on_error(replica))
        # (monotonic time, primary WAL position) samples, oldest first, spanning a few lag bounds.
        self._samples: deque[tuple[float, int]] = deque(maxlen=max(16, int(4 * self.lag_max_s / interval_s) + 4))
        self._turn = itertools.count()
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        # Writes acknowledged by this process: project code → when; and the latest of any.
        self._written: dict[str, float] = {}
        self._last_write = float("-inf")
        self.primary_reads = 0

    # -- routing ------------------------------------------------------------------------------

    def note_write(self, project: str | None) -> None:
        """A write by staff was acknowledged (``project``: the project it named, if any). Until a
        replica is known to have replayed past it, reads of that project — of anything, when no
        project is named — skip that replica: whoever wrote it sees it on the public pages too."""
        now = time.monotonic()
        self._last_write = now
        if project is not None:
            self._written[project] = now
        self._wake.set()  # check soon, so the fence lasts a round trip, not a whole interval

    def engine_for_read(self, project: str | None = None) -> AsyncEngine:
        """A replica that is up, keeps up and holds this process's writes to ``project`` (round
        robin), else the primary."""
        written = self._last_write if project is None else self._written.get(project, float("-inf"))
        healthy = [
            r
            for r in self.replicas
            if r.state == "ok" and (written == float("-inf") or (r.fresh_as_of is not None and r.fresh_as_of > written))
        ]
        if not healthy:
            self.primary_reads += 1
            return self.primary
        replica = healthy[next(self._turn) % len(healthy)]
        replica.reads += 1
        return replica.engine

    def _on_error(self, replica: Replica) -> Any:
        def handle_error(context: Any) -> None:
            if context.is_disconnect or context.connection is None:
                if replica.state == "ok":
                    log.warning("read replica %s failed; reads fall back until it answers again", replica.name)
                replica.state = "down"

        return handle_error

    # -- monitoring ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Check every replica once (so the first reads are routed well), then keep checking."""
        try:
            await self.check()
        except Exception:
            log.warning("read replica check failed", exc_info=True)
        self._task = asyncio.create_task(self._monitor(), name="read-replica-monitor")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for replica in self.replicas:
            await replica.engine.dispose()

    async def _monitor(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.interval_s)
            self._wake.clear()
            await asyncio.sleep(WRITE_CHECK_SPACING_S)  # a burst of writes costs one check
            try:
                await self.check()
            except Exception:  # the primary itself is unreachable: /readyz says so
                log.warning("read replica check failed", exc_info=True)

    async def check(self) -> None:
        # The time is taken before the position is read: a write acknowledged before it is at or
        # below that position (what note_write's fence relies on).
        now = time.monotonic()
        async with self.primary.connect() as conn:
            position = (await conn.execute(text("SELECT pg_current_wal_lsn()::text"))).scalar_one()
        self._samples.append((now, lsn_int(position)))
        await asyncio.gather(*(self._check(replica, now) for replica in self.replicas))
        # A write older than the oldest sample kept is held by every replica still "ok".
        oldest = self._samples[0][0]
        for project in [p for p, at in self._written.items() if at < oldest]:
            del self._written[project]

    async def _check(self, replica: Replica, now: float) -> None:
        try:
            async with asyncio.timeout(CHECK_TIMEOUT_S), replica.engine.connect() as conn:
                row = (await conn.execute(text("SELECT pg_is_in_recovery(), pg_last_wal_replay_lsn()::text"))).one()
        except Exception as exc:
            if replica.state != "down":
                log.warning("read replica %s unreachable: %s", replica.name, type(exc).__name__)
            replica.state, replica.lag_s, replica.fresh_as_of = "down", None, None
            # Connections to a server that went away are dead: start afresh when it is back.
            await replica.engine.dispose()
            return
        in_recovery, replayed = row
        replica.replay_lsn = replayed
        if not in_recovery or replayed is None:
            replica.state, replica.lag_s, replica.fresh_as_of = "not_standby", None, None
            return
        replayed_at = lsn_int(replayed)
        caught_up_to = max((t for t, position in self._samples if position <= replayed_at), default=None)
        if caught_up_to is None:  # behind every sample kept: at least as old as the oldest
            replica.lag_s = now - self._samples[0][0]
            replica.state, replica.fresh_as_of = "lagging", None
        else:
            replica.lag_s = max(0.0, now - caught_up_to)
            replica.fresh_as_of = caught_up_to
            replica.state = "ok" if replica.lag_s <= self.lag_max_s else "lagging"

    def report(self) -> list[dict[str, Any]]:
        return [r.report() for r in self.replicas]
