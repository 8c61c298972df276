"""How the ledger's facts are shown to people — once, for every output: the JSON API and the HTML
pages and workspace (through api/presenters.py and api/pages/views.py), the CSV, XLSX and JSON
exports, and the PDF sheet.

- who: a contributor masked in public (ledger/masking.py does the masking; this decides when),
  shown in full to the community's own staff unless erased;
- signed amounts: a reversal (红字冲销) carries its original's amount and is shown negative;
- ratios: the participation rate is defined once (ledger/summary.py ``participation_rate``); it
  is shown as a JSON number of four places, or as a percentage of one place rounded half up
  (reports/formatting.py ``percent``: the sheet's, the pages' and the workspace's alike);
- labels: reports/labels.py (kinds from ledger/kinds.py, channels, sources, types, accounts).
"""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction
from typing import TYPE_CHECKING

from ledger import kinds
from ledger.masking import public_contributor

if TYPE_CHECKING:
    from ledger.entry_reads import RecordedEntry


def shown_contributor(
    name: str | None,
    household: str | None,
    contributor_type: str,
    *,
    anonymous: bool,
    erased: bool,
    unmasked: bool = False,
) -> tuple[str, str | None]:
    """(name, household) as an output shows them: in full to the community's staff (``unmasked``)
    unless the person was erased; otherwise masked, to building level, 匿名 or 已注销."""
    if unmasked and not erased:
        return name or "", household
    return public_contributor(name, household, contributor_type, anonymous=anonymous, erased=erased)


def entry_contributor(entry: RecordedEntry, *, unmasked: bool = False) -> tuple[str, str]:
    """An entry's contributor as shown ("" when it names none)."""
    c = entry.contributor
    if c is None:
        return "", ""
    name, household = shown_contributor(
        c.name, c.household, c.type, anonymous=entry.anonymous, erased=c.erased, unmasked=unmasked
    )
    return name, household or ""


def entry_counterparty(entry: RecordedEntry) -> str:
    """The other party of an entry that names no contributor: the payee of a payment, the payer
    of other income (a grant's grantor has a column of its own)."""
    field = kinds.get(entry.kind).counterparty
    return (entry.fields.get(field) or "") if field in ("payee", "payer") else ""


def signed_fen(kind: str, amount_fen: int) -> int:
    """The amount as printed: a reversal negative (红字), everything else as recorded."""
    return -amount_fen if kind == kinds.REVERSAL else amount_fen


def ratio_decimal(ratio: Fraction | None) -> Decimal | None:
    """A ratio as the sheet takes it (exact to 28 digits), None when it cannot be computed."""
    if ratio is None:
        return None
    return Decimal(ratio.numerator) / Decimal(ratio.denominator)


def ratio_number(ratio: Fraction | None) -> float | None:
    """A ratio as the JSON API gives it: a number of four places (a ratio is not money)."""
    if ratio is None:
        return None
    return round(float(Decimal(ratio.numerator) / Decimal(ratio.denominator)), 4)
