"""A sheet whose period holds more rows than one sheet prints (issue 8, item 10): it is published
all the same, its totals are the ledger's (every entry of the period, printed or not), and it says
on its face how many rows it leaves out and where to read them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from reports import sheet_model
from tests.api_support import Api, World, contribution, expenditure, grant, new_key, pledge, refund, reversal
from tests.test_disclosures import pdf_text, period

BASE = "http://127.0.0.1:8000"  # LEDGER_PUBLIC_BASE_URL of the test app (its default)


def flat(text: str) -> str:
    """pdftotext's layout without white space: wrapped lines and columns read as one string."""
    return re.sub(r"\s+", "", text)


async def _publish(api: Api, world: World, code: str) -> bytes:
    response = await api.post(
        f"/api/v1/projects/{code}/disclosures", {**period(), "notice_days": 7}, token=world.treasurer, key=new_key()
    )
    assert response.status_code == 201, response.text
    pdf = await api.get(response.json()["pdf_url"])
    assert pdf.status_code == 200
    return pdf.content


async def test_a_sheet_cut_at_its_row_limit_prints_the_ledgers_totals_and_says_what_it_leaves_out(
    api: Api, world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    code = await world.project()
    await world.entry(code, grant("50000"))  # seq 1
    for i, name in enumerate(["张三", "李四", "王五", "赵六", "钱七"]):  # seq 2–6
        await world.entry(code, contribution(str(100 * (i + 1)), name, f"{i + 1}栋1单元101"))
    await world.entry(code, expenditure("1200.35", payee="某沥青工程有限公司"))  # seq 7
    await world.entry(code, expenditure("99", payee="某五金店"))  # seq 8
    await world.entry(code, reversal(8, reason="金额录入错误"))  # seq 9
    await world.entry(code, refund("50", {"name": "张三", "household": "1栋1单元101"}))  # seq 10
    await world.entry(code, pledge("500", "欧阳小明"))  # seq 11
    await world.entry(code, pledge("300", "Alice"))  # seq 12

    # Six rows to a sheet: the grant and five contributions are printed; three expenditure rows
    # (a reversal among them), the refund and both pledges are not.
    monkeypatch.setattr(sheet_model, "SHEET_ROWS_MAX", 6)
    text = pdf_text(await _publish(api, world, code), tmp_path)
    page = flat(text)

    assert "说明：本表未印出全部明细。" in page
    assert "共12笔，超过一张公示表可印的6笔：本表列出6笔，其余6笔未印出" in page
    assert "各项金额合计均按账本全部记录计算，不受影响" in page
    assert f"{BASE}/p/{code}/entries" in page
    assert f"{BASE}/api/v1/projects/{code}/entries.csv?from={period()['period_start']}&to=" in page
    assert f"{BASE}/p/{code}/pledges" in page

    # 一、资金收支总表: every figure is the ledger's, although no expenditure or refund is printed
    # (summed from the printed rows, 支出合计 and 退款 would read 0.00).
    assert "居民众筹收入1,500.001,500.00" in page
    assert "以奖代补资金50,000.0050,000.00" in page
    assert "支出合计1,200.351,200.35" in page
    assert "退款50.0050.00" in page
    summary = (await api.get(f"/api/v1/projects/{code}")).json()["summary"]
    assert (summary["contributed"], summary["spent"], summary["refunded"]) == ("1500.00", "1200.35", "50.00")

    # Each table closes with the ledger's count and total, and names what it leaves out.
    assert "本期合计（5笔）1,500.00" in page
    assert "另有3笔（记账序号7及以后）因篇幅所限未印出" in page
    assert "本期合计（共3笔，本表列出0笔）1,200.35" in page
    assert "本期合计（共1笔，本表列出0笔）50.00" in page
    assert "这2笔认筹均因篇幅所限未印出" in page
    assert "累计（共2笔，本表列出0笔）800.000.00800.00" in page
    assert "某沥青工程有限公司" not in page and "暂无认筹" not in page

    # Under the limit nothing is said: the same project, the limit back to its default.
    monkeypatch.undo()
    page = flat(pdf_text(await _publish(api, world, code), tmp_path))
    assert "本表未印出全部明细" not in page and "因篇幅所限" not in page
    assert "本期合计（3笔）1,200.35" in page and "某沥青工程有限公司" in page
