"""Pledges kept (认筹兑现): what each pledge promised and what the contributions naming it paid.

A contribution may name the pledge it fulfils (``pledge_seq``); the pledge counts as paid up to
its promise, and whatever a contribution brings beyond that is a plain contribution (the write
says so in a warning rather than refusing: the money was received and must be recorded). A
reversed contribution no longer fulfils; a reversed pledge promises nothing, so what was paid
against it is plain contribution too. Contributions that name no pledge fulfil none: which
promise a payment keeps is the treasurer's statement, recorded in the hashed entry, never a guess.

``pledge_totals`` keeps, per pledge, the promise, the uncapped sum paid against it and whether it
was reversed, moved under the project's lock in the append's transaction (ledger/entries.py);
``ledger verify`` recomputes it from the entries.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import asyncpg
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from ledger import pg
from ledger.errors import EntryWarning, ValidationFailed
from ledger.money import format_fen_grouped

PLEDGE_OVER_FULFILLED = "pledge_over_fulfilled"
PAGE_SIZE_MAX = 500


@dataclass
class Kept:
    """A pledge's promise and what the unreversed contributions naming it paid (uncapped)."""

    pledged_fen: int
    paid_fen: int
    reversed: bool

    @property
    def fulfilled_fen(self) -> int:
        """实缴: what counts against the promise (never more than it; nothing once reversed)."""
        return 0 if self.reversed else min(self.paid_fen, self.pledged_fen)

    @property
    def outstanding_fen(self) -> int:
        """未缴: what is still promised."""
        return 0 if self.reversed else self.pledged_fen - self.fulfilled_fen

    @property
    def excess_fen(self) -> int:
        """Paid beyond the promise (or against a reversed pledge): counted as plain contribution."""
        return self.paid_fen if self.reversed else max(self.paid_fen - self.pledged_fen, 0)

    @property
    def status(self) -> str:
        if self.reversed:
            return "reversed"
        return "open" if self.outstanding_fen > 0 else "fulfilled"


@dataclass
class PledgeState(Kept):
    seq: int
    contributor_id: int
    anonymous: bool


@dataclass
class PledgeBook:
    """The pledges one append transaction touches: read under the project's lock, moved in memory
    draft by draft (a batch may pledge and pay in one go), written back with the entries."""

    pledges: dict[int, PledgeState] = field(default_factory=dict)
    changed: set[int] = field(default_factory=set)

    async def load(self, conn: asyncpg.Connection, project_id: int, seqs: set[int]) -> None:
        wanted = sorted(s for s in seqs if s not in self.pledges)
        if not wanted:
            return
        for r in await pg.fetch(conn, _LOAD, pid=project_id, seqs=wanted):
            self.pledges[r["pledge_seq"]] = PledgeState(
                pledged_fen=r["pledged_fen"],
                paid_fen=r["paid_fen"],
                reversed=r["reversed"],
                seq=r["pledge_seq"],
                contributor_id=r["contributor_id"],
                anonymous=r["anonymous"],
            )

    def open(self, seq: int, contributor_id: int, anonymous: bool, amount_fen: int) -> None:
        """A new pledge entry."""
        self.pledges[seq] = PledgeState(amount_fen, 0, False, seq, contributor_id, anonymous)
        self.changed.add(seq)

    def fulfil(self, pledge_seq: int, contributor_id: int, anonymous: bool, amount_fen: int) -> list[EntryWarning]:
        """A contribution naming ``pledge_seq``. Errors: ValidationFailed (no such pledge, reversed,
        another person's, or one whose anonymity differs: naming it would link the two)."""
        pledge = self.pledges.get(pledge_seq)
        if pledge is None:
            raise ValidationFailed.on("pledge", f"第 {pledge_seq} 号记录不是本项目的认筹")
        if pledge.reversed:
            raise ValidationFailed.on("pledge", f"第 {pledge_seq} 号认筹已被冲正，不能再兑现")
        if pledge.contributor_id != contributor_id:
            raise ValidationFailed.on("pledge", f"第 {pledge_seq} 号认筹不是这位出资人的")
        if pledge.anonymous != anonymous:
            raise ValidationFailed.on(
                "pledge", "匿名出资只能兑现匿名认筹，记名出资只能兑现记名认筹（否则公开记录会把两者联系起来）"
            )
        outstanding = pledge.outstanding_fen
        pledge.paid_fen += amount_fen
        self.changed.add(pledge_seq)
        if amount_fen <= outstanding:
            return []
        excess = amount_fen - outstanding
        if outstanding == 0:
            message = f"第 {pledge_seq} 号认筹已全部兑现，本笔 {format_fen_grouped(amount_fen)} 元全部按普通出资计"
        else:
            message = (
                f"本笔 {format_fen_grouped(amount_fen)} 元超出第 {pledge_seq} 号认筹尚未兑现的 "
                f"{format_fen_grouped(outstanding)} 元，超出的 {format_fen_grouped(excess)} 元按普通出资计"
            )
        return [EntryWarning(PLEDGE_OVER_FULFILLED, message)]

    def reverse(self, original_kind: str, original_seq: int, pledge_seq: int | None, amount_fen: int) -> None:
        """A reversal: of a pledge (it promises nothing any more) or of a contribution that named
        one (it no longer fulfils)."""
        if original_kind == "pledge":
            pledge = self.pledges.get(original_seq)
            assert pledge is not None, "a pledge being reversed was loaded"
            pledge.reversed = True
            self.changed.add(original_seq)
        elif pledge_seq is not None:
            pledge = self.pledges.get(pledge_seq)
            assert pledge is not None, "the pledge a reversed contribution named was loaded"
            pledge.paid_fen -= amount_fen
            assert pledge.paid_fen >= 0, "a pledge's payments are the unreversed contributions naming it"
            self.changed.add(pledge_seq)

    def rows(self) -> list[PledgeState]:
        return [self.pledges[s] for s in sorted(self.changed)]


