"""A treasurer's spreadsheet as they keep it → a header, data rows and a 合计 row.

What is recognised (and what the template, API.md and the README promise):
- XLSX (Excel, WPS) or CSV; a CSV in UTF-8 with or without BOM, or in GB18030/GBK (what Excel
  and WPS on Chinese Windows write by default), detected and reported;
- the header in Chinese with its usual variants (日期/出资日期/时间, 姓名/出资人/户主/单位, …),
  full-width or half-width, with a unit in brackets (金额（元）) or a required mark (*金额);
- title rows and blank rows above the header, blank rows between data rows;
- a 合计 (or 总计) row at the bottom: recognised, not imported, and checked against the sum of the
  rows above it by the caller; 小计 rows are skipped.
Cell values are read by ledger/import_values.py and turned into entries by ledger/imports.py.
"""

from __future__ import annotations

import csv
import io
import re
import unicodedata
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from ledger.errors import FieldError, ValidationFailed
from ledger.import_values import text_from_cell
from ledger.xlsx_reader import OLE2_MAGIC, ZIP_MAGIC, file_problem, read_xlsx_sheets

ROWS_MAX = 10_000
SIZE_MAX = 10 * 1024 * 1024
HEADER_SCAN_ROWS = 30
# A table ends after this many blank rows in a row (a sheet formatted down to row 1,048,576 has
# nothing more to say).
BLANK_RUN_END = 1_000
CELL_CHARS_MAX = 2_000

# Every header a treasurer writes, normalised (see normalise_header), → the field it fills.
HEADER_VARIANTS: dict[str, tuple[str, ...]] = {
    "occurred_on": ("日期", "出资日期", "时间", "发生日期", "交易日期", "收款日期", "支付日期", "付款日期", "交款日期"),
    "name": ("姓名", "出资人", "户主", "单位", "出资人姓名", "出资单位", "户主姓名", "捐款人", "缴款人", "出力人"),
    "household": ("房号", "楼栋", "门牌", "门牌号", "单元", "房间号", "楼栋房号", "户号", "住址"),
    "amount": ("金额", "出资金额", "收入金额", "支出金额", "款额"),
    "channel": ("方式", "支付方式", "付款方式", "收款方式", "缴款方式", "出资方式"),
    "receipt_no": ("收据号", "票据号", "收据编号", "票据编号", "收据号码", "票据号码"),
    "memo": ("备注", "摘要", "用途"),
    "kind": ("类型", "收支类型", "类别", "款项类型"),
    "payee": ("收款单位", "收款人", "收款方"),
    "payer": ("付款方", "付款单位", "付款人"),
    "category": ("科目", "预算科目", "支出科目"),
    "invoice_no": ("发票号", "发票号码", "发票编号"),
    "grantor": ("拨款单位", "拨付单位", "拨款部门"),
    "document_no": ("文号", "批文号", "文件号", "拨款文号"),
    "description": ("出力内容", "出力说明", "劳动内容"),
    "phone": ("电话", "手机", "手机号", "联系电话", "联系方式"),
    "ignored": ("序号", "编号", "行号"),
}
HEADERS: dict[str, str] = {variant: name for name, variants in HEADER_VARIANTS.items() for variant in variants}
# The label a field goes by in messages when the file has no such column.
FIELD_LABELS = {name: variants[0] for name, variants in HEADER_VARIANTS.items()}

_UNIT_SUFFIX = re.compile(r"(?:[(\[【][^()\[\]【】]*[)\]】]|/元)$")
_SPACES = re.compile(r"\s+")
_TOTAL = frozenset(("合计", "总计", "总合计", "合计金额", "本表合计"))
_SUBTOTAL = frozenset(("小计", "本页小计"))
# Headers that give way when the sheet has a plainer column for the same field: 时间 next to 日期
# is the time of day, 单位 or 户主 next to 姓名 is the employer or the head of the household.
_SECONDARY = frozenset(("时间", "单位", "户主", "户主姓名", "住址"))
# Fields whose columns are joined in order: 楼栋 | 单元 | 房号 make one household, 摘要 | 备注 one memo.
_JOIN = {"household": "", "memo": "；"}
_JOINED = frozenset(_JOIN)


def normalise_header(text: str) -> str:
    """``"金额（元）"`` → ``"金额"``, ``"* 日 期"`` → ``"日期"``: full-width to half-width, no spaces,
    no required-mark, no trailing unit in brackets."""
    h = _SPACES.sub("", unicodedata.normalize("NFKC", text)).strip("*:：")
    h = _UNIT_SUFFIX.sub("", h)
    return h


@dataclass(frozen=True)
class Column:
    index: int
    field: str
    header: str  # as written in the file: errors name it so


@dataclass(frozen=True)
class Problem:
    """One thing the treasurer must fix: ``row`` is the 1-based row number in the file (None for the
    whole file), ``column`` the header as written there (None for the whole row)."""

    row: int | None
    column: str | None
    message: str

    def text(self) -> str:
        if self.row is None:
            return self.message
        where = f"第 {self.row} 行" + (f"「{self.column}」" if self.column else "")
        return f"{where}: {self.message}"


