"""A superuser who edits stored rows behind the service's back is caught by ``tree.verify`` (and,
when the rewrite is consistent all the way up, by a root published before it)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Any

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from ledger import log_check, merkle, pg, tree
from ledger.contributors import ContributorRef
from ledger.drafts import EntryDraft
from ledger.entries import append_entries
from ledger.projects import Project
from tests.conftest import Database, make_project

DAY = date(2025, 6, 1)


def dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://")


async def verify_every_way(engine: AsyncEngine, code: str) -> tree.Verification:
    """``tree.verify`` as a small log is checked (one unit, in this process), cut into units of 4
    leaves checked here, and the same in two worker processes (as a million-entry log is): all
    three must give the same answer, so every tampering below is also found inside and above
    small units."""
    whole = await tree.verify(engine, code)
    assert await tree.verify(engine, code, unit_level=2, workers=0) == whole
    assert await tree.verify(engine, code, unit_level=2, workers=2) == whole
    return whole


async def project_with(engine: AsyncEngine, n: int) -> Project:
    """A fresh project with ``n`` entries of mixed kinds (all with some text fields)."""
    project = await make_project(engine)
    drafts = [EntryDraft(kind="grant", occurred_on=DAY, amount_fen=5_000_000, grantor="住建局", document_no="文1")]
    for i in range(1, n):
        if i % 3 == 2:
            drafts.append(
                EntryDraft(
                    kind="expenditure",
                    occurred_on=DAY,
                    amount_fen=10_000 + i,
                    payee="某工程公司",
                    category="materials",
                    invoice_no=f"F{i}",
                )
            )
        else:
            drafts.append(
                EntryDraft(
                    kind="contribution",
                    occurred_on=DAY,
                    amount_fen=20_000 + i,
                    contributor=ContributorRef(name=f"居民{i}", household="3栋"),
                    memo="众筹",
                )
            )
    await append_entries(engine, project.code, drafts, recorded_by="test", render=lambda r: len(r))
    verification = await verify_every_way(engine, project.code)
    assert verification.ok and verification.size == n
    return project


async def as_superuser(
    database: Database, statements: Sequence[tuple[str, Sequence[Any]]], tables: Sequence[str]
) -> None:
    """Run ``statements`` with the row guards of ``tables`` disabled, then put them back ALWAYS."""
    conn = await asyncpg.connect(dsn(database.superuser_url))
    try:
        async with conn.transaction():
            for t in tables:
                await conn.execute(f"ALTER TABLE {t} DISABLE TRIGGER {t}_no_update_delete")
            for sql, args in statements:
                status = await conn.execute(sql, *args)
                assert status.endswith(" 1"), f"{sql} changed exactly one row: {status}"
            for t in tables:
                await conn.execute(f"ALTER TABLE {t} ENABLE ALWAYS TRIGGER {t}_no_update_delete")
    finally:
        await conn.close()


async def leaf_hashes(engine: AsyncEngine, project: Project) -> list[bytes]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT leaf_hash FROM entries WHERE project_id = :pid ORDER BY seq"), {"pid": project.id}
        )
        return [bytes(r.leaf_hash) for r in rows]


async def consistent_leaf(engine: AsyncEngine, project: Project, seq: int) -> tuple[str, bytes]:
    """The document and leaf that the (already edited) stored fields of ``seq`` imply."""
    known = log_check.Known()
    async with pg.connection(engine) as conn:
        rows, postings = await log_check.read_chunk(conn, project.id, seq - 1, seq, known)
    (row,) = rows
    document = log_check.rebuild_document(project.code, row, postings[seq], known.people)
    return document.decode(), merkle.leaf_hash(document)


ENTRY_EDITS = {
    "amount": ("UPDATE entries SET amount_fen = amount_fen + 100 WHERE project_id = $1 AND seq = $2", "entries"),
    "occurred_on": ("UPDATE entries SET occurred_on = occurred_on - 1 WHERE project_id = $1 AND seq = $2", "entries"),
    "recorded_at": (
        "UPDATE entries SET recorded_at = recorded_at - interval '1 day' WHERE project_id = $1 AND seq = $2",
        "entries",
    ),
    "memo": ("UPDATE entries SET memo = '众筹（补记）' WHERE project_id = $1 AND seq = $2", "entries"),
    "posting": (
        "UPDATE postings SET amount_fen = amount_fen + 1 WHERE project_id = $1 AND seq = $2 AND line_no = 1",
        "postings",
    ),
    # The postings' shape, read as arrays per chunk: a line moved to another of the project's
    # accounts, a line removed, a line added (each seq's lines must stay its own and in order).
    "posting_account": (
        "UPDATE postings SET account_id = (SELECT id FROM accounts a WHERE a.project_id = $1 AND a.code = 'grants')"
        " WHERE project_id = $1 AND seq = $2 AND line_no = 2",
        "postings",
    ),
    "posting_removed": ("DELETE FROM postings WHERE project_id = $1 AND seq = $2 AND line_no = 2", "postings"),
    "posting_added": (
        "INSERT INTO postings (community_id, project_id, seq, line_no, account_id, side, amount_fen)"
        " SELECT community_id, project_id, seq, 3, account_id, side, 1 FROM postings"
        " WHERE project_id = $1 AND seq = $2 AND line_no = 1",
        "postings",
    ),
}


@pytest.mark.parametrize("edit", ENTRY_EDITS)
async def test_edited_field_is_pinned_to_its_seq(engine: AsyncEngine, database: Database, edit: str) -> None:
    project = await project_with(engine, 12)
    seq = 7  # a contribution (memo set), in the middle of a level-2 subtree
    sql, table = ENTRY_EDITS[edit]
    await as_superuser(database, [(sql, [project.id, seq])], [table])
    verification = await verify_every_way(engine, project.code)
    assert not verification.ok
    assert verification.first_bad_seq == seq
    assert verification.size == 12


async def test_document_and_leaf_rewritten_together_are_caught_by_the_stored_nodes(
    engine: AsyncEngine, database: Database
) -> None:
    project = await project_with(engine, 12)
    seq = 5  # leaf index 4: left child of node (1, 2), which stays as it was
    edit = "UPDATE entries SET amount_fen = amount_fen + 100 WHERE project_id = $1 AND seq = $2"
    await as_superuser(database, [(edit, [project.id, seq])], ["entries"])
    document, leaf = await consistent_leaf(engine, project, seq)
    rewrite = "UPDATE entries SET document = $3, leaf_hash = $4 WHERE project_id = $1 AND seq = $2"
    await as_superuser(database, [(rewrite, [project.id, seq, document, leaf])], ["entries"])

    verification = await verify_every_way(engine, project.code)
    assert not verification.ok
    # The stored pair node (1, 2) covers seq 5 and 6: verify names the first leaf it covers.
    assert verification.first_bad_seq == seq


async def test_document_and_leaf_of_the_newest_entry_rewritten_together(
    engine: AsyncEngine, database: Database
) -> None:
    """The newest entry of an odd-sized log has no stored node above it yet; the head's root is
    what still pins it."""
    project = await project_with(engine, 13)
    seq = 13
    edit = "UPDATE entries SET amount_fen = amount_fen + 100 WHERE project_id = $1 AND seq = $2"
    await as_superuser(database, [(edit, [project.id, seq])], ["entries"])
    document, leaf = await consistent_leaf(engine, project, seq)
    rewrite = "UPDATE entries SET document = $3, leaf_hash = $4 WHERE project_id = $1 AND seq = $2"
    await as_superuser(database, [(rewrite, [project.id, seq, document, leaf])], ["entries"])

    verification = await verify_every_way(engine, project.code)
    assert not verification.ok
    assert verification.first_bad_seq == seq


# (level, idx) of the edited node, the first seq it covers, and a seq whose proof uses it.
@pytest.mark.parametrize(("level", "idx", "first_leaf_seq", "proof_seq"), [(1, 3, 7, 5), (2, 1, 5, 1), (3, 0, 1, 9)])
async def test_edited_merkle_node_is_caught(
    engine: AsyncEngine, database: Database, level: int, idx: int, first_leaf_seq: int, proof_seq: int
) -> None:
    project = await project_with(engine, 12)
    async with engine.connect() as rconn:
        _, published = await tree.root_at(rconn, project.code, 12)
    edit = "UPDATE merkle_nodes SET hash = sha256(hash) WHERE project_id = $1 AND level = $2 AND idx = $3"
    await as_superuser(database, [(edit, [project.id, level, idx])], ["merkle_nodes"])

    verification = await verify_every_way(engine, project.code)
    assert not verification.ok
    assert verification.first_bad_seq == first_leaf_seq
    # A resident holding a receipt for a leaf this node proves finds out too.
    async with engine.connect() as rconn:
        proof = await tree.inclusion(rconn, project.code, proof_seq, 12)
    with pytest.raises(merkle.ProofError):
        merkle.verify_inclusion(proof.leaf_hash, proof_seq - 1, 12, proof.proof, published)


async def test_rewritten_head_is_caught(engine: AsyncEngine, database: Database) -> None:
    project = await project_with(engine, 12)
    # project_heads is not append-only (each append moves it), so no trigger to disable.
    conn = await asyncpg.connect(dsn(database.superuser_url))
    try:
        await conn.execute("UPDATE project_heads SET root_hash = sha256(root_hash) WHERE project_id = $1", project.id)
    finally:
        await conn.close()
    verification = await verify_every_way(engine, project.code)
    assert not verification.ok
    assert verification.first_bad_seq == 13, "every entry checks out; what is wrong is the head after them"


async def test_edited_balance_is_caught(engine: AsyncEngine, database: Database) -> None:
    """The application role may update balances (each append does), so verify sums the postings."""
    project = await project_with(engine, 6)
    assert (await verify_every_way(engine, project.code)).unbalanced_accounts == ()
    conn = await asyncpg.connect(dsn(database.urls.app))
    try:
        await conn.execute(
            "UPDATE balances SET balance_fen = balance_fen + 100 WHERE account_id = "
            "(SELECT id FROM accounts WHERE project_id = $1 AND code = 'cash')",
            project.id,
        )
    finally:
        await conn.close()
    verification = await verify_every_way(engine, project.code)
    assert not verification.ok
    assert verification.first_bad_seq is None, "every entry and the tree check out"
    assert verification.unbalanced_accounts == ("cash",)


async def test_full_consistent_rewrite_passes_verify_but_not_a_published_root(
    engine: AsyncEngine, database: Database
) -> None:
    """Verify checks the database against itself. Someone who rewrites an entry, every node above
    it and the head gets ok=True — which is why sheets print the root: the old root still tells."""
    project = await project_with(engine, 12)
    async with engine.connect() as rconn:
        size_published, root_published = await tree.root_at(rconn, project.code, 10)
    seq = 4
    edit = "UPDATE entries SET amount_fen = amount_fen + 100 WHERE project_id = $1 AND seq = $2"
    await as_superuser(database, [(edit, [project.id, seq])], ["entries"])
    # Verify holds every entry's postings to its kind's rule (ledger/kinds.py): the forger rewrites
    # both posting lines and the two balances they move as well.
    postings_sql = (
        "UPDATE postings SET amount_fen = amount_fen + 100 WHERE project_id = $1 AND seq = $2 AND line_no = $3"
    )
    await as_superuser(database, [(postings_sql, [project.id, seq, line]) for line in (1, 2)], ["postings"])
    balance_sql = (
        "UPDATE balances SET balance_fen = balance_fen + $2 WHERE account_id = "
        "(SELECT id FROM accounts WHERE project_id = $1 AND code = $3)"
    )
    await as_superuser(
        database, [(balance_sql, [project.id, 100, "cash"]), (balance_sql, [project.id, -100, "contributions"])], []
    )
    document, leaf = await consistent_leaf(engine, project, seq)
    rewrite = "UPDATE entries SET document = $3, leaf_hash = $4 WHERE project_id = $1 AND seq = $2"
    await as_superuser(database, [(rewrite, [project.id, seq, document, leaf])], ["entries"])
    leaves = await leaf_hashes(engine, project)
    frontier = merkle.Frontier()
    nodes: list[tuple[merkle.NodeID, bytes]] = []
    for h in leaves:
        nodes.extend(frontier.append(h))
    changed = [((lvl, idx), h) for (lvl, idx), h in nodes if (idx << lvl) <= seq - 1 < ((idx + 1) << lvl)]
    node_sql = "UPDATE merkle_nodes SET hash = $4 WHERE project_id = $1 AND level = $2 AND idx = $3"
    await as_superuser(database, [(node_sql, [project.id, lvl, idx, h]) for (lvl, idx), h in changed], ["merkle_nodes"])
    head_sql = "UPDATE project_heads SET frontier = $2, root_hash = $3 WHERE project_id = $1"
    await as_superuser(database, [(head_sql, [project.id, frontier.to_bytes(), frontier.root()])], [])
    # The contribution's amount also counts in its giver's totals: without this verify sees it.
    assert not (await verify_every_way(engine, project.code)).contributor_totals_ok
    totals_sql = (
        "UPDATE contributor_totals SET paid_fen = paid_fen + 100 WHERE project_id = $1 "
        "AND contributor_id = (SELECT contributor_id FROM entries WHERE project_id = $1 AND seq = $2)"
    )
    await as_superuser(database, [(totals_sql, [project.id, seq])], [])

    assert (await verify_every_way(engine, project.code)).ok, "a thorough forger fools the self-check"
    async with engine.connect() as rconn:
        _, root_now = await tree.root_at(rconn, project.code, size_published)
    assert root_now != root_published
    async with engine.connect() as rconn:
        proof = await tree.consistency(rconn, project.code, size_published, 12)
    with pytest.raises(merkle.ProofError):
        merkle.verify_consistency(size_published, 12, proof.proof, root_published, proof.root_to)


def test_how_many_processes_verify_a_log() -> None:
    """A small log is checked in the caller's process (0); a larger one in one worker process per
    CPU asked for, never more than units; 0 asks for the caller's process at any size."""
    assert tree.verify_workers(0) == 0
    assert tree.verify_workers(tree.VERIFY_IN_PROCESS_MAX) == 0
    assert tree.verify_workers(tree.VERIFY_IN_PROCESS_MAX + 1, 4) == 1  # one unit, off the event loop
    assert tree.verify_workers(65_536, 4) == 1
    assert tree.verify_workers(65_537, 4) == 2
    assert tree.verify_workers(1_000_000, 4) == 4
    assert tree.verify_workers(1_000_000, 0) == 0
    assert tree.verify_workers(12, 2, unit_level=2) == 2  # what verify_every_way's third call uses


