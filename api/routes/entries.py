"""Entries: record (treasurer, idempotent), read (public, masked), export (CSV/XLSX)."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Annotated, Any

import anyio
import anyio.from_thread
import anyio.to_thread
from litestar import Request, Response, get, post
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import Parameter, QueryParameter
from litestar.response import Stream
from sqlalchemy.ext.asyncio import AsyncEngine

from api import schemas as s
from api.auth import Caller, caller_of, idempotent_project_write, recheck_remembered
from api.db import Db, db_of
from api.errors import ApiError
from api.http import (
    BATCH_BODY_MAX,
    INT64_MAX,
    JSON_BODY_MAX,
    PAGE_SIZE_DEFAULT,
    Limit,
    PathId,
    clamp_limit,
    dump,
    json_response,
)
from api.presenters import entry_out
from api.routes.common import BEARER, OPTIONAL_BEARER, body_opt, problems, versioned_ok
from api.versioned import JSON, json_bytes, versioned
from ledger import tree
from ledger.canonical import SHANGHAI
from ledger.contributors import ContributorRef
from ledger.drafts import ENTRY_KINDS, EntryDraft
from ledger.entries import append_entries
from ledger.entry_reads import RecordedEntry, count_entries, get_entry, list_entries
from ledger.errors import LedgerError
from ledger.idempotency import JsonText
from ledger.projects import Project, ProjectState, get_project
from reports.exports import XlsxWriter, csv_chunk, csv_header


def to_draft(body: Any) -> EntryDraft:
    """A validated request body → the ledger's draft (money already in fen)."""
    # The body is one of several entry models, each with its own fields: read them from the
    # model's dict. getattr(body, name, None) on a field the model lacks goes through pydantic's
    # __getattr__ and an AttributeError — a twentieth of the single append's CPU.
    fields: dict[str, Any] = body.__dict__
    contributor = fields.get("contributor")
    ref = None
    if contributor is not None:
        if contributor.id is None and contributor.name is None:
            raise ApiError(
                "validation_failed",
                "须提供出资人 id 或姓名",
                [{"field": "contributor", "message": "须提供 id 或 name"}],
            )
        ref = ContributorRef(
            id=contributor.id,
            name=contributor.name,
            household=contributor.household or None,
            type=contributor.type,
            anonymous=contributor.anonymous,
        )
    return EntryDraft(
        kind=body.kind,
        occurred_on=body.occurred_on,
        amount_fen=fields.get("amount"),
        memo=body.memo,
        contributor=ref,
        channel=fields.get("channel"),
        receipt_no=fields.get("receipt_no"),
        grantor=fields.get("grantor"),
        document_no=fields.get("document_no"),
        payee=fields.get("payee"),
        category=fields.get("category"),
        invoice_no=fields.get("invoice_no"),
        description=fields.get("description"),
        payer=fields.get("payer"),
        reverses_seq=fields.get("reverses"),
        reason=fields.get("reason"),
        pledge_seq=fields.get("pledge"),
        cites_award=fields.get("cites_award", False),
        attachments=tuple(dict.fromkeys(body.attachments)),
    )


# Where api/fast_append.py leaves the failure of an append it tried, for create_entry to answer.
APPEND_FAILED = "ledger_append_failed"


@post(
    "/projects/{project:str}/entries",
    tags=["entries"],
    summary="记一笔账（报账员，须带 Idempotency-Key）",
    security=BEARER,
    request_max_body_size=JSON_BODY_MAX,
    opt=body_opt(s.EntryRequest),
    responses={
        201: ResponseSpec(s.EntryOut, description="已记账，附收据（树大小与根哈希）"),
        **problems(400, 401, 403, 404, 409, 413, 422),
    },
)
async def create_entry(request: Request, project: str) -> Response[bytes]:
    # The hottest write and reads take their Db from the request, not by injection (api/db.py).
    db = db_of(request)
    # The fast path (api/fast_append.py) tried this append and it failed: that failure is the
    # answer, told here in API.md's order of errors, without a second attempt.
    failed: Exception | None = request.scope.pop(APPEND_FAILED, None)  # type: ignore[misc]
    write = await idempotent_project_write(request, project, s.EntryRequest, remember=True)
    try:
        draft = to_draft(write.body.root)
        if failed is not None:
            raise failed
        result = await append_entries(
            db.engine,
            project,
            [draft],
            recorded_by=write.caller.scope,
            idempotency=write.idempotency,
            render=entry_body,
            # Authenticated from memory (api/auth.py KnownWriters): the token must still stand
            # when the entry is written.
            live_token=write.caller.token.id if write.remembered and write.caller.token else None,
        )
    except (ApiError, LedgerError):
        if write.remembered:
            # A revoked token is told 401 before anything else, as always (TokenRevoked included:
            # the re-read also makes the worker forget the token).
            await recheck_remembered(request)
        raise
    return json_response(result.status, result.body, replayed=result.replayed)


