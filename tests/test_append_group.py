"""Group commit of single appends (ledger/append_group.py): concurrent appends share transactions,
and every caller still gets exactly what it would have got alone — gapless seqs, one entry per
idempotency key, replays byte for byte, refusals that leave no trace, receipts that verify."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import date
from typing import Any

import pytest
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncEngine

from ledger import contributors, merkle, tree
from ledger.append_group import groups_for
from ledger.contributors import ContributorRef, erase_contributor
from ledger.drafts import EntryDraft
from ledger.entries import AppendResult, append_entries
from ledger.entry_reads import RecordedEntry
from ledger.errors import Conflict, InsufficientFunds, LedgerError, TokenRevoked, ValidationFailed
from ledger.idempotency import IdempotencyRequest, fingerprint
from ledger.projects import Project
from ledger.tokens import create_token, revoke_token
from tests.conftest import make_project

DAY = date(2025, 6, 1)


def render(recorded: list[RecordedEntry]) -> Any:
    r = recorded[0]
    assert r.root_hash is not None
    return {"seq": r.seq, "leaf": r.leaf_hash.hex(), "size": r.tree_size, "root": r.root_hash.hex()}


def contribution(who: str, amount_fen: int = 10_000, receipt: str = "R") -> EntryDraft:
    return EntryDraft(
        kind="contribution",
        occurred_on=DAY,
        amount_fen=amount_fen,
        contributor=ContributorRef(name=who, household="1栋1单元"),
        channel="wechat",
        receipt_no=receipt,
    )


def expenditure(amount_fen: int) -> EntryDraft:
    return EntryDraft(kind="expenditure", occurred_on=DAY, amount_fen=amount_fen, payee="建材店", category="materials")


async def append(engine: AsyncEngine, project: Project, draft: EntryDraft, key: str | None) -> AppendResult:
    idem = IdempotencyRequest("t", key, fingerprint(key.encode(), repr(draft).encode())) if key else None
    return await append_entries(engine, project.code, [draft], recorded_by="t", render=render, idempotency=idem)


async def entry_count(engine: AsyncEngine, project: Project) -> tuple[int, int, int]:
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                text(
                    "SELECT h.size, count(e.seq), coalesce(max(e.seq), 0) FROM project_heads h "
                    "LEFT JOIN entries e ON e.project_id = h.project_id WHERE h.project_id = :p GROUP BY h.size"
                ),
                {"p": project.id},
            )
        ).one()
    return row[0], row[1], row[2]


async def test_concurrent_appends_share_transactions_and_stay_gapless(engine: AsyncEngine) -> None:
    projects = [await make_project(engine, spending_gate="waived") for _ in range(4)]
    groups = groups_for(engine)
    runs_before, grouped_before = groups.groups_run, groups.appends_grouped
    jobs = [append(engine, projects[i % 4], contribution(f"居民{i % 7}", 100 + i, f"R{i}"), f"k{i}") for i in range(80)]
    results = await asyncio.gather(*jobs)
    runs = groups.groups_run - runs_before
    assert groups.appends_grouped - grouped_before == 80
    assert runs < 40, f"80 concurrent appends took {runs} transactions: they were not grouped"
    for project in projects:
        assert await entry_count(engine, project) == (20, 20, 20)  # gapless: size = count = max(seq)
        assert (await tree.verify(engine, project.code)).ok
        # A person's running total moved by every one of their appends in a group, not just the last.
        async with engine.connect() as conn:
            mismatched = (
                await conn.execute(
                    text(
                        "SELECT t.contributor_id FROM contributor_totals t "
                        "LEFT JOIN (SELECT contributor_id, sum(amount_fen) AS paid FROM entries "
                        "           WHERE project_id = :p AND kind = 'contribution' GROUP BY contributor_id) e "
                        "  ON e.contributor_id = t.contributor_id "
                        "WHERE t.project_id = :p AND t.paid_fen IS DISTINCT FROM e.paid"
                    ),
                    {"p": project.id},
                )
            ).all()
            cash = (
                await conn.execute(
                    text(
                        "SELECT b.balance_fen FROM balances b JOIN accounts a ON a.id = b.account_id "
                        "WHERE a.project_id = :p AND a.code = 'cash'"
                    ),
                    {"p": project.id},
                )
            ).scalar_one()
        assert mismatched == []
        assert cash == sum(100 + i for i in range(80) if i % 4 == projects.index(project))
    # Each receipt's root is the tree's root at the receipt's size (an entry of a group is hashed
    # into its own project's tree, in order).
    for i, result in enumerate(results):
        assert result.status == 201 and not result.replayed
        body = result.entries[0]
        async with engine.connect() as conn:
            size, root = await tree.root_at(conn, projects[i % 4].code, body.tree_size)
            proof = await tree.inclusion(conn, projects[i % 4].code, body.seq, body.tree_size)
        assert root == body.root_hash and proof.root_hash == root
        merkle.verify_inclusion(body.leaf_hash, body.seq - 1, size, proof.proof, root)  # raises if wrong


async def _rested(engine: AsyncEngine) -> None:
    """Wait until the queue's groups are done, their last steps (giving connections back) included."""
    groups = groups_for(engine)
    while groups.tasks:
        await asyncio.gather(*groups.tasks)


