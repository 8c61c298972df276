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
