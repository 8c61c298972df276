"""Maker-checker (vouchers) and attachments (invoices, receipts, 批文, photos).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01

- ``projects.countersign_over_fen``: spending (expenditures, refunds) above it needs a voucher
  approved by a second person; NULL means no countersign.
- ``entries``: who made and who checked a countersigned entry (role and display name) and the
  SHA-256 digests of its attachments, all part of the hashed document.
- ``vouchers`` and ``voucher_events``: a submitted voucher and its one decision (approve or
  reject); both append-only, and ``voucher_events_once`` lets the database refuse a second
  decision however the requests race.
- ``attachments``: file contents stored once by SHA-256 (append-only); ``attachment_uploads``
  says which community uploaded which digest (who may read a file that is not public).
"""

from collections.abc import Sequence

from migrations.helpers import grant_sequences, make_append_only, run_script

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    run_script(
        """
        ALTER TABLE projects ADD COLUMN countersign_over_fen bigint;
        ALTER TABLE projects ADD CONSTRAINT projects_countersign_over_range
            CHECK (countersign_over_fen BETWEEN 0 AND 10000000000);

        ALTER TABLE entries ADD COLUMN maker_role text;
        ALTER TABLE entries ADD COLUMN maker_name text;
        ALTER TABLE entries ADD COLUMN checker_role text;
        ALTER TABLE entries ADD COLUMN checker_name text;
        ALTER TABLE entries ADD COLUMN attachments text[];
        ALTER TABLE entries ADD CONSTRAINT entries_signers_paired
            CHECK ((maker_name IS NULL) = (checker_name IS NULL)
                   AND (maker_name IS NULL) = (maker_role IS NULL)
                   AND (checker_name IS NULL) = (checker_role IS NULL));
        ALTER TABLE entries ADD CONSTRAINT entries_signer_lengths
            CHECK (coalesce(char_length(maker_name), 0) <= 100 AND coalesce(char_length(checker_name), 0) <= 100);
        ALTER TABLE entries ADD CONSTRAINT entries_attachments_count
            CHECK (coalesce(cardinality(attachments), 0) <= 20);
        CREATE INDEX entries_attachments_idx ON entries USING gin (attachments) WHERE attachments IS NOT NULL;

        CREATE TABLE attachments (
            sha256      text PRIMARY KEY,
            media_type  text NOT NULL,
            size        integer NOT NULL,
            content     bytea NOT NULL,
            created_at  timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT attachments_sha256_format CHECK (sha256 ~ '^[0-9a-f]{64}$'),
            CONSTRAINT attachments_media_type_known
                CHECK (media_type IN ('image/jpeg', 'image/png', 'application/pdf')),
            CONSTRAINT attachments_size_range CHECK (size BETWEEN 1 AND 10485760),
            CONSTRAINT attachments_size_matches CHECK (octet_length(content) = size)
        );

        CREATE TABLE attachment_uploads (
            community_id bigint NOT NULL REFERENCES communities (id),
            sha256       text NOT NULL REFERENCES attachments (sha256),
            uploaded_by  text NOT NULL,
            uploaded_at  timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (community_id, sha256)
        );

        CREATE TABLE vouchers (
            id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            community_id   bigint NOT NULL,
            project_id     bigint NOT NULL,
            kind           text NOT NULL,
            amount_fen     bigint NOT NULL,
            body           jsonb NOT NULL,
            attachments    text[] NOT NULL DEFAULT '{}',
            document       text NOT NULL,
            document_sha256 text NOT NULL,
            submitted_by   text NOT NULL,
            submitter_name text NOT NULL,
            submitter_role text NOT NULL,
            submitted_at   timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT vouchers_project_fk FOREIGN KEY (project_id, community_id)
                REFERENCES projects (id, community_id),
            CONSTRAINT vouchers_kind_known CHECK (kind IN ('expenditure', 'refund')),
            CONSTRAINT vouchers_amount_range CHECK (amount_fen BETWEEN 1 AND 10000000000),
            CONSTRAINT vouchers_attachments_count CHECK (cardinality(attachments) <= 20),
            CONSTRAINT vouchers_document_sha256_format CHECK (document_sha256 ~ '^[0-9a-f]{64}$')
        );
        CREATE INDEX vouchers_project_idx ON vouchers (project_id, id);

        CREATE TABLE voucher_events (
            id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            community_id  bigint NOT NULL,
            voucher_id    bigint NOT NULL REFERENCES vouchers (id),
            event         text NOT NULL,
            actor         text NOT NULL,
            actor_name    text NOT NULL,
            actor_role    text NOT NULL,
            reason        text,
            project_id    bigint,
            entry_seq     bigint,
            created_at    timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT voucher_events_once UNIQUE (voucher_id),
            CONSTRAINT voucher_events_event_known CHECK (event IN ('approved', 'rejected')),
            CONSTRAINT voucher_events_entry_fk FOREIGN KEY (project_id, entry_seq)
                REFERENCES entries (project_id, seq),
            CONSTRAINT voucher_events_shape CHECK (
                (event = 'approved' AND entry_seq IS NOT NULL AND reason IS NULL)
                OR (event = 'rejected' AND entry_seq IS NULL AND char_length(reason) BETWEEN 1 AND 500)
            )
        );
        """
    )
    for table in ("attachments", "attachment_uploads", "vouchers", "voucher_events"):
        make_append_only(table)
    grant_sequences()


def downgrade() -> None:
    raise NotImplementedError("the ledger schema is never dropped by a migration")
