"""The idempotency-key format checked without a bounded repetition (issue 14).

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-03

``idempotency_keys_key_format`` was ``key ~ '^[\\x21-\\x7e]{1,255}$'``. PostgreSQL's regular
expression engine unrolls a bounded repetition into that many states, so the check cost about
27 µs per key (a 30-character key; 0.5 µs for the form below), once per keyed write — every
single append through the API has a key. Under a profiler it was 3 % of PostgreSQL's CPU in the
append benchmark, more than the index insert of the row it guards.

Now ``char_length(key) BETWEEN 1 AND 255 AND key ~ '^[\\x21-\\x7e]+$'``: the same rule (1 to 255
characters, each printable ASCII other than the space; every such character is one byte, so the
two lengths agree), under the same name. Adding it checks the rows already stored, at that price.
"""

from collections.abc import Sequence

from migrations.helpers import run_script

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    run_script(
        """
        ALTER TABLE idempotency_keys
            DROP CONSTRAINT idempotency_keys_key_format,
            ADD CONSTRAINT idempotency_keys_key_format
                CHECK (char_length(key) BETWEEN 1 AND 255 AND key ~ '^[\\x21-\\x7e]+$');
        """
    )


def downgrade() -> None:
    run_script(
        """
        ALTER TABLE idempotency_keys
            DROP CONSTRAINT idempotency_keys_key_format,
            ADD CONSTRAINT idempotency_keys_key_format CHECK (key ~ '^[\\x21-\\x7e]{1,255}$');
        """
    )
