"""Exports (entries.csv, entries.xlsx) that a hostile or unlucky user cannot turn against the
reader: formula injection, silent cuts, a stalled worker (issue 8, items 3, 10 and 12)."""

from __future__ import annotations

import csv
import io
import zipfile
from datetime import date
from decimal import Decimal

import openpyxl

from ledger.entries import EntryDraft, append_entries
from reports.exports import HEADER
from tests.api_support import World, contribution, expenditure, grant, reversal

# OWASP "CSV injection": a cell starting with one of these is run as a formula by a spreadsheet.
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
# What a treasurer or resident might type that a spreadsheet would run.
HOSTILE = ['=HYPERLINK("http://x","点我")', "-2+3", "@SUM(1)", "\t=1", "\r=1", "+1+1"]
PAYEE, MEMO, AMOUNT = HEADER.index("出资人/收款单位"), HEADER.index("说明"), HEADER.index("金额（元）")


def url(project: str, tail: str) -> str:
    return f"/api/v1/projects/{project}{tail}"


def csv_rows(data: bytes) -> list[list[str]]:
    assert data.startswith(b"\xef\xbb\xbf")
    # newline="" keeps a carriage return inside a quoted cell as the cell's own character.
    return list(csv.reader(io.StringIO(data[3:].decode("utf-8"), newline="")))


async def test_formula_text_is_neutralised_in_csv_and_xlsx_and_amounts_stay_numbers(world: World) -> None:
    project = await world.project()
    await world.entry(project, contribution(amount="100000"))
    for i, text in enumerate(HOSTILE):
        await world.entry(project, expenditure(amount=f"{i + 1}00.05", payee=text, memo=text))
    await world.entry(project, grant(amount="12.3", grantor="=1+1", memo="-负数开头的说明"))
    await world.entry(project, reversal(2, reason="@作废"))
    # The API trims surrounding whitespace, so a leading tab or carriage return reaches the ledger
    # only another way (an import, a record older than the rule): such text is quoted too.
    drafts = [
        EntryDraft(kind="grant", occurred_on=date(2026, 1, 5), amount_fen=101, grantor=g, memo=g)
        for g in ("\t=1", "\r=1", "\t-1\r\n=2")
    ]
    await append_entries(world.engine, project, drafts, recorded_by="test", render=lambda recorded: {})

    # The ledger keeps the text exactly as recorded; only the spreadsheets quote it. Expected
    # cells, from the JSON: every text cell starting with a trigger gets one leading apostrophe.
    entries = (await world.api.get(url(project, "/entries"), params={"limit": 100})).json()["items"]
    assert entries[1]["payee"] == HOSTILE[0] and entries[-3]["memo"] == "\t=1" and entries[-2]["memo"] == "\r=1"
    expected = {
        e["seq"]: (
            e.get("payee") or "",
            e.get("memo") or e.get("reason") or "",
            Decimal(e["amount"]) * (-1 if e["kind"] == "reversal" else 1),
        )
        for e in entries
    }
    quoted = sum(1 for payee, memo, _ in expected.values() for t in (payee, memo) if t.startswith(FORMULA_TRIGGERS))
    assert quoted >= 2 * len(HOSTILE) + 4

    def cell(text: str) -> str:
        return "'" + text if text.startswith(FORMULA_TRIGGERS) else text

    rows = csv_rows((await world.api.get(url(project, "/entries.csv"))).content)[1:]
    by_seq = {int(r[0]): r for r in rows}
    assert set(by_seq) == set(expected)
    for seq, (payee, memo, amount) in expected.items():
        row = by_seq[seq]
        assert row[PAYEE] == cell(payee) or not payee, row
        assert row[MEMO] == cell(memo), row
        # The amount is a plain number (a reversal's minus sign is not quoted), exact to the fen.
        assert Decimal(row[AMOUNT]) == amount and not row[AMOUNT].startswith("'"), row
    assert by_seq[len(HOSTILE) + 2][HEADER.index("拨付单位")] == "'=1+1"
    for row in rows:
        for i, text in enumerate(row):
            assert i == AMOUNT or not text.startswith(FORMULA_TRIGGERS), (i, text)

    data = (await world.api.get(url(project, "/entries.xlsx"))).content
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        sheets = [n for n in archive.namelist() if n.startswith("xl/worksheets/")]
        assert sheets and all(b"<f>" not in archive.read(n) and b"<f " not in archive.read(n) for n in sheets)
    sheet = openpyxl.load_workbook(io.BytesIO(data)).active
    cells = {row[0].value: row for row in sheet.iter_rows(min_row=2)}
    assert set(cells) == set(expected)
    for seq, (payee, memo, amount) in expected.items():
        row = cells[seq]
        for c in row:
            assert c.data_type != "f", (seq, c.coordinate, c.value)
            if isinstance(c.value, str):
                assert c.data_type == "s" and not c.value.startswith(FORMULA_TRIGGERS), (seq, c.value)
        assert row[PAYEE].value == cell(payee) or not payee
        # XML reads a carriage return back as a line feed (XML 1.0, end-of-line handling).
        assert row[MEMO].value == cell(memo).replace("\r\n", "\n").replace("\r", "\n")
        assert row[AMOUNT].data_type == "n" and Decimal(str(row[AMOUNT].value)) == amount
        assert row[AMOUNT].number_format == "#,##0.00"
