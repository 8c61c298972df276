"""Benchmark: public JSON reads through ``ledger serve``, measured by wrk (a C client, so the client
does not eat the server's CPU), next to ``/healthz`` in the same run.

    .venv/bin/python bench/reads.py [--entries 2000] [--seconds 8] [--connections 16] [--workers 1 2 4]
                                    [--repeat 2]

Needs ``wrk`` (``apt-get install wrk``). Starts its own embedded PostgreSQL in a temporary folder,
seeds one project of ``--entries`` entries through the batch path, then for each ``--workers``
count starts ``ledger serve --workers N`` and runs wrk on each path for ``--seconds``:

* ``/healthz`` — the framework's floor: no database, a constant body;
* the project summary, the first entries page, a deep entries page (keyset ``after_seq`` near the
  end), one entry — plain GETs (every one reads the project's version, then serves the body cached
  for it);
* the summary with ``If-None-Match`` (a phone that has it: 304);
* ``summary, cold``: the version read *and* the full summary every time (the cache defeated by a
  new query string per request) — what the summary costs without the cache.

After seeding, the database is settled as a deployed one is: ``VACUUM (ANALYZE)`` and a
``CHECKPOINT`` (otherwise autovacuum and the first checkpoint land in the middle of the runs).
Each path is run ``--repeat`` times in a row; the table shows the median run by rate and the
worst p99 of all, and notes any checkpoint or autovacuum that ran during a path's runs.

Prints requests/s, p50/p99 latency (wrk's), and each path's ratio to /healthz of the same server.
Goal (issue 14): the summary, the entries page and one entry at ≥ 0.5 × /healthz with p99 ≤ 10 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import asyncpg  # noqa: E402
import httpx  # noqa: E402

from api.settings import Settings  # noqa: E402
from bench.wrk_support import latencies_ms, serve  # noqa: E402
from ledger.communities import NewCommunity, create_community  # noqa: E402
from ledger.contributors import ContributorRef  # noqa: E402
from ledger.database import DatabaseRuntime, create_engine, upgrade  # noqa: E402
from ledger.drafts import EntryDraft  # noqa: E402
from ledger.embedded_pg import SUPERUSER  # noqa: E402
from ledger.entries import append_entries  # noqa: E402
from ledger.projects import BudgetLine, NewProject, create_project  # noqa: E402

PROJECT = "bench-road"
COLD_SCRIPT = """
counter = 0
request = function()
  counter = counter + 1
  return wrk.format("GET", "/api/v1/projects/bench-road?n=" .. counter)
