"""其他收入 (other_income) end to end: the kind that proves the registry (ledger/kinds.py).

Bank interest and the sale of leftover materials post cash / other_income and name a payer, never
a contributor. The figure reaches the API's entry and summary, the CSV and XLSX exports, the
sheet's 其他收入 row (once a hard-coded 0), the pages, the spreadsheet import, and ``verify``
recomputes its documents (payer included) and its posting rule.
"""

from __future__ import annotations

import csv
import io
import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import openpyxl
import pytest

from ledger import log_check, tree
from ledger.accounts import CASH, OTHER_INCOME, parse_posting_lines
from reports.exports import HEADER
from tests.api_support import Api, World, assert_problem, contribution, error_fields, expenditure, grant, past, reversal
from tests.import_support import csv_text
from tests.test_disclosures import pdf_text, period
from tests.test_ledger_tampering import as_superuser


def other_income(amount: str = "35.20", payer: str = "某银行黄石分行", **extra: Any) -> dict[str, Any]:
    return {"kind": "other_income", "amount": amount, "occurred_on": past(), "payer": payer, "memo": "利息", **extra}


def url(project: str, tail: str = "") -> str:
    return f"/api/v1/projects/{project}{tail}"


async def project_with_other_income(world: World) -> tuple[str, dict[str, Any]]:
    code = await world.project()
    await world.entry(code, contribution("200"))
    await world.entry(code, grant("1000"))
    entry = await world.entry(code, other_income("35.20"))
    wrong = await world.entry(code, other_income("10", payer="某废品回收站", memo="变卖余料"))
    await world.entry(code, reversal(wrong["seq"], reason="金额录入错误"))
    await world.entry(code, expenditure("100"))
    return code, entry


async def test_other_income_through_the_api(api: Api, world: World) -> None:
    code, entry = await project_with_other_income(world)
    assert entry["kind"] == "other_income" and entry["amount"] == "35.20"
    assert entry["payer"] == "某银行黄石分行" and entry["contributor"] is None
    assert entry["postings"] == [
        {"account": CASH, "side": "debit", "amount": "35.20"},
        {"account": OTHER_INCOME, "side": "credit", "amount": "35.20"},
    ]
    assert '"payer":"某银行黄石分行"' in entry["document"]
    read = (await api.get(url(code, f"/entries/{entry['seq']}"))).json()
    assert read["payer"] == "某银行黄石分行" and read["leaf_hash"] == entry["leaf_hash"]
    listed = (await api.get(url(code, "/entries"), params={"kind": "other_income"})).json()["items"]
    assert [e["seq"] for e in listed] == [entry["seq"], entry["seq"] + 1]

    x = (await api.get(url(code))).json()["summary"]
    assert x["other_income"] == "35.20"
    assert x["balance"] == "1135.20"  # 200 + 1000 + 35.20 (+10 −10) − 100
    total = Decimal(x["contributed"]) + Decimal(x["granted"]) + Decimal(x["other_income"])
    assert Decimal(x["balance"]) == total - Decimal(x["spent"]) - Decimal(x["refunded"])


async def test_other_income_refusals(api: Api, world: World) -> None:
    code = await world.project()
    for body, field in (
        ({k: v for k, v in other_income().items() if k != "payer"}, "payer"),
        (other_income(payer=""), "payer"),
        (other_income(contributor={"name": "张三"}), "contributor"),
        (other_income(amount="0"), "amount"),
        (other_income(payer="联系 13812345678"), "payer"),
    ):
        response = await api.post(url(code, "/entries"), body, token=world.treasurer, key=f"k-{field}-{id(body)}")
        assert field in error_fields(assert_problem(response, 422, "validation_failed")), response.text


async def test_other_income_in_csv_and_xlsx(api: Api, world: World) -> None:
    code, entry = await project_with_other_income(world)
    who, amount, kind = HEADER.index("出资人/收款单位"), HEADER.index("金额（元）"), HEADER.index("类型")
    data = (await api.get(url(code, "/entries.csv"))).content
    rows = list(csv.reader(io.StringIO(data[3:].decode("utf-8"), newline="")))
    by_seq = {int(r[0]): r for r in rows[1:]}
    row = by_seq[entry["seq"]]
    assert (row[kind], row[who], row[amount]) == ("其他收入", "某银行黄石分行", "35.20")
    assert by_seq[entry["seq"] + 1][who] == "某废品回收站"
    assert by_seq[entry["seq"] + 2][amount] == "-10.00"  # the reversal, red-ink sign

    book = openpyxl.load_workbook(io.BytesIO((await api.get(url(code, "/entries.xlsx"))).content))
    cells = {r[0]: r for r in book.active.iter_rows(min_row=2, values_only=True)}
    xrow = cells[entry["seq"]]
    assert (xrow[kind], xrow[who], Decimal(str(xrow[amount]))) == ("其他收入", "某银行黄石分行", Decimal("35.20"))