@dataclass
class SheetRow:
    row: int
    cells: dict[str, Any]  # field → the cell's raw value (str, number, datetime), non-blank only


@dataclass
class Table:
    format: str  # "xlsx" | "csv"
    encoding: str | None  # for a CSV: "UTF-8", "UTF-8（带 BOM）", "GB18030", "UTF-16"
    sheet: str | None
    header_row: int
    columns: list[Column]
    ignored_columns: list[str]
    rows: list[SheetRow] = field(default_factory=list)
    total_row: int | None = None
    total_value: Any = None
    problems: list[Problem] = field(default_factory=list)

    def header_index(self, name: str) -> int:
        return next((c.index for c in self.columns if c.field == name), -1)

    def header_of(self, name: str) -> str:
        for c in self.columns:
            if c.field == name:
                return c.header
        return FIELD_LABELS.get(name, name)


class TooManyRows(ValidationFailed):
    """More than ROWS_MAX data rows (API.md: 422)."""

    def __init__(self) -> None:
        message = f"数据超过 {ROWS_MAX:,} 行：请分成几个文件导入"
        super().__init__(message, [FieldError("file", message)])


Progress = Callable[[int], None]


def read_table(data: bytes, *, filename: str = "", progress: Progress | None = None) -> Table:
    """Recognise the file's format and its table. Errors: ValidationFailed (field ``file``) for a
    file that cannot be read at all; TooManyRows. Row-level problems are in ``Table.problems``."""
    if not data:
        raise file_problem("文件是空的")
    if len(data) > SIZE_MAX:
        raise file_problem("文件超过 10 MiB")
    lower = filename.lower()
    if data.startswith((ZIP_MAGIC, OLE2_MAGIC)) or lower.endswith((".xlsx", ".xlsm", ".xls", ".et")):
        return _table_from_xlsx(data, progress)
    text, encoding = decode_text(data)
    return _table_from_rows("csv", encoding, None, _csv_rows(text), progress)


# -- CSV -------------------------------------------------------------------------------------------


def decode_text(data: bytes) -> tuple[str, str]:
    """The text of a CSV and the encoding it was in. UTF-8 (with or without BOM) is tried first,
    exactly; then charset-normalizer names the encoding; anything in the GB family (GB2312, GBK) is
    read as GB18030, its superset, so ￥ and rare characters in names decode too. Errors:
    ValidationFailed (``file``)."""
    if data.startswith(b"\xef\xbb\xbf"):
        return _decode(data[3:], "utf-8", "UTF-8（带 BOM）"), "UTF-8（带 BOM）"
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return _decode(data, "utf-16", "UTF-16"), "UTF-16"
    if b"\x00" in data[:4096]:
        raise file_problem("不是文本表格（CSV）或 Excel 文件")
    try:
        return data.decode("utf-8"), "UTF-8"
    except UnicodeDecodeError:
        pass
    from charset_normalizer import from_bytes  # imported here: UTF-8 files never need it

    best = from_bytes(data[:65536]).best()
    guessed = (best.encoding if best is not None else "").lower().replace("-", "_")
    if guessed in ("gb2312", "gbk", "gb18030", "hz", "cp936") or guessed == "":
        try:
            return data.decode("gb18030"), "GB18030"
        except UnicodeDecodeError:
            pass
    elif guessed in ("big5", "big5hkscs", "cp950"):
        raise file_problem("文件是繁体中文 Big5 编码：请在 Excel/WPS 中另存为“CSV UTF-8”后再导入")
    else:
        # Short GBK files are sometimes taken for another code page; GB18030 decodes them exactly.
        try:
            text = data.decode("gb18030")
            if any("\u4e00" <= ch <= "\u9fff" for ch in text):
                return text, "GB18030"
        except UnicodeDecodeError:
            pass
    raise file_problem("无法识别文件的文字编码：请在 Excel/WPS 中另存为“CSV UTF-8”或 .xlsx 后再导入")


def _decode(data: bytes, codec: str, label: str) -> str:
    try:
        return data.decode(codec)
    except UnicodeDecodeError as exc:
        raise file_problem(f"文件声明为 {label}，但其中有无法解码的字节（第 {exc.start} 个字节附近）") from exc


def _csv_rows(text: str) -> Iterator[tuple[Any, ...]]:
    sample = text[:8192]
    try:
        dialect: Any = csv.Sniffer().sniff(sample, delimiters=",\t;")
        delimiter = dialect.delimiter
    except csv.Error:
        delimiter = ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, quotechar='"', strict=False)
    try:
        for record in reader:
            yield tuple(record)
    except csv.Error as exc:
        raise file_problem(f"CSV 格式错误（第 {reader.line_num} 行附近）：{exc}") from exc


# -- XLSX ------------------------------------------------------------------------------------------


def _table_from_xlsx(data: bytes, progress: Progress | None) -> Table:
    first_problem: ValidationFailed | None = None
    for title, rows in read_xlsx_sheets(data):
        if normalise_header(title) in ("说明", "填写说明", "使用说明"):
            continue  # the template's notes sheet
        try:
            return _table_from_rows("xlsx", None, title, rows, progress)
        except TooManyRows:
            raise
        except ValidationFailed as exc:
            first_problem = first_problem or exc
    raise first_problem or file_problem("工作簿里没有工作表")


