"""The read model of entries: pages, counts, one entry, and look-ups by receipt number.

Read side only, on the caller's connection (SQLAlchemy Core, ``text()``): a route's connection, or
the publishing snapshot's (ledger/sheet_facts.py), so that everything a sheet prints agrees.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from ledger.accounts import Posting, parse_posting_lines
from ledger.canonical import ENTRY_TEXT_FIELDS, Signer, parse_award_basis
from ledger.contributors import Contributor
from ledger.drafts import BATCH_SIZE_MAX
from ledger.errors import EntryWarning, NotFound


@dataclass
class RecordedEntry:
    project_code: str
    seq: int
    kind: str
    amount_fen: int
    occurred_on: date
    recorded_at: datetime
    recorded_by: str
    fields: dict[str, Any]
    contributor: Contributor | None
    anonymous: bool
    postings: list[Posting]
    reverses_seq: int | None
    reversed_by: int | None
    document: str
    leaf_hash: bytes
    # The receipt: tree size and root right after this entry was appended (None on reads).
    tree_size: int | None = None
    root_hash: bytes | None = None
    # The contributor commitment in the document (an anonymous entry has its own).
    commitment: bytes | None = None
    # An anonymous entry's own public contributor id (its document's), fresh per entry, so that it
    # cannot be linked to the giver's other entries; None for a named one.
    anonymous_id: uuid.UUID | None = None
    maker: Signer | None = None
    checker: Signer | None = None
    attachments: tuple[str, ...] = ()
    pledge_seq: int | None = None
    award_basis: dict[str, Any] | None = None
    # What the write noticed but did not refuse (a pledge paid beyond its promise); only in the
    # response to the write that recorded the entry, never on a read.
    warnings: list[EntryWarning] = field(default_factory=list)

    @property
    def public_contributor_id(self) -> uuid.UUID | None:
        """The contributor id this entry publishes (and its document carries)."""
        if self.anonymous_id is not None:
            return self.anonymous_id
        return self.contributor.public_id if self.contributor else None


PAGE_SIZE_MAX = 500
SEQ_MAX = 2**63 - 1  # entries.seq is a bigint

# The page is cut first (keyset on the primary key, or on entries_kind_idx with a kind: the index
# order is the seq order, LIMIT stops after ``limit`` rows at any depth), then joined: joining
# first let the planner read, join and sort every entry after ``after`` (200 ms for page 1 of a
# 30,000-entry project; bench/million.py).
_READ_SQL = """
    WITH page AS (
        SELECT e.* FROM entries e
        WHERE e.project_id = (SELECT id FROM projects WHERE code = :code) {where}
        ORDER BY e.seq
        LIMIT :limit
    )
    SELECT e.*, p.code AS project_code,
           c.id AS c_id, c.public_id AS c_public_id, c.type AS c_type, c.name AS c_name,
           c.household AS c_household, c.salt AS c_salt,
           r.seq AS reversed_by,
           (SELECT array_agg(a.code || ' ' || po.side || ' ' || po.amount_fen ORDER BY po.line_no)
              FROM postings po JOIN accounts a ON a.id = po.account_id
             WHERE po.project_id = e.project_id AND po.seq = e.seq) AS posting_lines
    FROM page e
    JOIN projects p ON p.id = e.project_id
    LEFT JOIN contributors c ON c.id = e.contributor_id
    LEFT JOIN entries r ON r.project_id = e.project_id AND r.reverses_seq = e.seq
    ORDER BY e.seq
