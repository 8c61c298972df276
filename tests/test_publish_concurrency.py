"""Two treasurers publishing at once (issue 8, item 4), with real parallel requests against the
real server (uvicorn on 127.0.0.1): concurrent publishes get distinct consecutive sheet numbers,
each naming the one before it, never a 5xx; copies of one request (same Idempotency-Key) record
one sheet, and every copy gets its status and body back.

The publishes overlap for real: rendering a sheet's PDF takes long enough (tens to hundreds of ms)
that all of them are inside the server at once.
"""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from typing import Any

import asyncpg
import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from api.sheets import pdf_maker
from ledger.disclosures import DisclosureDraft, SheetSnapshot, publish_disclosure
from ledger.errors import IdempotencyInFlight, IdempotencyKeyReused, ValidationFailed
from ledger.idempotency import IdempotencyRequest, fingerprint
from reports.render import PdfRenderer
from tests.api_support import LiveServer, World, contribution, expenditure, grant, new_key, today
from tests.conftest import Database, make_project
from tests.test_ledger_append_only import dsn

IN_FLIGHT_RETRIES_MAX = 600


def _period() -> dict[str, Any]:
    return {"period_start": (today() - timedelta(days=30)).isoformat(), "period_end": today().isoformat()}


async def _project(world: World) -> str:
    code = await world.project()
    await world.entry(code, contribution("200", "张三", "3栋2单元501"))
    await world.entry(code, grant("50000"))
    await world.entry(code, expenditure("1200.35"))
    return code


async def _publish(client: httpx.AsyncClient, world: World, code: str, key: str) -> tuple[httpx.Response, int]:
    """POST once; a 409 ``idempotency_in_flight`` (a copy of this request still running) is
    retried as API.md tells a client to. Returns the final answer and how many 409s it took."""
    in_flight = 0
    for _ in range(IN_FLIGHT_RETRIES_MAX):
        response = await client.post(
            f"/api/v1/projects/{code}/disclosures",
            content=json.dumps({**_period(), "notice_days": 7}).encode(),
            headers={
                "Authorization": f"Bearer {world.treasurer}",
                "Idempotency-Key": key,
                "Content-Type": "application/json",
            },
        )
        if response.status_code == 409 and response.json().get("code") == "idempotency_in_flight":
            in_flight += 1
            await asyncio.sleep(0.01 * min(in_flight, 10))
            continue
        return response, in_flight
    raise AssertionError(f"key {key} stayed in flight")


async def _sheets(client: httpx.AsyncClient, code: str) -> list[dict[str, Any]]:
    listing = await client.get(f"/api/v1/projects/{code}/disclosures")
    assert listing.status_code == 200, listing.text
    return listing.json()["items"]  # type: ignore[no-any-return]


def _assert_chain(sheets: list[dict[str, Any]]) -> None:
    """Sheet n names sheet n − 1 (its id, number, size and root) as its previous one."""
    by_number = {s["sheet_number"]: s for s in sheets}
    assert sorted(by_number) == list(range(1, len(sheets) + 1)), [s["sheet_number"] for s in sheets]
    assert by_number[1]["previous"] is None
    for n in range(2, len(sheets) + 1):
        before = by_number[n - 1]
        assert by_number[n]["previous"] == {
            "id": before["id"],
            "sheet_number": n - 1,
            "tree_size": before["tree_size"],
            "root_hash": before["root_hash"],
        }


async def test_three_treasurers_publishing_at_once_get_consecutive_sheets(
    world: World, live_server: LiveServer
) -> None:
    code = await _project(world)
    async with httpx.AsyncClient(base_url=live_server.base_url, timeout=120) as client:
        results = await asyncio.gather(*(_publish(client, world, code, new_key()) for _ in range(3)))
        statuses = [r.status_code for r, _ in results]
        assert statuses == [201, 201, 201], [(r.status_code, r.text[:200]) for r, _ in results]
        published = [r.json() for r, _ in results]
        assert sorted(s["sheet_number"] for s in published) == [1, 2, 3]
        assert len({s["id"] for s in published}) == 3
        sheets = await _sheets(client, code)
        assert sorted(s["id"] for s in sheets) == sorted(s["id"] for s in published)
        _assert_chain(sheets)
        for sheet in published:  # each stored PDF is served as published
            pdf = await client.get(sheet["pdf_url"])
            assert pdf.status_code == 200 and pdf.headers["etag"] == f'"{sheet["pdf_sha256"]}"'


async def test_copies_of_one_publish_record_one_sheet_and_all_get_its_answer(
    world: World, live_server: LiveServer
) -> None:
    """Three copies of one request (a double-tapped button, a client's retry) race each other and
    a second treasurer's publish: one sheet per key, every copy answered 201 with the same bytes,
    exactly one not marked as a replay."""
    code = await _project(world)
    key, other_key = new_key(), new_key()
    async with httpx.AsyncClient(base_url=live_server.base_url, timeout=120) as client:
        results = await asyncio.gather(
            _publish(client, world, code, key),
            _publish(client, world, code, other_key),
            _publish(client, world, code, key),
            _publish(client, world, code, key),
        )
        assert all(r.status_code == 201 for r, _ in results), [(r.status_code, r.text[:200]) for r, _ in results]
        copies = [results[0][0], results[2][0], results[3][0]]
        assert len({c.content for c in copies}) == 1, "every copy gets the first one's exact body"
        assert sorted(c.headers.get("idempotent-replayed", "") for c in copies) == ["", "true", "true"]
        sheets = await _sheets(client, code)
        assert len(sheets) == 2
        assert {s["id"] for s in sheets} == {copies[0].json()["id"], results[1][0].json()["id"]}
        _assert_chain(sheets)
    print(f"409 idempotency_in_flight answers retried: {sum(n for _, n in results)}")


