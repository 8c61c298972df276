"""Entries as spreadsheets (CSV for any tool, XLSX for Excel/WPS) and as JSON (``ledger export``),
masked unless the caller may see names, all three from the same rows. CSV is UTF-8 with a BOM so
that Excel opens the Chinese correctly.

Every text cell is safe to open in a spreadsheet (OWASP "CSV injection"): a payee, memo or name
typed by a treasurer or resident that starts like a formula gets a leading apostrophe, and XLSX
text cells are written as strings, never as formulas. Amounts stay numbers (exact decimals), so
the amount column can still be summed.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator
from decimal import Decimal

from openpyxl import Workbook
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE, TYPE_STRING, WriteOnlyCell
from openpyxl.styles import Alignment, Font
from openpyxl.utils import get_column_letter
from openpyxl.worksheet._write_only import WriteOnlyWorksheet

from ledger.entry_reads import RecordedEntry
from reports.display import entry_contributor, entry_counterparty, signed_fen
from reports.labels import CHANNEL_LABELS, KIND_LABELS

HEADER = [
    "序号",
    "类型",
    "发生日期",
    "金额（元）",
    "出资人/收款单位",
    "楼栋/住址",
    "方式",
    "收据号/发票号",
    "拨付单位",
    "文号",
    "科目",
    "说明",
    "冲正序号",
    "被冲正于",
    "记账时间",
    "叶哈希",
]
AMOUNT_COLUMN = HEADER.index("金额（元）")
COLUMN_WIDTHS = [6, 10, 12, 14, 22, 12, 8, 14, 20, 18, 12, 30, 8, 8, 22, 66]

# What makes Excel, WPS or LibreOffice read a cell as a formula (or a DDE command) when the file is
# opened: the OWASP list. Tab and carriage return count because some spreadsheets strip them and
# then see the "=" behind them.
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
_BOLD = Font(bold=True)
_RIGHT = Alignment(horizontal="right")

# The JSON export's keys, one per HEADER column.
JSON_KEYS = (
    "seq",
    "kind",
    "occurred_on",
    "amount",
    "name",
    "household",
    "channel",
    "receipt_no",
    "grantor",
    "document_no",
    "category",
    "note",
    "reverses",
    "reversed_by",
    "recorded_at",
    "leaf_hash",
)


def neutralise(text: str) -> str:
    """``-2+3`` → ``'-2+3``: a leading apostrophe makes a spreadsheet show the text as text. Kept
    in both CSV and XLSX so the two exports hold the same text, and so a cell stays harmless when
    a user edits it or saves the XLSX as CSV. (The JSON API has the text exactly as recorded.)"""
    return "'" + text if text.startswith(FORMULA_TRIGGERS) else text


def _amount(fen: int) -> Decimal:
    """Exact yuan with two places (``Decimal('-1200.00')``), never a float."""
    return Decimal(fen).scaleb(-2)


def entry_note(fields: dict[str, object]) -> str:
    """The 说明 cell: what the entry's kind records about it (an in-kind entry's description, a
    reversal's reason), then the treasurer's memo, joined by "；". Every text recorded is kept:
    a memo once hid an in-kind entry's description, and a reversal's reason."""
    texts = (fields.get("description"), fields.get("reason"), fields.get("memo"))
    return "；".join(dict.fromkeys(t for t in texts if isinstance(t, str) and t))


def export_rows(
    entries: Iterable[RecordedEntry], *, unmasked: bool, spreadsheet: bool = True
) -> Iterator[list[object]]:
    """One list per entry in HEADER's order: ints for seq numbers, a Decimal for the amount,
    text for everything else ("" for an empty cell), neutralised unless not for a ``spreadsheet``."""
    for e in entries:
        f = e.fields
        who, where = entry_contributor(e, unmasked=unmasked) if e.contributor else (entry_counterparty(e), "")
        note = entry_note(f)
        texts = [
            who,
            where,
            CHANNEL_LABELS.get(f.get("channel") or "", ""),
            f.get("receipt_no") or f.get("invoice_no") or "",
            f.get("grantor") or "",
            f.get("document_no") or "",
            f.get("category") or "",
            note,
        ]
        yield [
            e.seq,
            KIND_LABELS[e.kind],
            e.occurred_on.isoformat(),
            _amount(signed_fen(e.kind, e.amount_fen)),
            *(neutralise(t) if spreadsheet else t for t in texts),
            e.reverses_seq or "",
            e.reversed_by or "",
            e.recorded_at.isoformat(timespec="seconds"),
            e.leaf_hash.hex(),
        ]


def csv_header() -> bytes:
    """The BOM and the header line: the first chunk of a CSV export."""
    return "\ufeff".encode() + csv_chunk_of_rows([HEADER])


def csv_chunk_of_rows(rows: Iterable[Iterable[object]]) -> bytes:
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerows(rows)
    return out.getvalue().encode("utf-8")


def csv_chunk(entries: Iterable[RecordedEntry], *, unmasked: bool) -> bytes:
    """The CSV lines of some entries (no header): an export is streamed a batch at a time."""
    return csv_chunk_of_rows(export_rows(entries, unmasked=unmasked))


def entries_csv(entries: Iterable[RecordedEntry], *, unmasked: bool) -> bytes:
    return csv_header() + csv_chunk(entries, unmasked=unmasked)


class XlsxWriter:
    """An XLSX export written row by row (openpyxl write-only mode: rows go to a temporary file,
    memory stays flat however many there are). Synchronous and CPU-bound: run it off the event
    loop."""

    def __init__(self, *, unmasked: bool, title: str) -> None:
        self.unmasked = unmasked
        self.book = Workbook(write_only=True)
        self.book.properties.title = title
        self.sheet: WriteOnlyWorksheet = self.book.create_sheet("记账凭证")
        for i, width in enumerate(COLUMN_WIDTHS, start=1):
            self.sheet.column_dimensions[get_column_letter(i)].width = width
        self.sheet.freeze_panes = "A2"
        self.sheet.append([self._text(h, font=_BOLD) for h in HEADER])

    def _text(self, value: str, *, font: Font | None = None) -> WriteOnlyCell:
        # A control character stored before the API refused them would make openpyxl refuse the
        # whole sheet: show it as U+FFFD instead.
        cell = WriteOnlyCell(self.sheet, ILLEGAL_CHARACTERS_RE.sub("\ufffd", value))
        # openpyxl guesses a type from the value: "=…" would become a formula and "#N/A" an
        # error. Text is text, whatever it starts with.
        cell.data_type = TYPE_STRING
        if font is not None:
            cell.font = font
        return cell

    def _amount(self, value: object) -> WriteOnlyCell:
        # An exact Decimal (not a float) so that Excel can sum the column.
        cell = WriteOnlyCell(self.sheet, value)
        cell.alignment = _RIGHT
        cell.number_format = "#,##0.00"
        return cell

    def append(self, entries: Iterable[RecordedEntry]) -> None:
        for row in export_rows(entries, unmasked=self.unmasked):
            self.sheet.append(
                [
                    self._amount(v) if i == AMOUNT_COLUMN else self._text(v) if isinstance(v, str) else v
                    for i, v in enumerate(row)
                ]
            )

    def finish(self) -> bytes:
        buffer = io.BytesIO()
        self.book.save(buffer)
        return buffer.getvalue()


def entries_xlsx(entries: Iterable[RecordedEntry], *, unmasked: bool, title: str) -> bytes:
    writer = XlsxWriter(unmasked=unmasked, title=title)
    writer.append(entries)
    return writer.finish()


def entries_json(
    entries: list[RecordedEntry], *, unmasked: bool, project: str, title: str, tree_size: int, root_hash: bytes
) -> bytes:
    """The spreadsheets' rows as objects under JSON_KEYS (``kind`` and ``channel`` their Chinese
    labels, ``kind_code`` the identifier, the amount a string: never a float), text exactly as
    recorded (no spreadsheet opens it), with the tree head they were read at so that a reader can
    hold them against a sheet."""
    items = []
    for entry, row in zip(entries, export_rows(entries, unmasked=unmasked, spreadsheet=False), strict=True):
        item: dict[str, object] = dict(zip(JSON_KEYS, row, strict=True))
        item["amount"] = str(item["amount"])
        item["reverses"] = item["reverses"] or None
        item["reversed_by"] = item["reversed_by"] or None
        item["kind_code"] = entry.kind
        items.append(item)
    document = {
        "project": project,
        "title": title,
        "masked": not unmasked,
        "tree_size": tree_size,
        "root_hash": root_hash.hex(),
        "columns": dict(zip(JSON_KEYS, HEADER, strict=True)),
        "entries": items,
    }
    return json.dumps(document, ensure_ascii=False, indent=1).encode("utf-8") + b"\n"
