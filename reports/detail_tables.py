"""The detail tables of a sheet (收入、支出、出力、退款明细), laid out so WeasyPrint renders them fast.

WeasyPrint spends its time per box and per line of text: every ``<td>`` is matched against the
style sheets, laid out and drawn on its own, so 1,000 entries printed as one ``<tr>`` of eight
cells each take seconds. Here the body of a detail table is set like a ledger printout:

- the text is monospaced (Noto Sans Mono CJK SC: a Latin character is exactly half an em, a 汉字
  exactly one em), and every column is a whole number of half-em *cells* wide;
- ordinary entries are printed in *bands* of :data:`BAND_ROWS`: one ``<tr>`` with one cell, one
  line per entry, each column's text padded with spaces to its column (amounts and seq numbers
  right-aligned). A band is never split across pages and a rule every five entries keeps the
  sheet easy to read; the header row above is an ordinary ``<thead>`` whose columns have the same
  widths, repeated on every page;
- an entry that does not fit on one line (a long payee, a character of unknown width) or that
  must stand out (a reversal, printed in red with its note) gets an ordinary row of cells, with
  the same column widths and font, where text may wrap.

One line per entry instead of one box and one line per cell makes a 1,000-entry sheet several
times faster (see ``bench/sheet.py``) and prints the same table.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from reports.formatting import date_iso, yuan
from reports.sheet_model import (
    ContributionRow,
    EntryRow,
    ExpenditureRow,
    GrantRow,
    InKindRow,
    OtherIncomeRow,
    PledgeRow,
    RefundRow,
    TableTotal,
)

# Entries per band: a rule every five lines, as on ledger paper.
BAND_ROWS = 5
# Font size of the detail tables' body; a cell is half of it (the template's CSS uses both).
TABLE_FONT_PT = 9.0
CELL_PT = TABLE_FONT_PT / 2
# Cells of a table's width: A4 portrait less 15 mm margins is 180 mm, 113.4 cells of 4.5 pt.
TABLE_CELLS = 113
# Each column keeps one empty cell on either side of its text.
COLUMN_PADDING_CELLS = 1

Align = Literal["left", "right"]


def cell_width(char: str) -> int | None:
    """Width of ``char`` in cells in Noto Sans Mono CJK SC, or None where it is not known exactly.

    Only ranges the font covers with fixed advances: printable ASCII (half an em), the unified
    ideographs and extension A, CJK punctuation, full-width forms and a few symbols (one em).
    """
    code = ord(char)
    if 0x20 <= code < 0x7F:
        return 1
    if (
        0x4E00 <= code <= 0x9FEF
        or 0x3400 <= code <= 0x4DB5
        or 0x3000 <= code <= 0x3029
        or 0x3030 <= code <= 0x303F
        or 0xFF01 <= code <= 0xFF60
        or char in "·×÷‘’“”…※"
    ):
        return 2
    return None


def text_cells(text: str) -> int | None:
    """Width of ``text`` in cells, or None if any character's width is not known exactly."""
    total = 0
    for char in text:
        width = cell_width(char)
        if width is None:
            return None
        total += width
    return total


@dataclass(frozen=True, slots=True)
class Column:
    header: str
    width_cells: int
    align: Align
    cell: Callable[[Any], str]

    @property
    def width_pt(self) -> float:
        return self.width_cells * CELL_PT

    @property
    def room_cells(self) -> int:
        return self.width_cells - 2 * COLUMN_PADDING_CELLS


@dataclass(frozen=True, slots=True)
class Band:
    """Up to :data:`BAND_ROWS` ordinary entries, one padded line each."""

    text: str
    size: int

    is_band = True
    is_note = False


@dataclass(frozen=True, slots=True)
class SingleRow:
    """One entry on its own row of cells: a reversal (red) or one whose text needs to wrap."""

    cells: tuple[str, ...]
    is_reversal: bool

    is_band = False
    is_note = False