_LOAD = pg.Query(
    """
    SELECT t.pledge_seq, t.contributor_id, t.pledged_fen, t.paid_fen, t.reversed, e.anonymous
    FROM pledge_totals t
    JOIN entries e ON e.project_id = t.project_id AND e.seq = t.pledge_seq
    WHERE t.project_id = :pid AND t.pledge_seq = ANY(CAST(:seqs AS bigint[]))
    """
)


# -- the read side ---------------------------------------------------------------------------


@dataclass
class PledgeLine(Kept):
    """One pledge as the summary, the sheet and the pages show it (contributor not yet masked)."""

    seq: int
    occurred_on: date
    contributor_public_id: uuid.UUID  # the entry's: an anonymous pledge has its own
    contributor_real_id: uuid.UUID
    contributor_name: str | None
    contributor_household: str | None
    contributor_type: str
    anonymous: bool
    erased: bool
    fulfilled_by: tuple[int, ...]  # seqs of the unreversed contributions naming it


@dataclass(frozen=True)
class PledgeTotals:
    """认筹/实缴 over the whole project (reversed pledges left out)."""

    pledged_fen: int
    fulfilled_fen: int
    outstanding_fen: int
    excess_fen: int
    count: int
    open_count: int


_TOTALS_SQL = text(
    """
    SELECT coalesce(sum(pledged_fen) FILTER (WHERE NOT reversed), 0) AS pledged,
           coalesce(sum(least(paid_fen, pledged_fen)) FILTER (WHERE NOT reversed), 0) AS fulfilled,
           coalesce(sum(CASE WHEN reversed THEN paid_fen ELSE greatest(paid_fen - pledged_fen, 0) END), 0)
               AS excess,
           count(*) FILTER (WHERE NOT reversed) AS pledges,
           count(*) FILTER (WHERE NOT reversed AND paid_fen < pledged_fen) AS open
    FROM pledge_totals WHERE project_id = :pid
    """
)


async def pledge_totals(conn: AsyncConnection, project_id: int) -> PledgeTotals:
    row = (await conn.execute(_TOTALS_SQL, {"pid": project_id})).one()
    return PledgeTotals(
        pledged_fen=int(row.pledged),
        fulfilled_fen=int(row.fulfilled),
        outstanding_fen=int(row.pledged) - int(row.fulfilled),
        excess_fen=int(row.excess),
        count=int(row.pledges),
        open_count=int(row.open),
    )


