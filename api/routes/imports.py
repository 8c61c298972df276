"""Spreadsheet imports (API.md "Imports"): the treasurer uploads the file as it is; a dry run shows
what would be recorded and every problem; a commit records all rows or none, once per file."""

from __future__ import annotations

import asyncio
import hashlib
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Literal

from litestar import Request, Response, get, post
from litestar.datastructures import UploadFile
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import HeaderParameter, Parameter
from pydantic import BaseModel, Field
from sqlalchemy.ext.asyncio import AsyncEngine

from api.auth import require_project_writer
from api.db import Db
from api.errors import ApiError, problem
from api.http import dump, json_response
from api.presenters import entry_out
from api.routes.common import BEARER, problems
from ledger.entry_reads import RecordedEntry
from ledger.errors import ValidationFailed
from ledger.idempotency import IdempotencyRequest, fingerprint
from ledger.import_template import template_xlsx
from ledger.imports import (
    IMPORT_KINDS,
    PREVIEWS_MAX,
    ImportRefused,
    ImportReport,
    ImportRow,
    prepare_import,
    run_import,
)
from ledger.money import format_fen
from ledger.projects import Project, get_project
from ledger.spreadsheet import SIZE_MAX, Problem

XLSX_MEDIA_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
UPLOAD_MEDIA_TYPES = (XLSX_MEDIA_TYPE, "text/csv", "multipart/form-data")
# Media types a spreadsheet arrives as (browsers and curl label CSV and XLSX variously); the file's
# own bytes decide its format. Anything else (JSON, images, PDF) is refused with 415.
ACCEPTED_MEDIA_TYPES = frozenset(
    (
        XLSX_MEDIA_TYPE,
        "text/csv",
        "text/plain",
        "text/tab-separated-values",
        "application/csv",
        "application/vnd.ms-excel",
        "application/octet-stream",
    )
)
# The file itself plus a multipart envelope; beyond SIZE_MAX the file is refused with 413 anyway.
IMPORT_BODY_MAX = SIZE_MAX + 64 * 1024

if TYPE_CHECKING:
    ImportKind = str
else:
    ImportKind = Literal[IMPORT_KINDS]  # ledger/kinds.py RECORDED


class ImportProblemOut(BaseModel):
    row: int | None = Field(description="文件中的行号（从 1 起）；整个文件的问题为 null")
    column: str | None = Field(description="文件中写的列名，如 金额（元）")
    message: str


class KindTotalOut(BaseModel):
    count: int
    amount: str


class ImportOut(BaseModel):
    file_sha256: str
    dry_run: bool
    rows: int = Field(description="数据行数（不含标题行、表头、空行和合计行）")
    recorded: int
    by_kind: dict[str, KindTotalOut]
    entries: list[dict[str, Any]] = Field(
        description="试导入：前 50 行将记录的内容（含 row）；正式导入：前 50 笔已记账的记录（含 row）"
    )
    errors: list[ImportProblemOut]
    format: Literal["csv", "xlsx"]
    encoding: str | None = Field(description="CSV 的文字编码（UTF-8、UTF-8（带 BOM）、GB18030、UTF-16）")
    sheet: str | None
    header_row: int
    total_row: int | None = Field(description="合计行的行号（已核对，不导入）")
    ignored_columns: list[str] = Field(description="未识别、未导入的列")
    import_id: int | None = None
    tree_size: int | None = None
    root_hash: str | None = None


def problem_out(p: Problem) -> dict[str, Any]:
    return {"row": p.row, "column": p.column, "message": p.message}


def preview_out(r: ImportRow) -> dict[str, Any]:
    d = r.draft
    c = d.contributor
    fields = {
        "row": r.row,
        "kind": d.kind,
        "amount": format_fen(d.amount_fen or 0),
        "occurred_on": d.occurred_on.isoformat(),
        # The treasurer's own data, shown only to the community's staff (this route needs their token).
        "contributor": {"name": c.name, "household": c.household, "type": c.type} if c else None,
        **{k: v for k, v in d.kind_fields().items() if v is not None},
    }
    return fields