async def test_the_sheet_prints_other_income_from_the_ledger(api: Api, world: World, tmp_path: Path) -> None:
    code, _ = await project_with_other_income(world)
    response = await api.get(url(code, "/disclosures/preview.pdf"), params=period(), token=world.treasurer)
    assert response.status_code == 200, response.text
    text = pdf_text(response.content, tmp_path)
    # 本期 and 累计 (10 received and reversed within the period nets out).
    assert re.search(r"其他收入\s+35\.20\s+35\.20", text), text
    assert re.search(r"结余\s+—\s+1,135\.20", text), text
    assert "其他收入 35.20 元" in text  # the income chart's legend
    # Its own detail table (三、收入明细 （三）), the reversal in red ink beside its original.
    assert "（三）其他收入（利息、变卖余料等）" in text
    assert re.search(r"某银行黄石分行\s+利息\s+35\.20", text), text
    assert re.search(r"某废品回收站\s+变卖余料\s+10\.00", text), text
    assert re.search(r"某废品回收站\s+变卖余料\s+-10\.00", text), text


async def test_verify_covers_other_income(api: Api, world: World, database: Any) -> None:
    code, entry = await project_with_other_income(world)
    checked = (await api.get(url(code, "/ledger/verify"))).json()
    assert checked["ok"] is True and checked["first_bad_seq"] is None
    project = (await api.get(url(code))).json()
    await as_superuser(
        database,
        [
            (
                "UPDATE entries SET payer = '另一家银行' WHERE seq = $1 AND project_id = "
                "(SELECT id FROM projects WHERE code = $2)",
                [entry["seq"], project["code"]],
            )
        ],
        ["entries"],
    )
    result = await tree.verify(world.engine, code)
    assert not result.ok and result.first_bad_seq == entry["seq"]


def test_the_posting_rule_is_checked_by_verify() -> None:
    def holds(kind: str, lines: list[str]) -> bool:
        return log_check.follows_posting_rule(kind, 3520, None, parse_posting_lines(lines))

    assert holds("other_income", ["cash debit 3520", "other_income credit 3520"])
    assert not holds("other_income", ["cash debit 3520", "grants credit 3520"])
    assert not holds("bogus", [])


@pytest.mark.parametrize("word", ["其他收入", "利息", "other_income"])
def test_other_income_rows_import(word: str) -> None:
    from tests.test_import_parsing import prepare  # the parsing tests' own project

    rows = [("日期", "类型", "姓名", "金额", "备注"), (past(), word, "某银行", "35.20", "第四季度利息")]
    report = prepare(csv_text(rows).encode())
    assert report.problems == []
    draft = report.rows[0].draft
    assert (draft.kind, draft.payer, draft.amount_fen, draft.contributor) == ("other_income", "某银行", 3520, None)
    assert draft.memo == "第四季度利息"


async def test_the_workspace_records_other_income_through_its_form(world: World) -> None:
    from tests.test_workspace import Browser, form_fields, sign_in

    project = await world.project()
    browser = Browser(world.api.client)
    await sign_in(browser, world.treasurer)
    desk = await browser.get(f"/w/p/{project}")
    assert f'href="/w/p/{project}/new/other_income">其他收入<' in desk.text
    url = f"/w/p/{project}/new/other_income"
    page = await browser.get(url)
    assert page.status_code == 200 and "记一笔其他收入" in page.text and 'id="f-payer"' in page.text
    hidden = form_fields(page.text, url)
    bad = await browser.post(url, data={**hidden, "amount": "35.20", "occurred_on": past(), "payer": ""})
    assert bad.status_code == 422 and 'id="f-payer-err"' in bad.text
    good = {**hidden, "amount": "35.20", "occurred_on": past(), "payer": "某银行黄石分行", "memo": "利息"}
    assert (await browser.post(url, data=good)).status_code == 303
    entry = (await world.api.get(f"/api/v1/projects/{project}/entries/1")).json()
    assert (entry["kind"], entry["payer"], entry["amount"]) == ("other_income", "某银行黄石分行", "35.20")
    summary = (await browser.get(f"/w/p/{project}")).text
    assert 'id="fig-other-income">¥35.20<' in summary


async def test_the_resident_pages_show_other_income(api: Api, world: World) -> None:
    code, entry = await project_with_other_income(world)
    page = (await api.get(f"/p/{code}")).text
    assert "其他收入（利息、变卖余料等）¥35.20" in page
    shown = (await api.get(f"/p/{code}/e/{entry['seq']}")).text
    assert "<dt>付款方</dt><dd>某银行黄石分行</dd>" in shown and "其他收入" in shown
    listed = (await api.get(f"/p/{code}/entries")).text
    assert "某银行黄石分行" in listed and "某废品回收站" in listed
