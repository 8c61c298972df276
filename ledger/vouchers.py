"""Vouchers (报账凭证): maker-checker for spending.

On paper every 支出 carries two signatures, 经办人 and 审核人. Here the treasurer (the maker)
submits a voucher with the entry it asks for; an auditor of the community (the checker), never
the maker, approves it — and only then is the entry appended, its document naming both — or
rejects it with a reason, which never touches the ledger. Everything the entry needs (spending
gate, cash, budget line, refund cover) is checked again at approval, under the project's lock,
because weeks may pass between the two signatures.

A voucher and its one decision are rows in append-only tables; ``voucher_events_once`` makes the
database refuse a second decision however two auditors race.

Errors: NotFound (voucher, project), ValidationFailed, Forbidden (the maker approving their own),
Conflict (already decided), and every error of :func:`ledger.entries.append_entries` at approval.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import date, datetime
from typing import Any

import asyncpg
import rfc8785
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ledger.attachments import require_uploaded
from ledger.canonical import SHANGHAI, Signer
from ledger.contributors import ContributorRef
from ledger.drafts import COUNTERSIGNED_KINDS, EntryDraft, check_static
from ledger.entries import AppendResult, append_entries
from ledger.entry_reads import RecordedEntry
from ledger.errors import Conflict, Forbidden, NotFound, ValidationFailed
from ledger.idempotency import IdempotencyRequest, StoredResponse, claim, response_body, store

STATUSES = ("pending", "approved", "rejected")
REASON_MAX = 500
PAGE_SIZE_MAX = 500


@dataclass(frozen=True)
class Actor:
    """Who signs: their token's id (what identifies them and scopes their idempotency keys) and
    the role and display name the documents carry."""

    id: str
    signer: Signer


@dataclass(frozen=True)
class Voucher:
    id: int
    project_code: str
    community_id: int
    draft: EntryDraft
    document_sha256: str
    submitted_by: str
    maker: Signer
    submitted_at: datetime
    status: str = "pending"
    checker: Signer | None = None
    decided_at: datetime | None = None
    reason: str | None = None
    entry_seq: int | None = None


# -- the draft as stored (JSON), and back --------------------------------------------------------


def draft_json(draft: EntryDraft) -> dict[str, Any]:
    body: dict[str, Any] = {
        "kind": draft.kind,
        "occurred_on": draft.occurred_on.isoformat(),
        "amount_fen": draft.amount_fen,
        **{k: v for k, v in draft.kind_fields().items() if v is not None},
        "attachments": list(draft.attachments),
    }
    c = draft.contributor
    if c is not None:
        body["contributor"] = {
            k: v
            for k, v in {"id": str(c.id) if c.id else None, "name": c.name, "household": c.household}.items()
            if v is not None
        } | {"type": c.type, "anonymous": c.anonymous}
    return body


def draft_from_json(body: dict[str, Any]) -> EntryDraft:
    c = body.get("contributor")
    ref = None
    if c is not None:
        ref = ContributorRef(
            id=uuid.UUID(c["id"]) if c.get("id") else None,
            name=c.get("name"),
            household=c.get("household"),
            type=c.get("type", "resident"),
            anonymous=c.get("anonymous", False),
        )
    return EntryDraft(
        kind=body["kind"],
        occurred_on=date.fromisoformat(body["occurred_on"]),
        amount_fen=body["amount_fen"],
        memo=body.get("memo"),
        contributor=ref,
        channel=body.get("channel"),
        payee=body.get("payee"),
        category=body.get("category"),
        invoice_no=body.get("invoice_no"),
        attachments=tuple(body.get("attachments") or ()),
    )


def voucher_document(project_code: str, draft: EntryDraft, maker: Signer, submitted_at: datetime) -> bytes:
    """What the maker signed: the entry asked for, its attachments' digests, who and when."""
    return rfc8785.dumps(
        {
            "v": 1,
            "type": "voucher",
            "project": project_code,
            "entry": draft_json(draft),
            "maker": maker.as_document(),
            "submitted_at": submitted_at.astimezone(SHANGHAI).isoformat(timespec="microseconds"),
        }
    )


# -- submit --------------------------------------------------------------------------------------


