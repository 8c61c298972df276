"""Hardening: unlinkable anonymous gifts, a record of erasures, irreversible token revocation.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01

- ``entries.anonymous_id``: the public contributor id of an anonymous entry, fresh per entry, so
  the published document cannot be linked to the giver's named entries (the internal
  ``contributor_id`` still names the person, for refunds and totals).
- ``erasures``: who erased which contributor, when and why (个人信息保护法); append-only.
- ``api_tokens``: once ``revoked_at`` is set it never changes again, for any role (the application
  role may set it, so a grant alone could not stop it being set back to NULL).
"""

from collections.abc import Sequence

from migrations.helpers import grant_sequences, make_append_only, run_script

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    run_script(
        """
        ALTER TABLE entries ADD COLUMN anonymous_id uuid;
        ALTER TABLE entries ADD CONSTRAINT entries_anonymous_id_only_anonymous
            CHECK (anonymous_id IS NULL OR anonymous);

        CREATE TABLE erasures (
            id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            community_id   bigint NOT NULL REFERENCES communities (id),
            contributor_id bigint NOT NULL REFERENCES contributors (id),
            reason         text NOT NULL,
            erased_by      text NOT NULL,
            erased_at      timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT erasures_once UNIQUE (contributor_id),
            CONSTRAINT erasures_reason_length CHECK (char_length(reason) BETWEEN 1 AND 500)
        );

        CREATE FUNCTION ledger_refuse_unrevoke() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'token % was revoked at %: revocation is final', OLD.id, OLD.revoked_at
                USING ERRCODE = 'insufficient_privilege';
        END
        $$;
        CREATE TRIGGER api_tokens_revocation_final BEFORE UPDATE ON api_tokens
            FOR EACH ROW
            WHEN (OLD.revoked_at IS NOT NULL AND NEW.revoked_at IS DISTINCT FROM OLD.revoked_at)
            EXECUTE FUNCTION ledger_refuse_unrevoke();
        ALTER TABLE api_tokens ENABLE ALWAYS TRIGGER api_tokens_revocation_final;
        """
    )
    make_append_only("erasures")
    grant_sequences()


def downgrade() -> None:
    raise NotImplementedError("the ledger schema is never dropped by a migration")
