"""Benchmark: appends per second through the ledger's service layer, next to a ceiling measured in
the same run on the same database.

    .venv/bin/python -m bench.append [--appends 2000] [--writers 16] [--projects 100] [--profile hot]
    .venv/bin/python bench/append.py  (the same)

Starts its own embedded PostgreSQL in a temporary folder, migrated as the service's would be, and
runs four scenarios, each ``--appends`` appends by ``--writers`` concurrent writers:

* service, spread: ``ledger.entries.append_entries`` — one contribution per call, with an
  idempotency key, as the API makes it — over ``--projects`` projects;
* service, hot: the same, every writer on one project (they queue on its head row);
* no group commit, spread / hot: the same two with ``LEDGER_APPEND_GROUP_MAX=1`` (each append its
  own transaction, as before ledger/append_group.py), on fresh projects of the same shape;
* http, spread / hot (with ``--http``): the same contribution POSTed to the API of a ``ledger
  serve`` process (one uvicorn worker) by an httpx client with ``--writers`` connections;
* ceiling, spread / hot: raw asyncpg transactions doing the least an append must do —
  ``SELECT … FOR UPDATE`` a head row, insert one row, update the head — on a scratch table, with
  the same concurrency patterns and the same application role.

Prints appends/s, p50/p99 latency and the service/ceiling ratio. ``--profile spread|hot`` runs
that service scenario once more under cProfile and prints where the time goes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import hashlib
import io
import os
import pstats
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import asyncpg
import psutil
from sqlalchemy.ext.asyncio import AsyncEngine

from api.settings import Settings
from ledger.communities import NewCommunity, create_community
from ledger.contributors import ContributorRef
from ledger.database import DatabaseRuntime, create_engine, upgrade
from ledger.drafts import EntryDraft
from ledger.entries import append_entries
from ledger.entry_reads import RecordedEntry
from ledger.idempotency import IdempotencyRequest, fingerprint
from ledger.projects import BudgetLine, NewProject, create_project

DAY = date(2025, 6, 1)
NAMES_PER_PROJECT = 200  # residents per project: the first calls create them, later ones find them
DOCUMENT_BYTES = 420  # about an entry's canonical document, for the ceiling's row


@dataclass
class Result:
    name: str
    appends: int
    seconds: float
    latencies_ms: list[float]
    client_cpu_s: float = 0.0
    server_cpu_s: float = 0.0

    @property
    def rate(self) -> float:
        return self.appends / self.seconds

    def percentile(self, q: int) -> float:
        return statistics.quantiles(self.latencies_ms, n=100)[q - 1]


class CpuMeter:
    """CPU seconds used by this process and by the PostgreSQL server (postmaster and backends)."""

    def __init__(self, data_dir: Path | None) -> None:
        self.client = psutil.Process()
        self.postmaster: psutil.Process | None = None
        if data_dir is not None and (data_dir / "postmaster.pid").exists():
            self.postmaster = psutil.Process(int((data_dir / "postmaster.pid").read_text().split()[0]))

    def read(self) -> tuple[float, float]:
        c = self.client.cpu_times()
        server = 0.0
        if self.postmaster is not None:
            for proc in [self.postmaster, *self.postmaster.children(recursive=True)]:
                with contextlib.suppress(psutil.Error):
                    t = proc.cpu_times()
                    server += t.user + t.system
        return c.user + c.system, server


async def run_writers(
    name: str, n: int, writers: int, one: Callable[[int], Awaitable[None]], meter: CpuMeter | None = None
) -> Result:
    """``writers`` tasks take the next append number until ``n`` are done."""
    counter = iter(range(n))
    latencies: list[float] = []

    async def writer() -> None:
        for i in counter:
            started = time.perf_counter()
            await one(i)
            latencies.append((time.perf_counter() - started) * 1000)

    cpu_before = meter.read() if meter else (0.0, 0.0)
    started = time.perf_counter()
    await asyncio.gather(*(writer() for _ in range(writers)))
    elapsed = time.perf_counter() - started
    cpu_after = meter.read() if meter else (0.0, 0.0)
    return Result(name, n, elapsed, latencies, cpu_after[0] - cpu_before[0], cpu_after[1] - cpu_before[1])


# -- the service ------------------------------------------------------------------------------


def render(recorded: list[RecordedEntry]) -> object:
    """A small receipt body, like the API's: seq, leaf and root."""
    r = recorded[0]
    assert r.root_hash is not None
    return {"seq": r.seq, "leaf_hash": r.leaf_hash.hex(), "tree_size": r.tree_size, "root_hash": r.root_hash.hex()}