def import_body(
    report: ImportReport, *, dry_run: bool, recorded: list[RecordedEntry] | None = None, import_id: int | None = None
) -> dict[str, Any]:
    table = report.table
    body: dict[str, Any] = {
        "file_sha256": report.file_sha256,
        "dry_run": dry_run,
        "rows": report.data_rows,
        "recorded": len(recorded or []),
        "by_kind": {k: {"count": n, "amount": format_fen(fen)} for k, (n, fen) in report.by_kind().items()},
        "entries": [],
        "errors": [problem_out(p) for p in report.problems],
        "format": table.format,
        "encoding": table.encoding,
        "sheet": table.sheet,
        "header_row": table.header_row,
        "total_row": table.total_row,
        "ignored_columns": table.ignored_columns,
    }
    if recorded:
        rows = [r.row for r in report.rows]
        body["entries"] = [
            {"row": row, **dump(entry_out(e, unmasked=True))}
            for row, e in zip(rows[:PREVIEWS_MAX], recorded[:PREVIEWS_MAX], strict=True)
        ]
        last = recorded[-1]
        assert last.root_hash is not None
        body.update(import_id=import_id, tree_size=last.seq, root_hash=last.root_hash.hex())
    else:
        body["entries"] = [preview_out(r) for r in report.rows[:PREVIEWS_MAX]]
    return body


@dataclass(frozen=True)
class Upload:
    data: bytes
    filename: str


