"""Benchmark: single appends through HTTP (``POST /api/v1/projects/{p}/entries``) driven by wrk, next
to the raw asyncpg ceiling measured in the same run on the same database.

    .venv/bin/python bench/append_http.py [--seconds 10] [--connections 16] [--projects 20] [--workers 1 2 4] [--skip-off] [--rounds 1]

Needs ``wrk`` (``apt-get install wrk``): a C load generator, so the client does not eat the
server's CPU the way a Python client would (httpx cost ~1.8 ms CPU per request on these cores).

Starts its own embedded PostgreSQL (temporary folder, migrated, both roles), then:

* ceiling, spread: raw asyncpg as the application role (bench/append.py's ``ceiling_append``:
  ``SELECT … FOR UPDATE`` a head row, insert a ~420-byte row, update the head, commit), 16 writers
  over ``--projects`` heads, for about ``--seconds``;
* ``ledger serve --workers 1`` with group commit off (``LEDGER_APPEND_GROUP_MAX=1``), then
  for each ``--workers`` count: ``ledger serve --workers N`` and wrk with ``--connections``
  keep-alive connections POSTing one contribution each (a fresh Idempotency-Key per request, a
  treasurer's admin token) over ``--projects`` projects, for ``--seconds``.

With ``--rounds N`` the ceiling and the HTTP runs alternate N times (the run with group commit
off only in the first round), each HTTP run's ratio taken against its own round's ceiling, and the
median of the rounds' ratios is printed last: the box's speed drifts by tens of percent within
minutes, and a ceiling measured once, minutes away from the run it divides, moves the ratio by as
much as any change to the service.

Prints appends/s, p50/p99 (wrk's for HTTP), the ratio to the ceiling, and checks afterwards that
every acknowledged append is in the ledger: the projects' sizes sum to the 201s wrk counted, and
each project's seqs are gapless (``verify``-style count = max(seq)).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import asyncpg  # noqa: E402

from api.settings import Settings  # noqa: E402
from bench.append import (  # noqa: E402
    ceiling_append,
    create_ceiling_tables,
    dsn,
    make_projects,
    run_writers,
)
from bench.wrk_support import cpu_by_role, cpu_delta, latencies_ms, serve  # noqa: E402
from ledger.database import DatabaseRuntime, create_engine, upgrade  # noqa: E402
from ledger.tokens import create_token  # noqa: E402

SCRIPT = r"""
local token = os.getenv("BENCH_TOKEN")
local scope = os.getenv("BENCH_SCOPE")
local projects = {}
for p in string.gmatch(os.getenv("BENCH_PROJECTS"), "[^,]+") do projects[#projects + 1] = p end
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end
local counter = 0
request = function()
  counter = counter + 1
  local p = projects[(counter * 2 + tid) % #projects + 1]
  local who = counter % 200
  local body = string.format(
    '{"kind":"contribution","amount":"%d.00","occurred_on":"2025-06-01",' ..
    '"contributor":{"name":"居民%d","household":"%d栋%d单元"},"channel":"wechat","receipt_no":"SJ-%d-%d"}',
    100 + counter % 50, who, who % 9 + 1, who % 3 + 1, tid, counter)
  local headers = {
    ["Content-Type"] = "application/json",
    ["Authorization"] = "Bearer " .. token,
    ["Idempotency-Key"] = scope .. "-" .. tid .. "-" .. counter,
  }
  return wrk.format("POST", "/api/v1/projects/" .. p .. "/entries", headers, body)
end
"""


def run_wrk(base: str, script: Path, seconds: float, connections: int, env: dict[str, str]) -> dict[str, float]:
    cmd = ["wrk", "-t2", f"-c{connections}", f"-d{seconds:g}s", "--latency", "-s", str(script), base]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, env={**os.environ, **env}).stdout
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    duration = float(re.search(r"requests in ([\d.]+)s", out).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    lat = latencies_ms(out)
    ok = total - (int(bad.group(1)) if bad else 0)
    return {"ok": ok, "bad": total - ok, "rate": ok / duration, "p50": lat["50"], "p99": lat["99"]}


async def gapless(app_url: str, codes: list[str]) -> tuple[int, bool]:
    conn = await asyncpg.connect(dsn(app_url))
    try:
        rows = await conn.fetch(
            """
            SELECT h.size, (SELECT count(*) FROM entries e WHERE e.project_id = p.id) AS n,
                   (SELECT coalesce(max(seq), 0) FROM entries e WHERE e.project_id = p.id) AS top
            FROM projects p JOIN project_heads h ON h.project_id = p.id WHERE p.code = ANY($1::text[])
            """,
            codes,
        )
    finally:
        await conn.close()
    return sum(r["size"] for r in rows), all(r["size"] == r["n"] == r["top"] for r in rows)


async def ceiling(app_url: str, owner_url: str, settings: Settings, projects: int, seconds: float) -> dict[str, float]:
    pool = await asyncpg.create_pool(dsn(app_url), min_size=16, max_size=16)
    try:
        await run_writers("warm-up", 300, 16, ceiling_append(pool, [999]))
        probe = await run_writers("probe", 500, 16, ceiling_append(pool, list(range(projects))))
        n = max(500, int(probe.rate * seconds))
        before = cpu_by_role(os.getpid())
        r = await run_writers("ceiling", n, 16, ceiling_append(pool, list(range(projects))))
        used = cpu_delta(before, cpu_by_role(os.getpid()))
    finally:
        await pool.close()
    # The Python client plays the server's part here: its CPU is in the "server" column.
    return {"ok": r.appends, "rate": r.rate, "p50": r.percentile(50), "p99": r.percentile(99), **used}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--projects", type=int, default=20)
    parser.add_argument("--workers", type=int, nargs="+", default=[1])
    parser.add_argument(
        "--skip-off",
        action="store_true",
        help="skip the run with group commit off, so the first server meets an empty entries table "
        "(a fresh deployment: the plans its connections cache are made on small statistics)",
    )
    parser.add_argument("--rounds", type=int, default=1, help="alternate the ceiling and the HTTP runs this many times")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("bench/append_http.py needs wrk: apt-get install wrk")
    tmp = tempfile.mkdtemp(prefix="ledger-bench-append-http-")
    settings = Settings(data_dir=Path(tmp), log_level="WARNING")
    runtime = DatabaseRuntime(settings)
    script = Path(tmp) / "append.lua"
    script.write_text(SCRIPT)
    rows: list[tuple[int, str, dict[str, float]]] = []
    try:
        urls = runtime.start()
        upgrade(urls.owner, settings.app_role)

        async def prepare() -> tuple[str, dict[int, list[str]]]:
            engine = create_engine(urls.app, settings)
            try:
                token = (await create_token(engine, name="bench", role="admin", community_code=None)).secret
                codes = {w: await make_projects(engine, f"w{w}", args.projects) for w in args.workers}
                codes[0] = await make_projects(engine, "alone", args.projects)
            finally:
                await engine.dispose()
            return token, codes

        token, codes = asyncio.run(prepare())
        asyncio.run(create_ceiling_tables(dsn(urls.owner), settings.app_role))
        checks: dict[int, tuple[int, bool]] = {}
        for round_no in range(1, args.rounds + 1):
            # One ceiling per round, right before the HTTP runs it is the baseline of.
            ceiling_row = asyncio.run(ceiling(urls.app, urls.owner, settings, args.projects, args.seconds))
            rows.append((round_no, "ceiling: raw asyncpg, 16 writers", ceiling_row))
            # 0: the baseline of group commit, one worker with LEDGER_APPEND_GROUP_MAX=1 (each append
            # its own transaction), in the first round only.
            off = [] if args.skip_off or round_no > 1 else [0]
            for workers in [*off, *args.workers]:
                extra = {"LEDGER_APPEND_GROUP_MAX": "1"} if workers == 0 else {}
                proc, base = serve(urls.app, urls.owner, tmp, max(workers, 1), extra)
                try:
                    env = {
                        "BENCH_TOKEN": token,
                        "BENCH_PROJECTS": ",".join(codes[workers]),
                        "BENCH_SCOPE": f"r{round_no}w{workers}",
                    }
                    run_wrk(base, script, 2, args.connections, {**env, "BENCH_SCOPE": f"warm{round_no}w{workers}"})
                    before = cpu_by_role(proc.pid)
                    result = run_wrk(base, script, args.seconds, args.connections, env)
                    result.update(cpu_delta(before, cpu_by_role(proc.pid)))
                finally:
                    proc.terminate()
                    proc.wait(timeout=60)
                result["ratio"] = result["rate"] / ceiling_row["rate"]
                name = f"--workers {workers}" if workers else "--workers 1, no group commit"
                rows.append((round_no, f"HTTP, {name}, wrk -c{args.connections}", result))
                checks[workers] = asyncio.run(gapless(urls.app, codes[workers]))
    finally:
        runtime.stop()
        shutil.rmtree(tmp, ignore_errors=True)

    print(
        f"\nsingle appends over {args.projects} projects, ~{args.seconds:g} s each; {os.cpu_count()} CPUs shared by "
        f"the client, the server and PostgreSQL (load average {os.getloadavg()[0]:.1f}); synchronous_commit on"
    )
    print(
        f"{'round':>5} {'scenario':50} {'appends/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'× ceiling':>10}"
        f"  CPU ms per append: {'server':>7} {'postgres':>8} {'wrk':>5}"
    )
    for round_no, name, r in rows:
        note = f"  ({int(r['bad'])} not 201)" if r.get("bad") else ""
        n = r["ok"] + r.get("bad", 0)
        cpu = f"{'':20} {r['server'] * 1000 / n:7.3f} {r['postgres'] * 1000 / n:8.3f} {r['wrk'] * 1000 / n:5.3f}"
        print(
            f"{round_no:5} {name:50} {r['rate']:10,.0f} {r['p50']:8.2f} {r['p99']:8.2f} {r.get('ratio', 1.0):10.2f}"
            f"{cpu}{note}"
        )
    print("(CPU per append: the ceiling's 'server' is its Python asyncpg client; a steadier figure than rates here.)")
    if args.rounds > 1:
        by_scenario: dict[str, list[float]] = {}
        for _, name, r in rows:
            if "ratio" in r:
                by_scenario.setdefault(name, []).append(r["ratio"])
        for name, ratios in by_scenario.items():
            shown = ", ".join(f"{x:.2f}" for x in ratios)
            print(f"{name}: median ratio {statistics.median(ratios):.2f} over {len(ratios)} round(s) ({shown})")
    for workers, (size, ok) in sorted(checks.items()):
        print(
            f"--workers {workers or '1, no group commit'}: {size:,} entries in the ledger after the run "
            f"(warm-up included), seqs gapless: {ok}"
        )


if __name__ == "__main__":
    main()
