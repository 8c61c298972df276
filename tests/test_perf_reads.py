"""Public reads keyed by the project's version (api/versioned.py): ETag/304, the in-process body
cache, and that no cached body is ever older than an append the reader has seen acknowledged.
Real app, real PostgreSQL; nothing here is timed."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import httpx
import pytest
from sqlalchemy import event

from tests.api_support import Api, LiveServer, World, contribution, new_key, past


def _paths(project: str) -> tuple[str, str, str]:
    return (
        f"/api/v1/projects/{project}",
        f"/api/v1/projects/{project}/entries",
        f"/api/v1/projects/{project}/entries/1",
    )


async def test_public_reads_answer_304_until_the_project_changes(api: Api, world: World) -> None:
    project = await world.project()
    await world.entry(project, contribution("200", "张三"))
    etags = {}
    for path in _paths(project):
        first = await api.get(path)
        etag = first.headers["etag"]
        assert first.status_code == 200 and first.headers["cache-control"] == "no-cache"
        assert first.headers["content-type"].startswith("application/json")
        again = await api.get(path, headers={"If-None-Match": etag})
        assert again.status_code == 304 and again.content == b"" and again.headers["etag"] == etag
        assert (await api.get(path)).content == first.content  # from the cache: the same bytes
        etags[path] = etag
    # Another page of the same list is another resource.
    assert (await api.get(_paths(project)[1], params={"limit": 1})).headers["etag"] != etags[_paths(project)[1]]

    await world.entry(project, contribution("300", "李四"))
    summary, entries, entry = _paths(project)
    changed = await api.get(summary, headers={"If-None-Match": etags[summary]})
    assert changed.status_code == 200 and changed.headers["etag"] != etags[summary]
    assert changed.json()["summary"]["contributed"] == "500.00" and changed.json()["summary"]["balance"] == "500.00"
    listed = await api.get(entries, headers={"If-None-Match": etags[entries]})
    assert listed.status_code == 200 and [e["seq"] for e in listed.json()["items"]] == [1, 2]
    # Entry 1 shows nothing new, but a later reversal would: its key is the project's version too.
    assert (await api.get(entry, headers={"If-None-Match": etags[entry]})).status_code == 200

    # A stage change touches no entry: it changes the version (the project's row) all the same.
    before = (await api.get(summary)).headers["etag"]
    decision = {"stage": "proposal", "held_on": past(), "body": "居委会"}
    made = await api.post(f"/api/v1/projects/{project}/decisions", decision, token=world.treasurer, key=new_key())
    assert made.status_code == 201, made.text
    after = await api.get(summary, headers={"If-None-Match": before})
    assert after.status_code == 200 and after.json()["stage"] == "proposal"


async def test_unmasked_reads_have_their_own_etag_and_stay_private(api: Api, world: World) -> None:
    project = await world.project()
    await world.entry(project, contribution("200", "张三"))
    entries = f"/api/v1/projects/{project}/entries"
    public = await api.get(entries)
    staff = await api.get(entries, token=world.treasurer)
    assert public.headers["etag"] != staff.headers["etag"]
    assert staff.headers["cache-control"] == "private, no-cache"
    assert staff.json()["items"][0]["contributor"]["name"] == "张三"
    assert public.json()["items"][0]["contributor"]["name"] != "张三"
    # The public ETag never unlocks the unmasked body, nor the other way round.
    crossed = await api.get(entries, token=world.treasurer, headers={"If-None-Match": public.headers["etag"]})
    assert crossed.status_code == 200 and crossed.json()["items"][0]["contributor"]["name"] == "张三"
    # A bad token is still 401, cached body or not.
    assert (await api.get(entries, headers={"Authorization": "Bearer nope"})).status_code == 401
    assert (await api.get(f"/api/v1/projects/{project}", headers={"Authorization": "Bearer nope"})).status_code == 401


async def test_missing_things_are_404_and_nothing_is_cached(api: Api, world: World) -> None:
    project = await world.project()
    assert (await api.get("/api/v1/projects/no-such-project")).status_code == 404
    assert (await api.get(f"/api/v1/projects/{project}/entries/1")).status_code == 404
    await world.entry(project, contribution("1", "张三"))
    assert (await api.get(f"/api/v1/projects/{project}/entries/1")).status_code == 200


async def test_a_cached_summary_is_never_stale_after_an_append(world: World, live_server: LiveServer) -> None:
    """Readers hammer the summary (so version reads are always in flight and bodies cached) while a
    writer appends; after each acknowledged append, a fresh read shows it: balance and tree size."""
    project = await world.project()
    stop = asyncio.Event()
    reads = 0

    async def reader(client: httpx.AsyncClient) -> None:
        nonlocal reads
        etag = ""
        while not stop.is_set():
            response = await client.get(f"/api/v1/projects/{project}", headers={"If-None-Match": etag})
            assert response.status_code in (200, 304)
            etag = response.headers["etag"]
            reads += 1

    headers = {"Authorization": f"Bearer {world.treasurer}"}
    async with httpx.AsyncClient(base_url=live_server.base_url, timeout=60) as client:
        readers = [asyncio.create_task(reader(client)) for _ in range(6)]
        try:
            total = Decimal(0)
            for i in range(1, 31):
                amount = Decimal(i)
                posted = await client.post(
                    f"/api/v1/projects/{project}/entries",
                    json=contribution(str(amount), f"居民{i}"),
                    headers={**headers, "Idempotency-Key": new_key()},
                )
                assert posted.status_code == 201, posted.text
                total += amount
                seen = (await client.get(f"/api/v1/projects/{project}")).json()["summary"]
                assert Decimal(seen["contributed"]) == total and Decimal(seen["balance"]) == total, (i, seen)
                page = (await client.get(f"/api/v1/projects/{project}/entries", params={"after_seq": i - 1})).json()
                assert [e["seq"] for e in page["items"]] == [i]
        finally:
            stop.set()
            await asyncio.gather(*readers)
    assert reads > 30


@pytest.mark.parametrize("burst", [8])
async def test_a_burst_shares_version_reads_that_start_after_it_arrived(
    world: World, live_server: LiveServer, monkeypatch: pytest.MonkeyPatch, burst: int
) -> None:
    from api import versioned

    project = await world.project()
    reads: list[str] = []
    real = versioned.project_state

    async def counted(conn: object, code: str) -> object:
        reads.append(code)
        await asyncio.sleep(0.05)  # the whole burst arrives while one read is in flight
        return await real(conn, code)  # type: ignore[arg-type]

    monkeypatch.setattr(versioned, "project_state", counted)
    async with httpx.AsyncClient(base_url=live_server.base_url) as client:
        done = await asyncio.gather(*(client.get(f"/api/v1/projects/{project}") for _ in range(burst)))
    assert [r.status_code for r in done] == [200] * burst and len({r.headers["etag"] for r in done}) == 1
    assert 1 <= reads.count(project) <= 2


async def test_a_304_or_a_cached_body_checks_out_only_the_version_read(api: Api, api_app: Any, world: World) -> None:
    """The request's ``db`` (api/db.py) opens nothing by itself: a public read answered with 304 or
    from the cache takes one pooled connection, its version read; only a miss opens more."""
    project = await world.project()
    await world.entry(project, contribution("200", "张三"))
    checkouts: list[int] = []

    def counted(*_: object) -> None:
        checkouts.append(1)

    pool = api_app.state.engine.sync_engine
    for path in (*_paths(project), f"/p/{project}", f"/p/{project}/entries"):
        first = await api.get(path)
        assert first.status_code == 200
        event.listen(pool, "checkout", counted)
        try:
            checkouts.clear()
            assert (await api.get(path, headers={"If-None-Match": first.headers["etag"]})).status_code == 304
            after_304 = len(checkouts)
            checkouts.clear()
            assert (await api.get(path)).content == first.content
            after_hit = len(checkouts)
        finally:
            event.remove(pool, "checkout", counted)
        assert (after_304, after_hit) == (1, 1), path


async def test_a_burst_of_misses_builds_each_body_once(
    world: World, live_server: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Readers who miss the cache while a body is being built wait for that build: eight phones
    opening a page just after an append cost one read of the page, not eight."""
    from api.routes import entries as routes

    project = await world.project()
    await world.entry(project, contribution("200", "张三"))
    builds: list[str] = []
    real_list, real_get = routes.list_entries, routes.get_entry

    async def counted_list(*args: Any, **kwargs: Any) -> Any:
        builds.append("page")
        await asyncio.sleep(0.05)  # the whole burst arrives while the page is being built
        return await real_list(*args, **kwargs)

    async def counted_get(*args: Any, **kwargs: Any) -> Any:
        builds.append("entry")
        await asyncio.sleep(0.05)
        return await real_get(*args, **kwargs)

    monkeypatch.setattr(routes, "list_entries", counted_list)
    monkeypatch.setattr(routes, "get_entry", counted_get)
    _, page, entry = _paths(project)
    async with httpx.AsyncClient(base_url=live_server.base_url) as client:
        for path in (page, entry):
            done = await asyncio.gather(*(client.get(path) for _ in range(8)))
            assert [r.status_code for r in done] == [200] * 8
            assert len({r.content for r in done}) == 1
    assert builds == ["page", "entry"]


