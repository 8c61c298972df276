"""One round trip to start an append: claim the idempotency key, lock the head, read the accounts.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23

Inside a VOLATILE plpgsql function each statement takes a fresh snapshot (READ COMMITTED), so the
look-up after the try-lock sees a first request that has just committed, and the balances read
after ``FOR UPDATE`` are those the previous holder of the lock committed — the same guarantees as
separate statements, without three extra round trips while the project's lock is held.
"""

from collections.abc import Sequence

from migrations.helpers import run_script

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    run_script(
        """
        CREATE FUNCTION ledger_append_begin(
            p_code text, p_scope text, p_key text,
            OUT outcome text,
            OUT stored_fingerprint bytea, OUT stored_status smallint, OUT stored_body text,
            OUT project_id bigint, OUT community_id bigint, OUT spending_gate text,
            OUT size bigint, OUT frontier bytea,
            OUT account_ids bigint[], OUT account_codes text[], OUT balances bigint[], OUT floors bigint[]
        )
        LANGUAGE plpgsql VOLATILE SECURITY INVOKER AS $fn$
        BEGIN
            IF p_key IS NOT NULL THEN
                IF NOT pg_try_advisory_xact_lock(hashtextextended(p_scope || chr(31) || p_key, 7)) THEN
                    outcome := 'in_flight';
                    RETURN;
                END IF;
                SELECT i.fingerprint, i.status, i.body INTO stored_fingerprint, stored_status, stored_body
                FROM idempotency_keys i WHERE i.scope = p_scope AND i.key = p_key;
                IF FOUND THEN
                    outcome := 'stored';
                    RETURN;
                END IF;
            END IF;
            SELECT h.project_id, h.community_id, p.spending_gate, h.size, h.frontier
            INTO project_id, community_id, spending_gate, size, frontier
            FROM projects p JOIN project_heads h ON h.project_id = p.id
            WHERE p.code = p_code
            FOR UPDATE OF h;
            IF NOT FOUND THEN
                outcome := 'not_found';
                RETURN;
            END IF;
            SELECT array_agg(a.id), array_agg(a.code), array_agg(b.balance_fen), array_agg(b.floor_fen)
            INTO account_ids, account_codes, balances, floors
            FROM accounts a JOIN balances b ON b.account_id = a.id
            WHERE a.project_id = ledger_append_begin.project_id;
            outcome := 'locked';
        END
        $fn$;
        """
    )


def downgrade() -> None:
    run_script("DROP FUNCTION ledger_append_begin(text, text, text)")
