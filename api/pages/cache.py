"""Project pages keyed by what they show: ETag/304 and a small in-process cache of rendered HTML.

A project's pages change only with its version (``ledger.projects.project_version``: tree head,
stage, decisions, sheets, erasures) and with the calendar day (a sheet's 公示中 turns 公示期满).
One small read gives the version; a phone that has the page gets 304, any other reader gets the
bytes rendered for the first one. Residents arrive in bursts (a QR code on the lobby's board, a
link in the WeChat group), all reading the same few pages.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from litestar import Request, Response
from sqlalchemy.ext.asyncio import AsyncEngine

from ledger.canonical import SHANGHAI
from ledger.projects import project_version

PAGES_CACHED_MAX = 256  # rendered pages kept (about 15 KB each)
HTML = "text/html; charset=utf-8"

Build = Callable[[], Awaitable[tuple[str, dict[str, Any]]]]


class RenderedPages:
    def __init__(self, size: int = PAGES_CACHED_MAX) -> None:
        self.size = size
        self._pages: OrderedDict[str, bytes] = OrderedDict()

    def get(self, etag: str) -> bytes | None:
        body = self._pages.get(etag)
        if body is not None:
            self._pages.move_to_end(etag)
        return body

    def put(self, etag: str, body: bytes) -> None:
        self._pages[etag] = body
        self._pages.move_to_end(etag)
        while len(self._pages) > self.size:
            self._pages.popitem(last=False)


class VersionReads:
    """Readers who ask for a project's version while a read of it is in flight share that read.
    A burst of phones costs one small query instead of one each, and no answer is older than the
    moment the shared read began."""

    def __init__(self) -> None:
        self._in_flight: dict[str, asyncio.Future[str]] = {}

    async def get(self, engine: AsyncEngine, project: str) -> str:
        pending = self._in_flight.get(project)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._in_flight[project] = future
        try:
            version = await project_version(engine, project)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: no "never retrieved" warning when nobody shared it
            raise
        else:
            future.set_result(version)
            return version
        finally:
            del self._in_flight[project]


def _versions(request: Request) -> VersionReads:
    state = request.app.state
    if "project_versions" not in state:
        state.project_versions = VersionReads()
    versions: VersionReads = state.project_versions
    return versions


def _pages(request: Request) -> RenderedPages:
    state = request.app.state
    if "rendered_pages" not in state:
        state.rendered_pages = RenderedPages()
    pages: RenderedPages = state.rendered_pages
    return pages


async def project_page(request: Request, engine: AsyncEngine, project: str, build: Build) -> Response[bytes]:
    """The page at this URL for this project version: 304, cached bytes, or built and rendered."""
    version = await _versions(request).get(engine, project)
    today = datetime.now(SHANGHAI).date().isoformat()
    key = f"{request.url.path}?{request.url.query}|{version}|{today}"
    etag = f'"{hashlib.sha256(key.encode()).hexdigest()[:32]}"'
    headers = {"ETag": etag, "Cache-Control": "no-cache"}
    if etag in request.headers.get("if-none-match", ""):
        return Response(b"", status_code=304, headers=headers)
    pages = _pages(request)
    body = pages.get(etag)
    if body is None:
        template, context = await build()
        engine_ = request.app.template_engine
        assert engine_ is not None, "the app is built with template_config"
        body = engine_.get_template(template).render(**context).encode()
        pages.put(etag, body)
    return Response(body, media_type=HTML, headers=headers)
