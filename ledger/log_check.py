"""Checking one *unit* of a project's log: its documents, leaves and inner Merkle nodes.

``ledger.tree.verify`` cuts the log into units of ``2**UNIT_LEVEL`` leaves, aligned so that every
full unit is a perfect subtree. Everything inside a unit — each entry's document rebuilt from its
stored fields, its leaf hash, the posting rule, every stored node of levels 1 … ``UNIT_LEVEL`` —
is checked from that unit's rows alone, so units can be checked in any order and in several
processes (sharing the verifying transaction's snapshot); ``verify`` joins only the unit roots,
in order, and checks the few nodes above them.

What a unit reads, per chunk of 2,000 entries: the entries' own columns with the stored document
as bytes, their postings as four parallel arrays, and the contributors and account codes not yet
seen — narrow queries, where one wide row per entry with a correlated postings sub-query and a
join cost the database and the driver twice as much, and postings aggregated into strings per
entry cost the database more than the entries did. The unit's posting sums per account (for the
balances) are added up from the same arrays. The stored nodes of a unit
are compared through one digest of all of them, in the order the tree completes them; only a
unit whose digest differs is read node by node to find the first wrong one.

What is reported is what reading the log in order finds first: the first wrong entry, unless a
stored node completed before it is wrong (an edited entry also changes the recomputed nodes
above it; those are not what changed).
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import json
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from ledger import jcs, kinds, merkle, pg
from ledger.accounts import EXPENSES_PREFIX, Posting
from ledger.canonical import ENTRY_TEXT_FIELDS, Signer, contributor_object, document_object, parse_award_basis

# A unit is a perfect subtree of 65,536 leaves: 16 units for a million entries, so two or four
# processes get equal shares, and a unit's emitted nodes (~65,000) stay a few MB.
UNIT_LEVEL = 16
UNIT_SIZE = 1 << UNIT_LEVEL
CHUNK = 2000
_SAFE_INTEGER = 2**53 - 1

# The entry's columns, in this order: rebuild_document unpacks a record by position (looking up
# each of 30 columns by name cost a tenth of rebuilding a document).
ENTRY_COLUMNS = (
    "seq",
    "kind",
    "amount_fen",
    "occurred_on",
    "recorded_at",
    *ENTRY_TEXT_FIELDS,
    "reverses_seq",
    "anonymous",
    "anonymous_id",
    "contributor_id",
    "contributor_commitment",
    "leaf_hash",
    "document",
    "maker_role",
    "maker_name",
    "checker_role",
    "checker_name",
    "attachments",
    "pledge_seq",
    "award_basis",
)
# The stored document as bytes (as bytea: asyncpg hands them over as they are, where text would be
# decoded to str only to be encoded again); the anonymous id as the text the document holds.
_COLUMN_SQL = {"anonymous_id": "e.anonymous_id::text", "document": "convert_to(e.document, 'UTF8')"}
ENTRIES = pg.Query(
    "SELECT "
    + ", ".join(f"{_COLUMN_SQL.get(column, 'e.' + column)} AS {column}" for column in ENTRY_COLUMNS)
    + " FROM entries e WHERE e.project_id = :pid AND e.seq > :after AND e.seq <= :last ORDER BY e.seq"
)
# The chunk's postings as four parallel arrays (one row): a string built and aggregated per entry
# by the database cost it two and a half times the entries' own query, and a row per posting
# costs the driver and Python more than arrays do. Account codes are looked up once (ACCOUNTS).
POSTINGS = pg.Query(
    """
    SELECT coalesce(array_agg(p.seq ORDER BY p.seq, p.line_no), '{}') AS seqs,
           coalesce(array_agg(p.account_id ORDER BY p.seq, p.line_no), '{}') AS account_ids,
           coalesce(array_agg(p.side ORDER BY p.seq, p.line_no), '{}') AS sides,
           coalesce(array_agg(p.amount_fen ORDER BY p.seq, p.line_no), '{}') AS amounts
    FROM postings p
    WHERE p.project_id = :pid AND p.seq > :after AND p.seq <= :last
    """
)
ACCOUNTS = pg.Query("SELECT id, code FROM accounts WHERE id = ANY(:ids::bigint[])")
CONTRIBUTORS = pg.Query(
    "SELECT id, public_id::text AS public_id, type FROM contributors WHERE id = ANY(:ids::bigint[])"
)
# A unit's stored inner nodes: at each level, those whose leaves lie in [lo, hi).
_UNIT_NODES = """
    FROM generate_series(1, :top) AS l(level)
    JOIN merkle_nodes n ON n.project_id = :pid AND n.level = l.level
                       AND n.idx >= (:lo::bigint >> l.level) AND n.idx < (:hi::bigint >> l.level)
