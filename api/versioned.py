"""Public reads keyed by the project's version: ETag/304 and a small in-process cache of bodies.

What a project's public reads show (summary, entries, one entry, its pages) changes only with its
version (:func:`ledger.projects.project_state`: tree head, the project's row, decisions, sheets,
erasures, award policy, 共评 and 进展公开). Every request reads the version — one small indexed
read — and then answers:

* ``304`` when ``If-None-Match`` holds the ETag of (URL, version, masked or not);
* the bytes cached in this process for that ETag;
* or builds the body (the full reads), caches it, and sends it — one build per ETag, shared by
  every reader who misses while it runs.

Nothing is served without reading the version *after* the request arrived, so a read that follows
an acknowledged append always sees it (a cache that could serve a stale balance would be a bug).
Each worker process has its own cache; there is nothing to invalidate: a new version is a new key,
old keys fall out of the LRU.

Readers that arrive while a version read of the same project is in flight do not join it (it
began before them, and might predate a commit they have seen): they share the *next* read, which
starts when the current one ends. A burst of phones costs two small queries, not one each.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

from litestar import Request, Response
from litestar.serialization import encode_json
from sqlalchemy.ext.asyncio import AsyncEngine

from ledger.projects import ProjectState, project_state

BODIES_CACHED_MAX = 512  # bodies kept per process (pages about 15 KB, JSON pages about 40 KB)
JSON = "application/json"


class Bodies:
    """An LRU of response bodies by ETag, each built once however many readers miss it at once.

    When a project's version changes (an append), every reader of a popular page misses at the
    same moment. Without sharing, each built the body (a full read and its JSON) while more
    readers kept arriving and missing too: the first second of each new page or version had
    a p99 of 75 ms in bench/reads.py, where a shared build keeps it at 5–7 ms. A build is keyed
    by the ETag, which names everything the body depends on, so sharing it is as safe as caching
    it; it runs as its own task, so a reader who leaves does not cancel it for the others."""

    def __init__(self, size: int = BODIES_CACHED_MAX) -> None:
        self.size = size
        self._bodies: OrderedDict[str, bytes] = OrderedDict()
        self._building: dict[str, asyncio.Task[bytes]] = {}

    def get(self, etag: str) -> bytes | None:
        body = self._bodies.get(etag)
        if body is not None:
            self._bodies.move_to_end(etag)
        return body

    def put(self, etag: str, body: bytes) -> None:
        self._bodies[etag] = body
        self._bodies.move_to_end(etag)
        while len(self._bodies) > self.size:
            self._bodies.popitem(last=False)

    async def get_or_build(self, etag: str, build: Callable[[], Awaitable[bytes]]) -> bytes:
        """The cached body, or the one being built for this ETag, or a new build (then cached).
        A build that raises (a missing entry: 404) raises for every reader that shared it and
        caches nothing."""
        body = self.get(etag)
        if body is not None:
            return body
        task = self._building.get(etag)
        if task is None:
            task = asyncio.ensure_future(self._build(etag, build))
            self._building[etag] = task
            task.add_done_callback(_retrieved)
        return await asyncio.shield(task)

    async def _build(self, etag: str, build: Callable[[], Awaitable[bytes]]) -> bytes:
        try:
            body = await build()
            self.put(etag, body)
            return body
        finally:
            del self._building[etag]


def _retrieved(task: asyncio.Task[bytes]) -> None:
    # Every reader may have left before a build failed: nobody is there to be told, and no
    # "exception was never retrieved" warning should say otherwise.
    if not task.cancelled():
        task.exception()


class _Slot:
    __slots__ = ("next",)

    def __init__(self) -> None:
        self.next: asyncio.Future[ProjectState] | None = None


class VersionReads:
    """Shared version reads that always start after every reader who shares them arrived."""

    def __init__(self) -> None:
        # By engine too: a public read served by a replica never shares a version read with a
        # caller who reads the primary (its own writes must be visible to it).
        self._slots: dict[tuple[int, str], _Slot] = {}
        self._runners: set[asyncio.Task[None]] = set()

    async def get(self, engine: AsyncEngine, project: str) -> ProjectState:
        slot = self._slots.get((id(engine), project))
        if slot is None:
            slot = self._slots[(id(engine), project)] = _Slot()
            runner = asyncio.create_task(self._run(engine, project, slot))
            self._runners.add(runner)
            runner.add_done_callback(self._runners.discard)
        if slot.next is None:
            slot.next = asyncio.get_running_loop().create_future()
        return await asyncio.shield(slot.next)

    async def _run(self, engine: AsyncEngine, project: str, slot: _Slot) -> None:
        try:
            while slot.next is not None:
                # Readers arriving from here on wait for the next read: this one starts now.
                future, slot.next = slot.next, None
                try:
                    async with engine.connect() as conn:
                        state = await project_state(conn, project)
                except BaseException as exc:
                    future.set_exception(exc)
                    future.exception()  # retrieved: no "never retrieved" warning when nobody waits
                    if not isinstance(exc, Exception):
                        raise
                else:
                    future.set_result(state)
        finally:
            if slot.next is not None:  # cancelled with readers queued: let them fail, not hang
                slot.next.cancel()
            del self._slots[(id(engine), project)]


def _state(request: Request, name: str, factory: Callable[[], Any]) -> Any:
    state = request.app.state
    if name not in state:
        state[name] = factory()
    return state[name]


def version_reads(request: Request) -> VersionReads:
    reads: VersionReads = _state(request, "project_versions", VersionReads)
    return reads


def bodies(request: Request) -> Bodies:
    cached: Bodies = _state(request, "versioned_bodies", Bodies)
    return cached


def etag_of(request: Request, *parts: str) -> str:
    key = "|".join((request.url.path, request.url.query, *parts))
    return f'"{hashlib.sha256(key.encode()).hexdigest()[:32]}"'


def matches(request: Request, etag: str) -> bool:
    header = request.headers.get("if-none-match")
    if not header:
        return False
    return header.strip() == "*" or etag in (t.strip().removeprefix("W/") for t in header.split(","))


async def versioned(
    request: Request,
    engine: AsyncEngine,
    project: str,
    build: Callable[[ProjectState], Awaitable[bytes]],
    *,
    media_type: str,
    key: Callable[[ProjectState], tuple[str, ...]] = lambda _: (),
    cache_control: Callable[[ProjectState], str] = lambda _: "no-cache",
) -> Response[bytes]:
    """The body at this URL for the project's current version: 304, cached bytes, or built.
    ``key`` adds what else the body depends on (masked or not, the day); ``build`` raises for a
    missing object (nothing is cached then)."""
    state = await version_reads(request).get(engine, project)
    etag = etag_of(request, state.version, *key(state))
    headers = {"ETag": etag, "Cache-Control": cache_control(state)}
    if matches(request, etag):
        return Response(b"", status_code=304, headers=headers)
    body = await bodies(request).get_or_build(etag, lambda: build(state))
    return Response(body, media_type=media_type, headers=headers)


def json_bytes(model: Any) -> bytes:
    """A response model as Litestar would send it (field aliases, its JSON encoder)."""
    return encode_json(model.model_dump(mode="json", by_alias=True))
