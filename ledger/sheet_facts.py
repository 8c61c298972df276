"""A sheet's facts (公示表的数据), gathered from the ledger inside the publishing snapshot.

Read side only: every query runs on the caller's connection, in its one REPEATABLE READ
transaction, so the figures, the rows and the pinned root agree. reports/sheet_builder.py turns
these facts into the sheet's model (masking, labels, tables) and reports/render.py into bytes;
neither touches the database.

Which kinds have a detail table and how many rows a sheet prints are the sheet's choices: the
caller passes them (``listed_kinds``, ``rows_max``), and the gathering stops there.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from ledger import kinds, pg
from ledger.awards import AwardComputation, project_award
from ledger.decisions import Decision, list_decisions
from ledger.disclosures import SheetSnapshot
from ledger.entry_reads import RecordedEntry, get_entry, list_entries
from ledger.evaluations import Results, evaluation_results
from ledger.pledges import PAGE_SIZE_MAX as PLEDGE_PAGE
from ledger.pledges import PledgeLine, PledgeTotals, list_pledges, pledge_totals
from ledger.summary import Summary, project_summary
from ledger.witnesses import Cosignature, list_cosignatures

ENTRY_PAGE = 5000


@dataclass(frozen=True)
class KindTotal:
    rows: int
    signed_fen: int  # a reversal counts in its original's kind, negated


@dataclass(frozen=True)
class WitnessedSheet:
    sheet_number: int
    tree_size: int
    cosignatures: list[Cosignature]


@dataclass(frozen=True)
class SheetFacts:
    snap: SheetSnapshot
    # The period's entries of the listed kinds (a reversal by its original's kind), in seq order,
    # at most ``rows_max``; and the originals of the reversals among them (maybe before the period).
    entries: list[RecordedEntry]
    originals: dict[int, RecordedEntry]
    cut_seq: int | None  # the first entry left out at the row limit (None: none was)
    rows_max: int
    # Every figure comes from the ledger, never from the printed rows: a sheet cut at its row
    # limit still adds up every entry of its period.
    period_net: dict[str, int]  # the period's postings netted by account (debit-positive)
    kind_totals: dict[str, KindTotal]  # the period's rows and signed total per kind
    pledge_totals: PledgeTotals  # cumulative
    pledges: list[PledgeLine]  # pledges not reversed, cumulative, as many as the rows left allow
    summary: Summary  # cumulative, as of the snapshot
    decisions: list[Decision]
    grant_sources: list[tuple[str, str | None]]  # the period's (grantor, document_no), first recorded first
    award: AwardComputation | None
    evaluation: Results
    witnessed: list[WitnessedSheet]  # earlier sheets and their cosignatures by now

    def source_of(self, entry: RecordedEntry) -> RecordedEntry:
        """The entry a row describes: a reversal is printed with its original's kind and fields."""
        if entry.kind == kinds.REVERSAL and entry.reverses_seq is not None:
            return self.originals.get(entry.reverses_seq, entry)
        return entry


async def gather_sheet_facts(
    conn: AsyncConnection, snap: SheetSnapshot, *, listed_kinds: Sequence[str], rows_max: int
) -> SheetFacts:
    """Everything a sheet prints, read on ``conn`` (the publishing snapshot's connection)."""
    project = snap.project
    entries, originals, cut_seq = await _period_entries(conn, snap, set(listed_kinds), rows_max)
    totals = await pledge_totals(conn, project.id)
    raw = (await conn.get_raw_connection()).driver_connection
    assert raw is not None, "a connection in a transaction has its driver connection"
    return SheetFacts(
        snap=snap,
        entries=entries,
        originals=originals,
        cut_seq=cut_seq,
        rows_max=rows_max,
        period_net=await _period_net(conn, snap),
        kind_totals=await _kind_totals(conn, snap),
        pledge_totals=totals,
        pledges=await _pledges(conn, snap, room=rows_max - len(entries)),
        summary=await project_summary(conn, project),
        decisions=await list_decisions(conn, project.code),
        grant_sources=await _grant_sources(conn, snap),
        award=await project_award(raw, project.id),
        evaluation=await evaluation_results(conn, project.id, project.code),
        witnessed=await _witnessed(conn, snap),
    )