def entry_body(recorded: list[RecordedEntry]) -> JsonText:
    """A single append's answer, written by pydantic at once (the same bytes as dump() and
    json.dumps, in 18 µs against 28)."""
    return JsonText(entry_out(recorded[0], unmasked=True).model_dump_json(by_alias=True))


@post(
    "/projects/{project:str}/entries/batch",
    tags=["entries"],
    summary="批量导入（全部成功或全部不记）",
    security=BEARER,
    request_max_body_size=BATCH_BODY_MAX,
    opt=body_opt(s.EntryBatchIn),
    responses={
        201: ResponseSpec(s.EntryBatchOut, description="全部已记账"),
        **problems(400, 401, 403, 404, 409, 413, 422),
    },
)
async def create_entries_batch(request: Request, db: Db, project: str) -> Response[bytes]:
    write = await idempotent_project_write(request, project, s.EntryBatchIn)
    drafts = []
    for i, item in enumerate(write.body.entries):
        try:
            drafts.append(to_draft(item))
        except ApiError as exc:
            exc.errors = [{"field": f"entries[{i}].{e['field']}", "message": e["message"]} for e in exc.errors]
            raise
    try:
        result = await append_entries(
            db.engine,
            project,
            drafts,
            recorded_by=write.caller.scope,
            idempotency=write.idempotency,
            render=lambda recorded: _batch_body(recorded),
        )
    except LedgerError as exc:
        # API.md: a failed batch is a 422 naming the entry, e.g. entries[41].amount.
        if exc.index is not None:
            prefixed = exc.with_field_prefix(f"entries[{exc.index}]")
            raise ApiError(
                "validation_failed",
                f"第 {exc.index + 1} 条（entries[{exc.index}]）未能记账：{exc.detail}",
                [{"field": e.field, "message": f"{e.message}（{exc.code}）"} for e in prefixed.errors],
            ) from exc
        raise
    return json_response(result.status, result.body, replayed=result.replayed)


def _batch_body(recorded: list[RecordedEntry]) -> Any:
    last = recorded[-1]
    assert last.root_hash is not None
    return {
        "items": [dump(entry_out(e, unmasked=True)) for e in recorded],
        "tree_size": last.seq,
        "root_hash": last.root_hash.hex(),
    }


def _kind_filter(kind: str | None) -> str | None:
    if kind is not None and kind not in ENTRY_KINDS:
        raise ApiError(
            "validation_failed", "未知的记录类型", [{"field": "kind", "message": f"须为 {', '.join(ENTRY_KINDS)} 之一"}]
        )
    return kind


def _unmasked(caller: Caller, state: ProjectState) -> bool:
    return caller.can_read_unmasked(state.community_id)


async def _versioned_for(
    request: Request, db: Db, project: str, caller: Caller, build: Callable[[ProjectState], Awaitable[bytes]]
) -> Response[bytes]:
    """A JSON read served by the project's version, cached apart for masked and unmasked callers;
    names shown unmasked to the community's own staff are nobody else's: no shared cache keeps them."""
    return await versioned(
        request,
        db.engine,
        project,
        build,
        media_type=JSON,
        key=lambda state: ("unmasked" if _unmasked(caller, state) else "masked",),
        cache_control=lambda state: "private, no-cache" if _unmasked(caller, state) else "no-cache",
    )


