"""Migrations form one chain: helpers working in parallel once landed two revisions both named
"0006", which alembic cannot order. Every revision id is unique, follows its file's number, and
there is exactly one head."""

from __future__ import annotations

import re

from alembic.script import ScriptDirectory

from ledger.database import alembic_config


def _scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config("postgresql://unused", "unused"))


def test_exactly_one_head() -> None:
    assert len(_scripts().get_heads()) == 1, _scripts().get_heads()


def test_revisions_are_a_single_line_numbered_like_their_files() -> None:
    scripts = _scripts()
    revisions = list(scripts.walk_revisions())
    files = sorted(re.match(r"(\d{4})_", r.path.rsplit("/", 1)[-1]).group(1) for r in revisions)  # type: ignore[union-attr]
    assert len(set(files)) == len(files), f"two migration files share a number: {files}"
    for rev in revisions:
        number = rev.path.rsplit("/", 1)[-1][:4]
        assert rev.revision == number, f"{rev.path}: revision {rev.revision!r} should be {number!r}"
        if rev.down_revision is not None:
            assert rev.down_revision == f"{int(number) - 1:04d}", f"{rev.path} does not follow its predecessor"
