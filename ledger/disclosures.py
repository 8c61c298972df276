"""Disclosure sheets (公示表): published once, pinned to the Merkle root, open to objections.

Publishing is one REPEATABLE READ transaction, so the tree head, the balances and the entries the
sheet is built from are one snapshot. The PDF is made by a callback (``reports`` renders it; the
ledger never imports a renderer) while the project's publishing lock is held, then stored with
its SHA-256 in an append-only table and served as stored, forever. Publishing the same period
again makes a new sheet (第 N+1 期) that names the previous one.

The publishing lock and the idempotency key are transaction-level advisory locks, tried without
waiting by that transaction's first statement (see :func:`_hold`): a REPEATABLE READ snapshot is
fixed when the transaction's first statement starts, before any lock that statement waits for is
granted, so a publisher that waited inside the transaction would number its sheet from a snapshot
older than the sheet it waited for. A busy project is polled in fresh transactions instead; no
lock outlives a transaction, so publishing works through PgBouncer in transaction mode.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ledger.canonical import SHANGHAI
from ledger.errors import Conflict, IdempotencyInFlight, NotFound, ValidationFailed
from ledger.idempotency import KEY_LOCK_ID, IdempotencyRequest, StoredResponse, claim, response_body, store
from ledger.masking import refuse_personal_numbers
from ledger.projects import Project, get_project

NOTICE_DAYS_DEFAULT = 7
NOTICE_DAYS_MAX = 90
PERIOD_DAYS_MAX = 3660
# How long a publisher waits for another publish of the same project before a 409: rendering a
# sheet takes well under a second for a typical project, seconds for the largest.
PUBLISH_WAIT_S = 60.0
PUBLISH_POLL_S = 0.05


@dataclass(frozen=True)
class DisclosureDraft:
    period_start: date
    period_end: date
    notice_days: int = NOTICE_DAYS_DEFAULT
    title: str | None = None


@dataclass(frozen=True)
class PreviousSheet:
    id: int
    sheet_number: int
    tree_size: int
    root_hash: bytes


@dataclass(frozen=True)
class SheetSnapshot:
    """Everything a sheet is pinned to, read under the publishing lock."""

    project: Project
    sheet_number: int
    title: str
    period_start: date
    period_end: date
    published_on: date
    notice_days: int
    notice_start: date
    notice_end: date
    tree_size: int
    root_hash: bytes
    previous: PreviousSheet | None
    # Reserved before rendering so the printed QR code can name the sheet's page; None in a preview.
    disclosure_id: int | None = None


@dataclass(frozen=True)
class Disclosure:
    id: int
    project_code: str
    community_id: int
    sheet_number: int
    title: str
    period_start: date
    period_end: date
    notice_days: int
    notice_start: date
    notice_end: date
    tree_size: int
    root_hash: bytes
    previous: PreviousSheet | None
    pdf_sha256: str
    published_at: datetime

    def in_notice_period(self, today: date) -> bool:
        return self.notice_start <= today <= self.notice_end


PdfMaker = Callable[[AsyncConnection, SheetSnapshot], Awaitable[bytes]]


def default_title(project: Project) -> str:
    """锦绣花园小区 + 小区路面刷黑 → 锦绣花园小区路面刷黑项目资金收支公示 (no doubled 小区)."""
    title = project.title
    for word in ("小区", "社区"):
        if project.community_name.endswith(word) and title.startswith(word):
            title = title[len(word) :]
    return f"{project.community_name}{title}项目资金收支公示"


def check_draft(draft: DisclosureDraft, today: date) -> None:
    refuse_personal_numbers({"title": draft.title})
    if draft.period_start > draft.period_end:
        raise ValidationFailed.on("period_end", "公示期间的结束日期不能早于开始日期")
    if draft.period_end > today:
        raise ValidationFailed.on("period_end", "公示期间不能包含未来的日期")
    if (draft.period_end - draft.period_start).days > PERIOD_DAYS_MAX:
        raise ValidationFailed.on("period_start", "公示期间过长（最多 10 年）")
    if not 1 <= draft.notice_days <= NOTICE_DAYS_MAX:
        raise ValidationFailed.on("notice_days", f"公示天数须在 1 到 {NOTICE_DAYS_MAX} 之间")


async def snapshot(
    conn: AsyncConnection, project: Project, draft: DisclosureDraft, today: date, *, next_number: bool = True
) -> SheetSnapshot:
    head = (
        await conn.execute(
            text("SELECT size, root_hash FROM project_heads WHERE project_id = :pid"), {"pid": project.id}
        )
    ).one()
    prev = (
        await conn.execute(
            text(
                "SELECT id, sheet_number, tree_size, root_hash FROM disclosures "
                "WHERE project_id = :pid ORDER BY sheet_number DESC LIMIT 1"
            ),
            {"pid": project.id},
        )
    ).one_or_none()
    previous = PreviousSheet(prev.id, prev.sheet_number, prev.tree_size, bytes(prev.root_hash)) if prev else None
    return SheetSnapshot(
        project=project,
        sheet_number=(previous.sheet_number if previous else 0) + 1,
        title=draft.title or default_title(project),
        period_start=draft.period_start,
        period_end=draft.period_end,
        published_on=today,
        notice_days=draft.notice_days,
        notice_start=today,
        notice_end=today + timedelta(days=draft.notice_days - 1),
        tree_size=head.size,
        root_hash=bytes(head.root_hash),
        previous=previous,
    )


# Transaction-level advisory locks, both tried in the publishing transaction's first statement:
# nothing outlives the transaction, so the publish works through PgBouncer in transaction mode
# (each transaction may run on a different server session). The project's lock is keyed by its
# code (unique and never changed), so it is taken without reading anything.
_PROJECT_LOCK = "pg_try_advisory_xact_lock(hashtextextended('disclosures:' || :code, 11))"
_HOLD_KEY_AND_PROJECT = text(
    f"SELECT CASE WHEN NOT pg_try_advisory_xact_lock({KEY_LOCK_ID}) THEN 'key' WHEN NOT {_PROJECT_LOCK} THEN 'project' END"
)
_HOLD_PROJECT = text(f"SELECT CASE WHEN NOT {_PROJECT_LOCK} THEN 'project' END")
# A later publisher's stale snapshot shows up as one of these on its INSERTs (see _hold).
_STALE_SNAPSHOT_SQLSTATES = {"23505", "40001"}  # unique_violation, serialization_failure
STALE_SNAPSHOT_RETRIES = 5


class _Busy(Exception):
    """Another publish of the project holds its lock: roll back, wait a moment, try again."""


class _StaleSnapshot(Exception):
    """A publish committed between this transaction's snapshot and its locks: start again."""