async def make_projects(engine: AsyncEngine, prefix: str, count: int) -> list[str]:
    async def one(i: int) -> str:
        code = f"{prefix}-{i:03d}"
        await create_community(engine, NewCommunity(code=f"c-{code}", name="基准小区"))
        await create_project(
            engine,
            NewProject(
                code=code,
                community_code=f"c-{code}",
                title="路面刷黑",
                spending_gate="waived",
                budget_lines=[BudgetLine("materials", "材料费", "crowdfunding", 100_000_000)],
            ),
        )
        return code

    codes = []
    for start in range(0, count, 20):
        codes += await asyncio.gather(*(one(i) for i in range(start, min(start + 20, count))))
    return codes


def service_append(engine: AsyncEngine, codes: list[str], scope: str) -> Callable[[int], Awaitable[None]]:
    async def one(i: int) -> None:
        code = codes[i % len(codes)]
        who = i // len(codes) % NAMES_PER_PROJECT
        draft = EntryDraft(
            kind="contribution",
            occurred_on=DAY,
            amount_fen=10_000 + i % 5_000,
            contributor=ContributorRef(name=f"居民{who}", household=f"{who % 9 + 1}栋{who % 3 + 1}单元"),
            channel="wechat",
            receipt_no=f"SJ-{i:06d}",
        )
        key = f"{scope}-{i}"
        await append_entries(
            engine,
            code,
            [draft],
            recorded_by=scope,
            render=render,
            idempotency=IdempotencyRequest(scope, key, fingerprint(key.encode(), repr(draft).encode())),
        )

    return one


# -- the HTTP API -----------------------------------------------------------------------------


def http_append(client: Any, codes: list[str], token: str, scope: str) -> Callable[[int], Awaitable[None]]:
    """The same contribution as ``service_append``, as a treasurer's script sends it."""

    async def one(i: int) -> None:
        code = codes[i % len(codes)]
        who = i // len(codes) % NAMES_PER_PROJECT
        body = {
            "kind": "contribution",
            "amount": f"{(10_000 + i % 5_000) / 100:.2f}",
            "occurred_on": DAY.isoformat(),
            "contributor": {"name": f"居民{who}", "household": f"{who % 9 + 1}栋{who % 3 + 1}单元"},
            "channel": "wechat",
            "receipt_no": f"SJ-{i:06d}",
        }
        response = await client.post(
            f"/api/v1/projects/{code}/entries",
            json=body,
            headers={"Authorization": f"Bearer {token}", "Idempotency-Key": f"{scope}-{i}"},
        )
        assert response.status_code == 201, response.text

    return one


