"""The detail tables of a sheet (收入、支出、出力、退款明细), laid out so WeasyPrint renders them fast.

WeasyPrint's cost grows with the number of boxes (every ``<td>`` is matched against the style
sheets, shaped and laid out on its own), so a 1,000-entry sheet printed as one ``<tr>`` per entry
takes seconds. Here ordinary entries are printed in *bands* of :data:`BAND_ROWS` consecutive
entries: one ``<tr>`` whose every cell holds that column's values for the band, one per line
(``white-space: pre``). All lines have the same height, so the columns line up exactly as in a
row-per-entry table, the band is never split across pages (``break-inside: avoid``) and a thin
rule every five entries keeps the sheet easy to read. An entry that would not fit on one line
(a long payee, a reversal with its red note) gets a ``<tr>`` of its own, where text may wrap.

The column widths are fixed (``table-layout: fixed``), so the fit test below only has to be
conservative about glyph widths: a CJK character is one em, digits 0.56 em, and so on.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from reports.formatting import date_iso, yuan
from reports.sheet_model import (
    ContributionRow,
    EntryRow,
    ExpenditureRow,
    GrantRow,
    InKindRow,
    RefundRow,
)

# Entries per band: a rule every five lines, as on ledger paper.
BAND_ROWS = 5
# Font size of the detail tables (the template's CSS uses the same value).
TABLE_FONT_PT = 9.0
# Horizontal padding of a cell, each side, in points.
CELL_PADDING_PT = 3.0
# Width of the printable area of A4 portrait with 15 mm side margins.
CONTENT_WIDTH_MM = 180.0

_MM_PER_PT = 25.4 / 72
# Advance widths in em, rounded up from Noto Serif/Sans CJK SC (the widest of the two).
_WIDE_LATIN = frozenset("MWmw@%&")
_NARROW_LATIN = {" ": 0.26, ".": 0.3, ",": 0.3, "-": 0.35, ":": 0.3, "/": 0.45}

Align = Literal["left", "right", "center"]


@dataclass(frozen=True, slots=True)
class Column:
    header: str
    width_mm: float
    align: Align
    cell: Callable[[Any], str]

    @property
    def width_em(self) -> float:
        """Room for text in the column, in em of the table font."""
        return (self.width_mm - 2 * CELL_PADDING_PT * _MM_PER_PT) / (TABLE_FONT_PT * _MM_PER_PT)


@dataclass(frozen=True, slots=True)
class Band:
    """Up to :data:`BAND_ROWS` ordinary entries, one text per column with one line per entry."""

    cells: tuple[str, ...]
    size: int

    is_band = True


@dataclass(frozen=True, slots=True)
class SingleRow:
    """One entry on its own row: a reversal (red) or one whose text needs to wrap."""

    cells: tuple[str, ...]
    is_reversal: bool

    is_band = False


@dataclass(frozen=True, slots=True)
class DetailTable:
    key: str  # css hook and anchor: contributions, grants, expenditures, in_kind, refunds
    columns: tuple[Column, ...]
    blocks: tuple[Band | SingleRow, ...]
    row_count: int
    total_fen: int  # signed sum of the amounts printed (reversals included)

    @property
    def amount_column(self) -> int:
        return next(i for i, c in enumerate(self.columns) if c.header.startswith("金额"))


def text_width_em(text: str) -> float:
    """A generous estimate of the printed width of ``text`` in em."""
    width = 0.0
    for char in text:
        if not char.isascii():
            width += 1.0  # CJK, full-width punctuation; nothing else on a sheet is wider
        elif char in _WIDE_LATIN:
            width += 1.06
        elif char.isdigit():
            width += 0.56
        elif char.isupper():
            width += 0.86
        else:
            width += _NARROW_LATIN.get(char, 0.62)
    return width


def _seq(row: EntryRow) -> str:
    return str(row.seq)


def _date(row: EntryRow) -> str:
    return date_iso(row.occurred_on)


def _amount(row: EntryRow) -> str:
    return yuan(row.amount_fen)


def _note(row: EntryRow) -> str:
    return row.reversal_note


def _columns(*middle: Column, note_mm: float) -> tuple[Column, ...]:
    head = (Column("序号", 13, "right", _seq), Column("日期", 21, "left", _date))
    tail = (Column("金额（元）", 24, "right", _amount), Column("备注", note_mm, "left", _note))
    columns = head + middle + tail
    assert abs(sum(c.width_mm for c in columns) - CONTENT_WIDTH_MM) < 0.01, columns
    return columns


CONTRIBUTION_COLUMNS = _columns(
    Column("出资人", 42, "left", lambda r: r.contributor_name),
    Column("楼栋", 13, "left", lambda r: r.building),
    Column("方式", 17, "left", lambda r: r.channel_label),
    Column("收据号", 22, "left", lambda r: r.receipt_no),
    note_mm=28,
)
GRANT_COLUMNS = _columns(
    Column("拨款单位", 50, "left", lambda r: r.grantor),
    Column("文号", 40, "left", lambda r: r.document_no),
    note_mm=32,
)
EXPENDITURE_COLUMNS = _columns(
    Column("收款单位", 56, "left", lambda r: r.payee),
    Column("科目", 16, "left", lambda r: r.category_label),
    Column("发票号", 20, "left", lambda r: r.invoice_no),
    Column("审核人", 13, "left", lambda r: r.approver_name),
    note_mm=17,
)
IN_KIND_COLUMNS = _columns(
    Column("姓名", 22, "left", lambda r: r.contributor_name),
    Column("楼栋", 14, "left", lambda r: r.building),
    Column("内容", 54, "left", lambda r: r.description),
    note_mm=32,
)
REFUND_COLUMNS = _columns(
    Column("退款对象", 26, "left", lambda r: r.contributor_name),
    Column("楼栋", 14, "left", lambda r: r.building),
    Column("事由", 50, "left", lambda r: r.memo),
    note_mm=32,
)

_COLUMNS_BY_ROW_TYPE: dict[type[EntryRow], tuple[str, tuple[Column, ...]]] = {
    ContributionRow: ("contributions", CONTRIBUTION_COLUMNS),
    GrantRow: ("grants", GRANT_COLUMNS),
    ExpenditureRow: ("expenditures", EXPENDITURE_COLUMNS),
    InKindRow: ("in_kind", IN_KIND_COLUMNS),
    RefundRow: ("refunds", REFUND_COLUMNS),
}


def _fits(cells: Sequence[str], columns: Sequence[Column]) -> bool:
    # The estimate is already an upper bound; a little slack for rounding. No line breaks.
    return all(
        "\n" not in text and text_width_em(text) <= column.width_em - 0.2
        for text, column in zip(cells, columns, strict=True)
    )


def detail_table(row_type: type[EntryRow], rows: Sequence[EntryRow]) -> DetailTable:
    """Lay out ``rows`` (all of ``row_type``, in seq order) as bands and single rows."""
    key, columns = _COLUMNS_BY_ROW_TYPE[row_type]
    blocks: list[Band | SingleRow] = []
    pending: list[tuple[str, ...]] = []

    def flush() -> None:
        if pending:
            blocks.append(Band(tuple("\n".join(column) for column in zip(*pending, strict=True)), len(pending)))
            pending.clear()

    for row in rows:
        cells = tuple(column.cell(row) for column in columns)
        if row.is_reversal or not _fits(cells, columns):
            flush()
            blocks.append(SingleRow(cells, row.is_reversal))
            continue
        pending.append(cells)
        if len(pending) == BAND_ROWS:
            flush()
    flush()
    return DetailTable(
        key=key,
        columns=columns,
        blocks=tuple(blocks),
        row_count=len(rows),
        total_fen=sum(row.amount_fen for row in rows),
    )
