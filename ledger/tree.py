"""The project's Merkle log in the database: roots, proofs and full verification.

Leaf ``i`` is entry ``seq = i + 1``. Level-0 hashes are ``entries.leaf_hash``; perfect subtrees of
level >= 1 are ``merkle_nodes``. A proof for any size is planned by ``ledger.merkle`` and needs only
the few nodes the plan names, fetched in one query.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ledger import kinds, log_check, merkle, pg, pledges
from ledger.errors import NotFound, ValidationFailed

# Processes checking one log at most (ledger/log_check.py): past the CPUs, the database is the limit.
MAX_VERIFY_WORKERS = 8
# Logs up to this size are checked in the caller's process (about a third of a second of CPU):
# past it, in worker processes even for one unit, so that a service's event loop is not held in
# 50 ms slices (one 2,000-entry chunk each) while every other request waits.
VERIFY_IN_PROCESS_MAX = 10_000


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


def verify_workers(size: int, workers: int | None = None, unit_level: int = log_check.UNIT_LEVEL) -> int:
    """How many worker processes check a log of ``size`` entries; 0: the caller's process.

    ``workers``: None chooses — the caller's process up to :data:`VERIFY_IN_PROCESS_MAX`
    entries, else one process per CPU; 0 asks for the caller's process; N for N processes. Never
    more processes than units (nor than :data:`MAX_VERIFY_WORKERS`)."""
    units = -(-size // (1 << unit_level))
    if workers is None:
        if size <= VERIFY_IN_PROCESS_MAX:
            return 0
        workers = os.cpu_count() or 1
    return max(0, min(workers, units, MAX_VERIFY_WORKERS))


async def verify(
    engine: AsyncEngine, project_code: str, *, workers: int | None = None, unit_level: int = log_check.UNIT_LEVEL
) -> Verification:
    """Recompute every leaf from the entry's stored fields and the tree from the leaves; compare
    documents, leaf hashes, stored Merkle nodes and the head, then balances and totals.

    The log is checked in units of 65,536 leaves (ledger/log_check.py), in this process or by
    ``workers`` processes (see :func:`verify_workers`) that share this transaction's snapshot;
    only the unit roots are joined here. ``unit_level`` is for tests (small logs of many units)."""
    async with pg.transaction(engine, isolation="repeatable_read") as conn:
        # One snapshot for the head and every unit: appends committed meanwhile are not tampering.
        await conn.execute(log_check.VERIFY_SETTINGS)
        tree = await _head_raw(conn, project_code)
        units = list(range(-(-tree.size // (1 << unit_level))))
        processes = verify_workers(tree.size, workers, unit_level)
        if processes > 0:
            snapshot = await conn.fetchval("SELECT pg_export_snapshot()")
            dsn = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
            # The sums over the whole project run here meanwhile, on the otherwise idle connection.
            results, sums = await asyncio.gather(
                _check_in_processes(dsn, snapshot, tree, project_code, units, processes, unit_level),
                _ledger_sums(conn, tree.project_id),
            )
        else:
            known = log_check.Known()
            results = [
                await log_check.check_unit(conn, tree.project_id, project_code, tree.size, unit, known, unit_level)
                for unit in units
            ]
            sums = await _ledger_sums(conn, tree.project_id)
        first_bad = min((r.first_bad for r in results if r.first_bad is not None), default=None)
        frontier = merkle.Frontier()
        if first_bad is None:
            frontier, first_bad = await _join_units(conn, tree, results, unit_level)
        # An entry past the head's size: the log holds more than its head says.
        if first_bad is None and await pg.fetchval(conn, _BEYOND_Q, pid=tree.project_id, size=tree.size):
            first_bad = tree.size + 1
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
        balances, totals_off, pledges_off = sums
        unbalanced = _unbalanced(balances, results)
        return Verification(
            ok=first_bad is None and not unbalanced and not totals_off and not pledges_off,
            size=tree.size,
            root_hash=tree.root_hash,
            first_bad_seq=first_bad,
            unbalanced_accounts=unbalanced,
            contributor_totals_ok=not totals_off,
            pledge_totals_ok=not pledges_off,
        )


async def _ledger_sums(conn: asyncpg.Connection, project_id: int) -> tuple[dict[int, tuple[str, int]], bool, bool]:
    """Every account's stored balance (by account id: code, balance); whether contributor totals
    and pledge totals differ from what the entries say."""
    balances = {r["id"]: (r["code"], r["balance_fen"]) for r in await pg.fetch(conn, _BALANCES_Q, pid=project_id)}
    totals_off = bool(await pg.fetchval(conn, _TOTALS_MISMATCH_Q, pid=project_id))
    pledges_off = bool(await pg.fetchval(conn, _PLEDGES_MISMATCH_Q, pid=project_id))
    return balances, totals_off, pledges_off


def _unbalanced(balances: dict[int, tuple[str, int]], results: list[log_check.UnitResult]) -> tuple[str, ...]:
    """Accounts whose running balance differs from the sum of their postings (the units' sums)."""
    nets: Counter[int] = Counter()
    for r in results:
        nets.update(r.nets)
    return tuple(sorted(code for account, (code, balance) in balances.items() if balance != nets[account]))


async def _check_in_processes(
    dsn: str, snapshot: str, tree: TreeHead, project_code: str, units: list[int], processes: int, unit_level: int
) -> list[log_check.UnitResult]:
    """The units dealt round-robin to ``processes`` worker processes (``python -m
    ledger.log_check``), all in this transaction's snapshot."""
    job = {"dsn": dsn, "snapshot": snapshot, "project_id": tree.project_id, "project_code": project_code}
    job.update(size=tree.size, unit_level=unit_level)
    shares = [units[i::processes] for i in range(processes)]
    done = await asyncio.gather(*(_worker(dict(job, units=share)) for share in shares))
    return sorted((r for share in done for r in share), key=lambda r: r.unit)


# The workers import ledger from wherever this process did (a checkout, a venv).
_PACKAGE_ROOT = str(Path(log_check.__file__).resolve().parents[1])


async def _worker(job: dict[str, object]) -> list[log_check.UnitResult]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [_PACKAGE_ROOT, os.environ.get("PYTHONPATH")])))
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        # -P: "python -m" would put the working directory first on the path, so a `ledger` folder
        # there (another checkout, an old release) would be the code that checks the log.
        "-P",
        "-m",
        "ledger.log_check",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    try:
        out, err = await proc.communicate(json.dumps(job).encode())
    finally:
        if proc.returncode is None:  # cancelled (a caller gone): no orphan keeps reading
            proc.kill()
            await proc.wait()
    if proc.returncode != 0:
        raise RuntimeError(f"verify worker failed ({proc.returncode}): {err.decode(errors='replace')[-2000:]}")
    return [log_check.result_from_json(r) for r in json.loads(out)]