@pytest.mark.parametrize("seq", [2, 8, 12])
async def test_an_edited_right_leaf_is_named_not_the_node_above_it(
    engine: AsyncEngine, database: Database, seq: int
) -> None:
    """An edited entry that completes stored nodes (a right child: seq 2 completes (1, 0), seq 8
    the perfect subtree of 8, seq 12 a unit of 4 in ``verify_every_way``) makes those nodes
    differ from the recomputed ones too; verify names the entry, which is what changed."""
    project = await project_with(engine, 12)
    edit = "UPDATE entries SET amount_fen = amount_fen + 100 WHERE project_id = $1 AND seq = $2"
    await as_superuser(database, [(edit, [project.id, seq])], ["entries"])
    verification = await verify_every_way(engine, project.code)
    assert not verification.ok
    assert verification.first_bad_seq == seq


@pytest.mark.parametrize(
    ("sql", "table", "seq"),
    [
        # Beyond JSON's safe integers: RFC 8785 cannot write it, so no document was made of it.
        (
            "UPDATE postings SET amount_fen = 1152921504606846976 WHERE project_id = $1 AND seq = $2 AND line_no = 1",
            "postings",
            1,
        ),
        ("UPDATE entries SET award_basis = '{not json' WHERE project_id = $1 AND seq = $2", "entries", 1),
        # A contribution whose commitment is gone: its document cannot be rebuilt (seq 7 names one).
        ("UPDATE entries SET contributor_commitment = NULL WHERE project_id = $1 AND seq = $2", "entries", 7),
    ],
)
async def test_a_field_no_document_can_hold_is_named_not_a_crash(
    engine: AsyncEngine, database: Database, sql: str, table: str, seq: int
) -> None:
    project = await project_with(engine, 12)  # seq 1 is its grant (an award basis may only be on a grant)
    await as_superuser(database, [(sql, [project.id, seq])], [table])
    verification = await verify_every_way(engine, project.code)
    assert not verification.ok
    assert verification.first_bad_seq == seq
