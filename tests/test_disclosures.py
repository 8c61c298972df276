"""Disclosure sheets (公示表) through the real app: published once, pinned to the Merkle root,
stored and served unchanged, checked by reading the PDF back; objections and answers."""

from __future__ import annotations

import hashlib
import re
import subprocess
from datetime import timedelta
from pathlib import Path

import asyncpg
import pytest

from ledger import merkle
from ledger.disclosures import file_objection
from ledger.errors import Conflict
from ledger.money import format_fen_grouped
from tests.api_support import (
    Api,
    World,
    assert_problem,
    contribution,
    expenditure,
    grant,
    in_kind,
    new_key,
    past,
    refund,
    reversal,
    today,
)
from tests.conftest import Database


def pdf_text(pdf: bytes, tmp_path: Path) -> str:
    path = tmp_path / "sheet.pdf"
    path.write_bytes(pdf)
    return subprocess.run(["pdftotext", "-layout", str(path), "-"], capture_output=True, text=True, check=True).stdout


def pdf_fonts(pdf: bytes, tmp_path: Path) -> list[list[str]]:
    path = tmp_path / "fonts.pdf"
    path.write_bytes(pdf)
    out = subprocess.run(["pdffonts", str(path)], capture_output=True, text=True, check=True).stdout
    return [line.split() for line in out.splitlines()[2:] if line.strip()]


def period() -> dict[str, str]:
    return {"period_start": (today() - timedelta(days=30)).isoformat(), "period_end": today().isoformat()}


async def _project_with_money(world: World) -> str:
    code = await world.project()
    await world.entry(code, contribution("200", "张三", "3栋2单元501"))
    await world.entry(code, contribution("500", "欧阳小明", "5栋1单元302"))
    await world.entry(code, contribution("1000", "黄石某物业服务有限公司", None, type_="enterprise"))
    await world.entry(code, grant("50000", grantor="下陆区住房和城乡建设局", document_no="下住建〔2026〕12号"))
    await world.entry(code, expenditure("1200.35", payee="某沥青工程有限公司", invoice_no="04417305"))
    spent = await world.entry(code, expenditure("99", payee="某五金店"))
    await world.entry(code, reversal(spent["seq"], reason="金额录入错误"))
    await world.entry(code, in_kind("300", "李四", description="义务劳动 6 小时"))
    await world.entry(code, refund("50", {"name": "张三", "household": "3栋2单元501"}))
    return code


async def _publish(api: Api, world: World, code: str, **extra: str | int) -> dict:
    response = await api.post(
        f"/api/v1/projects/{code}/disclosures",
        {**period(), "notice_days": 7, **extra},
        token=world.treasurer,
        key=new_key(),
    )
    assert response.status_code == 201, response.text
    return response.json()


async def test_published_sheet_is_pinned_to_the_ledger_and_reads_back(api: Api, world: World, tmp_path: Path) -> None:
    code = await _project_with_money(world)
    sheet = await _publish(api, world, code)
    project = (await api.get(f"/api/v1/projects/{code}")).json()
    ledger = (await api.get(f"/api/v1/projects/{code}/ledger", params={"size": sheet["tree_size"]})).json()
    assert sheet["tree_size"] == project["summary"]["ledger"]["size"] == 9
    assert sheet["root_hash"] == ledger["root_hash"]
    assert sheet["sheet_number"] == 1 and sheet["previous"] is None
    assert sheet["status"] == "公示中"
    assert sheet["notice_start"] == today().isoformat()
    assert sheet["notice_end"] == (today() + timedelta(days=6)).isoformat()

    response = await api.get(sheet["pdf_url"])
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/pdf"
    pdf = response.content
    assert hashlib.sha256(pdf).hexdigest() == sheet["pdf_sha256"]
    assert response.headers["etag"] == f'"{sheet["pdf_sha256"]}"'
    again = await api.get(sheet["pdf_url"], headers={"If-None-Match": response.headers["etag"]})
    assert again.status_code == 304

    text = pdf_text(pdf, tmp_path)
    flat = re.sub(r"\s+", "", text)
    assert "锦绣花园小区路面刷黑项目资金收支公示" in flat
    assert "第1期" in flat
    for masked in ("张*", "欧阳**", "黄石某物业服务有限公司", "3栋", "5栋"):
        assert masked in flat, masked
    for full in ("张三", "欧阳小明", "李四", "3栋2单元501"):
        assert full not in flat, f"{full} printed in full"
    summary = project["summary"]
    for key in ("contributed", "granted", "spent", "refunded", "balance"):
        fen = int(summary[key].replace(".", ""))
        assert format_fen_grouped(fen) in text, (key, summary[key])
    hex_groups = " ".join(sheet["root_hash"][i : i + 4] for i in range(0, 64, 4))
    assert all(group in text for group in hex_groups.split()), "root hash printed in 4-digit groups"
    assert "冲正第" in flat and "金额录入错误" in flat, "the reversal is shown, not hidden"
    assert "下住建〔2026〕12号" in flat
    pages = int(re.search(r"共\s*(\d+)\s*页", text).group(1))  # type: ignore[union-attr]
    assert all(f"第 {n} 页" in text or f"第{n}页" in flat for n in range(1, pages + 1))
    fonts = pdf_fonts(pdf, tmp_path)
    assert fonts and all("yes" in row[-5:-2] for row in fonts), fonts
    assert not re.search(r"1[3-9]\d{9}", text)


