"""The one place the web application is assembled."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager, suppress
from datetime import date
from typing import Any

import anyio
from litestar import Litestar, Request, Response, Router, get
from litestar.di import Provide
from litestar.exceptions import TooManyRequestsException
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme
from litestar.plugins.pydantic import PydanticPlugin
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from sqlalchemy.ext.asyncio import AsyncEngine

from api import fast_append
from api.auth import Caller, caller_of
from api.db import Db, engine_for, provide_db
from api.errors import EXCEPTION_HANDLERS
from api.http import JSON_BODY_MAX, WORKSPACE_COOKIE, reject_nul_in_url
from api.logging import configure_logging
from api.openapi import build_openapi
from api.pages import pages_router, static_router, template_config
from api.routes import (
    attachments,
    awards,
    communities,
    contributors,
    decisions,
    disclosures,
    entries,
    evaluations,
    health,
    imports,
    ledger_log,
    pledges,
    progress,
    tokens,
    vouchers,
    witnesses,
)
from api.settings import Settings, get_settings
from api.sheets import pdf_maker
from api.workspace import workspace_router
from ledger import rate_limit
from ledger.database import DatabaseRuntime, create_engine, ensure_app_role_owns_nothing, redact, upgrade
from ledger.disclosures import DisclosureDraft, publish_disclosure
from ledger.replicas import ReadReplicas, parse_read_urls
from ledger.tree import VerificationCache
from reports.render import PdfRenderer, check_cjk_font

log = logging.getLogger("api")

API_V1_ROUTES = [
    *communities.ROUTES,
    *entries.ROUTES,
    *ledger_log.ROUTES,
    *tokens.ROUTES,
    *contributors.ROUTES,
    *decisions.ROUTES,
    *disclosures.ROUTES,
    *vouchers.ROUTES,
    *attachments.ROUTES,
    *pledges.ROUTES,
    *imports.ROUTES,
    *awards.ROUTES,
    *witnesses.ROUTES,
    *evaluations.ROUTES,
    *progress.ROUTES,
]


def _is_public_write(request: Request) -> bool:
    """Anonymous writes (objections, evaluations, cosignatures) are rate limited per client address."""
    return request.method == "POST" and bool(request.route_handler.opt.get("public_write"))


async def _limit_public_writes(request: Request) -> None:
    """The limit is held in PostgreSQL (ledger/rate_limit.py): every worker process takes from the
    same budget. Keyed on the connection's address, never on a client-supplied header."""
    settings: Settings = request.app.state.settings
    address = request.client.host if request.client else "unknown"
    wait = await rate_limit.take(
        request.app.state.engine,
        f"{settings.rate_limit_namespace}|public_write|{address}",
        settings.public_write_rate_per_minute,
    )
    if wait is not None:
        raise TooManyRequestsException(headers={"Retry-After": str(int(wait))})