async def _hold(conn: AsyncConnection, project_code: str, idempotency: IdempotencyRequest | None) -> None:
    """Try the request's idempotency key, then the project's publishing lock, as the REPEATABLE
    READ transaction's first statement, without waiting (raises IdempotencyInFlight or _Busy).

    A copy of a request still in flight gets 409 ``idempotency_in_flight`` at once; a publisher
    finding the project busy rolls back and polls (so it never waits inside a snapshot older than
    the sheet it waited for). The snapshot is taken as this statement starts, a moment before its
    try-locks: a publish that committed and let go in that moment is invisible to it. Then the
    INSERT of the same sheet number (or of the same idempotency key) fails on its unique
    constraint, and publish_disclosure starts again with a fresh snapshot — so sheet numbers stay
    distinct and consecutive, each naming the one before it.
    """
    if idempotency is not None:
        params = {"scope": idempotency.scope, "key": idempotency.key, "code": project_code}
        busy = (await conn.execute(_HOLD_KEY_AND_PROJECT, params)).scalar_one()
    else:
        busy = (await conn.execute(_HOLD_PROJECT, {"code": project_code})).scalar_one()
    if busy == "key":
        raise IdempotencyInFlight("相同 Idempotency-Key 的请求正在处理中，请稍后重试")
    if busy == "project":
        raise _Busy


