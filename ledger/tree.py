"""The project's Merkle log in the database: roots, proofs and full verification.

Leaf ``i`` is entry ``seq = i + 1``. Level-0 hashes are ``entries.leaf_hash``; perfect subtrees of
level >= 1 are ``merkle_nodes``. A proof for any size is planned by ``ledger.merkle`` and needs only
the few nodes the plan names, fetched in one query.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import asyncpg
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ledger import kinds, merkle, pg, pledges
from ledger.accounts import EXPENSES_PREFIX, parse_posting_lines
from ledger.awards import parse_basis
from ledger.canonical import ENTRY_TEXT_FIELDS, ContributorStamp, Signer, entry_document
from ledger.errors import NotFound, ValidationFailed

VERIFY_CHUNK = 2000


@dataclass(frozen=True)
class TreeHead:
    project_id: int
    size: int
    root_hash: bytes


@dataclass(frozen=True)
class InclusionProof:
    seq: int
    size: int
    leaf_hash: bytes
    root_hash: bytes
    proof: list[bytes]


@dataclass(frozen=True)
class ConsistencyProof:
    size_from: int
    size_to: int
    root_from: bytes
    root_to: bytes
    proof: list[bytes]


@dataclass(frozen=True)
class Verification:
    ok: bool
    size: int
    root_hash: bytes
    first_bad_seq: int | None
    # Accounts whose running balance differs from the sum of their postings (the application role
    # may update balances, so they are checked too).
    unbalanced_accounts: tuple[str, ...] = ()
    # Whether every contributor's stored totals in the project (paid, refunded, pledged, in kind;
    # they bound refunds, and the application role may update them) equal what the entries say.
    contributor_totals_ok: bool = True
    # Whether every pledge's stored promise and payments (ledger/pledges.py) equal the entries'.
    pledge_totals_ok: bool = True


async def head(conn: AsyncConnection, project_code: str) -> TreeHead:
    row = (
        await conn.execute(
            text(
                "SELECT h.project_id, h.size, h.root_hash FROM project_heads h "
                "JOIN projects p ON p.id = h.project_id WHERE p.code = :code"
            ),
            {"code": project_code},
        )
    ).one_or_none()
    if row is None:
        raise NotFound(f"项目 {project_code} 不存在")
    return TreeHead(row.project_id, row.size, bytes(row.root_hash))


def _check_size(name: str, size: int, tree: TreeHead, minimum: int = 0) -> None:
    if not minimum <= size <= tree.size:
        raise ValidationFailed.on(name, f"{name} 须在 {minimum} 到 {tree.size}（当前记录数）之间")


# Proofs and roots on the raw driver (ledger/pg.py): the head, then every node the answer needs —
# the proof's and the roots' — in one query. Two round trips whatever the size.
_HEAD = pg.Query(
    "SELECT h.project_id, h.size, h.root_hash FROM project_heads h "
    "JOIN projects p ON p.id = h.project_id WHERE p.code = :code"
)
_NODES = pg.Query(
    """
    SELECT 0::smallint AS level, e.seq - 1 AS idx, e.leaf_hash AS hash
    FROM entries e
    WHERE e.project_id = :pid AND e.seq = ANY(:leaf_seqs::bigint[])
    UNION ALL
    SELECT n.level, n.idx, n.hash
    FROM merkle_nodes n
    JOIN unnest(:levels::smallint[], :idxs::bigint[]) AS k(level, idx) ON n.level = k.level AND n.idx = k.idx
    WHERE n.project_id = :pid
    """
)


async def _head_raw(conn: asyncpg.Connection, project_code: str) -> TreeHead:
    row = await pg.fetchrow(conn, _HEAD, code=project_code)
    if row is None:
        raise NotFound(f"项目 {project_code} 不存在")
    return TreeHead(row["project_id"], row["size"], bytes(row["root_hash"]))


async def _nodes(conn: asyncpg.Connection, project_id: int, ids: list[merkle.NodeID]) -> dict[merkle.NodeID, bytes]:
    if not ids:
        return {}
    rows = await pg.fetch(
        conn,
        _NODES,
        pid=project_id,
        leaf_seqs=[i + 1 for lvl, i in ids if lvl == 0],
        levels=[lvl for lvl, _ in ids if lvl > 0],
        idxs=[i for lvl, i in ids if lvl > 0],
    )
    return {(r["level"], r["idx"]): bytes(r["hash"]) for r in rows}


def _root_ids(tree: TreeHead, size: int) -> list[merkle.NodeID]:
    return [] if size == tree.size else merkle.root_plan(size).node_ids


def _root_from(tree: TreeHead, size: int, fetched: dict[merkle.NodeID, bytes]) -> bytes:
    if size == tree.size:
        return tree.root_hash
    return merkle.root_plan(size).rehash(fetched)[0]


async def root_at(sa_conn: AsyncConnection, project_code: str, size: int | None) -> tuple[int, bytes]:
    conn = await pg.driver(sa_conn)
    tree = await _head_raw(conn, project_code)
    size = tree.size if size is None else size
    _check_size("size", size, tree)
    return size, _root_from(tree, size, await _nodes(conn, tree.project_id, _root_ids(tree, size)))


async def inclusion(sa_conn: AsyncConnection, project_code: str, seq: int, size: int | None) -> InclusionProof:
    conn = await pg.driver(sa_conn)
    tree = await _head_raw(conn, project_code)
    size = tree.size if size is None else size
    _check_size("size", size, tree, minimum=1)
    if not 1 <= seq <= size:
        raise ValidationFailed.on("seq", f"seq 须在 1 到 {size} 之间")
    plan = merkle.inclusion_plan(seq - 1, size)
    leaf_id = (0, seq - 1)
    fetched = await _nodes(conn, tree.project_id, [*plan.node_ids, leaf_id, *_root_ids(tree, size)])
    proof = plan.rehash(fetched)
    return InclusionProof(seq, size, fetched[leaf_id], _root_from(tree, size, fetched), proof)


async def consistency(sa_conn: AsyncConnection, project_code: str, size_from: int, size_to: int) -> ConsistencyProof:
    conn = await pg.driver(sa_conn)
    tree = await _head_raw(conn, project_code)
    _check_size("to", size_to, tree, minimum=1)
    if not 1 <= size_from <= size_to:
        raise ValidationFailed.on("from", f"from 须在 1 到 {size_to} 之间")
    plan = merkle.consistency_plan(size_from, size_to)
    wanted = [*plan.node_ids, *_root_ids(tree, size_from), *_root_ids(tree, size_to)]
    fetched = await _nodes(conn, tree.project_id, wanted)
    proof = plan.rehash(fetched)
    return ConsistencyProof(
        size_from, size_to, _root_from(tree, size_from, fetched), _root_from(tree, size_to, fetched), proof
    )


_VERIFY_SQL = text(
    """
    SELECT e.seq, e.kind, e.amount_fen, e.occurred_on, e.recorded_at, e.memo, e.channel, e.receipt_no,
           e.grantor, e.document_no, e.payee, e.category, e.invoice_no, e.description, e.reason, e.payer,
           e.reverses_seq, e.anonymous, e.contributor_commitment, e.document, e.leaf_hash,
           e.maker_role, e.maker_name, e.checker_role, e.checker_name, e.attachments, e.pledge_seq,
           e.award_basis,
           coalesce(e.anonymous_id, c.public_id) AS public_id, c.type AS contributor_type,
           (SELECT array_agg(a.code || ' ' || p.side || ' ' || p.amount_fen ORDER BY p.line_no)
              FROM postings p JOIN accounts a ON a.id = p.account_id
             WHERE p.project_id = e.project_id AND p.seq = e.seq) AS postings
    FROM entries e
    LEFT JOIN contributors c ON c.id = e.contributor_id
    WHERE e.project_id = :pid AND e.seq > :after
    ORDER BY e.seq
    LIMIT :limit
    """
)


def rebuild_document(project_code: str, row: object) -> bytes:
    """The canonical document as the entry's stored fields say it must be (``row``: a SQLAlchemy
    row or an asyncpg record of ``_VERIFY_SQL``)."""
    m: Any = getattr(row, "_mapping", row)
    postings = parse_posting_lines(m["postings"])
    stamp = None
    if m["public_id"] is not None:
        stamp = ContributorStamp(str(m["public_id"]), m["contributor_type"], bytes(m["contributor_commitment"]))
    fields = {k: m[k] for k in ENTRY_TEXT_FIELDS}
    occurred_on: date = m["occurred_on"]
    recorded_at: datetime = m["recorded_at"]
    return entry_document(
        project_code=project_code,
        seq=m["seq"],
        kind=m["kind"],
        amount_fen=m["amount_fen"],
        occurred_on=occurred_on,
        recorded_at=recorded_at,
        fields=fields,
        contributor=stamp,
        anonymous=m["anonymous"],
        postings=postings,
        reverses_seq=m["reverses_seq"],
        maker=Signer(m["maker_role"], m["maker_name"]) if m["maker_name"] is not None else None,
        checker=Signer(m["checker_role"], m["checker_name"]) if m["checker_name"] is not None else None,
        attachments=tuple(m["attachments"] or ()),
        pledge_seq=m["pledge_seq"],
        award_basis=parse_basis(m["award_basis"]),
    )


def follows_posting_rule(row: object) -> bool:
    """A new entry's postings are its kind's rule (ledger/kinds.py); a reversal's mirror its
    original's, which the original's own check and the document of the reversal pin."""
    m: Any = getattr(row, "_mapping", row)
    kind = kinds.BY_NAME.get(m["kind"])
    if kind is None:
        return False
    if kind.name == kinds.REVERSAL:
        return True
    if kind.debit == EXPENSES_PREFIX and m["category"] is None:
        return False
    return parse_posting_lines(m["postings"]) == kinds.postings_for(kind.name, m["amount_fen"], m["category"])


async def verify(engine: AsyncEngine, project_code: str) -> Verification:
    """Recompute every leaf from the entry's stored fields and the tree from the leaves; compare
    documents, leaf hashes, stored Merkle nodes and the head. Streams in chunks, on the raw driver
    (SQLAlchemy's row handling cost more than the database's reads for a million entries)."""
    async with pg.transaction(engine, isolation="repeatable_read") as conn:
        # One snapshot for the head and every chunk: appends committed meanwhile are not tampering.
        tree = await _head_raw(conn, project_code)
        frontier = merkle.Frontier()
        first_bad: int | None = None
        after = 0
        while True:
            rows = await pg.fetch(conn, _VERIFY_Q, pid=tree.project_id, after=after, limit=VERIFY_CHUNK)
            if not rows:
                break
            emitted: list[tuple[merkle.NodeID, bytes]] = []
            for row in rows:
                expected_seq = frontier.size + 1
                document = rebuild_document(project_code, row)
                leaf = merkle.leaf_hash(document)
                bad = (
                    row["seq"] != expected_seq
                    or document != row["document"].encode()
                    or leaf != bytes(row["leaf_hash"])
                    or not follows_posting_rule(row)
                )
                if bad and first_bad is None:
                    first_bad = min(row["seq"], expected_seq)
                emitted.extend(frontier.append(leaf))
            after = rows[-1]["seq"]
            stored = await _nodes(conn, tree.project_id, [node_id for node_id, _ in emitted])
            for (level, idx), node in emitted:
                if stored.get((level, idx)) != node and first_bad is None:
                    first_bad = idx * (1 << level) + 1
        root = frontier.root()
        if first_bad is None and frontier.size == tree.size and root != tree.root_hash:
            # The newest leaf of an odd-sized log has no stored node above it; the head's frontier
            # still pins it. If the frontier agrees, what is wrong is the head's root (size + 1).
            blob = bytes(await conn.fetchval(_FRONTIER_Q.sql, *_FRONTIER_Q.args({"pid": tree.project_id})))
            pinned = [blob[i : i + merkle.HASH_SIZE] for i in range(0, len(blob), merkle.HASH_SIZE)]
            for (level, idx), mine, theirs in zip(frontier.node_ids(), frontier.hashes, pinned, strict=False):
                if mine != theirs:
                    first_bad = idx * (1 << level) + 1
                    break
        if first_bad is None and (frontier.size != tree.size or root != tree.root_hash):
            first_bad = min(frontier.size, tree.size) + 1
        pid = {"pid": tree.project_id}
        unbalanced = tuple(r[0] for r in await conn.fetch(_UNBALANCED_Q.sql, *_UNBALANCED_Q.args(pid)))
        totals_off = await conn.fetchval(_TOTALS_MISMATCH_Q.sql, *_TOTALS_MISMATCH_Q.args(pid))
        pledges_off = await conn.fetchval(_PLEDGES_MISMATCH_Q.sql, *_PLEDGES_MISMATCH_Q.args(pid))
        return Verification(
            ok=first_bad is None and not unbalanced and not totals_off and not pledges_off,
            size=tree.size,
            root_hash=tree.root_hash,
            first_bad_seq=first_bad,
            unbalanced_accounts=unbalanced,
            contributor_totals_ok=not totals_off,
            pledge_totals_ok=not pledges_off,
        )


@dataclass(frozen=True)
class CheckedVerification:
    result: Verification
    checked_at: datetime  # when the leaves were last recomputed


class VerificationCache:
    """Full verifications by project, kept in the memory of one service process.

    A verification reads every entry, so anyone could make the service spend seconds per request.
    The ledger only grows: while a project's tree still has the size and root a verification saw,
    its answer stands, and the next caller gets it without recomputing; an append (a new size)
    makes the next caller recompute. Concurrent callers for one project wait for one computation.
    What this does not see is the owner role rewriting history without appending; ``ledger
    verify`` on the command line always recomputes, and the answer says when it was computed."""

    def __init__(self) -> None:
        self._checked: dict[str, CheckedVerification] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        # Full recomputations per project: the cache's own account of its work.
        self.computed: Counter[str] = Counter()

    async def _fresh(self, engine: AsyncEngine, project_code: str) -> CheckedVerification | None:
        async with engine.connect() as conn:
            now = await head(conn, project_code)  # 404 for a project that does not exist
        checked = self._checked.get(project_code)
        if checked is not None and (checked.result.size, checked.result.root_hash) == (now.size, now.root_hash):
            return checked
        return None

    async def verify(self, engine: AsyncEngine, project_code: str) -> CheckedVerification:
        checked = await self._fresh(engine, project_code)
        if checked is not None:
            return checked
        async with self._locks.setdefault(project_code, asyncio.Lock()):
            # Someone may have verified this size while we waited.
            checked = await self._fresh(engine, project_code)
            if checked is None:
                self.computed[project_code] += 1
                checked = CheckedVerification(await verify(engine, project_code), datetime.now(UTC))
                self._checked[project_code] = checked
            return checked


_UNBALANCED_SQL = text(
    """
    SELECT a.code
    FROM accounts a
    JOIN balances b ON b.account_id = a.id
    LEFT JOIN (
        SELECT account_id, sum(CASE WHEN side = 'debit' THEN amount_fen ELSE -amount_fen END) AS net
        FROM postings WHERE project_id = :pid GROUP BY account_id
    ) p ON p.account_id = a.id
    WHERE a.project_id = :pid AND b.balance_fen <> coalesce(p.net, 0)
    ORDER BY a.code
    """
)

# Contributor totals recomputed from the entries (a reversal moves its original's total, negated)
# against the stored ones; a row missing on either side counts as zeros.
_TOTALS_MISMATCH_SQL = text(
    """
    WITH moves AS (
        SELECT coalesce(o.contributor_id, e.contributor_id) AS contributor_id,
               coalesce(o.kind, e.kind) AS kind,
               CASE WHEN e.kind = 'reversal' THEN -e.amount_fen ELSE e.amount_fen END AS amount
        FROM entries e
        LEFT JOIN entries o ON e.kind = 'reversal' AND o.project_id = e.project_id AND o.seq = e.reverses_seq
        WHERE e.project_id = :pid
    ), expected AS (
        SELECT contributor_id,
               {expected}
        FROM moves WHERE contributor_id IS NOT NULL
        GROUP BY contributor_id
    )
    SELECT EXISTS (
        SELECT 1
        FROM expected x
        FULL JOIN (SELECT * FROM contributor_totals WHERE project_id = :pid) t ON t.contributor_id = x.contributor_id
        WHERE (coalesce(x.paid, 0), coalesce(x.refunded, 0), coalesce(x.pledged, 0), coalesce(x.in_kind, 0))
              IS DISTINCT FROM
              (coalesce(t.paid_fen, 0), coalesce(t.refunded_fen, 0), coalesce(t.pledged_fen, 0),
               coalesce(t.in_kind_fen, 0))
    )
    """.format(
        # Which kinds move which total: ledger/kinds.py, the same table the append path reads.
        expected=",\n               ".join(
            f"coalesce(sum(amount) FILTER (WHERE {condition}), 0) AS {total}"
            for total, condition in kinds.total_filters()
        )
    )
)


# verify() runs on the raw driver: the same statements, compiled once to asyncpg's $n.
_VERIFY_Q = pg.Query(_VERIFY_SQL.text)
_FRONTIER_Q = pg.Query("SELECT frontier FROM project_heads WHERE project_id = :pid")
_UNBALANCED_Q = pg.Query(_UNBALANCED_SQL.text)
_TOTALS_MISMATCH_Q = pg.Query(_TOTALS_MISMATCH_SQL.text)
_PLEDGES_MISMATCH_Q = pg.Query(pledges.TOTALS_MISMATCH_SQL.text)
