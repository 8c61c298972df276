"""A project's financial summary: a few small reads of balances, never a SUM over entries."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from ledger import accounts as acc
from ledger import kinds
from ledger.participation import participation_rate
from ledger.projects import Project


@dataclass(frozen=True)
class CategoryLine:
    category: str
    label: str
    source: str
    budget_fen: int
    spent_fen: int


@dataclass(frozen=True)
class Summary:
    budget_fen: int
    contributed_fen: int
    granted_fen: int
    other_income_fen: int  # 其他收入: bank interest, sale of leftover materials
    spent_fen: int
    refunded_fen: int
    balance_fen: int
    in_kind_value_fen: int
    pledged_fen: int
    pledge_paid_fen: int  # 实缴: paid against pledges, each capped at its promise
    pledges_open: int  # pledges not yet paid in full
    contributors: int
    households_in_scope: int
    by_category: list[CategoryLine]
    ledger_size: int
    root_hash: bytes

    @property
    def participation(self) -> Fraction | None:
        """参与率 of this summary (ledger/participation.py: the one definition)."""
        return participation_rate(self.contributors, self.households_in_scope)


_SUMMARY_SQL = text(
    """
    SELECT
      (SELECT json_object_agg(a.code, b.balance_fen)
         FROM accounts a JOIN balances b ON b.account_id = a.id WHERE a.project_id = :pid) AS balances,
      (SELECT count(*) FROM contributor_totals
        WHERE project_id = :pid AND paid_fen - refunded_fen > 0) AS contributors,
      -- Only contributions that name their pledge fulfil it (ledger/pledges.py).
      (SELECT coalesce(sum(least(paid_fen, pledged_fen)), 0)
         FROM pledge_totals WHERE project_id = :pid AND NOT reversed) AS pledge_paid,
      (SELECT count(*) FROM pledge_totals
        WHERE project_id = :pid AND NOT reversed AND paid_fen < pledged_fen) AS pledges_open,
      h.size, h.root_hash
    FROM project_heads h WHERE h.project_id = :pid
    """
)


async def project_summary(conn: AsyncConnection, project: Project) -> Summary:
    row = (await conn.execute(_SUMMARY_SQL, {"pid": project.id})).one()
    bal: dict[str, int] = {k: int(v) for k, v in (row.balances or {}).items()}
    by_category = [
        CategoryLine(
            category=line.category,
            label=line.label,
            source=line.source,
            budget_fen=line.amount_fen,
            spent_fen=bal.get(acc.expense_account(line.category), 0),
        )
        for line in project.budget_lines
    ]
    summary = Summary(
        budget_fen=sum(line.amount_fen for line in project.budget_lines),
        contributed_fen=kinds.income_fen(bal, "contribution"),
        granted_fen=kinds.income_fen(bal, "grant"),
        other_income_fen=kinds.income_fen(bal, "other_income"),
        spent_fen=sum(v for k, v in bal.items() if k.startswith(acc.EXPENSES_PREFIX)),
        refunded_fen=bal.get(acc.REFUNDS, 0),
        balance_fen=bal.get(acc.CASH, 0),
        in_kind_value_fen=bal.get(acc.IN_KIND_RECEIVED, 0),
        pledged_fen=bal.get(acc.PLEDGES_RECEIVABLE, 0),
        pledge_paid_fen=int(row.pledge_paid),
        pledges_open=int(row.pledges_open),
        contributors=int(row.contributors),
        households_in_scope=project.households_in_scope,
        by_category=by_category,
        ledger_size=row.size,
        root_hash=bytes(row.root_hash),
    )
    assert summary.pledge_paid_fen <= summary.pledged_fen, "a pledge is never fulfilled beyond its promise"
    # The cash identity, from every kind's cash effect (ledger/kinds.py): a kind that moves cash
    # and is left out of the summary's figures would break it here, not silently on a sheet.
    assert (
        summary.balance_fen
        == kinds.cash_from_balances(bal)
        == (
            summary.contributed_fen
            + summary.granted_fen
            + summary.other_income_fen
            - summary.spent_fen
            - summary.refunded_fen
        )
    ), "cash equals income less spending and refunds"
    return summary
