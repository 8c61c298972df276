"""Benchmark: the resident pages under a burst of readers, next to /healthz in the same run.

    .venv/bin/python bench/pages.py [--readers 16] [--seconds 10] [--entries 1000]

Starts its own embedded PostgreSQL (temporary folder), seeds one project of ``--entries`` entries,
runs ``ledger serve`` in its own process on a free loopback port, then for each path lets
``--readers`` concurrent keep-alive clients read it for ``--seconds`` (plain GETs, as phones
opening a QR link do, no If-None-Match). Prints requests/s, p50 and p99 per path, each page's
p99 over /healthz's, and the server process's CPU time per request (the client shares the machine,
so latency under load is partly the client's; CPU per request is the server's own cost). Target: the project and entries pages at p99 ≤ 20 ms with 16 readers.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import psutil  # noqa: E402

from api.settings import Settings  # noqa: E402
from ledger.canonical import SHANGHAI  # noqa: E402
from ledger.communities import NewCommunity, create_community  # noqa: E402
from ledger.contributors import ContributorRef  # noqa: E402
from ledger.database import DatabaseRuntime, create_engine, upgrade  # noqa: E402
from ledger.drafts import EntryDraft  # noqa: E402
from ledger.entries import append_entries  # noqa: E402
from ledger.projects import BudgetLine, NewProject, create_project  # noqa: E402

PATHS = ("/healthz", "/p/bench-road", "/p/bench-road/entries", "/p/bench-road/e/500", "/")
TARGET_MS = 20.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def seed(settings: Settings, app_url: str, entries: int) -> None:
    engine = create_engine(app_url, settings)
    await create_community(engine, NewCommunity(code="bench", name="基准小区", households=1200))
    await create_project(
        engine,
        NewProject(
            code="bench-road",
            community_code="bench",
            title="路面刷黑",
            households_in_scope=400,
            spending_gate="waived",
            budget_lines=[BudgetLine("materials", "材料费", "crowdfunding", 100_000_000)],
        ),
    )
    today = datetime.now(SHANGHAI).date()
    drafts = [
        EntryDraft(
            kind="contribution",
            occurred_on=today - timedelta(days=i % 25),
            amount_fen=10_000 + i,
            contributor=ContributorRef(name=f"张{i}", household=f"{i % 9 + 1}栋1单元101"),
            channel="wechat",
            receipt_no=f"SJ-{i:05d}",
            memo="路面刷黑众筹",
        )
        for i in range(entries)
    ]
    await append_entries(engine, "bench-road", drafts, recorded_by="bench", render=lambda es: len(es))
    await engine.dispose()


class Reader:
    """One phone: a keep-alive HTTP/1.1 connection, raw asyncio streams. httpx costs the client
    several times the server's CPU per request; on a 2-core machine that would be what we measure."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def get(self, path: str) -> int:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        assert self.reader is not None
        self.writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/html\r\n\r\n".encode())
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = next(
            int(line.split(b":", 1)[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")
        )
        await self.reader.readexactly(length)
        return status

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            await self.writer.wait_closed()


async def read(client: Reader, path: str, until: float, samples: list[float]) -> None:
    while time.perf_counter() < until:
        t0 = time.perf_counter()
        status = await client.get(path)
        samples.append((time.perf_counter() - t0) * 1000)
        assert status == 200, (path, status)


def cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


async def measure(
    port: int, path: str, readers: int, seconds: float, server: psutil.Process
) -> tuple[float, float, float, float]:
    clients = [Reader(port) for _ in range(readers)]
    try:
        for c in clients:  # open the keep-alive connections and fill the page cache
            assert await c.get(path) == 200
        samples: list[float] = []
        cpu_before = cpu_seconds(server)
        started = time.perf_counter()
        await asyncio.gather(*(read(c, path, started + seconds, samples) for c in clients))
        elapsed = time.perf_counter() - started
        cpu = cpu_seconds(server) - cpu_before
    finally:
        for c in clients:
            await c.close()
    qs = statistics.quantiles(samples, n=100)
    return len(samples) / elapsed, qs[49], qs[98], cpu / len(samples) * 1000


async def run(readers: int, seconds: float, entries: int) -> bool:
    with tempfile.TemporaryDirectory(prefix="ledger-bench-") as tmp:
        settings = Settings(data_dir=Path(tmp), log_level="WARNING")
        runtime = DatabaseRuntime(settings)
        urls = await asyncio.to_thread(runtime.start)
        server = None
        try:
            await asyncio.to_thread(upgrade, urls.owner, settings.app_role)
            await seed(settings, urls.app, entries)
            port = free_port()
            env = {
                **os.environ,
                "LEDGER_DATABASE_URL": urls.app,
                "LEDGER_OWNER_DATABASE_URL": urls.owner,
                "LEDGER_DATA_DIR": tmp,
                "LEDGER_LOG_LEVEL": "WARNING",
            }
            server = subprocess.Popen(  # noqa: ASYNC220 — started once, before any timing
                [str(ROOT / ".venv" / "bin" / "ledger"), "serve", "--port", str(port)], env=env
            )
            base = f"http://127.0.0.1:{port}"
            async with httpx.AsyncClient(base_url=base) as probe:
                for _ in range(600):
                    try:
                        if (await probe.get("/readyz")).status_code == 200:
                            break
                    except httpx.TransportError:
                        pass
                    await asyncio.sleep(0.1)
            process = psutil.Process(server.pid)
            results = {path: await measure(port, path, readers, seconds, process) for path in PATHS}
        finally:
            if server is not None:
                server.terminate()
                server.wait(timeout=30)
            await asyncio.to_thread(runtime.stop)
    floor = results["/healthz"][2]
    print(f"{readers} concurrent readers, {seconds:g} s per path, project of {entries} entries")
    print(f"{'path':26} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'p99 / healthz':>14} {'server CPU ms/req':>18}")
    for path, (rps, p50, p99, cpu_ms) in results.items():
        print(f"{path:26} {rps:8.0f} {p50:8.2f} {p99:8.2f} {p99 / floor:14.2f} {cpu_ms:18.2f}")
    met = all(results[p][2] <= TARGET_MS for p in ("/p/bench-road", "/p/bench-road/entries"))
    print(f"target: project and entries pages p99 ≤ {TARGET_MS:g} ms → {'met' if met else 'NOT met'}")
    return met


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--readers", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--entries", type=int, default=1000)
    args = parser.parse_args()
    asyncio.run(run(args.readers, args.seconds, args.entries))


if __name__ == "__main__":
    main()