"""


def _entry_from_row(row: Any) -> RecordedEntry:
    m = row._mapping
    contributor = None
    if m["c_id"] is not None:
        contributor = Contributor(
            id=m["c_id"],
            public_id=m["c_public_id"],
            type=m["c_type"],
            name=m["c_name"],
            household=m["c_household"],
            commitment=bytes(m["contributor_commitment"]),
        )
    postings = parse_posting_lines(m["posting_lines"])
    return RecordedEntry(
        project_code=m["project_code"],
        seq=m["seq"],
        kind=m["kind"],
        amount_fen=m["amount_fen"],
        occurred_on=m["occurred_on"],
        recorded_at=m["recorded_at"],
        recorded_by=m["recorded_by"],
        fields={k: m[k] for k in ENTRY_TEXT_FIELDS},
        contributor=contributor,
        anonymous=m["anonymous"],
        postings=postings,
        reverses_seq=m["reverses_seq"],
        reversed_by=m["reversed_by"],
        document=m["document"],
        leaf_hash=bytes(m["leaf_hash"]),
        commitment=contributor.commitment if contributor else None,
        anonymous_id=m["anonymous_id"],
        maker=signer(m["maker_role"], m["maker_name"]),
        checker=signer(m["checker_role"], m["checker_name"]),
        attachments=tuple(m["attachments"] or ()),
        pledge_seq=m["pledge_seq"],
        award_basis=parse_award_basis(m["award_basis"]),
    )


def signer(role: str | None, name: str | None) -> Signer | None:
    return Signer(role, name) if role is not None and name is not None else None


def _filters(
    *,
    kind: str | None,
    seq_max: int | None,
    occurred_from: date | None,
    occurred_to: date | None,
) -> tuple[str, dict[str, Any]]:
    where, params = "", dict[str, Any]()
    if kind is not None:
        where += " AND e.kind = :kind"
        params["kind"] = kind
    if seq_max is not None:
        where += " AND e.seq <= :seq_max"
        params["seq_max"] = seq_max
    if occurred_from is not None:
        where += " AND e.occurred_on >= :occurred_from"
        params["occurred_from"] = occurred_from
    if occurred_to is not None:
        where += " AND e.occurred_on <= :occurred_to"
        params["occurred_to"] = occurred_to
    return where, params


async def list_entries(
    conn: AsyncConnection,
    project_code: str,
    *,
    kind: str | None = None,
    after_seq: int = 0,
    limit: int = 50,
    seq_max: int | None = None,
    occurred_from: date | None = None,
    occurred_to: date | None = None,
) -> list[RecordedEntry]:
    """Entries in seq order after ``after_seq``. The caller checks the project exists."""
    where, params = _filters(kind=kind, seq_max=seq_max, occurred_from=occurred_from, occurred_to=occurred_to)
    limit = min(limit, BATCH_SIZE_MAX)
    params.update(code=project_code, after=after_seq, limit=limit)
    if kind is None and occurred_from is None and occurred_to is None:
        # Seqs are gapless: without a filter the page is exactly the range after+1 … after+limit,
        # which the planner reads as such however stale its statistics (after a large import it
        # could otherwise bitmap-scan and sort everything after ``after``).
        where += " AND e.seq <= :upto"
        params["upto"] = min(after_seq + limit, SEQ_MAX)  # a bigint: a last page asked for stays in range
    rows = await conn.execute(text(_READ_SQL.format(where="AND e.seq > :after" + where)), params)
    return [_entry_from_row(r) for r in rows]


async def count_entries(
    conn: AsyncConnection,
    project_code: str,
    *,
    kind: str | None = None,
    seq_max: int | None = None,
    occurred_from: date | None = None,
    occurred_to: date | None = None,
) -> int:
    """How many entries :func:`list_entries` would give with the same filters (all pages)."""
    where, params = _filters(kind=kind, seq_max=seq_max, occurred_from=occurred_from, occurred_to=occurred_to)
    params["code"] = project_code
    sql = "SELECT count(*) FROM entries e JOIN projects p ON p.id = e.project_id WHERE p.code = :code" + where
    return int((await conn.execute(text(sql), params)).scalar_one())


async def get_entry(conn: AsyncConnection, project_code: str, seq: int) -> RecordedEntry:
    rows = await conn.execute(
        text(_READ_SQL.format(where="AND e.seq = :seq")), {"code": project_code, "seq": seq, "limit": 1}
    )
    row = rows.one_or_none()
    if row is None:
        raise NotFound(f"项目 {project_code} 没有第 {seq} 号记录")
    return _entry_from_row(row)


async def seqs_by_receipt_no(
    conn: AsyncConnection, project_code: str, receipt_no: str, *, limit: int = 10
) -> list[int]:
    """The entries carrying a receipt number (收据号), for a resident who has the paper receipt but
    not its seq. A project holds a few thousand entries: no index is needed for this rare read."""
    rows = await conn.execute(
        text(
            "SELECT e.seq FROM entries e JOIN projects p ON p.id = e.project_id "
            "WHERE p.code = :code AND e.receipt_no = :receipt_no ORDER BY e.seq LIMIT :limit"
        ),
        {"code": project_code, "receipt_no": receipt_no, "limit": limit},
    )
    return [r.seq for r in rows]