@get(
    "/projects/{project:str}/entries",
    tags=["entries"],
    summary="记账凭证列表（公开，姓名脱敏）",
    security=OPTIONAL_BEARER,
    responses={**versioned_ok(s.EntryPage, "一页记账凭证"), **problems(401, 404, 422)},
)
async def list_entries_route(
    request: Request,
    project: str,
    kind: s.EntryKind | None = None,
    after_seq: Annotated[int, Parameter(ge=0, le=INT64_MAX, description="从这个序号之后开始；0 为第一页")] = 0,
    limit: Limit = PAGE_SIZE_DEFAULT,
) -> Response[bytes]:
    # Called, not injected: Litestar's dependency injection costs a hot public read ~10 % of its CPU.
    caller = await caller_of(request)
    db = db_of(request)
    size = clamp_limit(limit)

    async def build(state: ProjectState) -> bytes:
        # Keyset: ``after_seq`` walks the primary key, at any depth the same cost (never OFFSET).
        async with db.connect() as conn:
            items = await list_entries(conn, project, kind=_kind_filter(kind), after_seq=after_seq, limit=size + 1)
        unmasked = _unmasked(caller, state)
        nxt = items[size - 1].seq if len(items) > size else None
        return json_bytes(s.EntryPage(items=[entry_out(e, unmasked=unmasked) for e in items[:size]], next=nxt))

    return await _versioned_for(request, db, project, caller, build)


@get(
    "/projects/{project:str}/entries/{seq:int}",
    tags=["entries"],
    summary="单笔记账凭证与收据",
    security=OPTIONAL_BEARER,
    responses={**versioned_ok(s.EntryOut, "记账凭证与收据"), **problems(401, 404, 422)},
)
async def get_entry_route(request: Request, project: str, seq: PathId) -> Response[bytes]:
    caller = await caller_of(request)
    db = db_of(request)

    async def build(state: ProjectState) -> bytes:
        async with db.connect() as conn:
            entry = await get_entry(conn, project, seq)
            _, root = await tree.root_at(conn, project, entry.seq)
        return json_bytes(entry_out(entry, unmasked=_unmasked(caller, state), receipt_root=root))

    return await _versioned_for(request, db, project, caller, build)


# XLSX exports larger than this are refused (413): Excel opens a million rows, but a sheet that
# large is built for minutes and is no use to a reader. The CSV has no limit: it is streamed.
EXPORT_ROWS_MAX = 100_000
# Entries read per query while exporting; the connection goes back to the pool between batches,
# so a client that reads slowly holds no connection.
EXPORT_BATCH = 1000
# XLSX exports built at once (each in a worker thread); more wait their turn. openpyxl holds the
# GIL while it writes, so more than two would slow every other request of the process.
XLSX_BUILDS_MAX = 2

ExportFrom = Annotated[date | None, QueryParameter(name="from", description="发生日期起（含），YYYY-MM-DD")]
ExportTo = Annotated[date | None, QueryParameter(name="to", description="发生日期止（含），YYYY-MM-DD")]


@dataclass(frozen=True)
class Export:
    """What one export holds: the project's entries up to the tree size when it began (entries
    appended meanwhile wait for the next export), filtered by kind and date."""

    project: Project
    kind: str | None
    occurred_from: date | None
    occurred_to: date | None
    seq_max: int
    unmasked: bool

    async def batches(self, engine: AsyncEngine) -> AsyncGenerator[list[RecordedEntry], None]:
        after = 0
        while True:
            async with engine.connect() as conn:
                page = await list_entries(
                    conn,
                    self.project.code,
                    kind=self.kind,
                    after_seq=after,
                    limit=EXPORT_BATCH,
                    seq_max=self.seq_max,
                    occurred_from=self.occurred_from,
                    occurred_to=self.occurred_to,
                )
            if page:
                yield page
            if len(page) < EXPORT_BATCH:
                return
            after = page[-1].seq

    async def count(self, engine: AsyncEngine) -> int:
        async with engine.connect() as conn:
            return await count_entries(
                conn,
                self.project.code,
                kind=self.kind,
                seq_max=self.seq_max,
                occurred_from=self.occurred_from,
                occurred_to=self.occurred_to,
            )

    def filename(self, suffix: str) -> str:
        return f"{self.project.code}-entries-{datetime.now(SHANGHAI).date().isoformat()}.{suffix}"


