"""POST /api/v1/projects/{p}/imports and GET /api/v1/imports/template.xlsx through the real app and
PostgreSQL: dry runs, all-or-nothing commits, re-imports refused, hostile and oversized files,
authorisation, and a 10,000-row import followed by verify."""

from __future__ import annotations

import asyncio
import io
import uuid
from typing import Any

import httpx
import openpyxl
from sqlalchemy import text

from ledger.spreadsheet import ROWS_MAX, SIZE_MAX
from tests.api_support import Api, World, assert_problem, new_key
from tests.import_support import HEADER, add_part, contribution_rows, csv_text, day, xlsx

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


async def upload(
    api: Api,
    project: str,
    data: bytes,
    *,
    token: str | None,
    dry_run: bool = False,
    key: str | None = None,
    media_type: str = XLSX,
    kind: str | None = None,
) -> httpx.Response:
    params: dict[str, Any] = {"dry_run": "true" if dry_run else "false"}
    if kind:
        params["kind"] = kind
    return await api.request(
        "POST",
        f"/api/v1/projects/{project}/imports",
        token=token,
        content=data,
        key=key,
        headers={"Content-Type": media_type},
        params=params,
    )


async def ledger_size(api: Api, project: str) -> int:
    return (await api.get(f"/api/v1/projects/{project}/ledger")).json()["size"]  # type: ignore[no-any-return]


def mixed_rows(name: str = "张三") -> list[tuple[Any, ...]]:
    d = day().isoformat()
    return [
        ("锦绣花园小区路面刷黑收支明细",),
        ("日期", "类型", "姓名", "房号", "金额（元）", "方式", "收据号", "科目", "收款单位", "拨款单位", "备注"),
        (d, "众筹", name, "3栋2单元501", "2,000.00", "微信", "SJ-0001", None, None, None, "路面刷黑众筹"),
        (d, "众筹", "李四", "5栋1单元302", "¥500", "现金", "SJ-0002", None, None, None, None),
        (d, "以奖代补", None, None, "10000元", None, None, None, None, "下陆区住建局", "第一批"),
        (d, "支出", None, None, "1200", "银行转账", None, "沥青材料", "某沥青工程有限公司", None, "沥青"),
        ("合计", None, None, None, "13,700.00", None, None, None, None, None, None),
    ]


async def test_dry_run_shows_what_would_be_recorded_and_records_nothing(api: Api, world: World) -> None:
    project = await world.project()
    name = f"张{uuid.uuid4().hex[:8]}"
    response = await upload(api, project, xlsx(mixed_rows(name)), token=world.treasurer, dry_run=True)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["dry_run"] is True and body["errors"] == [] and body["recorded"] == 0
    assert body["rows"] == 4 and body["header_row"] == 2 and body["total_row"] == 7 and body["format"] == "xlsx"
    assert body["by_kind"] == {
        "contribution": {"count": 2, "amount": "2500.00"},
        "grant": {"count": 1, "amount": "10000.00"},
        "expenditure": {"count": 1, "amount": "1200.00"},
    }
    first = body["entries"][0]
    # The treasurer's own data: names in full in their preview.
    assert first["row"] == 3 and first["contributor"]["name"] == name and first["amount"] == "2000.00"
    assert body["entries"][3]["category"] == "materials"
    assert await ledger_size(api, project) == 0
    # The dry run matched or created contributors under the lock, and rolled them back with it.
    async with world.engine.connect() as conn:
        created = await conn.scalar(text("SELECT count(*) FROM contributors WHERE name = :n"), {"n": name})
    assert created == 0