async def publish_disclosure(
    engine: AsyncEngine,
    project_code: str,
    draft: DisclosureDraft,
    *,
    published_by: str,
    make_pdf: PdfMaker,
    render: Callable[[Disclosure], Any],
    idempotency: IdempotencyRequest | None = None,
    today: date | None = None,
) -> tuple[StoredResponse, bool]:
    """Render, store and number a sheet. Returns (response, replayed).

    Errors: NotFound, ValidationFailed, IdempotencyInFlight, IdempotencyKeyReused.
    """
    today = today or datetime.now(SHANGHAI).date()
    check_draft(draft, today)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + PUBLISH_WAIT_S
    stale = 0
    while True:
        try:
            return await _publish_once(engine, project_code, draft, published_by, make_pdf, render, idempotency, today)
        except _Busy:
            if loop.time() >= deadline:
                raise Conflict("本项目正有另一张公示表在发布，请稍后重试") from None
            await asyncio.sleep(PUBLISH_POLL_S)
        except _StaleSnapshot:
            stale += 1
            if stale > STALE_SNAPSHOT_RETRIES:
                raise Conflict("本项目正有另一张公示表在发布，请稍后重试") from None


async def _publish_once(
    engine: AsyncEngine,
    project_code: str,
    draft: DisclosureDraft,
    published_by: str,
    make_pdf: PdfMaker,
    render: Callable[[Disclosure], Any],
    idempotency: IdempotencyRequest | None,
    today: date,
) -> tuple[StoredResponse, bool]:
    try:
        async with engine.connect() as conn:
            await conn.execution_options(isolation_level="REPEATABLE READ")
            # The snapshot starts with _hold's statement, which takes the key and the project's
            # publishing lock: one publisher per project at a time, so sheet numbers and "previous"
            # are exact (a stale snapshot is caught at the INSERTs, below).
            async with conn.begin():
                await _hold(conn, project_code, idempotency)
                if idempotency is not None:
                    stored = await claim(conn, idempotency)
                    if stored is not None:
                        return stored, True
                project = await get_project(conn, project_code)
                reserved = (
                    await conn.execute(text("SELECT nextval(pg_get_serial_sequence('disclosures', 'id'))"))
                ).scalar_one()
                snap = replace(await snapshot(conn, project, draft, today), disclosure_id=reserved)
                pdf = await make_pdf(conn, snap)
                sha = hashlib.sha256(pdf).hexdigest()
                row = (
                    await conn.execute(
                        text(
                            """
                            INSERT INTO disclosures (id, community_id, project_id, sheet_number, title, period_start,
                                period_end, notice_days, notice_start, notice_end, tree_size, root_hash, previous_id,
                                pdf, pdf_sha256, published_by)
                            OVERRIDING SYSTEM VALUE
                            VALUES (:id, :cid, :pid, :number, :title, :ps, :pe, :nd, :ns, :ne, :size, :root, :prev,
                                    :pdf, :sha, :by)
                            RETURNING id, published_at
                            """
                        ),
                        {
                            "id": reserved,
                            "cid": project.community_id,
                            "pid": project.id,
                            "number": snap.sheet_number,
                            "title": snap.title,
                            "ps": snap.period_start,
                            "pe": snap.period_end,
                            "nd": snap.notice_days,
                            "ns": snap.notice_start,
                            "ne": snap.notice_end,
                            "size": snap.tree_size,
                            "root": snap.root_hash,
                            "prev": snap.previous.id if snap.previous else None,
                            "pdf": pdf,
                            "sha": sha,
                            "by": published_by,
                        },
                    )
                ).one()
                disclosure = Disclosure(
                    id=row.id,
                    project_code=project.code,
                    community_id=project.community_id,
                    sheet_number=snap.sheet_number,
                    title=snap.title,
                    period_start=snap.period_start,
                    period_end=snap.period_end,
                    notice_days=snap.notice_days,
                    notice_start=snap.notice_start,
                    notice_end=snap.notice_end,
                    tree_size=snap.tree_size,
                    root_hash=snap.root_hash,
                    previous=snap.previous,
                    pdf_sha256=sha,
                    published_at=row.published_at,
                )
                body = response_body(render(disclosure))
                if idempotency is not None:
                    await store(conn, idempotency, project.community_id, 201, body)
    except DBAPIError as exc:
        if getattr(exc.orig, "sqlstate", None) in _STALE_SNAPSHOT_SQLSTATES:
            raise _StaleSnapshot from exc
        raise
    return StoredResponse(201, body), False


