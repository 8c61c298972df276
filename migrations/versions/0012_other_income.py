"""其他收入 (other_income): bank interest on the project account, sale of leftover materials.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02

- ``entries.kind`` may be ``other_income`` (ledger/kinds.py); such an entry names its payer
  (``payer``, 付款方: the bank, the buyer of the materials) and no contributor. The kind list is
  written out here, as it stood at this revision: a migration never imports application code.
- Every project gets the ``other_income`` account (credit side; cash is the debit side) and its
  zero balance, as new projects get it from ledger/accounts.py BASE_ACCOUNTS.
"""

from collections.abc import Sequence

from migrations.helpers import run_script

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ENTRY_KINDS = ("contribution", "grant", "expenditure", "refund", "other_income", "in_kind", "pledge", "reversal")


def upgrade() -> None:
    kinds = "(" + ", ".join(f"'{k}'" for k in ENTRY_KINDS) + ")"
    run_script(
        f"""
        ALTER TABLE entries ADD COLUMN payer text;
        ALTER TABLE entries DROP CONSTRAINT entries_kind_known;
        ALTER TABLE entries ADD CONSTRAINT entries_kind_known CHECK (kind IN {kinds});
        ALTER TABLE entries ADD CONSTRAINT entries_payer_length CHECK (coalesce(char_length(payer), 0) <= 200);
        ALTER TABLE entries ADD CONSTRAINT entries_other_income_fields
            CHECK ((kind = 'other_income') = (payer IS NOT NULL));

        INSERT INTO accounts (community_id, project_id, code, is_memorandum)
        SELECT p.community_id, p.id, 'other_income', false
        FROM projects p
        WHERE NOT EXISTS (SELECT 1 FROM accounts a WHERE a.project_id = p.id AND a.code = 'other_income');

        INSERT INTO balances (account_id, community_id, project_id, balance_fen, floor_fen)
        SELECT a.id, a.community_id, a.project_id, 0, NULL
        FROM accounts a
        WHERE a.code = 'other_income' AND NOT EXISTS (SELECT 1 FROM balances b WHERE b.account_id = a.id);
        """
    )


def downgrade() -> None:
    raise NotImplementedError("the ledger schema is never dropped by a migration")