def _fence_staff_writes(app: ASGIApp) -> ASGIApp:
    """A write by staff (a token, a workspace session) that succeeded fences the project it names
    from the read replicas until they have replayed it (ledger/replicas.py), noted before the
    response leaves, so any read the writer makes after it is fenced."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        reads: ReadReplicas | None = scope["app"].state.get("reads")
        if reads is None or scope["type"] != "http" or scope.get("method") in ("GET", "HEAD", "OPTIONS"):
            await app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        staff = b"authorization" in headers or WORKSPACE_COOKIE.encode() in headers.get(b"cookie", b"")

        async def noting(message: Message) -> None:
            if staff and message["type"] == "http.response.start" and message["status"] < 400:
                reads.note_write(scope.get("path_params", {}).get("project"))
            await send(message)

        await app(scope, receive, noting)

    return middleware


def _allowed_methods(request: Request) -> str:
    """Every method the matched path serves. Litestar's own OPTIONS answer is built when the first
    handler of a path registers, so a path whose GET and POST are separate handlers would announce
    only one of them."""
    methods = {"OPTIONS"}
    for path in request.route_handler.paths:
        methods |= set(request.app.route_handler_method_map.get(path, {}))
    return ", ".join(sorted(methods))


async def _resolve_token_on_reads(request: Request) -> Response[None] | None:
    """A GET with a bad token is 401 even on public routes (writes check it after parsing, to keep
    API.md's precedence of 400 over 401)."""
    reject_nul_in_url(request)
    if _is_public_write(request):
        await _limit_public_writes(request)
    if request.method == "OPTIONS":
        return Response(None, status_code=204, headers={"Allow": _allowed_methods(request)})
    # Health probes answer whatever header a load balancer sends; only the API checks tokens.
    if request.method == "GET" and "authorization" in request.headers and request.url.path.startswith("/api/"):
        await caller_of(request)
    return None


@get("/schema/openapi.json", include_in_schema=False, media_type="application/vnd.oai.openapi+json")
async def openapi_json(request: Request) -> dict[str, Any]:
    cached = request.app.state.get("openapi_document")
    if cached is None:
        cached = build_openapi(request.app)
        request.app.state.openapi_document = cached
    return cached


async def _run_logged(work: Awaitable[None]) -> None:
    try:
        await work
    except Exception:
        log.exception("demo sheets could not be published")


def _demo_publisher(engine: AsyncEngine, renderer: PdfRenderer, base_url: str) -> Any:
    """The demo's sheets are published like any other: rendered once, stored, pinned to the root."""

    make = pdf_maker(renderer, base_url)

    async def publish(project: str, period_start: date, period_end: date) -> None:
        await publish_disclosure(
            engine,
            project,
            DisclosureDraft(period_start=period_start, period_end=period_end),
            published_by="demo",
            make_pdf=make,
            render=lambda d: {"id": d.id},
        )

    return publish


class LedgerApp(Litestar):
    """The service's Litestar app, with the single append's fast path in front of its router
    (api/fast_append.py: a known treasurer's append answered without Litestar's request cycle;
    anything else goes on to Litestar as it came)."""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            project_code = fast_append.project_of(scope)
            if project_code is not None:
                await fast_append.serve(self, project_code, scope, receive, send, downstream=super().__call__)
                return
        await super().__call__(scope, receive, send)


def create_app(settings: Settings | None = None) -> Litestar:
    settings = settings or get_settings()
    configure_logging(settings.log_level, settings.log_format)
    # Without a CJK font every 汉字 on a sheet would print as an empty box: refuse to start.
    check_cjk_font()
    runtime = DatabaseRuntime(settings)
    renderer = PdfRenderer(max_concurrent=settings.pdf_render_concurrency, mode=settings.pdf_render_mode)

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        urls = await asyncio.to_thread(runtime.start)
        try:
            if settings.auto_migrate:
                await asyncio.to_thread(upgrade, urls.owner, settings.app_role)
        except BaseException:
            await asyncio.to_thread(runtime.stop)
            raise
        engine = create_engine(urls.app, settings)
        try:
            await ensure_app_role_owns_nothing(engine)
        except BaseException:
            await engine.dispose()
            await asyncio.to_thread(runtime.stop)
            raise
        app.state.engine = engine
        read_urls = parse_read_urls(settings.read_database_url)
        reads = ReadReplicas(engine, read_urls, settings) if read_urls else None
        if reads is not None:
            # Never fatal: a replica that is down at start-up is skipped until it answers.
            await reads.start()
        app.state.reads = reads
        app.state.settings = settings
        app.state.renderer = renderer
        # Created here, on the loop that serves the requests: XLSX exports built at once.
        app.state.xlsx_limiter = anyio.CapacityLimiter(entries.XLSX_BUILDS_MAX)
        # Verifications by tree size, in this process's memory (ledger/tree.py says why).
        app.state.verify_cache = VerificationCache()
        demo_later: asyncio.Task[None] | None = None
        # What exists now (modules, the app, its routes and models, the pool) lives as long as the
        # process: out of the cyclic collector's sight, a full collection under load has a
        # fraction of the objects to walk (those pauses were the p99 of one worker's reads).
        gc.freeze()
        try:
            log.info("ledger ready on %s", redact(urls.app))
            if settings.demo:
                from api.demo import load_demo, load_demo_later

                if await load_demo(engine, defer_later=True):
                    # Two sheets take seconds to render: the service is ready meanwhile.
                    demo_later = asyncio.create_task(
                        _run_logged(
                            load_demo_later(engine, _demo_publisher(engine, renderer, settings.public_base_url))
                        )
                    )
            yield
        finally:
            if demo_later is not None and not demo_later.done():
                demo_later.cancel()
                with suppress(asyncio.CancelledError):
                    await demo_later
            await renderer.aclose()
            if reads is not None:
                await reads.close()
            await engine.dispose()
            await asyncio.to_thread(runtime.stop)

    api_v1 = Router(path="/api/v1", route_handlers=API_V1_ROUTES)
    return LedgerApp(
        route_handlers=[
            health.healthz,
            health.readyz,
            openapi_json,
            api_v1,
            workspace_router(),
            pages_router(),
            static_router(),
        ],
        template_config=template_config(),
        lifespan=[lifespan],
        dependencies={
            "engine": Provide(engine_for, sync_to_thread=False),
            # The request's connections, opened lazily from the same engine (api/db.py).
            "db": Provide(provide_db, sync_to_thread=False),
            "caller": Provide(caller_of),
        },
        before_request=_resolve_token_on_reads,
        middleware=[_fence_staff_writes],
        exception_handlers=EXCEPTION_HANDLERS,  # type: ignore[arg-type]
        request_max_body_size=JSON_BODY_MAX,
        openapi_config=OpenAPIConfig(
            title="共同缔造公开账本 API",
            version="1.0.0",
            description="居民众筹、以奖代补与项目支出的只增不改、可公开验证的账本。约定见 API.md。",
            path="/_litestar_schema",
            enabled_endpoints=set(),
            components=Components(
                security_schemes={"bearer": SecurityScheme(type="http", scheme="bearer", description="访问令牌")}
            ),
        ),
        signature_namespace={"Caller": Caller, "AsyncEngine": AsyncEngine, "Db": Db},
        # Responses use field aliases: ConsistencyOut's ``from_`` is ``from`` on the wire (API.md).
        plugins=[PydanticPlugin(prefer_alias=True)],
        debug=False,
        # Logging is configured once, by configure_logging (structlog): Litestar must not replace it.
        logging_config=None,
    )