async def test_groups_pass_their_connection_on_and_the_queue_gives_it_back_at_rest(engine: AsyncEngine) -> None:
    """A group hands its pooled connection to the next group instead of checking it in and the next
    one out again; once no group is in flight, every connection is back in the pool, including the
    one of a group that failed (its appends ran again alone)."""
    pool = engine.sync_engine.pool
    projects = [await make_project(engine, spending_gate="waived") for _ in range(4)]
    await _rested(engine)
    groups = groups_for(engine)
    checked_out_at_rest = pool.checkedout()  # type: ignore[attr-defined]
    checkouts = 0

    def count(*_: Any) -> None:
        nonlocal checkouts
        checkouts += 1

    event.listen(pool, "checkout", count)
    try:
        runs_before = groups.groups_run
        jobs = [
            append(engine, projects[i % 4], contribution(f"居民{i % 7}", 100 + i, f"R{i}"), f"pass-on-{i}")
            for i in range(80)
        ]
        assert all(r.status == 201 for r in await asyncio.gather(*jobs))
        runs = groups.groups_run - runs_before
        await _rested(engine)
        assert pool.checkedout() == checked_out_at_rest and groups.idle == []  # type: ignore[attr-defined]
        assert runs > 1 and checkouts <= groups.in_flight_max, (runs, checkouts)

        # A group that fails gives its connection back too (the refused one fails alone, after).
        outcomes = await asyncio.gather(
            append(engine, projects[0], expenditure(9_999_999), "pass-on-refused"),
            *(append(engine, projects[1], contribution(f"续用{i}", 100), f"pass-on-after-{i}") for i in range(6)),
            return_exceptions=True,
        )
        assert isinstance(outcomes[0], InsufficientFunds)
        await _rested(engine)
        assert pool.checkedout() == checked_out_at_rest and groups.idle == []  # type: ignore[attr-defined]
    finally:
        event.remove(pool, "checkout", count)


async def test_optional_columns_set_on_some_appends_of_a_group_are_written_to_those_only(engine: AsyncEngine) -> None:
    """A group's columns that only NULLs fill go to PostgreSQL as NULL arrays, which unnest pads
    (ledger/entries.py write_rows): a memo or an anonymity id on some appends of a group must land
    on exactly those entries, and a group where no append has one must write none."""
    projects = [await make_project(engine, spending_gate="waived") for _ in range(6)]

    def draft(i: int) -> EntryDraft:
        d = contribution(f"居民{i}", 100 + i, f"M{i}")
        if i % 3 == 0:
            d = replace(d, memo=f"备注{i}")
        if i % 4 == 1:
            d = replace(d, contributor=ContributorRef(name=f"居民{i}", household="1栋1单元", anonymous=True))
        return d

    # Plain appends first (no optional column in any of them), then the mixed ones, each burst
    # concurrent so that it is grouped.
    await asyncio.gather(
        *(append(engine, projects[i], contribution(f"居民{i}", 50, f"P{i}"), f"p{i}") for i in range(6))
    )
    await asyncio.gather(*(append(engine, projects[i % 6], draft(i), f"m{i}") for i in range(24)))
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                text(
                    "SELECT e.receipt_no, e.memo, e.anonymous, e.anonymous_id IS NOT NULL FROM entries e "
                    "WHERE e.project_id = ANY(:ps)"
                ),
                {"ps": [p.id for p in projects]},
            )
        ).all()
    stored = {r[0]: (r[1], r[2], r[3]) for r in rows}
    assert len(stored) == 30
    for i in range(6):
        assert stored[f"P{i}"] == (None, False, False)
    for i in range(24):
        anonymous = i % 4 == 1
        assert stored[f"M{i}"] == (f"备注{i}" if i % 3 == 0 else None, anonymous, anonymous), i
    for project in projects:
        assert (await tree.verify(engine, project.code)).ok


