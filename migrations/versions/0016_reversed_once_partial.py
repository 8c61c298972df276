"""The "reversed once" rule is a partial unique index, so no look-up by entry can mistake it for the key
(issue 14).

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-03

``entries_reversed_once`` was a UNIQUE constraint on ``(project_id, reverses_seq, community_id)``.
Almost every entry reverses nothing, so its index held one NULL per entry — and, to a generic
plan, it looked exactly as good as the primary key ``(project_id, seq, community_id)`` for a
look-up by project, seq and community: both unique, both "one row". Every posting's foreign key
to its entry (``postings_entry_fk``) is checked by just such a look-up, a plan PostgreSQL caches
per connection (and append transactions run with ``plan_cache_mode = force_generic_plan``, 0015).
Planned while a project's entries were few, the check went through ``entries_reversed_once``
with ``project_id`` and ``community_id`` as its index condition and ``seq`` as a filter: it read
every entry of the project to find one. Two postings per entry: at a few hundred entries per
project that was half of PostgreSQL's CPU per append on PostgreSQL 15 (0.60 → 0.33 ms once fixed,
docs/performance.md §5), and its cost grew with the project for as long as the connection kept
that plan. Which index a generic plan picks in such a tie depends on the statistics of the moment
(PostgreSQL 16 in the append benchmark happened to pick the key; the same version picks the
wrong one in tests/test_entry_key_lookups.py): no choice is left to it now.

Now a unique index ``WHERE reverses_seq IS NOT NULL``, under the same name: the same rule (an
entry is reversed at most once; NULLs never collided), an index only of reversals, and one no
query for an entry by its seq can use. A reversal that lost the race to another still fails on
``entries_reversed_once`` (unique_violation names the index as the constraint).

Citus (0013): a unique index on a distributed table must contain the distribution column; it does.
"""

from collections.abc import Sequence

from migrations.helpers import run_script

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    run_script(
        """
        ALTER TABLE entries DROP CONSTRAINT entries_reversed_once;
        CREATE UNIQUE INDEX entries_reversed_once ON entries (project_id, reverses_seq, community_id)
            WHERE reverses_seq IS NOT NULL;
        """
    )


def downgrade() -> None:
    run_script(
        """
        DROP INDEX entries_reversed_once;
        ALTER TABLE entries ADD CONSTRAINT entries_reversed_once UNIQUE (project_id, reverses_seq, community_id);
        """
    )