end
"""


async def seed(settings: Settings, app_url: str, entries: int) -> None:
    engine = create_engine(app_url, settings)
    await create_community(engine, NewCommunity(code="bench", name="基准小区", households=1200))
    await create_project(
        engine,
        NewProject(
            code=PROJECT,
            community_code="bench",
            title="路面刷黑",
            households_in_scope=400,
            spending_gate="waived",
            budget_lines=[BudgetLine("materials", "材料费", "crowdfunding", 100_000_000)],
        ),
    )
    for start in range(0, entries, 5000):
        drafts = [
            EntryDraft(
                kind="contribution",
                occurred_on=date(2025, 6, 1),
                amount_fen=10_000 + i,
                contributor=ContributorRef(name=f"张{i % 300}", household=f"{i % 9 + 1}栋1单元101"),
                channel="wechat",
                receipt_no=f"SJ-{i:06d}",
                memo="路面刷黑众筹",
            )
            for i in range(start, min(entries, start + 5000))
        ]
        await append_entries(engine, PROJECT, drafts, recorded_by="bench", render=lambda es: len(es))
    await engine.dispose()


async def settle(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("VACUUM (ANALYZE)")
        await conn.execute("CHECKPOINT")
    finally:
        await conn.close()


async def background_work(dsn: str) -> tuple[int, int]:
    """Checkpoints and autovacuum/autoanalyze runs so far (PostgreSQL 17 moved the checkpoint
    counters to pg_stat_checkpointer)."""
    conn = await asyncpg.connect(dsn)
    try:
        if await conn.fetchval("SELECT to_regclass('pg_catalog.pg_stat_checkpointer') IS NOT NULL"):
            checkpoints = await conn.fetchval("SELECT num_timed + num_requested FROM pg_stat_checkpointer")
        else:
            checkpoints = await conn.fetchval("SELECT checkpoints_timed + checkpoints_req FROM pg_stat_bgwriter")
        vacuums = await conn.fetchval(
            "SELECT coalesce(sum(autovacuum_count + autoanalyze_count), 0) FROM pg_stat_all_tables"
        )
        return int(checkpoints), int(vacuums)
    finally:
        await conn.close()


def wrk(url: str, seconds: float, connections: int, *, header: str | None = None, script: str | None = None) -> dict:
    cmd = ["wrk", "-t2", f"-c{connections}", f"-d{seconds:g}s", "--latency"]
    if header:
        cmd += ["-H", header]
    if script:
        cmd += ["-s", script]
    out = subprocess.run([*cmd, url], capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    lat = latencies_ms(out)
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors:.*", out)
    return {
        "rps": rps,
        "p50": lat.get("50", float("nan")),
        "p99": lat.get("99", float("nan")),
        "bad": int(non2xx.group(1)) if non2xx else 0,
        "errors": errors.group(0) if errors else "",
    }


def run(args: argparse.Namespace) -> None:
    tmp = tempfile.mkdtemp(prefix="ledger-bench-reads-")
    settings = Settings(data_dir=Path(tmp), log_level="WARNING")
    runtime = DatabaseRuntime(settings)
    cold = Path(tmp) / "cold.lua"
    cold.write_text(COLD_SCRIPT)
    try:
        urls = runtime.start()
        upgrade(urls.owner, settings.app_role)
        asyncio.run(seed(settings, urls.app, args.entries))
        assert runtime.embedded is not None
        superuser = runtime.embedded.info.dsn(SUPERUSER, "ledger")
        asyncio.run(settle(superuser))
        deep = max(0, args.entries - 60)
        for workers in args.workers:
            proc, base = serve(urls.app, urls.owner, tmp, workers)
            try:
                summary = f"{base}/api/v1/projects/{PROJECT}"
                etag = httpx.get(summary).headers["etag"]
                for path in ("/healthz", f"/api/v1/projects/{PROJECT}/entries/1"):
                    httpx.get(base + path)
                cases = [
                    ("/healthz", dict(url=f"{base}/healthz")),
                    ("summary", dict(url=summary)),
                    ("summary, If-None-Match (304)", dict(url=summary, header=f"If-None-Match: {etag}")),
                    ("entries, first page", dict(url=f"{summary}/entries")),
                    (f"entries, after_seq={deep}", dict(url=f"{summary}/entries?after_seq={deep}")),
                    ("one entry", dict(url=f"{summary}/entries/{args.entries // 2}")),
                    ("summary, cold (no cache)", dict(url=f"{base}/", script=str(cold))),
                ]
                results = []
                for name, kw in cases:
                    url = kw.pop("url")
                    before = asyncio.run(background_work(superuser))
                    runs = [wrk(url, args.seconds, args.connections, **kw) for _ in range(args.repeat)]
                    after = asyncio.run(background_work(superuser))
                    median = sorted(runs, key=lambda r: r["rps"])[(len(runs) - 1) // 2]
                    result = dict(median, p99=max(r["p99"] for r in runs), p99s=[r["p99"] for r in runs])
                    result["background"] = (after[0] - before[0], after[1] - before[1])
                    results.append((name, result))
            finally:
                proc.terminate()
                proc.wait(timeout=60)
            floor = results[0][1]
            print(
                f"\nledger serve --workers {workers}; wrk -t2 -c{args.connections} -d{args.seconds:g}s; "
                f"project of {args.entries} entries; {os.cpu_count()} CPUs shared by wrk, the server and PostgreSQL"
            )
            print(f"{'path':34} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'× healthz':>10}  notes")
            for name, r in results:
                note = f"{r['bad']} non-2xx/3xx " if r["bad"] else ""
                note += r["errors"]
                if args.repeat > 1:
                    note += "p99 of each run " + " / ".join(f"{p:.1f}" for p in r["p99s"]) + " "
                checkpoints, vacuums = r["background"]
                if checkpoints or vacuums:
                    note += f"(meanwhile {checkpoints} checkpoints, {vacuums} autovacuum/analyze runs)"
                print(
                    f"{name:34} {r['rps']:9,.0f} {r['p50']:8.2f} {r['p99']:8.2f} {r['rps'] / floor['rps']:10.2f}  {note}"
                )
    finally:
        runtime.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entries", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--workers", type=int, nargs="+", default=[1])
    parser.add_argument("--repeat", type=int, default=2, help="runs of each path (median rate, worst p99)")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("bench/reads.py needs wrk: apt-get install wrk")
    run(args)


if __name__ == "__main__":
    main()
