"""The import template (GET /api/v1/imports/template.xlsx): every column the importer recognises,
an example row, and a 说明 sheet explaining each column in Chinese. Built from the same tables the
importer reads with (ledger/spreadsheet.py, ledger/imports.py), so the two cannot drift apart."""

from __future__ import annotations

import io
from datetime import date
from functools import lru_cache

from ledger.imports import CHANNEL_WORDS, EXAMPLE_MARK, KIND_LABELS
from ledger.spreadsheet import HEADER_VARIANTS, ROWS_MAX

# (field, header in the template, required, what it means, example)
COLUMNS: tuple[tuple[str, str, str, str, object], ...] = (
    (
        "occurred_on",
        "日期",
        "必填",
        "收款或付款的日期，如 2026-11-20、2026/11/20、2026年11月20日；不能晚于今天",
        date(2026, 1, 1),
    ),
    ("kind", "类型", "可不填", "众筹、以奖代补、支出、退款、出力、认筹；不填时按导入时选的类型（默认众筹）", "众筹"),
    (
        "name",
        "姓名",
        "众筹、退款、出力、认筹必填",
        "出资人、出力人或单位名称；公开时个人姓名只显示姓（张*），单位全称显示",
        "张三",
    ),
    (
        "household",
        "房号",
        "可不填",
        "如 3栋2单元501；公开时只显示到楼栋（3栋）。也可分成「楼栋」「单元」「房号」三列",
        "3栋2单元501",
    ),
    ("phone", "电话", "可不填", "出资人的联系电话，只存不公开；不要写在备注里", ""),
    ("amount", "金额（元）", "必填", "大于 0，最多两位小数：200、1,000.00、¥200、200元 都可以；不能写“两百”", 200),
    ("channel", "方式", "可不填", "微信、支付宝、现金、银行转账 或 其他（众筹和退款）", "微信"),
    ("receipt_no", "收据号", "可不填", "开给出资人的收据编号（众筹）", "SJ-0001"),
    ("category", "科目", "支出必填", "本项目预算中的科目名称或代码，如 沥青材料", ""),
    ("payee", "收款单位", "支出必填", "支出付给谁", ""),
    ("invoice_no", "发票号", "可不填", "支出的发票号码", ""),
    ("grantor", "拨款单位", "以奖代补必填", "拨付以奖代补资金的部门，如 下陆区住房和城乡建设局", ""),
    ("document_no", "文号", "可不填", "拨款文件的文号，如 下住建〔2026〕12号", ""),
    ("description", "出力内容", "出力必填", "出力的内容，如 义务劳动 6 小时（也可写在备注里）", ""),
    ("memo", "备注", "可不填", "会公开显示，不要写电话、身份证号", EXAMPLE_MARK + "本行"),
)
NOTES = (
    "导入说明",
    "1. 第一个工作表「众筹明细」是要填写的表格；第 2 行是示例，导入前请删除。表头上方可以有标题行，表头名称可用“也可写作”一列中的写法。",
    "2. 表格最后可以有一行「合计」：系统会核对合计金额与各行之和，不符时不导入。合计行下面可以写制表人、审核人。",
    f"3. 一次最多 {ROWS_MAX:,} 行，文件不超过 10 MiB。可以是 Excel/WPS 的 .xlsx，或 CSV（UTF-8 或 GBK 编码均可）；不接受含宏或外部链接的文件。",
    "4. 先“试导入”查看将记录的内容和所有问题，改好后再确认导入。全部无误才记账，有一处问题就一条也不记。",
    "5. 同一个文件（内容完全相同）只能导入一次，重复导入会被拒绝并指出第一次导入的记录。",
    "6. 公式只取 Excel/WPS 保存时算出的值；用公式的表格请先在 Excel/WPS 中打开并保存。",
)
SHEET_TITLE = "众筹明细"
# Date cells formatted in advance (typed dates then stay dates); more rows only make the file larger.
FORMATTED_ROWS = 1_000


@lru_cache(maxsize=1)
def template_xlsx() -> bytes:
    import openpyxl
    from openpyxl.styles import Alignment, Font, PatternFill
    from openpyxl.worksheet.datavalidation import DataValidation

    wb = openpyxl.Workbook()
    ws = wb.active
    assert ws is not None
    ws.title = SHEET_TITLE
    ws.append([header for _, header, *_ in COLUMNS])
    ws.append([example if example != "" else None for *_, example in COLUMNS])
    bold = Font(bold=True)
    fill = PatternFill("solid", fgColor="FFF2CC")
    for index, (name, header, required, *_) in enumerate(COLUMNS, start=1):
        cell = ws.cell(row=1, column=index)
        cell.font = bold
        if required == "必填":
            cell.fill = fill
        letter = cell.column_letter
        ws.column_dimensions[letter].width = max(10, len(header) * 2 + 4)
        if name == "occurred_on":
            for row in range(2, FORMATTED_ROWS + 2):
                ws.cell(row=row, column=index).number_format = "yyyy-mm-dd"
        if name == "amount":
            ws.cell(row=2, column=index).number_format = "#,##0.00"
    ws.freeze_panes = "A2"
    kinds = DataValidation(type="list", formula1='"' + ",".join(KIND_LABELS.values()) + '"', allow_blank=True)
    channels = DataValidation(type="list", formula1='"微信,支付宝,现金,银行转账,其他"', allow_blank=True)
    for validation, name in ((kinds, "kind"), (channels, "channel")):
        letter = ws.cell(row=1, column=[c[0] for c in COLUMNS].index(name) + 1).column_letter
        validation.add(f"{letter}2:{letter}{ROWS_MAX + 1}")
        ws.add_data_validation(validation)

    notes = wb.create_sheet("说明")
    for line in NOTES:
        notes.append([line])
    notes["A1"].font = Font(bold=True, size=14)
    notes.append([])
    notes.append(["列名", "是否必填", "说明", "也可写作"])
    for cell in notes[notes.max_row]:
        cell.font = bold
    for name, header, required, meaning, _ in COLUMNS:
        variants = [v for v in HEADER_VARIANTS[name] if v != header.split("（")[0]]
        if name == "channel":
            meaning += "；可写：" + "、".join(w for w in CHANNEL_WORDS if not w.isascii())
        notes.append([header, required, meaning, "、".join(variants)])
    notes.column_dimensions["A"].width = 14
    notes.column_dimensions["B"].width = 24
    notes.column_dimensions["C"].width = 70
    notes.column_dimensions["D"].width = 40
    for row in notes.iter_rows(min_row=len(NOTES) + 3):
        for cell in row:
            cell.alignment = Alignment(wrap_text=True, vertical="top")
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()
