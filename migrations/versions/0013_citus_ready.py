"""A schema ready for Citus: every table is distributed by ``community_id`` or is a small reference
table (issue 15; docs/scale.md gives the layout).

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-02

Citus can enforce a primary key, a unique constraint or a foreign key between distributed tables
only when it includes the distribution column. So, on every community table:

- the primary key and every unique constraint gain ``community_id`` as their LAST column (the
  leading columns are unchanged, so every existing look-up — by project and seq, by code, by
  hash — still uses the same index); constraint names are kept;
- every foreign key between two community tables gains ``community_id`` on both sides, so a row can
  only point at a row of its own community (which is what the service always wrote).

Besides:

- ``attachments`` gains ``community_id``: a file is stored once per community that uploaded it (it
  was once for everyone). Existing files are copied to each community that uploaded them.
- ``idempotency_keys.community_id`` is NOT NULL; 0 stands for a write that belongs to no
  community (creating a community, issuing a token). A key stays unique per caller (scope): the
  claim's advisory lock and look-up never let a second row with the same scope and key in.
- ``projects.code`` was unique across the whole service; that is now held by the reference table
  ``project_codes`` (code → community, project), filled by a trigger on ``projects`` and
  append-only like the records. Its primary key keeps the name ``projects_code_unique`` (the
  service tells a taken code by that name).
- Reference tables (small, copied to every Citus node): ``communities``, ``api_tokens``,
  ``award_policies``, ``project_codes``. On the coordinator only: ``alembic_version`` and
  ``rate_limits`` (scratch state of the public write limit, no ledger data).

Append-only triggers and the application role's privileges are unchanged (the one trigger that must
let the ``attachments`` back-fill through is switched off and on again inside this transaction).
"""

from collections.abc import Sequence

from migrations.helpers import make_append_only, run_script

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

C = "community_id"

# table -> (primary key columns before, unique constraints before: name -> columns)
KEYS: dict[str, tuple[tuple[str, ...], dict[str, tuple[str, ...]]]] = {
    "accounts": (("id",), {"accounts_project_code_unique": ("project_id", "code")}),
    "attachments": (("sha256",), {}),
    "balances": (("account_id",), {}),
    "budget_lines": (("project_id", "category"), {}),
    "contributor_totals": (("project_id", "contributor_id"), {}),
    "contributors": (("id",), {"contributors_public_id_unique": ("public_id",)}),
    "cosignatures": (("id",), {"cosignatures_once": ("disclosure_id", "witness_id", "checkpoint")}),
    "decisions": (("id",), {}),
    "disclosures": (("id",), {"disclosures_sheet_number_unique": ("project_id", "sheet_number")}),
    "entries": (("project_id", "seq"), {"entries_reversed_once": ("project_id", "reverses_seq")}),
    "erasures": (("id",), {"erasures_once": ("contributor_id",)}),
    "evaluation_batches": (("id",), {"evaluation_batches_no_unique": ("project_id", "batch_no")}),
    "evaluation_codes": (("code_sha256",), {"evaluation_codes_position_unique": ("batch_id", "position")}),
    "evaluation_tallies": (("id",), {}),
    "evaluations": (("id",), {"evaluations_code_once": ("code_sha256",)}),
    "idempotency_keys": (("scope", "key"), {}),
    "imports": (("id",), {"imports_once": ("project_id", "file_sha256")}),
    "merkle_nodes": (("project_id", "level", "idx"), {}),
    "objection_responses": (("id",), {}),
    "objections": (("id",), {}),
    "pledge_totals": (("project_id", "pledge_seq"), {}),
    "postings": (("project_id", "seq", "line_no"), {}),
    "progress_notes": (("id",), {}),
    "project_award_policies": (("id",), {}),
    "project_heads": (("project_id",), {}),
    "projects": (("id",), {}),
    "voucher_events": (("id",), {"voucher_events_once": ("voucher_id",)}),
    "vouchers": (("id",), {}),
    "witnesses": (("id",), {}),
}

# Foreign keys between community tables: (name, table, columns, referenced table, referenced columns),
# each recreated with community_id appended on both sides.
FOREIGN_KEYS: list[tuple[str, str, tuple[str, ...], str, tuple[str, ...]]] = [
    ("balances_account_id_fkey", "balances", ("account_id",), "accounts", ("id",)),
    ("postings_account_id_fkey", "postings", ("account_id",), "accounts", ("id",)),
    ("contributor_totals_contributor_id_fkey", "contributor_totals", ("contributor_id",), "contributors", ("id",)),
    ("entries_contributor_id_fkey", "entries", ("contributor_id",), "contributors", ("id",)),
    ("erasures_contributor_id_fkey", "erasures", ("contributor_id",), "contributors", ("id",)),
    ("pledge_totals_contributor_id_fkey", "pledge_totals", ("contributor_id",), "contributors", ("id",)),
    ("cosignatures_disclosure_id_fkey", "cosignatures", ("disclosure_id",), "disclosures", ("id",)),
    ("disclosures_previous_id_fkey", "disclosures", ("previous_id",), "disclosures", ("id",)),
    ("objections_disclosure_id_fkey", "objections", ("disclosure_id",), "disclosures", ("id",)),
    ("cosignatures_witness_id_fkey", "cosignatures", ("witness_id",), "witnesses", ("id",)),
    ("entries_reverses_fk", "entries", ("project_id", "reverses_seq"), "entries", ("project_id", "seq")),
    ("entries_pledge_fk", "entries", ("project_id", "pledge_seq"), "entries", ("project_id", "seq")),
    ("postings_entry_fk", "postings", ("project_id", "seq"), "entries", ("project_id", "seq")),
    ("pledge_totals_entry_fk", "pledge_totals", ("project_id", "pledge_seq"), "entries", ("project_id", "seq")),
    ("imports_first_fk", "imports", ("project_id", "first_seq"), "entries", ("project_id", "seq")),
    ("imports_last_fk", "imports", ("project_id", "last_seq"), "entries", ("project_id", "seq")),
    ("voucher_events_entry_fk", "voucher_events", ("project_id", "entry_seq"), "entries", ("project_id", "seq")),
    ("evaluation_codes_batch_id_fkey", "evaluation_codes", ("batch_id",), "evaluation_batches", ("id",)),
    ("evaluations_code_sha256_fkey", "evaluations", ("code_sha256",), "evaluation_codes", ("code_sha256",)),
    ("objection_responses_objection_id_fkey", "objection_responses", ("objection_id",), "objections", ("id",)),
    ("voucher_events_voucher_id_fkey", "voucher_events", ("voucher_id",), "vouchers", ("id",)),
    ("attachment_uploads_sha256_fkey", "attachment_uploads", ("sha256",), "attachments", ("sha256",)),
    ("evaluation_tallies_sheet_sha256_fkey", "evaluation_tallies", ("sheet_sha256",), "attachments", ("sha256",)),
]