@dataclass(frozen=True, slots=True)
class NoteRow:
    """A line across the table: the rows a sheet too long to print whole leaves out."""

    text: str

    is_band = False
    is_note = True


@dataclass(frozen=True, slots=True)
class DetailTable:
    key: str  # css hook: contributions, grants, expenditures, in_kind, refunds
    columns: tuple[Column, ...]
    blocks: tuple[Band | SingleRow | NoteRow, ...]
    row_count: int  # entries the table holds in the ledger, printed or not
    total_fen: int  # the ledger's signed total of those entries (reversals included)
    listed: int  # entries printed (fewer than row_count only on a sheet cut at its row limit)
    # The closing row: its label, then one text per column from the amount column on.
    total_label: str = "本期合计"
    total_cells: tuple[str, ...] = ()

    @property
    def amount_column(self) -> int:
        return next(i for i, c in enumerate(self.columns) if c.cell is _amount)

    @property
    def closing_cells(self) -> tuple[str, ...]:
        trailing = len(self.columns) - self.amount_column
        cells = self.total_cells or (yuan(self.total_fen),)
        return cells + ("",) * (trailing - len(cells))

    @property
    def rule_positions_pt(self) -> tuple[float, ...]:
        """Where the vertical rules between columns fall, from the table's left edge."""
        positions, x = [], 0.0
        for column in self.columns[:-1]:
            x += column.width_pt
            positions.append(x)
        return tuple(positions)


def _seq(row: EntryRow) -> str:
    return str(row.seq)


def _date(row: EntryRow) -> str:
    return date_iso(row.occurred_on)


def _amount(row: EntryRow) -> str:
    return yuan(row.amount_fen)


def _note(row: EntryRow) -> str:
    return row.reversal_note


def _columns(*middle: Column, note_cells: int) -> tuple[Column, ...]:
    # 金额 holds -100,000,000.00, the largest entry the ledger accepts, on one line.
    head = (Column("序号", 7, "right", _seq), Column("日期", 12, "left", _date))
    tail = (Column("金额（元）", 17, "right", _amount), Column("备注", note_cells, "left", _note))
    columns = head + middle + tail
    assert sum(c.width_cells for c in columns) == TABLE_CELLS, columns
    return columns


CONTRIBUTION_COLUMNS = _columns(
    Column("出资人", 28, "left", lambda r: r.contributor_name),
    Column("楼栋", 8, "left", lambda r: r.building),
    Column("方式", 10, "left", lambda r: r.channel_label),
    Column("收据号", 12, "left", lambda r: r.receipt_no),
    note_cells=19,
)
GRANT_COLUMNS = _columns(
    Column("拨款单位", 34, "left", lambda r: r.grantor),
    Column("文号", 25, "left", lambda r: r.document_no),
    note_cells=18,
)
OTHER_INCOME_COLUMNS = _columns(
    Column("付款方", 34, "left", lambda r: r.payer),
    Column("事由", 25, "left", lambda r: r.memo),
    note_cells=18,
)
EXPENDITURE_COLUMNS = _columns(
    Column("收款单位", 32, "left", lambda r: r.payee),
    Column("科目", 10, "left", lambda r: r.category_label),
    Column("发票号", 10, "left", lambda r: r.invoice_no),
    Column("审核人", 9, "left", lambda r: r.approver_name),
    note_cells=16,
)
IN_KIND_COLUMNS = _columns(
    Column("姓名", 12, "left", lambda r: r.contributor_name),
    Column("楼栋", 8, "left", lambda r: r.building),
    Column("内容", 36, "left", lambda r: r.description),
    note_cells=21,
)
REFUND_COLUMNS = _columns(
    Column("退款对象", 24, "left", lambda r: r.contributor_name),
    Column("楼栋", 8, "left", lambda r: r.building),
    Column("事由", 28, "left", lambda r: r.memo),
    note_cells=17,
)

