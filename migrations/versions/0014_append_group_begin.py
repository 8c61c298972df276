"""Group commit (issue 14): start several single appends, of different projects, in one round trip.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-02

``ledger_append_begin_many(codes, scopes, keys)`` does for each request what
``ledger_append_begin`` (0003) does for one — claim the idempotency key (advisory try-lock, then
look-up: a replay or an in-flight key ends there), lock the project's head, read its accounts —
and returns one row per request, ``ord`` being its 1-based position.

A group never waits for a head: it locks with ``SKIP LOCKED`` (in project order), and a request
whose head another transaction holds (a long import, another worker's group) comes back ``busy``;
the caller runs it on its own after the group, where it queues for the lock as any append does.
So a group is never held up behind one busy project, and groups cannot deadlock on heads. The
accounts are read by a later statement, which in a VOLATILE plpgsql function takes a fresh
snapshot: it sees what the previous holder of each lock committed (the reasoning of 0003). The
caller passes distinct projects and distinct keys (ledger/append_group.py).
"""

from collections.abc import Sequence

from migrations.helpers import run_script

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    run_script(
        """
        CREATE FUNCTION ledger_append_begin_many(p_codes text[], p_scopes text[], p_keys text[])
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


def downgrade() -> None:
    run_script("DROP FUNCTION ledger_append_begin_many(text[], text[], text[])")
