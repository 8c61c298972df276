"""参与率 (participation rate): one definition for every figure that shows it."""

from __future__ import annotations

from fractions import Fraction


def participation_rate(contributors: int, households_in_scope: int | None) -> Fraction | None:
    """参与率, the one definition (the API, the pages, the sheet and the 以奖代补 computation all
    show this figure): contributors with money still in ÷ households in scope, at most 1 (a
    project may draw givers from outside its scope); None when the project has no households in
    scope. Exact: each output rounds it for display (reports/display.py)."""
    if not households_in_scope:
        return None
    return min(Fraction(contributors, households_in_scope), Fraction(1))
