"""Cell values of a treasurer's spreadsheet → amounts in fen and calendar dates, or a reason why not.

People type money and dates in many ways; every form listed here is read exactly, and anything
ambiguous is refused with a message the treasurer understands (never a guess, never a float):

- amounts: ``200``, ``200.5``, ``1,000.00``, ``¥200``, ``￥200``, ``200元``, full-width ``２００``;
  an XLSX numeric cell is taken as the number Excel displays (15 significant digits, so a formula's
  ``0.30000000000000004`` is the ``0.3`` shown) and refused if that has more than two decimals;
- dates: ``2026-11-20``, ``2026/11/20``, ``2026.11.20``, ``2026年11月20日`` (one-digit month and day
  too, an optional time after it), an Excel date cell, or an Excel serial number (``46346``).
"""

from __future__ import annotations

import re
import unicodedata
from datetime import date, datetime, timedelta
from decimal import Decimal, InvalidOperation

from ledger.money import AMOUNT_MAX_FEN

# Excel's day 0 is 1899-12-30 in the 1900 date system (the fictitious 1900-02-29 is day 60, so
# counting from the 30th gives the right date for every serial after it, i.e. every real one here).
EXCEL_EPOCH = date(1899, 12, 30)
# Serial numbers of 2000-01-01 and 2099-12-31: anything else in a date column is not a date.
SERIAL_MIN, SERIAL_MAX = 36526, 73050


class CellError(ValueError):
    """A value that cannot be read; ``str(exc)`` is the Chinese message for the treasurer."""


def normalise_text(value: str) -> str:
    """Full-width letters, digits and punctuation to their ASCII forms (NFKC), outer spaces off."""
    return unicodedata.normalize("NFKC", value).strip()


_GROUPED = re.compile(r"^[0-9]{1,3}(?:,[0-9]{3})+(?:\.[0-9]+)?$")
_PLAIN = re.compile(r"^[0-9]+(?:\.[0-9]+)?$")
_CURRENCY_PREFIXES = ("¥", "RMB", "CNY", "人民币")
_CURRENCY_SUFFIXES = ("元整", "元", "圆")


def _shown(value: str) -> str:
    return value if len(value) <= 30 else value[:30] + "…"


def amount_from_text(raw: str) -> int:
    """Fen from what a person typed. Errors: CellError."""
    text = normalise_text(raw)  # ￥ → ¥, ２００ → 200, full-width comma and point too
    if not text:
        raise CellError("金额为空（若是公式，请在 Excel/WPS 中打开、保存后再导入）")
    body = text
    for prefix in _CURRENCY_PREFIXES:
        if body.upper().startswith(prefix):
            body = body[len(prefix) :].strip()
            break
    for suffix in _CURRENCY_SUFFIXES:
        if body.endswith(suffix):
            body = body[: -len(suffix)].strip()
            break
    if body.startswith(("-", "−", "(")) and any(ch.isdigit() for ch in body):
        raise CellError(f'金额须大于 0："{_shown(raw)}"（退款请在「类型」写退款，金额写正数）')
    if _GROUPED.fullmatch(body):
        body = body.replace(",", "")
    elif not _PLAIN.fullmatch(body):
        if "," in body:
            raise CellError(f'无法识别 "{_shown(raw)}"：千位分隔符须每三位一个，如 1,000.00')
        raise CellError(f'无法识别 "{_shown(raw)}"：金额须写成数字，如 200、1,000.00、¥200 或 200元')
    return _fen(Decimal(body), raw)


def amount_from_number(value: int | float | Decimal) -> int:
    """Fen from a numeric XLSX cell, read as Excel displays it (15 significant digits)."""
    if isinstance(value, bool):
        raise CellError("金额不能是是/否（TRUE/FALSE）")
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise CellError("金额不是有效数字")
        number = Decimal(format(value, ".15g"))
    else:
        number = Decimal(value)
    return _fen(number, format(number, "f"))