async def submit_voucher(
    engine: AsyncEngine,
    project_code: str,
    draft: EntryDraft,
    maker: Actor,
    *,
    render: Callable[[Voucher], Any],
    idempotency: IdempotencyRequest | None = None,
    today: date | None = None,
) -> tuple[StoredResponse, bool]:
    """Record a pending voucher. Returns (response, replayed). Errors: NotFound, ValidationFailed,
    IdempotencyInFlight, IdempotencyKeyReused."""
    today = today or datetime.now(SHANGHAI).date()
    if draft.kind not in COUNTERSIGNED_KINDS:
        raise ValidationFailed.on("kind", "凭证只用于支出（expenditure）和退款（refund）")
    check_static(draft, today)
    async with engine.begin() as conn:
        if idempotency is not None:
            stored = await claim(conn, idempotency)
            if stored is not None:
                return stored, True
        project = (
            await conn.execute(text("SELECT id, community_id FROM projects WHERE code = :code"), {"code": project_code})
        ).one_or_none()
        if project is None:
            raise NotFound(f"项目 {project_code} 不存在")
        if draft.kind == "expenditure":
            known = (
                await conn.execute(
                    text("SELECT 1 FROM budget_lines WHERE project_id = :pid AND category = :category"),
                    {"pid": project.id, "category": draft.category},
                )
            ).one_or_none()
            if known is None:
                raise ValidationFailed.on("category", f"预算科目 {draft.category} 不在本项目预算中")
        await require_uploaded(
            conn, project.community_id, draft.attachments, field="attachments", message="有附件未上传到本社区"
        )
        submitted_at = datetime.now(SHANGHAI)
        document = voucher_document(project_code, draft, maker.signer, submitted_at)
        sha = hashlib.sha256(document).hexdigest()
        voucher_id = (
            await conn.execute(
                text(
                    """
                    INSERT INTO vouchers (community_id, project_id, kind, amount_fen, body, attachments,
                                          document, document_sha256, submitted_by, submitter_name,
                                          submitter_role, submitted_at)
                    VALUES (:cid, :pid, :kind, :amount, CAST(:body AS jsonb), CAST(:attachments AS text[]),
                            :document, :sha, :by, :name, :role, :at)
                    RETURNING id
                    """
                ),
                {
                    "cid": project.community_id,
                    "pid": project.id,
                    "kind": draft.kind,
                    "amount": draft.amount_fen,
                    "body": json.dumps(draft_json(draft), ensure_ascii=False),
                    "attachments": list(draft.attachments),
                    "document": document.decode(),
                    "sha": sha,
                    "by": maker.id,
                    "name": maker.signer.name,
                    "role": maker.signer.role,
                    "at": submitted_at,
                },
            )
        ).scalar_one()
        voucher = Voucher(
            id=voucher_id,
            project_code=project_code,
            community_id=project.community_id,
            draft=draft,
            document_sha256=sha,
            submitted_by=maker.id,
            maker=maker.signer,
            submitted_at=submitted_at,
        )
        body = response_body(render(voucher))
        if idempotency is not None:
            await store(conn, idempotency, project.community_id, 201, body)
    return StoredResponse(201, body), False


# -- read ----------------------------------------------------------------------------------------

_SELECT = """
    SELECT v.*, p.code AS project_code, ev.event, ev.actor_name, ev.actor_role, ev.reason,
           ev.entry_seq, ev.created_at AS decided_at
    FROM vouchers v
    JOIN projects p ON p.id = v.project_id
    LEFT JOIN voucher_events ev ON ev.voucher_id = v.id
"""


def _voucher_from_row(row: Any) -> Voucher:
    m = row._mapping
    return Voucher(
        id=m["id"],
        project_code=m["project_code"],
        community_id=m["community_id"],
        draft=draft_from_json(m["body"]),
        document_sha256=m["document_sha256"],
        submitted_by=m["submitted_by"],
        maker=Signer(m["submitter_role"], m["submitter_name"]),
        submitted_at=m["submitted_at"],
        status=m["event"] or "pending",
        checker=Signer(m["actor_role"], m["actor_name"]) if m["event"] else None,
        decided_at=m["decided_at"],
        reason=m["reason"],
        entry_seq=m["entry_seq"],
    )


async def get_voucher(conn: AsyncConnection, voucher_id: int) -> Voucher:
    """Errors: NotFound."""
    row = (await conn.execute(text(_SELECT + " WHERE v.id = :id"), {"id": voucher_id})).one_or_none()
    if row is None:
        raise NotFound(f"凭证 {voucher_id} 不存在")
    return _voucher_from_row(row)


async def list_vouchers(
    conn: AsyncConnection, project_code: str, *, status: str | None = None, after_id: int = 0, limit: int = 50
) -> list[Voucher]:
    """The project's vouchers, oldest first. The caller checks the project exists."""
    if status is not None and status not in STATUSES:
        raise ValidationFailed.on("status", f"状态须为 {', '.join(STATUSES)} 之一")
    where = " WHERE p.code = :code AND v.id > :after"
    if status == "pending":
        where += " AND ev.id IS NULL"
    elif status is not None:
        where += " AND ev.event = :status"
    rows = await conn.execute(
        text(_SELECT + where + " ORDER BY v.id LIMIT :limit"),
        {"code": project_code, "after": after_id, "limit": min(limit, PAGE_SIZE_MAX), "status": status},
    )
    return [_voucher_from_row(r) for r in rows]


# -- decide ----------------------------------------------------------------------------------------


def _check_checker(voucher: Voucher, checker: Actor) -> None:
    # The same token, or the same person under another token (tokens carry a display name).
    if checker.id == voucher.submitted_by or checker.signer.name == voucher.maker.name:
        raise Forbidden("不能审核自己提交的凭证：审核人须是经办人以外的另一个人")


