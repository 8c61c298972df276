"""Reusable migration steps: append-only protection and grants to the application role.

Every table that holds a public record (entries, postings, Merkle nodes, decisions, disclosures,
objections, evaluations …) is made append-only with ``make_append_only``: a row trigger refuses
UPDATE and DELETE, a statement trigger refuses TRUNCATE (row triggers never see TRUNCATE), and both
are ``ENABLE ALWAYS`` so ``session_replication_role = replica`` cannot skip them. The application
role gets only SELECT and INSERT on such tables, and owns none, so it cannot disable the triggers.
"""

from __future__ import annotations

import os

from alembic import context, op
from sqlalchemy.util import await_only

GUARD_FUNCTION = "ledger_refuse_change"


def run_script(sql: str) -> None:
    """Run several SQL statements at once (asyncpg's simple query protocol, inside the migration's
    transaction); ``op.execute`` would prepare them and accept only one."""
    driver_connection = op.get_bind().connection.driver_connection
    await_only(driver_connection.execute(sql))


def app_role() -> str:
    role = context.config.attributes.get("app_role") or os.environ.get("LEDGER_APP_ROLE", "ledger_app")
    assert role.replace("_", "").isalnum(), "role names are plain identifiers"
    return role


def create_guard_function() -> None:
    run_script(
        f"""
        CREATE OR REPLACE FUNCTION {GUARD_FUNCTION}() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION '% on %.% is refused: the table is append-only', TG_OP, TG_TABLE_SCHEMA, TG_TABLE_NAME
                USING ERRCODE = 'insufficient_privilege';
        END
        $$;
        """
    )


def make_append_only(table: str) -> None:
    run_script(
        f"""
        CREATE TRIGGER {table}_no_update_delete BEFORE UPDATE OR DELETE ON {table}
            FOR EACH ROW EXECUTE FUNCTION {GUARD_FUNCTION}();
        CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table}
            FOR EACH STATEMENT EXECUTE FUNCTION {GUARD_FUNCTION}();
        ALTER TABLE {table} ENABLE ALWAYS TRIGGER {table}_no_update_delete;
        ALTER TABLE {table} ENABLE ALWAYS TRIGGER {table}_no_truncate;
        """
    )
    grant(table, "SELECT, INSERT")


def grant(table: str, privileges: str) -> None:
    """Grant to the application role if it exists (an external deployment may name it later)."""
    role = app_role()
    run_script(
        f"""
        DO $$ BEGIN
            IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{role}') THEN
                GRANT {privileges} ON {table} TO "{role}";
            END IF;
        END $$;
        """
    )


def grant_sequences() -> None:
    """Identity columns draw from sequences; the application role may use, not alter, them."""
    role = app_role()
    run_script(
        f"""
        DO $$ BEGIN
            IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{role}') THEN
                GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO "{role}";
            END IF;
        END $$;
        """
    )