async def test_commit_records_all_once_and_the_same_file_again_is_refused(api: Api, world: World) -> None:
    project = await world.project()
    data = xlsx(mixed_rows())
    key = new_key()
    response = await upload(api, project, data, token=world.treasurer, key=key)
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["recorded"] == 4 and body["tree_size"] == 4 and body["errors"] == []
    assert [e["seq"] for e in body["entries"]] == [1, 2, 3, 4] and [e["row"] for e in body["entries"]] == [3, 4, 5, 6]
    assert body["entries"][0]["contributor"]["name"] == "张三"
    assert await ledger_size(api, project) == 4

    # A retry with the same key replays the answer; it is not a second import.
    again = await upload(api, project, data, token=world.treasurer, key=key)
    assert again.status_code == 201 and again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == body
    # The same content with another key (or in a dry run) is refused, pointing at the first import.
    for dry_run, second_key in ((False, new_key()), (True, None)):
        refused = await upload(api, project, data, token=world.treasurer, key=second_key, dry_run=dry_run)
        problem = assert_problem(refused, 409, "conflict")
        assert f"导入编号 {body['import_id']}" in problem["detail"] and "第 1–4 笔" in problem["detail"]
    assert await ledger_size(api, project) == 4

    # The public sees the entries with names masked; the import's answer is the treasurer's alone.
    public = (await api.get(f"/api/v1/projects/{project}/entries")).json()["items"]
    assert public[0]["contributor"]["name"] == "张*"
    verify = (await api.get(f"/api/v1/projects/{project}/ledger/verify")).json()
    assert verify["ok"] is True and verify["size"] == 4


async def test_a_commit_with_any_problem_records_nothing(api: Api, world: World) -> None:
    project = await world.project()
    rows = mixed_rows()
    rows[3] = (day().isoformat(), "众筹", "李四", "5栋", "两百", "现金", None, None, None, None, None)
    rows[-1] = ("合计", None, None, None, "13,200.00", None, None, None, None, None, None)
    data = xlsx(rows)
    dry = (await upload(api, project, data, token=world.treasurer, dry_run=True)).json()
    assert dry["errors"] == [
        {
            "row": 4,
            "column": "金额（元）",
            "message": '无法识别 "两百"：金额须写成数字，如 200、1,000.00、¥200 或 200元',
        }
    ]
    response = await upload(api, project, data, token=world.treasurer, key=new_key())
    problem = assert_problem(response, 422, "validation_failed")
    assert problem["errors"] == [{"field": "rows[4].金额（元）", **dry["errors"][0]}]
    assert "第 4 行「金额（元）」" in problem["detail"]
    assert await ledger_size(api, project) == 0


async def test_a_mismatching_total_is_refused(api: Api, world: World) -> None:
    project = await world.project()
    rows = mixed_rows()
    rows[-1] = ("合计", None, None, None, 13600, None, None, None, None, None, None)
    response = await upload(api, project, xlsx(rows), token=world.treasurer, key=new_key())
    problem = assert_problem(response, 422, "validation_failed")
    assert (
        problem["errors"][0]["row"] == 7
        and "合计 13,600.00 元与上面各行金额之和 13,700.00 元不符" in problem["errors"][0]["message"]
    )


async def test_ledger_rules_are_checked_in_the_dry_run_too(api: Api, world: World) -> None:
    """Cash, the spending gate, refunds and countersigning are the ledger's own checks: a dry run
    runs them under the project's lock and rolls back, so it says what the commit would."""
    project = await world.project()
    d = day().isoformat()
    rows = [
        ("日期", "类型", "姓名", "金额", "科目", "收款单位"),
        (d, "众筹", "张三", "100", None, None),
        (d, "支出", None, "150", "materials", "某公司"),
    ]
    data = csv_text(rows).encode()
    dry = (await upload(api, project, data, token=world.treasurer, dry_run=True, media_type="text/csv")).json()
    assert [(e["row"], e["column"]) for e in dry["errors"]] == [(3, "金额")]
    assert "现金余额不足" in dry["errors"][0]["message"]
    response = await upload(api, project, data, token=world.treasurer, key=new_key(), media_type="text/csv")
    assert assert_problem(response, 422, "validation_failed")["errors"][0]["row"] == 3
    assert await ledger_size(api, project) == 0

    countersigned = await world.project(countersign_over="0")
    rows[2] = (d, "支出", None, "50", "materials", "某公司")
    dry = (
        await upload(
            api, countersigned, csv_text(rows).encode(), token=world.treasurer, dry_run=True, media_type="text/csv"
        )
    ).json()
    assert dry["errors"][0]["row"] == 3 and "另行提交凭证" in dry["errors"][0]["message"]


