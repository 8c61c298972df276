"""四议两公开 gates spending: no expenditure until the resolution is announced, its notice period
is over and the project has started. Dates are driven through ``today=``."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from ledger.contributors import ContributorRef
from ledger.decisions import DecisionDraft, list_decisions, record_decision
from ledger.drafts import EntryDraft
from ledger.entries import append_entries
from ledger.errors import Conflict, StageForbidsEntry, ValidationFailed
from ledger.projects import Project, get_project
from tests.conftest import make_project

D0 = date(2025, 3, 3)  # proposal
ANNOUNCED = D0 + timedelta(days=12)
NOTICE_DAYS = 7
NOTICE_END = ANNOUNCED + timedelta(days=NOTICE_DAYS)

TRAIL = [
    DecisionDraft("proposal", D0, "居民议事会", summary="提议路面刷黑"),
    DecisionDraft("deliberation", D0 + timedelta(days=3), "社区两委会议", eligible=9, attendees=8, votes_for=8),
    DecisionDraft("review", D0 + timedelta(days=6), "社区党员大会", eligible=80, attendees=61, votes_for=58),
    DecisionDraft("resolution", D0 + timedelta(days=10), "居民代表大会", eligible=60, attendees=40, votes_for=21),
    DecisionDraft("announcement", ANNOUNCED, "决议公开", notice_days=NOTICE_DAYS),
]
START = DecisionDraft("start", NOTICE_END, "开工")


def spend(day: date, fen: int = 10_000) -> EntryDraft:
    return EntryDraft(kind="expenditure", occurred_on=day, amount_fen=fen, payee="某工程公司", category="materials")


def pay(day: date, fen: int = 500_000) -> EntryDraft:
    return EntryDraft(kind="contribution", occurred_on=day, amount_fen=fen, contributor=ContributorRef(name="张三"))


async def append(engine: AsyncEngine, project: Project, drafts: list[EntryDraft], today: date) -> list[int]:
    result = await append_entries(
        engine, project.code, drafts, recorded_by="test", render=lambda r: len(r), today=today
    )
    return [e.seq for e in result.entries]


async def decide(engine: AsyncEngine, project: Project, draft: DecisionDraft, today: date | None = None) -> None:
    await record_decision(
        engine, project.code, draft, recorded_by="test", render=lambda d: d.id, today=today or draft.held_on
    )


async def entry_count(engine: AsyncEngine, project: Project) -> int:
    async with engine.connect() as conn:
        return (
            await conn.execute(text("SELECT count(*) FROM entries WHERE project_id = :pid"), {"pid": project.id})
        ).scalar_one()


async def test_spending_opens_only_after_the_whole_trail(engine: AsyncEngine) -> None:
    project = await make_project(engine, spending_gate="resolution")
    # Money may come in at any stage; spending may not.
    assert await append(engine, project, [pay(D0)], today=D0) == [1]
    with pytest.raises(StageForbidsEntry):
        await append(engine, project, [spend(D0)], today=D0)
    for decision in TRAIL:
        await decide(engine, project, decision)
        with pytest.raises(StageForbidsEntry):
            await append(engine, project, [spend(decision.held_on)], today=decision.held_on)
    # Announced, but the notice period runs: starting inside it is a Conflict …
    with pytest.raises(Conflict) as info:
        await decide(engine, project, DecisionDraft("start", NOTICE_END - timedelta(days=1), "开工"))
    assert type(info.value) is Conflict
    # … and spending is still refused on its last day, started or not.
    with pytest.raises(StageForbidsEntry):
        await append(engine, project, [spend(NOTICE_END - timedelta(days=1))], today=NOTICE_END - timedelta(days=1))
    with pytest.raises(StageForbidsEntry):
        await append(engine, project, [spend(NOTICE_END)], today=NOTICE_END)  # over, but not started
    await decide(engine, project, START)
    async with engine.connect() as conn:
        assert (await get_project(conn, project.code)).stage == "start"
    # An expenditure dated before the notice ended is still refused if "today" is before it.
    with pytest.raises(StageForbidsEntry):
        await append(engine, project, [spend(NOTICE_END - timedelta(days=1))], today=NOTICE_END - timedelta(days=1))
    assert await entry_count(engine, project) == 1
    assert await append(engine, project, [spend(NOTICE_END)], today=NOTICE_END) == [2]
    assert await append(
        engine, project, [spend(NOTICE_END + timedelta(days=30))], today=NOTICE_END + timedelta(days=30)
    ) == [3]


async def test_gate_error_in_a_batch_names_the_expenditure(engine: AsyncEngine) -> None:
    project = await make_project(engine, spending_gate="resolution")
    with pytest.raises(StageForbidsEntry) as info:
        await append(engine, project, [pay(D0), pay(D0, 100), spend(D0), pay(D0)], today=D0)
    assert info.value.index == 2
    assert await entry_count(engine, project) == 0


async def test_validation_comes_before_the_gate(engine: AsyncEngine) -> None:
    """422 before 409: a bad expenditure is a ValidationFailed even while the gate is shut."""
    project = await make_project(engine, spending_gate="resolution")
    bad = EntryDraft(kind="expenditure", occurred_on=D0, amount_fen=0, payee="x", category="materials")
    with pytest.raises(ValidationFailed):
        await append(engine, project, [bad], today=D0)


def out_of_order_cases() -> dict[str, tuple[list[DecisionDraft], DecisionDraft]]:
    return {
        "skip deliberation": (TRAIL[:1], TRAIL[2]),
        "resolution first": ([], TRAIL[3]),
        "proposal twice": (TRAIL[:1], TRAIL[0]),
        "start without announcement": (TRAIL[:4], DecisionDraft("start", ANNOUNCED, "开工")),
        "earlier date than the last stage": (
            TRAIL[:2],
            DecisionDraft("review", D0, "党员大会", eligible=9, attendees=9, votes_for=9),
        ),
        "resolution without two thirds attending": (
            TRAIL[:3],
            DecisionDraft(
                "resolution", D0 + timedelta(days=10), "居民代表大会", eligible=60, attendees=39, votes_for=39
            ),
        ),
        "resolution without a majority of those present": (
            TRAIL[:3],
            DecisionDraft(
                "resolution", D0 + timedelta(days=10), "居民代表大会", eligible=60, attendees=40, votes_for=20
            ),
        ),
        "deliberation without half attending": (
            TRAIL[:1],
            DecisionDraft("deliberation", D0 + timedelta(days=3), "两委会议", eligible=10, attendees=5, votes_for=5),
        ),
        "review without counts": (TRAIL[:2], DecisionDraft("review", D0 + timedelta(days=6), "党员大会")),
    }


@pytest.mark.parametrize("case", out_of_order_cases())
async def test_out_of_order_or_failed_decisions_are_conflicts(engine: AsyncEngine, case: str) -> None:
    history, bad = out_of_order_cases()[case]
    project = await make_project(engine, spending_gate="resolution")
    for decision in history:
        await decide(engine, project, decision)
    with pytest.raises(Conflict) as info:
        await decide(engine, project, bad, today=ANNOUNCED + timedelta(days=30))
    assert type(info.value) is Conflict, repr(info.value)
    async with engine.connect() as conn:
        assert len(await list_decisions(conn, project.code)) == len(history), "a refused decision leaves no row"


async def test_future_meeting_date_is_refused(engine: AsyncEngine) -> None:
    project = await make_project(engine, spending_gate="resolution")
    with pytest.raises(ValidationFailed):
        await decide(engine, project, TRAIL[0], today=D0 - timedelta(days=1))


async def test_waived_project_spends_freely(engine: AsyncEngine) -> None:
    project = await make_project(engine, spending_gate="waived")
    assert await append(engine, project, [pay(D0), spend(D0)], today=D0) == [1, 2]
    # A waived project may join its trail part-way (decided before the service existed).
    await decide(engine, project, DecisionDraft("start", D0, "开工"))
    assert await append(engine, project, [spend(D0)], today=D0) == [3]


async def test_closed_project_takes_no_more_spending(engine: AsyncEngine) -> None:
    project = await make_project(engine, spending_gate="waived")
    assert await append(engine, project, [pay(D0), spend(D0)], today=D0) == [1, 2]
    await decide(engine, project, DecisionDraft("closure", D0, "结项公示"))
    with pytest.raises(StageForbidsEntry, match="结项"):
        await append(engine, project, [spend(D0)], today=D0)
    # Money may still come in (and be refunded) after closure; only spending stops.
    assert await append(engine, project, [pay(D0)], today=D0) == [3]
