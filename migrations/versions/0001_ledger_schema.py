"""The ledger schema: communities, projects, contributors, entries, postings, balances, Merkle log.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

from collections.abc import Sequence

from migrations.helpers import create_guard_function, grant, grant_sequences, make_append_only, run_script

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# 100,000,000.00 yuan, the most one entry may carry.
AMOUNT_MAX_FEN = 10_000_000_000
CODE_FORMAT = "^[a-z0-9-]{2,64}$"
STAGES = (
    "proposal",
    "deliberation",
    "review",
    "resolution",
    "announcement",
    "start",
    "acceptance",
    "evaluation",
    "closure",
)
ENTRY_KINDS = ("contribution", "grant", "expenditure", "refund", "in_kind", "pledge", "reversal")


def _in(values: Sequence[str]) -> str:
    return "(" + ", ".join(f"'{v}'" for v in values) + ")"


def upgrade() -> None:
    create_guard_function()
    run_script(
        f"""
        CREATE TABLE communities (
            id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,  -- is the community_id
            code         text NOT NULL,
            name         text NOT NULL,
            district     text NOT NULL DEFAULT '',
            households   integer,
            created_at   timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT communities_code_unique UNIQUE (code),
            CONSTRAINT communities_code_format CHECK (code ~ '{CODE_FORMAT}'),
            CONSTRAINT communities_name_length CHECK (char_length(name) BETWEEN 1 AND 100),
            CONSTRAINT communities_district_length CHECK (char_length(district) <= 100),
            CONSTRAINT communities_households_range CHECK (households BETWEEN 0 AND 1000000)
        );

        CREATE TABLE projects (
            id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            community_id        bigint NOT NULL REFERENCES communities (id),
            code                text NOT NULL,
            title               text NOT NULL,
            description         text NOT NULL DEFAULT '',
            households_in_scope integer NOT NULL DEFAULT 0,
            stage               text NOT NULL DEFAULT 'proposal',
            spending_gate       text NOT NULL DEFAULT 'resolution',
            created_at          timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT projects_code_unique UNIQUE (code),
            CONSTRAINT projects_id_community_unique UNIQUE (id, community_id),
            CONSTRAINT projects_code_format CHECK (code ~ '{CODE_FORMAT}'),
            CONSTRAINT projects_title_length CHECK (char_length(title) BETWEEN 1 AND 100),
            CONSTRAINT projects_description_length CHECK (char_length(description) <= 2000),
            CONSTRAINT projects_households_range CHECK (households_in_scope BETWEEN 0 AND 1000000),
            CONSTRAINT projects_stage_known CHECK (stage IN {_in(STAGES)}),
            CONSTRAINT projects_spending_gate_known CHECK (spending_gate IN ('resolution', 'waived'))
        );
        CREATE INDEX projects_community_idx ON projects (community_id);

        CREATE TABLE budget_lines (
            community_id bigint NOT NULL,
            project_id   bigint NOT NULL,
            position     smallint NOT NULL,
            category     text NOT NULL,
            label        text NOT NULL,
            source       text NOT NULL,
            amount_fen   bigint NOT NULL,
            PRIMARY KEY (project_id, category),
            CONSTRAINT budget_lines_project_fk FOREIGN KEY (project_id, community_id)
                REFERENCES projects (id, community_id),
            CONSTRAINT budget_lines_category_format CHECK (category ~ '^[a-z0-9_-]{{1,40}}$'),
            CONSTRAINT budget_lines_label_length CHECK (char_length(label) BETWEEN 1 AND 100),
            CONSTRAINT budget_lines_source_known
                CHECK (source IN ('crowdfunding', 'grant', 'collective', 'other')),
            CONSTRAINT budget_lines_amount_range CHECK (amount_fen BETWEEN 0 AND {AMOUNT_MAX_FEN})
        );

        -- The chart of accounts of each project; expenses:<category> per budget line.
        CREATE TABLE accounts (
            id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            community_id  bigint NOT NULL,
            project_id    bigint NOT NULL,
            code          text NOT NULL,
            is_memorandum boolean NOT NULL,
            CONSTRAINT accounts_project_code_unique UNIQUE (project_id, code),
            CONSTRAINT accounts_project_fk FOREIGN KEY (project_id, community_id)
                REFERENCES projects (id, community_id),
            CONSTRAINT accounts_code_format CHECK (code ~ '^[a-z_]+(:[a-z0-9_-]+)?$')
        );

        -- Running balance per account, debit-positive, kept in the entry's transaction.
        -- floor_fen is the database's own guard against overdrawing cash.
        CREATE TABLE balances (
            account_id   bigint PRIMARY KEY REFERENCES accounts (id),
            community_id bigint NOT NULL,
            project_id   bigint NOT NULL,
            balance_fen  bigint NOT NULL DEFAULT 0,
            floor_fen    bigint,
            last_seq     bigint NOT NULL DEFAULT 0,
            CONSTRAINT balances_not_below_floor CHECK (floor_fen IS NULL OR balance_fen >= floor_fen)
        );
        CREATE INDEX balances_project_idx ON balances (project_id);

        -- Personal data lives here and only here; entries point at it by id.
        CREATE TABLE contributors (
            id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            community_id bigint NOT NULL REFERENCES communities (id),
            public_id    uuid NOT NULL DEFAULT gen_random_uuid(),
            type         text NOT NULL,
            name         text,
            household    text,
            phone        text,
            salt         bytea,
            erased_at    timestamptz,
            created_at   timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT contributors_public_id_unique UNIQUE (public_id),
            CONSTRAINT contributors_type_known
                CHECK (type IN ('resident', 'household', 'enterprise', 'organization', 'party_branch')),
            CONSTRAINT contributors_name_length CHECK (char_length(name) BETWEEN 1 AND 100),
            CONSTRAINT contributors_household_length CHECK (char_length(household) <= 100),
            CONSTRAINT contributors_phone_format CHECK (phone ~ '^[0-9+ -]{{3,20}}$'),
            CONSTRAINT contributors_salt_length CHECK (octet_length(salt) = 16),
            CONSTRAINT contributors_erased_has_no_personal_data CHECK (
                erased_at IS NULL OR (name IS NULL AND household IS NULL AND phone IS NULL AND salt IS NULL)
            )
        );
        -- One live contributor per name and household in a community; concurrent appends in two
        -- projects that name the same new person meet here (ON CONFLICT), not in a duplicate.
        CREATE UNIQUE INDEX contributors_identity_unique ON contributors (community_id, name, (coalesce(household, '')))
            WHERE erased_at IS NULL;

        -- Per project and contributor: what they paid, had refunded, pledged, gave in kind.
        CREATE TABLE contributor_totals (
            community_id   bigint NOT NULL,
            project_id     bigint NOT NULL,
            contributor_id bigint NOT NULL REFERENCES contributors (id),
            paid_fen       bigint NOT NULL DEFAULT 0,
            refunded_fen   bigint NOT NULL DEFAULT 0,
            pledged_fen    bigint NOT NULL DEFAULT 0,
            in_kind_fen    bigint NOT NULL DEFAULT 0,
            PRIMARY KEY (project_id, contributor_id),
            CONSTRAINT contributor_totals_refund_covered CHECK (refunded_fen <= paid_fen)
        );

        CREATE TABLE entries (
            community_id           bigint NOT NULL,
            project_id             bigint NOT NULL,
            seq                    bigint NOT NULL,
            kind                   text NOT NULL,
            amount_fen             bigint NOT NULL,
            occurred_on            date NOT NULL,
            recorded_at            timestamptz NOT NULL,
            recorded_by            text NOT NULL,
            memo                   text,
            contributor_id         bigint REFERENCES contributors (id),
            contributor_commitment bytea,
            anonymous              boolean NOT NULL DEFAULT false,
            channel                text,
            receipt_no             text,
            grantor                text,
            document_no            text,
            payee                  text,
            category               text,
            invoice_no             text,
            description            text,
            reverses_seq           bigint,
            reason                 text,
            document               text NOT NULL,
            leaf_hash              bytea NOT NULL,
            PRIMARY KEY (project_id, seq),
            CONSTRAINT entries_project_fk FOREIGN KEY (project_id, community_id)
                REFERENCES projects (id, community_id),
            CONSTRAINT entries_reverses_fk FOREIGN KEY (project_id, reverses_seq)
                REFERENCES entries (project_id, seq),
            -- An entry is reversed at most once.
            CONSTRAINT entries_reversed_once UNIQUE (project_id, reverses_seq),
            CONSTRAINT entries_seq_positive CHECK (seq > 0),
            CONSTRAINT entries_kind_known CHECK (kind IN {_in(ENTRY_KINDS)}),
            CONSTRAINT entries_amount_range CHECK (amount_fen BETWEEN 1 AND {AMOUNT_MAX_FEN}),
            CONSTRAINT entries_reversal_names_original
                CHECK ((kind = 'reversal') = (reverses_seq IS NOT NULL AND reverses_seq < seq)),
            CONSTRAINT entries_reversal_has_reason CHECK (kind <> 'reversal' OR reason IS NOT NULL),
            CONSTRAINT entries_contributor_where_needed CHECK (
                (kind IN ('contribution', 'refund', 'in_kind', 'pledge')) = (contributor_id IS NOT NULL)
            ),
            CONSTRAINT entries_commitment_length CHECK (octet_length(contributor_commitment) = 32),
            CONSTRAINT entries_grant_fields CHECK (kind <> 'grant' OR grantor IS NOT NULL),
            CONSTRAINT entries_expenditure_fields
                CHECK (kind <> 'expenditure' OR (payee IS NOT NULL AND category IS NOT NULL)),
            CONSTRAINT entries_channel_known
                CHECK (channel IN ('cash', 'wechat', 'alipay', 'bank', 'other')),
            CONSTRAINT entries_leaf_hash_length CHECK (octet_length(leaf_hash) = 32),
            CONSTRAINT entries_text_lengths CHECK (
                coalesce(char_length(memo), 0) <= 500 AND coalesce(char_length(description), 0) <= 500
                AND coalesce(char_length(reason), 0) <= 500 AND coalesce(char_length(payee), 0) <= 200
                AND coalesce(char_length(grantor), 0) <= 200
                AND coalesce(char_length(document_no), 0) <= 100
                AND coalesce(char_length(receipt_no), 0) <= 64
                AND coalesce(char_length(invoice_no), 0) <= 64
            )
        );
        CREATE INDEX entries_kind_idx ON entries (project_id, kind, seq);
        CREATE INDEX entries_occurred_idx ON entries (project_id, occurred_on);
        CREATE INDEX entries_contributor_idx ON entries (contributor_id) WHERE contributor_id IS NOT NULL;

        CREATE TABLE postings (
            community_id bigint NOT NULL,
            project_id   bigint NOT NULL,
            seq          bigint NOT NULL,
            line_no      smallint NOT NULL,
            account_id   bigint NOT NULL REFERENCES accounts (id),
            side         text NOT NULL,
            amount_fen   bigint NOT NULL,
            PRIMARY KEY (project_id, seq, line_no),
            CONSTRAINT postings_entry_fk FOREIGN KEY (project_id, seq) REFERENCES entries (project_id, seq),
            CONSTRAINT postings_side_known CHECK (side IN ('debit', 'credit')),
            CONSTRAINT postings_amount_positive CHECK (amount_fen > 0)
        );

        -- One row per project: the lock every append takes, and the Merkle frontier.
        CREATE TABLE project_heads (
            project_id   bigint PRIMARY KEY,
            community_id bigint NOT NULL,
            size         bigint NOT NULL DEFAULT 0,
            frontier     bytea NOT NULL DEFAULT ''::bytea,
            root_hash    bytea NOT NULL,
            updated_at   timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT project_heads_project_fk FOREIGN KEY (project_id, community_id)
                REFERENCES projects (id, community_id),
            CONSTRAINT project_heads_size_nonnegative CHECK (size >= 0),
            CONSTRAINT project_heads_frontier_shape CHECK (octet_length(frontier) % 32 = 0),
            CONSTRAINT project_heads_root_length CHECK (octet_length(root_hash) = 32)
        );

        -- Perfect subtrees of level >= 1 (level 0 is entries.leaf_hash), so any proof for any
        -- tree size is a handful of indexed lookups, never the whole tree in memory.
        CREATE TABLE merkle_nodes (
            community_id bigint NOT NULL,
            project_id   bigint NOT NULL,
            level        smallint NOT NULL,
            idx          bigint NOT NULL,
            hash         bytea NOT NULL,
            PRIMARY KEY (project_id, level, idx),
            CONSTRAINT merkle_nodes_level_range CHECK (level BETWEEN 1 AND 62),
            CONSTRAINT merkle_nodes_hash_length CHECK (octet_length(hash) = 32)
        );

        -- Recorded decisions of 四议两公开.
        CREATE TABLE decisions (
            id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            community_id   bigint NOT NULL,
            project_id     bigint NOT NULL,
            stage          text NOT NULL,
            held_on        date NOT NULL,
            body           text NOT NULL,
            eligible       integer,
            attendees      integer,
            votes_for      integer,
            votes_against  integer,
            votes_abstain  integer,
            summary        text NOT NULL DEFAULT '',
            minutes_sha256 text,
            notice_days    integer,
            recorded_at    timestamptz NOT NULL DEFAULT now(),
            recorded_by    text NOT NULL,
            CONSTRAINT decisions_project_fk FOREIGN KEY (project_id, community_id)
                REFERENCES projects (id, community_id),
            CONSTRAINT decisions_stage_known CHECK (stage IN {_in(STAGES)}),
            CONSTRAINT decisions_counts_nonnegative CHECK (
                coalesce(eligible, 0) >= 0 AND coalesce(attendees, 0) >= 0 AND coalesce(votes_for, 0) >= 0
                AND coalesce(votes_against, 0) >= 0 AND coalesce(votes_abstain, 0) >= 0
            ),
            CONSTRAINT decisions_attendance_within_eligible CHECK (attendees <= eligible),
            CONSTRAINT decisions_votes_within_attendance
                CHECK (coalesce(votes_for, 0) + coalesce(votes_against, 0) + coalesce(votes_abstain, 0)
                       <= attendees),
            CONSTRAINT decisions_notice_days_range CHECK (notice_days BETWEEN 0 AND 90),
            CONSTRAINT decisions_minutes_format CHECK (minutes_sha256 ~ '^[0-9a-f]{{64}}$'),
            CONSTRAINT decisions_text_lengths
                CHECK (char_length(body) BETWEEN 1 AND 100 AND char_length(summary) <= 2000)
        );
        CREATE INDEX decisions_project_idx ON decisions (project_id, id);

        CREATE TABLE api_tokens (
            id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
            community_id bigint REFERENCES communities (id),
            name         text NOT NULL,
            role         text NOT NULL,
            token_hash   bytea NOT NULL,
            created_at   timestamptz NOT NULL DEFAULT now(),
            revoked_at   timestamptz,
            CONSTRAINT api_tokens_hash_unique UNIQUE (token_hash),
            CONSTRAINT api_tokens_role_known CHECK (role IN ('admin', 'treasurer', 'auditor')),
            CONSTRAINT api_tokens_scope CHECK ((role = 'admin') = (community_id IS NULL)),
            CONSTRAINT api_tokens_name_length CHECK (char_length(name) BETWEEN 1 AND 100),
            CONSTRAINT api_tokens_hash_length CHECK (octet_length(token_hash) = 32)
        );

        -- The stored outcome of every idempotent write, committed with the write itself. A retry
        -- cache, not part of the public record: erasure deletes the responses that quote a person.
        CREATE TABLE idempotency_keys (
            scope        text NOT NULL,
            key          text NOT NULL,
            community_id bigint,
            fingerprint  bytea NOT NULL,
            status       smallint NOT NULL,
            body         text NOT NULL,
            created_at   timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (scope, key),
            CONSTRAINT idempotency_keys_key_format CHECK (key ~ '^[\\x21-\\x7e]{{1,255}}$'),
            CONSTRAINT idempotency_keys_fingerprint_length CHECK (octet_length(fingerprint) = 32)
        );
        """
    )
    for table in ("entries", "postings", "merkle_nodes", "decisions"):
        make_append_only(table)
    grant("idempotency_keys", "SELECT, INSERT, DELETE")
    grant("communities", "SELECT, INSERT")
    grant("projects", "SELECT, INSERT, UPDATE (stage)")
    grant("budget_lines", "SELECT, INSERT")
    grant("accounts", "SELECT, INSERT")
    grant("balances", "SELECT, INSERT, UPDATE (balance_fen, last_seq)")
    grant("contributors", "SELECT, INSERT, UPDATE (name, household, phone, salt, erased_at)")
    grant("contributor_totals", "SELECT, INSERT, UPDATE (paid_fen, refunded_fen, pledged_fen, in_kind_fen)")
    grant("project_heads", "SELECT, INSERT, UPDATE (size, frontier, root_hash, updated_at)")
    grant("api_tokens", "SELECT, INSERT, UPDATE (revoked_at)")
    grant("alembic_version", "SELECT")
    grant_sequences()


def downgrade() -> None:
    raise NotImplementedError("the ledger schema is never dropped by a migration")
