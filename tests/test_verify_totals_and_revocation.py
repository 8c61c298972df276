"""Two blind spots closed: ``verify`` recomputes every contributor's totals (they bound refunds, and
the application role may update them), and a revoked token stays revoked for every role."""

from __future__ import annotations

from datetime import date

import asyncpg
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from ledger import tree
from ledger.communities import NewCommunity, create_community
from ledger.contributors import ContributorRef
from ledger.drafts import EntryDraft
from ledger.entries import append_entries
from ledger.errors import NotFound
from ledger.projects import Project
from ledger.tokens import authenticate, create_token, revoke_token
from tests.conftest import Database, make_project, unique
from tests.test_ledger_append_only import dsn, rolled_back

DAY = date(2025, 6, 1)


async def _project_with_gifts(engine: AsyncEngine) -> Project:
    project = await make_project(engine)
    zhang = ContributorRef(name="张三", household="3栋")
    drafts = [
        EntryDraft(kind="contribution", occurred_on=DAY, amount_fen=30_000, contributor=zhang),
        EntryDraft(kind="contribution", occurred_on=DAY, amount_fen=5_000, contributor=zhang),
        EntryDraft(kind="pledge", occurred_on=DAY, amount_fen=50_000, contributor=ContributorRef(name="李四")),
        EntryDraft(kind="in_kind", occurred_on=DAY, amount_fen=6_000, contributor=zhang, description="义务劳动"),
        EntryDraft(kind="refund", occurred_on=DAY, amount_fen=10_000, contributor=zhang),
        EntryDraft(kind="reversal", occurred_on=DAY, reverses_seq=3, reason="认筹撤回"),
        EntryDraft(
            kind="contribution",
            occurred_on=DAY,
            amount_fen=700,
            contributor=ContributorRef(name="张三", household="3栋", anonymous=True),
        ),
    ]
    await append_entries(engine, project.code, drafts, recorded_by="t", render=lambda r: {})
    return project


@pytest.mark.parametrize(
    "tamper",
    [
        # Lift 张三's refund limit: paid up by 1,000 yuan.
        "UPDATE contributor_totals SET paid_fen = paid_fen + 100000 WHERE project_id = $1 AND paid_fen > 0",
        # Hide a refund.
        "UPDATE contributor_totals SET refunded_fen = 0 WHERE project_id = $1",
        # Revive the reversed pledge.
        "UPDATE contributor_totals SET pledged_fen = 50000 WHERE project_id = $1",
        # Totals for someone with no entry in the project at all.
        "INSERT INTO contributor_totals (community_id, project_id, contributor_id, paid_fen) "
        "SELECT community_id, id, (SELECT max(id) FROM contributors), 100 FROM projects WHERE id = $1 "
        "ON CONFLICT (project_id, contributor_id, community_id) DO UPDATE SET paid_fen = contributor_totals.paid_fen + 1",
    ],
)
async def test_verify_recomputes_contributor_totals(engine: AsyncEngine, database: Database, tamper: str) -> None:
    project = await _project_with_gifts(engine)
    clean = await tree.verify(engine, project.code)
    assert clean.ok and clean.contributor_totals_ok
    # What the application role may do (it holds UPDATE on these columns, and INSERT).
    conn = await asyncpg.connect(dsn(database.urls.app))
    try:
        assert (await conn.execute(tamper, project.id)).split()[-1] != "0"
    finally:
        await conn.close()
    found = await tree.verify(engine, project.code)
    assert not found.ok and not found.contributor_totals_ok
    assert found.first_bad_seq is None and found.unbalanced_accounts == (), "entries and balances are intact"


async def _revoked_token(engine: AsyncEngine) -> tuple[str, str]:
    community = await create_community(engine, NewCommunity(code=unique("c"), name="锦绣花园小区"))
    issued = await create_token(engine, name="报账员", role="treasurer", community_code=community.code)
    await revoke_token(engine, issued.token.id)
    return str(issued.token.id), issued.secret


@pytest.mark.parametrize("role", ["app", "owner"])
@pytest.mark.parametrize("new_value", ["NULL", "now() + interval '1 day'", "'2000-01-01'"])
async def test_revocation_is_final(engine: AsyncEngine, database: Database, role: str, new_value: str) -> None:
    token_id, secret = await _revoked_token(engine)
    url = database.urls.app if role == "app" else database.urls.owner
    async with rolled_back(url) as conn:
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="revocation is final"):
            await conn.execute(f"UPDATE api_tokens SET revoked_at = {new_value} WHERE id = $1", token_id)
    async with engine.connect() as conn:
        assert await authenticate(conn, secret) is None
    with pytest.raises(NotFound):
        await revoke_token(engine, token_id)  # type: ignore[arg-type]


async def test_a_live_token_can_still_be_revoked_and_renamed_by_the_owner(
    engine: AsyncEngine, database: Database
) -> None:
    community = await create_community(engine, NewCommunity(code=unique("c"), name="锦绣花园小区"))
    issued = await create_token(engine, name="审核人", role="auditor", community_code=community.code)
    async with rolled_back(database.urls.owner) as conn:
        # Only revoked_at is frozen, and only once set.
        assert await conn.execute("UPDATE api_tokens SET name = '审核人2' WHERE id = $1", issued.token.id) == "UPDATE 1"
    await revoke_token(engine, issued.token.id)
    async with engine.connect() as conn:
        assert await authenticate(conn, issued.secret) is None
    async with rolled_back(database.urls.owner) as conn:
        assert await conn.execute("UPDATE api_tokens SET name = '审核人3' WHERE id = $1", issued.token.id) == "UPDATE 1"