async def preview_pdf(
    engine: AsyncEngine, project_code: str, draft: DisclosureDraft, *, make_pdf: PdfMaker, today: date | None = None
) -> bytes:
    """The sheet as it would be published now, not stored."""
    today = today or datetime.now(SHANGHAI).date()
    check_draft(draft, today)
    async with engine.connect() as conn:
        await conn.execution_options(isolation_level="REPEATABLE READ")
        async with conn.begin():
            project = await get_project(conn, project_code)
            return await make_pdf(conn, await snapshot(conn, project, draft, today))


_DISCLOSURE_SQL = """
    SELECT d.id, d.community_id, p.code AS project_code, d.sheet_number, d.title, d.period_start, d.period_end,
           d.notice_days, d.notice_start, d.notice_end, d.tree_size, d.root_hash, d.pdf_sha256, d.published_at,
           prev.id AS prev_id, prev.sheet_number AS prev_number, prev.tree_size AS prev_size,
           prev.root_hash AS prev_root
    FROM disclosures d
    JOIN projects p ON p.id = d.project_id
    LEFT JOIN disclosures prev ON prev.id = d.previous_id
"""


def _from_row(r: Any) -> Disclosure:
    previous = (
        PreviousSheet(r.prev_id, r.prev_number, r.prev_size, bytes(r.prev_root)) if r.prev_id is not None else None
    )
    return Disclosure(
        id=r.id,
        project_code=r.project_code,
        community_id=r.community_id,
        sheet_number=r.sheet_number,
        title=r.title,
        period_start=r.period_start,
        period_end=r.period_end,
        notice_days=r.notice_days,
        notice_start=r.notice_start,
        notice_end=r.notice_end,
        tree_size=r.tree_size,
        root_hash=bytes(r.root_hash),
        previous=previous,
        pdf_sha256=r.pdf_sha256,
        published_at=r.published_at,
    )


async def get_disclosure(conn: AsyncConnection, disclosure_id: int) -> Disclosure:
    row = (await conn.execute(text(_DISCLOSURE_SQL + " WHERE d.id = :id"), {"id": disclosure_id})).one_or_none()
    if row is None:
        raise NotFound(f"公示表 {disclosure_id} 不存在")
    return _from_row(row)


async def list_disclosures(conn: AsyncConnection, project_code: str, *, after_id: int, limit: int) -> list[Disclosure]:
    await get_project(conn, project_code)
    rows = await conn.execute(
        text(_DISCLOSURE_SQL + " WHERE p.code = :code AND d.id > :after ORDER BY d.id LIMIT :limit"),
        {"code": project_code, "after": after_id, "limit": limit},
    )
    return [_from_row(r) for r in rows]


async def disclosure_pdf(conn: AsyncConnection, disclosure_id: int) -> tuple[bytes, str]:
    """The stored PDF bytes and their SHA-256, exactly as published."""
    row = (
        await conn.execute(text("SELECT pdf, pdf_sha256 FROM disclosures WHERE id = :id"), {"id": disclosure_id})
    ).one_or_none()
    if row is None:
        raise NotFound(f"公示表 {disclosure_id} 不存在")
    return bytes(row.pdf), row.pdf_sha256


