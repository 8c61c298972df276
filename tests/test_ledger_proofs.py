"""Roots and proofs served from the database verify with the public verifier (ledger.merkle), for
every leaf, many sizes and many size pairs, and the stored nodes are exactly the perfect subtrees."""

from __future__ import annotations

import itertools
from datetime import date

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ledger import merkle, tree
from ledger.contributors import ContributorRef
from ledger.drafts import EntryDraft
from ledger.entries import append_entries
from ledger.errors import ValidationFailed
from ledger.projects import Project
from tests.conftest import make_project

DAY = date(2025, 6, 1)
SIZE = 37
# Appended in uneven batches so the frontier is carried across transactions at odd sizes.
BATCHES = (1, 2, 5, 13, 1, 15)


@pytest.fixture(scope="module")
async def logged(engine: AsyncEngine) -> tuple[Project, list[bytes], dict[int, bytes]]:
    """The project, its leaf hashes, and the head's root after every batch (as a sheet would print)."""
    assert sum(BATCHES) == SIZE
    project = await make_project(engine)
    published: dict[int, bytes] = {}
    n = 0
    for size in BATCHES:
        drafts = [
            EntryDraft(
                kind="contribution",
                occurred_on=DAY,
                amount_fen=1_000 + n + i,
                contributor=ContributorRef(name=f"居民{(n + i) % 9}"),
                receipt_no=f"R{n + i + 1}",
            )
            for i in range(size)
        ]
        result = await append_entries(engine, project.code, drafts, recorded_by="t", render=lambda r: len(r))
        n += size
        last = result.entries[-1]
        assert last.tree_size == n and last.root_hash is not None
        published[n] = last.root_hash
    async with engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT leaf_hash FROM entries WHERE project_id = :pid ORDER BY seq"), {"pid": project.id}
        )
        leaves = [bytes(r.leaf_hash) for r in rows]
    assert len(leaves) == SIZE
    return project, leaves, published


async def test_root_at_every_size_matches_the_leaves(
    logged: tuple[Project, list[bytes], dict[int, bytes]], db_conn: AsyncConnection
) -> None:
    project, leaves, published = logged
    for size in range(SIZE + 1):
        got_size, root = await tree.root_at(db_conn, project.code, size)
        assert got_size == size
        assert root == merkle.root_from_leaf_hashes(leaves[:size]), f"size {size}"
    assert await tree.root_at(db_conn, project.code, None) == (SIZE, merkle.root_from_leaf_hashes(leaves))
    assert (await tree.root_at(db_conn, project.code, 0))[1] == merkle.EMPTY_ROOT
    for size, root in published.items():
        assert (await tree.root_at(db_conn, project.code, size))[1] == root, "receipts match the historic roots"


async def test_every_inclusion_proof_verifies(
    logged: tuple[Project, list[bytes], dict[int, bytes]], db_conn: AsyncConnection
) -> None:
    project, leaves, _ = logged
    roots = {size: (await tree.root_at(db_conn, project.code, size))[1] for size in range(1, SIZE + 1)}
    checked = 0
    for size in range(1, SIZE + 1):
        for seq in range(1, size + 1):
            proof = await tree.inclusion(db_conn, project.code, seq, size)
            assert (proof.seq, proof.size, proof.leaf_hash, proof.root_hash) == (
                seq,
                size,
                leaves[seq - 1],
                roots[size],
            )
            merkle.verify_inclusion(proof.leaf_hash, seq - 1, size, proof.proof, roots[size])
            assert proof.proof == merkle.inclusion_proof(leaves, seq - 1, size)
            checked += 1
    assert checked == SIZE * (SIZE + 1) // 2
    # A proof for one size does not pass against another size's root, nor for another leaf.
    proof = await tree.inclusion(db_conn, project.code, 5, 20)
    with pytest.raises(merkle.ProofError):
        merkle.verify_inclusion(proof.leaf_hash, 4, 20, proof.proof, roots[21])
    with pytest.raises(merkle.ProofError):
        merkle.verify_inclusion(leaves[5], 4, 20, proof.proof, roots[20])
    # The default size is the current head.
    head_proof = await tree.inclusion(db_conn, project.code, 1, None)
    assert head_proof.size == SIZE and head_proof.root_hash == roots[SIZE]


async def test_every_consistency_proof_verifies(
    logged: tuple[Project, list[bytes], dict[int, bytes]], db_conn: AsyncConnection
) -> None:
    project, leaves, published = logged
    roots = {size: (await tree.root_at(db_conn, project.code, size))[1] for size in range(1, SIZE + 1)}
    for size_to in range(1, SIZE + 1):
        for size_from in range(1, size_to + 1):
            proof = await tree.consistency(db_conn, project.code, size_from, size_to)
            assert (proof.root_from, proof.root_to) == (roots[size_from], roots[size_to])
            merkle.verify_consistency(size_from, size_to, proof.proof, roots[size_from], roots[size_to])
            assert proof.proof == merkle.consistency_proof(leaves, size_from, size_to)
    # Between two printed sheets: the roots a resident holds on paper.
    sizes = sorted(published)
    for old, new in itertools.pairwise(sizes):
        proof = await tree.consistency(db_conn, project.code, old, new)
        merkle.verify_consistency(old, new, proof.proof, published[old], published[new])
    proof = await tree.consistency(db_conn, project.code, 8, 37)
    with pytest.raises(merkle.ProofError):
        merkle.verify_consistency(8, 37, proof.proof, roots[9], roots[37])


async def test_stored_nodes_are_exactly_the_perfect_subtrees(
    logged: tuple[Project, list[bytes], dict[int, bytes]], engine: AsyncEngine
) -> None:
    project, leaves, _ = logged
    async with engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT level, idx, hash FROM merkle_nodes WHERE project_id = :pid"), {"pid": project.id}
        )
        stored = {(r.level, r.idx): bytes(r.hash) for r in rows}
        head = await tree.head(conn, project.code)
    expected = {}
    level = 1
    while (1 << level) <= SIZE:
        for idx in range(SIZE >> level):
            expected[(level, idx)] = merkle.root_from_leaf_hashes(leaves[idx << level : (idx + 1) << level])
        level += 1
    assert stored == expected
    assert head.size == SIZE and head.root_hash == merkle.root_from_leaf_hashes(leaves)


@pytest.mark.parametrize(
    ("call", "args"),
    [
        ("inclusion", (0, None)),
        ("inclusion", (SIZE + 1, None)),
        ("inclusion", (5, 4)),
        ("inclusion", (1, SIZE + 1)),
        ("consistency", (0, 5)),
        ("consistency", (6, 5)),
        ("consistency", (1, SIZE + 1)),
        ("root_at", (SIZE + 1,)),
        ("root_at", (-1,)),
    ],
)
async def test_out_of_range_requests_are_refused(
    logged: tuple[Project, list[bytes], dict[int, bytes]],
    db_conn: AsyncConnection,
    call: str,
    args: tuple[int | None, ...],
) -> None:
    project, _, _ = logged
    with pytest.raises(ValidationFailed):
        await getattr(tree, call)(db_conn, project.code, *args)
