"""Append transactions plan their statements once (issue 14).

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-02

The statements of an append (the contributor look-up, the one write of data-modifying CTEs over
arrays, …) are prepared once per connection, but PostgreSQL re-plans a prepared statement for
every execution while it estimates a plan for these parameters cheaper than the generic one —
and with array parameters it always does. Planning the write cost more than running it (the
contributor look-up: about 1 ms to plan, 0.1 ms to run). Both functions that open an append
transaction — ``ledger_append_begin`` (0003) and ``ledger_append_begin_many`` (0014) — now set
``plan_cache_mode = force_generic_plan`` for the rest of that transaction only (``set_config(…,
true)``, like ``SET LOCAL``: no extra round trip, nothing left on the session, safe behind
PgBouncer in transaction mode). Every statement of an append is a look-up by key or a write of
the given rows, for which the generic plan is the plan. Reads elsewhere are untouched.

The bodies are otherwise those of 0003 and 0014.
"""

from collections.abc import Sequence

from migrations.helpers import run_script

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    run_script(
        """
        CREATE OR REPLACE FUNCTION ledger_append_begin(
            p_code text, p_scope text, p_key text,
            OUT outcome text,
            OUT stored_fingerprint bytea, OUT stored_status smallint, OUT stored_body text,
            OUT project_id bigint, OUT community_id bigint, OUT spending_gate text,
            OUT size bigint, OUT frontier bytea,
            OUT account_ids bigint[], OUT account_codes text[], OUT balances bigint[], OUT floors bigint[]
        )
        LANGUAGE plpgsql VOLATILE SECURITY INVOKER AS $fn$
        BEGIN
            -- For the rest of this append transaction: see the module's docstring.
            PERFORM set_config('plan_cache_mode', 'force_generic_plan', true);
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
    run_script(
        """
        CREATE OR REPLACE FUNCTION ledger_append_begin_many(p_codes text[], p_scopes text[], p_keys text[])
        RETURNS TABLE (
            ord integer, outcome text,
            stored_fingerprint bytea, stored_status smallint, stored_body text,
            project_id bigint, community_id bigint, spending_gate text,
            size bigint, frontier bytea,
            account_ids bigint[], account_codes text[], balances bigint[], floors bigint[]
        )
        LANGUAGE plpgsql VOLATILE SECURITY INVOKER AS $fn$
        DECLARE
            i integer;
            live integer[] := '{}';
            got bigint[];
        BEGIN
            -- For the rest of this append transaction: see the module's docstring.
            PERFORM set_config('plan_cache_mode', 'force_generic_plan', true);
            FOR i IN 1 .. coalesce(cardinality(p_codes), 0) LOOP
                IF p_keys[i] IS NOT NULL THEN
                    IF NOT pg_try_advisory_xact_lock(hashtextextended(p_scopes[i] || chr(31) || p_keys[i], 7)) THEN
                        RETURN QUERY SELECT i, 'in_flight'::text, NULL::bytea, NULL::smallint, NULL::text,
                            NULL::bigint, NULL::bigint, NULL::text, NULL::bigint, NULL::bytea,
                            NULL::bigint[], NULL::text[], NULL::bigint[], NULL::bigint[];
                        CONTINUE;
                    END IF;
                    IF EXISTS (SELECT 1 FROM idempotency_keys k WHERE k.scope = p_scopes[i] AND k.key = p_keys[i]) THEN
                        RETURN QUERY SELECT i, 'stored'::text, k.fingerprint, k.status, k.body,
                            NULL::bigint, NULL::bigint, NULL::text, NULL::bigint, NULL::bytea,
                            NULL::bigint[], NULL::text[], NULL::bigint[], NULL::bigint[]
                        FROM idempotency_keys k WHERE k.scope = p_scopes[i] AND k.key = p_keys[i];
                        CONTINUE;
                    END IF;
                END IF;
                live := live || i;
            END LOOP;
            IF cardinality(live) = 0 THEN
                RETURN;
            END IF;
            SELECT coalesce(array_agg(x.project_id), '{}') INTO got FROM (
                SELECT h.project_id
                FROM projects p JOIN project_heads h ON h.project_id = p.id
                WHERE p.code = ANY (SELECT p_codes[j] FROM unnest(live) AS j)
                ORDER BY h.project_id
                FOR UPDATE OF h SKIP LOCKED
            ) x;
            RETURN QUERY
            SELECT w.j,
                   CASE WHEN h.project_id IS NULL THEN 'not_found'
                        WHEN h.project_id = ANY (got) THEN 'locked' ELSE 'busy' END,
                   NULL::bytea, NULL::smallint, NULL::text,
                   h.project_id, h.community_id, p.spending_gate, h.size, h.frontier,
                   acc.ids, acc.codes, acc.balances, acc.floors
            FROM unnest(live) AS w(j)
            LEFT JOIN projects p ON p.code = p_codes[w.j]
            LEFT JOIN project_heads h ON h.project_id = p.id
            LEFT JOIN LATERAL (
                SELECT array_agg(a.id) AS ids, array_agg(a.code) AS codes,
                       array_agg(b.balance_fen) AS balances, array_agg(b.floor_fen) AS floors
                FROM accounts a JOIN balances b ON b.account_id = a.id
                WHERE a.project_id = h.project_id
            ) acc ON true;
        END
        $fn$;
        """
    )


def downgrade() -> None:
    run_script(
        """
        CREATE OR REPLACE FUNCTION ledger_append_begin(
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
    run_script(
        """
        CREATE OR REPLACE FUNCTION ledger_append_begin_many(p_codes text[], p_scopes text[], p_keys text[])
        RETURNS TABLE (
            ord integer, outcome text,
            stored_fingerprint bytea, stored_status smallint, stored_body text,
            project_id bigint, community_id bigint, spending_gate text,
            size bigint, frontier bytea,
            account_ids bigint[], account_codes text[], balances bigint[], floors bigint[]
        )
        LANGUAGE plpgsql VOLATILE SECURITY INVOKER AS $fn$
        DECLARE
            i integer;
            live integer[] := '{}';
            got bigint[];
        BEGIN
            FOR i IN 1 .. coalesce(cardinality(p_codes), 0) LOOP
                IF p_keys[i] IS NOT NULL THEN
                    IF NOT pg_try_advisory_xact_lock(hashtextextended(p_scopes[i] || chr(31) || p_keys[i], 7)) THEN
                        RETURN QUERY SELECT i, 'in_flight'::text, NULL::bytea, NULL::smallint, NULL::text,
                            NULL::bigint, NULL::bigint, NULL::text, NULL::bigint, NULL::bytea,
                            NULL::bigint[], NULL::text[], NULL::bigint[], NULL::bigint[];
                        CONTINUE;
                    END IF;
                    IF EXISTS (SELECT 1 FROM idempotency_keys k WHERE k.scope = p_scopes[i] AND k.key = p_keys[i]) THEN
                        RETURN QUERY SELECT i, 'stored'::text, k.fingerprint, k.status, k.body,
                            NULL::bigint, NULL::bigint, NULL::text, NULL::bigint, NULL::bytea,
                            NULL::bigint[], NULL::text[], NULL::bigint[], NULL::bigint[]
                        FROM idempotency_keys k WHERE k.scope = p_scopes[i] AND k.key = p_keys[i];
                        CONTINUE;
                    END IF;
                END IF;
                live := live || i;
            END LOOP;
            IF cardinality(live) = 0 THEN
                RETURN;
            END IF;
            SELECT coalesce(array_agg(x.project_id), '{}') INTO got FROM (
                SELECT h.project_id
                FROM projects p JOIN project_heads h ON h.project_id = p.id
                WHERE p.code = ANY (SELECT p_codes[j] FROM unnest(live) AS j)
                ORDER BY h.project_id
                FOR UPDATE OF h SKIP LOCKED
            ) x;
            RETURN QUERY
            SELECT w.j,
                   CASE WHEN h.project_id IS NULL THEN 'not_found'
                        WHEN h.project_id = ANY (got) THEN 'locked' ELSE 'busy' END,
                   NULL::bytea, NULL::smallint, NULL::text,
                   h.project_id, h.community_id, p.spending_gate, h.size, h.frontier,
                   acc.ids, acc.codes, acc.balances, acc.floors
            FROM unnest(live) AS w(j)
            LEFT JOIN projects p ON p.code = p_codes[w.j]
            LEFT JOIN project_heads h ON h.project_id = p.id
            LEFT JOIN LATERAL (
                SELECT array_agg(a.id) AS ids, array_agg(a.code) AS codes,
                       array_agg(b.balance_fen) AS balances, array_agg(b.floor_fen) AS floors
                FROM accounts a JOIN balances b ON b.account_id = a.id
                WHERE a.project_id = h.project_id
            ) acc ON true;
        END
        $fn$;
        """
    )
