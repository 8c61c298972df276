"""Project pages keyed by what they show: ETag/304 and a small in-process cache of rendered HTML.

A project's pages change only with its version (``ledger.projects.project_state``: tree head,
stage, decisions, sheets, erasures) and with the calendar day (a sheet's 公示中 turns 公示期满).
One small read gives the version; a phone that has the page gets 304, any other reader gets the
bytes rendered for the first one. Residents arrive in bursts (a QR code on the lobby's board, a
link in the WeChat group), all reading the same few pages. The machinery (and why a burst shares
a version read that starts after it arrived, never one already in flight) is api/versioned.py.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from litestar import Request, Response
from sqlalchemy.ext.asyncio import AsyncEngine

from api.versioned import versioned
from ledger.canonical import SHANGHAI
from ledger.projects import ProjectState

HTML = "text/html; charset=utf-8"

Build = Callable[[], Awaitable[tuple[str, dict[str, Any]]]]


async def project_page(request: Request, engine: AsyncEngine, project: str, build: Build) -> Response[bytes]:
    """The page at this URL for this project version: 304, cached bytes, or built and rendered."""
    today = datetime.now(SHANGHAI).date().isoformat()

    async def render(_: ProjectState) -> bytes:
        template, context = await build()
        engine_ = request.app.template_engine
        assert engine_ is not None, "the app is built with template_config"
        return engine_.get_template(template).render(**context).encode()

    return await versioned(request, engine, project, render, media_type=HTML, key=lambda _: ("page", today))