async def test_a_refused_append_fails_alone_and_leaves_no_trace(engine: AsyncEngine) -> None:
    project = await make_project(engine, spending_gate="waived")
    other = await make_project(engine, spending_gate="waived")
    await append(engine, project, contribution("老张", 5_000), "seed")
    jobs = [
        append(engine, project, expenditure(9_999_999), "too-much"),  # more than the cash: refused
        *(append(engine, other, contribution(f"新人{i}", 100), f"ok{i}") for i in range(10)),
        append(engine, project, contribution("新人甲", 100), "ok-same-project"),
    ]
    outcomes = await asyncio.gather(*jobs, return_exceptions=True)
    assert isinstance(outcomes[0], InsufficientFunds)
    assert all(isinstance(o, AppendResult) and o.status == 201 for o in outcomes[1:])
    assert await entry_count(engine, project) == (2, 2, 2)
    assert await entry_count(engine, other) == (10, 10, 10)
    # Each new person was created once, whichever way their append went (grouped, then alone).
    async with engine.connect() as conn:
        names = (
            await conn.execute(text("SELECT name, count(*) FROM contributors WHERE name LIKE '新人%' GROUP BY name"))
        ).all()
    assert sorted(n for n, _ in names) == sorted([f"新人{i}" for i in range(10)] + ["新人甲"])
    assert all(c == 1 for _, c in names)


async def test_a_refusal_raised_while_grouped_is_the_error_of_a_lone_append(engine: AsyncEngine) -> None:
    project = await make_project(engine, spending_gate="waived")
    unknown = EntryDraft(
        kind="refund", occurred_on=DAY, amount_fen=100, contributor=ContributorRef(name="无此人"), reason="退"
    )
    outcomes = await asyncio.gather(
        append(engine, project, unknown, "refund"),
        *(append(engine, project, contribution(f"甲{i}"), f"c{i}") for i in range(6)),
        return_exceptions=True,
    )
    assert isinstance(outcomes[0], ValidationFailed)
    assert outcomes[0].errors[0].field == "contributor"
    assert sorted(o.entries[0].seq for o in outcomes[1:] if isinstance(o, AppendResult)) == [1, 2, 3, 4, 5, 6]
    assert await entry_count(engine, project) == (6, 6, 6)


async def test_replays_and_key_reuse_inside_bursts(engine: AsyncEngine) -> None:
    project = await make_project(engine, spending_gate="waived")
    draft = contribution("王五", 2_000, "same")
    first = await asyncio.gather(*(append(engine, project, draft, "dup") for _ in range(5)), return_exceptions=True)
    done = [o for o in first if isinstance(o, AppendResult)]
    assert len(done) >= 1 and all(isinstance(o, AppendResult | LedgerError) for o in first)
    bodies = {o.body for o in done}
    assert len(bodies) == 1  # every answer is the one entry's receipt
    again = await append(engine, project, draft, "dup")
    assert again.replayed and again.body in bodies
    assert await entry_count(engine, project) == (1, 1, 1)


async def test_a_busy_project_does_not_hold_up_the_group(engine: AsyncEngine) -> None:
    """A head another transaction holds is skipped by the group and appended once it is free; the
    group's other appends commit meanwhile."""
    held = await make_project(engine, spending_gate="waived")
    free = await make_project(engine, spending_gate="waived")
    async with engine.connect() as locker:
        await locker.execute(text("BEGIN"))
        await locker.execute(text("SELECT 1 FROM project_heads WHERE project_id = :p FOR UPDATE"), {"p": held.id})
        waiting = asyncio.ensure_future(append(engine, held, contribution("甲"), "held"))
        quick = await asyncio.wait_for(
            asyncio.gather(*(append(engine, free, contribution(f"乙{i}"), f"free{i}") for i in range(5))), 30
        )
        assert [r.status for r in quick] == [201] * 5
        await asyncio.sleep(0.2)
        assert not waiting.done()  # still queued on the lock, alone
        await locker.execute(text("ROLLBACK"))
    result = await asyncio.wait_for(waiting, 30)
    assert result.status == 201 and result.entries[0].seq == 1