async def test_a_shared_build_outlives_a_reader_who_leaves_and_failures_are_not_cached() -> None:
    from api.versioned import Bodies

    cache = Bodies()
    started, release = asyncio.Event(), asyncio.Event()
    calls: list[int] = []

    async def slow() -> bytes:
        calls.append(1)
        started.set()
        await release.wait()
        return b"body"

    first = asyncio.create_task(cache.get_or_build("e1", slow))
    await started.wait()
    second = asyncio.create_task(cache.get_or_build("e1", slow))
    await asyncio.sleep(0)
    first.cancel()  # the reader who started the build hangs up
    release.set()
    assert await second == b"body" and first.cancelled()
    assert await cache.get_or_build("e1", slow) == b"body" and calls == [1]  # cached

    async def missing() -> bytes:
        calls.append(2)
        await asyncio.sleep(0.01)
        raise LookupError("no such entry")

    failed = await asyncio.gather(*(cache.get_or_build("e2", missing) for _ in range(3)), return_exceptions=True)
    assert all(isinstance(f, LookupError) for f in failed) and calls.count(2) == 1
    with pytest.raises(LookupError):
        await cache.get_or_build("e2", missing)  # nothing cached: built (and failing) again
    assert calls.count(2) == 2 and cache.get("e2") is None
