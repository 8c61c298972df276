"""More than one worker: ``ledger serve --workers 2`` serves, and the public write rate limit is
one budget per client across processes (it is held in PostgreSQL: ledger/rate_limit.py)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import psutil

from tests.conftest import Database

LEDGER = Path(sys.executable).with_name("ledger")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def _serve(database: Database, data_dir: Path, namespace: str, *args: str) -> Iterator[tuple[str, int]]:
    port = _free_port()
    env = {
        **os.environ,
        "LEDGER_DATABASE_URL": database.urls.app,
        "LEDGER_OWNER_DATABASE_URL": database.urls.owner,
        "LEDGER_DATA_DIR": str(data_dir),
        "LEDGER_LOG_LEVEL": "WARNING",
        "LEDGER_PDF_RENDER_MODE": "thread",
        "LEDGER_DB_POOL_SIZE": "2",
        "LEDGER_PUBLIC_WRITE_RATE_PER_MINUTE": "4",
        "LEDGER_RATE_LIMIT_NAMESPACE": namespace,
    }
    proc = subprocess.Popen(
        [str(LEDGER), "serve", "--port", str(port), *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, "ledger serve exited"
            try:
                if httpx.get(f"{base}/readyz", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "ledger serve did not become ready"
            time.sleep(0.2)
        yield base, proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_workers_share_the_public_write_rate_limit(database: Database, tmp_path: Path) -> None:
    namespace = uuid.uuid4().hex
    with (
        _serve(database, tmp_path / "a", namespace, "--workers", "2") as (two_workers, pid),
        _serve(database, tmp_path / "b", namespace) as (another, _),
    ):
        workers = [p for p in psutil.Process(pid).children(recursive=True) if "spawn" in " ".join(p.cmdline())]
        assert len(workers) == 2, [p.cmdline() for p in psutil.Process(pid).children(recursive=True)]
        statuses = []
        for i in range(10):
            # A fresh connection each time (the two workers share the socket), alternating services.
            with httpx.Client(base_url=two_workers if i % 2 == 0 else another, timeout=30) as client:
                response = client.post("/api/v1/disclosures/999999999/objections", json={"message": "账目有误"})
            statuses.append(response.status_code)
            if response.status_code == 429:
                assert response.json()["code"] == "rate_limited" and int(response.headers["retry-after"]) >= 1
        # 4 per minute for this client, whichever process served it: per-process budgets would
        # have let 8 or more through.
        assert statuses == [404] * 4 + [429] * 6, statuses
        # Another namespace (another deployment on the same database) has its own budget.
    with _serve(database, tmp_path / "c", uuid.uuid4().hex) as (fresh, _):
        assert httpx.post(f"{fresh}/api/v1/disclosures/999999999/objections", json={"message": "x"}).status_code == 404


async def test_concurrent_takes_never_exceed_the_budget(engine: object) -> None:
    import asyncio

    from ledger.rate_limit import sweep, take

    key = f"test|{uuid.uuid4().hex}"
    results = await asyncio.gather(*(take(engine, key, 5) for _ in range(20)))  # type: ignore[arg-type]
    assert sum(r is None for r in results) == 5
    assert all(r is None or 1 <= r <= 12 for r in results)  # 60 s / 5: the next slot within 12 s
    await sweep(engine)  # type: ignore[arg-type]  # the key's TAT is in the future: it stays
    assert await take(engine, key, 5) is not None  # type: ignore[arg-type]


def test_concurrent_appends_through_two_workers_stay_gapless_and_idempotent(database: Database, tmp_path: Path) -> None:
    """40 appends to one project, each sent twice at once (the same Idempotency-Key), over 16
    connections to ``ledger serve --workers 2``, then each retried once more: 40 entries, seqs
    1..40; a concurrent duplicate is a replay or 409 idempotency_in_flight, a later retry a replay."""
    import asyncio

    from tests.api_support import contribution

    async def run(base: str, token: str, project: str) -> tuple[list[httpx.Response], list[httpx.Response]]:
        limits = httpx.Limits(max_connections=16)
        async with httpx.AsyncClient(base_url=base, timeout=60, limits=limits) as client:

            async def post(i: int) -> httpx.Response:
                return await client.post(
                    f"/api/v1/projects/{project}/entries",
                    json=contribution(str(10 + i), f"居民{i % 7}"),
                    headers={"Authorization": f"Bearer {token}", "Idempotency-Key": f"k-{i}"},
                )

            burst = await asyncio.gather(*(post(i) for i in range(40) for _ in range(2)))
            retries = await asyncio.gather(*(post(i) for i in range(40)))
            return burst, retries

    async def setup() -> tuple[str, str]:
        from api.settings import Settings as AppSettings
        from ledger.database import create_engine
        from ledger.tokens import create_token
        from tests.conftest import make_project

        engine = create_engine(database.urls.app, AppSettings(data_dir=tmp_path))
        try:
            project = await make_project(engine)
            token = (await create_token(engine, name="t", role="admin", community_code=None)).secret
        finally:
            await engine.dispose()
        return token, project.code

    token, project = asyncio.run(setup())
    with _serve(database, tmp_path / "w", uuid.uuid4().hex, "--workers", "2") as (base, _):
        burst, retries = asyncio.run(run(base, token, project))
        listed = httpx.get(f"{base}/api/v1/projects/{project}/entries", params={"limit": 100}).json()["items"]
    first: dict[str, dict[str, object]] = {}
    for r in burst:
        key = r.request.headers["idempotency-key"]
        if r.status_code == 409:
            assert r.json()["code"] == "idempotency_in_flight"
            continue
        assert r.status_code == 201, r.text
        assert first.setdefault(key, r.json()) == r.json(), "a replay is the first answer"
    assert len(first) == 40
    for r in retries:
        assert r.status_code == 201 and r.headers.get("idempotent-replayed") == "true"
        assert r.json() == first[r.request.headers["idempotency-key"]]
    assert sorted(int(body["seq"]) for body in first.values()) == list(range(1, 41))  # type: ignore[call-overload]
    assert [e["seq"] for e in listed] == list(range(1, 41))