# -- the table -------------------------------------------------------------------------------------


def _is_blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _header_row(rows: list[tuple[Any, ...]]) -> tuple[int, list[Column], list[str]] | None:
    for offset, cells in enumerate(rows):
        columns, ignored = _columns(cells)
        fields = {c.field for c in columns}
        if "amount" in fields and len(fields) >= 2:
            return offset, columns, ignored
    return None


def _columns(cells: Iterable[Any]) -> tuple[list[Column], list[str]]:
    columns: list[Column] = []
    ignored: list[str] = []
    for index, value in enumerate(cells):
        if not isinstance(value, str) or not value.strip():
            continue
        name = HEADERS.get(normalise_header(value))
        if name is None:
            ignored.append(value.strip())
        elif name != "ignored":
            columns.append(Column(index, name, value.strip()))
    return columns, ignored


_PART_UNITS = {"楼栋": "栋", "单元": "单元"}


def _part(column: Column, value: Any) -> str:
    """One part of a joined field as text; a bare number under 楼栋 or 单元 gets its unit (3 → 3栋),
    so 楼栋 3 | 单元 2 | 房号 501 is the household 3栋2单元501."""
    text = text_from_cell(value)
    if text.isdigit():
        text += _PART_UNITS.get(normalise_header(column.header), "")
    return text


def _label(value: Any) -> str:
    return _SPACES.sub("", unicodedata.normalize("NFKC", value)).rstrip(":：") if isinstance(value, str) else ""


def _table_from_rows(
    fmt: str, encoding: str | None, sheet: str | None, source: Iterator[tuple[Any, ...]], progress: Progress | None
) -> Table:
    head: list[tuple[Any, ...]] = []
    for cells in source:
        head.append(cells)
        if len(head) >= HEADER_SCAN_ROWS:
            break
    found = _header_row(head)
    if found is None:
        raise file_problem(
            f"在前 {HEADER_SCAN_ROWS} 行里没有找到表头：表头须有「金额」一列，以及「日期」「姓名」等至少一列"
            "（可下载导入模板对照）"
        )
    offset, columns, ignored = found
    table = Table(fmt, encoding, sheet, offset + 1, [], ignored)
    by_field: dict[str, list[Column]] = {}
    for c in columns:
        by_field.setdefault(c.field, []).append(c)
    for name, same in by_field.items():
        plain = [c for c in same if normalise_header(c.header) not in _SECONDARY]
        if plain and len(plain) < len(same):
            table.ignored_columns.extend(c.header for c in same if c not in plain)
            same = by_field[name] = plain
        if len(same) > 1 and name not in _JOINED:
            written = "」「".join(c.header for c in same)
            table.problems.append(
                Problem(
                    table.header_row, same[1].header, f"「{written}」是同一栏（{FIELD_LABELS[name]}），只能保留一列"
                )
            )
        table.columns.extend(same)
    table.columns.sort(key=lambda c: c.index)
    amount_index = by_field["amount"][0].index

    def rest() -> Iterator[tuple[Any, ...]]:
        yield from head[offset + 1 :]
        yield from source

    blank_run = 0
    for row_number, cells in enumerate(rest(), start=offset + 2):
        if all(_is_blank(v) for v in cells):
            blank_run += 1
            if blank_run >= BLANK_RUN_END:
                break
            continue
        blank_run = 0
        # 合计, 总计, 小计: every such label has 计 in it; most rows have none, so are not normalised.
        labels = [_label(v) for v in cells[:8] if isinstance(v, str) and "计" in v]
        if table.total_row is not None:
            # Below the 合计 row only signatures and notes (制表人, 审核人) belong.
            if amount_index < len(cells) and not _is_blank(cells[amount_index]):
                table.problems.append(Problem(row_number, None, "合计行之后还有金额：合计行须在所有数据行之后"))
            continue
        if any(label in _TOTAL for label in labels):
            table.total_row = row_number
            table.total_value = cells[amount_index] if amount_index < len(cells) else None
            continue
        if any(label in _SUBTOTAL for label in labels):
            continue
        values: dict[str, Any] = {}
        for c in table.columns:
            if c.index < len(cells) and not _is_blank(cells[c.index]):
                value = cells[c.index]
                if isinstance(value, str) and len(value) > CELL_CHARS_MAX:
                    table.problems.append(Problem(row_number, c.header, f"内容过长（超过 {CELL_CHARS_MAX} 字）"))
                    continue
                if c.field in _JOIN:
                    value = _part(c, value)
                    if c.field in values:
                        value = f"{values[c.field]}{_JOIN[c.field]}{value}"
                values[c.field] = value
        if len(table.rows) >= ROWS_MAX:
            raise TooManyRows
        table.rows.append(SheetRow(row_number, values))
        if progress is not None and len(table.rows) % 500 == 0:
            progress(len(table.rows))
    return table
