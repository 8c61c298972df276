"""Moved: the command line is assembled in api/cli/ with the rest of the service (issue 9).

Console scripts installed before the move still name ``ledger.cli:main``; this stub forwards them
until every checkout has run ``scripts/setup.sh`` again (it reinstalls when pyproject.toml changes).
Remove it then, and its line in tests/test_import_contract.py.
"""

from __future__ import annotations


def main() -> None:
    from api.cli import main as cli_main  # the one allowed upward import, transitional

    cli_main()