async def test_gbk_csv_and_multipart_uploads(api: Api, world: World) -> None:
    project = await world.project()
    text_rows = [("众筹明细",), HEADER, *contribution_rows(3)]
    gbk = csv_text(text_rows).encode("gbk")
    dry = (await upload(api, project, gbk, token=world.treasurer, dry_run=True, media_type="text/csv")).json()
    assert dry["errors"] == [] and dry["encoding"] == "GB18030" and dry["format"] == "csv"
    assert dry["entries"][0]["contributor"]["name"] == "居民00001"

    files = {"file": ("众筹明细.csv", gbk, "text/csv")}
    response = await api.client.post(
        f"/api/v1/projects/{project}/imports",
        files=files,
        headers={"Authorization": f"Bearer {world.treasurer}", "Idempotency-Key": new_key()},
    )
    assert response.status_code == 201, response.text
    assert response.json()["recorded"] == 3


async def test_other_kinds_by_query_and_refusals_of_bad_requests(api: Api, world: World) -> None:
    project = await world.project()
    rows = [("日期", "出资人", "金额", "出力内容"), (day().isoformat(), "王五", "300", "义务劳动 6 小时")]
    data = csv_text(rows).encode()
    dry = (
        await upload(api, project, data, token=world.treasurer, dry_run=True, media_type="text/csv", kind="in_kind")
    ).json()
    assert dry["errors"] == [] and dry["by_kind"] == {"in_kind": {"count": 1, "amount": "300.00"}}
    url = f"/api/v1/projects/{project}/imports"

    assert_problem(
        await upload(api, project, data, token=world.treasurer, media_type="text/csv"), 400, "idempotency_key_missing"
    )
    assert_problem(
        await upload(api, project, data, token=world.treasurer, dry_run=True, media_type="application/json"),
        415,
        "unsupported_media_type",
    )
    assert_problem(
        await upload(api, project, data, token=None, dry_run=True, media_type="text/csv"), 401, "unauthorized"
    )
    for who in ("auditor", "treasurer_other"):
        refused = await upload(api, project, data, token=world.tokens[who], dry_run=True, media_type="text/csv")
        assert_problem(refused, 403, "forbidden")
    assert_problem(
        await upload(api, "no-such-project", data, token=world.treasurer, dry_run=True, media_type="text/csv"),
        404,
        "not_found",
    )
    bad_kind = await api.request(
        "POST",
        url,
        token=world.treasurer,
        content=data,
        headers={"Content-Type": "text/csv"},
        params={"dry_run": "true", "kind": "reversal"},  # a reversal names its original: never imported
    )
    assert_problem(bad_kind, 422, "validation_failed")


async def test_oversized_files_and_too_many_rows(api: Api, world: World) -> None:
    project = await world.project()
    big = b"\xef\xbb\xbf" + csv_text([HEADER]).encode() + b"#" * (SIZE_MAX + 10)
    assert_problem(
        await upload(api, project, big, token=world.treasurer, dry_run=True, media_type="text/csv"),
        413,
        "payload_too_large",
    )
    rows = [HEADER, *contribution_rows(ROWS_MAX + 1)]
    problem = assert_problem(
        await upload(api, project, csv_text(rows).encode(), token=world.treasurer, dry_run=True, media_type="text/csv"),
        422,
        "validation_failed",
    )
    assert problem["errors"] == [
        {"field": "file", "row": None, "column": None, "message": "数据超过 10,000 行：请分成几个文件导入"}
    ]


async def test_hostile_files_are_refused_cleanly(api: Api, world: World) -> None:
    project = await world.project()
    good = xlsx([HEADER, *contribution_rows(2)])
    cases = {
        "宏": add_part(good, "xl/vbaProject.bin", b"\x00" * 64),
        "外部链接": add_part(good, "xl/externalLinks/externalLink1.xml", b"<externalLink/>"),
        "压缩炸弹": add_part(good, "xl/worksheets/sheet9.xml", b" " * (8 * 1024 * 1024)),
        "不是有效的 Excel": b"\x00\x01\x02 not a spreadsheet",
    }
    for says, data in cases.items():
        response = await upload(api, project, data, token=world.treasurer, key=new_key(), media_type=XLSX)
        problem = assert_problem(response, 422, "validation_failed")
        assert says in problem["detail"] and problem["errors"][0]["field"] == "file", (says, problem)
    assert await ledger_size(api, project) == 0


