"""Reading spreadsheets as treasurers make them (no database): headers and their variants, title and
blank rows, the 合计 row, encodings, amounts and dates in every listed form, hostile files."""

from __future__ import annotations

import zipfile
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import pytest

from ledger.errors import ValidationFailed
from ledger.import_values import CellError, amount_from_cell, amount_from_text, date_from_cell, date_from_text
from ledger.imports import ImportReport, prepare_import
from ledger.projects import BudgetLine, Project
from ledger.spreadsheet import HEADER_VARIANTS, ROWS_MAX, TooManyRows, read_table
from tests.import_support import (
    HEADER,
    add_part,
    contribution_rows,
    csv_text,
    day,
    rewrite_part,
    with_cached_formula,
    xlsx,
)

PROJECT = Project(
    id=1,
    community_id=1,
    community_code="c",
    community_name="锦绣花园小区",
    community_district="",
    code="p",
    title="小区路面刷黑",
    description="",
    households_in_scope=400,
    stage="proposal",
    spending_gate="waived",
    created_at=datetime(2026, 1, 1),
    budget_lines=[
        BudgetLine("materials", "沥青材料", "crowdfunding", 6_000_000),
        BudgetLine("labour", "人工费", "grant", 2_000_000),
    ],
)


def prepare(data: bytes, **kw: Any) -> ImportReport:
    return prepare_import(PROJECT, data, **kw)


def messages(report: ImportReport) -> list[str]:
    return [p.text() for p in report.problems]


# -- amounts ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("typed", "fen"),
    [
        ("200", 20000),
        ("200.5", 20050),
        ("200.50", 20050),
        ("1,000.00", 100000),
        ("12,345,678.90", 1234567890),
        ("¥200", 20000),
        ("￥200", 20000),
        ("¥ 1,000", 100000),
        ("200元", 20000),
        ("200.00元", 20000),
        ("２００", 20000),
        ("１，０００．５０", 100050),
        ("RMB 200", 20000),
        (" 200 ", 20000),
    ],
)
def test_amounts_as_people_type_them(typed: str, fen: int) -> None:
    assert amount_from_text(typed) == fen


@pytest.mark.parametrize(
    ("typed", "says"),
    [
        ("两百", '无法识别 "两百"'),
        ("200.505", "超过两位小数"),
        ("1,00", "千位分隔符"),
        ("1.000,00", "无法识别"),
        ("-200", "须大于 0"),
        ("(200)", "须大于 0"),
        ("0", "须大于 0"),
        ("", "金额为空"),
        ("200 300", "无法识别"),
        ("2e3", "无法识别"),
        ("100000000.01", "不得超过"),
    ],
)
def test_ambiguous_amounts_are_errors(typed: str, says: str) -> None:
    with pytest.raises(CellError, match=says.replace("(", r"\(")):
        amount_from_text(typed)


@pytest.mark.parametrize(
    ("cell", "fen"),
    [(200, 20000), (200.5, 20050), (0.1 + 0.2, 30), (1234.56, 123456), (Decimal("7.10"), 710), (99.99, 9999)],
)
def test_numeric_cells_are_read_as_displayed(cell: Any, fen: int) -> None:
    assert amount_from_cell(cell) == fen


@pytest.mark.parametrize("cell", [33.333, 1 / 3, True, -5.0, float("nan")])
def test_numeric_cells_beyond_two_places_or_not_money_are_refused(cell: Any) -> None:
    with pytest.raises(CellError):
        amount_from_cell(cell)


# -- dates -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "typed",
    [
        "2026-11-20",
        "2026/11/20",
        "2026.11.20",
        "2026年11月20日",
        "2026年11月20号",
        "2026 年 11 月 20 日",
        "2026/11/20 14:30",
        "2026-11-20 14:30:05",
        "２０２６－１１－２０",
        "46346",
    ],
)
def test_dates_in_every_listed_form(typed: str) -> None:
    assert date_from_text(typed) == date(2026, 11, 20)


def test_dates_one_digit_month_and_day() -> None:
    assert date_from_text("2026/1/5") == date(2026, 1, 5)
    assert date_from_text("2026年1月5日") == date(2026, 1, 5)


@pytest.mark.parametrize(
    ("cell", "expected"),
    [
        (datetime(2026, 11, 20, 9, 30), date(2026, 11, 20)),
        (date(2026, 11, 20), date(2026, 11, 20)),
        (46346, date(2026, 11, 20)),
        (46346.75, date(2026, 11, 20)),
    ],
)
def test_excel_date_cells_and_serial_numbers(cell: Any, expected: date) -> None:
    assert date_from_cell(cell) == expected


