"""Attachments (发票, 收据, 批文, 现场照片): files stored once by SHA-256, their digests hashed into
the documents of the entries and vouchers they back.

A file is accepted only if its content is what its declared type says (a PNG sent as a PDF is
refused), and an image is decoded and re-encoded without its metadata *before* it is hashed: a
phone photo's EXIF carries the GPS position of whoever took it, and a digest pinned in the ledger
can never be taken back, so what is hashed and published must already be clean.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from PIL import Image, ImageOps, UnidentifiedImageError
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ledger import pg
from ledger.errors import NotFound, PayloadTooLarge, UnsupportedMediaType, ValidationFailed
from ledger.idempotency import IdempotencyRequest, StoredResponse, claim, response_body, store

SIZE_MAX = 10 * 1024 * 1024
# A 50-megapixel photo is more than any phone takes; beyond it a small file could decode into
# gigabytes (a decompression bomb).
PIXELS_MAX = 50_000_000
MEDIA_TYPES = ("image/jpeg", "image/png", "application/pdf")
# The kinds whose attachments anyone may read: public money going out or coming in from
# government. A contribution's receipt names a resident and is never public. The photos of a
# progress note (进展公开) are public too; a tally sheet of 共评 is not (a meeting's sheet may
# carry residents' names and signatures): its digest is public, the file stays with the community.
PUBLIC_KINDS = ("expenditure", "grant")
SHA256_LENGTH = 64

_MAGIC = {
    "image/jpeg": b"\xff\xd8\xff",
    "image/png": b"\x89PNG\r\n\x1a\n",
    "application/pdf": b"%PDF-",
}
_PIL_FORMAT = {"image/jpeg": "JPEG", "image/png": "PNG"}


@dataclass(frozen=True)
class Attachment:
    sha256: str
    media_type: str
    size: int


@dataclass(frozen=True)
class StoredFile:
    attachment: Attachment
    content: bytes


def clean(content: bytes, declared_type: str) -> tuple[str, bytes]:
    """The file as it will be stored: its type checked against its content, image metadata gone.
    Errors: PayloadTooLarge, UnsupportedMediaType."""
    media_type = declared_type.split(";", 1)[0].strip().lower()
    if media_type == "image/jpg":
        media_type = "image/jpeg"
    if media_type not in MEDIA_TYPES:
        raise UnsupportedMediaType("附件只接受 JPEG、PNG 图片或 PDF 文件")
    if len(content) > SIZE_MAX:
        raise PayloadTooLarge("附件不能超过 10 MiB")
    if not content:
        raise UnsupportedMediaType("附件为空")
    if not content.startswith(_MAGIC[media_type]):
        raise UnsupportedMediaType(f"文件内容与声明的类型 {media_type} 不符")
    if media_type == "application/pdf":
        return media_type, content
    return media_type, _strip_image(content, _PIL_FORMAT[media_type])


def _strip_image(content: bytes, fmt: str) -> bytes:
    """Decode and re-encode with no EXIF, XMP, ICC text or PNG text chunks. The EXIF orientation
    is applied to the pixels first, so a portrait photo stays upright without its metadata."""
    try:
        with Image.open(io.BytesIO(content), formats=[fmt]) as probe:
            if probe.width * probe.height > PIXELS_MAX:
                raise UnsupportedMediaType("图片像素过多（超过 5000 万像素）")
            probe.load()
            image = ImageOps.exif_transpose(probe)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise UnsupportedMediaType("图片无法解码，文件可能已损坏或不是它声明的类型") from exc
    out = io.BytesIO()
    if fmt == "JPEG":
        if image.mode not in ("RGB", "L"):
            image = image.convert("RGB")
        image.save(out, format="JPEG", quality=90, optimize=True)
    else:
        image.save(out, format="PNG", optimize=True)
    return out.getvalue()


def digest(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


async def store_attachment(
    engine: AsyncEngine,
    community_id: int,
    uploaded_by: str,
    content: bytes,
    declared_type: str,
    *,
    render: Callable[[Attachment], Any],
    idempotency: IdempotencyRequest | None = None,
) -> tuple[StoredResponse, bool]:
    """Clean, hash and store a file once (the same file again changes nothing). Returns
    (response, replayed). Errors: PayloadTooLarge, UnsupportedMediaType, IdempotencyInFlight,
    IdempotencyKeyReused."""
    # Decoding and re-encoding a phone photo takes about a quarter of a second of CPU: in a worker
    # thread, so the server's event loop keeps answering meanwhile.
    media_type, cleaned = await asyncio.to_thread(clean, content, declared_type)
    found = Attachment(digest(cleaned), media_type, len(cleaned))
    async with engine.begin() as conn:
        if idempotency is not None:
            stored = await claim(conn, idempotency)
            if stored is not None:
                return stored, True
        # ON CONFLICT DO NOTHING: a file already stored (by this community) is never rewritten. Each
        # community that uploads a file keeps its own copy, with its rows (docs/scale.md: Citus).
        await conn.execute(
            text(
                "INSERT INTO attachments (community_id, sha256, media_type, size, content) "
                "VALUES (:cid, :sha256, :media_type, :size, :content) ON CONFLICT (sha256, community_id) DO NOTHING"
            ),
            {
                "cid": community_id,
                "sha256": found.sha256,
                "media_type": found.media_type,
                "size": found.size,
                "content": cleaned,
            },
        )
        await conn.execute(
            text(
                "INSERT INTO attachment_uploads (community_id, sha256, uploaded_by) "
                "VALUES (:cid, :sha256, :by) ON CONFLICT (community_id, sha256) DO NOTHING"
            ),
            {"cid": community_id, "sha256": found.sha256, "by": uploaded_by},
        )
        body = response_body(render(found))
        if idempotency is not None:
            await store(conn, idempotency, community_id, 201, body)
    return StoredResponse(201, body), False


async def require_uploaded(
    conn: AsyncConnection, community_id: int, digests: tuple[str, ...] | list[str], *, field: str, message: str
) -> None:
    """Whatever a record names (an invoice, a photo, a tally sheet) must have been uploaded by the
    record's own community. Errors: ValidationFailed on ``field``."""
    wanted = set(digests)
    if not wanted:
        return
    found = (
        await conn.execute(
            text(
                "SELECT count(*) FROM attachment_uploads "
                "WHERE community_id = :cid AND sha256 = ANY(CAST(:hashes AS text[]))"
            ),
            {"cid": community_id, "hashes": list(wanted)},
        )
    ).scalar_one()
    if found != len(wanted):
        raise ValidationFailed.on(field, message)


