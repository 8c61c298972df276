from __future__ import annotations

from litestar import Request, Response, get
from litestar.openapi.datastructures import ResponseSpec
from sqlalchemy import text

from api.schemas import HealthOut, ReplicaOut
from ledger.database import current_revision, head_revision


@get("/healthz", tags=["health"], summary="进程存活", include_in_schema=True)
async def healthz() -> HealthOut:
    return HealthOut(status="ok")


@get(
    "/readyz",
    tags=["health"],
    summary="数据库可达且已迁移到最新版本；列出只读副本及其延迟",
    responses={503: ResponseSpec(HealthOut, description="未就绪")},
)
async def readyz(request: Request) -> Response[HealthOut]:
    engine = getattr(request.app.state, "engine", None)
    head = head_revision()
    try:
        async with engine.connect() as conn:  # type: ignore[union-attr]
            await conn.execute(text("SELECT 1"))
        revision = await current_revision(engine)  # type: ignore[arg-type]
    except Exception:
        return Response(HealthOut(status="database_unreachable", head=head), status_code=503)
    if revision != head:
        return Response(HealthOut(status="not_migrated", revision=revision, head=head), status_code=503)
    # Replicas are reported, never a reason to be unready: public reads fall back to the primary.
    reads = getattr(request.app.state, "reads", None)
    replicas = [ReplicaOut(**r) for r in reads.report()] if reads is not None else None
    return Response(HealthOut(status="ready", revision=revision, head=head, replicas=replicas), status_code=200)
