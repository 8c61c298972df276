"""Concurrent appends: gapless seq, one entry per idempotency key, replays, refusals, balances.

Every request that meets ``IdempotencyInFlight`` follows the protocol a client must: wait a moment
and send the same request again until it gets a final answer.
"""

from __future__ import annotations

import asyncio
import json
import random
from dataclasses import dataclass
from datetime import date
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from ledger import tree
from ledger.contributors import ContributorRef
from ledger.drafts import EntryDraft
from ledger.entries import AppendResult, append_entries
from ledger.entry_reads import RecordedEntry
from ledger.errors import IdempotencyInFlight, IdempotencyKeyReused, LedgerError
from ledger.idempotency import IdempotencyRequest, claim, fingerprint
from ledger.projects import Project
from ledger.summary import project_summary
from tests.conftest import make_project, unique

DAY = date(2025, 6, 1)
RETRY_SLEEP_S = 0.005
RETRY_DEADLINE_S = 20.0


def render(recorded: list[RecordedEntry]) -> Any:
    """A body unique to the entry (its seq and hashes), so a replay can be told from a second write."""
    return [
        {"seq": r.seq, "receipt_no": r.fields["receipt_no"], "amount_fen": r.amount_fen, "leaf": r.leaf_hash.hex()}
        for r in recorded
    ]


@dataclass(frozen=True)
class Request:
    key: str
    draft: EntryDraft

    def idempotency(self, scope: str) -> IdempotencyRequest:
        d = self.draft
        body = json.dumps(
            {"amount": d.amount_fen, "name": d.contributor.name if d.contributor else None, "receipt": d.receipt_no},
            sort_keys=True,
        )
        return IdempotencyRequest(scope, self.key, fingerprint(b"POST", b"/entries", body.encode()))


def contribution(key: str, amount_fen: int, who: int) -> Request:
    return Request(
        key,
        EntryDraft(
            kind="contribution",
            occurred_on=DAY,
            amount_fen=amount_fen,
            contributor=ContributorRef(name=f"居民{who}", household=f"{who % 8 + 1}栋{who % 3 + 1}单元"),
            channel="wechat",
            receipt_no=key,
        ),
    )


@dataclass(eq=False)  # identity: two replays of one key are still two clients
class Outcome:
    request: Request
    result: AppendResult | None = None
    error: LedgerError | None = None
    in_flight_retries: int = 0


async def send(engine: AsyncEngine, project: Project, scope: str, request: Request) -> Outcome:
    """One client: retry on IdempotencyInFlight until the answer is final."""
    outcome = Outcome(request)
    deadline = asyncio.get_running_loop().time() + RETRY_DEADLINE_S
    while True:
        try:
            outcome.result = await append_entries(
                engine,
                project.code,
                [request.draft],
                recorded_by=scope,
                render=render,
                idempotency=request.idempotency(scope),
            )
            return outcome
        except IdempotencyInFlight:
            outcome.in_flight_retries += 1
            assert asyncio.get_running_loop().time() < deadline, "an in-flight request never finished"
            await asyncio.sleep(RETRY_SLEEP_S * (1 + random.random()))
        except LedgerError as exc:
            outcome.error = exc
            return outcome


async def stored_seqs(engine: AsyncEngine, project: Project) -> list[int]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT seq FROM entries WHERE project_id = :pid ORDER BY seq"), {"pid": project.id}
        )
        return [r.seq for r in rows]


async def entries_by_receipt(engine: AsyncEngine, project: Project) -> dict[str, tuple[int, int]]:
    """receipt_no (= the idempotency key) → (seq, amount_fen) of the stored entries."""
    async with engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT receipt_no, seq, amount_fen FROM entries WHERE project_id = :pid"), {"pid": project.id}
        )
        found: dict[str, tuple[int, int]] = {}
        for r in rows:
            assert r.receipt_no not in found, f"key {r.receipt_no} recorded twice"
            found[r.receipt_no] = (r.seq, r.amount_fen)
        return found


