"""Projects (共同缔造项目): their budget lines, chart of accounts and ledger head."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import func, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ledger import merkle, pg
from ledger.accounts import FLOORS_FEN, project_account_codes
from ledger.awards import assign_policy, require_policy_code
from ledger.communities import get_community
from ledger.errors import Conflict, NotFound, ValidationFailed
from ledger.masking import refuse_personal_numbers
from ledger.tables import (
    accounts,
    balances,
    budget_lines,
    communities,
    project_award_policies,
    project_heads,
    projects,
)

BUDGET_SOURCES = ("crowdfunding", "grant", "collective", "other")
BUDGET_LINES_MAX = 50


@dataclass(frozen=True)
class BudgetLine:
    category: str
    label: str
    source: str
    amount_fen: int


@dataclass(frozen=True)
class NewProject:
    code: str
    community_code: str
    title: str
    description: str = ""
    households_in_scope: int = 0
    budget_lines: list[BudgetLine] = field(default_factory=list)
    spending_gate: str = "resolution"
    # Spending (expenditures, refunds) above this many fen needs a voucher approved by a second
    # person; 0 means all of it; None means no countersign.
    countersign_over_fen: int | None = None
    # The 以奖代补 policy code the project follows (ledger/awards.py); None: none yet.
    award_policy: str | None = None
    created_by: str = ""


@dataclass(frozen=True)
class Project:
    id: int
    community_id: int
    community_code: str
    community_name: str
    community_district: str
    code: str
    title: str
    description: str
    households_in_scope: int
    stage: str
    spending_gate: str
    created_at: datetime
    budget_lines: list[BudgetLine]
    countersign_over_fen: int | None = None
    award_policy: str | None = None


async def create_project(engine: AsyncEngine, new: NewProject) -> Project:
    """Errors: NotFound (community), ValidationFailed (budget lines, unknown award policy),
    Conflict (code taken)."""
    _check_budget_lines(new.budget_lines)
    refuse_personal_numbers(
        {
            "title": new.title,
            "description": new.description,
            **{f"budget_lines[{i}].label": b.label for i, b in enumerate(new.budget_lines)},
            **{f"budget_lines[{i}].category": b.category for i, b in enumerate(new.budget_lines)},
        }
    )
    try:
        async with engine.begin() as conn:
            community = await get_community(conn, new.community_code)
            raw = (await conn.get_raw_connection()).driver_connection
            if new.award_policy is not None:
                await require_policy_code(raw, new.award_policy)  # 422 before a taken code's 409
            project_id = (
                await conn.execute(
                    insert(projects)
                    .values(
                        community_id=community.id,
                        code=new.code,
                        title=new.title,
                        description=new.description,
                        households_in_scope=new.households_in_scope,
                        spending_gate=new.spending_gate,
                        countersign_over_fen=new.countersign_over_fen,
                    )
                    .returning(projects.c.id)
                )
            ).scalar_one()
            ids = {"community_id": community.id, "project_id": project_id}
            if new.budget_lines:
                await conn.execute(
                    insert(budget_lines),
                    [
                        {
                            **ids,
                            "position": i,
                            "category": b.category,
                            "label": b.label,
                            "source": b.source,
                            "amount_fen": b.amount_fen,
                        }
                        for i, b in enumerate(new.budget_lines)
                    ],
                )
            codes = project_account_codes([b.category for b in new.budget_lines])
            account_rows = (
                await conn.execute(
                    insert(accounts).returning(accounts.c.id, accounts.c.code),
                    [{**ids, "code": code, "is_memorandum": memo} for code, memo in codes.items()],
                )
            ).all()
            await conn.execute(
                insert(balances),
                [{**ids, "account_id": a.id, "floor_fen": FLOORS_FEN.get(a.code)} for a in account_rows],
            )
            await conn.execute(insert(project_heads).values(**ids, size=0, frontier=b"", root_hash=merkle.EMPTY_ROOT))
            if new.award_policy is not None:
                await assign_policy(raw, project_id, community.id, new.award_policy, assigned_by=new.created_by)
            return await get_project(conn, new.code)
    except IntegrityError as exc:
        if "projects_code_unique" in str(exc.orig):
            raise Conflict(f"项目编号 {new.code} 已存在") from exc
        raise


def _check_budget_lines(lines: list[BudgetLine]) -> None:
    if len(lines) > BUDGET_LINES_MAX:
        raise ValidationFailed.on("budget_lines", f"预算科目最多 {BUDGET_LINES_MAX} 项")
    seen: set[str] = set()
    for i, line in enumerate(lines):
        if line.category in seen:
            raise ValidationFailed.on(f"budget_lines[{i}].category", f"预算科目 {line.category} 重复")
        seen.add(line.category)


def _project_query():
    award_policy = (
        select(project_award_policies.c.policy_code)
        .where(project_award_policies.c.project_id == projects.c.id)
        .order_by(project_award_policies.c.id.desc())
        .limit(1)
        .scalar_subquery()
    )
    return select(
        projects,
        communities.c.code.label("community_code"),
        communities.c.name.label("community_name"),
        communities.c.district.label("community_district"),
        award_policy.label("award_policy"),
    ).join(communities, communities.c.id == projects.c.community_id)


async def get_project(conn: AsyncConnection, code: str) -> Project:
    """The project and its budget lines, on the caller's connection. Errors: NotFound."""
    row = (await conn.execute(_project_query().where(projects.c.code == code))).one_or_none()
    if row is None:
        raise NotFound(f"项目 {code} 不存在")
    lines = (
        await conn.execute(
            select(budget_lines).where(budget_lines.c.project_id == row.id).order_by(budget_lines.c.position)
        )
    ).all()
    return _project_from_row(row, [BudgetLine(r.category, r.label, r.source, r.amount_fen) for r in lines])


