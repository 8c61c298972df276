"""Spreadsheet imports: one mark per imported file.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02

``imports`` records which file content (SHA-256) was imported into which project, and which
entries it became. ``imports_once`` lets the database refuse the same file a second time however
the requests race; the mark is written in the same transaction as the entries, so an import is
recorded with its mark or not at all. Append-only like the ledger it points into. No file name is
kept: names of files are often names of people.
"""

from collections.abc import Sequence

from migrations.helpers import grant_sequences, make_append_only, run_script

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    run_script(
        """
        CREATE TABLE imports (
            id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            community_id bigint NOT NULL,
            project_id   bigint NOT NULL,
            file_sha256  text NOT NULL,
            file_format  text NOT NULL,
            encoding     text,
            rows         integer NOT NULL,
            first_seq    bigint NOT NULL,
            last_seq     bigint NOT NULL,
            imported_by  text NOT NULL,
            imported_at  timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT imports_once UNIQUE (project_id, file_sha256),
            CONSTRAINT imports_project_fk FOREIGN KEY (project_id, community_id)
                REFERENCES projects (id, community_id),
            CONSTRAINT imports_first_fk FOREIGN KEY (project_id, first_seq) REFERENCES entries (project_id, seq),
            CONSTRAINT imports_last_fk FOREIGN KEY (project_id, last_seq) REFERENCES entries (project_id, seq),
            CONSTRAINT imports_sha256_format CHECK (file_sha256 ~ '^[0-9a-f]{64}$'),
            CONSTRAINT imports_format_known CHECK (file_format IN ('csv', 'xlsx')),
            CONSTRAINT imports_rows_range CHECK (rows BETWEEN 1 AND 10000),
            CONSTRAINT imports_seq_order CHECK (first_seq <= last_seq AND last_seq - first_seq + 1 = rows)
        );
        """
    )
    make_append_only("imports")
    grant_sequences()


def downgrade() -> None:
    raise NotImplementedError("the ledger schema is never dropped by a migration")