async def test_republishing_makes_a_new_sheet_linked_to_the_previous(api: Api, world: World) -> None:
    code = await _project_with_money(world)
    first = await _publish(api, world, code)
    await world.entry(code, contribution("88", "王五", "6栋1单元101"))
    second = await _publish(api, world, code)
    assert second["id"] != first["id"] and second["sheet_number"] == 2
    assert second["previous"] == {
        "id": first["id"],
        "sheet_number": 1,
        "tree_size": first["tree_size"],
        "root_hash": first["root_hash"],
    }
    assert second["pdf_sha256"] != first["pdf_sha256"]
    # Two pieces of paper: a consistency proof between their roots verifies.
    proof = (
        await api.get(
            f"/api/v1/projects/{code}/ledger/consistency",
            params={"from": first["tree_size"], "to": second["tree_size"]},
        )
    ).json()
    merkle.verify_consistency(
        first["tree_size"],
        second["tree_size"],
        [bytes.fromhex(h) for h in proof["proof"]],
        bytes.fromhex(first["root_hash"]),
        bytes.fromhex(second["root_hash"]),
    )
    # The first sheet's stored PDF is unchanged.
    pdf = (await api.get(first["pdf_url"])).content
    assert hashlib.sha256(pdf).hexdigest() == first["pdf_sha256"]
    listing = (await api.get(f"/api/v1/projects/{code}/disclosures")).json()
    assert [d["sheet_number"] for d in listing["items"]] == [1, 2]


async def test_publish_is_idempotent(api: Api, world: World) -> None:
    code = await _project_with_money(world)
    key = new_key()
    url = f"/api/v1/projects/{code}/disclosures"
    first = await api.post(url, period(), token=world.treasurer, key=key)
    replay = await api.post(url, period(), token=world.treasurer, key=key)
    assert first.status_code == replay.status_code == 201
    assert replay.json() == first.json() and replay.headers.get("idempotent-replayed") == "true"
    assert len((await api.get(f"/api/v1/projects/{code}/disclosures")).json()["items"]) == 1
    other = await api.post(url, {**period(), "notice_days": 3}, token=world.treasurer, key=key)
    assert_problem(other, 422, "idempotency_key_reused")


async def test_publish_validation_and_authorization(api: Api, world: World) -> None:
    code = await _project_with_money(world)
    url = f"/api/v1/projects/{code}/disclosures"
    assert_problem(await api.post(url, period(), key=new_key()), 401, "unauthorized")
    assert_problem(
        await api.post(url, period(), token=world.tokens["treasurer_other"], key=new_key()), 403, "forbidden"
    )
    assert_problem(await api.post(url, period(), token=world.auditor, key=new_key()), 403, "forbidden")
    assert_problem(await api.post(url, period(), token=world.treasurer), 400, "idempotency_key_missing")
    future = {"period_start": past(), "period_end": (today() + timedelta(days=3)).isoformat()}
    assert_problem(await api.post(url, future, token=world.treasurer, key=new_key()), 422, "validation_failed")
    reversed_period = {"period_start": today().isoformat(), "period_end": past()}
    assert_problem(await api.post(url, reversed_period, token=world.treasurer, key=new_key()), 422, "validation_failed")
    assert_problem(
        await api.post(url, {**period(), "tree_size": 1}, token=world.treasurer, key=new_key()),
        422,
        "validation_failed",
    )
    assert_problem(
        await api.post("/api/v1/projects/nope-x/disclosures", period(), token=world.treasurer, key=new_key()),
        404,
        "not_found",
    )
    assert (await api.get(f"/api/v1/projects/{code}/disclosures")).json()["items"] == []


