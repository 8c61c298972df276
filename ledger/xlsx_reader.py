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
