"""The workspace's 导入表格 page: upload the spreadsheet, read the dry run (what would be recorded,
every problem), confirm. The same service as POST …/imports and ``ledger import``.

Between the check and the confirmation the file waits on the server (in the service's data folder,
under its SHA-256, deleted once imported or after a day), so the confirm button posts only the
digest; it carries the form's idempotency key, so a double-click records once.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path
from typing import Any

from litestar import Request, Response, get, post
from litestar.datastructures import UploadFile
from litestar.response import Redirect, Template
from sqlalchemy.ext.asyncio import AsyncEngine

from api.db import Db
from api.presenters import project_out
from api.routes.imports import import_body
from api.workspace.routes import idempotency, may_write, new_idem, once, page, readable_project, refused
from api.workspace.session import Session, current_session, posted_form
from ledger.errors import LedgerError, NotFound, ValidationFailed
from ledger.imports import IMPORT_KINDS, KIND_LABELS, ImportRefused, ImportReport, prepare_import, run_import
from ledger.projects import Project
from ledger.spreadsheet import SIZE_MAX

UPLOAD_FORM_MAX = SIZE_MAX + 64 * 1024
STAGED_FOR_S = 24 * 3600
SUFFIXES = (".xlsx", ".csv", ".txt", ".xls", ".xlsm", ".et")


def _staging(request: Request, project: Project) -> Path:
    folder = Path(request.app.state.settings.data_dir) / "imports" / str(project.community_id)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _stage(folder: Path, data: bytes, sha256: str, filename: str) -> None:
    """Keep the uploaded file until it is confirmed; older ones (never confirmed) are removed."""
    now = time.time()
    for old in folder.iterdir():
        with contextlib.suppress(OSError):
            if now - old.stat().st_mtime > STAGED_FOR_S:
                old.unlink()
    suffix = next((s for s in SUFFIXES if filename.lower().endswith(s)), "")
    target = folder / f"{sha256}{suffix}"
    if not target.exists():
        partial = target.with_name(target.name + ".part")
        partial.write_bytes(data)
        partial.replace(target)


def _staged(folder: Path, sha256: str) -> Path | None:
    if len(sha256) != 64 or not all(c in "0123456789abcdef" for c in sha256):
        return None
    return next((p for p in folder.glob(f"{sha256}*") if not p.name.endswith(".part")), None)


def _kind(value: Any) -> str:
    return value if isinstance(value, str) and value in IMPORT_KINDS else "contribution"


def _page(
    session: Session,
    found: Project,
    *,
    report: ImportReport | None = None,
    kind: str = "contribution",
    message: str = "",
    status: int = 200,
) -> Template:
    """The upload form; with a report, the dry run above it (and the confirm button if clean)."""
    return page(
        "import",
        session,
        status,
        project=project_out(found),
        kinds=[(k, KIND_LABELS[k]) for k in IMPORT_KINDS],
        kind=kind,
        message=message,
        report=import_body(report, dry_run=True) if report is not None else None,
        kind_labels=KIND_LABELS,
        idem=new_idem(),
    )


NOT_A_WRITER = "只有本社区的报账员可以导入表格。"


async def _posted(request: Request, engine: AsyncEngine, project: str) -> tuple[Session, dict[str, Any], Project]:
    session = await current_session(request)
    form = await posted_form(request, session)
    return session, form, await readable_project(engine, session, project)


@get("/p/{project:str}/import", name="ws_import")
async def import_form(request: Request, db: Db, project: str) -> Template:
    session = await current_session(request)
    found = await readable_project(db.engine, session, project)
    if not may_write(session.caller, found.community_id):
        return refused(session, NOT_A_WRITER)
    return _page(session, found)


@post("/p/{project:str}/import", name="ws_import_check", request_max_body_size=UPLOAD_FORM_MAX)
async def import_check(request: Request, db: Db, project: str) -> Template:
    """The dry run of the uploaded file."""
    session, form, found = await _posted(request, db.engine, project)
    if not may_write(session.caller, found.community_id):
        return refused(session, NOT_A_WRITER)
    kind = _kind(form.get("kind"))
    upload = form.get("file")
    if not isinstance(upload, UploadFile) or not upload.filename:
        return _page(session, found, message="请选择要导入的表格文件（.xlsx 或 CSV）。", status=422, kind=kind)
    data = await upload.read()
    if len(data) > SIZE_MAX:
        return _page(session, found, message="文件超过 10 MiB：请分成几个文件导入。", status=413, kind=kind)
    try:
        report = await asyncio.to_thread(prepare_import, found, data, default_kind=kind, filename=upload.filename)
        await run_import(db.engine, found, report, dry_run=True, recorded_by=session.caller.scope)
    except ValidationFailed as exc:
        return _page(session, found, message=exc.detail, status=422, kind=kind)
    except LedgerError as exc:
        if isinstance(exc, NotFound):
            raise
        return _page(session, found, message=exc.detail, status=409, kind=kind)
    if not report.problems:
        await asyncio.to_thread(_stage, _staging(request, found), data, report.file_sha256, upload.filename)
    return _page(session, found, report=report, kind=kind, status=200 if not report.problems else 422)


@post("/p/{project:str}/import/confirm", name="ws_import_confirm", status_code=303)
async def import_confirm(request: Request, db: Db, project: str) -> Response[Any]:
    """Record the checked file: all rows or none, once (a double-click replays the first answer)."""
    session, form, found = await _posted(request, db.engine, project)
    if not may_write(session.caller, found.community_id):
        return refused(session, NOT_A_WRITER)
    kind = _kind(form.get("kind"))
    folder = _staging(request, found)
    staged = _staged(folder, str(form.get("sha256") or ""))
    if staged is None:
        return _page(
            session, found, message="找不到待导入的文件（可能已导入或已过期）：请重新上传。", status=410, kind=kind
        )
    data = await asyncio.to_thread(staged.read_bytes)
    idem = idempotency(session, request.url.path, form)
    try:
        report = await asyncio.to_thread(prepare_import, found, data, default_kind=kind, filename=staged.name)
        result = await once(
            lambda: run_import(
                db.engine,
                found,
                report,
                dry_run=False,
                recorded_by=session.caller.scope,
                idempotency=idem,
                render=lambda rep, recorded, import_id: import_body(
                    rep, dry_run=False, recorded=recorded, import_id=import_id
                ),
            )
        )
    except ImportRefused as exc:
        # The ledger moved since the check (cash spent meanwhile, say): the problems, nothing recorded.
        return _page(session, found, report=exc.report, kind=kind, message="未导入：" + exc.detail, status=422)
    except LedgerError as exc:
        if isinstance(exc, NotFound):
            raise
        return _page(session, found, message=exc.detail, status=409, kind=kind)
    with contextlib.suppress(OSError):
        staged.unlink()
    recorded = _recorded_summary(result.body)
    return Redirect(f"/w/p/{found.code}?{recorded}", status_code=303)


def _recorded_summary(body: str) -> str:
    import json
    from urllib.parse import urlencode

    answer = json.loads(body)
    entries = answer.get("entries") or [{}]
    return urlencode(
        {
            "imported": answer.get("import_id"),
            "first": entries[0].get("seq"),
            "last": answer.get("tree_size"),
            "n": answer.get("recorded"),
        }
    )


ROUTES = [import_form, import_check, import_confirm]
