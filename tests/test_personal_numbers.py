"""Phone and ID numbers never reach public output: refused (422, naming the field) in text a
treasurer or administrator types for publication; masked (139****5678) in text a resident writes,
with the original kept for the community's treasurer and auditor. One detector: ledger/masking.py."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from ledger.masking import contains_phone, mask_phones
from tests.api_support import (
    World,
    assert_problem,
    contribution,
    error_fields,
    expenditure,
    grant,
    new_key,
    past,
    today,
    unique,
)

PERSONAL_NUMBERS = [
    "13912345678",
    "139 1234 5678",
    "139-1234-5678",
    "+86 13912345678",
    "+86-139-1234-5678",
    "+8613912345678",
    "027-87654321",
    "027-8765432",
    "027-8765432x",
    "(027)87654321",
    "（027）87654321",
    "0714-6288123",
    "420102199003071234",
    "42010219900307123X",
]
NOT_PERSONAL = [
    "200.50",
    "100000000.00",
    "13912345678.50",
    "2026-11-30",
    "20261130",
    "04417305",
    "下住建〔2026〕12号",
    "发票号 04417305，金额 1200 元",
    "12345678901234567890",  # 20-digit 全电发票号码
    "1391234567",
    "139123456789",
    "合同 HT13912345678",
    "2026年11月30日 13:45 开会",
]


@pytest.mark.parametrize("number", PERSONAL_NUMBERS)
def test_detects_phones_and_id_numbers(number: str) -> None:
    assert contains_phone(f"请联系我{number}谢谢")
    assert contains_phone(number)
    masked = mask_phones(f"请联系我 {number} 谢谢")
    assert "***" in masked and not contains_phone(masked), masked


@pytest.mark.parametrize("text", NOT_PERSONAL)
def test_amounts_dates_and_document_numbers_are_not_phones(text: str) -> None:
    assert not contains_phone(text)
    assert mask_phones(text) == text


def test_masking_keeps_three_and_four() -> None:
    assert mask_phones("请联系我 13912345678") == "请联系我 139****5678"
    assert mask_phones("+86 139-1234-5678") == "139****5678"
    assert mask_phones("身份证 42010219900307123X") == "身份证 420***********123X"


def _entries(project: str) -> str:
    return f"/api/v1/projects/{project}/entries"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (contribution(receipt_no="13912345678"), "receipt_no"),
        (contribution(memo="张三 139 1234 5678"), "memo"),
        (grant(document_no="027-87654321"), "document_no"),
        (grant(grantor="住建局（027）87654321"), "grantor"),
        (expenditure(invoice_no="420102199003071234"), "invoice_no"),
        (expenditure(payee="王师傅 +86-139-1234-5678"), "payee"),
        (
            contribution(name="某公司 13912345678", household=None, type_="enterprise"),
            "contributor.name",
        ),
    ],
)
async def test_entry_text_with_a_phone_is_refused(world: World, body: dict[str, Any], field: str) -> None:
    project = await world.project()
    await world.entry(project, grant())
    response = await world.api.post(_entries(project), body, token=world.treasurer, key=new_key())
    problem = assert_problem(response, 422, "validation_failed")
    assert error_fields(problem) == {field}
    assert "手机号、固定电话或身份证号" in problem["errors"][0]["message"]
    assert (await world.api.get(f"/api/v1/projects/{project}/ledger")).json()["size"] == 1


async def test_a_batch_names_the_entry_and_field(world: World) -> None:
    project = await world.project()
    body = {"entries": [grant(), grant(memo="经办人 13912345678")]}
    response = await world.api.post(f"{_entries(project)}/batch", body, token=world.treasurer, key=new_key())
    assert error_fields(assert_problem(response, 422, "validation_failed")) == {"entries[1].memo"}


async def test_ordinary_numbers_are_accepted(world: World) -> None:
    project = await world.project()
    await world.entry(project, grant(document_no="下住建〔2026〕12号", memo="2026-11-30 拨付 50000.00 元"))
    await world.entry(project, expenditure(invoice_no="04417305", memo="发票 12345678901234567890"))


async def test_project_community_decision_and_sheet_text_is_checked(world: World) -> None:
    api = world.api
    code = unique("p")
    project = {
        "code": code,
        "community": world.community,
        "title": "路面刷黑",
        "budget_lines": [
            {"category": "materials", "label": "沥青", "source": "grant", "amount": "100"},
            {"category": "labour", "label": "人工 联系 13912345678", "source": "grant", "amount": "100"},
        ],
    }
    refused = await api.post("/api/v1/projects", project, token=world.admin)
    assert error_fields(assert_problem(refused, 422, "validation_failed")) == {"budget_lines[1].label"}
    refused = await api.post(
        "/api/v1/projects", {**project, "budget_lines": [], "description": "负责人 027-87654321"}, token=world.admin
    )
    assert error_fields(assert_problem(refused, 422, "validation_failed")) == {"description"}
    refused = await api.post(
        "/api/v1/communities", {"code": unique("c"), "name": "某小区 13912345678"}, token=world.admin
    )
    assert error_fields(assert_problem(refused, 422, "validation_failed")) == {"name"}

    existing = await world.project()
    decision = {"stage": "proposal", "held_on": past(), "body": "居委会", "summary": "联系人 13912345678"}
    refused = await api.post(f"/api/v1/projects/{existing}/decisions", decision, token=world.treasurer, key=new_key())
    assert error_fields(assert_problem(refused, 422, "validation_failed")) == {"summary"}
    sheet = {"period_start": past(5), "period_end": today().isoformat(), "title": "公示 13912345678"}
    refused = await api.post(f"/api/v1/projects/{existing}/disclosures", sheet, token=world.treasurer, key=new_key())
    assert error_fields(assert_problem(refused, 422, "validation_failed")) == {"title"}


async def test_resident_text_is_masked_in_public_and_whole_for_the_community(world: World) -> None:
    api = world.api
    project = await world.project()
    await world.entry(project, grant())
    start = (today() - timedelta(days=5)).isoformat()
    sheet = await api.post(
        f"/api/v1/projects/{project}/disclosures",
        {"period_start": start, "period_end": today().isoformat()},
        token=world.treasurer,
        key=new_key(),
    )
    assert sheet.status_code == 201, sheet.text
    url = f"/api/v1/disclosures/{sheet.json()['id']}/objections"
    filed = await api.post(url, {"message": "请联系我 13912345678，身份证 42010219900307123X"})
    assert filed.status_code == 201, filed.text
    assert filed.json()["message"] == "请联系我 139****5678，身份证 420***********123X"
    answer = await api.post(
        f"/api/v1/objections/{filed.json()['id']}/responses",
        {"message": "已致电 139-1234-5678 说明"},
        token=world.treasurer,
    )
    assert answer.status_code == 201, answer.text
    assert answer.json()["message"] == "已致电 139-1234-5678 说明"  # to its author, as written

    public = (await api.get(url)).json()["items"][0]
    assert public["message"] == "请联系我 139****5678，身份证 420***********123X"
    assert public["responses"][0]["message"] == "已致电 139****5678 说明"
    for token in (world.tokens["treasurer_other"], world.tokens["auditor_other"]):
        assert (await api.get(url, token=token)).json()["items"][0]["message"] == public["message"]
    for token in (world.treasurer, world.auditor, world.admin):
        own = (await api.get(url, token=token)).json()["items"][0]
        assert own["message"] == "请联系我 13912345678，身份证 42010219900307123X"
        assert own["responses"][0]["message"] == "已致电 139-1234-5678 说明"