_LIST_SQL = """
    SELECT t.pledge_seq, t.pledged_fen, t.paid_fen, t.reversed, e.occurred_on, e.anonymous,
           coalesce(e.anonymous_id, c.public_id) AS entry_public_id, c.public_id, c.name, c.household, c.type, c.erased_at IS NOT NULL AS erased,
           ARRAY(SELECT f.seq FROM entries f
                 WHERE f.project_id = t.project_id AND f.pledge_seq = t.pledge_seq
                   AND NOT EXISTS (SELECT 1 FROM entries r WHERE r.project_id = f.project_id AND r.reverses_seq = f.seq)
                 ORDER BY f.seq) AS fulfilled_by
    FROM pledge_totals t
    JOIN entries e ON e.project_id = t.project_id AND e.seq = t.pledge_seq
    JOIN contributors c ON c.id = t.contributor_id
    WHERE t.project_id = :pid AND t.pledge_seq > :after {where}
    ORDER BY t.pledge_seq
    LIMIT :limit
"""


async def list_pledges(
    conn: AsyncConnection, project_id: int, *, status: str | None = None, after_seq: int = 0, limit: int = 50
) -> list[PledgeLine]:
    """Pledges in seq order; ``status`` ``open`` (still promised), ``fulfilled`` or ``reversed``."""
    where = {
        None: "",
        "open": "AND NOT t.reversed AND t.paid_fen < t.pledged_fen",
        "fulfilled": "AND NOT t.reversed AND t.paid_fen >= t.pledged_fen",
        "reversed": "AND t.reversed",
    }[status]
    params: dict[str, Any] = {"pid": project_id, "after": after_seq, "limit": min(limit, PAGE_SIZE_MAX)}
    rows = await conn.execute(text(_LIST_SQL.format(where=where)), params)
    return [
        PledgeLine(
            seq=r.pledge_seq,
            occurred_on=r.occurred_on,
            pledged_fen=r.pledged_fen,
            paid_fen=r.paid_fen,
            reversed=r.reversed,
            contributor_public_id=r.entry_public_id,
            contributor_real_id=r.public_id,
            contributor_name=r.name,
            contributor_household=r.household,
            contributor_type=r.type,
            anonymous=r.anonymous,
            erased=r.erased,
            fulfilled_by=tuple(r.fulfilled_by or ()),
        )
        for r in rows
    ]


async def get_pledge(conn: AsyncConnection, project_id: int, seq: int) -> PledgeLine | None:
    found = await list_pledges(conn, project_id, after_seq=seq - 1, limit=1)
    return found[0] if found and found[0].seq == seq else None


# Pledge totals recomputed from the entries against the stored ones (``ledger verify``).
TOTALS_MISMATCH_SQL = text(
    """
    WITH pledges AS (
        SELECT e.seq, e.contributor_id, e.amount_fen,
               EXISTS (SELECT 1 FROM entries r WHERE r.project_id = e.project_id AND r.reverses_seq = e.seq)
                   AS reversed
        FROM entries e WHERE e.project_id = :pid AND e.kind = 'pledge'
    ), paid AS (
        SELECT f.pledge_seq, sum(f.amount_fen) AS paid
        FROM entries f
        WHERE f.project_id = :pid AND f.pledge_seq IS NOT NULL
          AND NOT EXISTS (SELECT 1 FROM entries r WHERE r.project_id = f.project_id AND r.reverses_seq = f.seq)
        GROUP BY f.pledge_seq
    )
    SELECT EXISTS (
        SELECT 1
        FROM (SELECT p.seq, p.contributor_id, p.amount_fen, coalesce(x.paid, 0) AS paid, p.reversed
              FROM pledges p LEFT JOIN paid x ON x.pledge_seq = p.seq) expected
        FULL JOIN (SELECT * FROM pledge_totals WHERE project_id = :pid) t ON t.pledge_seq = expected.seq
        WHERE (expected.contributor_id, expected.amount_fen, expected.paid, expected.reversed)
              IS DISTINCT FROM (t.contributor_id, t.pledged_fen, t.paid_fen, t.reversed)
    )
    """
)
