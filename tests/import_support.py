"""Real spreadsheets for the import tests: XLSX files written by openpyxl (and, where openpyxl cannot
write what Excel writes, its zip parts edited by hand) and CSV bytes as Excel and WPS save them."""

from __future__ import annotations

import io
import re
import zipfile
from collections.abc import Sequence
from datetime import date, timedelta
from typing import Any

import openpyxl

from tests.api_support import today

HEADER = ("日期", "姓名", "房号", "金额", "方式", "收据号", "备注")


def day(days_ago: int = 10) -> date:
    return today() - timedelta(days=days_ago)


def xlsx(
    rows: Sequence[Sequence[Any]],
    *,
    title: str = "众筹明细",
    number_formats: dict[int, str] | None = None,
    extra_sheets: dict[str, Sequence[Sequence[Any]]] | None = None,
) -> bytes:
    """A workbook whose first sheet holds ``rows`` from A1; ``number_formats`` maps a 0-based column
    to an Excel number format for every cell of it (dates as date cells, amounts as 0.00)."""
    wb = openpyxl.Workbook()
    ws = wb.active
    assert ws is not None
    ws.title = title
    for r in rows:
        ws.append(list(r))
    for col, fmt in (number_formats or {}).items():
        for (cell,) in ws.iter_rows(min_col=col + 1, max_col=col + 1):
            if not isinstance(cell.value, str):
                cell.number_format = fmt
    for name, sheet_rows in (extra_sheets or {}).items():
        extra = wb.create_sheet(name)
        for r in sheet_rows:
            extra.append(list(r))
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()


def csv_text(rows: Sequence[Sequence[Any]]) -> str:
    def cell(v: Any) -> str:
        s = "" if v is None else str(v)
        return f'"{s}"' if any(ch in s for ch in ',"\n') else s

    return "".join(",".join(cell(v) for v in r) + "\r\n" for r in rows)


def contribution_rows(n: int, *, start: int = 1, amount: str = "200.00") -> list[tuple[Any, ...]]:
    """``n`` contributions by different households, as a treasurer lists them."""
    return [
        (
            day(5).isoformat(),
            f"居民{i:05d}",
            f"{i % 30 + 1}栋{i % 4 + 1}单元{i % 600 + 101}",
            amount,
            "微信",
            f"SJ-{i:05d}",
            "",
        )
        for i in range(start, start + n)
    ]


def rewrite_part(data: bytes, name: str, edit: Any) -> bytes:
    """The same zip with one part changed by ``edit(text) -> text`` (what openpyxl cannot write)."""
    src = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            content = src.read(info.filename)
            if info.filename == name:
                content = edit(content.decode()).encode()
            dst.writestr(info, content)
    return out.getvalue()


def add_part(data: bytes, name: str, content: bytes, *, compress: int = zipfile.ZIP_DEFLATED) -> bytes:
    src = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            dst.writestr(info, src.read(info.filename))
        dst.writestr(zipfile.ZipInfo(name), content, compress_type=compress)
    return out.getvalue()


def with_cached_formula(data: bytes, cell: str, formula: str, cached: str) -> bytes:
    """Turn ``cell`` of the first sheet into a formula cell whose saved value is ``cached``, as
    Excel saves it (openpyxl writes formulas without values)."""

    def edit(xml: str) -> str:
        pattern = re.compile(rf'<c r="{cell}"([^>]*)>(.*?)</c>')
        attrs = re.sub(r'\s*t="[^"]*"', "", pattern.search(xml).group(1))  # type: ignore[union-attr]
        return pattern.sub(f'<c r="{cell}"{attrs}><f>{formula}</f><v>{cached}</v></c>', xml, count=1)

    return rewrite_part(data, "xl/worksheets/sheet1.xml", edit)