def _project_from_row(row: object, lines: list[BudgetLine]) -> Project:
    m = row._mapping  # type: ignore[attr-defined]
    return Project(
        id=m["id"],
        community_id=m["community_id"],
        community_code=m["community_code"],
        community_name=m["community_name"],
        community_district=m["community_district"],
        code=m["code"],
        title=m["title"],
        description=m["description"],
        households_in_scope=m["households_in_scope"],
        stage=m["stage"],
        spending_gate=m["spending_gate"],
        created_at=m["created_at"],
        budget_lines=lines,
        countersign_over_fen=m["countersign_over_fen"],
        award_policy=m["award_policy"],
    )


async def list_projects(
    conn: AsyncConnection,
    *,
    community_code: str | None,
    stage: str | None,
    after_id: int,
    limit: int,
    newest_first: bool = False,
    before_id: int | None = None,
) -> list[Project]:
    """Projects in id order from ``after_id`` (keyset), or newest first (what a treasurer's desk
    and a community's page show: the projects being worked on), from ``before_id`` down."""
    if newest_first:
        query = _project_query().order_by(projects.c.id.desc()).limit(limit)
        if before_id is not None:
            query = query.where(projects.c.id < before_id)
    else:
        query = _project_query().where(projects.c.id > after_id).order_by(projects.c.id).limit(limit)
    if community_code is not None:
        query = query.where(communities.c.code == community_code)
    if stage is not None:
        query = query.where(projects.c.stage == stage)
    rows = (await conn.execute(query)).all()
    if not rows:
        return []
    ids = [r.id for r in rows]
    line_rows = (
        await conn.execute(
            select(budget_lines)
            .where(budget_lines.c.project_id.in_(ids))
            .order_by(budget_lines.c.project_id, budget_lines.c.position)
        )
    ).all()
    by_project: dict[int, list[BudgetLine]] = {}
    for r in line_rows:
        by_project.setdefault(r.project_id, []).append(BudgetLine(r.category, r.label, r.source, r.amount_fen))
    return [_project_from_row(r, by_project.get(r.id, [])) for r in rows]


async def count_projects(conn: AsyncConnection) -> int:
    return (await conn.execute(select(func.count()).select_from(projects))).scalar_one()


_PROJECT_COMMUNITY = pg.Query("SELECT community_id FROM projects WHERE code = :code")


async def project_community(conn: AsyncConnection, code: str) -> int:
    """The community a project belongs to (what every write's authorization needs), in one
    indexed read (raw asyncpg on the caller's connection). Errors: NotFound."""
    raw = await pg.driver(conn)
    community_id = await raw.fetchval(_PROJECT_COMMUNITY.sql, *_PROJECT_COMMUNITY.args({"code": code}))
    if community_id is None:
        raise NotFound(f"项目 {code} 不存在")
    return int(community_id)


_VERSION = pg.Query(
    """
    SELECT p.stage, h.size, h.root_hash,
           (SELECT max(d.id) FROM decisions d WHERE d.project_id = p.id) AS decision_id,
           (SELECT max(s.sheet_number) FROM disclosures s WHERE s.project_id = p.id) AS sheet_number,
           (SELECT max(c.erased_at) FROM contributors c WHERE c.community_id = p.community_id) AS erased_at,
           -- The award page and sheet change with the policy followed and with any new version.
           (SELECT max(a.id) FROM project_award_policies a WHERE a.project_id = p.id) AS assigned_id,
           (SELECT max(id) FROM award_policies) AS policy_id,
           -- 共评 and 进展公开: scores, tallies, issued codes and progress notes are on the page too.
           concat_ws('.', coalesce((SELECT max(e.id) FROM evaluations e WHERE e.project_id = p.id), 0),
                     coalesce((SELECT max(t.id) FROM evaluation_tallies t WHERE t.project_id = p.id), 0),
                     coalesce((SELECT max(b.id) FROM evaluation_batches b WHERE b.project_id = p.id), 0),
                     coalesce((SELECT max(n.id) FROM progress_notes n WHERE n.project_id = p.id), 0)) AS loop,
           -- Any other change of the project's own row (its xmin is the last writer's transaction).
           p.xmin::text AS row_version, p.community_id
    FROM projects p JOIN project_heads h ON h.project_id = p.id
    WHERE p.code = :code
    """
)


@dataclass(frozen=True)
class ProjectState:
    """A project's version (what its public reads show changes only with it) and its community
    (what a caller's right to read unmasked names depends on)."""

    version: str
    community_id: int


async def project_state(conn: AsyncConnection, code: str) -> ProjectState:
    """Everything a project's public pages and JSON reads show can change only with one of these:
    the tree head, the stage and decision trail (and any other update of the project's row), the
    published sheets, an erasure in the community, the award policy, the scores, tallies, codes and
    progress notes of 共评 and 进展公开. One small read, so a read can answer 304 (or from a cache)
    without rebuilding itself. Errors: NotFound."""
    row = await pg.fetchrow(await pg.driver(conn), _VERSION, code=code)
    if row is None:
        raise NotFound(f"项目 {code} 不存在")
    erased = row["erased_at"].isoformat() if row["erased_at"] else "-"
    version = (
        f"{row['stage']}|{row['size']}|{bytes(row['root_hash']).hex()}|{row['decision_id']}|{row['sheet_number']}"
        f"|{erased}|{row['assigned_id']}|{row['policy_id']}|{row['loop']}|{row['row_version']}"
    )
    return ProjectState(version, int(row["community_id"]))