async def _export(
    engine: AsyncEngine,
    caller: Caller,
    project: str,
    kind: str | None,
    occurred_from: date | None,
    occurred_to: date | None,
) -> Export:
    async with engine.connect() as conn:
        found = await get_project(conn, project)
    kind = _kind_filter(kind)
    if occurred_from is not None and occurred_to is not None and occurred_from > occurred_to:
        raise ApiError("validation_failed", "起始日期晚于截止日期", [{"field": "from", "message": "须不晚于 to"}])
    async with engine.connect() as conn:
        size = (await tree.head(conn, found.code)).size
    return Export(found, kind, occurred_from, occurred_to, size, caller.can_read_unmasked(found.community_id))


@get(
    "/projects/{project:str}/entries.csv",
    tags=["entries"],
    summary="导出 CSV（UTF-8 带 BOM，Excel 可直接打开；不限行数，边查边传）",
    security=OPTIONAL_BEARER,
    media_type="text/csv",  # Litestar appends "; charset=utf-8" to text/* types
    responses=problems(401, 404, 422),
)
async def entries_csv_route(
    db: Db,
    caller: Caller,
    project: str,
    kind: s.EntryKind | None = None,
    occurred_from: ExportFrom = None,
    occurred_to: ExportTo = None,
) -> Stream:
    export = await _export(db.engine, caller, project, kind, occurred_from, occurred_to)

    # Streamed a batch at a time, so memory stays flat and the event loop serves other requests
    # between batches. Errors are found before the first byte (404, 422); a failure after it
    # breaks the chunked body, so a client never takes a cut file for a whole one.
    async def lines() -> AsyncIterator[bytes]:
        yield csv_header()
        async for batch in export.batches(db.engine):
            yield csv_chunk(batch, unmasked=export.unmasked)

    return Stream(
        lines(),
        media_type="text/csv",  # Litestar appends "; charset=utf-8" to text/* types
        headers={"Content-Disposition": f'attachment; filename="{export.filename("csv")}"'},
    )


XLSX_MEDIA_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


@get(
    "/projects/{project:str}/entries.xlsx",
    tags=["entries"],
    summary=f"导出 Excel 表格（至多 {EXPORT_ROWS_MAX:,} 行，超出须按类型或日期分批）",
    security=OPTIONAL_BEARER,
    media_type=XLSX_MEDIA_TYPE,
    responses=problems(401, 404, 413, 422),
)
async def entries_xlsx_route(
    request: Request,
    db: Db,
    caller: Caller,
    project: str,
    kind: s.EntryKind | None = None,
    occurred_from: ExportFrom = None,
    occurred_to: ExportTo = None,
) -> Response[bytes]:
    export = await _export(db.engine, caller, project, kind, occurred_from, occurred_to)
    rows = await export.count(db.engine)
    if rows > EXPORT_ROWS_MAX:
        raise ApiError(
            "export_too_large",
            f"共 {rows:,} 笔记录，超过 Excel 导出上限 {EXPORT_ROWS_MAX:,} 行，未生成文件。"
            "请按类型（kind=）或发生日期（from=、to=）缩小范围分批导出，或改用 entries.csv（不限行数）。",
            [
                {"field": "kind", "message": "按类型分批，如 kind=contribution"},
                {"field": "from", "message": "按发生日期分批，如 from=2026-01-01&to=2026-06-30"},
            ],
        )
    batches = export.batches(db.engine)

    async def next_batch() -> list[RecordedEntry]:
        return await anext(batches, [])

    def build() -> bytes:
        # In a worker thread: openpyxl is pure Python and would hold the event loop for seconds.
        # Each batch is read on the event loop (the database driver lives there), then written
        # here, so memory holds one batch and the file.
        writer = XlsxWriter(unmasked=export.unmasked, title=export.project.title)
        while batch := anyio.from_thread.run(next_batch):
            writer.append(batch)
        return writer.finish()

    try:
        data = await anyio.to_thread.run_sync(build, limiter=request.app.state.xlsx_limiter)
    finally:
        await batches.aclose()
    return Response(
        data,
        media_type=XLSX_MEDIA_TYPE,
        headers={"Content-Disposition": f'attachment; filename="{export.filename("xlsx")}"'},
    )


ROUTES = [
    create_entry,
    create_entries_batch,
    list_entries_route,
    get_entry_route,
    entries_csv_route,
    entries_xlsx_route,
]
