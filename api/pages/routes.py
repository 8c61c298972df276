"""The resident pages: server-rendered HTML over the same read functions and presenters as the API.

URLs are printed on paper (QR codes on sheets), so they never change. Controllers stay thin:
read, present with ``api.presenters``, render a template.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Annotated, Any

from litestar import Request, Response, get, post
from litestar.params import Parameter
from litestar.response import Redirect, Template
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncEngine

from api import schemas as s
from api.db import Db
from api.errors import validation_errors
from api.http import INT64_MAX, PathId
from api.pages.cache import project_page as cached_page
from api.pages.views import stage_steps
from api.presenters import award_out, community_out, decision_out, entry_out, pledge_out, pledge_totals_out, project_out
from api.routes.disclosures import disclosure_out, objection_out
from api.routes.evaluations import comment_out, results_out
from api.routes.progress import progress_out
from ledger import kinds
from ledger.awards import project_award_by_code
from ledger.canonical import SHANGHAI
from ledger.communities import get_community, list_communities
from ledger.decisions import list_decisions
from ledger.disclosures import file_objection, get_disclosure, list_disclosures, list_objections
from ledger.entry_reads import get_entry, list_entries, seqs_by_receipt_no
from ledger.errors import Conflict, ValidationFailed
from ledger.evaluations import (
    CodeUsed,
    display_code,
    evaluation_results,
    list_comments,
    normalise_code,
    submit_evaluation,
    window_refusal,
)
from ledger.money import format_fen
from ledger.pledges import list_pledges, pledge_totals
from ledger.progress import list_notes
from ledger.projects import Project, get_project, list_projects
from ledger.summary import project_summary
from ledger.witnesses import list_cosignatures
from reports.labels import SOURCE_LABELS

LIST_MAX = 500  # communities and projects on one page: a district, not a province
COMMUNITY_PAGE = 30  # project cards on a community's page (each with its money figures)
INDEX_PROJECTS = 5  # newest projects listed under each community on the index; the rest on its page
ENTRIES_PAGE = 50
NEWEST_ENTRIES = 5
OPEN_PLEDGES_SHOWN = 10
PLEDGE_STATUSES = (("open", "未兑现"), ("fulfilled", "已兑现"), ("reversed", "已冲正"))
SEARCH_MAX = 40
COMMENTS_SHOWN = 20
NOTES_SHOWN = 10
EVAL_CODE_TYPED_MAX = 40
EVAL_COMMENT_TYPED_MAX = 600
RECEIPT_NO_MAX = 64  # as the entries table allows
ROOT_TYPED_MAX = 200  # 64 hex digits with whatever spacing the resident typed
KINDS = kinds.NAMES
# Ids in addresses are bounded as in the API (``PathId``: one that cannot exist is the 404 page, not
# a BIGINT overflow in PostgreSQL); so is the seq a list page starts after (the 400 page).
After = Annotated[int, Parameter(le=INT64_MAX)]


def template(name: str) -> str:
    return f"pages/{name}.html.j2"


def page(name: str, status_code: int = 200, headers: dict[str, str] | None = None, **context: Any) -> Template:
    return Template(template_name=template(name), context=context, status_code=status_code, headers=headers)


@get("/", name="page_index")
async def index(db: Db, q: str | None = None) -> Template:
    query = (q or "").strip()[:SEARCH_MAX]
    async with db.connect() as conn:
        communities = await list_communities(conn, after_id=0, limit=LIST_MAX)
        projects = await list_projects(conn, community_code=None, stage=None, after_id=0, limit=LIST_MAX)
    by_community: dict[str, list[Project]] = {}
    for p in sorted(projects, key=lambda p: p.created_at, reverse=True):
        by_community.setdefault(p.community_code, []).append(p)
    groups = []
    for c in communities:
        found = by_community.get(c.code, [])
        if query and query not in c.name and query not in c.district:
            found = [p for p in found if query in p.title]
            if not found:
                continue
        groups.append(
            (
                community_out(c),
                [project_out(p) for p in found[:INDEX_PROJECTS]],
                len(found) - INDEX_PROJECTS,
                max((p.created_at for p in found), default=c.created_at),
            )
        )
    groups.sort(key=lambda g: g[3], reverse=True)
    return page("index", groups=[(c, ps, more) for c, ps, more, _ in groups], q=query)


@get("/c/{community:str}", name="page_community")
async def community_page(db: Db, community: str, before: After = 0) -> Template:
    """The community's projects, newest first, a phone's page at a time (each card reads its
    project's summary); ``before`` is the id the previous page ended at."""
    async with db.connect() as conn:
        found = await get_community(conn, community)
        projects = await list_projects(
            conn,
            community_code=found.code,
            stage=None,
            after_id=0,
            limit=COMMUNITY_PAGE + 1,
            newest_first=True,
            before_id=before if before > 0 else None,
        )
        shown = projects[:COMMUNITY_PAGE]
        cards = [project_out(p, await project_summary(conn, p)) for p in shown]
    return page(
        "community",
        community=community_out(found),
        projects=cards,
        next_before=shown[-1].id if len(projects) > COMMUNITY_PAGE else None,
        paged=before > 0,
    )


async def _project_context(engine: AsyncEngine, project: str) -> dict[str, Any]:
    async with engine.connect() as conn:
        found = await get_project(conn, project)
        summary = await project_summary(conn, found)
        newest = await list_entries(conn, found.code, after_seq=max(summary.ledger_size - NEWEST_ENTRIES, 0))
        open_pledges = await list_pledges(conn, found.id, status="open", limit=OPEN_PLEDGES_SHOWN)
        results = await evaluation_results(conn, found.id, found.code)
        comments = await list_comments(conn, found.id, limit=COMMENTS_SHOWN)
        notes = await list_notes(conn, found.id, found.code, limit=NOTES_SHOWN + 1)
        decisions = [decision_out(d) for d in await list_decisions(conn, found.code)]
        sheets = [disclosure_out(d) for d in await list_disclosures(conn, found.code, after_id=0, limit=LIST_MAX)]
    award = await project_award_by_code(engine, found.code)
    by_source: dict[str, int] = {}
    for line in found.budget_lines:
        label = SOURCE_LABELS.get(line.source, line.source)
        by_source[label] = by_source.get(label, 0) + line.amount_fen
    return {
        "project": project_out(found, summary),
        "steps": stage_steps(found.stage, decisions),
        "sources": {line.category: line.source for line in found.budget_lines},
        "by_source": [(label, format_fen(fen)) for label, fen in by_source.items()],
        "community_name": found.community_name,
        "community_district": found.community_district,
        "decisions": decisions,
        "sheets": list(reversed(sheets)),
        "newest": [entry_out(e, unmasked=False) for e in reversed(newest)],
        "pledges_open": [pledge_out(p, unmasked=False) for p in open_pledges],
        "award": award_out(award) if award is not None else None,
        # The API's own presenters: the page shows exactly what /api/v1 answers.
        "evaluation": results_out(
            found.code, found.stage, results, [comment_out(c, unmasked=False) for c in comments], None
        ),
        "evaluation_refusal": window_refusal(found.stage),
        "notes": [progress_out(n) for n in notes[:NOTES_SHOWN]],
        "more_notes": len(notes) > NOTES_SHOWN,
        "eval_form": EvalForm(),
    }


@dataclass
class EvalForm:
    """The evaluation form as a resident left it (kept when refused), and how it went."""

    code: str = ""
    score: str = ""
    comment: str = ""
    errors: list[str] = field(default_factory=list)
    done: bool = False


@get("/p/{project:str}", name="page_project")
async def project_page(
    request: Request, db: Db, project: str, code: str | None = None, evaluated: str | None = None
) -> Response[bytes] | Template:
    if code is not None:
        # Opened from a slip's QR code: the form with the code filled in. Never cached (the code is
        # a credential), and nothing here says whether the code is valid: that would let anyone
        # test codes without the rate limit of a submission.
        context = await _project_context(db.engine, project)
        typed = code.strip()[:EVAL_CODE_TYPED_MAX]
        normalised = normalise_code(typed)
        # As the slip prints it (two groups of five), so the resident can compare the two.
        context["eval_form"] = EvalForm(code=display_code(normalised) if normalised else typed)
        return page("project", headers={"Cache-Control": "no-store"}, **context)

    async def build() -> tuple[str, dict[str, Any]]:
        context = await _project_context(db.engine, project)
        context["eval_form"] = EvalForm(done=evaluated == "1")
        return template("project"), context

    return await cached_page(request, db.engine, project, build)


@post(
    "/p/{project:str}/evaluations",
    name="page_evaluation",
    # The same per-address limit as the API's evaluation route (api/app.py: held in PostgreSQL, shared by all workers).
    opt={"public_write": True},
    status_code=303,
)
async def evaluation_form(request: Request, db: Db, project: str) -> Redirect | Template:
    form = await request.form()
    typed = EvalForm(
        code=str(form.get("household_code") or "").strip()[:EVAL_CODE_TYPED_MAX],
        score=str(form.get("score") or "").strip()[:1],
        comment=str(form.get("comment") or "").strip()[:EVAL_COMMENT_TYPED_MAX],
    )
    done = Redirect(f"/p/{project}?evaluated=1#evaluate", status_code=303)
    status_code = 422
    try:
        body = s.EvaluationIn.model_validate(
            {
                "household_code": typed.code,
                "score": int(typed.score) if typed.score.isdigit() else 0,
                "comment": typed.comment or None,
            }
        )
        await submit_evaluation(db.engine, project, body.household_code, body.score, body.comment)
        return done
    except ValidationError as exc:
        typed.errors = [e["message"] for e in _eval_labelled(exc)]
    except CodeUsed as exc:
        if exc.same:
            return done  # the same form sent twice (a double tap): it was recorded once
        typed.errors, status_code = [exc.detail], 409
    except (ValidationFailed, Conflict) as exc:
        typed.errors, status_code = [exc.detail], 409 if isinstance(exc, Conflict) else 422
    context = await _project_context(db.engine, project)
    context["eval_form"] = typed
    return page("project", status_code=status_code, headers={"Cache-Control": "no-store"}, **context)


def _eval_labelled(exc: ValidationError) -> list[dict[str, str]]:
    names = {"household_code": "评价码", "score": "评分", "comment": "意见"}
    return [{"message": f"{names.get(e['field'], e['field'])}：{e['message']}"} for e in validation_errors(exc)]


@get("/p/{project:str}/entries", name="page_entries")
async def entries_page(
    request: Request, db: Db, project: str, kind: str | None = None, after: After = 0
) -> Response[bytes]:
    async def build() -> tuple[str, dict[str, Any]]:
        shown = kind if kind in KINDS else None
        async with db.connect() as conn:
            found = await get_project(conn, project)
            rows = await list_entries(conn, found.code, kind=shown, after_seq=max(after, 0), limit=ENTRIES_PAGE + 1)
        more = len(rows) > ENTRIES_PAGE
        rows = rows[:ENTRIES_PAGE]
        return template("entries"), {
            "project": project_out(found),
            "community_name": found.community_name,
            "entries": [entry_out(e, unmasked=False) for e in rows],
            "kind": shown,
            "kinds": KINDS,
            "next_after": rows[-1].seq if more else None,
            "after": after,
        }

    return await cached_page(request, db.engine, project, build)


@get("/p/{project:str}/pledges", name="page_pledges")
async def pledges_page(
    request: Request, db: Db, project: str, status: str | None = None, after: After = 0
) -> Response[bytes]:
    async def build() -> tuple[str, dict[str, Any]]:
        shown = status if status in dict(PLEDGE_STATUSES) else None
        async with db.connect() as conn:
            found = await get_project(conn, project)
            totals = await pledge_totals(conn, found.id)
            rows = await list_pledges(conn, found.id, status=shown, after_seq=max(after, 0), limit=ENTRIES_PAGE + 1)
        more = len(rows) > ENTRIES_PAGE
        rows = rows[:ENTRIES_PAGE]
        return template("pledges"), {
            "project": project_out(found),
            "community_name": found.community_name,
            "totals": pledge_totals_out(totals),
            "pledges": [pledge_out(p, unmasked=False) for p in rows],
            "status": shown,
            "statuses": PLEDGE_STATUSES,
            "next_after": rows[-1].seq if more else None,
            "after": after,
        }

    return await cached_page(request, db.engine, project, build)


@get("/p/{project:str}/progress", name="page_progress")
async def progress_page(request: Request, db: Db, project: str, before: int = 0) -> Response[bytes]:
    async def build() -> tuple[str, dict[str, Any]]:
        async with db.connect() as conn:
            found = await get_project(conn, project)
            notes = await list_notes(
                conn, found.id, found.code, before_id=before if before > 0 else None, limit=ENTRIES_PAGE + 1
            )
        return template("progress"), {
            "project": project_out(found),
            "community_name": found.community_name,
            "notes": [progress_out(n) for n in notes[:ENTRIES_PAGE]],
            "before": before,
            "next_before": notes[ENTRIES_PAGE - 1].id if len(notes) > ENTRIES_PAGE else None,
        }

    return await cached_page(request, db.engine, project, build)


@get("/p/{project:str}/e/{seq:int}", name="page_entry")
async def entry_page(request: Request, db: Db, project: str, seq: PathId) -> Response[bytes]:
    async def build() -> tuple[str, dict[str, Any]]:
        async with db.connect() as conn:
            found = await get_project(conn, project)
            entry = await get_entry(conn, found.code, seq)
            sheets = [disclosure_out(d) for d in await list_disclosures(conn, found.code, after_id=0, limit=LIST_MAX)]
        return template("entry"), {
            "project": project_out(found),
            "community_name": found.community_name,
            "entry": entry_out(entry, unmasked=False),
            "category_labels": {b.category: b.label for b in found.budget_lines},
            "sheets": [d for d in reversed(sheets) if d.tree_size >= seq],
            "check": {"seq": seq, "size": "", "root": ""},
        }

    return await cached_page(request, db.engine, project, build)


@get("/p/{project:str}/check", name="page_check")
async def check_page(
    db: Db, project: str, seq: str | None = None, size: str | None = None, root: str | None = None
) -> Template:
    async with db.connect() as conn:
        found = await get_project(conn, project)
        sheets = [disclosure_out(d) for d in await list_disclosures(conn, found.code, after_id=0, limit=LIST_MAX)]
    typed = (seq or "").strip()[:RECEIPT_NO_MAX]
    receipt_no, matches = None, []
    if typed and not typed.isdigit():
        # A receipt number (收据号) rather than a seq: find its entry; the check then confirms the
        # document itself carries this receipt number, so the look-up need not be trusted.
        receipt_no = typed
        async with db.connect() as conn:
            matches = await seqs_by_receipt_no(conn, found.code, receipt_no)
        typed = str(matches[0]) if len(matches) == 1 else typed
    return page(
        "check",
        project=project_out(found),
        community_name=found.community_name,
        sheets=list(reversed(sheets)),
        # Echoed into input values only (escaped); the script reads them back and checks them.
        check={"seq": typed, "size": (size or "")[:20], "root": (root or "")[:ROOT_TYPED_MAX]},
        receipt_no=receipt_no,
        matches=matches,
        autorun=bool(typed.isdigit() and size and root),
    )


async def _disclosure_context(engine: AsyncEngine, disclosure_id: int) -> dict[str, Any]:
    async with engine.connect() as conn:
        d = await get_disclosure(conn, disclosure_id)
        found = await get_project(conn, d.project_code)
        signed = await list_cosignatures(conn, [d.id])
        objections = await list_objections(conn, disclosure_id)
    return {
        "sheet": disclosure_out(d, cosignatures=signed[d.id]),
        "project": project_out(found),
        "community_name": found.community_name,
        "objections": [objection_out(o) for o in objections],
        "accepting": d.in_notice_period(_today()),
        "form": {"message": "", "contact": ""},
        "form_errors": [],
        "filed": False,
    }


def _today() -> date:
    return datetime.now(SHANGHAI).date()


@get("/d/{disclosure_id:int}", name="page_disclosure")
async def disclosure_page(db: Db, disclosure_id: PathId, filed: str | None = None) -> Template:
    context = await _disclosure_context(db.engine, disclosure_id)
    context["filed"] = filed == "1"
    return page("disclosure", **context)


@post(
    "/d/{disclosure_id:int}/objections",
    name="page_objection",
    # The same per-address limit as the API's objection route (api/app.py: held in PostgreSQL, shared by all workers).
    opt={"public_write": True},
    status_code=303,
)
async def objection_form(request: Request, db: Db, disclosure_id: PathId) -> Redirect | Template:
    form = await request.form()
    message = str(form.get("message") or "").strip()
    contact = str(form.get("contact") or "").strip() or None
    try:
        body = s.ObjectionIn(message=message, contact=contact)
    except ValidationError as exc:
        return await _form_again(db.engine, disclosure_id, message, contact, [e["message"] for e in _labelled(exc)])
    try:
        await file_objection(db.engine, disclosure_id, body.message, body.contact)
    except Conflict as exc:
        return await _form_again(db.engine, disclosure_id, message, contact, [exc.detail], status_code=409)
    return Redirect(f"/d/{disclosure_id}?filed=1#objections", status_code=303)


def _labelled(exc: ValidationError) -> list[dict[str, str]]:
    names = {"message": "异议内容", "contact": "联系方式"}
    return [{"message": f"{names.get(e['field'], e['field'])}：{e['message']}"} for e in validation_errors(exc)]


async def _form_again(
    engine: AsyncEngine,
    disclosure_id: int,
    message: str,
    contact: str | None,
    errors: list[str],
    status_code: int = 422,
) -> Template:
    context = await _disclosure_context(engine, disclosure_id)
    context["form"] = {"message": message[:2000], "contact": (contact or "")[:200]}
    context["form_errors"] = errors
    return page("disclosure", status_code=status_code, **context)


ROUTES = [
    index,
    community_page,
    project_page,
    evaluation_form,
    entries_page,
    pledges_page,
    progress_page,
    entry_page,
    check_page,
    disclosure_page,
    objection_form,
]