async def test_group_commit_can_be_turned_off(database: Any, monkeypatch: Any) -> None:
    """LEDGER_APPEND_GROUP_MAX=1: every single append is its own transaction (the plain path),
    with the same answers."""
    from ledger import entries
    from ledger.database import create_engine

    plain_calls = 0
    plain = entries._append

    async def counting(*args: Any) -> AppendResult:
        nonlocal plain_calls
        plain_calls += 1
        return await plain(*args)

    monkeypatch.setattr(entries, "_append", counting)
    alone = create_engine(database.urls.app, database.settings.model_copy(update={"append_group_max": 1}))
    try:
        project = await make_project(alone, spending_gate="waived")
        results = await asyncio.gather(*(append(alone, project, contribution(f"丙{i}"), f"off{i}") for i in range(12)))
        assert sorted(r.entries[0].seq for r in results) == list(range(1, 13))
        assert plain_calls == 12
        assert await entry_count(alone, project) == (12, 12, 12)
    finally:
        await alone.dispose()


async def test_a_revoked_remembered_token_writes_nothing_in_a_group_or_alone(engine: AsyncEngine) -> None:
    """An append whose caller was authenticated from memory (``live_token``) checks in the
    statement that begins its transaction that the token still stands: a revoked one is refused
    whatever its key would have answered (a replay too) and writes nothing, while the appends it
    was grouped with are written; the plain path (a batch) refuses it the same way."""
    projects = [await make_project(engine, spending_gate="waived") for _ in range(3)]
    kept = await create_token(engine, name="会计甲", role="admin", community_code=None)
    revoked = await create_token(engine, name="会计乙", role="admin", community_code=None)

    async def with_token(project: Project, draft: EntryDraft, key: str, token: Any) -> AppendResult:
        idem = IdempotencyRequest("t", key, fingerprint(key.encode(), repr(draft).encode()))
        return await append_entries(
            engine, project.code, [draft], recorded_by="t", render=render, idempotency=idem, live_token=token.token.id
        )

    stored = await with_token(projects[0], contribution("甲", 500, "S"), "stored-key", revoked)
    await revoke_token(engine, revoked.token.id)
    jobs = [with_token(projects[i % 3], contribution(f"乙{i}", 100 + i, f"K{i}"), f"kept{i}", kept) for i in range(9)]
    jobs += [
        with_token(projects[i % 3], contribution(f"丙{i}", 200 + i, f"R{i}"), f"rev{i}", revoked) for i in range(3)
    ]
    jobs.append(with_token(projects[0], contribution("甲", 500, "S"), "stored-key", revoked))  # its replay
    outcomes = await asyncio.gather(*jobs, return_exceptions=True)
    assert all(isinstance(o, AppendResult) and o.status == 201 and not o.replayed for o in outcomes[:9]), outcomes
    assert all(isinstance(o, TokenRevoked) for o in outcomes[9:]), outcomes[9:]
    assert stored.status == 201
    assert [await entry_count(engine, p) for p in projects] == [(4, 4, 4), (3, 3, 3), (3, 3, 3)]

    # The plain path: a batch of two is one transaction of its own.
    async def batch_with(token: Any) -> AppendResult:
        drafts = [contribution("丁", 100, "B1"), contribution("丁", 100, "B2")]
        return await append_entries(
            engine, projects[1].code, drafts, recorded_by="t", render=render, live_token=token.token.id
        )

    with pytest.raises(TokenRevoked):
        await batch_with(revoked)
    batch = await batch_with(kept)
    assert [e.seq for e in batch.entries] == [4, 5]
    assert await entry_count(engine, projects[1]) == (5, 5, 5)