async def test_two_imports_of_the_same_file_racing_record_once(api: Api, world: World) -> None:
    project = await world.project()
    data = xlsx([HEADER, *contribution_rows(50)])
    responses = await asyncio.gather(
        *(upload(api, project, data, token=world.treasurer, key=new_key()) for _ in range(3))
    )
    assert sorted(r.status_code for r in responses) == [201, 409, 409]
    assert await ledger_size(api, project) == 50


async def test_the_template_has_every_column_an_example_and_notes(api: Api, world: World) -> None:
    response = await api.get("/api/v1/imports/template.xlsx")
    assert response.status_code == 200 and response.headers["content-type"].startswith(XLSX)
    wb = openpyxl.load_workbook(io.BytesIO(response.content))
    assert wb.sheetnames == ["众筹明细", "说明"]
    sheet = wb["众筹明细"]
    headers = [c.value for c in sheet[1]]
    for expected in (
        "日期",
        "类型",
        "姓名",
        "房号",
        "金额（元）",
        "方式",
        "收据号",
        "科目",
        "收款单位",
        "发票号",
        "拨款单位",
        "文号",
        "备注",
    ):
        assert expected in headers
    notes = "\n".join(str(c.value) for row in wb["说明"].iter_rows() for c in row if c.value)
    assert "合计" in notes and "出资金额" in notes and "GBK" in notes

    project = await world.project()
    # Imported as it comes, the example row is refused; filled in, the template imports.
    dry = (await upload(api, project, response.content, token=world.treasurer, dry_run=True)).json()
    assert dry["errors"] == [{"row": 2, "column": None, "message": "这是模板里的示例行：请删除后再导入"}]
    sheet.delete_rows(2)
    sheet.append(
        [day(), "众筹", "张三", "3栋2单元501", None, 200, "微信", "SJ-9", None, None, None, None, None, None, None]
    )
    sheet.append(
        [day(), "支出", None, None, None, 50, None, None, "沥青材料", "某公司", "0441", None, None, None, "沥青"]
    )
    out = io.BytesIO()
    wb.save(out)
    dry = (await upload(api, project, out.getvalue(), token=world.treasurer, dry_run=True)).json()
    assert dry["errors"] == [] and dry["rows"] == 2


async def test_ten_thousand_rows_then_verify(api: Api, world: World) -> None:
    project = await world.project()
    data = xlsx([("众筹明细",), HEADER, *contribution_rows(ROWS_MAX)], number_formats={3: "#,##0.00"})
    key = new_key()
    response = await upload(api, project, data, token=world.treasurer, key=key)
    assert response.status_code == 201, response.text[:500]
    body = response.json()
    assert body["recorded"] == ROWS_MAX and len(body["entries"]) == 50
    verify = (await api.get(f"/api/v1/projects/{project}/ledger/verify")).json()
    assert verify["ok"] is True and verify["first_bad_seq"] is None and verify["unbalanced_accounts"] == []
    assert (verify["size"], verify["root_hash"]) == (ROWS_MAX, body["root_hash"])
    summary = (await api.get(f"/api/v1/projects/{project}")).json()["summary"]
    assert summary["contributed"] == f"{ROWS_MAX * 200}.00"


async def test_openapi_documents_the_upload(api: Api) -> None:
    document = (await api.get("/schema/openapi.json")).json()
    operation = document["paths"]["/api/v1/projects/{project}/imports"]["post"]
    content = operation["requestBody"]["content"]
    assert set(content) == {XLSX, "text/csv", "multipart/form-data"}
    assert content["multipart/form-data"]["schema"]["properties"]["file"]["format"] == "binary"
    assert {"200", "201", "409", "413", "415", "422"} <= set(operation["responses"])
    names = {p["name"] for p in operation["parameters"]}
    assert {"dry_run", "kind", "Idempotency-Key"} <= names
    template = document["paths"]["/api/v1/imports/template.xlsx"]["get"]
    assert XLSX in template["responses"]["200"]["content"]