def _fen(number: Decimal, shown: str) -> int:
    if number <= 0:
        raise CellError(f'金额须大于 0："{_shown(shown)}"')
    try:
        cents = number.scaleb(2)
        if cents != cents.to_integral_value():
            raise CellError(f'金额 "{_shown(shown)}" 超过两位小数：请核对后写到分，如 33.33')
        fen = int(cents)
    except InvalidOperation as exc:
        raise CellError(f'无法识别 "{_shown(shown)}"') from exc
    if fen > AMOUNT_MAX_FEN:
        raise CellError("单笔金额不得超过 100,000,000.00 元")
    return fen


_DATE_TEXT = re.compile(
    r"^(?P<y>[0-9]{4})(?:(?P<sep>[-/.])(?P<m1>[0-9]{1,2})(?P=sep)(?P<d1>[0-9]{1,2})"
    r"|年(?P<m2>[0-9]{1,2})月(?P<d2>[0-9]{1,2})[日号]?)"
    r"(?:[ T][0-9]{1,2}:[0-9]{2}(?::[0-9]{2}(?:\.[0-9]+)?)?)?$"
)
_DATE_WORD_SPACES = re.compile(r"\s*([年月日号])\s*")
DATE_FORMS = "2026-11-20、2026/11/20、2026.11.20 或 2026年11月20日"


def date_from_text(raw: str) -> date:
    """A calendar date from what a person typed (or an Excel serial typed as text). Errors: CellError."""
    text = _DATE_WORD_SPACES.sub(r"\1", normalise_text(raw))
    if not text:
        raise CellError("日期为空")
    if text.isdigit() and len(text) == 5:
        return date_from_serial(int(text))
    match = _DATE_TEXT.fullmatch(text)
    if match is None:
        raise CellError(f'无法识别日期 "{_shown(raw)}"：请写成 {DATE_FORMS}')
    month = match["m1"] or match["m2"]
    day = match["d1"] or match["d2"]
    try:
        return date(int(match["y"]), int(month), int(day))
    except ValueError as exc:
        raise CellError(f'日期 "{_shown(raw)}" 不存在') from exc


def date_from_serial(serial: int | float) -> date:
    """An Excel serial number (days since 1899-12-30; a fraction is the time of day)."""
    if isinstance(serial, bool) or not SERIAL_MIN <= serial < SERIAL_MAX + 1:
        raise CellError(f"无法识别日期 {serial}：请写成 {DATE_FORMS}")
    return EXCEL_EPOCH + timedelta(days=int(serial))


def date_from_cell(value: object) -> date:
    """A date from any cell value: an Excel date cell, a serial number or text."""
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if isinstance(value, float) and not value.is_integer():
            # A date with a time of day (45000.5) is still that day.
            return date_from_serial(value)
        return date_from_serial(int(value))
    if isinstance(value, str):
        return date_from_text(value)
    raise CellError(f"无法识别日期：请写成 {DATE_FORMS}")


def amount_from_cell(value: object) -> int:
    if isinstance(value, (int, float, Decimal)) and not isinstance(value, bool):
        return amount_from_number(value)
    if isinstance(value, str):
        return amount_from_text(value)
    if isinstance(value, (date, datetime)):
        raise CellError("金额一栏是日期：请检查列是否错位")
    raise CellError("无法识别金额")


def text_from_cell(value: object) -> str:
    """A text field's value: numbers as Excel shows them (a receipt number 1001 stays "1001")."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "是" if value else "否"
    if isinstance(value, float):
        return format(Decimal(format(value, ".15g")), "f") if not value.is_integer() else str(int(value))
    if isinstance(value, datetime):
        return value.date().isoformat() if value.time() == datetime.min.time() else value.isoformat(sep=" ")
    if isinstance(value, date):
        return value.isoformat()
    return unicodedata.normalize("NFC", str(value)).strip()