# Every pledge to date (cumulative): the promise, what was paid against it, what is still owed.
PLEDGE_COLUMNS = (
    Column("序号", 7, "right", _seq),
    Column("认筹日期", 12, "left", _date),
    Column("认筹人", 20, "left", lambda r: r.contributor_name),
    Column("楼栋", 8, "left", lambda r: r.building),
    Column("认筹金额（元）", 17, "right", _amount),
    Column("实缴（元）", 17, "right", lambda r: yuan(r.fulfilled_fen)),
    Column("未缴（元）", 17, "right", lambda r: yuan(r.outstanding_fen)),
    Column("备注", 15, "left", lambda r: f"超额{yuan(r.excess_fen)}" if r.excess_fen else ""),
)
assert sum(c.width_cells for c in PLEDGE_COLUMNS) == TABLE_CELLS

_COLUMNS_BY_ROW_TYPE: dict[type[EntryRow], tuple[str, tuple[Column, ...]]] = {
    ContributionRow: ("contributions", CONTRIBUTION_COLUMNS),
    GrantRow: ("grants", GRANT_COLUMNS),
    OtherIncomeRow: ("other_income", OTHER_INCOME_COLUMNS),
    ExpenditureRow: ("expenditures", EXPENDITURE_COLUMNS),
    InKindRow: ("in_kind", IN_KIND_COLUMNS),
    RefundRow: ("refunds", REFUND_COLUMNS),
    PledgeRow: ("pledges", PLEDGE_COLUMNS),
}


def band_line(cells: Sequence[str], columns: Sequence[Column]) -> str | None:
    """The entry as one line of text padded to the columns, or None if a cell does not fit."""
    parts: list[str] = []
    for text, column in zip(cells, columns, strict=True):
        width = text_cells(text)
        if width is None or width > column.room_cells:
            return None
        gap = " " * (column.room_cells - width)
        edge = " " * COLUMN_PADDING_CELLS
        parts.append(edge + (gap + text if column.align == "right" else text + gap) + edge)
    return "".join(parts).rstrip()


def detail_table(
    row_type: type[EntryRow], rows: Sequence[EntryRow], total: TableTotal | None = None, omitted_note: str = ""
) -> DetailTable:
    """Lay out ``rows`` (all of ``row_type``, in seq order) as bands and single rows. ``total``
    is the ledger's count and sum (default: the rows'); where it holds more rows than printed,
    ``omitted_note`` closes the printed rows."""
    key, columns = _COLUMNS_BY_ROW_TYPE[row_type]
    if total is None:
        paid = sum(r.fulfilled_fen for r in rows) if row_type is PledgeRow else 0  # type: ignore[attr-defined]
        total = TableTotal(rows=len(rows), amount_fen=sum(r.amount_fen for r in rows), paid_fen=paid)
    blocks: list[Band | SingleRow | NoteRow] = []
    pending: list[str] = []

    def flush() -> None:
        if pending:
            blocks.append(Band("\n".join(pending), len(pending)))
            pending.clear()

    for row in rows:
        cells = tuple(column.cell(row) for column in columns)
        line = None if row.is_reversal else band_line(cells, columns)
        if line is None:
            flush()
            blocks.append(SingleRow(cells, row.is_reversal))
            continue
        pending.append(line)
        if len(pending) == BAND_ROWS:
            flush()
    flush()
    if total.rows > len(rows):
        blocks.append(NoteRow(omitted_note))
    table = DetailTable(
        key=key,
        columns=columns,
        blocks=tuple(blocks),
        row_count=total.rows,
        total_fen=total.amount_fen,
        listed=len(rows),
    )
    if row_type is PledgeRow:
        owed = total.amount_fen - total.paid_fen
        return replace(
            table, total_label="累计", total_cells=(yuan(total.amount_fen), yuan(total.paid_fen), yuan(owed))
        )
    return table
