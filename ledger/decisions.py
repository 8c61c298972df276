"""四议两公开: the recorded decisions that open (and close) a project's spending.

提议 proposal → 商议 deliberation (两委) → 审议 review (党员大会) → 决议 resolution (居民代表大会) →
决议公开 announcement (with a notice period) → 实施 start → 验收 acceptance → 共评 evaluation →
结项 closure. Each decision is an append-only row; recording one moves the project's ``stage``.

Spending gate: unless the project's gate is ``waived``, an expenditure needs an announcement
whose notice period (held_on + notice_days) has ended on or before today, and a ``start``
decision after it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

import asyncpg
from sqlalchemy import insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ledger import pg
from ledger.canonical import SHANGHAI
from ledger.errors import Conflict, NotFound, StageForbidsEntry, ValidationFailed
from ledger.idempotency import IdempotencyRequest, StoredResponse, claim, response_body, store
from ledger.masking import refuse_personal_numbers
from ledger.tables import decisions, projects

STAGES = (
    "proposal",
    "deliberation",
    "review",
    "resolution",
    "announcement",
    "start",
    "acceptance",
    "evaluation",
    "closure",
)
STAGE_LABELS = {
    "proposal": "提议",
    "deliberation": "商议",
    "review": "审议",
    "resolution": "决议",
    "announcement": "决议公开",
    "start": "实施",
    "acceptance": "验收",
    "evaluation": "共评",
    "closure": "结项",
}
DEFAULT_NOTICE_DAYS = 7


@dataclass(frozen=True)
class DecisionDraft:
    stage: str
    held_on: date
    body: str
    eligible: int | None = None
    attendees: int | None = None
    votes_for: int | None = None
    votes_against: int | None = None
    votes_abstain: int | None = None
    summary: str = ""
    minutes_sha256: str | None = None
    notice_days: int | None = None


@dataclass(frozen=True)
class Decision:
    id: int
    project_code: str
    stage: str
    held_on: date
    body: str
    eligible: int | None
    attendees: int | None
    votes_for: int | None
    votes_against: int | None
    votes_abstain: int | None
    summary: str
    minutes_sha256: str | None
    notice_days: int | None
    recorded_at: datetime

    @property
    def notice_end(self) -> date | None:
        if self.stage != "announcement" or self.notice_days is None:
            return None
        return self.held_on + timedelta(days=self.notice_days)


def _quorum_error(d: DecisionDraft) -> str | None:
    """Attendance and majority rules of the meeting that takes each decision."""
    needs_meeting = d.stage in ("deliberation", "review", "resolution")
    if not needs_meeting:
        return None
    if d.eligible is None or d.attendees is None or d.votes_for is None:
        return "须填写应到人数、实到人数和赞成票数"
    if d.eligible <= 0:
        return "应到人数须大于零"
    if d.stage == "resolution" and d.attendees * 3 < d.eligible * 2:
        return "居民代表大会须有三分之二以上代表出席"
    if d.stage != "resolution" and d.attendees * 2 <= d.eligible:
        return "会议须有过半数应到人员出席"
    if d.votes_for * 2 <= d.attendees:
        return "须经到会人员过半数同意"
    return None


async def record_decision(
    engine: AsyncEngine,
    project_code: str,
    draft: DecisionDraft,
    *,
    recorded_by: str,
    render: object,
    idempotency: IdempotencyRequest | None = None,
    today: date | None = None,
) -> tuple[StoredResponse, bool]:
    """Record one decision in order. Returns (response, replayed).

    Errors: NotFound, ValidationFailed (dates, counts), Conflict (out of order, quorum or majority
    not met, start inside the notice period), IdempotencyInFlight, IdempotencyKeyReused.
    """

    today = today or datetime.now(SHANGHAI).date()
    if draft.stage not in STAGES:
        raise ValidationFailed.on("stage", f"未知的环节 {draft.stage}")
    if draft.held_on > today:
        raise ValidationFailed.on("held_on", "会议日期不能晚于今天")
    refuse_personal_numbers({"body": draft.body, "summary": draft.summary})
    async with engine.begin() as conn:
        if idempotency is not None:
            stored = await claim(conn, idempotency)
            if stored is not None:
                return stored, True
        # The project's head row first — the lock every append holds from its spending-gate check
        # to its commit — so a decision (a closure) waits for appends in flight and appends wait
        # for it: no expenditure commits after a closure it did not see. Appends take only this
        # lock, decisions this one then the project row: one order, no deadlock.
        await conn.execute(
            text(
                "SELECT 1 FROM project_heads h JOIN projects p ON p.id = h.project_id "
                "WHERE p.code = :code FOR UPDATE OF h"
            ),
            {"code": project_code},
        )
        project = (
            await conn.execute(
                select(projects.c.id, projects.c.community_id, projects.c.spending_gate)
                .where(projects.c.code == project_code)
                .with_for_update()
            )
        ).one_or_none()
        if project is None:
            raise NotFound(f"项目 {project_code} 不存在")
        history = await _history(conn, project.id, project_code)
        _check_order(draft, history, waived=project.spending_gate == "waived")
        notice_days = draft.notice_days
        if draft.stage == "announcement" and notice_days is None:
            notice_days = DEFAULT_NOTICE_DAYS
        row = (
            await conn.execute(
                insert(decisions)
                .values(
                    community_id=project.community_id,
                    project_id=project.id,
                    stage=draft.stage,
                    held_on=draft.held_on,
                    body=draft.body,
                    eligible=draft.eligible,
                    attendees=draft.attendees,
                    votes_for=draft.votes_for,
                    votes_against=draft.votes_against,
                    votes_abstain=draft.votes_abstain,
                    summary=draft.summary,
                    minutes_sha256=draft.minutes_sha256,
                    notice_days=notice_days,
                    recorded_by=recorded_by,
                )
                .returning(*decisions.c)
            )
        ).one()
        await conn.execute(update(projects).where(projects.c.id == project.id).values(stage=draft.stage))
        decision = _from_row(row, project_code)
        body = response_body(render(decision))  # type: ignore[operator]
        if idempotency is not None:
            await store(conn, idempotency, project.community_id, 201, body)
    return StoredResponse(201, body), False


def _check_order(draft: DecisionDraft, history: list[Decision], *, waived: bool) -> None:
    position = STAGES.index(draft.stage)
    last = history[-1] if history else None
    last_position = STAGES.index(last.stage) if last else -1
    # A project decided before the service existed may enter its trail part-way.
    allowed = position > last_position if waived else position == last_position + 1
    if not allowed:
        expected = STAGES[last_position + 1] if last_position + 1 < len(STAGES) else None
        hint = f"下一环节应为「{STAGE_LABELS[expected]}」({expected})" if expected else "项目已结项"
        raise Conflict(f"环节顺序不符：{hint}")
    if last is not None and draft.held_on < last.held_on:
        raise Conflict("会议日期不能早于上一环节")
    problem = _quorum_error(draft)
    if problem:
        raise Conflict(problem)
    if draft.stage == "start":
        announcement = next((d for d in reversed(history) if d.stage == "announcement"), None)
        if announcement is not None and announcement.notice_end and draft.held_on < announcement.notice_end:
            raise Conflict(f"决议公示期至 {announcement.notice_end.isoformat()} 止，公示期内不能开工")


async def _history(conn: AsyncConnection, project_id: int, project_code: str) -> list[Decision]:
    rows = await conn.execute(select(decisions).where(decisions.c.project_id == project_id).order_by(decisions.c.id))
    return [_from_row(r, project_code) for r in rows]


def _from_row(row: object, project_code: str) -> Decision:
    m = row._mapping  # type: ignore[attr-defined]
    return Decision(
        id=m["id"],
        project_code=project_code,
        stage=m["stage"],
        held_on=m["held_on"],
        body=m["body"],
        eligible=m["eligible"],
        attendees=m["attendees"],
        votes_for=m["votes_for"],
        votes_against=m["votes_against"],
        votes_abstain=m["votes_abstain"],
        summary=m["summary"],
        minutes_sha256=m["minutes_sha256"],
        notice_days=m["notice_days"],
        recorded_at=m["recorded_at"],
    )


async def list_decisions(conn: AsyncConnection, project_code: str) -> list[Decision]:
    """The decision trail, on the caller's connection (a route's, or a sheet's snapshot)."""
    project_id = (await conn.execute(select(projects.c.id).where(projects.c.code == project_code))).scalar_one_or_none()
    if project_id is None:
        raise NotFound(f"项目 {project_code} 不存在")
    return await _history(conn, project_id, project_code)