async def test_a_group_finds_each_person_and_their_totals(engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    """A group finds each append's person, by public id or by name, with their running totals in
    the project: refunds up to what was paid are recorded in a group, a new name is created (and
    nobody already found is looked up again for it), and a refund beyond what was paid or naming
    an erased person is refused as it would be alone."""
    projects = [await make_project(engine, spending_gate="waived") for _ in range(5)]
    paid = [await append(engine, p, contribution("甲", 150, f"A{i}"), None) for p in projects for i in range(2)]
    ids = {p.code: paid[2 * n].entries[0].contributor.public_id for n, p in enumerate(projects)}  # type: ignore[union-attr]

    def refund(project: Project, amount_fen: int, by_id: bool) -> EntryDraft:
        who = ContributorRef(id=ids[project.code]) if by_id else ContributorRef(name="甲", household="1栋1单元")
        return EntryDraft(kind="refund", occurred_on=DAY, amount_fen=amount_fen, contributor=who)

    groups = groups_for(engine)
    grouped_before, runs_before = groups.appends_grouped, groups.groups_run
    look_ups = []
    separate_find = contributors._find

    async def counting_find(*args: Any) -> Any:
        look_ups.append(args)
        return await separate_find(*args)

    monkeypatch.setattr(contributors, "_find", counting_find)
    done = await asyncio.gather(
        append(engine, projects[0], refund(projects[0], 300, by_id=True), "g0"),
        append(engine, projects[1], refund(projects[1], 200, by_id=False), "g1"),
        append(engine, projects[2], contribution("新人", 100, "N"), "g2"),
        append(engine, projects[2], contribution("甲", 100, "B"), "g3"),
    )
    assert all(r.status == 201 for r in done)
    assert groups.appends_grouped - grouped_before == 4, "written by group commits"
    # One look-up per group: nobody found was looked up again because someone else was created.
    assert len(look_ups) == groups.groups_run - runs_before
    assert done[2].entries[0].contributor is not None and done[2].entries[0].contributor.name == "新人"
    await erase_contributor(engine, projects[4].community_id, ids[projects[4].code])
    refused = await asyncio.gather(
        append(engine, projects[3], refund(projects[3], 301, by_id=True), "g4"),
        append(engine, projects[4], refund(projects[4], 100, by_id=True), "g5"),
        append(engine, projects[0], contribution("乙", 100, "C"), "g6"),
        return_exceptions=True,
    )
    assert isinstance(refused[0], Conflict), refused[0]
    assert isinstance(refused[1], ValidationFailed) and "不存在或已注销" in str(refused[1]), refused[1]
    assert isinstance(refused[2], AppendResult) and refused[2].status == 201
    async with engine.connect() as conn:
        totals = {
            (r[0], r[1]): (r[2], r[3])
            for r in await conn.execute(
                text(
                    "SELECT p.code, c.name, t.paid_fen, t.refunded_fen FROM contributor_totals t "
                    "JOIN projects p ON p.id = t.project_id JOIN contributors c ON c.id = t.contributor_id "
                    "WHERE t.project_id = ANY(:ps)"
                ),
                {"ps": [p.id for p in projects[:4]]},
            )
        }
    assert totals == {
        (projects[0].code, "甲"): (300, 300),
        (projects[0].code, "乙"): (100, 0),
        (projects[1].code, "甲"): (300, 200),
        (projects[2].code, "甲"): (400, 0),
        (projects[2].code, "新人"): (100, 0),
        (projects[3].code, "甲"): (300, 0),
    }
    for project in projects:
        assert (await tree.verify(engine, project.code)).ok


async def test_a_person_created_meanwhile_by_another_transaction_is_read_back(engine: AsyncEngine) -> None:
    """Two transactions creating the same new person: the one that loses the race (its insert
    waits on the other's, then does nothing) reads the person back and records its entry against
    them — one person, not two, and no error."""
    project = await make_project(engine, spending_gate="waived")
    async with engine.connect() as other:
        await other.execute(
            text(
                "INSERT INTO contributors (community_id, type, name, household, salt) "
                "VALUES (:c, 'resident', '戊', '1栋1单元', :salt)"
            ),
            {"c": project.community_id, "salt": b"\x01" * 16},
        )
        appending = asyncio.ensure_future(append(engine, project, contribution("戊", 100, "W"), "race"))
        await asyncio.sleep(0.5)  # the append is now waiting on the uncommitted insert
        assert not appending.done()
        await other.commit()
    result = await appending
    assert result.status == 201
    async with engine.connect() as conn:
        people = (
            await conn.execute(
                text("SELECT id FROM contributors WHERE community_id = :c AND name = '戊'"), {"c": project.community_id}
            )
        ).all()
        paid = (
            await conn.execute(
                text("SELECT contributor_id, paid_fen FROM contributor_totals WHERE project_id = :p"), {"p": project.id}
            )
        ).all()
    assert len(people) == 1
    assert result.entries[0].contributor is not None and result.entries[0].contributor.id == people[0][0]
    assert paid == [(people[0][0], 100)]