@pytest.mark.parametrize("typed", ["20/11/2026", "11/20/2026", "26-11-20", "2026-13-01", "2026-02-30", "昨天", "123"])
def test_ambiguous_or_impossible_dates_are_errors(typed: str) -> None:
    with pytest.raises(CellError):
        date_from_text(typed)


# -- headers ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "variant"),
    [(f, v) for f, variants in HEADER_VARIANTS.items() if f not in ("amount", "ignored") for v in variants],
)
def test_every_header_variant_is_recognised(field: str, variant: str) -> None:
    table = read_table(csv_text([(variant, "金额"), ("x", "200")]).encode())
    assert [c.field for c in table.columns] == [field, "amount"]
    assert table.columns[0].header == variant


@pytest.mark.parametrize(
    "written",
    ["金额", "出资金额", "金额（元）", "金额(元)", "金额/元", "出资金额（元）", "* 金 额", "金额【元】", "收入金额"],
)
def test_amount_header_variants(written: str) -> None:
    table = read_table(csv_text([("日期", written), (day().isoformat(), "200")]).encode())
    assert table.columns[1].field == "amount" and table.columns[1].header == written.strip()


def test_full_width_and_spaced_headers() -> None:
    table = read_table(csv_text([("日　期", "姓 名", "金额（元）", "＊备注")]).encode() + b"2026-11-20,a,1,\r\n")
    assert [c.field for c in table.columns] == ["occurred_on", "name", "amount", "memo"]


def test_title_and_blank_rows_above_the_header_and_blank_rows_between() -> None:
    rows: list[tuple[Any, ...]] = [
        ("锦绣花园小区路面刷黑众筹明细表",),
        (),
        ("制表单位：锦绣花园业委会", None, None, "单位：元"),
        HEADER,
        *contribution_rows(2),
        (),
        (None, None, None, None),
        *contribution_rows(1, start=3),
    ]
    report = prepare(xlsx(rows))
    assert report.problems == []
    assert report.table.header_row == 4
    assert [r.row for r in report.rows] == [5, 6, 9]
    assert report.data_rows == 3


def test_no_header_is_a_file_problem() -> None:
    with pytest.raises(ValidationFailed, match="没有找到表头"):
        read_table(csv_text([("a", "b"), ("1", "2")]).encode())


def test_two_amount_columns_are_an_error_but_time_next_to_date_is_not() -> None:
    report = prepare(
        csv_text([("日期", "时间", "姓名", "金额", "出资金额"), ("2026-11-20", "10:30", "张三", "1", "1")]).encode()
    )
    assert any("只能保留一列" in m for m in messages(report))
    assert "时间" in report.table.ignored_columns
    assert not any("时间" in m for m in messages(report))


def test_building_unit_and_room_columns_make_one_household() -> None:
    rows = [("日期", "姓名", "楼栋", "单元", "房号", "金额"), (day().isoformat(), "张三", 3, 2, 501, 200)]
    report = prepare(xlsx(rows))
    assert report.problems == []
    contributor = report.rows[0].draft.contributor
    assert contributor is not None and contributor.household == "3栋2单元501"


def test_unknown_columns_are_listed_not_imported() -> None:
    report = prepare(
        csv_text([("日期", "姓名", "金额", "经手人"), (day().isoformat(), "张三", "200", "李四")]).encode()
    )
    assert report.problems == [] and report.table.ignored_columns == ["经手人"]


# -- the 合计 row ----------------------------------------------------------------------------------


def test_a_matching_total_row_is_recognised_and_not_imported() -> None:
    rows = [HEADER, *contribution_rows(3), ("合计", None, None, "600.00"), ("制表人：王五", None, None, None)]
    report = prepare(xlsx(rows))
    assert report.problems == []
    assert len(report.rows) == 3 and report.table.total_row == 5


def test_a_total_row_that_does_not_match_is_an_error_on_its_row() -> None:
    rows = [HEADER, *contribution_rows(3), ("合 计：", None, None, "¥700.00")]
    report = prepare(csv_text(rows).encode())
    assert len(report.problems) == 1
    p = report.problems[0]
    assert (p.row, p.column) == (5, "金额")
    assert "合计 700.00 元与上面各行金额之和 600.00 元不符" in p.message and "相差 100.00 元" in p.message


def test_subtotal_rows_are_skipped_and_amounts_below_the_total_are_errors() -> None:
    rows = [
        HEADER,
        *contribution_rows(2),
        ("小计", None, None, "400"),
        ("合计", None, None, "400"),
        *contribution_rows(1),
    ]
    report = prepare(csv_text(rows).encode())
    assert [r.row for r in report.rows] == [2, 3]
    assert messages(report) == ["第 6 行: 合计行之后还有金额：合计行须在所有数据行之后"]