# -- objections (异议) and answers -------------------------------------------------------------


@dataclass(frozen=True)
class ObjectionResponse:
    id: int
    objection_id: int
    message: str
    created_at: datetime


@dataclass(frozen=True)
class Objection:
    id: int
    disclosure_id: int
    community_id: int
    message: str
    contact: str | None
    created_at: datetime
    responses: list[ObjectionResponse]


async def file_objection(
    engine: AsyncEngine, disclosure_id: int, message: str, contact: str | None, today: date | None = None
) -> Objection:
    """Errors: NotFound; Conflict once the notice period is over."""
    today = today or datetime.now(SHANGHAI).date()
    async with engine.connect() as conn:
        disclosure = await get_disclosure(conn, disclosure_id)
    if not disclosure.in_notice_period(today):
        raise Conflict(f"公示期已于 {disclosure.notice_end.isoformat()} 结束，不再受理异议")
    async with engine.begin() as conn:
        row = (
            await conn.execute(
                text(
                    "INSERT INTO objections (community_id, disclosure_id, message, contact) "
                    "VALUES (:cid, :did, :message, :contact) RETURNING id, created_at"
                ),
                {"cid": disclosure.community_id, "did": disclosure_id, "message": message, "contact": contact},
            )
        ).one()
    return Objection(row.id, disclosure_id, disclosure.community_id, message, contact, row.created_at, [])


async def list_objections(conn: AsyncConnection, disclosure_id: int) -> list[Objection]:
    await get_disclosure(conn, disclosure_id)
    rows = (
        await conn.execute(
            text("SELECT * FROM objections WHERE disclosure_id = :did ORDER BY id"), {"did": disclosure_id}
        )
    ).all()
    answers = (
        await conn.execute(
            text(
                "SELECT r.* FROM objection_responses r JOIN objections o ON o.id = r.objection_id "
                "WHERE o.disclosure_id = :did ORDER BY r.id"
            ),
            {"did": disclosure_id},
        )
    ).all()
    by_objection: dict[int, list[ObjectionResponse]] = {}
    for a in answers:
        by_objection.setdefault(a.objection_id, []).append(
            ObjectionResponse(a.id, a.objection_id, a.message, a.created_at)
        )
    return [
        Objection(r.id, r.disclosure_id, r.community_id, r.message, r.contact, r.created_at, by_objection.get(r.id, []))
        for r in rows
    ]


async def objection_community(conn: AsyncConnection, objection_id: int) -> int:
    community_id = (
        await conn.execute(text("SELECT community_id FROM objections WHERE id = :id"), {"id": objection_id})
    ).scalar_one_or_none()
    if community_id is None:
        raise NotFound(f"异议 {objection_id} 不存在")
    return int(community_id)


async def respond_to_objection(
    engine: AsyncEngine,
    objection_id: int,
    message: str,
    *,
    responded_by: str,
    idempotency: IdempotencyRequest | None = None,
) -> ObjectionResponse | None:
    """Errors: NotFound, IdempotencyInFlight, IdempotencyKeyReused. With ``idempotency``, a
    repeated request (a double-clicked form) records nothing and returns None."""
    async with engine.connect() as conn:
        community_id = await objection_community(conn, objection_id)
    async with engine.begin() as conn:
        if idempotency is not None:
            if await claim(conn, idempotency) is not None:
                return None
            await store(conn, idempotency, community_id, 201, "{}")
        row = (
            await conn.execute(
                text(
                    "INSERT INTO objection_responses (community_id, objection_id, message, responded_by) "
                    "SELECT community_id, id, :message, :by FROM objections WHERE id = :oid "
                    "RETURNING id, created_at"
                ),
                {"oid": objection_id, "message": message, "by": responded_by},
            )
        ).one()
    return ObjectionResponse(row.id, objection_id, message, row.created_at)
