"""How figures look on paper: yuan with separators, Chinese and ISO dates, percentages, hashes.

These are the Jinja filters of the sheet template; they refuse anything that is not the type the
view model promises, so a float can never sneak onto a sheet as money.
"""

from __future__ import annotations

from datetime import date
from decimal import ROUND_HALF_UP, Decimal

from ledger.money import format_fen_grouped


def yuan(fen: int) -> str:
    """Integer fen as yuan with thousands separators: ``1234550`` → ``"12,345.50"``, ``-5`` → ``"-0.05"``."""
    if type(fen) is not int:
        raise TypeError(f"money is int fen, got {type(fen).__name__}: {fen!r}")
    return format_fen_grouped(fen)


def date_cn(day: date) -> str:
    """Date in prose: ``2026年12月1日``."""
    return f"{day.year}年{day.month}月{day.day}日"


def date_iso(day: date) -> str:
    """Date in tables: ``2026-12-01``."""
    return day.isoformat()


def percent(fraction: Decimal | None) -> str:
    """A Decimal fraction with one decimal: ``Decimal("0.5904")`` → ``"59.0%"``; None → ``"—"``."""
    if fraction is None:
        return "—"
    if not isinstance(fraction, Decimal):
        raise TypeError(f"ratios are Decimal, got {type(fraction).__name__}")
    return f"{(fraction * 100).quantize(Decimal('0.1'), rounding=ROUND_HALF_UP)}%"


def hex_groups(hex_digits: str, size: int = 4) -> str:
    """``"3f2a9c41…"`` → ``"3f2a 9c41 …"``: the whole hash, in groups a reader can compare aloud."""
    return " ".join(hex_digits[i : i + size] for i in range(0, len(hex_digits), size))


def thousands(value: int) -> str:
    """``20000`` → ``"20,000"``."""
    return f"{value:,}"


def count_or_dash(value: int | None) -> str:
    return "—" if value is None else str(value)


def hours(value: Decimal) -> str:
    """``Decimal("86.0")`` → ``"86"``, ``Decimal("12.5")`` → ``"12.5"``."""
    text = f"{value:f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


FILTERS = {
    "yuan": yuan,
    "date_cn": date_cn,
    "date_iso": date_iso,
    "percent": percent,
    "hex_groups": hex_groups,
    "count_or_dash": count_or_dash,
    "thousands": thousands,
    "hours": hours,
}