async def test_published_sheets_cannot_be_changed(api: Api, world: World, database: Database) -> None:
    code = await _project_with_money(world)
    sheet = await _publish(api, world, code)
    for method in ("PUT", "PATCH", "DELETE"):
        response = await api.request(method, f"/api/v1/disclosures/{sheet['id']}", token=world.admin)
        assert_problem(response, 405, "method_not_allowed")
    conn = await asyncpg.connect(database.urls.app.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("UPDATE disclosures SET pdf = 'x' WHERE id = $1", sheet["id"])
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("DELETE FROM objections")
    finally:
        await conn.close()
    owner = await asyncpg.connect(database.urls.owner.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        with pytest.raises(asyncpg.PostgresError, match="append-only"):
            await owner.execute("UPDATE disclosures SET title = 'x' WHERE id = $1", sheet["id"])
    finally:
        await owner.close()


async def test_preview_is_rendered_but_not_stored(api: Api, world: World, tmp_path: Path) -> None:
    code = await _project_with_money(world)
    url = f"/api/v1/projects/{code}/disclosures/preview.pdf"
    response = await api.get(url, token=world.treasurer, params=period())
    assert response.status_code == 200 and response.content[:5] == b"%PDF-"
    assert "资金收支公示" in re.sub(r"\s+", "", pdf_text(response.content, tmp_path))
    assert (await api.get(f"/api/v1/projects/{code}/disclosures")).json()["items"] == []
    assert_problem(await api.get(url, params=period()), 401, "unauthorized")
    assert_problem(await api.get(url, token=world.tokens["treasurer_other"], params=period()), 403, "forbidden")


async def test_objections_are_public_without_contact_and_answered_by_the_treasurer(
    api: Api, world: World, engine
) -> None:
    code = await _project_with_money(world)
    sheet = await _publish(api, world, code)
    url = f"/api/v1/disclosures/{sheet['id']}/objections"
    filed = await api.post(url, {"message": "第 5 笔支出的发票号看不清", "contact": "13812345678"})
    assert filed.status_code == 201, filed.text
    objection = filed.json()
    assert "contact" not in objection and "13812345678" not in filed.text
    answer_url = f"/api/v1/objections/{objection['id']}/responses"
    assert_problem(
        await api.post(answer_url, {"message": "x"}, token=world.tokens["treasurer_other"]), 403, "forbidden"
    )
    assert_problem(await api.post(answer_url, {"message": "x"}), 401, "unauthorized")
    answered = await api.post(answer_url, {"message": "发票号为 04417305，原件可到居委会查阅"}, token=world.treasurer)
    assert answered.status_code == 201, answered.text
    listing = await api.get(url)
    assert "13812345678" not in listing.text
    items = listing.json()["items"]
    assert items[0]["responses"][0]["message"].startswith("发票号为")
    assert_problem(await api.post(url, {"message": ""}), 422, "validation_failed")
    assert_problem(await api.post("/api/v1/disclosures/999999999/objections", {"message": "x"}), 404, "not_found")
    with pytest.raises(Conflict):
        await file_objection(engine, sheet["id"], "过期异议", None, today=today() + timedelta(days=30))


async def test_objections_are_rate_limited_per_client(database: Database, tmp_path: Path, engine) -> None:
    from litestar.testing import AsyncTestClient

    from api.app import create_app
    from tests.api_support import app_settings

    app = create_app(app_settings(database, tmp_path, public_write_rate_per_minute=3, pdf_render_mode="thread"))
    async with AsyncTestClient(app) as client:
        # No sheet needed: the limit applies before the handler runs.
        statuses = []
        for _ in range(5):
            response = await client.post(
                "/api/v1/disclosures/999999999/objections",
                json={"message": "x"},
                headers={"X-Forwarded-For": f"10.0.0.{_}"},
            )
            statuses.append(response.status_code)
        assert statuses[:3] == [404, 404, 404]
        assert statuses[3:] == [429, 429], "a client-supplied header does not reset the limit"
        assert response.json()["code"] == "rate_limited"
