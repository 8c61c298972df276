"""The chart of accounts of a project (ledger/kinds.py says which accounts each kind posts to).

Balances are debit-positive. Memorandum accounts (in-kind, pledges) never touch cash. Cash has a
floor of zero, enforced here and again by a CHECK constraint on ``balances``.
"""

from __future__ import annotations

from typing import NamedTuple

CASH = "cash"
CONTRIBUTIONS = "contributions"
GRANTS = "grants"
OTHER_INCOME = "other_income"
REFUNDS = "refunds"
IN_KIND_RECEIVED = "in_kind:received"
IN_KIND_CONTRIBUTED = "in_kind:contributed"
PLEDGES_RECEIVABLE = "pledges:receivable"
PLEDGES_PROMISED = "pledges:promised"
EXPENSES_PREFIX = "expenses:"

# code → is_memorandum
BASE_ACCOUNTS: dict[str, bool] = {
    CASH: False,
    CONTRIBUTIONS: False,
    GRANTS: False,
    OTHER_INCOME: False,
    REFUNDS: False,
    IN_KIND_RECEIVED: True,
    IN_KIND_CONTRIBUTED: True,
    PLEDGES_RECEIVABLE: True,
    PLEDGES_PROMISED: True,
}
FLOORS_FEN: dict[str, int] = {CASH: 0}


class Posting(NamedTuple):
    # A named tuple rather than a frozen dataclass: built twice per entry when verify rebuilds a
    # million documents, and a frozen dataclass's __init__ costs twice as much.
    account: str
    side: str  # "debit" | "credit"
    amount_fen: int

    @property
    def delta_fen(self) -> int:
        """Effect on the debit-positive balance."""
        return self.amount_fen if self.side == "debit" else -self.amount_fen

    def mirrored(self) -> Posting:
        return Posting(self.account, "credit" if self.side == "debit" else "debit", self.amount_fen)


def expense_account(category: str) -> str:
    return EXPENSES_PREFIX + category


def project_account_codes(categories: list[str]) -> dict[str, bool]:
    codes = dict(BASE_ACCOUNTS)
    codes.update({expense_account(c): False for c in categories})
    return codes


def parse_posting_lines(lines: list[str] | None) -> list[Posting]:
    """Postings as the read queries aggregate them: ``'<account> <side> <amount_fen>'``."""
    postings = []
    for line in lines or []:
        account, side, amount = line.split(" ")
        postings.append(Posting(account, side, int(amount)))
    return postings
