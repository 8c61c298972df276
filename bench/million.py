"""Benchmark: one project of a million entries — proofs, roots, keyset pages, ``verify``, bytes.

    .venv/bin/python bench/million.py [--entries 1000000] [--samples 400] [--keep DIR]

Starts its own embedded PostgreSQL (temporary folder, or ``--keep DIR`` to reuse a loaded one),
loads ``--entries`` entries into one project through the batch path (``append_entries``, 10,000
per call, as the import and ``POST …/entries/batch`` do: every entry hashed, posted, and added to
the Merkle tree), then measures, each next to a baseline of the same run:

* root at a random size, inclusion proof of a random entry at a random size, consistency proof
  between two random sizes (``ledger.tree``): p50/p99 over ``--samples`` calls each, against a
  ``SELECT 1`` round trip through the same engine (the floor of any read); a sample of the proofs
  is checked with the RFC 9162 verifier (``ledger.merkle``, tested against the vectors of
  ../shared/testdata) against the roots;
* a page of 50 entries (``list_entries``, keyset ``after_seq``) at a random depth, against the
  first page, and against ``OFFSET`` at the same depth (what keyset avoids);
* ``verify`` of the whole project in a fresh process (``ledger.tree.verify``: every document
  rebuilt and hashed, the tree recomputed, stored nodes compared, streamed in chunks, in one
  worker process per CPU): seconds and peak RSS, against the same in one process, and against
  one process merely reading the rows verify reads;
* the database's bytes per entry (tables and indexes, by table).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import date, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlalchemy import text  # noqa: E402
from sqlalchemy.ext.asyncio import AsyncEngine  # noqa: E402

from api.settings import Settings  # noqa: E402
from ledger import merkle, tree  # noqa: E402
from ledger.communities import NewCommunity, create_community  # noqa: E402
from ledger.contributors import ContributorRef  # noqa: E402
from ledger.database import DatabaseRuntime, create_engine, upgrade  # noqa: E402
from ledger.drafts import EntryDraft  # noqa: E402
from ledger.entries import append_entries  # noqa: E402
from ledger.entry_reads import list_entries  # noqa: E402
from ledger.projects import BudgetLine, NewProject, create_project  # noqa: E402

PROJECT = "million"
BATCH = 10_000
RESIDENTS = 20_000
PAGE = 50


def drafts(start: int, count: int) -> list[EntryDraft]:
    out = []
    day = date(2025, 1, 1)
    for i in range(start, start + count):
        who = i % RESIDENTS
        if i % 50 == 49:
            out.append(
                EntryDraft(
                    kind="expenditure",
                    occurred_on=day + timedelta(days=i % 365),
                    amount_fen=5_000,
                    payee="某建材有限公司",
                    category="materials",
                    invoice_no=f"FP-{i:07d}",
                    memo="沥青",
                )
            )
            continue
        out.append(
            EntryDraft(
                kind="contribution",
                occurred_on=day + timedelta(days=i % 365),
                amount_fen=10_000 + i % 5_000,
                contributor=ContributorRef(name=f"居民{who}", household=f"{who % 30 + 1}栋{who % 4 + 1}单元"),
                channel="wechat",
                receipt_no=f"SJ-{i:07d}",
                memo="路面刷黑众筹",
            )
        )
    return out


async def load(engine: AsyncEngine, entries: int) -> float:
    await create_community(engine, NewCommunity(code="bench", name="基准小区", households=20_000))
    await create_project(
        engine,
        NewProject(
            code=PROJECT,
            community_code="bench",
            title="百万条记录",
            households_in_scope=20_000,
            spending_gate="waived",
            budget_lines=[BudgetLine("materials", "材料费", "crowdfunding", 100_000_000)],
        ),
    )
    started = time.perf_counter()
    for start in range(0, entries, BATCH):
        count = min(BATCH, entries - start)
        await append_entries(engine, PROJECT, drafts(start, count), recorded_by="bench", render=lambda es: len(es))
        done = start + count
        if done % 100_000 == 0 or done == entries:
            rate = done / (time.perf_counter() - started)
            print(f"  loaded {done:,} entries ({rate:,.0f}/s)", flush=True)
    return time.perf_counter() - started


async def timed(n: int, call: Callable[[int], Awaitable[Any]]) -> list[float]:
    out = []
    for i in range(n):
        t0 = time.perf_counter()
        await call(i)
        out.append((time.perf_counter() - t0) * 1000)
    return out


def pct(samples: list[float], q: int) -> float:
    return statistics.quantiles(samples, n=100)[q - 1]


async def reads(engine: AsyncEngine, size: int, samples: int) -> list[tuple[str, list[float], str]]:
    rng = random.Random(14)
    sizes = [rng.randint(1, size) for _ in range(samples)]
    seqs = [rng.randint(1, s) for s in sizes]
    pairs = [tuple(sorted((rng.randint(1, size), rng.randint(1, size)))) for _ in range(samples)]
    depths = [rng.randint(0, size - PAGE) for _ in range(samples)]

    async def select_one(_: int) -> None:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def root(i: int) -> None:
        async with engine.connect() as conn:
            await tree.root_at(conn, PROJECT, sizes[i])

    async def inclusion(i: int) -> None:
        async with engine.connect() as conn:
            await tree.inclusion(conn, PROJECT, seqs[i], sizes[i])

    async def consistency(i: int) -> None:
        async with engine.connect() as conn:
            await tree.consistency(conn, PROJECT, pairs[i][0], pairs[i][1])

    async def first_page(_: int) -> None:
        async with engine.connect() as conn:
            assert len(await list_entries(conn, PROJECT, after_seq=0, limit=PAGE)) == PAGE

    async def keyset(i: int) -> None:
        async with engine.connect() as conn:
            assert len(await list_entries(conn, PROJECT, after_seq=depths[i], limit=PAGE)) == PAGE

    offset_samples = max(20, samples // 10)

    async def offset(i: int) -> None:
        async with engine.connect() as conn:
            rows = await conn.execute(
                text(
                    "SELECT e.* FROM entries e JOIN projects p ON p.id = e.project_id WHERE p.code = :code "
                    "ORDER BY e.seq OFFSET :off LIMIT :lim"
                ),
                {"code": PROJECT, "off": depths[i], "lim": PAGE},
            )
            assert len(rows.all()) == PAGE

    await timed(20, select_one)  # warm the pool
    results = [
        ("SELECT 1 (floor)", await timed(samples, select_one), "baseline"),
        ("root at a random size", await timed(samples, root), "target p99 ≤ 5 ms"),
        ("inclusion proof, random seq and size", await timed(samples, inclusion), "target p99 ≤ 5 ms"),
        ("consistency proof, random sizes", await timed(samples, consistency), "target p99 ≤ 5 ms"),
        ("entries page 1 (after_seq=0)", await timed(samples, first_page), "baseline of the next"),
        ("entries page at a random depth (keyset)", await timed(samples, keyset), "target p99 ≤ 10 ms"),
        (f"entries page at a random depth (OFFSET, {offset_samples})", await timed(offset_samples, offset), "naive"),
    ]
    # The proofs agree with the RFC 9162 verifier (ledger.merkle, checked against the vectors).
    checked = 0
    async with engine.connect() as conn:
        for i in range(min(samples, 100)):
            p = await tree.inclusion(conn, PROJECT, seqs[i], sizes[i])
            merkle.verify_inclusion(p.leaf_hash, p.seq - 1, p.size, p.proof, p.root_hash)
            a, b = pairs[i]
            c = await tree.consistency(conn, PROJECT, a, b)
            merkle.verify_consistency(a, b, c.proof, c.root_from, c.root_to)
            _, ra = await tree.root_at(conn, PROJECT, a)
            assert ra == c.root_from
            checked += 1
    print(f"  {checked} inclusion and {checked} consistency proofs checked with the RFC 9162 verifier: all valid")
    return results


VERIFY_CHILD = """
import asyncio, json, sys, time
sys.path.insert(0, {root!r})
from ledger import log_check, pg, tree
from ledger.database import create_engine
from api.settings import Settings