async def _period_entries(
    conn: AsyncConnection, snap: SheetSnapshot, listed: set[str], limit: int
) -> tuple[list[RecordedEntry], dict[int, RecordedEntry], int | None]:
    """The period's entries of listed kinds in seq order, at most ``limit``, the originals of the
    reversals among them, and the seq of the first entry left out (None: none was)."""
    kept: list[RecordedEntry] = []
    by_seq: dict[int, RecordedEntry] = {}
    after = 0
    while True:
        page = await list_entries(
            conn,
            snap.project.code,
            after_seq=after,
            limit=ENTRY_PAGE,
            seq_max=snap.tree_size,
            occurred_from=snap.period_start,
            occurred_to=snap.period_end,
        )
        by_seq.update((e.seq, e) for e in page)
        for e in page:
            if e.kind == kinds.REVERSAL and e.reverses_seq is not None and e.reverses_seq not in by_seq:
                by_seq[e.reverses_seq] = await get_entry(conn, snap.project.code, e.reverses_seq)
        for e in page:
            source = by_seq[e.reverses_seq] if e.kind == kinds.REVERSAL and e.reverses_seq else e
            if source.kind not in listed:
                continue  # pledges are summarised, not listed
            if len(kept) == limit:
                return kept, _originals(kept, by_seq), e.seq
            kept.append(e)
        if len(page) < ENTRY_PAGE:
            return kept, _originals(kept, by_seq), None
        after = page[-1].seq


def _originals(entries: list[RecordedEntry], by_seq: dict[int, RecordedEntry]) -> dict[int, RecordedEntry]:
    return {e.reverses_seq: by_seq[e.reverses_seq] for e in entries if e.reverses_seq is not None}


# A period's money by account, from the postings of its entries (reversals post the mirror image
# of their original, so they net out), as of the sheet's tree size.
_PERIOD_NET_SQL = text(
    """
    SELECT a.code, sum(CASE WHEN po.side = 'debit' THEN po.amount_fen ELSE -po.amount_fen END) AS net
    FROM entries e
    JOIN postings po ON po.project_id = e.project_id AND po.seq = e.seq
    JOIN accounts a ON a.id = po.account_id
    WHERE e.project_id = :pid AND e.seq <= :size AND e.occurred_on BETWEEN :start AND :end
    GROUP BY a.code
    """
)

# Each kind's count and signed total over the period: a reversal counts in its original's kind,
# negated, as it is printed.
_KIND_TOTALS_SQL = text(
    """
    SELECT coalesce(o.kind, e.kind) AS kind, count(*) AS rows,
           sum(CASE WHEN e.kind = 'reversal' THEN -e.amount_fen ELSE e.amount_fen END) AS fen
    FROM entries e
    LEFT JOIN entries o ON e.kind = 'reversal' AND o.project_id = e.project_id AND o.seq = e.reverses_seq
    WHERE e.project_id = :pid AND e.seq <= :size AND e.occurred_on BETWEEN :start AND :end
    GROUP BY 1
    """
)

# 拨款单位 and 文号 of the period's grants, each once, in the order they were first recorded.
_GRANT_SOURCES_SQL = text(
    """
    SELECT grantor, document_no FROM entries
    WHERE project_id = :pid AND kind = 'grant' AND seq <= :size AND occurred_on BETWEEN :start AND :end
    GROUP BY grantor, document_no ORDER BY min(seq)
    """
)


def _period_params(snap: SheetSnapshot) -> dict[str, Any]:
    return {"pid": snap.project.id, "size": snap.tree_size, "start": snap.period_start, "end": snap.period_end}


async def _period_net(conn: AsyncConnection, snap: SheetSnapshot) -> dict[str, int]:
    return {r.code: int(r.net) for r in await conn.execute(_PERIOD_NET_SQL, _period_params(snap))}


async def _kind_totals(conn: AsyncConnection, snap: SheetSnapshot) -> dict[str, KindTotal]:
    rows = await conn.execute(_KIND_TOTALS_SQL, _period_params(snap))
    return {r.kind: KindTotal(rows=int(r.rows), signed_fen=int(r.fen)) for r in rows}


async def _grant_sources(conn: AsyncConnection, snap: SheetSnapshot) -> list[tuple[str, str | None]]:
    return [(r.grantor, r.document_no) for r in await conn.execute(_GRANT_SOURCES_SQL, _period_params(snap))]


async def _pledges(conn: AsyncConnection, snap: SheetSnapshot, *, room: int) -> list[PledgeLine]:
    """Every pledge not reversed, as of the snapshot (the publishing transaction's): cumulative."""
    out: list[PledgeLine] = []
    after = 0
    while len(out) < room:
        page = await list_pledges(conn, snap.project.id, after_seq=after, limit=PLEDGE_PAGE)
        out.extend(p for p in page if not p.reversed)
        if len(page) < PLEDGE_PAGE:
            break
        after = page[-1].seq
    return out[: max(room, 0)]


async def _witnessed(conn: AsyncConnection, snap: SheetSnapshot) -> list[WitnessedSheet]:
    """Earlier sheets of the project and who had cosigned them by now (this snapshot)."""
    sheets = await (await pg.driver(conn)).fetch(
        "SELECT id, sheet_number, tree_size FROM disclosures WHERE project_id = $1 AND sheet_number < $2 "
        "ORDER BY sheet_number",
        snap.project.id,
        snap.sheet_number,
    )
    signed = await list_cosignatures(conn, [r["id"] for r in sheets])
    return [WitnessedSheet(r["sheet_number"], r["tree_size"], signed[r["id"]]) for r in sheets]
