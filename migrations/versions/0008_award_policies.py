"""The 以奖代补 award: policies, the policy a project follows, grants that cite the computation.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06

- ``award_policies``: append-only. A policy is a (code, version); changing one publishes the next
  version of the code, so every award computed under an earlier version stays explainable.
  Rates are exact decimals (numeric), never floats.
- ``project_award_policies``: append-only history of the policy code a project follows; the
  latest row applies, and the computation uses the newest version of that code.
- ``entries.award_basis``: on a grant that cites the award, the computation's inputs and result
  as canonical JSON (RFC 8785), part of the hashed document.
"""

from collections.abc import Sequence

from migrations.helpers import grant_sequences, make_append_only, run_script

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    run_script(
        """
        CREATE TABLE award_policies (
            id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            code              text NOT NULL,
            version           integer NOT NULL,
            name              text NOT NULL,
            issuer            text NOT NULL,
            document_no       text,
            rate              numeric(8, 4) NOT NULL,
            cap_fen           bigint,
            min_participation numeric(5, 4) NOT NULL DEFAULT 0,
            min_satisfaction  numeric(5, 4) NOT NULL DEFAULT 0,
            created_by        text NOT NULL,
            created_at        timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT award_policies_version_unique UNIQUE (code, version),
            CONSTRAINT award_policies_code_format CHECK (code ~ '^[a-z0-9-]{2,64}$'),
            CONSTRAINT award_policies_version_positive CHECK (version >= 1),
            CONSTRAINT award_policies_rate_range CHECK (rate > 0 AND rate <= 10),
            CONSTRAINT award_policies_cap_range CHECK (cap_fen BETWEEN 1 AND 10000000000),
            CONSTRAINT award_policies_minimums_range CHECK (
                min_participation BETWEEN 0 AND 1 AND min_satisfaction BETWEEN 0 AND 1
            ),
            CONSTRAINT award_policies_text_lengths CHECK (
                char_length(name) BETWEEN 1 AND 100 AND char_length(issuer) BETWEEN 1 AND 200
                AND coalesce(char_length(document_no), 0) <= 100
            )
        );

        CREATE TABLE project_award_policies (
            id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            community_id bigint NOT NULL,
            project_id   bigint NOT NULL,
            policy_code  text NOT NULL,
            assigned_by  text NOT NULL,
            assigned_at  timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT project_award_policies_project_fk FOREIGN KEY (project_id, community_id)
                REFERENCES projects (id, community_id)
        );
        CREATE INDEX project_award_policies_project_idx ON project_award_policies (project_id, id);

        ALTER TABLE entries ADD COLUMN award_basis text;
        ALTER TABLE entries ADD CONSTRAINT entries_award_basis_on_grants
            CHECK (award_basis IS NULL OR (kind = 'grant' AND char_length(award_basis) <= 2000));
        CREATE INDEX entries_award_basis_idx ON entries (project_id, seq) WHERE award_basis IS NOT NULL;
        """
    )
    make_append_only("award_policies")
    make_append_only("project_award_policies")
    grant_sequences()


def downgrade() -> None:
    raise NotImplementedError("the ledger schema is never dropped by a migration")