import threading, psutil

def peak_mb():
    # VmHWM: this process's own peak (ru_maxrss would carry the parent's over fork and exec).
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024

total_peak = [0.0]

def watch_total():
    # The largest sum of RSS over this process and its worker processes, sampled every 20 ms.
    me = psutil.Process()
    while True:
        try:
            total = sum(p.memory_info().rss for p in [me, *me.children(recursive=True)])
        except psutil.Error:
            continue
        total_peak[0] = max(total_peak[0], total / 2**20)
        time.sleep(0.02)

async def main():
    engine = create_engine({url!r}, Settings(data_dir={tmp!r}))
    mode = {mode!r}
    threading.Thread(target=watch_total, daemon=True).start()
    t0 = time.perf_counter()
    if mode.startswith("verify"):
        workers = 0 if mode == "verify-1" else None  # 0: in this process
        v = await tree.verify(engine, "million", workers=workers)
        result = {{"ok": v.ok, "size": v.size, "processes": tree.verify_workers(v.size, workers)}}
    else:  # the rows verify reads (raw driver, one snapshot, same chunks), nothing recomputed
        async with pg.transaction(engine, isolation="repeatable_read") as conn:
            pid = await conn.fetchval("SELECT id FROM projects WHERE code = 'million'")
            size = await conn.fetchval("SELECT size FROM project_heads WHERE project_id = $1", pid)
            known, n = log_check.Known(), 0
            for after in range(0, size, log_check.CHUNK):
                rows, _ = await log_check.read_chunk(conn, pid, after, min(after + log_check.CHUNK, size), known)
                n += len(rows)
        result = {{"rows": n}}
    result["seconds"] = time.perf_counter() - t0
    result["peak_rss_mb"] = peak_mb()
    result["total_peak_rss_mb"] = total_peak[0]
    await engine.dispose()
    print(json.dumps(result))

