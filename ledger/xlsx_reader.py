"""Reading an uploaded XLSX safely: values only, never macros, links or formulas of ours.

An XLSX is a zip of XML parts. Before openpyxl sees the file, the zip's own directory is checked:
- it is a zip at all, holding a workbook (not a .docx, a renamed .xls, or random bytes);
- no macros (``xl/vbaProject.bin``, the xlsm content type) and no external links
  (``xl/externalLinks/``): we never run or follow them, and refusing says so plainly;
- the declared uncompressed sizes and ratios are bounded, so a zip bomb (a few KiB that inflate
  to gigabytes) is refused before a byte is inflated. Python's zipfile stops reading a member at
  its declared size, so a member cannot lie its way past this check;
- no XML part declares a DTD (entity expansion attacks).
Then openpyxl reads in read-only mode with ``data_only=True``: a formula cell yields the value
Excel last computed and saved; we never evaluate a formula.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator
from typing import Any

from ledger.errors import ValidationFailed

ZIP_MAGIC = b"PK\x03\x04"
OLE2_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # .xls, .et (WPS) and other pre-2007 formats

MEMBERS_MAX = 2_000
# A 10,000-row sheet is ~2-5 MB of XML; 200 MiB leaves room for wide sheets and shared strings.
UNCOMPRESSED_MAX = 200 * 1024 * 1024
# Spreadsheet XML compresses ~5-30×; zip bombs run to 1,000× and more. Small members may compress
# better (runs of the same style), so the ratio applies only above RATIO_FLOOR.
RATIO_MAX = 150
RATIO_FLOOR = 1024 * 1024
DTD_SCAN_BYTES = 4096
MACRO_CONTENT_TYPE = b"macroEnabled"
# Columns read per row; a treasurer's sheet has a dozen or two, and a cell at column XFD must not
# make every row 16,384 values wide.
COLUMNS_MAX = 64


def file_problem(message: str) -> ValidationFailed:
    return ValidationFailed.on("file", message)


def check_xlsx(data: bytes) -> None:
    """Refuse what is not a plain workbook we can read safely. Errors: ValidationFailed (``file``)."""
    if data.startswith(OLE2_MAGIC):
        raise file_problem("这是旧版 Excel（.xls）或 WPS（.et）文件：请在 Excel/WPS 中另存为 .xlsx 或 CSV 后再导入")
    if not data.startswith(ZIP_MAGIC):
        raise file_problem("不是有效的 Excel（.xlsx）文件")
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        members = archive.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError, NotImplementedError) as exc:
        raise file_problem("文件已损坏，不是有效的 Excel（.xlsx）文件") from exc
    names = {m.filename for m in members}
    if len(members) > MEMBERS_MAX:
        raise file_problem("文件内部结构异常（部件过多），拒绝读取")
    if any(name.lower().endswith("vbaproject.bin") for name in names):
        raise file_problem("文件含有宏（.xlsm）：出于安全考虑不导入宏文件，请另存为不含宏的 .xlsx 或 CSV")
    if any(name.startswith("xl/externalLinks/") for name in names):
        raise file_problem("文件含有指向其他工作簿的外部链接：请先在 Excel/WPS 中“断开链接”（只保留数值）后再导入")
    if "xl/workbook.xml" not in names or "[Content_Types].xml" not in names:
        raise file_problem("不是 Excel 表格（.xlsx）：文件里没有工作簿")
    total = 0
    for m in members:
        if m.flag_bits & 0x1:
            raise file_problem("文件已加密：请取消密码保护后再导入")
        total += m.file_size
        if m.file_size > RATIO_FLOOR and m.file_size > RATIO_MAX * max(m.compress_size, 1):
            raise file_problem("文件解压后异常膨胀（疑似压缩炸弹），拒绝读取")
    if total > UNCOMPRESSED_MAX:
        raise file_problem("文件解压后过大（超过 200 MiB），拒绝读取")
    with archive:
        try:
            content_types = archive.read("[Content_Types].xml")
            if MACRO_CONTENT_TYPE in content_types:
                raise file_problem("文件是启用宏的工作簿（.xlsm）：请另存为不含宏的 .xlsx 或 CSV")
            for m in members:
                if m.filename.endswith((".xml", ".rels")):
                    with archive.open(m) as part:
                        head = part.read(DTD_SCAN_BYTES)
                    if b"<!DOCTYPE" in head or b"<!ENTITY" in head:
                        raise file_problem("文件内部含有不安全的 XML 声明（DTD），拒绝读取")
        except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError) as exc:
            raise file_problem("文件已损坏，不是有效的 Excel（.xlsx）文件") from exc


def read_xlsx_sheets(data: bytes) -> Iterator[tuple[str, Iterator[tuple[Any, ...]]]]:
    """Each worksheet's name and its rows (tuples of values: str, int, float, datetime, bool or
    None; the first is row 1), after :func:`check_xlsx`. Errors: ValidationFailed (``file``)."""
    check_xlsx(data)
    import openpyxl  # imported here: a CSV import never pays for it

    try:
        workbook = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True, keep_links=False)
    except Exception as exc:  # openpyxl raises many kinds on a damaged workbook
        raise file_problem("无法读取这个 Excel 文件：文件可能已损坏，请在 Excel/WPS 中打开后另存为 .xlsx") from exc
    try:
        for sheet in workbook.worksheets:
            yield sheet.title, _rows(sheet)
    finally:
        workbook.close()


def _rows(sheet: Any) -> Iterator[tuple[Any, ...]]:
    if all(hasattr(sheet, a) for a in ("_shared_strings", "_worksheet_path")) and hasattr(sheet.parent, "_archive"):
        yield from _lean_rows(sheet)
        return
    # The <dimension> a file declares is not trusted: too small, openpyxl would stop reading early
    # and rows would be lost silently; too large, it would pad every row to 16,384 columns.
    sheet.reset_dimensions()
    try:
        # Dates come back as datetime: openpyxl converts cells whose number format is a date one.
        yield from sheet.iter_rows(max_col=COLUMNS_MAX, values_only=True)
    except ValidationFailed:
        raise
    except Exception as exc:
        raise file_problem("无法读取这个 Excel 文件：工作表已损坏，请在 Excel/WPS 中打开后另存为 .xlsx") from exc


# -- a lean reader of one sheet's cells ----------------------------------------------------------------
#
# openpyxl builds an object per inline string and per cell (its descriptors cost ~0.3 ms a row: a
# 10,000-row sheet took seconds). The cells' values need none of that: this reads the sheet's XML
# with ElementTree's iterparse, using what openpyxl already read of the workbook (shared strings,
# which styles are dates, the 1900/1904 epoch) so the values are the ones openpyxl would give.

_NS = "{http://schemas.openxmlformats.org/spreadsheetml/2006/main}"
_ROW, _CELL, _V, _IS, _T, _RPH = (_NS + t for t in ("row", "c", "v", "is", "t", "rPh"))


def _column(ref: str | None, previous: int) -> int:
    """0-based column of a cell reference (``"C12"`` → 2); without one, the next column."""
    if not ref:
        return previous + 1
    index = 0
    for ch in ref:
        if "A" <= ch <= "Z":
            index = index * 26 + ord(ch) - 64
        else:
            break
    return index - 1


def _inline_text(cell: Any) -> str:
    inline = cell.find(_IS)
    if inline is None:
        return ""
    # Rich text runs are joined; phonetic guides (rPh) are not part of the value.
    phonetic = {id(t) for ph in inline.iter(_RPH) for t in ph.iter(_T)}
    return "".join(t.text or "" for t in inline.iter(_T) if id(t) not in phonetic)


def _number(text: str) -> int | float:
    if text.lstrip("-").isdigit():
        return int(text)
    return float(text)


def _lean_rows(sheet: Any) -> Iterator[tuple[Any, ...]]:
    from xml.etree.ElementTree import iterparse

    from openpyxl.utils.datetime import from_excel

    workbook = sheet.parent
    shared = sheet._shared_strings
    date_styles = set(getattr(workbook, "_date_formats", ()))
    epoch = workbook.epoch
    expected = 1
    try:
        with workbook._archive.open(sheet._worksheet_path) as source:
            for _, element in iterparse(source):
                if element.tag != _ROW:
                    continue
                number = int(element.get("r") or expected)
                while expected < number:  # rows the file leaves out are empty rows
                    yield ()
                    expected += 1
                values: list[Any] = []
                column = -1
                for cell in element.iter(_CELL):
                    column = _column(cell.get("r"), column)
                    if column >= COLUMNS_MAX:
                        continue
                    kind = cell.get("t", "n")
                    if kind == "inlineStr":
                        value: Any = _inline_text(cell)
                    else:
                        text = cell.findtext(_V)
                        if text is None or text == "":
                            value = None
                        elif kind == "s":
                            value = shared[int(text)]
                        elif kind == "n":
                            value = _number(text)
                            if int(cell.get("s") or 0) in date_styles:
                                value = from_excel(value, epoch)
                        elif kind == "b":
                            value = text == "1"
                        elif kind == "d":
                            from datetime import datetime

                            value = datetime.fromisoformat(text)
                        else:  # "str" (a formula's text), "e" (#N/A, #DIV/0!): the text shown
                            value = text
                    if column >= len(values):
                        values.extend([None] * (column - len(values) + 1))
                    values[column] = value
                element.clear()
                yield tuple(values)
                expected = number + 1
    except ValidationFailed:
        raise
    except Exception as exc:
        raise file_problem("无法读取这个 Excel 文件：工作表已损坏，请在 Excel/WPS 中打开后另存为 .xlsx") from exc
