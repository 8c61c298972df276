"""The batch limit: 10,000 drafts go in one call and one transaction, all or nothing; 10,001 do not."""

from __future__ import annotations

import time
from datetime import date

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from ledger import tree
from ledger.contributors import ContributorRef
from ledger.drafts import BATCH_SIZE_MAX, EntryDraft
from ledger.entries import append_entries
from ledger.errors import ValidationFailed
from ledger.projects import Project
from ledger.summary import project_summary
from tests.conftest import make_project

DAY = date(2025, 6, 1)
# Generous: ~1.5 s on a 2-core laptop-class box; this guards against an accidental O(n²).
TEN_THOUSAND_BUDGET_S = 30.0


def drafts(n: int) -> list[EntryDraft]:
    out = []
    for i in range(n):
        if i % 50 == 49:
            out.append(
                EntryDraft(kind="expenditure", occurred_on=DAY, amount_fen=100, payee="某公司", category="materials")
            )
        else:
            out.append(
                EntryDraft(
                    kind="contribution",
                    occurred_on=DAY,
                    amount_fen=1_000 + i % 997,
                    contributor=ContributorRef(name=f"居民{i % 800}", household=f"{i % 800 // 40 + 1}栋"),
                    receipt_no=f"R{i + 1:05d}",
                    channel="wechat",
                )
            )
    return out


async def facts(engine: AsyncEngine, project: Project) -> tuple[int, int, int, int]:
    """(entries, head size, distinct inserting transactions of entries, of postings)."""
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                text(
                    """
                    SELECT (SELECT count(*) FROM entries WHERE project_id = :pid),
                           (SELECT size FROM project_heads WHERE project_id = :pid),
                           (SELECT count(DISTINCT xmin::text) FROM entries WHERE project_id = :pid),
                           (SELECT count(DISTINCT xmin::text) FROM postings WHERE project_id = :pid)
                    """
                ),
                {"pid": project.id},
            )
        ).one()
    return tuple(row)  # type: ignore[return-value]


async def test_ten_thousand_in_one_call_and_one_transaction(engine: AsyncEngine) -> None:
    assert BATCH_SIZE_MAX == 10_000
    project = await make_project(engine)
    batch = drafts(10_000)
    started = time.perf_counter()
    result = await append_entries(engine, project.code, batch, recorded_by="import", render=lambda r: len(r))
    elapsed = time.perf_counter() - started
    print(f"\n10,000-entry batch appended in {elapsed:.2f} s ({10_000 / elapsed:,.0f} entries/s)")
    assert elapsed < TEN_THOUSAND_BUDGET_S
    assert [e.seq for e in result.entries] == list(range(1, 10_001))
    assert await facts(engine, project) == (10_000, 10_000, 1, 1), "one transaction wrote every row"
    expected_cash = sum(d.amount_fen or 0 for d in batch if d.kind == "contribution") - 100 * 200
    async with engine.connect() as conn:
        summary = await project_summary(conn, project)
    assert summary.balance_fen == expected_cash and summary.spent_fen == 100 * 200
    assert summary.contributors == len({i % 800 for i in range(10_000) if i % 50 != 49})
    started = time.perf_counter()
    verification = await tree.verify(engine, project.code)
    print(f"verify of 10,000 entries took {time.perf_counter() - started:.2f} s")
    assert verification.ok and verification.size == 10_000


async def test_ten_thousand_and_one_is_refused(engine: AsyncEngine) -> None:
    project = await make_project(engine)
    with pytest.raises(ValidationFailed):
        await append_entries(engine, project.code, drafts(10_001), recorded_by="import", render=lambda r: len(r))
    assert await facts(engine, project) == (0, 0, 0, 0)


async def test_ten_thousand_with_the_last_one_bad_records_nothing(engine: AsyncEngine) -> None:
    project = await make_project(engine)
    bad = EntryDraft(kind="contribution", occurred_on=DAY, amount_fen=0, contributor=ContributorRef(name="x"))
    batch = [*drafts(9_999), bad]
    with pytest.raises(ValidationFailed) as info:
        await append_entries(engine, project.code, batch, recorded_by="import", render=lambda r: len(r))
    assert info.value.index == 9_999
    assert await facts(engine, project) == (0, 0, 0, 0)
    async with engine.connect() as conn:
        created = (
            await conn.execute(
                text("SELECT count(*) FROM contributors WHERE community_id = :cid"), {"cid": project.community_id}
            )
        ).scalar_one()
    assert created == 0, "the contributors the batch would have created are gone with it"