async def read_upload(request: Request) -> Upload:
    """The file: the body itself, or the ``file`` field of a multipart form. Errors: ApiError 400,
    413, 415."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "multipart/form-data":
        try:
            form = await request.form()
        except Exception as exc:  # a broken envelope is the client's fault, whatever the parser says
            raise ApiError("malformed_request", "multipart/form-data 请求体格式错误") from exc
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise ApiError("malformed_request", "multipart/form-data 中须有名为 file 的文件")
        data = await upload.read()
        upload_name = upload.filename or ""
    elif content_type in ACCEPTED_MEDIA_TYPES:
        data = await request.body()
        # Declared as a workbook, it is read as one (and refused as one if it is not).
        upload_name = "upload.xlsx" if content_type == XLSX_MEDIA_TYPE else ""
    else:
        raise ApiError(
            "unsupported_media_type",
            "请求体须为表格文件本身（text/csv 或 .xlsx）或 multipart/form-data 的 file 字段",
        )
    if len(data) > SIZE_MAX:
        raise ApiError("payload_too_large", "文件超过 10 MiB：请分成几个文件导入")
    return Upload(data, upload_name)


def refused(report: ImportReport, detail: str) -> Response[Any]:
    errors = [{"field": _field(p), **problem_out(p)} for p in report.problems]
    return problem("validation_failed", detail, errors)


def file_refused(exc: ValidationFailed) -> Response[Any]:
    errors = [{"field": "file", "row": None, "column": None, "message": e.message} for e in exc.errors]
    return problem("validation_failed", exc.detail, errors)


def _field(p: Problem) -> str:
    return "file" if p.row is None else f"rows[{p.row}]" + (f".{p.column}" if p.column else "")


async def import_upload(
    engine: AsyncEngine,
    project: Project,
    upload: Upload,
    *,
    kind: str,
    dry_run: bool,
    recorded_by: str,
    idempotency: IdempotencyRequest | None,
) -> Response[Any]:
    """The one path of an import, for the API and the workspace: read and check the file in a
    worker thread (10,000 rows take a second of CPU: the event loop keeps serving), then check or
    record it. Answers 200 (dry run), 201 (recorded, or its replay) or problem+json (422, 409)."""
    try:
        report = await asyncio.to_thread(
            prepare_import, project, upload.data, default_kind=kind, filename=upload.filename
        )
    except ValidationFailed as exc:
        return file_refused(exc)
    try:
        result = await run_import(
            engine,
            project,
            report,
            dry_run=dry_run,
            recorded_by=recorded_by,
            idempotency=idempotency,
            render=lambda rep, recorded, import_id: import_body(
                rep, dry_run=False, recorded=recorded, import_id=import_id
            ),
        )
    except ImportRefused as exc:
        return refused(exc.report, exc.detail)
    if dry_run:
        return json_response(200, json.dumps(import_body(report, dry_run=True), ensure_ascii=False), replayed=False)
    return json_response(result.status, result.body, replayed=result.replayed)


@post(
    "/projects/{project:str}/imports",
    tags=["imports"],
    summary="导入表格（报账员；先 dry_run=true 试导入，再正式导入，须带 Idempotency-Key）",
    description=(
        "请求体为表格文件本身（.xlsx 或 CSV：UTF-8、带 BOM 的 UTF-8、GBK/GB18030 均可），或 multipart/form-data "
        "的 file 字段；不超过 10 MiB、10,000 行。试导入返回将记录的内容与全部问题（{row, column, message}）；"
        "正式导入全部无误才记账，有任何问题则 422、一条不记；同一文件内容再次导入：409，并指出第一次导入。"
    ),
    security=BEARER,
    request_max_body_size=IMPORT_BODY_MAX,
    opt={"raw_body": UPLOAD_MEDIA_TYPES},
    responses={
        200: ResponseSpec(ImportOut, description="试导入（dry_run=true）：不记账"),
        201: ResponseSpec(ImportOut, description="已全部记账"),
        **problems(400, 401, 403, 404, 409, 413, 415, 422),
    },
)
async def create_import(
    request: Request,
    db: Db,
    project: str,
    dry_run: Annotated[bool, Parameter(description="true：只试导入，不记账")] = False,
    kind: Annotated[ImportKind, Parameter(description="没有「类型」列时每行的类型")] = "contribution",
    idempotency_key: Annotated[
        str | None,
        HeaderParameter(
            name="Idempotency-Key",
            description="正式导入必填（1–255 个可打印 ASCII 字符）；重试同一请求不会重复记账",
            required=False,
            min_length=1,
            max_length=255,
            pattern=r"^[\x21-\x7e]+$",
        ),
    ] = None,
) -> Response[Any]:
    key = request.headers.get("idempotency-key")
    if key is None and not dry_run:
        raise ApiError("idempotency_key_missing", "正式导入须带 Idempotency-Key 请求头（试导入 dry_run=true 不需要）")
    if key is not None and (not 1 <= len(key) <= 255 or not all(0x21 <= ord(ch) <= 0x7E for ch in key)):
        raise ApiError("malformed_request", "Idempotency-Key 须为 1–255 个可打印 ASCII 字符")
    await request.body()  # read (and bounded) before the token is looked at, as every write does
    caller = await require_project_writer(request, project)
    upload = await read_upload(request)
    async with db.connect() as conn:
        found = await get_project(conn, project)
    assert kind in IMPORT_KINDS
    idem = None
    if not dry_run and key is not None:
        idem = IdempotencyRequest(
            scope=caller.scope,
            key=key,
            fingerprint=fingerprint(
                b"POST", request.url.path.encode(), kind.encode(), hashlib.sha256(upload.data).digest()
            ),
        )
    return await import_upload(
        db.engine, found, upload, kind=kind, dry_run=dry_run, recorded_by=caller.scope, idempotency=idem
    )


@get(
    "/imports/template.xlsx",
    tags=["imports"],
    summary="导入模板（每一列、示例行、说明页）",
    media_type=XLSX_MEDIA_TYPE,
    opt={"raw_response": (XLSX_MEDIA_TYPE,)},
    responses=problems(401),
)
async def import_template() -> Response[bytes]:
    return Response(
        template_xlsx(),
        media_type=XLSX_MEDIA_TYPE,
        headers={
            "Content-Disposition": "attachment; filename=\"ledger-import-template.xlsx\"; filename*=UTF-8''%E5%AF%BC%E5%85%A5%E6%A8%A1%E6%9D%BF.xlsx",
            "Cache-Control": "public, max-age=3600",
        },
    )


ROUTES = [create_import, import_template]
