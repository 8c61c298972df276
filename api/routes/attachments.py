"""Attachments: the treasurer uploads a file (its raw bytes as the body); anyone reads the ones
backing an expenditure or a grant; the community's own staff read the rest."""

from __future__ import annotations

import hashlib
from typing import Annotated

from litestar import Request, Response, get, post
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import Parameter

from api import schemas as s
from api.auth import Caller, require_project_writer
from api.db import Db
from api.errors import ApiError
from api.http import dump, json_response
from api.routes.common import BEARER, OPTIONAL_BEARER, problems
from ledger.attachments import MEDIA_TYPES, SIZE_MAX, Attachment, read_attachment, store_attachment
from ledger.idempotency import IdempotencyRequest, fingerprint
from ledger.projects import project_community

# The file plus a little: Litestar refuses a longer body with 413 before reading all of it.
UPLOAD_BODY_MAX = SIZE_MAX + 1


def attachment_out(a: Attachment) -> s.AttachmentOut:
    return s.AttachmentOut(
        sha256=a.sha256,
        media_type=a.media_type,  # type: ignore[arg-type]
        size=a.size,
        url=f"/api/v1/attachments/{a.sha256}",
    )


@post(
    "/projects/{project:str}/attachments",
    tags=["attachments"],
    summary="上传附件（报账员；请求体为文件本身：JPEG、PNG 或 PDF，不超过 10 MiB）",
    security=BEARER,
    request_max_body_size=UPLOAD_BODY_MAX,
    opt={"raw_body": MEDIA_TYPES},
    responses={
        201: ResponseSpec(s.AttachmentOut, description="已保存（图片已去除 EXIF/GPS 等元数据）"),
        **problems(400, 401, 403, 404, 409, 413, 415, 422),
    },
)
async def upload_attachment(request: Request, db: Db, project: str) -> Response[bytes]:
    key = request.headers.get("idempotency-key")
    if key is not None and (not 1 <= len(key) <= 255 or not all(0x21 <= ord(ch) <= 0x7E for ch in key)):
        raise ApiError("malformed_request", "Idempotency-Key 须为 1–255 个可打印 ASCII 字符")
    content = await request.body()
    caller = await require_project_writer(request, project)
    async with db.connect() as conn:
        community_id = await project_community(conn, project)
    declared = request.headers.get("content-type", "")
    idem = None
    if key is not None:
        idem = IdempotencyRequest(
            scope=caller.scope,
            key=key,
            fingerprint=fingerprint(
                b"POST", request.url.path.encode(), declared.encode(), hashlib.sha256(content).digest()
            ),
        )
    stored, replayed = await store_attachment(
        db.engine,
        community_id,
        caller.scope,
        content,
        declared,
        idempotency=idem,
        render=lambda a: dump(attachment_out(a)),
    )
    return json_response(stored.status, stored.body, replayed=replayed)


@get(
    "/attachments/{sha256:str}",
    tags=["attachments"],
    summary="读取附件（支出、奖补的附件公开；出资的附件从不公开）",
    security=OPTIONAL_BEARER,
    media_type="application/octet-stream",
    opt={"raw_response": MEDIA_TYPES},
    responses=problems(401, 404),
)
async def get_attachment(
    db: Db,
    caller: Caller,
    sha256: Annotated[str, Parameter(pattern=r"^[0-9a-f]{64}$", description="附件的 SHA-256（小写十六进制）")],
) -> Response[bytes]:
    async with db.connect() as conn:
        access = await read_attachment(conn, sha256)
    allowed = access.public or any(caller.can_read_unmasked(c) for c in access.community_ids)
    if not allowed:
        # Not public: answered as absent, so a guessed digest reveals nothing.
        raise ApiError("not_found", "附件不存在或不公开")
    f = access.file
    return Response(
        f.content,
        media_type=f.attachment.media_type,
        headers={
            "ETag": f'"{f.attachment.sha256}"',
            # Content never changes under its digest; whether it is public may (a later entry).
            "Cache-Control": "private, max-age=300" if not access.public else "public, max-age=86400",
            "X-Content-Type-Options": "nosniff",
            "Content-Disposition": f'inline; filename="{f.attachment.sha256[:16]}"',
        },
    )


ROUTES = [upload_attachment, get_attachment]