def _cols(columns: tuple[str, ...]) -> str:
    return ", ".join(f'"{c}"' for c in columns)


def upgrade() -> None:
    statements: list[str] = []
    # 1. Foreign keys that point at a key about to change go first.
    for name, table, _, _, _ in FOREIGN_KEYS:
        statements.append(f"ALTER TABLE {table} DROP CONSTRAINT {name};")
    # 2. attachments: one copy per uploading community; idempotency keys: 0 for "no community".
    statements.append(
        """
        ALTER TABLE attachments DROP CONSTRAINT attachments_pkey;
        ALTER TABLE attachments ADD COLUMN community_id bigint REFERENCES communities (id);
        ALTER TABLE attachments DISABLE TRIGGER attachments_no_update_delete;
        UPDATE attachments a SET community_id = u.first
            FROM (SELECT sha256, min(community_id) AS first FROM attachment_uploads GROUP BY sha256) u
            WHERE u.sha256 = a.sha256;
        INSERT INTO attachments (community_id, sha256, media_type, size, content, created_at)
            SELECT u.community_id, a.sha256, a.media_type, a.size, a.content, a.created_at
            FROM attachments a JOIN attachment_uploads u ON u.sha256 = a.sha256 AND u.community_id <> a.community_id;
        DO $$ BEGIN
            IF EXISTS (SELECT 1 FROM attachments WHERE community_id IS NULL) THEN
                RAISE EXCEPTION 'an attachment no community uploaded: cannot place it';
            END IF;
        END $$;
        ALTER TABLE attachments ENABLE ALWAYS TRIGGER attachments_no_update_delete;
        ALTER TABLE attachments ALTER COLUMN community_id SET NOT NULL;

        UPDATE idempotency_keys SET community_id = 0 WHERE community_id IS NULL;
        ALTER TABLE idempotency_keys ALTER COLUMN community_id SET DEFAULT 0;
        ALTER TABLE idempotency_keys ALTER COLUMN community_id SET NOT NULL;
        """
    )
    # 3. Primary keys and unique constraints end with community_id.
    for table, (primary, uniques) in KEYS.items():
        if table != "attachments":
            statements.append(f"ALTER TABLE {table} DROP CONSTRAINT {table}_pkey;")
        statements.append(f"ALTER TABLE {table} ADD CONSTRAINT {table}_pkey PRIMARY KEY ({_cols((*primary, C))});")
        for name, columns in uniques.items():
            statements.append(
                f"ALTER TABLE {table} DROP CONSTRAINT {name};"
                f" ALTER TABLE {table} ADD CONSTRAINT {name} UNIQUE ({_cols((*columns, C))});"
            )
    # 4. Foreign keys between community tables name the community on both sides.
    for name, table, columns, target, target_columns in FOREIGN_KEYS:
        statements.append(
            f"ALTER TABLE {table} ADD CONSTRAINT {name} FOREIGN KEY ({_cols((*columns, C))})"
            f" REFERENCES {target} ({_cols((*target_columns, C))});"
        )
    # 5. A project's code, unique across the service, in a reference table.
    statements.append(
        """
        ALTER TABLE projects DROP CONSTRAINT projects_code_unique;
        CREATE INDEX projects_code_idx ON projects (code);
        CREATE TABLE project_codes (
            code         text NOT NULL,
            community_id bigint NOT NULL REFERENCES communities (id),
            project_id   bigint NOT NULL,
            CONSTRAINT projects_code_unique PRIMARY KEY (code)
        );
        INSERT INTO project_codes (code, community_id, project_id) SELECT code, community_id, id FROM projects;
        CREATE FUNCTION ledger_claim_project_code() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            INSERT INTO project_codes (code, community_id, project_id) VALUES (NEW.code, NEW.community_id, NEW.id);
            RETURN NEW;
        END
        $$;
        -- BEFORE: a code taken in any community fails here, on projects_code_unique.
        CREATE TRIGGER projects_claim_code BEFORE INSERT ON projects
            FOR EACH ROW EXECUTE FUNCTION ledger_claim_project_code();
        ALTER TABLE projects ENABLE ALWAYS TRIGGER projects_claim_code;
        """
    )
    run_script("\n".join(statements))
    make_append_only("project_codes")


def downgrade() -> None:
    raise NotImplementedError("the ledger schema is never dropped by a migration")