@contextlib.asynccontextmanager
async def http_server(app_url: str, owner_url: str, data_dir: Path) -> Any:
    """``ledger serve`` in its own process (one uvicorn worker), on the benchmark's database."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {
        **os.environ,
        "LEDGER_DATABASE_URL": app_url,
        "LEDGER_OWNER_DATABASE_URL": owner_url,
        "LEDGER_DATA_DIR": str(data_dir),
        "LEDGER_LOG_LEVEL": "WARNING",
        "LEDGER_PDF_RENDER_MODE": "thread",
    }
    ledger_cli = Path(sys.executable).with_name("ledger")
    proc = await asyncio.create_subprocess_exec(
        str(ledger_cli),
        "serve",
        "--port",
        str(port),
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    import httpx

    base = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=base, timeout=60) as probe:
            for _ in range(300):
                try:
                    if (await probe.get("/readyz")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.1)
        yield base, proc.pid
    finally:
        proc.terminate()
        await proc.wait()


# -- the ceiling ------------------------------------------------------------------------------

CEILING_SCHEMA = """
CREATE TABLE bench_heads (id integer PRIMARY KEY, size bigint NOT NULL DEFAULT 0, root bytea);
CREATE TABLE bench_rows (
    head_id integer NOT NULL, seq bigint NOT NULL, document text NOT NULL, leaf bytea NOT NULL,
    PRIMARY KEY (head_id, seq)
);
INSERT INTO bench_heads (id) SELECT generate_series(0, 999);
"""


async def create_ceiling_tables(owner_dsn: str, app_role: str) -> None:
    conn = await asyncpg.connect(owner_dsn)
    try:
        await conn.execute(CEILING_SCHEMA)
        await conn.execute(f'GRANT SELECT, INSERT, UPDATE ON bench_heads, bench_rows TO "{app_role}"')
    finally:
        await conn.close()


def ceiling_append(pool: asyncpg.Pool, heads: list[int]) -> Callable[[int], Awaitable[None]]:
    document = "x" * DOCUMENT_BYTES

    async def one(i: int) -> None:
        head = heads[i % len(heads)]
        leaf = hashlib.sha256(document.encode() + i.to_bytes(8, "big")).digest()
        async with pool.acquire() as conn, conn.transaction():
            size = await conn.fetchval("SELECT size FROM bench_heads WHERE id = $1 FOR UPDATE", head)
            await conn.execute(
                "INSERT INTO bench_rows (head_id, seq, document, leaf) VALUES ($1, $2, $3, $4)",
                head,
                size + 1,
                document,
                leaf,
            )
            await conn.execute("UPDATE bench_heads SET size = $2, root = $3 WHERE id = $1", head, size + 1, leaf)

    return one


# -- the run ----------------------------------------------------------------------------------


def dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://")


async def bench(
    args: argparse.Namespace, settings: Settings, app_url: str, owner_url: str, meter: CpuMeter
) -> list[Result]:
    engine = create_engine(app_url, settings)
    # The same service with group commit off (LEDGER_APPEND_GROUP_MAX=1): the baseline of grouping.
    alone = create_engine(app_url, settings.model_copy(update={"append_group_max": 1}))
    await create_ceiling_tables(dsn(owner_url), settings.app_role)
    pool = await asyncpg.create_pool(dsn(app_url), min_size=args.writers, max_size=args.writers)
    try:
        spread = await make_projects(engine, "spread", args.projects)
        (hot,) = await make_projects(engine, "hot", 1)
        spread_alone = await make_projects(engine, "spread-alone", args.projects)
        (hot_alone,) = await make_projects(engine, "hot-alone", 1)
        warm = await make_projects(engine, "warm", 1)
        # Warm both paths up (connections, prepared statements, caches) before timing anything.
        await run_writers("warm-up", 200, args.writers, service_append(engine, warm, "warm"))
        await run_writers("warm-up", 200, args.writers, ceiling_append(pool, [999]))
        await run_writers("warm-up", 200, args.writers, service_append(alone, warm, "warm-alone"))

        n, w = args.appends, args.writers
        results = [
            await run_writers("ceiling, spread", n, w, ceiling_append(pool, list(range(args.projects))), meter),
            await run_writers("service, spread", n, w, service_append(engine, spread, "spread"), meter),
            await run_writers(
                "no group commit, spread", n, w, service_append(alone, spread_alone, "spread-alone"), meter
            ),
            await run_writers("ceiling, hot", n, w, ceiling_append(pool, [998]), meter),
            await run_writers("service, hot", n, w, service_append(engine, [hot], "hot"), meter),
            await run_writers("no group commit, hot", n, w, service_append(alone, [hot_alone], "hot-alone"), meter),
        ]
        if args.http:
            results += await bench_http(args, engine, app_url, owner_url, settings.data_dir, meter)
        if args.profile:
            codes = spread if args.profile == "spread" else [hot]
            one = service_append(engine, codes, f"profile-{args.profile}")
            profiler = cProfile.Profile(time.process_time)  # CPU time: waiting on the server is not ours
            profiler.enable()
            await run_writers("profile", n, w, one)
            profiler.disable()
            out = io.StringIO()
            stats = pstats.Stats(profiler, stream=out).sort_stats("tottime")
            stats.print_stats(30)
            print(out.getvalue())
            print_cpu_by_package(stats, n)
        return results
    finally:
        await pool.close()
        await engine.dispose()
        await alone.dispose()


async def bench_http(
    args: argparse.Namespace, engine: AsyncEngine, app_url: str, owner_url: str, data_dir: Path, meter: CpuMeter
) -> list[Result]:
    import httpx

    from ledger.tokens import create_token

    token = (await create_token(engine, name="bench", role="admin", community_code=None)).secret
    spread = await make_projects(engine, "http-spread", args.projects)
    (hot,) = await make_projects(engine, "http-hot", 1)
    (warm,) = await make_projects(engine, "http-warm", 1)
    async with http_server(app_url, owner_url, data_dir) as (base, server_pid):
        limits = httpx.Limits(max_connections=args.writers, max_keepalive_connections=args.writers)
        async with httpx.AsyncClient(base_url=base, timeout=60, limits=limits) as client:
            server = psutil.Process(server_pid)
            await run_writers("warm-up", 200, args.writers, http_append(client, [warm], token, "http-warm"))
            n, w = args.appends, args.writers
            results = []
            for name, codes in (("http, spread", spread), ("http, hot", [hot])):
                before = server.cpu_times()
                result = await run_writers(
                    name, n, w, http_append(client, codes, token, name.replace(", ", "-")), meter
                )
                after = server.cpu_times()
                # "server" = PostgreSQL plus the API process; "client" = the HTTP client here.
                result.server_cpu_s += (after.user + after.system) - (before.user + before.system)
                results.append(result)
    return results


def package_of(filename: str) -> str:
    """Which library (or part of ours) a profiled function belongs to."""
    if "site-packages/" in filename:
        return filename.split("site-packages/")[1].split("/")[0]
    for ours in ("ledger/", "bench/"):
        if f"/{ours}" in filename:
            return ours + Path(filename).name
    if filename.startswith("~") or filename.startswith("<"):
        return "builtins (socket, hashlib, …)"
    return "stdlib: " + Path(filename).name


def print_cpu_by_package(stats: pstats.Stats, appends: int) -> None:
    """Client CPU (own time of every function) summed per library, per append."""
    per_package: dict[str, float] = {}
    for (filename, _, _), (_, _, own, _, _) in stats.stats.items():  # type: ignore[attr-defined]
        key = package_of(filename)
        per_package[key] = per_package.get(key, 0.0) + own
    total = sum(per_package.values())
    print(f"client CPU under cProfile: {total / appends * 1000:.2f} ms/append (profiling inflates it), by package:")
    for key, own in sorted(per_package.items(), key=lambda kv: -kv[1])[:15]:
        print(f"  {own / total:6.1%}  {key}")


def report(results: list[Result], args: argparse.Namespace) -> None:
    ceilings = {r.name.split(", ")[1]: r for r in results if r.name.startswith("ceiling")}
    rows = []
    for r in results:
        pattern = r.name.split(", ")[1]
        ratio = r.rate / ceilings[pattern].rate
        rows.append(
            (
                r.name,
                f"{r.rate:,.0f}",
                f"{r.percentile(50):.2f}",
                f"{r.percentile(99):.2f}",
                f"{ratio:.2f}",
                f"{r.client_cpu_s / r.appends * 1000:.2f}",
                f"{r.server_cpu_s / r.appends * 1000:.2f}",
            )
        )
    title = (
        f"{args.appends} appends per scenario, {args.writers} writers, spread = {args.projects} projects, "
        f"hot = 1 project; {os.cpu_count()} CPUs shared by the client and PostgreSQL"
    )
    header = ("scenario", "appends/s", "p50 ms", "p99 ms", "× ceiling", "client CPU ms/append", "server CPU ms/append")
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        print(title)
        widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
        for row in [header, *rows]:
            print(
                "  ".join(
                    str(c).rjust(w) if i else str(c).ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))
                )
            )
        return
    table = Table(title=title)
    for i, h in enumerate(header):
        table.add_column(h, justify="left" if i == 0 else "right")
    for row in rows:
        table.add_row(*row)
    Console(width=max(Console().width, 130)).print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--appends", type=int, default=2000, help="appends per scenario (default 2000)")
    parser.add_argument("--writers", type=int, default=16, help="concurrent writers (default 16)")
    parser.add_argument("--projects", type=int, default=100, help="projects of the spread scenarios (default 100)")
    parser.add_argument("--profile", choices=["spread", "hot"], help="also profile that service scenario")
    parser.add_argument("--http", action="store_true", help="also append through the HTTP API (ledger serve)")
    args = parser.parse_args()
    if not (1 <= args.projects <= 990 and args.writers >= 1 and args.appends >= 100):
        parser.error("need 1 ≤ --projects ≤ 990, --writers ≥ 1, --appends ≥ 100")

    root = Path(tempfile.mkdtemp(prefix="ledger-bench-"))
    settings = Settings(data_dir=root, db_pool_size=args.writers, db_pool_overflow=4)
    runtime = DatabaseRuntime(settings)
    try:
        urls = runtime.start()
        upgrade(urls.owner, settings.app_role)
        assert runtime.embedded is not None
        meter = CpuMeter(runtime.embedded.data_dir)
        results = asyncio.run(bench(args, settings, urls.app, urls.owner, meter))
        report(results, args)
        print(f"(temporary cluster in {root}, removed afterwards; synchronous_commit on, as for ledger writes)")
    finally:
        runtime.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
