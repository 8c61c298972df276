"""Disclosure sheets (公示表), objections (异议) and their answers: all append-only.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from collections.abc import Sequence

from migrations.helpers import grant_sequences, make_append_only, run_script

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    run_script(
        """
        CREATE TABLE disclosures (
            id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            community_id  bigint NOT NULL,
            project_id    bigint NOT NULL,
            sheet_number  integer NOT NULL,
            title         text NOT NULL,
            period_start  date NOT NULL,
            period_end    date NOT NULL,
            notice_days   integer NOT NULL,
            notice_start  date NOT NULL,
            notice_end    date NOT NULL,
            tree_size     bigint NOT NULL,
            root_hash     bytea NOT NULL,
            previous_id   bigint REFERENCES disclosures (id),
            pdf           bytea NOT NULL,
            pdf_sha256    text NOT NULL,
            published_at  timestamptz NOT NULL DEFAULT now(),
            published_by  text NOT NULL,
            CONSTRAINT disclosures_project_fk FOREIGN KEY (project_id, community_id)
                REFERENCES projects (id, community_id),
            CONSTRAINT disclosures_sheet_number_unique UNIQUE (project_id, sheet_number),
            CONSTRAINT disclosures_sheet_number_positive CHECK (sheet_number > 0),
            CONSTRAINT disclosures_period_order CHECK (period_start <= period_end),
            CONSTRAINT disclosures_notice_order CHECK (notice_start <= notice_end),
            CONSTRAINT disclosures_notice_days_range CHECK (notice_days BETWEEN 1 AND 90),
            CONSTRAINT disclosures_tree_size_nonnegative CHECK (tree_size >= 0),
            CONSTRAINT disclosures_root_length CHECK (octet_length(root_hash) = 32),
            CONSTRAINT disclosures_pdf_sha256_format CHECK (pdf_sha256 ~ '^[0-9a-f]{64}$'),
            CONSTRAINT disclosures_title_length CHECK (char_length(title) BETWEEN 1 AND 200)
        );
        CREATE INDEX disclosures_project_idx ON disclosures (project_id, sheet_number);

        CREATE TABLE objections (
            id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            community_id  bigint NOT NULL,
            disclosure_id bigint NOT NULL REFERENCES disclosures (id),
            message       text NOT NULL,
            contact       text,
            created_at    timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT objections_message_length CHECK (char_length(message) BETWEEN 1 AND 2000),
            CONSTRAINT objections_contact_length CHECK (char_length(contact) <= 200)
        );
        CREATE INDEX objections_disclosure_idx ON objections (disclosure_id, id);

        CREATE TABLE objection_responses (
            id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            community_id  bigint NOT NULL,
            objection_id  bigint NOT NULL REFERENCES objections (id),
            message       text NOT NULL,
            responded_by  text NOT NULL,
            created_at    timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT objection_responses_message_length CHECK (char_length(message) BETWEEN 1 AND 2000)
        );
        CREATE INDEX objection_responses_objection_idx ON objection_responses (objection_id, id);
        """
    )
    for table in ("disclosures", "objections", "objection_responses"):
        make_append_only(table)
    grant_sequences()


def downgrade() -> None:
    raise NotImplementedError("published disclosures are never dropped by a migration")