async def _join_units(
    conn: asyncpg.Connection, tree: TreeHead, results: list[log_check.UnitResult], unit_level: int
) -> tuple[merkle.Frontier, int | None]:
    """The whole log's frontier from its (all good) units, and the first wrong stored node above
    them, if any: full units are appended as leaves of a tree of units, whose nodes sit
    ``unit_level`` levels up in the real one."""
    units = merkle.Frontier()
    above: list[tuple[merkle.NodeID, bytes]] = []
    tail: tuple[bytes, ...] = ()
    size = 0
    for r in results:
        size += r.count
        if r.count == 1 << unit_level:
            for (level, idx), node in units.append(r.hashes[0]):
                above.append(((level + unit_level, idx), node))
        else:
            tail = r.hashes  # only the last unit may be partial (a short one is flagged by its check)
    frontier = merkle.Frontier(size, [*units.hashes, *tail])
    stored = await _nodes(conn, tree.project_id, [node_id for node_id, _ in above])
    for (level, idx), node in above:
        if stored.get((level, idx)) != node:
            return frontier, idx * (1 << level) + 1
    return frontier, None


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


# Every account's running balance; verify holds each to the sum of its postings.
_BALANCES_SQL = text(
    """
    SELECT a.id, a.code, b.balance_fen
    FROM accounts a JOIN balances b ON b.account_id = a.id
    WHERE a.project_id = :pid
    """
)


# Contributor totals recomputed from the entries (a reversal moves its original's total, negated)
# against the stored ones; a row missing on either side counts as zeros.
_TOTALS_MISMATCH_SQL = text(
    """
    WITH moves AS (
        SELECT e.contributor_id, e.kind, e.amount_fen AS amount
        FROM entries e
        WHERE e.project_id = :pid AND e.kind <> 'reversal'
        UNION ALL
        -- A reversal moves its original's total back; only reversals look their original up (one
        -- join of every entry to every entry made the database hash a million rows).
        SELECT coalesce(o.contributor_id, e.contributor_id), coalesce(o.kind, e.kind), -e.amount_fen
        FROM entries e
        LEFT JOIN entries o ON o.project_id = e.project_id AND o.seq = e.reverses_seq
        WHERE e.project_id = :pid AND e.kind = 'reversal'
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
# An entry, or a posting (were its foreign key disabled), past the head's size.
_BEYOND_Q = pg.Query(
    "SELECT EXISTS (SELECT 1 FROM entries WHERE project_id = :pid AND seq > :size)"
    " OR EXISTS (SELECT 1 FROM postings WHERE project_id = :pid AND seq > :size)"
)
_FRONTIER_Q = pg.Query("SELECT frontier FROM project_heads WHERE project_id = :pid")
_BALANCES_Q = pg.Query(_BALANCES_SQL.text)
_TOTALS_MISMATCH_Q = pg.Query(_TOTALS_MISMATCH_SQL.text)
_PLEDGES_MISMATCH_Q = pg.Query(pledges.TOTALS_MISMATCH_SQL.text)