_GATE = pg.Query(
    """
    SELECT
      (SELECT stage FROM projects WHERE id = :pid) AS stage,
      (SELECT held_on + notice_days FROM decisions
        WHERE project_id = :pid AND stage = 'announcement' ORDER BY id DESC LIMIT 1) AS notice_end,
      (SELECT held_on FROM decisions
        WHERE project_id = :pid AND stage = 'start' ORDER BY id DESC LIMIT 1) AS started_on
    """
)


async def check_spending_allowed(conn: asyncpg.Connection, project_id: int, today: date, *, waived: bool) -> None:
    """Errors: StageForbidsEntry while the decision trail does not yet allow spending (unless the
    gate is waived), and for every project once it is closed (结项)."""
    row = await pg.fetchrow(conn, _GATE, pid=project_id)
    assert row is not None
    if row["stage"] == "closure":
        raise StageForbidsEntry("项目已结项，不能再记支出")
    if waived:
        return
    notice_end, started_on = row["notice_end"], row["started_on"]
    if notice_end is None:
        raise StageForbidsEntry("项目决议尚未公开（四议两公开），暂不能支出")
    if notice_end > today:
        raise StageForbidsEntry(f"决议公示期至 {notice_end.isoformat()} 止，公示期满前不能支出")
    if started_on is None or started_on < notice_end:
        raise StageForbidsEntry("项目尚未开工（未记录实施决定），暂不能支出")