# -- encodings -------------------------------------------------------------------------------------


def test_gbk_csv_as_excel_on_chinese_windows_saves_it() -> None:
    # Written by hand: "日期,姓名,金额\r\n" and a row, in GBK (日 = C8D5, 期 = C6DA, 张 = D5C5 …).
    data = (
        b"\xc8\xd5\xc6\xda,\xd0\xd5\xc3\xfb,\xbd\xf0\xb6\xee\r\n"
        + day().isoformat().encode()
        + b",\xd5\xc5\xc8\xfd,\xa3\xa4200\r\n"
    )
    assert data.decode("gbk").startswith("日期,姓名,金额")
    report = prepare(data)
    assert report.problems == [] and report.table.encoding == "GB18030"
    draft = report.rows[0].draft
    assert draft.amount_fen == 20000 and draft.contributor and draft.contributor.name == "张三"


def test_gb18030_names_beyond_gbk_decode() -> None:
    text = csv_text([("日期", "姓名", "房号", "金额"), (day().isoformat(), "王䶮", "3栋", "￥1,000.00")])
    report = prepare(text.encode("gb18030"))
    assert report.problems == []
    assert report.rows[0].draft.contributor.name == "王䶮"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("encode", "label"),
    [
        (lambda t: t.encode("utf-8"), "UTF-8"),
        (lambda t: b"\xef\xbb\xbf" + t.encode("utf-8"), "UTF-8（带 BOM）"),
        (lambda t: t.encode("utf-16"), "UTF-16"),
        (lambda t: t.encode("gbk"), "GB18030"),
    ],
)
def test_encodings_are_detected_and_named(encode: Any, label: str) -> None:
    rows = [("众筹明细",), HEADER, *contribution_rows(20)]
    report = prepare(encode(csv_text(rows)))
    assert report.problems == [], messages(report)
    assert report.table.encoding == label and len(report.rows) == 20


def test_tab_separated_text_is_read() -> None:
    data = "日期\t姓名\t金额\r\n2026-11-20\t张三\t1,000.00\r\n".encode()
    table = read_table(data)
    assert table.rows[0].cells["amount"] == "1,000.00"


# -- rows into entries -----------------------------------------------------------------------------


def test_a_mixed_sheet_of_every_kind() -> None:
    d = day().isoformat()
    rows = [
        (
            "日期",
            "类型",
            "姓名",
            "房号",
            "金额",
            "方式",
            "收据号",
            "科目",
            "收款单位",
            "发票号",
            "拨款单位",
            "文号",
            "备注",
        ),
        (d, "众筹", "张三", "3栋2单元501", "200", "微信", "SJ-1", None, None, None, None, None, None),
        (d, "以奖代补", None, None, "50,000", None, None, None, None, None, "下陆区住建局", "下住建〔2026〕12号", None),
        (d, "支出", None, None, "1200", "银行转账", None, "沥青材料", "某沥青公司", "04417305", None, None, "沥青"),
        (d, "退款", "张三", "3栋2单元501", "20", "现金", None, None, None, None, None, None, "退多交"),
        (d, "出力", "李四", None, "300", None, None, None, None, None, None, None, "义务劳动 6 小时"),
        (d, "认筹", "王五", None, "500", None, None, None, None, None, None, None, None),
    ]
    report = prepare(xlsx(rows))
    assert report.problems == [], messages(report)
    kinds = [r.draft.kind for r in report.rows]
    assert kinds == ["contribution", "grant", "expenditure", "refund", "in_kind", "pledge"]
    grant, spend, in_kind = report.rows[1].draft, report.rows[2].draft, report.rows[4].draft
    assert grant.grantor == "下陆区住建局" and grant.document_no == "下住建〔2026〕12号"
    assert spend.category == "materials" and spend.payee == "某沥青公司" and spend.channel is None
    assert in_kind.description == "义务劳动 6 小时" and in_kind.memo is None
    assert report.by_kind()["grant"] == (1, 5_000_000)


def test_the_name_column_names_the_grantor_and_payee_and_units_are_organisations() -> None:
    d = day().isoformat()
    rows = [
        ("日期", "类型", "单位", "金额", "科目"),
        (d, "以奖代补", "下陆区住建局", "1000", None),
        (d, "支出", "某沥青工程有限公司", "100", "materials"),
        (d, "众筹", "锦绣花园党支部", "100", None),
        (d, "众筹", "某某商会", "100", None),
        (d, "众筹", "物业服务中心", "100", None),
    ]
    report = prepare(xlsx(rows))
    assert report.problems == [], messages(report)
    assert report.rows[0].draft.grantor == "下陆区住建局"
    assert report.rows[1].draft.payee == "某沥青工程有限公司"
    types = [r.draft.contributor.type for r in report.rows[2:]]  # type: ignore[union-attr]
    assert types == ["party_branch", "organization", "organization"]


