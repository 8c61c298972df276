"""The public write rate limit held in the database, and an index for the project version read.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02

- ``rate_limits``: one row per limited client (its address, under the deployment's namespace)
  with its GCRA "theoretical arrival time": every worker process of the service, and every
  replica of it, takes from the same budget with one atomic ``INSERT … ON CONFLICT DO UPDATE``
  (ledger/rate_limit.py). Rows are scratch state, not records: the application role may delete
  the expired ones.
- ``contributors_erased_idx``: the project version read (ledger/projects.py) asks for the latest
  erasure in a community on every public read; with the index that is one index probe instead of
  a scan of the community's contributors.
"""

from collections.abc import Sequence

from migrations.helpers import grant, run_script

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    run_script(
        """
        CREATE TABLE rate_limits (
            key  text PRIMARY KEY,
            tat  timestamptz NOT NULL,
            CONSTRAINT rate_limits_key_length CHECK (char_length(key) <= 300)
        );
        CREATE INDEX rate_limits_tat_idx ON rate_limits (tat);
        CREATE INDEX contributors_erased_idx ON contributors (community_id, erased_at) WHERE erased_at IS NOT NULL;
        """
    )
    grant("rate_limits", "SELECT, INSERT, UPDATE (tat), DELETE")


def downgrade() -> None:
    raise NotImplementedError("the ledger schema is never dropped by a migration")