def _check_pending(voucher: Voucher) -> None:
    if voucher.status == "approved":
        raise Conflict(f"凭证 {voucher.id} 已审核通过（第 {voucher.entry_seq} 笔记录）")
    if voucher.status == "rejected":
        raise Conflict(f"凭证 {voucher.id} 已被退回：{voucher.reason}")


async def _already_answered(conn: AsyncConnection, idempotency: IdempotencyRequest | None) -> bool:
    """Whether this key already has a stored response (a retry must get it back, not a 409)."""
    if idempotency is None:
        return False
    row = (
        await conn.execute(
            text("SELECT 1 FROM idempotency_keys WHERE scope = :scope AND key = :key"),
            {"scope": idempotency.scope, "key": idempotency.key},
        )
    ).one_or_none()
    return row is not None


_INSERT_EVENT = """
    INSERT INTO voucher_events (community_id, voucher_id, event, actor, actor_name, actor_role, reason,
                                project_id, entry_seq)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
"""


async def approve_voucher(
    engine: AsyncEngine,
    voucher_id: int,
    checker: Actor,
    *,
    render: Callable[[Voucher, RecordedEntry], Any],
    idempotency: IdempotencyRequest | None = None,
    today: date | None = None,
) -> AppendResult:
    """Append the voucher's entry, signed by maker and checker, and record the approval in the
    same transaction. Errors: NotFound, Forbidden, Conflict, and those of append_entries."""
    async with engine.connect() as conn:
        voucher = await get_voucher(conn, voucher_id)
        _check_checker(voucher, checker)
        if not await _already_answered(conn, idempotency):
            _check_pending(voucher)
    draft = replace(voucher.draft, maker=voucher.maker, checker=checker.signer)

    async def record_event(conn: asyncpg.Connection, recorded: list[RecordedEntry]) -> None:
        try:
            await conn.execute(
                _INSERT_EVENT,
                voucher.community_id,
                voucher.id,
                "approved",
                checker.id,
                checker.signer.name,
                checker.signer.role,
                None,
                await conn.fetchval("SELECT id FROM projects WHERE code = $1", voucher.project_code),
                recorded[0].seq,
            )
        except asyncpg.UniqueViolationError as exc:
            raise Conflict(f"凭证 {voucher.id} 已被他人审核") from exc

    def shape(recorded: list[RecordedEntry]) -> Any:
        entry = recorded[0]
        approved = replace(
            voucher,
            status="approved",
            checker=checker.signer,
            decided_at=entry.recorded_at,
            entry_seq=entry.seq,
        )
        return render(approved, entry)

    return await append_entries(
        engine,
        voucher.project_code,
        [draft],
        recorded_by=voucher.submitted_by,
        render=shape,
        idempotency=idempotency,
        today=today,
        after_write=record_event,
    )


async def reject_voucher(
    engine: AsyncEngine,
    voucher_id: int,
    checker: Actor,
    reason: str,
    *,
    render: Callable[[Voucher], Any],
    idempotency: IdempotencyRequest | None = None,
) -> tuple[StoredResponse, bool]:
    """Record the rejection; the ledger is not touched. Returns (response, replayed). Errors:
    NotFound, ValidationFailed, Forbidden, Conflict, IdempotencyInFlight, IdempotencyKeyReused."""
    reason = reason.strip()
    if not 1 <= len(reason) <= REASON_MAX:
        raise ValidationFailed.on("reason", f"退回须说明原因（1–{REASON_MAX} 字）")
    async with engine.begin() as conn:
        if idempotency is not None:
            stored = await claim(conn, idempotency)
            if stored is not None:
                return stored, True
        row = (await conn.execute(text(_SELECT + " WHERE v.id = :id"), {"id": voucher_id})).one_or_none()
        if row is None:
            raise NotFound(f"凭证 {voucher_id} 不存在")
        voucher = _voucher_from_row(row)
        _check_checker(voucher, checker)
        _check_pending(voucher)
        # A savepoint: a concurrent decision's unique violation becomes a clean 409.
        try:
            async with conn.begin_nested():
                decided_at = (
                    await conn.execute(
                        text(
                            """
                            INSERT INTO voucher_events (community_id, voucher_id, event, actor, actor_name,
                                                        actor_role, reason)
                            VALUES (:cid, :vid, 'rejected', :actor, :name, :role, :reason)
                            RETURNING created_at
                            """
                        ),
                        {
                            "cid": voucher.community_id,
                            "vid": voucher.id,
                            "actor": checker.id,
                            "name": checker.signer.name,
                            "role": checker.signer.role,
                            "reason": reason,
                        },
                    )
                ).scalar_one()
        except Exception as exc:
            if "voucher_events_once" in str(exc):
                raise Conflict(f"凭证 {voucher.id} 已被他人审核") from exc
            raise
        rejected = replace(voucher, status="rejected", checker=checker.signer, decided_at=decided_at, reason=reason)
        body = response_body(render(rejected))
        if idempotency is not None:
            await store(conn, idempotency, voucher.community_id, 201, body)
    return StoredResponse(201, body), False
