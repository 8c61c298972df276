"""Proofs and roots of a larger log (4,100 entries: past 2^12, in uneven batches) from the
database agree with the RFC 9162 verifier (ledger.merkle, tested against ../shared/testdata's
vectors) and with roots recomputed from the leaves. bench/million.py checks the same at
1,000,000 entries; the size here is kept modest for CI time. Not timed."""

from __future__ import annotations

import random
from datetime import date

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ledger import merkle, tree
from ledger.contributors import ContributorRef
from ledger.drafts import EntryDraft
from ledger.entries import append_entries
from ledger.entry_reads import list_entries
from ledger.projects import Project
from tests.conftest import make_project

BATCHES = (1, 2047, 2048, 3, 1)  # sizes 1, 2048, 4096, 4099, 4100
SIZE = sum(BATCHES)


@pytest.fixture(scope="module")
async def big(engine: AsyncEngine) -> tuple[Project, list[bytes]]:
    project = await make_project(engine)
    n = 0
    for count in BATCHES:
        drafts = [
            EntryDraft(
                kind="contribution",
                occurred_on=date(2025, 6, 1),
                amount_fen=100 + (n + i) % 997,
                contributor=ContributorRef(name=f"居民{(n + i) % 97}"),
                receipt_no=f"R{n + i + 1}",
            )
            for i in range(count)
        ]
        await append_entries(engine, project.code, drafts, recorded_by="t", render=lambda r: len(r))
        n += count
    async with engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT leaf_hash FROM entries WHERE project_id = :pid ORDER BY seq"), {"pid": project.id}
        )
        leaves = [bytes(r.leaf_hash) for r in rows]
    assert len(leaves) == SIZE
    return project, leaves


def _sizes(rng: random.Random) -> list[int]:
    edges = [1, 2, 3, 2047, 2048, 2049, 4095, 4096, 4097, SIZE - 1, SIZE]
    return edges + [rng.randint(1, SIZE) for _ in range(30)]


async def test_roots_and_proofs_agree_with_the_rfc_9162_verifier(
    big: tuple[Project, list[bytes]], db_conn: AsyncConnection
) -> None:
    project, leaves = big
    rng = random.Random(9162)
    prefix_roots: dict[int, bytes] = {}

    def root_of(size: int) -> bytes:
        if size not in prefix_roots:
            prefix_roots[size] = merkle.root_from_leaf_hashes(leaves[:size])
        return prefix_roots[size]

    sizes = _sizes(rng)
    for size in sizes:
        assert (await tree.root_at(db_conn, project.code, size)) == (size, root_of(size))
        for seq in {1, size, rng.randint(1, size)}:
            p = await tree.inclusion(db_conn, project.code, seq, size)
            assert p.root_hash == root_of(size) and p.leaf_hash == leaves[seq - 1]
            merkle.verify_inclusion(p.leaf_hash, seq - 1, size, p.proof, root_of(size))
    for size_to in sizes:
        for size_from in {1, size_to, rng.randint(1, size_to)}:
            c = await tree.consistency(db_conn, project.code, size_from, size_to)
            assert (c.root_from, c.root_to) == (root_of(size_from), root_of(size_to))
            merkle.verify_consistency(size_from, size_to, c.proof, c.root_from, c.root_to)
    # The head: size None means the current size.
    assert await tree.root_at(db_conn, project.code, None) == (SIZE, root_of(SIZE))


async def test_keyset_pages_walk_the_whole_log_in_order(big: tuple[Project, list[bytes]], engine: AsyncEngine) -> None:
    project, leaves = big
    seen: list[int] = []
    after = 0
    async with engine.connect() as conn:
        while True:
            page = await list_entries(conn, project.code, after_seq=after, limit=500)
            if not page:
                break
            seen += [e.seq for e in page]
            assert [e.leaf_hash for e in page] == leaves[after : after + len(page)]
            after = page[-1].seq
        deep = await list_entries(conn, project.code, after_seq=SIZE - 3, limit=50)
        filtered = await list_entries(conn, project.code, kind="contribution", after_seq=SIZE - 3, limit=50)
    assert seen == list(range(1, SIZE + 1))
    assert [e.seq for e in deep] == [e.seq for e in filtered] == [SIZE - 2, SIZE - 1, SIZE]
