"""Pledges kept (认筹兑现): a contribution may name the pledge it fulfils.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05

- ``entries.pledge_seq``: the pledge (an earlier 认筹 entry of the same project) a contribution
  fulfils; part of the hashed document. Only a contribution names one.
- ``pledge_totals``: per pledge, what was promised and what the unreversed contributions naming it
  have paid (uncapped: the excess over the promise is what a sheet calls 超额, counted as a plain
  contribution), and whether the pledge itself was reversed. Kept in the append's transaction, as
  ``contributor_totals`` is, so the summary never sums the ledger; ``ledger verify`` recomputes it.
"""

from collections.abc import Sequence

from migrations.helpers import grant, run_script

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    run_script(
        """
        ALTER TABLE entries ADD COLUMN pledge_seq bigint;
        ALTER TABLE entries ADD CONSTRAINT entries_pledge_fk FOREIGN KEY (project_id, pledge_seq)
            REFERENCES entries (project_id, seq);
        ALTER TABLE entries ADD CONSTRAINT entries_pledge_named_by_contribution
            CHECK (pledge_seq IS NULL OR (kind = 'contribution' AND pledge_seq < seq));
        CREATE INDEX entries_pledge_idx ON entries (project_id, pledge_seq) WHERE pledge_seq IS NOT NULL;

        CREATE TABLE pledge_totals (
            community_id   bigint NOT NULL,
            project_id     bigint NOT NULL,
            pledge_seq     bigint NOT NULL,
            contributor_id bigint NOT NULL REFERENCES contributors (id),
            pledged_fen    bigint NOT NULL,
            paid_fen       bigint NOT NULL DEFAULT 0,
            reversed       boolean NOT NULL DEFAULT false,
            PRIMARY KEY (project_id, pledge_seq),
            CONSTRAINT pledge_totals_entry_fk FOREIGN KEY (project_id, pledge_seq)
                REFERENCES entries (project_id, seq),
            CONSTRAINT pledge_totals_pledged_positive CHECK (pledged_fen > 0),
            CONSTRAINT pledge_totals_paid_nonnegative CHECK (paid_fen >= 0)
        );
        -- The open pledges of a project, for the page and the sheet.
        CREATE INDEX pledge_totals_open_idx ON pledge_totals (project_id, pledge_seq)
            WHERE NOT reversed AND paid_fen < pledged_fen;
        """
    )
    # Like contributor_totals: a running aggregate the append path moves; the entries stay the record.
    grant("pledge_totals", "SELECT, INSERT, UPDATE (paid_fen, reversed)")


def downgrade() -> None:
    raise NotImplementedError("the ledger schema is never dropped by a migration")
