"""The ledger through Debian's PgBouncer in transaction mode (issue 15): consecutive transactions of
one client connection run on whichever server session is free, so nothing may rely on session
state — prepared statements are unnamed (``LEDGER_DB_STATEMENT_CACHE=0``) and advisory locks are
transaction-level.

PgBouncer listens on a Unix socket of its own, in front of the session's embedded primary, with
fewer server sessions than the client pool has connections, so sessions really are shared.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from api.settings import Settings
from ledger.database import create_engine
from ledger.disclosures import DisclosureDraft, SheetSnapshot, publish_disclosure
from ledger.errors import IdempotencyInFlight
from reports.render import PdfRenderer
from tests.api_support import new_key, today
from tests.conftest import Database, make_project
from tests.scale_support import PgBouncer
from tests.test_ledger_append_only import dsn
from tests.test_ledger_concurrency import hot_project_scenario
from tests.test_publish_concurrency import Paused, _idem, _no_lock_left

ROOT = Path(__file__).resolve().parents[1]
SERVER_SESSIONS = 6


@pytest.fixture(scope="module")
def bouncer(database: Database, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PgBouncer]:
    assert database.runtime.embedded is not None
    pool = PgBouncer(
        database.runtime.embedded, tmp_path_factory.mktemp("bouncer"), database.settings.app_role, SERVER_SESSIONS
    )
    pool.start()
    try:
        yield pool
    finally:
        pool.stop()


@pytest.fixture(scope="module")
async def bounced(bouncer: PgBouncer, database: Database) -> AsyncIterator[AsyncEngine]:
    settings = Settings(data_dir=database.settings.data_dir, db_pool_size=30, db_pool_overflow=20, db_statement_cache=0)
    engine = create_engine(bouncer.url(), settings, application_name="ledger-bounced")
    yield engine
    await engine.dispose()


async def test_205_concurrent_posts_through_pgbouncer_make_180_gapless_entries(
    bounced: AsyncEngine, bouncer: PgBouncer
) -> None:
    """The concurrency scenario of tests/test_ledger_concurrency.py, unchanged, through PgBouncer:
    180 gapless entries, the 20 duplicates replayed, the 5 reused keys refused, verify ok."""
    await hot_project_scenario(bounced)
    opened = bouncer.server_connections()
    assert 0 < opened <= SERVER_SESSIONS, f"PgBouncer opened {opened} server sessions"


async def test_publishing_through_pgbouncer_numbers_sheets_and_holds_keys(
    bounced: AsyncEngine, database: Database
) -> None:
    """A publish held inside its render, through PgBouncer: a copy of it is 409 at once, another
    publisher queues (polling in fresh transactions, possibly on other server sessions) and numbers
    its sheet after it; no lock is left on any server session afterwards."""
    project = await make_project(bounced)
    draft = DisclosureDraft(period_start=today() - timedelta(days=30), period_end=today())
    first_key, second_key = new_key(), new_key()
    async with PdfRenderer(max_concurrent=2, mode="thread") as renderer:
        held, free = Paused(renderer), Paused(renderer)
        free.go_on.set()

        def publish(make: Paused, key: str) -> Any:
            return publish_disclosure(
                bounced,
                project.code,
                draft,
                published_by="t",
                make_pdf=make,
                render=lambda d: {"id": d.id, "n": d.sheet_number, "prev": d.previous.id if d.previous else None},
                idempotency=_idem(key),
            )

        first = asyncio.create_task(publish(held, first_key))
        await asyncio.wait_for(held.entered.wait(), 60)
        with pytest.raises(IdempotencyInFlight):
            await publish(free, first_key)
        second = asyncio.create_task(publish(free, second_key))
        await asyncio.sleep(0.3)
        assert not second.done() and not free.entered.is_set()
        held.go_on.set()
        (one_stored, _), (two_stored, _) = await asyncio.gather(first, second)
        one, two = json.loads(one_stored.body), json.loads(two_stored.body)
        assert (one["n"], two["n"]) == (1, 2) and two["prev"] == one["id"] and one["prev"] is None
        replay, replayed = await publish(free, first_key)
        assert replayed and replay.body == one_stored.body
    assert await _no_lock_left(database, project.code, first_key)
    assert await _no_lock_left(database, project.code, second_key)


_SESSION_LOCK = re.compile(r"pg_(?:try_)?advisory_(?:lock|lock_shared|unlock|unlock_all)\s*\(")


def test_no_session_level_advisory_lock_in_the_service() -> None:
    """Only transaction-level advisory locks (``pg_advisory_xact_lock``) in the service and its
    migrations: a session lock would be left on (or released from) the wrong server session."""
    offenders = [
        f"{path.relative_to(ROOT)}:{n}"
        for folder in ("ledger", "api", "reports", "migrations")
        for path in sorted((ROOT / folder).rglob("*.py"))
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if _SESSION_LOCK.search(line)
    ]
    assert offenders == []


async def test_a_sheet_committed_after_the_snapshot_is_caught_and_the_publish_starts_again(
    engine: AsyncEngine, database: Database
) -> None:
    """The one moment the try-locks leave open: a sheet committed after a publisher's snapshot was
    taken but before its locks were granted is invisible to it. Simulated by committing sheet 1
    from another session while the publisher renders (what a publisher that let go of the lock in
    that moment leaves behind): the publisher's INSERT of sheet 1 fails on the unique sheet
    number, and it starts again from a fresh snapshot, numbering its sheet 2 after the other."""
    project = await make_project(engine)
    draft = DisclosureDraft(period_start=today() - timedelta(days=30), period_end=today())
    attempts: list[int] = []
    other: dict[str, int] = {}

    async def render_after_a_sneaked_sheet(conn: AsyncConnection, snap: SheetSnapshot) -> bytes:
        attempts.append(snap.sheet_number)
        if len(attempts) == 1:
            sneaked = await asyncpg.connect(dsn(database.urls.app))
            try:
                other["id"] = await sneaked.fetchval(
                    """
                    INSERT INTO disclosures (community_id, project_id, sheet_number, title, period_start,
                        period_end, notice_days, notice_start, notice_end, tree_size, root_hash, pdf, pdf_sha256,
                        published_by)
                    VALUES ($1, $2, $3, 'other', $4, $5, $6, $7, $8, $9, $10, '%PDF-1', repeat('0', 64), 'other')
                    RETURNING id
                    """,
                    snap.project.community_id,
                    snap.project.id,
                    snap.sheet_number,
                    snap.period_start,
                    snap.period_end,
                    snap.notice_days,
                    snap.notice_start,
                    snap.notice_end,
                    snap.tree_size,
                    snap.root_hash,
                )
            finally:
                await sneaked.close()
        return b"%PDF-1.7 publisher"

    stored, replayed = await publish_disclosure(
        engine,
        project.code,
        draft,
        published_by="t",
        make_pdf=render_after_a_sneaked_sheet,
        render=lambda d: {"n": d.sheet_number, "prev": d.previous.id if d.previous else None},
        idempotency=_idem(new_key()),
    )
    assert not replayed and attempts == [1, 2]
    assert json.loads(stored.body) == {"n": 2, "prev": other["id"]}