def test_other_income_rows_name_their_payer() -> None:
    # 其他收入 is a kind of the ledger now (issue 9): its 姓名/单位 column is the payer, never a contributor.
    rows = [("日期", "类型", "姓名", "金额"), (day().isoformat(), "其他收入", "某银行", "35.20")]
    report = prepare(csv_text(rows).encode())
    assert report.problems == [] and report.rows[0].draft.payer == "某银行"
    rows = [("日期", "类型", "金额"), (day().isoformat(), "其他收入", "35.20")]
    assert messages(prepare(csv_text(rows).encode())) == [
        "第 2 行「付款方」: 其他收入须写明付款方（如开户银行、余料买方）"
    ]


def test_problems_name_row_and_column_as_written() -> None:
    rows: list[tuple[Any, ...]] = [
        ("众筹明细",),
        ("日期", "出资人", "金额（元）", "支付方式"),
        *[(day().isoformat(), "张三", "200", "微信")] * 9,
    ]
    rows.append((day().isoformat(), "张三", "两百", "刷卡"))
    rows.append((day(-3).isoformat(), "", "100", "现金"))
    report = prepare(csv_text(rows).encode())
    assert messages(report) == [
        '第 12 行「金额（元）」: 无法识别 "两百"：金额须写成数字，如 200、1,000.00、¥200 或 200元',
        '第 12 行「支付方式」: 无法识别 "刷卡"：须为 微信、支付宝、现金、银行转账 或 其他',
        f"第 13 行「日期」: 日期 {day(-3).isoformat()} 晚于今天",
        "第 13 行「出资人」: 众筹须写明出资人姓名",
    ]


def test_columns_that_do_not_apply_to_the_kind_and_unknown_categories() -> None:
    rows = [
        ("日期", "类型", "姓名", "金额", "收据号", "科目"),
        (day().isoformat(), "支出", "某公司", "100", "SJ-1", "水泥"),
    ]
    report = prepare(csv_text(rows).encode())
    assert messages(report) == [
        "第 2 行「收据号」: 不适用于支出：请清空这一格，或写在「备注」里",
        '第 2 行「科目」: "水泥" 不在本项目预算中：须为 沥青材料（materials）、人工费（labour）',
    ]


def test_phone_numbers_in_public_text_are_refused_but_have_their_own_column() -> None:
    rows = [
        ("日期", "姓名", "电话", "金额", "备注"),
        (day().isoformat(), "张三", "13812345678", "200", "联系 13812345678"),
    ]
    report = prepare(csv_text(rows).encode())
    assert [p.column for p in report.problems] == ["备注"]
    rows[1] = (day().isoformat(), "张三", "13812345678", "200", "")
    report = prepare(csv_text(rows).encode())
    assert report.problems == [] and report.rows[0].draft.contributor.phone == "13812345678"  # type: ignore[union-attr]


def test_kind_column_absent_uses_the_default_kind() -> None:
    rows = [("日期", "收款单位", "金额", "科目"), (day().isoformat(), "某公司", "100", "人工费")]
    report = prepare(csv_text(rows).encode(), default_kind="expenditure")
    assert report.problems == [] and report.rows[0].draft.category == "labour"


# -- XLSX cells ------------------------------------------------------------------------------------


def test_xlsx_date_cells_serials_and_numeric_amounts() -> None:
    d = day()
    serial = (d - date(1899, 12, 30)).days
    rows = [
        HEADER,
        (datetime(d.year, d.month, d.day), "张三", "1栋", 200, "微信", 1001, None),
        (serial, "李四", "2栋", 1234.5, "现金", "SJ-2", None),
        (f"{d.year}年{d.month}月{d.day}日", "王五", "3栋", 0.1 + 0.2, "支付宝", "SJ-3", None),
    ]
    report = prepare(xlsx(rows, number_formats={0: "yyyy-mm-dd", 3: "#,##0.00"}))
    assert report.problems == [], messages(report)
    assert [r.draft.occurred_on for r in report.rows] == [d, d, d]
    assert [r.draft.amount_fen for r in report.rows] == [20000, 123450, 30]
    assert report.rows[0].draft.receipt_no == "1001"


