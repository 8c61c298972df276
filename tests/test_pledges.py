"""Pledges kept (认筹兑现): a contribution names the pledge it fulfils; 认筹/实缴 per pledge and
overall; over-fulfilment warned, the excess a plain contribution; fulfilment across reversals."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from ledger import tree
from tests.api_support import (
    World,
    assert_money_two_decimals,
    assert_problem,
    contribution,
    error_fields,
    new_key,
    past,
    pledge,
    reversal,
)
from tests.test_disclosures import pdf_text, period
from tests.test_workspace import Browser as WorkspaceBrowser
from tests.test_workspace import form_fields, sign_in

WANG = {"name": "王五", "household": "6栋1单元101"}


def pays(amount: str, pledge_seq: int | None, who: dict[str, Any] = WANG, **extra: Any) -> dict[str, Any]:
    body = contribution(amount, who["name"], who.get("household"), **extra)
    if pledge_seq is not None:
        body["pledge"] = pledge_seq
    return body


def promises(amount: str, who: dict[str, Any] = WANG, *, anonymous: bool = False) -> dict[str, Any]:
    body = pledge(amount, who["name"])
    body["contributor"] = {**who, "anonymous": anonymous}
    return body


async def summary(world: World, project: str) -> dict[str, Any]:
    response = await world.api.get(f"/api/v1/projects/{project}")
    assert response.status_code == 200, response.text
    return response.json()["summary"]  # type: ignore[no-any-return]


async def pledges(world: World, project: str, **params: Any) -> dict[str, Any]:
    response = await world.api.get(f"/api/v1/projects/{project}/pledges", params=params)
    assert response.status_code == 200, response.text
    body = response.json()
    assert_money_two_decimals(body)
    return body  # type: ignore[no-any-return]


async def test_payments_naming_a_pledge_fulfil_it_up_to_the_promise(world: World) -> None:
    project = await world.project()
    p1 = (await world.entry(project, promises("500")))["seq"]  # 1: 王五 promises 500
    li = {"name": "李四", "household": "5栋2单元502"}
    p2 = (await world.entry(project, promises("300", li)))["seq"]  # 2: 李四 promises 300
    first = await world.entry(project, pays("200", p1))  # 3
    assert first["pledge"] == p1 and first["warnings"] == []
    assert json.loads(first["document"])["pledge"] == p1, "the pledge named is part of the hashed document"
    await world.entry(project, pays("100", None))  # 4: a payment naming no pledge fulfils none

    x = await summary(world, project)
    assert (x["pledged"], x["pledge_paid"], x["pledge_outstanding"], x["pledges_open"]) == (
        "800.00",
        "200.00",
        "600.00",
        2,
    )
    assert x["contributed"] == "300.00"

    listed = await pledges(world, project)
    assert listed["totals"] == {
        "pledged": "800.00",
        "paid": "200.00",
        "outstanding": "600.00",
        "excess": "0.00",
        "count": 2,
        "open": 2,
    }
    rows = {r["seq"]: r for r in listed["items"]}
    assert (rows[p1]["amount"], rows[p1]["paid"], rows[p1]["outstanding"], rows[p1]["status"]) == (
        "500.00",
        "200.00",
        "300.00",
        "open",
    )
    assert rows[p1]["fulfilled_by"] == [first["seq"]]
    assert rows[p1]["contributor"]["name"] == "王*" and rows[p1]["contributor"]["household"] == "6栋"
    assert (rows[p2]["paid"], rows[p2]["fulfilled_by"]) == ("0.00", [])

    await world.entry(project, pays("300", p1))  # pays the rest
    assert (await pledges(world, project, status="open"))["items"][0]["seq"] == p2
    fulfilled = (await pledges(world, project, status="fulfilled"))["items"]
    assert [(r["seq"], r["paid"], r["outstanding"]) for r in fulfilled] == [(p1, "500.00", "0.00")]
    assert (await summary(world, project))["pledges_open"] == 1


async def test_over_fulfilment_is_warned_and_the_excess_is_a_plain_contribution(world: World) -> None:
    project = await world.project()
    p = (await world.entry(project, promises("500")))["seq"]
    await world.entry(project, pays("400", p))
    key = new_key()
    response = await world.api.post(
        f"/api/v1/projects/{project}/entries", pays("250", p), token=world.treasurer, key=key
    )
    assert response.status_code == 201, response.text
    over = response.json()
    assert [w["code"] for w in over["warnings"]] == ["pledge_over_fulfilled"]
    message = over["warnings"][0]["message"]
    assert "250.00" in message and "100.00" in message and "150.00" in message and "普通出资" in message
    # The retry gets the same answer, warning included, and records nothing more.
    again = await world.api.post(f"/api/v1/projects/{project}/entries", pays("250", p), token=world.treasurer, key=key)
    assert again.headers.get("Idempotent-Replayed") == "true" and again.json() == over

    whole = await world.entry(project, pays("80", p))  # the pledge is already kept in full
    assert (
        whole["warnings"][0]["code"] == "pledge_over_fulfilled"
        and "全部按普通出资计" in whole["warnings"][0]["message"]
    )

    x = await summary(world, project)
    assert (x["contributed"], x["pledged"], x["pledge_paid"], x["pledges_open"]) == ("730.00", "500.00", "500.00", 0)
    totals = (await pledges(world, project))["totals"]
    assert (totals["paid"], totals["excess"]) == ("500.00", "230.00")
    # A read of the entry carries no warning: it belonged to the write.
    read = await world.api.get(f"/api/v1/projects/{project}/entries/{over['seq']}")
    assert read.json()["warnings"] == [] and read.json()["pledge"] == p


async def test_fulfilment_follows_reversals(world: World, engine: AsyncEngine) -> None:
    project = await world.project()
    p = (await world.entry(project, promises("500")))["seq"]  # 1
    a = (await world.entry(project, pays("300", p)))["seq"]  # 2
    b = (await world.entry(project, pays("200", p)))["seq"]  # 3: kept in full
    assert (await summary(world, project))["pledge_paid"] == "500.00"

    await world.entry(project, reversal(a))  # 4: the 300 was a mistake: it no longer fulfils
    x = await summary(world, project)
    assert (x["pledge_paid"], x["pledge_outstanding"], x["pledges_open"]) == ("200.00", "300.00", 1)
    row = (await pledges(world, project))["items"][0]
    assert (row["paid"], row["outstanding"], row["fulfilled_by"]) == ("200.00", "300.00", [b])

    # Room again: a new 300 fulfils without a warning.
    c = await world.entry(project, pays("300", p))
    assert c["warnings"] == []
    assert (await summary(world, project))["pledge_paid"] == "500.00"

    # The pledge itself is withdrawn: it promises nothing; what was paid stays, as plain money.
    await world.entry(project, reversal(p))
    x = await summary(world, project)
    assert (x["pledged"], x["pledge_paid"], x["pledge_outstanding"], x["pledges_open"]) == (
        "0.00",
        "0.00",
        "0.00",
        0,
    )
    assert x["contributed"] == "500.00"
    listed = await pledges(world, project, status="reversed")
    assert [(r["seq"], r["status"], r["excess"]) for r in listed["items"]] == [(p, "reversed", "500.00")]
    assert listed["totals"]["count"] == 0
    refused = await world.api.post(
        f"/api/v1/projects/{project}/entries", pays("50", p), token=world.treasurer, key=new_key()
    )
    assert "pledge" in error_fields(assert_problem(refused, 422, "validation_failed"))

    verification = await tree.verify(engine, project)
    assert verification.ok and verification.pledge_totals_ok


async def test_a_batch_may_pledge_and_pay_at_once(world: World) -> None:
    project = await world.project()
    response = await world.api.post(
        f"/api/v1/projects/{project}/entries/batch",
        {"entries": [promises("500"), pays("600", 1)]},
        token=world.treasurer,
        key=new_key(),
    )
    assert response.status_code == 201, response.text
    items = response.json()["items"]
    assert items[0]["warnings"] == [] and items[1]["warnings"][0]["code"] == "pledge_over_fulfilled"
    x = await summary(world, project)
    assert (x["pledge_paid"], x["contributed"]) == ("500.00", "600.00")


async def test_naming_a_wrong_pledge_is_refused_and_records_nothing(world: World) -> None:
    project = await world.project()
    p = (await world.entry(project, promises("500")))["seq"]  # 1
    other = (await world.entry(project, pays("100", None, {"name": "李四", "household": "5栋"})))["seq"]  # 2
    anonymous_pledge = (await world.entry(project, promises("100", anonymous=True)))["seq"]  # 3
    cases = [
        pays("100", p, {"name": "李四", "household": "5栋"}),  # another person's pledge
        pays("100", other),  # not a pledge
        pays("100", 99),  # no such entry
        pays("100", p, anonymous=True),  # an anonymous gift would be linked to a named pledge
        pays("100", anonymous_pledge),  # and a named gift to an anonymous one
    ]
    for body in cases:
        response = await world.api.post(
            f"/api/v1/projects/{project}/entries", body, token=world.treasurer, key=new_key()
        )
        problem = assert_problem(response, 422, "validation_failed")
        assert "pledge" in error_fields(problem), problem
    for body in (
        {**pledge("10"), "pledge": p},  # only a contribution names a pledge
        pays("100", 0),
        pays("100", None) | {"pledge": "1"},
    ):
        response = await world.api.post(
            f"/api/v1/projects/{project}/entries", body, token=world.treasurer, key=new_key()
        )
        assert_problem(response, 422, "validation_failed")
    assert (await world.api.get(f"/api/v1/projects/{project}/ledger")).json()["size"] == 3
    bad = await world.api.get(f"/api/v1/projects/{project}/pledges", params={"status": "half"})
    assert bad.status_code in (400, 422)


async def test_verify_notices_tampered_pledge_totals(
    world: World, engine: AsyncEngine, owner_engine: AsyncEngine
) -> None:
    project = await world.project()
    p = (await world.entry(project, promises("500")))["seq"]
    await world.entry(project, pays("200", p))
    assert (await tree.verify(engine, project)).pledge_totals_ok
    async with owner_engine.begin() as conn:
        await conn.execute(
            text(
                "UPDATE pledge_totals SET paid_fen = 50000 WHERE project_id = "
                "(SELECT id FROM projects WHERE code = :code)"
            ),
            {"code": project},
        )
    found = await tree.verify(engine, project)
    assert not found.ok and not found.pledge_totals_ok
    assert (await world.api.get(f"/api/v1/projects/{project}/ledger/verify")).json()["pledge_totals_ok"] is False


async def test_the_sheet_lists_each_pledge_with_what_was_paid(world: World, tmp_path: Path) -> None:
    project = await world.project()
    p1 = (await world.entry(project, promises("500")))["seq"]
    li = {"name": "李四", "household": "5栋2单元502"}
    p2 = (await world.entry(project, promises("300", li)))["seq"]
    gone = (await world.entry(project, promises("999", {"name": "赵六", "household": "8栋"})))["seq"]
    await world.entry(project, reversal(gone))  # withdrawn: not listed
    await world.entry(project, pays("650", p1))  # 150.00 beyond the promise
    await world.entry(project, pays("100", p2, li))
    sheet = await world.api.post(
        f"/api/v1/projects/{project}/disclosures", {**period(), "notice_days": 7}, token=world.treasurer, key=new_key()
    )
    assert sheet.status_code == 201, sheet.text
    pdf = (await world.api.get(sheet.json()["pdf_url"])).content
    text = pdf_text(pdf, tmp_path)
    flat = re.sub(r"\s+", " ", text)
    assert "认筹 800.00 元，已实缴 600.00 元，兑现率 75.0%；尚未兑现 200.00 元（1 笔" in flat, flat[:2000]
    assert "认筹兑现情况（累计）" in flat
    assert re.search(rf"\b{p1}\s+\S+\s+王\*\s+6栋\s+500\.00\s+500\.00\s+0\.00\s+超额150\.00", flat), flat
    assert re.search(rf"\b{p2}\s+\S+\s+李\*\s+5栋\s+300\.00\s+100\.00\s+200\.00", flat), flat
    assert "累计（2 笔） 800.00 600.00 200.00" in flat
    assert "赵*" not in flat and "999.00" not in flat.split("认筹兑现情况")[1].split("冲正记录")[0]


async def test_the_pages_show_each_pledge_and_those_still_open(world: World) -> None:
    project = await world.project()
    p1 = (await world.entry(project, promises("500")))["seq"]
    li = {"name": "李四", "household": "5栋2单元502"}
    p2 = (await world.entry(project, promises("300", li)))["seq"]
    paid = await world.entry(project, pays("650", p1))
    x = await summary(world, project)

    html = (await world.api.get(f"/p/{project}")).text
    assert re.search(r'id="fig-pledged">¥800\.00<', html) and re.search(r'id="fig-pledge-paid">¥500\.00<', html)
    assert re.search(r'id="fig-pledge-outstanding">¥300\.00<', html) and x["pledge_outstanding"] == "300.00"
    section = html.split('id="h-pledges"')[1].split("</section>")[0]
    assert "尚未兑现的认筹（1 笔）" in section
    assert f"第 {p2} 笔</a> 李* · 5栋" in section and f"第 {p1} 笔" not in section, "only open pledges here"
    assert "李四" not in html

    listing = (await world.api.get(f"/p/{project}/pledges")).text
    assert "认筹 2 笔，共 ¥800.00" in listing and "兑现率 62.5%" in listing
    assert "超出认筹额的出资 ¥150.00，按普通出资计" in listing
    assert f"第 {p1} 笔</a> 王* · 6栋" in listing and "已兑现" in listing and "超额 ¥150.00 按普通出资计" in listing
    only_open = (await world.api.get(f"/p/{project}/pledges", params={"status": "open"})).text
    assert f"第 {p2} 笔" in only_open and f"第 {p1} 笔" not in only_open

    entry = (await world.api.get(f"/p/{project}/e/{paid['seq']}")).text
    assert f'href="/p/{project}/e/{p1}">第 {p1} 笔认筹</a>' in entry


async def test_the_workspace_form_names_a_pledge_and_says_where_it_stands(world: World) -> None:
    project = await world.project()
    p = (await world.entry(project, promises("500")))["seq"]
    await world.entry(project, pays("400", p))
    browser = WorkspaceBrowser(world.api.client)
    await sign_in(browser, world.treasurer)
    url = f"/w/p/{project}/new/contribution"
    form = await browser.get(url)
    assert 'name="pledge"' in form.text and "兑现的认筹" in form.text
    body = {
        "amount": "250",
        "occurred_on": past(),
        "contributor.name": "王五",
        "contributor.household": WANG["household"],
    }
    done = await browser.post(url, data={**form_fields(form.text, url), **body, "pledge": str(p)})
    assert done.status_code == 303, done.text
    desk = (await browser.get(done.headers["location"])).text
    assert f"兑现第 {p} 笔认筹：认筹 ¥500.00，实缴 ¥500.00，未缴 ¥0.00" in desk
    assert "超出认筹额 ¥150.00，按普通出资计" in desk
    # Naming another person's pledge is refused next to the field.
    other = await world.entry(project, promises("100", {"name": "李四", "household": "5栋"}))
    refused = await browser.post(
        url, data={**form_fields((await browser.get(url)).text, url), **body, "pledge": str(other["seq"])}
    )
    assert refused.status_code == 422 and "不是这位出资人的" in refused.text
