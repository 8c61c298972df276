"""Benchmark: fetching a published disclosure PDF over HTTP, next to /healthz in the same run.

    .venv/bin/python bench/disclosure_fetch.py [--requests 300]

Starts its own embedded PostgreSQL (temporary folder) and the real app under uvicorn on a free
loopback port, publishes one sheet of 1,000 entries, then times ``GET /api/v1/disclosures/{id}/pdf``
(the stored bytes, never re-rendered) and ``GET /healthz`` (the floor: a request that touches
nothing) with one keep-alive client. Prints p50/p90/p99 in milliseconds and the PDF size.
Target: fetching a published PDF < 20 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import statistics
import sys
import tempfile
import time
from datetime import date, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx
import uvicorn

from api.app import create_app
from api.settings import Settings
from ledger.canonical import SHANGHAI
from ledger.communities import NewCommunity, create_community
from ledger.contributors import ContributorRef
from ledger.database import DatabaseRuntime, create_engine, upgrade
from ledger.drafts import EntryDraft
from ledger.entries import append_entries
from ledger.projects import BudgetLine, NewProject, create_project
from ledger.tokens import create_token


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def seed(settings: Settings, app_url: str, entries: int) -> str:
    engine = create_engine(app_url, settings)
    await create_community(engine, NewCommunity(code="bench", name="基准小区"))
    await create_project(
        engine,
        NewProject(
            code="bench-road",
            community_code="bench",
            title="路面刷黑",
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
        )
        for i in range(entries)
    ]
    await append_entries(engine, "bench-road", drafts, recorded_by="bench", render=lambda es: len(es))
    token = (await create_token(engine, name="bench", role="treasurer", community_code="bench")).secret
    await engine.dispose()
    return token


def percentiles(samples: list[float]) -> str:
    qs = statistics.quantiles(samples, n=100)
    return f"p50 {qs[49]:7.2f} ms   p90 {qs[89]:7.2f} ms   p99 {qs[98]:7.2f} ms"


async def run(requests: int, entries: int) -> None:
    with tempfile.TemporaryDirectory(prefix="ledger-bench-") as tmp:
        settings = Settings(data_dir=Path(tmp), log_level="WARNING")
        runtime = DatabaseRuntime(settings)
        urls = await asyncio.to_thread(runtime.start)
        try:
            await asyncio.to_thread(upgrade, urls.owner, settings.app_role)
            token = await seed(settings, urls.app, entries)
            port = free_port()
            app = create_app(settings.model_copy(update={"database_url": urls.app, "owner_database_url": urls.owner}))
            server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
            task = asyncio.create_task(server.serve())
            while not server.started:  # noqa: ASYNC110 — uvicorn exposes a flag, not an event
                await asyncio.sleep(0.05)
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=120) as client:
                today = date.today()
                started = time.perf_counter()
                published = await client.post(
                    "/api/v1/projects/bench-road/disclosures",
                    json={"period_start": (today - timedelta(days=40)).isoformat(), "period_end": today.isoformat()},
                    headers={"Authorization": f"Bearer {token}", "Idempotency-Key": "bench-1"},
                )
                publish_s = time.perf_counter() - started
                published.raise_for_status()
                url = published.json()["pdf_url"]
                size = len((await client.get(url)).content)
                timings: dict[str, list[float]] = {"/healthz": [], "pdf": []}
                for _ in range(requests):
                    for name, path in (("/healthz", "/healthz"), ("pdf", url)):
                        t0 = time.perf_counter()
                        response = await client.get(path)
                        timings[name].append((time.perf_counter() - t0) * 1000)
                        assert response.status_code == 200
            server.should_exit = True
            await task
        finally:
            await asyncio.to_thread(runtime.stop)
    print(f"published a sheet of {entries} entries in {publish_s:.2f} s (render + store), PDF {size:,} bytes")
    print(f"GET /healthz            {percentiles(timings['/healthz'])}")
    print(f"GET /disclosures/…/pdf  {percentiles(timings['pdf'])}")
    p50 = statistics.median(timings["pdf"])
    print(f"target: fetch < 20 ms → {'met' if p50 < 20 else 'NOT met'} (median {p50:.2f} ms)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--entries", type=int, default=1000)
    args = parser.parse_args()
    asyncio.run(run(args.requests, args.entries))


if __name__ == "__main__":
    main()
