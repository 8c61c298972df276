"""Entries as spreadsheets (CSV for any tool, XLSX for Excel/WPS) and as JSON (``ledger export``),
masked unless the caller may see names. CSV is UTF-8 with a BOM so that Excel opens the Chinese
correctly. All three are built from the same rows, so they never disagree."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable
from decimal import Decimal

from openpyxl import Workbook
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE
from openpyxl.styles import Alignment, Font
from openpyxl.utils import get_column_letter

from ledger.entries import RecordedEntry
from ledger.masking import public_contributor
from ledger.money import format_fen
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

# The JSON export's keys, one per HEADER column (values as in the CSV: money a string, never a number).
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


def _rows(entries: Iterable[RecordedEntry], unmasked: bool) -> Iterable[list[object]]:
    for e in entries:
        f = e.fields
        who, where = f.get("payee") or "", ""
        if e.contributor is not None:
            c = e.contributor
            if unmasked and not c.erased:
                who, where = c.name or "", c.household or ""
            else:
                who, building = public_contributor(c.name, c.household, c.type, anonymous=e.anonymous, erased=c.erased)
                where = building or ""
        note = f.get("memo") or f.get("description") or f.get("reason") or ""
        yield [
            e.seq,
            KIND_LABELS[e.kind],
            e.occurred_on.isoformat(),
            format_fen(-e.amount_fen if e.kind == "reversal" else e.amount_fen),
            who,
            where,
            CHANNEL_LABELS.get(f.get("channel") or "", ""),
            f.get("receipt_no") or f.get("invoice_no") or "",
            f.get("grantor") or "",
            f.get("document_no") or "",
            f.get("category") or "",
            note,
            e.reverses_seq or "",
            e.reversed_by or "",
            e.recorded_at.isoformat(timespec="seconds"),
            e.leaf_hash.hex(),
        ]


def entries_csv(entries: list[RecordedEntry], *, unmasked: bool) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(HEADER)
    for row in _rows(entries, unmasked):
        # A leading =, +, - or @ would run as a formula in Excel: neutralise it.
        writer.writerow([f"'{v}" if isinstance(v, str) and v.startswith(("=", "+", "@")) else v for v in row])
    return "\ufeff".encode() + out.getvalue().encode("utf-8")


def entries_xlsx(entries: list[RecordedEntry], *, unmasked: bool, title: str) -> bytes:
    book = Workbook(write_only=False)
    sheet = book.active
    sheet.title = "记账凭证"
    sheet.append(HEADER)
    for cell in sheet[1]:
        cell.font = Font(bold=True)
    for row in _rows(entries, unmasked):
        # An exact Decimal (not a float) so that Excel can sum the column.
        row[3] = Decimal(str(row[3]))
        # A control character stored before the API refused them would make openpyxl refuse the
        # whole sheet: show it as U+FFFD instead.
        sheet.append([ILLEGAL_CHARACTERS_RE.sub("\ufffd", v) if isinstance(v, str) else v for v in row])
    for i, width in enumerate([6, 10, 12, 14, 22, 12, 8, 14, 20, 18, 12, 30, 8, 8, 22, 66], start=1):
        sheet.column_dimensions[get_column_letter(i)].width = width
    for cell in sheet["D"][1:]:
        cell.alignment = Alignment(horizontal="right")
        cell.number_format = "#,##0.00"
    sheet.freeze_panes = "A2"
    book.properties.title = title
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


def entries_json(
    entries: list[RecordedEntry], *, unmasked: bool, project: str, title: str, tree_size: int, root_hash: bytes
) -> bytes:
    """The CSV's rows as objects (``kind`` and ``channel`` as their Chinese labels, ``kind_code`` the
    identifier), with the tree head they were read at so a reader can check them against a sheet."""
    items = []
    for entry, row in zip(entries, _rows(entries, unmasked), strict=True):
        item: dict[str, object] = dict(zip(JSON_KEYS, row, strict=True))
        item["kind_code"] = entry.kind
        item["reverses"] = item["reverses"] or None
        item["reversed_by"] = item["reversed_by"] or None
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
