"""进展公开: progress notes the treasurer posts while the work goes on, with photos.

The 街道's guidance asks that progress be posted as it happens (to the WeChat group, on the
notice board); here each note is public and append-only (a mistake is corrected by a later note),
and its document — date, text and the SHA-256 digests of its photos, as RFC 8785 JSON — is hashed,
so a photo in the note can be checked against the digest anyone can read. Photos go through the
attachment service (metadata stripped before hashing) and, once named by a note, are public.

Errors of :func:`post_note`: NotFound, ValidationFailed (date, text, numbers of people in the
text, photos not uploaded to the community), IdempotencyInFlight, IdempotencyKeyReused.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import rfc8785
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ledger.attachments import check_digest, require_uploaded
from ledger.canonical import SHANGHAI
from ledger.errors import NotFound, ValidationFailed
from ledger.idempotency import IdempotencyRequest, StoredResponse, claim, response_body, store
from ledger.masking import refuse_personal_numbers

TEXT_MAX = 2000
PHOTOS_MAX = 10
PAGE_SIZE_MAX = 500


@dataclass(frozen=True)
class NoteDraft:
    happened_on: date
    text: str
    attachments: tuple[str, ...] = ()


@dataclass(frozen=True)
class ProgressNote:
    id: int
    project_code: str
    happened_on: date
    text: str
    attachments: tuple[str, ...]
    document: str
    document_sha256: str
    posted_at: datetime


def note_document(project_code: str, draft: NoteDraft, posted_at: datetime) -> bytes:
    """What a note's digest commits to: the project, the date, the text and the photos' digests."""
    return rfc8785.dumps(
        {
            "v": 1,
            "type": "progress",
            "project": project_code,
            "happened_on": draft.happened_on.isoformat(),
            "text": draft.text,
            "attachments": list(draft.attachments),
            "posted_at": posted_at.astimezone(SHANGHAI).isoformat(timespec="microseconds"),
        }
    )


def _check(draft: NoteDraft, today: date) -> NoteDraft:
    body = draft.text.strip()
    if not body:
        raise ValidationFailed.on("text", "进展内容不能为空")
    if len(body) > TEXT_MAX:
        raise ValidationFailed.on("text", f"进展内容不能超过 {TEXT_MAX} 字")
    if draft.happened_on > today:
        raise ValidationFailed.on("happened_on", "日期不能晚于今天")
    if len(draft.attachments) > PHOTOS_MAX:
        raise ValidationFailed.on("attachments", f"每条进展最多 {PHOTOS_MAX} 张照片或文件")
    for sha in draft.attachments:
        check_digest(sha)
    # Published and hashed: a phone number in it could never be taken back.
    refuse_personal_numbers({"text": body})
    return NoteDraft(draft.happened_on, body, tuple(dict.fromkeys(draft.attachments)))


async def post_note(
    engine: AsyncEngine,
    project_code: str,
    draft: NoteDraft,
    *,
    posted_by: str,
    render: Callable[[ProgressNote], Any],
    idempotency: IdempotencyRequest | None = None,
    today: date | None = None,
) -> tuple[StoredResponse, bool]:
    """Post a note. Returns (response, replayed)."""
    draft = _check(draft, today or datetime.now(SHANGHAI).date())
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
        await require_uploaded(
            conn, project.community_id, draft.attachments, field="attachments", message="有照片或文件未上传到本社区"
        )
        posted_at = datetime.now(SHANGHAI)
        document = note_document(project_code, draft, posted_at)
        row = (
            await conn.execute(
                text(
                    """
                    INSERT INTO progress_notes (community_id, project_id, happened_on, text, attachments, document,
                                                document_sha256, posted_by, posted_at)
                    VALUES (:cid, :pid, :happened_on, :text, CAST(:attachments AS text[]), :document, :sha, :by, :at)
                    RETURNING id
                    """
                ),
                {
                    "cid": project.community_id,
                    "pid": project.id,
                    "happened_on": draft.happened_on,
                    "text": draft.text,
                    "attachments": list(draft.attachments),
                    "document": document.decode(),
                    "sha": hashlib.sha256(document).hexdigest(),
                    "by": posted_by,
                    "at": posted_at,
                },
            )
        ).one()
        note = ProgressNote(
            id=row.id,
            project_code=project_code,
            happened_on=draft.happened_on,
            text=draft.text,
            attachments=draft.attachments,
            document=document.decode(),
            document_sha256=hashlib.sha256(document).hexdigest(),
            posted_at=posted_at,
        )
        body = response_body(render(note))
        if idempotency is not None:
            await store(conn, idempotency, project.community_id, 201, body)
    return StoredResponse(201, body), False


async def list_notes(
    conn: AsyncConnection, project_id: int, project_code: str, *, before_id: int | None = None, limit: int = 50
) -> list[ProgressNote]:
    """Notes, newest first; ``before_id`` continues a page."""
    rows = await conn.execute(
        text("SELECT * FROM progress_notes WHERE project_id = :pid AND id < :before ORDER BY id DESC LIMIT :limit"),
        {"pid": project_id, "before": before_id or 2**63 - 1, "limit": min(limit, PAGE_SIZE_MAX)},
    )
    return [
        ProgressNote(
            id=r.id,
            project_code=project_code,
            happened_on=r.happened_on,
            text=r.text,
            attachments=tuple(r.attachments),
            document=r.document,
            document_sha256=r.document_sha256,
            posted_at=r.posted_at,
        )
        for r in rows
    ]
