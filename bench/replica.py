"""Benchmark: public reads on the primary alone versus primary + 1 streaming replica, and the
replica's lag under the append benchmark's load (issue 15).

    .venv/bin/python bench/replica.py [--readers 16] [--seconds 8] [--writers 16] [--appends 1500]

Starts its own embedded PostgreSQL (temporary folder, migrated, both roles), seeds 20 projects,
then makes a hot standby with ``pg_basebackup -R`` over the primary's Unix socket (no TCP).

Reads: ``--readers`` concurrent readers each repeat one *uncached public read* of a random
project — what the service does when its body cache misses: the version read, the project, its
summary and a page of 50 entries — for ``--seconds`` against (a) the primary alone (the baseline),
(b) the replica alone (how the service routes anonymous reads when one keeps up), (c) primary and
replica in turn. Prints reads/s and each one's ratio to the baseline of the same run.

Lag: ``--writers`` concurrent writers append ``--appends`` contributions spread over the projects
(``append_entries``, as bench/append.py's "service, spread"), once with the standby streaming and
once with it stopped (the baseline), while the primary's ``pg_stat_replication`` (``replay_lag``,
and the bytes between the primary's WAL end and the standby's replay position) is sampled every
50 ms. Prints appends/s of both runs, their ratio, and the lag's p50 / p99 / max.

Both servers and the client share this machine's cores, so (c) shows what a second server costs
and gives here, not what a replica on its own machine gives: there it adds its whole capacity.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import asyncpg  # noqa: E402
from sqlalchemy.ext.asyncio import AsyncEngine  # noqa: E402

from api.settings import Settings  # noqa: E402
from ledger.communities import NewCommunity, create_community  # noqa: E402
from ledger.contributors import ContributorRef  # noqa: E402
from ledger.database import DatabaseRuntime, create_engine, upgrade  # noqa: E402
from ledger.drafts import EntryDraft  # noqa: E402
from ledger.embedded_pg import SUPERUSER  # noqa: E402
from ledger.entries import append_entries  # noqa: E402
from ledger.entry_reads import list_entries  # noqa: E402
from ledger.projects import BudgetLine, NewProject, create_project, get_project, project_state  # noqa: E402
from ledger.summary import project_summary  # noqa: E402
from tests.scale_support import Standby  # noqa: E402

PROJECTS = 20
SEED_ENTRIES = 200  # per project
DAY = date(2026, 6, 1)


def draft(i: int) -> EntryDraft:
    return EntryDraft(
        kind="contribution",
        occurred_on=DAY - timedelta(days=i % 25),
        amount_fen=10_000 + i,
        contributor=ContributorRef(name=f"居民{i % 300}", household=f"{i % 9 + 1}栋1单元{i % 30 + 101}"),
        channel="wechat",
        receipt_no=f"R-{i:06d}",
    )


async def seed(engine: AsyncEngine) -> list[str]:
    await create_community(engine, NewCommunity(code="bench", name="基准小区", households=1200))
    codes = []
    for n in range(PROJECTS):
        code = f"bench-{n:02d}"
        await create_project(
            engine,
            NewProject(
                code=code,
                community_code="bench",
                title="路面刷黑",
                households_in_scope=400,
                spending_gate="waived",
                budget_lines=[BudgetLine("materials", "材料费", "crowdfunding", 100_000_000)],
            ),
        )
        await append_entries(
            engine, code, [draft(i) for i in range(SEED_ENTRIES)], recorded_by="bench", render=lambda es: len(es)
        )
        codes.append(code)
    return codes


async def public_read(engine: AsyncEngine, code: str, rng: random.Random) -> None:
    """What an uncached public read of a project costs the database."""
    async with engine.connect() as conn:
        await project_state(conn, code)
    async with engine.connect() as conn:
        project = await get_project(conn, code)
        await project_summary(conn, project)
        await list_entries(conn, code, after_seq=rng.randrange(SEED_ENTRIES - 50), limit=50)


async def reads_per_second(engines: list[AsyncEngine], codes: list[str], readers: int, seconds: float) -> float:
    done = 0
    turn = 0

    async def reader(n: int) -> None:
        nonlocal done, turn
        rng = random.Random(n)
        while time.perf_counter() < until:
            engine = engines[turn % len(engines)]
            turn += 1
            await public_read(engine, rng.choice(codes), rng)
            done += 1

    for engine in engines:  # warm the pools and the caches
        await asyncio.gather(*(public_read(engine, c, random.Random(0)) for c in codes))
    until = time.perf_counter() + seconds
    started = time.perf_counter()
    await asyncio.gather(*(reader(n) for n in range(readers)))
    return done / (time.perf_counter() - started)


async def appends_with_lag(
    engine: AsyncEngine, superuser_dsn: str, codes: list[str], writers: int, appends: int, offset: int
) -> tuple[float, list[float], list[int]]:
    """Appends/s, and the replay lag (ms) and byte lag samples taken meanwhile (empty without a standby)."""
    lag_ms: list[float] = []
    lag_bytes: list[int] = []
    stop = asyncio.Event()
    monitor = await asyncpg.connect(superuser_dsn)

    async def sample() -> None:
        while not stop.is_set():
            row = await monitor.fetchrow(
                "SELECT extract(epoch FROM coalesce(replay_lag, '0'))::float8 * 1000 AS ms,"
                " pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::bigint AS bytes"
                " FROM pg_stat_replication LIMIT 1"
            )
            if row is not None:
                lag_ms.append(row["ms"])
                lag_bytes.append(row["bytes"])
            await asyncio.sleep(0.05)

    queue = list(range(offset, offset + appends))

    async def writer(w: int) -> None:
        while queue:
            i = queue.pop()
            await append_entries(engine, codes[i % len(codes)], [draft(i)], recorded_by="bench", render=lambda es: 1)

    sampler = asyncio.create_task(sample())
    started = time.perf_counter()
    await asyncio.gather(*(writer(w) for w in range(writers)))
    elapsed = time.perf_counter() - started
    await asyncio.sleep(0.2)  # let the standby report its last replay
    stop.set()
    await sampler
    await monitor.close()
    return appends / elapsed, lag_ms, lag_bytes


async def disk_per_entry(superuser_dsn: str) -> tuple[int, int]:
    """Entries stored, and the bytes on disk of every community table (indexes and TOAST included,
    after VACUUM so the visibility map and free space are settled)."""
    conn = await asyncpg.connect(superuser_dsn)
    try:
        await conn.execute("VACUUM ANALYZE")
        entries = await conn.fetchval("SELECT count(*) FROM entries")
        size = await conn.fetchval(
            """
            SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c
            JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = 'public' AND c.relkind = 'r' AND c.relname NOT IN ('attachments', 'rate_limits')
              AND EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = 'community_id')
            """
        )
    finally:
        await conn.close()
    return int(entries), int(size)


def quantiles(values: list[float]) -> str:
    if len(values) < 2:
        return "n/a"
    qs = statistics.quantiles(values, n=100, method="inclusive")
    return f"p50 {qs[49]:.1f} / p99 {qs[98]:.1f} / max {max(values):.1f}"


async def run(readers: int, seconds: float, writers: int, appends: int) -> None:
    with tempfile.TemporaryDirectory(prefix="ledger-bench-replica-") as tmp:
        settings = Settings(data_dir=Path(tmp), log_level="WARNING", db_pool_size=writers + readers)
        runtime = DatabaseRuntime(settings)
        urls = await asyncio.to_thread(runtime.start)
        assert runtime.embedded is not None
        standby = Standby(runtime.embedded, Path(tmp) / "standby")
        engines: list[AsyncEngine] = []
        try:
            await asyncio.to_thread(upgrade, urls.owner, settings.app_role)
            primary = create_engine(urls.app, settings)
            engines.append(primary)
            codes = await seed(primary)
            await asyncio.to_thread(standby.create)
            await asyncio.to_thread(standby.start)
            replica = create_engine(standby.url(settings.app_role), settings, application_name="ledger-read")
            engines.append(replica)
            superuser_dsn = runtime.embedded.info.dsn(SUPERUSER, "ledger")

            alone = await reads_per_second([primary], codes, readers, seconds)
            on_replica = await reads_per_second([replica], codes, readers, seconds)
            both = await reads_per_second([primary, replica], codes, readers, seconds)

            streaming, lag_ms, lag_bytes = await appends_with_lag(primary, superuser_dsn, codes, writers, appends, 0)
            await replica.dispose()
            await asyncio.to_thread(standby.stop)
            unreplicated, _, _ = await appends_with_lag(primary, superuser_dsn, codes, writers, appends, appends)
            entries, on_disk = await disk_per_entry(superuser_dsn)
        finally:
            for engine in engines:
                await engine.dispose()
            await asyncio.to_thread(standby.stop)
            await asyncio.to_thread(runtime.stop)

    print(f"public reads ({readers} readers, {seconds:g} s each; one read = version + project + summary + 50 entries)")
    print(f"{'served by':28} {'reads/s':>9} {'× primary alone':>16}")
    for name, rate in (("primary alone (baseline)", alone), ("replica alone", on_replica), ("primary + replica", both)):
        print(f"{name:28} {rate:9.0f} {rate / alone:16.2f}")
    print()
    print(f"appends ({writers} writers, {appends} appends over {PROJECTS} projects)")
    print(f"{'':28} {'appends/s':>9} {'× unreplicated':>16}")
    print(f"{'no standby (baseline)':28} {unreplicated:9.0f} {1.0:16.2f}")
    print(f"{'standby streaming':28} {streaming:9.0f} {streaming / unreplicated:16.2f}")
    print(f"standby replay lag under the appends, ms: {quantiles(lag_ms)} ({len(lag_ms)} samples)")
    print(f"standby lag in WAL bytes: {quantiles([float(b) for b in lag_bytes])}")
    print()
    print(
        f"disk: {on_disk / 1e6:.1f} MB for {entries} entries in the community tables (attachments apart)"
        f" = {on_disk / entries:.0f} bytes per entry, indexes included"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--readers", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--writers", type=int, default=16)
    parser.add_argument("--appends", type=int, default=1500)
    args = parser.parse_args()
    asyncio.run(run(args.readers, args.seconds, args.writers, args.appends))


if __name__ == "__main__":
    main()