def check_replays(outcomes: list[Outcome]) -> dict[str, Outcome]:
    """Per key: exactly one first write; every other request with that key and body got its body."""
    by_key: dict[str, list[Outcome]] = {}
    for o in outcomes:
        assert o.error is None, f"{o.request.key}: unexpected {o.error!r}"
        assert o.result is not None
        by_key.setdefault(o.request.key, []).append(o)
    first: dict[str, Outcome] = {}
    for key, group in by_key.items():
        writers = [o for o in group if o.result and not o.result.replayed]
        assert len(writers) == 1, f"{key}: {len(writers)} first writes"
        first[key] = writers[0]
        for o in group:
            assert o.result is not None
            assert o.result.status == 201
            assert o.result.body == writers[0].result.body  # type: ignore[union-attr]
    return first


async def check_project(
    engine: AsyncEngine, project: Project, scope: str, first: dict[str, Outcome], amounts: dict[str, int]
) -> None:
    n = len(first)
    assert await stored_seqs(engine, project) == list(range(1, n + 1)), "seq is 1..n with no gap"
    stored = await entries_by_receipt(engine, project)
    assert set(stored) == set(first)
    for key, outcome in first.items():
        body = json.loads(outcome.result.body)  # type: ignore[union-attr]
        seq, amount = stored[key]
        assert body[0]["seq"] == seq and body[0]["receipt_no"] == key
        assert amount == amounts[key]
    async with engine.connect() as conn:
        summary = await project_summary(conn, project)
        kept = await conn.execute(
            text("SELECT key, body FROM idempotency_keys WHERE scope = :scope AND key = ANY(:keys)"),
            {"scope": scope, "keys": list(first)},
        )
        kept_bodies = {r.key: r.body for r in kept}
    assert {k: o.result.body for k, o in first.items()} == kept_bodies  # type: ignore[union-attr]
    assert summary.ledger_size == n
    assert summary.balance_fen == summary.contributed_fen == sum(amounts.values())
    verification = await tree.verify(engine, project.code)
    assert verification.ok and verification.size == n and verification.first_bad_seq is None


async def test_one_hot_project_180_keys_20_duplicates_5_reused(engine: AsyncEngine) -> None:
    await hot_project_scenario(engine)


async def hot_project_scenario(engine: AsyncEngine) -> None:
    """205 concurrent posts to one project (180 keys, 20 exact duplicates, 5 reused keys): 180
    gapless entries, every duplicate answered with its first write's body, the 5 refused.
    tests/test_scale_pgbouncer.py runs it again through PgBouncer in transaction mode."""
    project = await make_project(engine)
    scope = unique("token")
    originals = [contribution(f"k-{i:03d}", 10_000 + 37 * i, i % 60) for i in range(180)]
    duplicates = [originals[i] for i in range(0, 180, 9)]
    assert len(duplicates) == 20
    # Same key, different body. Each waits until its key's first request has finished, so which
    # request is "first" is fixed; everything else races.
    reused_of = {i: i * 31 + 5 for i in range(5)}
    impostors = [
        contribution(originals[j].key, originals[j].draft.amount_fen + 1, 999)  # type: ignore[operator]
        for j in reused_of.values()
    ]
    done = {j: asyncio.Event() for j in reused_of.values()}

    async def original(i: int, request: Request) -> Outcome:
        try:
            return await send(engine, project, scope, request)
        finally:
            if i in done:
                done[i].set()

    async def impostor(j: int, request: Request) -> Outcome:
        await done[j].wait()
        return await send(engine, project, scope, request)

    tasks = [original(i, r) for i, r in enumerate(originals)]
    tasks += [send(engine, project, scope, r) for r in duplicates]
    tasks += [impostor(j, r) for j, r in zip(reused_of.values(), impostors, strict=True)]
    random.Random(7).shuffle(tasks)
    outcomes = await asyncio.gather(*tasks)

    reused = [o for o in outcomes if o.request in impostors]
    assert len(reused) == 5
    assert all(isinstance(o.error, IdempotencyKeyReused) for o in reused), [o.error for o in reused]
    first = check_replays([o for o in outcomes if o not in reused])
    assert len(first) == 180
    amounts = {r.key: r.draft.amount_fen for r in originals}
    await check_project(engine, project, scope, first, amounts)  # type: ignore[arg-type]