def test_an_amount_cell_with_three_decimals_is_refused_even_if_shown_with_two() -> None:
    rows = [HEADER, (day().isoformat(), "张三", "1栋", 33.333, "微信", None, None)]
    report = prepare(xlsx(rows, number_formats={3: "0.00"}))
    assert messages(report) == ['第 2 行「金额」: 金额 "33.333" 超过两位小数：请核对后写到分，如 33.33']


def test_a_formula_is_taken_as_its_saved_value_never_evaluated() -> None:
    rows = [HEADER, (day().isoformat(), "张三", "1栋", 1, "微信", None, None)]
    data = with_cached_formula(xlsx(rows), "D2", "1+1", "200")
    report = prepare(data)
    assert report.problems == [] and report.rows[0].draft.amount_fen == 20000
    # A formula never calculated (no saved value) is an empty cell, and said so.
    data = rewrite_part(xlsx(rows), "xl/worksheets/sheet1.xml", lambda x: x.replace("<v>1</v>", "<f>1+1</f>"))
    assert "公式" in messages(prepare(data))[0]


def test_the_notes_sheet_and_sheets_without_a_header_are_skipped() -> None:
    data = xlsx([("说明",), ("这一页是说明",)], title="封面", extra_sheets={"明细": [HEADER, *contribution_rows(2)]})
    report = prepare(data)
    assert report.table.sheet == "明细" and len(report.rows) == 2


# -- hostile files ---------------------------------------------------------------------------------

GOOD = xlsx([HEADER, *contribution_rows(2)])


@pytest.mark.parametrize(
    ("data", "says"),
    [
        (add_part(GOOD, "xl/vbaProject.bin", b"\x00" * 100), "宏"),
        (
            rewrite_part(
                GOOD,
                "[Content_Types].xml",
                lambda x: x.replace(
                    "spreadsheetml.sheet.main+xml", "application/vnd.ms-excel.sheet.macroEnabled.main+xml"
                ),
            ),
            "宏",
        ),
        (add_part(GOOD, "xl/externalLinks/externalLink1.xml", b"<externalLink/>"), "外部链接"),
        (add_part(GOOD, "xl/bomb.xml", b"\x00" * (4 * 1024 * 1024)), "压缩炸弹"),
        (
            rewrite_part(GOOD, "xl/workbook.xml", lambda x: '<!DOCTYPE x [<!ENTITY a "aaaa">]>' + x),
            "DTD",
        ),
        (b"PK\x03\x04" + b"\x00" * 200, "损坏"),
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 500, "旧版 Excel"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + b"\x00" * 100, "不是文本表格"),
        (b"", "空"),
    ],
    ids=["vba", "macro-content-type", "external-link", "zip-bomb", "dtd", "broken-zip", "xls", "png", "empty"],
)
def test_hostile_or_wrong_files_are_refused(data: bytes, says: str) -> None:
    with pytest.raises(ValidationFailed, match=says) as refused:
        prepare(data)
    assert refused.value.errors[0].field == "file"


def test_a_word_document_is_not_a_spreadsheet() -> None:
    import io

    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        z.writestr("[Content_Types].xml", "<Types/>")
        z.writestr("word/document.xml", "<w:document/>")
    with pytest.raises(ValidationFailed, match="没有工作簿"):
        prepare(out.getvalue(), filename="a.xlsx")


def test_a_big5_csv_is_refused_with_advice() -> None:
    text = csv_text([("日期", "姓名", "金額", "備註"), *[("2026-11-20", "張三豐", "200", "繁體中文的備註內容")] * 30])
    with pytest.raises(ValidationFailed, match=r"Big5|编码"):
        prepare(text.encode("big5"))


def test_more_than_ten_thousand_rows_is_refused() -> None:
    rows = [HEADER, *contribution_rows(ROWS_MAX + 1)]
    with pytest.raises(TooManyRows):
        read_table(csv_text(rows).encode())
    assert len(read_table(csv_text(rows[:-1]).encode()).rows) == ROWS_MAX


def test_a_declared_dimension_that_lies_loses_no_rows() -> None:
    data = rewrite_part(
        xlsx([HEADER, *contribution_rows(5)]),
        "xl/worksheets/sheet1.xml",
        lambda x: __import__("re").sub(r'<dimension ref="[^"]*"/>', '<dimension ref="A1:B2"/>', x),
    )
    assert len(prepare(data).rows) == 5


def test_the_example_row_of_the_template_is_not_imported() -> None:
    rows = [HEADER, (day().isoformat(), "张三", "1栋", "200", "微信", "SJ-0001", "示例：导入前请删除本行")]
    assert messages(prepare(csv_text(rows).encode())) == ["第 2 行: 这是模板里的示例行：请删除后再导入"]