"""
# One digest of them, in the order appends complete them: node (l, i) is completed by leaf
# (i + 1)·2^l − 1, lower levels first.
NODES_DIGEST = pg.Query(
    "SELECT pg_catalog.sha256(coalesce(string_agg(n.hash, ''::bytea ORDER BY (n.idx + 1) << n.level, n.level),"
    " ''::bytea))" + _UNIT_NODES
)
NODES = pg.Query("SELECT n.level, n.idx, n.hash" + _UNIT_NODES)
# For the verifying transactions only (set_config(…, true): nothing stays on the connection):
# - the digest sorts a unit's ~65,000 stored nodes: in PostgreSQL's default 4 MB of work_mem that
#   sort spills to disk (140 ms a unit, a quarter of the database's share of a verify); 16 MB
#   keeps it in memory (45 ms);
# - no parallel query: verify's own processes already keep every core busy, and the helpers of a
#   parallel plan only add their overhead to the same cores.
VERIFY_SETTINGS = (
    "SELECT set_config('work_mem', '16MB', true), set_config('max_parallel_workers_per_gather', '0', true)"
)


@dataclass(frozen=True)
class UnitResult:
    """What ``verify`` needs of a checked unit to join it to the others."""

    unit: int
    count: int  # entries read, in seq order from the unit's first
    first_bad: int | None  # the first seq whose document, leaf, rule or node is wrong
    hashes: tuple[bytes, ...]  # the unit's frontier: its root alone when the unit is full
    # Net debit-positive sum of the unit's postings by account id: verify adds the units' and
    # holds each account's balance to the total (summed from the postings the unit reads anyway;
    # one GROUP BY over a million entries' postings cost the database 2.8 s).
    nets: dict[int, int]


People = dict[int, tuple[str, str]]  # contributor id → (public id, type)


@dataclass
class Known:
    """What a worker has looked up so far, filled as units go."""

    people: People = field(default_factory=dict)
    accounts: dict[int, str] = field(default_factory=dict)  # account id → code


def rebuild_document(project_code: str, row: Sequence[Any], postings: Sequence[Posting], people: People) -> bytes:
    """The canonical document as the entry's stored fields say it must be (``row``: a record of
    :data:`ENTRY_COLUMNS`, columns in that order; ``people``: the contributors it may name).

    The members are what :func:`canonical.document_object` makes of them, written by the fast
    encoder after checking only what the columns' types leave open: every value here is a str,
    an int, a bool, a date or time, or a list of str (text, bigint, boolean, … columns), and of
    those RFC 8785 writes differently only integers beyond ±(2^53 − 1) (checked) and lone
    surrogates (which PostgreSQL's UTF-8 text cannot hold, and the encoder refers to rfc8785).
    Through :func:`canonical.entry_document` (every member walked, keyword arguments, a stamp
    and signers built) rebuilding took 7.3 µs an entry, here 3.9: verify of 1,000,000 entries
    went from 9.4–10.8 s to 7.5 s.
    Raises ValueError where no document can be made of the stored fields."""
    (seq, kind, amount_fen, occurred_on, recorded_at, *texts, reverses_seq, anonymous, anonymous_id, contributor_id,
     commitment, _leaf_hash, _document, maker_role, maker_name, checker_role, checker_name, attachments, pledge_seq,
     award_basis) = row  # fmt: skip
    person = None
    # As a LEFT JOIN would: an entry naming no (or a vanished) contributor has no id and type.
    found: Any = people.get(contributor_id, (None, None))
    public_id, contributor_type = found
    if anonymous_id is not None:
        public_id = anonymous_id
    if public_id is not None:
        if commitment is None:
            raise ValueError(f"entry {seq} names a contributor but has no commitment")
        person = contributor_object(public_id, contributor_type, commitment)
    lines = []
    safe = True
    for account, side, amount in postings:
        lines.append([account, side, amount])
        safe = safe and -_SAFE_INTEGER <= amount <= _SAFE_INTEGER
    doc = document_object(
        project_code,
        seq,
        kind,
        amount_fen,
        occurred_on,
        recorded_at,
        zip(ENTRY_TEXT_FIELDS, texts, strict=True),
        person,
        anonymous,
        lines,
        reverses_seq,
        None if maker_name is None else Signer(maker_role, maker_name).as_document(),
        None if checker_name is None else Signer(checker_role, checker_name).as_document(),
        attachments,
        pledge_seq,
        None if award_basis is None else parse_award_basis(award_basis),
    )
    if (
        safe
        and award_basis is None
        and -_SAFE_INTEGER <= seq <= _SAFE_INTEGER
        and -_SAFE_INTEGER <= amount_fen <= _SAFE_INTEGER
        and (reverses_seq is None or -_SAFE_INTEGER <= reverses_seq <= _SAFE_INTEGER)
        and (pledge_seq is None or -_SAFE_INTEGER <= pledge_seq <= _SAFE_INTEGER)
    ):
        return jcs.dumps_plain(doc)
    return jcs.dumps(doc)  # an award basis (any JSON), or an integer rfc8785 refuses: it says so


def follows_posting_rule(kind_name: str, amount_fen: int, category: str | None, postings: Sequence[Posting]) -> bool:
    """A new entry's postings are its kind's rule (ledger/kinds.py); a reversal's mirror its
    original's, which the original's own check and the document of the reversal pin."""
    kind = kinds.BY_NAME.get(kind_name)
    if kind is None:
        return False
    if kind.name == kinds.REVERSAL:
        return True
    if kind.debit == EXPENSES_PREFIX and category is None:
        return False
    # kinds.postings_for's two postings, compared where they lie (no Posting built per entry).
    if len(postings) != 2:
        return False
    debit, credit = postings
    return (debit.account, credit.account) == kinds.posting_accounts(kind.name, category) and (
        debit.side == "debit" and credit.side == "credit" and debit.amount_fen == credit.amount_fen == amount_fen
    )


async def read_chunk(
    conn: asyncpg.Connection, project_id: int, after: int, last: int, known: Known, nets: dict[int, int] | None = None
) -> tuple[list[asyncpg.Record], dict[int, list[Posting]]]:
    """Entries ``after < seq <= last`` and their postings by seq; ``known`` gains their contributors
    and accounts, ``nets`` (by account id) their postings' debit-positive amounts."""
    rows = await pg.fetch(conn, ENTRIES, pid=project_id, after=after, last=last)
    arrays = await pg.fetchrow(conn, POSTINGS, pid=project_id, after=after, last=last)
    assert arrays is not None, "an aggregate without GROUP BY returns one row"
    seqs, account_ids, sides, amounts = arrays
    unseen = {r["contributor_id"] for r in rows} - known.people.keys()
    unseen.discard(None)
    if unseen:
        for r in await pg.fetch(conn, CONTRIBUTORS, ids=list(unseen)):
            known.people[r["id"]] = (r["public_id"], r["type"])
    codes = known.accounts
    unseen = set(account_ids) - codes.keys()
    if unseen:
        for r in await pg.fetch(conn, ACCOUNTS, ids=list(unseen)):
            codes[r["id"]] = r["code"]
    postings: dict[int, list[Posting]] = {}
    for seq, account_id, side, amount_fen in zip(seqs, account_ids, sides, amounts, strict=True):
        # An account that does not exist (possible only with its foreign key dropped) has no code:
        # neither the rule nor the document can hold, so the entry is named.
        posting = Posting(codes.get(account_id), side, amount_fen)  # type: ignore[arg-type]
        if seq in postings:
            postings[seq].append(posting)
        else:
            postings[seq] = [posting]
    if nets is not None:
        for account_id, side, amount_fen in zip(account_ids, sides, amounts, strict=True):
            nets[account_id] = nets.get(account_id, 0) + (amount_fen if side == "debit" else -amount_fen)
    return rows, postings


async def check_unit(
    conn: asyncpg.Connection,
    project_id: int,
    project_code: str,
    size: int,
    unit: int,
    known: Known,
    unit_level: int = UNIT_LEVEL,
) -> UnitResult:
    """Check the entries ``unit·2^L < seq <= min((unit+1)·2^L, size)`` (``L``: ``unit_level``)
    and the stored nodes inside that range, on ``conn`` (which holds the verification's snapshot)."""
    lo = unit << unit_level
    hi = min(lo + (1 << unit_level), size)
    frontier = merkle.Frontier()
    # The inner nodes the unit's appends complete, in order, as one buffer of 32-byte hashes
    # (their ids follow from the order: see _node_ids).
    nodes = bytearray()
    # The first wrong entry (its seq) and the leaf position where it showed: a wrong stored node
    # completed before that position is reported instead, as reading the log in order would.
    bad_entry: int | None = None
    bad_at = hi
    nets: dict[int, int] = {}
    expected = lo + 1
    after = lo
    while after < hi:
        last = min(after + CHUNK, hi)
        rows, postings_by_seq = await read_chunk(conn, project_id, after, last, known, nets)
        for row in rows:
            seq = row["seq"]
            postings = postings_by_seq.get(seq, [])
            try:
                document: bytes | None = rebuild_document(project_code, row, postings, known.people)
            except ValueError:
                # Stored fields no document can be made of (a posting beyond JSON's safe integers,
                # an award basis that is not JSON): not what was hashed. The stored leaf carries
                # the tree on, so the entry, not the nodes above it, is what gets named.
                postings, document = [], None
            leaf = merkle.leaf_hash(document) if document is not None else bytes(row["leaf_hash"])
            if bad_entry is None and (
                document is None
                or seq != expected
                or document != row["document"]
                or leaf != row["leaf_hash"]
                or not follows_posting_rule(row["kind"], row["amount_fen"], row["category"], postings)
            ):
                bad_entry, bad_at = min(seq, expected), expected
            for _, node in frontier.append(leaf):
                nodes += node
            expected += 1
        after = last
    count = frontier.size
    if bad_entry is None and count != hi - lo:
        bad_entry = bad_at = lo + count + 1  # the unit ends early: entries are missing
    first_bad = bad_entry
    stored_digest = bytes(await pg.fetchval(conn, NODES_DIGEST, pid=project_id, top=unit_level, lo=lo, hi=hi))
    if hashlib.sha256(nodes).digest() != stored_digest:
        stored = {
            (r["level"], r["idx"]): bytes(r["hash"])
            for r in await pg.fetch(conn, NODES, pid=project_id, top=unit_level, lo=lo, hi=hi)
        }
        for i, (level, idx) in enumerate(_node_ids(lo, count)):
            if stored.get((level, idx)) != nodes[i * merkle.HASH_SIZE : (i + 1) * merkle.HASH_SIZE]:
                completed_at = (idx + 1) << level  # the position of the leaf that completes it
                if bad_entry is None or completed_at < bad_at:
                    first_bad = idx * (1 << level) + 1
                break
        else:  # every node it completed is right, yet the digests differ
            if first_bad is None:
                first_bad = lo + 1
    return UnitResult(unit, count, first_bad, tuple(frontier.hashes), nets)


def _node_ids(lo: int, count: int) -> Iterator[merkle.NodeID]:
    """The ids of the inner nodes completed by appending ``count`` leaves after ``lo`` (aligned),
    in the order ``merkle.Frontier.append`` returns them: leaf ``j`` completes one node per
    trailing 1 bit of ``j``."""
    for j in range(count):
        index, level = j, 0
        while index & 1:
            index >>= 1
            level += 1
            yield level, (lo >> level) + index


# -- worker processes -------------------------------------------------------------------------
#
# ``verify`` starts ``python -m ledger.log_check`` once per worker: a job as JSON on stdin (the DSN
# with its password travels there, never on a command line), its units' results as JSON on
# stdout. A plain subprocess imports only this module and what it needs (28 MB), where
# multiprocessing would re-import the parent's main module — the whole command line or server.


def run_job(job: dict[str, Any]) -> list[dict[str, Any]]:
    results = asyncio.run(_check_units(**job))
    return [
        {
            "unit": r.unit,
            "count": r.count,
            "first_bad": r.first_bad,
            "hashes": [h.hex() for h in r.hashes],
            "nets": [[account, net] for account, net in r.nets.items()],
        }
        for r in results
    ]


def result_from_json(data: dict[str, Any]) -> UnitResult:
    return UnitResult(
        data["unit"],
        data["count"],
        data["first_bad"],
        tuple(bytes.fromhex(h) for h in data["hashes"]),
        {account: net for account, net in data["nets"]},
    )


async def _check_units(
    dsn: str, snapshot: str, project_id: int, project_code: str, size: int, units: list[int], unit_level: int
) -> list[UnitResult]:
    # Nothing a check makes holds a reference cycle, yet the collector would walk every live
    # record again and again (a quarter of a unit's time): a worker collects once per unit.
    gc.disable()
    conn = await asyncpg.connect(dsn, server_settings={"application_name": "ledger-verify"})
    try:
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            # The first statement of the transaction: from here it sees exactly what verify sees.
            await conn.execute(f"SET TRANSACTION SNAPSHOT '{_snapshot_id(snapshot)}'")
            await conn.execute(VERIFY_SETTINGS)
            known = Known()
            results = []
            for unit in units:
                results.append(await check_unit(conn, project_id, project_code, size, unit, known, unit_level))
                gc.collect()
            return results
    finally:
        await conn.close()


def _snapshot_id(snapshot: str) -> str:
    # pg_export_snapshot() returns e.g. "00000003-0000001B-1"; SET TRANSACTION SNAPSHOT takes no
    # parameter, so the id is checked before it is spliced in.
    if not snapshot or any(c not in "0123456789ABCDEFabcdef-" for c in snapshot):
        raise ValueError(f"not a snapshot id: {snapshot!r}")
    return snapshot


if __name__ == "__main__":
    json.dump(run_job(json.load(sys.stdin)), sys.stdout)