asyncio.run(main())
"""


def child(url: str, tmp: str, mode: str) -> dict[str, Any]:
    code = VERIFY_CHILD.format(root=str(ROOT), url=url, tmp=tmp, mode=mode)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])  # type: ignore[no-any-return]


async def db_bytes(engine: AsyncEngine) -> list[tuple[str, int]]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            text(
                """
                SELECT c.relname, pg_total_relation_size(c.oid) AS bytes
                FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                WHERE n.nspname = 'public' AND c.relkind = 'r'
                ORDER BY bytes DESC
                """
            )
        )
        return [(r.relname, int(r.bytes)) for r in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--samples", type=int, default=400)
    parser.add_argument("--keep", type=Path, help="keep (or reuse) the loaded cluster in this folder")
    args = parser.parse_args()
    tmp = str(args.keep) if args.keep else tempfile.mkdtemp(prefix="ledger-bench-million-")
    settings = Settings(data_dir=Path(tmp), log_level="WARNING")
    runtime = DatabaseRuntime(settings)
    try:
        urls = runtime.start()
        upgrade(urls.owner, settings.app_role)

        async def phase_one() -> tuple[float | None, int, list[tuple[str, list[float], str]], list[tuple[str, int]]]:
            engine = create_engine(urls.app, settings)
            try:
                async with engine.connect() as conn:
                    have = (
                        await conn.execute(
                            text(
                                "SELECT h.size FROM project_heads h JOIN projects p ON p.id = h.project_id "
                                "WHERE p.code = :c"
                            ),
                            {"c": PROJECT},
                        )
                    ).scalar_one_or_none()
                load_s = None
                if have is None:
                    print(f"loading {args.entries:,} entries through append_entries, {BATCH:,} per call …", flush=True)
                    load_s = await load(engine, args.entries)
                    have = args.entries
                async with engine.connect() as conn:
                    await conn.execute(text("SELECT 1"))
                res = await reads(engine, have, args.samples)
                return load_s, have, res, await db_bytes(engine)
            finally:
                await engine.dispose()

        load_s, size, results, sizes = asyncio.run(phase_one())
        if load_s is not None:
            print(f"load: {size:,} entries in {load_s:,.0f} s ({size / load_s:,.0f} entries/s, batch path)")
        raw = child(urls.app, tmp, "read")
        full = child(urls.app, tmp, "verify")
        single = child(urls.app, tmp, "verify-1")
    finally:
        runtime.stop()
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)

    print(
        f"\none project of {size:,} entries; {os.cpu_count()} CPUs shared with other work (load average "
        f"{os.getloadavg()[0]:.1f}); sequential calls"
    )
    floor = results[0][1]
    print(f"{'what':48} {'p50 ms':>8} {'p99 ms':>8} {'p99 / floor':>12}  note")
    for name, samples, note in results:
        print(
            f"{name:48} {pct(samples, 50):8.2f} {pct(samples, 99):8.2f} {pct(samples, 99) / pct(floor, 99):12.2f}  {note}"
        )
    print(
        f"\nverify (fresh process, {full['processes']} worker processes): {full['seconds']:.1f} s, peak RSS "
        f"{full['total_peak_rss_mb']:.0f} MB in all ({full['peak_rss_mb']:.0f} MB the verifying process), "
        f"ok={full['ok']}  (target ≤ 10 s, < 200 MB)\n"
        f"verify in one process: {single['seconds']:.1f} s, peak RSS {single['peak_rss_mb']:.0f} MB, ok={single['ok']}\n"
        f"reading the rows verify reads, one process, nothing recomputed: {raw['seconds']:.1f} s, peak RSS "
        f"{raw['peak_rss_mb']:.0f} MB; ratio verify / reading {full['seconds'] / raw['seconds']:.2f}"
    )
    total = sum(b for _, b in sizes)
    print(f"\ndatabase: {total / 2**20:,.0f} MiB, {total / size:,.0f} bytes per entry (tables with their indexes):")
    for name, b in sizes[:8]:
        print(f"  {name:24} {b / 2**20:9,.1f} MiB  {b / size:7,.0f} B/entry")
    print(f"(peak RSS of this bench process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB)")


if __name__ == "__main__":
    main()
