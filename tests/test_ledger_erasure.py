"""Erasing a person (个人信息保护法) removes their personal data from every table and keeps their
entries and every hash valid."""

from __future__ import annotations

import json
import secrets
import uuid
from collections.abc import Callable
from datetime import date
from typing import Any

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from ledger import tree
from ledger.contributors import Contributor, ContributorRef, erase_contributor
from ledger.drafts import EntryDraft
from ledger.entries import append_entries
from ledger.entry_reads import RecordedEntry, get_entry, list_entries
from ledger.errors import IdempotencyKeyReused, NotFound, ValidationFailed
from ledger.idempotency import IdempotencyRequest, fingerprint
from ledger.projects import Project
from ledger.summary import project_summary
from tests.conftest import Database, make_project, unique

DAY = date(2025, 6, 1)


def receipt_body(recorded: list[RecordedEntry]) -> Any:
    """What a caller keeps: seq, pseudonymous id and receipt; no personal data."""
    return [
        {
            "seq": r.seq,
            "contributor": str(r.contributor.public_id) if r.contributor else None,
            "leaf": r.leaf_hash.hex(),
        }
        for r in recorded
    ]


def api_body(recorded: list[RecordedEntry]) -> Any:
    """The body the HTTP API stores with the idempotency key (the treasurer's unmasked view)."""
    from api.http import dump
    from api.presenters import entry_out

    return [dump(entry_out(r, unmasked=True)) for r in recorded]


class Person:
    def __init__(self) -> None:
        tag = secrets.token_hex(3)
        self.name = f"司马{tag}"
        self.household = f"{secrets.randbelow(90) + 10}栋{tag}室"
        self.phone = f"139{secrets.randbelow(10**8):08d}"
        self.ref = ContributorRef(name=self.name, household=self.household, phone=self.phone)


async def record_for(
    engine: AsyncEngine, project: Project, person: Person, render: Callable[[list[RecordedEntry]], Any]
) -> Contributor:
    other = ContributorRef(name="李四", household="5栋")
    drafts = [
        EntryDraft(kind="contribution", occurred_on=DAY, amount_fen=30_000, contributor=person.ref, channel="cash"),
        EntryDraft(kind="contribution", occurred_on=DAY, amount_fen=10_000, contributor=other),
        EntryDraft(kind="pledge", occurred_on=DAY, amount_fen=50_000, contributor=person.ref),
        EntryDraft(kind="in_kind", occurred_on=DAY, amount_fen=6_000, contributor=person.ref, description="义务劳动"),
        EntryDraft(kind="refund", occurred_on=DAY, amount_fen=5_000, contributor=person.ref),
        EntryDraft(kind="reversal", occurred_on=DAY, reverses_seq=3, reason="认筹撤回"),
    ]
    scope = unique("token")
    for i, draft in enumerate(drafts):
        result = await append_entries(
            engine,
            project.code,
            [draft],
            recorded_by=scope,
            render=render,
            idempotency=IdempotencyRequest(scope, f"k{i}", fingerprint(str(i).encode())),
        )
        if i == 0:
            contributor = result.entries[0].contributor
    assert contributor is not None and contributor.name == person.name
    return contributor


async def tables_containing(database: Database, needles: list[str]) -> dict[str, list[str]]:
    """table.column → which needles it still holds, over every text-like and bytea column in public."""
    conn = await asyncpg.connect(database.superuser_url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        columns = await conn.fetch(
            """
            SELECT c.table_name, c.column_name, c.data_type
            FROM information_schema.columns c
            JOIN information_schema.tables t USING (table_schema, table_name)
            WHERE c.table_schema = 'public' AND t.table_type = 'BASE TABLE'
            """
        )
        found: dict[str, list[str]] = {}
        for col in columns:
            t, c, kind = col["table_name"], col["column_name"], col["data_type"]
            if kind == "bytea":
                predicate = f"position(convert_to($1, 'UTF8') in \"{c}\") > 0"
            else:
                predicate = f"\"{c}\"::text ILIKE '%' || $1 || '%'"
            for needle in needles:
                if await conn.fetchval(f'SELECT EXISTS (SELECT 1 FROM "{t}" WHERE {predicate})', needle):
                    found.setdefault(f"{t}.{c}", []).append(needle)
        return found
    finally:
        await conn.close()


async def test_erasure_removes_personal_data_everywhere_and_keeps_the_log(
    engine: AsyncEngine, database: Database
) -> None:
    project = await make_project(engine)
    person = Person()
    contributor = await record_for(engine, project, person, receipt_body)
    needles = [person.name, person.household, person.phone]
    before = await tables_containing(database, needles)
    assert before == {
        "contributors.name": [person.name],
        "contributors.household": [person.household],
        "contributors.phone": [person.phone],
    }, "the scan finds the person where they are, and only there"
    async with engine.connect() as conn:
        summary_before = await project_summary(conn, project)
        entries_before = await list_entries(conn, project.code)
    root_before = (await tree.verify(engine, project.code)).root_hash

    await erase_contributor(engine, project.community_id, contributor.public_id)

    assert await tables_containing(database, needles) == {}
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                text("SELECT name, household, phone, salt, erased_at, type FROM contributors WHERE public_id = :id"),
                {"id": contributor.public_id},
            )
        ).one()
        entries_after = await list_entries(conn, project.code)
        summary_after = await project_summary(conn, project)
        first = await get_entry(conn, project.code, 1)
    assert (row.name, row.household, row.phone, row.salt) == (None, None, None, None)
    assert row.erased_at is not None and row.type == "resident"

    verification = await tree.verify(engine, project.code)
    assert verification.ok and verification.size == 6 and verification.root_hash == root_before
    assert [(e.seq, e.kind, e.amount_fen, e.document, e.leaf_hash) for e in entries_after] == [
        (e.seq, e.kind, e.amount_fen, e.document, e.leaf_hash) for e in entries_before
    ]
    theirs = [e for e in entries_after if e.contributor and e.contributor.public_id == contributor.public_id]
    assert [e.seq for e in theirs] == [1, 3, 4, 5]
    for e in theirs:
        assert e.contributor is not None and e.contributor.erased
        assert e.contributor.name is None and e.contributor.household is None
        assert e.contributor.commitment == contributor.commitment, "the commitment in the document stays"
    assert first.contributor is not None and first.contributor.erased
    assert summary_after == summary_before, "money figures do not depend on personal data"


