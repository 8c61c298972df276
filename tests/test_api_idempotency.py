"""Idempotency over HTTP under real concurrency (uvicorn on 127.0.0.1, httpx.AsyncClient): the
in-process test client runs one request at a time, so it cannot show races."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx

from tests.api_support import LiveServer, World, all_entries, contribution, new_key

DISTINCT = 180
DUPLICATES = 20  # exact copies (same key, same body) of the first 20 requests
REUSED = 5  # same key as requests 20..24, different body
IN_FLIGHT_RETRIES_MAX = 200


def _amount(i: int) -> str:
    return f"{i + 1}.{i % 100:02d}"


async def _send(
    client: httpx.AsyncClient, project: str, token: str, key: str, body: dict[str, Any]
) -> tuple[httpx.Response, int]:
    """POST once; a 409 idempotency_in_flight (the first copy still running) is retried."""
    in_flight = 0
    for _ in range(IN_FLIGHT_RETRIES_MAX):
        response = await client.post(
            f"/api/v1/projects/{project}/entries",
            content=json.dumps(body, ensure_ascii=False).encode(),
            headers={"Authorization": f"Bearer {token}", "Idempotency-Key": key, "Content-Type": "application/json"},
        )
        if response.status_code == 409 and response.json()["code"] == "idempotency_in_flight":
            in_flight += 1
            await asyncio.sleep(0.01 * min(in_flight, 10))
            continue
        return response, in_flight
    raise AssertionError(f"key {key} stayed in flight")


async def test_concurrent_distinct_duplicate_and_reused_keys(world: World, live_server: LiveServer) -> None:
    project = await world.project()
    keys = [f"k-{new_key()}" for _ in range(DISTINCT)]
    bodies = [
        contribution(amount=_amount(i), name=f"居民{i}", household=f"{i % 30 + 1}栋", receipt_no=f"SJ-{i}")
        for i in range(DISTINCT)
    ]
    done = {i: asyncio.Event() for i in range(20, 20 + REUSED)}
    limits = httpx.Limits(max_connections=300, max_keepalive_connections=300)
    async with httpx.AsyncClient(base_url=live_server.base_url, timeout=120, limits=limits) as client:

        async def original(i: int) -> tuple[httpx.Response, int]:
            try:
                return await _send(client, project, world.treasurer, keys[i], bodies[i])
            finally:
                if i in done:
                    done[i].set()

        async def duplicate(i: int) -> tuple[httpx.Response, int]:
            return await _send(client, project, world.treasurer, keys[i], bodies[i])

        async def reused(i: int) -> tuple[httpx.Response, int]:
            # Same key, different body. It goes out once the first use of its key has been answered
            # (otherwise it could be the first, and the original the reuse); the rest of the load
            # is still in flight around it.
            await done[i].wait()
            changed = dict(bodies[i], amount="9999.99")
            return await _send(client, project, world.treasurer, keys[i], changed)

        tasks = [original(i) for i in range(DISTINCT)]
        tasks += [duplicate(i) for i in range(DUPLICATES)]
        tasks += [reused(i) for i in range(20, 20 + REUSED)]
        results = await asyncio.gather(*tasks)

        originals = results[:DISTINCT]
        duplicates = results[DISTINCT : DISTINCT + DUPLICATES]
        reuses = results[DISTINCT + DUPLICATES :]

        for i, ((first, _), (second, _)) in enumerate(zip(originals[:DUPLICATES], duplicates, strict=True)):
            assert first.status_code == second.status_code == 201, (first.text, second.text)
            # Whichever copy won recorded the entry; the other got its exact bytes back, marked.
            assert first.content == second.content, i
            replayed = sorted(r.headers.get("idempotent-replayed", "") for r in (first, second))
            assert replayed == ["", "true"], i
        for response, _ in originals[DUPLICATES:]:
            assert response.status_code == 201, response.text
            assert "idempotent-replayed" not in response.headers
        for response, _ in reuses:
            assert response.status_code == 422 and response.json()["code"] == "idempotency_key_reused", response.text

        # Exactly 180 entries, seq 1..180 without a gap, one per key, each with its own amount.
        items = await all_entries(client, project)
        assert [e["seq"] for e in items] == list(range(1, DISTINCT + 1))
        recorded_amounts = sorted(e["amount"] for e in items)
        assert recorded_amounts == sorted(_amount(i) for i in range(DISTINCT))
        by_receipt = {e["receipt_no"]: e["seq"] for e in items}
        for i, (response, _) in enumerate(originals):
            assert by_receipt[f"SJ-{i}"] == response.json()["seq"]

        verify = (await client.get(f"/api/v1/projects/{project}/ledger/verify")).json()
        assert verify["ok"] is True and verify["size"] == DISTINCT and verify["first_bad_seq"] is None
        summary = (await client.get(f"/api/v1/projects/{project}")).json()["summary"]
    total_fen = sum((i + 1) * 100 + i % 100 for i in range(DISTINCT))
    expected = f"{total_fen // 100}.{total_fen % 100:02d}"
    assert summary["contributed"] == summary["balance"] == expected
    assert summary["ledger"]["size"] == DISTINCT
    in_flight_seen = sum(n for _, n in results)
    print(f"409 idempotency_in_flight answers retried: {in_flight_seen}")
