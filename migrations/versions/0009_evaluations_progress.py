"""共评 (evaluation codes, online scores, paper tallies) and 进展公开 (progress notes).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-08

- ``evaluation_batches``: a batch of codes issued by a treasurer. The codes themselves are never
  stored: they are derived from a random seed, and the seed is kept only wrapped (XOR) under a key
  that the issuing token's secret derives — the database holds that token's hash, never the
  secret, so nobody reading the database (a dump, a backup) can recover a code, while the issuing
  treasurer can reprint the slips and an idempotent retry returns the same codes.
- ``evaluation_codes``: the SHA-256 of each code (one per household).
- ``evaluations``: one score per code; ``evaluations_code_once`` lets the database refuse a
  second use of a code however two submissions race. The comment is kept as written (the
  community's treasurer and auditor read it); public outputs mask numbers in it.
- ``evaluation_tallies``: paper questionnaires and meeting tallies, each with the SHA-256 of the
  tally sheet (an uploaded attachment).
- ``progress_notes``: 进展公开, each with its hashed document and the digests of its photos.

All append-only, like the ledger.
"""

from collections.abc import Sequence

from migrations.helpers import grant_sequences, make_append_only, run_script

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    run_script(
        """
        CREATE TABLE evaluation_batches (
            id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            community_id  bigint NOT NULL,
            project_id    bigint NOT NULL,
            batch_no      integer NOT NULL,
            count         integer NOT NULL,
            issued_by     text NOT NULL,
            seed_nonce    bytea NOT NULL,
            seed_wrapped  bytea NOT NULL,
            issued_at     timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT evaluation_batches_project_fk FOREIGN KEY (project_id, community_id)
                REFERENCES projects (id, community_id),
            CONSTRAINT evaluation_batches_no_unique UNIQUE (project_id, batch_no),
            CONSTRAINT evaluation_batches_no_positive CHECK (batch_no > 0),
            CONSTRAINT evaluation_batches_count_range CHECK (count BETWEEN 1 AND 5000),
            CONSTRAINT evaluation_batches_nonce_length CHECK (octet_length(seed_nonce) = 16),
            CONSTRAINT evaluation_batches_seed_length CHECK (octet_length(seed_wrapped) = 32)
        );

        CREATE TABLE evaluation_codes (
            code_sha256   bytea PRIMARY KEY,
            community_id  bigint NOT NULL,
            project_id    bigint NOT NULL,
            batch_id      bigint NOT NULL REFERENCES evaluation_batches (id),
            position      integer NOT NULL,
            CONSTRAINT evaluation_codes_hash_length CHECK (octet_length(code_sha256) = 32),
            CONSTRAINT evaluation_codes_position_unique UNIQUE (batch_id, position),
            CONSTRAINT evaluation_codes_position_positive CHECK (position > 0)
        );
        CREATE INDEX evaluation_codes_project_idx ON evaluation_codes (project_id);

        CREATE TABLE evaluations (
            id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            community_id  bigint NOT NULL,
            project_id    bigint NOT NULL,
            code_sha256   bytea NOT NULL REFERENCES evaluation_codes (code_sha256),
            score         smallint NOT NULL,
            comment       text,
            created_at    timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT evaluations_project_fk FOREIGN KEY (project_id, community_id)
                REFERENCES projects (id, community_id),
            CONSTRAINT evaluations_code_once UNIQUE (code_sha256),
            CONSTRAINT evaluations_score_range CHECK (score BETWEEN 1 AND 5),
            CONSTRAINT evaluations_comment_length CHECK (char_length(comment) BETWEEN 1 AND 500)
        );
        CREATE INDEX evaluations_project_idx ON evaluations (project_id, id);

        CREATE TABLE evaluation_tallies (
            id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            community_id  bigint NOT NULL,
            project_id    bigint NOT NULL,
            held_on       date NOT NULL,
            method        text NOT NULL,
            count_1       integer NOT NULL,
            count_2       integer NOT NULL,
            count_3       integer NOT NULL,
            count_4       integer NOT NULL,
            count_5       integer NOT NULL,
            sheet_sha256  text NOT NULL REFERENCES attachments (sha256),
            recorded_by   text NOT NULL,
            recorded_at   timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT evaluation_tallies_project_fk FOREIGN KEY (project_id, community_id)
                REFERENCES projects (id, community_id),
            CONSTRAINT evaluation_tallies_method_known CHECK (method IN ('questionnaire', 'meeting')),
            CONSTRAINT evaluation_tallies_counts_range CHECK (
                count_1 BETWEEN 0 AND 100000 AND count_2 BETWEEN 0 AND 100000 AND count_3 BETWEEN 0 AND 100000
                AND count_4 BETWEEN 0 AND 100000 AND count_5 BETWEEN 0 AND 100000),
            CONSTRAINT evaluation_tallies_not_empty CHECK (count_1 + count_2 + count_3 + count_4 + count_5 > 0)
        );
        CREATE INDEX evaluation_tallies_project_idx ON evaluation_tallies (project_id, id);

        CREATE TABLE progress_notes (
            id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            community_id    bigint NOT NULL,
            project_id      bigint NOT NULL,
            happened_on     date NOT NULL,
            text            text NOT NULL,
            attachments     text[] NOT NULL DEFAULT '{}',
            document        text NOT NULL,
            document_sha256 text NOT NULL,
            posted_by       text NOT NULL,
            posted_at       timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT progress_notes_project_fk FOREIGN KEY (project_id, community_id)
                REFERENCES projects (id, community_id),
            CONSTRAINT progress_notes_text_length CHECK (char_length(text) BETWEEN 1 AND 2000),
            CONSTRAINT progress_notes_attachments_count CHECK (cardinality(attachments) <= 10),
            CONSTRAINT progress_notes_document_sha256_format CHECK (document_sha256 ~ '^[0-9a-f]{64}$')
        );
        CREATE INDEX progress_notes_project_idx ON progress_notes (project_id, id);
        -- Whether an attachment is public: a progress note's photos are.
        CREATE INDEX progress_notes_attachments_idx ON progress_notes USING gin (attachments);
        """
    )
    for table in ("evaluation_batches", "evaluation_codes", "evaluations", "evaluation_tallies", "progress_notes"):
        make_append_only(table)
    grant_sequences()


def downgrade() -> None:
    raise NotImplementedError("the ledger schema is never dropped by a migration")
