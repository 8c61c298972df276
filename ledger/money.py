"""Money is integer fen (分) everywhere inside; yuan strings only at the edges."""

from __future__ import annotations

import re

AMOUNT_MAX_FEN = 10_000_000_000  # 100,000,000.00 yuan per entry (API.md)
_YUAN = re.compile(r"^(?P<whole>0|[1-9][0-9]{0,11})(?:\.(?P<frac>[0-9]{1,2}))?$")


def parse_yuan(text: str) -> int:
    """Parse a decimal yuan string (``"200"``, ``"200.5"``, ``"200.50"``) into fen.

    Refuses anything else: signs, exponents, separators, more than two decimals.
    """
    match = _YUAN.fullmatch(text)
    if match is None:
        raise ValueError('金额须为元的十进制字符串，最多两位小数，如 "200.50"')
    frac = (match["frac"] or "").ljust(2, "0")
    return int(match["whole"]) * 100 + int(frac)


def parse_entry_amount(text: str) -> int:
    fen = parse_yuan(text)
    if fen <= 0:
        raise ValueError("金额必须大于零")
    if fen > AMOUNT_MAX_FEN:
        raise ValueError("单笔金额不得超过 100,000,000.00 元")
    return fen


def format_fen(fen: int) -> str:
    """``123450`` → ``"1234.50"``; negative amounts keep their sign."""
    sign = "-" if fen < 0 else ""
    whole, frac = divmod(abs(fen), 100)
    return f"{sign}{whole}.{frac:02d}"


def format_fen_grouped(fen: int) -> str:
    """``123450`` → ``"1,234.50"`` for sheets and pages."""
    sign = "-" if fen < 0 else ""
    whole, frac = divmod(abs(fen), 100)
    return f"{sign}{whole:,}.{frac:02d}"