# -- the same, step by step: a publish held inside its render, what others get meanwhile ------------


class Paused:
    """A sheet maker (the real renderer) that stops before rendering until released, so a test
    can hold a publish inside its transaction and look at what other publishers get."""

    def __init__(self, renderer: PdfRenderer) -> None:
        self.renderer = renderer
        self.entered = asyncio.Event()
        self.go_on = asyncio.Event()

    async def __call__(self, conn: AsyncConnection, snap: SheetSnapshot) -> bytes:
        self.entered.set()
        await self.go_on.wait()
        return await pdf_maker(self.renderer, "http://127.0.0.1")(conn, snap)


def _idem(key: str, body: bytes = b"same") -> IdempotencyRequest:
    return IdempotencyRequest("publisher-test", key, fingerprint(b"POST", b"/disclosures", body))


async def _lock_free(database: Database, sql: str, *args: Any) -> bool:
    """Whether nobody holds the advisory lock (taken and given back at once on a fresh session)."""
    conn = await asyncpg.connect(dsn(database.urls.app))
    try:
        got = bool(await conn.fetchval(sql.replace("pg_advisory_", "pg_try_advisory_"), *args))
        if got:
            await conn.execute("SELECT pg_advisory_unlock_all()")
        return got
    finally:
        await conn.close()


async def _no_lock_left(database: Database, project: str, key: str) -> bool:
    project_free = await _lock_free(
        database, "SELECT pg_advisory_lock(hashtextextended('disclosures:' || $1, 11))", project
    )
    key_free = await _lock_free(
        database, "SELECT pg_advisory_lock(hashtextextended($1 || chr(31) || $2, 7))", "publisher-test", key
    )
    return project_free and key_free


async def test_a_publisher_waits_for_the_one_in_its_render_and_numbers_after_it(
    engine: AsyncEngine, database: Database
) -> None:
    project = await make_project(engine)
    draft = DisclosureDraft(period_start=today() - timedelta(days=30), period_end=today())
    first_key, second_key = new_key(), new_key()
    async with PdfRenderer(max_concurrent=2, mode="thread") as renderer:
        held, free = Paused(renderer), Paused(renderer)
        free.go_on.set()

        def publish(make: Paused, key: str, body: bytes = b"same") -> Any:
            return publish_disclosure(
                engine,
                project.code,
                draft,
                published_by="t",
                make_pdf=make,
                render=lambda d: {"id": d.id, "n": d.sheet_number, "prev": d.previous.id if d.previous else None},
                idempotency=_idem(key, body),
            )

        first = asyncio.create_task(publish(held, first_key))
        await asyncio.wait_for(held.entered.wait(), 60)
        # A copy of the first request while it is in flight: 409 at once, nothing waits.
        with pytest.raises(IdempotencyInFlight):
            await publish(free, first_key)
        # Another treasurer's publish queues behind the first, without taking a snapshot yet.
        second = asyncio.create_task(publish(free, second_key))
        await asyncio.sleep(0.5)
        assert not second.done() and not free.entered.is_set()
        held.go_on.set()
        (first_stored, first_replayed), (second_stored, second_replayed) = await asyncio.gather(first, second)
        assert not first_replayed and not second_replayed
        one, two = json.loads(first_stored.body), json.loads(second_stored.body)
        assert (one["n"], two["n"]) == (1, 2) and two["prev"] == one["id"] and one["prev"] is None
        # The copy sent after the first committed gets its exact answer back.
        replay, replayed = await publish(free, first_key)
        assert replayed and (replay.status, replay.body) == (first_stored.status, first_stored.body)
        with pytest.raises(IdempotencyKeyReused):
            await publish(free, first_key, b"different")
    assert await _no_lock_left(database, project.code, first_key)
    assert await _no_lock_left(database, project.code, second_key)


async def test_a_cancelled_or_failed_publish_leaves_no_lock_and_no_sheet(
    engine: AsyncEngine, database: Database
) -> None:
    project = await make_project(engine)
    draft = DisclosureDraft(period_start=today() - timedelta(days=30), period_end=today())
    async with PdfRenderer(max_concurrent=1, mode="thread") as renderer:
        held = Paused(renderer)
        key = new_key()
        task = asyncio.create_task(
            publish_disclosure(
                engine,
                project.code,
                draft,
                published_by="t",
                make_pdf=held,
                render=lambda d: {},
                idempotency=_idem(key),
            )
        )
        await asyncio.wait_for(held.entered.wait(), 60)
        assert not await _no_lock_left(database, project.code, key), "the publish holds its locks"
        task.cancel()  # the client went away mid-publish
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await _no_lock_left(database, project.code, key)

        async def broken(conn: AsyncConnection, snap: SheetSnapshot) -> bytes:
            raise ValidationFailed.on("period_start", "无法生成")

        with pytest.raises(ValidationFailed):
            await publish_disclosure(
                engine,
                project.code,
                draft,
                published_by="t",
                make_pdf=broken,
                render=lambda d: {},
                idempotency=_idem(key),
            )
        assert await _no_lock_left(database, project.code, key)
        # Nothing was stored, so the same key now publishes sheet 1.
        free = Paused(renderer)
        free.go_on.set()
        stored, replayed = await publish_disclosure(
            engine,
            project.code,
            draft,
            published_by="t",
            make_pdf=free,
            render=lambda d: {"n": d.sheet_number},
            idempotency=_idem(key),
        )
        assert not replayed and json.loads(stored.body) == {"n": 1}
    assert await _no_lock_left(database, project.code, key)