async def test_twenty_projects_at_once(engine: AsyncEngine) -> None:
    """20 projects × (12 keys + 3 exact duplicates + 1 same-key-different-body racing freely)."""
    projects = await asyncio.gather(*(make_project(engine) for _ in range(20)))
    scope = unique("token")  # one token writing to all of them: keys are per token, not per project
    plans: list[tuple[Project, list[Request], list[Request], Request]] = []
    for p_no, project in enumerate(projects):
        originals = [contribution(f"p{p_no:02d}-k{i:02d}", 5_000 + 101 * i + p_no, i) for i in range(12)]
        duplicates = [originals[0], originals[5], originals[5]]
        racer = contribution(originals[11].key, 77_700, 500)
        plans.append((project, originals, duplicates, racer))

    tasks = []
    for project, originals, duplicates, racer in plans:
        for r in [*originals, *duplicates, racer]:
            tasks.append(send(engine, project, scope, r))
    random.Random(11).shuffle(tasks)
    outcomes = await asyncio.gather(*tasks)

    for project, originals, _, racer in plans:
        mine = [o for o in outcomes if o.request.key.startswith(originals[0].key[:4])]
        contested = [o for o in mine if o.request.key == racer.key]
        # Whichever of the two bodies came first is recorded; the other is refused, never both.
        assert sorted(o.error is None for o in contested) == [False, True]
        loser = next(o for o in contested if o.error is not None)
        assert isinstance(loser.error, IdempotencyKeyReused)
        first = check_replays([o for o in mine if o is not loser])
        assert len(first) == 12
        amounts = {k: o.request.draft.amount_fen for k, o in first.items()}
        await check_project(engine, project, scope, first, amounts)  # type: ignore[arg-type]


async def test_in_flight_key_is_refused_until_the_first_request_ends(engine: AsyncEngine) -> None:
    """Deterministic version of the race: hold the key's claim in an open transaction."""
    project = await make_project(engine)
    scope = unique("token")
    request = contribution("held-key", 12_300, 1)
    other_body = contribution("held-key", 45_600, 2)
    async with engine.connect() as holder:
        transaction = await holder.begin()
        assert await claim(holder, request.idempotency(scope)) is None
        for r in (request, other_body):
            with pytest.raises(IdempotencyInFlight):
                await append_entries(
                    engine, project.code, [r.draft], recorded_by=scope, render=render, idempotency=r.idempotency(scope)
                )
        await transaction.rollback()  # the first request died: the key is free again, nothing stored
    assert await stored_seqs(engine, project) == []
    first = await send(engine, project, scope, request)
    again = await send(engine, project, scope, request)
    refused = await send(engine, project, scope, other_body)
    assert first.result is not None and not first.result.replayed
    assert again.result is not None and again.result.replayed and again.result.body == first.result.body
    assert isinstance(refused.error, IdempotencyKeyReused)
    assert await stored_seqs(engine, project) == [1]


async def test_verify_while_appends_run_reports_no_false_tampering(engine: AsyncEngine) -> None:
    """verify reads the head and then the entries: appends committed in between are not tampering."""
    project = await make_project(engine)
    scope = unique("token")
    stop = asyncio.Event()

    async def writer(w: int) -> None:
        for i in range(40):
            await send(engine, project, scope, contribution(f"w{w}-{i:02d}", 1_000 + i, w))
        stop.set()

    async def verifier() -> list[tree.Verification]:
        seen = []
        while not stop.is_set():
            seen.append(await tree.verify(engine, project.code))
        return seen

    *_, verifications = await asyncio.gather(*(writer(w) for w in range(4)), verifier())
    bad = [v for v in verifications if not v.ok]
    assert len(verifications) > 5
    assert bad == [], f"{len(bad)} of {len(verifications)} verifications reported tampering: {bad[:3]}"
    assert (await tree.verify(engine, project.code)).ok