async def test_erasure_errors_and_no_new_entries_for_an_erased_person(engine: AsyncEngine) -> None:
    project = await make_project(engine)
    person = Person()
    contributor = await record_for(engine, project, person, receipt_body)
    with pytest.raises(NotFound):
        await erase_contributor(engine, project.community_id + 10_000, contributor.public_id)  # other community
    with pytest.raises(NotFound):
        await erase_contributor(engine, project.community_id, uuid.uuid4())
    await erase_contributor(engine, project.community_id, contributor.public_id)
    with pytest.raises(NotFound):
        await erase_contributor(engine, project.community_id, contributor.public_id)

    # By id, the erased person can no longer be named on a new entry: a clear refusal, not a crash.
    for kind in ("contribution", "refund"):
        draft = EntryDraft(
            kind=kind, occurred_on=DAY, amount_fen=100, contributor=ContributorRef(id=contributor.public_id)
        )
        with pytest.raises(ValidationFailed):
            await append_entries(engine, project.code, [draft], recorded_by="t", render=receipt_body)
    # By name, the same person is someone new: their old entries stay with the erased record.
    again = EntryDraft(kind="contribution", occurred_on=DAY, amount_fen=100, contributor=person.ref)
    result = await append_entries(engine, project.code, [again], recorded_by="t", render=receipt_body)
    assert result.entries[0].contributor is not None
    assert result.entries[0].contributor.public_id != contributor.public_id
    assert (await tree.verify(engine, project.code)).ok


async def test_erasure_also_covers_stored_api_responses(engine: AsyncEngine, database: Database) -> None:
    project = await make_project(engine)
    person = Person()
    contributor = await record_for(engine, project, person, api_body)
    await erase_contributor(engine, project.community_id, contributor.public_id)
    assert await tables_containing(database, [person.name, person.household, person.phone]) == {}


async def test_a_retry_after_erasure_is_a_redacted_replay_never_a_second_entry(engine: AsyncEngine) -> None:
    """Erasure keeps each stored response's key, fingerprint and status and redacts the body: the
    retry of a write that named the person replays, and records nothing."""
    project = await make_project(engine)
    person = Person()
    draft = EntryDraft(kind="contribution", occurred_on=DAY, amount_fen=30_000, contributor=person.ref)
    key = IdempotencyRequest(unique("token"), "K", fingerprint(b"the request"))
    first = await append_entries(engine, project.code, [draft], recorded_by="t", render=api_body, idempotency=key)
    assert first.entries[0].contributor is not None
    public_id = first.entries[0].contributor.public_id
    assert person.name in first.body

    await erase_contributor(engine, project.community_id, public_id, reason="本人申请")

    retry = await append_entries(engine, project.code, [draft], recorded_by="t", render=api_body, idempotency=key)
    assert retry.replayed and retry.status == first.status
    assert person.name not in retry.body and person.household not in retry.body
    (stored,) = json.loads(retry.body)
    (original,) = json.loads(first.body)
    assert stored["contributor"] == {**original["contributor"], "name": "已注销", "household": None}
    assert stored["seq"] == original["seq"] and stored["document"] == original["document"]
    async with engine.connect() as conn:
        assert len(await list_entries(conn, project.code)) == 1, "never a second entry"
    with pytest.raises(IdempotencyKeyReused):
        other = IdempotencyRequest(key.scope, "K", fingerprint(b"another request"))
        await append_entries(engine, project.code, [draft], recorded_by="t", render=api_body, idempotency=other)
    assert (await tree.verify(engine, project.code)).ok