def check_digest(sha256: str) -> str:
    if len(sha256) != SHA256_LENGTH or any(c not in "0123456789abcdef" for c in sha256):
        raise ValidationFailed.on("sha256", "附件摘要须为 64 位小写十六进制")
    return sha256


_READ = pg.Query(
    """
    SELECT a.media_type, a.size, a.content,
           (EXISTS (SELECT 1 FROM entries e
                    WHERE e.attachments @> ARRAY[CAST(:sha256 AS text)] AND e.kind = ANY(CAST(:kinds AS text[])))
            OR EXISTS (SELECT 1 FROM progress_notes n WHERE n.attachments @> ARRAY[CAST(:sha256 AS text)]))
               AS public,
           ARRAY(SELECT u.community_id FROM attachment_uploads u WHERE u.sha256 = :sha256) AS communities
    FROM attachments a WHERE a.sha256 = :sha256
    ORDER BY a.community_id LIMIT 1  -- one copy per uploading community, all the same bytes
    """
)


@dataclass(frozen=True)
class FileAccess:
    file: StoredFile
    public: bool
    community_ids: frozenset[int]


async def read_attachment(conn: AsyncConnection, sha256: str) -> FileAccess:
    """The file, whether it is public (backs an expenditure or a grant, or is in a progress note) and which communities
    uploaded it (their staff may read it even when it is not public). Errors: NotFound."""
    row = await pg.fetchrow(await pg.driver(conn), _READ, sha256=check_digest(sha256), kinds=list(PUBLIC_KINDS))
    if row is None:
        raise NotFound("附件不存在")
    return FileAccess(
        StoredFile(Attachment(sha256, row["media_type"], row["size"]), bytes(row["content"])),
        public=row["public"],
        community_ids=frozenset(row["communities"]),
    )
