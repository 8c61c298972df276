"""Append transactions look rows up by key, whatever the statistics say (issue 14).

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-03

An append transaction's statements join the rows it was given (``unnest`` of array parameters,
one to a few dozen rows) to tables by their keys: the one write updates ``balances`` by account
and ``project_heads`` by project, the contributor look-up reads ``contributor_totals`` by
(project, person). They run as generic plans (0015), which PostgreSQL plans once per connection
from the statistics of that moment, guessing ten rows for each ``unnest``. While a table is small
— ``balances`` below a few thousand rows, that is a few hundred projects in the whole database —
the cheapest-looking plan is a hash join over a sequential scan of it: every group of appends
then read every balance and every project head of the database, and the dead row versions each
group leaves behind in those two tables (both are updated by every append). On the append
benchmark PostgreSQL's CPU per append grew by a quarter in 45 seconds (0.279 → 0.345 ms over
three rounds at 20 projects), and under a profiler a quarter of the backend's time was spent in
those scans; with this revision it stays at 0.270 → 0.286 ms (docs/performance.md §5, "Key
look-ups").

Both functions that open an append transaction (``ledger_append_begin``, ``ledger_append_begin_many``)
now also turn sequential scans, hash joins and merge joins off for the rest of that transaction
(``set_config(…, true)``, like ``SET LOCAL``, next to 0015's ``plan_cache_mode``): the planner then
takes the nested loop over the given rows with an index look-up for each, which is the plan for
every statement of an append at any table size. These settings only raise a disabled plan's cost,
so a statement with no index to use still runs (by the scan it needs). Reads outside append
transactions are untouched.

The bodies are otherwise those of 0015: they are read back from the database and given the three
extra ``set_config`` calls, so the long bodies are not copied a third time.
"""

from collections.abc import Sequence

from alembic import op
from sqlalchemy.util import await_only

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FUNCTIONS = ("ledger_append_begin(text, text, text)", "ledger_append_begin_many(text[], text[], text[])")
ANCHOR = "PERFORM set_config('plan_cache_mode', 'force_generic_plan', true);"
KEYED = (
    " PERFORM set_config('enable_seqscan', 'off', true);"
    " PERFORM set_config('enable_hashjoin', 'off', true);"
    " PERFORM set_config('enable_mergejoin', 'off', true);"
)


def _rewrite(old: str, new: str) -> None:
    conn = op.get_bind().connection.driver_connection
    for signature in FUNCTIONS:
        definition: str = await_only(conn.fetchval("SELECT pg_get_functiondef($1::regprocedure)", signature))
        if definition.count(old) != 1:
            raise RuntimeError(f"{signature}: expected its body to hold {old!r} once")
        await_only(conn.execute(definition.replace(old, new)))


def upgrade() -> None:
    _rewrite(ANCHOR, ANCHOR + KEYED)


def downgrade() -> None:
    _rewrite(ANCHOR + KEYED, ANCHOR)
