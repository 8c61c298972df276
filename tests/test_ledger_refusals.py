"""Refused appends leave no trace: no entry, no seq consumed, no balance moved, no contributor
created, no idempotency key stored. In a batch, the error names the draft that failed."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from ledger import tree
from ledger.canonical import SHANGHAI
from ledger.contributors import ContributorRef
from ledger.drafts import EntryDraft
from ledger.entries import append_entries
from ledger.errors import AlreadyReversed, Conflict, InsufficientFunds, LedgerError, ValidationFailed
from ledger.idempotency import IdempotencyRequest, fingerprint
from ledger.money import AMOUNT_MAX_FEN
from ledger.projects import Project
from ledger.summary import Summary, project_summary
from tests.conftest import make_project, unique

DAY = date(2025, 6, 1)
ZHANG = ContributorRef(name="张三", household="3栋1单元201")
LI = ContributorRef(name="李四", household="5栋2单元502")


def contribution(amount_fen: int, who: ContributorRef = ZHANG) -> EntryDraft:
    return EntryDraft(kind="contribution", occurred_on=DAY, amount_fen=amount_fen, contributor=who, channel="cash")


def expenditure(amount_fen: int, category: str = "materials") -> EntryDraft:
    return EntryDraft(kind="expenditure", occurred_on=DAY, amount_fen=amount_fen, payee="某工程公司", category=category)


def refund(amount_fen: int, who: ContributorRef = ZHANG) -> EntryDraft:
    return EntryDraft(kind="refund", occurred_on=DAY, amount_fen=amount_fen, contributor=who)


def reversal(seq: int) -> EntryDraft:
    return EntryDraft(kind="reversal", occurred_on=DAY, reverses_seq=seq, reason="录入错误")


async def append(engine: AsyncEngine, project: Project, drafts: list[EntryDraft], key: str | None = None) -> list[int]:
    idem = IdempotencyRequest(project.code, key, fingerprint(key.encode())) if key else None
    result = await append_entries(
        engine, project.code, drafts, recorded_by="test", render=lambda r: [e.seq for e in r], idempotency=idem
    )
    return [e.seq for e in result.entries]


@dataclass(frozen=True)
class State:
    entries: int
    head_size: int
    summary: Summary
    balances: dict[str, int]
    totals: list[tuple[int, int, int, int, int]]
    contributors: int
    keys: int
    nodes: int


async def state(engine: AsyncEngine, project: Project) -> State:
    async with engine.connect() as conn:
        p = {"pid": project.id, "cid": project.community_id, "scope": project.code}

        async def scalar(sql: str) -> int:
            return (await conn.execute(text(sql), p)).scalar_one()

        balances = await conn.execute(
            text(
                "SELECT a.code, b.balance_fen FROM balances b JOIN accounts a ON a.id = b.account_id WHERE b.project_id = :pid"
            ),
            p,
        )
        totals = await conn.execute(
            text(
                "SELECT contributor_id, paid_fen, refunded_fen, pledged_fen, in_kind_fen FROM contributor_totals "
                "WHERE project_id = :pid ORDER BY contributor_id"
            ),
            p,
        )
        return State(
            entries=await scalar("SELECT count(*) FROM entries WHERE project_id = :pid"),
            head_size=await scalar("SELECT size FROM project_heads WHERE project_id = :pid"),
            summary=await project_summary(conn, project),
            balances={r.code: r.balance_fen for r in balances},
            totals=[tuple(r) for r in totals],  # type: ignore[misc]
            contributors=await scalar("SELECT count(*) FROM contributors WHERE community_id = :cid"),
            keys=await scalar("SELECT count(*) FROM idempotency_keys WHERE scope = :scope"),
            nodes=await scalar("SELECT count(*) FROM merkle_nodes WHERE project_id = :pid"),
        )


@pytest.fixture
async def funded(engine: AsyncEngine) -> Project:
    """seq 1: 张三 pays 300.00; seq 2: grant 500.00; seq 3: spend 100.00; seq 4: reversal of seq 3."""
    project = await make_project(engine)
    grant = EntryDraft(kind="grant", occurred_on=DAY, amount_fen=50_000, grantor="住建局")
    assert await append(engine, project, [contribution(30_000), grant, expenditure(10_000), reversal(3)]) == [
        1,
        2,
        3,
        4,
    ]
    return project


TOMORROW = datetime.now(SHANGHAI).date() + timedelta(days=1)

REFUSED: dict[str, tuple[EntryDraft, type[LedgerError]]] = {
    "overdraft": (expenditure(80_001), InsufficientFunds),  # cash is 800.00
    "double reversal": (reversal(3), AlreadyReversed),
    "reversal of a reversal": (reversal(4), Conflict),
    "reversal of a missing seq": (reversal(99), ValidationFailed),
    "unknown category": (expenditure(100, category="fireworks"), ValidationFailed),
    "zero amount": (contribution(0), ValidationFailed),
    "negative amount": (contribution(-100), ValidationFailed),
    "amount above the limit": (contribution(AMOUNT_MAX_FEN + 1), ValidationFailed),
    "future date": (replace(contribution(100), occurred_on=TOMORROW), ValidationFailed),
    "date before 2000": (replace(contribution(100), occurred_on=date(1999, 12, 31)), ValidationFailed),
    "refund above paid": (refund(30_001), Conflict),
    "refund of an unknown contributor": (
        refund(100, who=ContributorRef(name="王五", household="9栋")),
        ValidationFailed,
    ),
    "refund by an unknown id": (refund(100, who=ContributorRef(id=uuid.uuid4())), ValidationFailed),
    "contribution without contributor": (replace(contribution(100), contributor=None), ValidationFailed),
    "expenditure without payee": (replace(expenditure(100), payee=None), ValidationFailed),
    "grant without grantor": (EntryDraft(kind="grant", occurred_on=DAY, amount_fen=100), ValidationFailed),
    "reversal without reason": (replace(reversal(1), reason=None), ValidationFailed),
    "unknown kind": (EntryDraft(kind="gift", occurred_on=DAY, amount_fen=100), ValidationFailed),
    "unknown channel": (replace(contribution(100), channel="cheque"), ValidationFailed),
    "unknown contributor type": (contribution(100, who=ContributorRef(name="某公司", type="alien")), ValidationFailed),
}


@pytest.mark.parametrize("case", REFUSED)
async def test_refused_entry_leaves_no_trace(engine: AsyncEngine, funded: Project, case: str) -> None:
    draft, error = REFUSED[case]
    before = await state(engine, funded)
    with pytest.raises(error) as info:
        await append(engine, funded, [draft], key=unique("k"))
    assert type(info.value) is error, f"{case}: {info.value!r}"
    assert info.value.index == 0
    assert await state(engine, funded) == before
    # No seq was consumed: the next accepted entry gets the next number and the log verifies.
    assert await append(engine, funded, [contribution(100, who=LI)]) == [before.head_size + 1]
    assert (await tree.verify(engine, funded.code)).ok


async def test_reversal_that_would_overdraw_cash_is_refused(engine: AsyncEngine) -> None:
    project = await make_project(engine)
    await append(engine, project, [contribution(30_000), expenditure(25_000)])
    before = await state(engine, project)
    with pytest.raises(InsufficientFunds):
        await append(engine, project, [reversal(1)])
    assert await state(engine, project) == before


async def test_reversing_a_refunded_contribution_is_refused(engine: AsyncEngine) -> None:
    project = await make_project(engine)
    await append(engine, project, [contribution(30_000), refund(10_000)])
    before = await state(engine, project)
    with pytest.raises(Conflict) as info:
        await append(engine, project, [reversal(1)])
    assert type(info.value) is Conflict
    assert await state(engine, project) == before
    # Reversing the refund first, then the contribution, is the way.
    assert await append(engine, project, [reversal(2), reversal(1)]) == [3, 4]
    after = await state(engine, project)
    assert after.summary.balance_fen == 0 and after.summary.contributed_fen == 0 and after.summary.refunded_fen == 0


BATCH_FAILURES: dict[str, tuple[list[EntryDraft], int, type[LedgerError]]] = {
    # Earlier drafts in the same batch count: 800 in cash + 200 in, 950 out, 1 in, then 60 out.
    "overdraft after earlier drafts": (
        [contribution(20_000, who=LI), expenditure(95_000), contribution(100), expenditure(6_000)],
        3,
        InsufficientFunds,
    ),
    "reversal of a draft reversed earlier in the batch": (
        [contribution(500, who=LI), reversal(5), reversal(5)],
        2,
        AlreadyReversed,
    ),
    "refund above what the batch itself paid (to someone it creates)": (
        [contribution(1_000, who=LI), refund(1_001, who=LI)],
        1,
        Conflict,
    ),
    "bad amount deep in a batch": (
        [contribution(100 + i, who=LI) for i in range(40)] + [contribution(0)],
        40,
        ValidationFailed,
    ),
    "refund of someone only this batch would create": (
        [contribution(100), refund(50, who=ContributorRef(name="赵六", household="1栋")), contribution(200)],
        1,
        ValidationFailed,
    ),
    "new contributor then unknown category": (
        [contribution(100, who=ContributorRef(name="孙七", household="2栋")), expenditure(50, category="nope")],
        1,
        ValidationFailed,
    ),
}


@pytest.mark.parametrize("case", BATCH_FAILURES)
async def test_batch_with_one_bad_draft_records_nothing(engine: AsyncEngine, funded: Project, case: str) -> None:
    drafts, index, error = BATCH_FAILURES[case]
    before = await state(engine, funded)
    with pytest.raises(error) as info:
        await append(engine, funded, drafts, key=unique("k"))
    assert type(info.value) is error, repr(info.value)
    assert info.value.index == index
    assert await state(engine, funded) == before, "nothing of the batch stays: entries, balances, contributors, key"
    assert await append(engine, funded, [contribution(100)]) == [before.head_size + 1]


async def test_batch_limits(engine: AsyncEngine, funded: Project) -> None:
    before = await state(engine, funded)
    with pytest.raises(ValidationFailed):
        await append(engine, funded, [])
    assert await state(engine, funded) == before


@pytest.mark.parametrize("field", ["memo", "description", "reason", "payee", "grantor"])
async def test_phone_numbers_in_public_text_are_refused(engine: AsyncEngine, field: str) -> None:
    """Free text is published verbatim and hashed: a phone in it could never be taken back."""
    from ledger.errors import ValidationFailed as Refused

    project = await make_project(engine)
    kinds = {"description": "in_kind", "reason": "reversal", "payee": "expenditure", "grantor": "grant"}
    base = {
        "in_kind": EntryDraft(
            kind="in_kind",
            occurred_on=DAY,
            amount_fen=100,
            contributor=ContributorRef(name="李四"),
            description="义务劳动",
        ),
        "reversal": EntryDraft(kind="reversal", occurred_on=DAY, reverses_seq=1, reason="错"),
        "expenditure": EntryDraft(
            kind="expenditure", occurred_on=DAY, amount_fen=100, payee="某公司", category="materials"
        ),
        "grant": EntryDraft(kind="grant", occurred_on=DAY, amount_fen=100, grantor="某局"),
        "contribution": EntryDraft(
            kind="contribution", occurred_on=DAY, amount_fen=100, contributor=ContributorRef(name="王五")
        ),
    }[kinds.get(field, "contribution")]

    draft = replace(base, **{field: "联系人 138 1234 5678"})
    with pytest.raises(Refused) as info:
        await append_entries(engine, project.code, [draft], recorded_by="t", render=lambda es: None)
    assert info.value.errors[0].field == field
