"""API.md "Communities and projects", "Tokens and health" and the decisions of 四议两公开, through
the real app."""

from __future__ import annotations

import hashlib
from datetime import timedelta
from typing import Any

from sqlalchemy import text

from ledger.database import head_revision
from tests.api_support import (
    World,
    assert_money_two_decimals,
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

SUMMARY_KEYS = {
    "budget",
    "contributed",
    "granted",
    "spent",
    "refunded",
    "balance",
    "in_kind_value",
    "pledged",
    "pledge_paid",
    "contributors",
    "households_in_scope",
    "participation_rate",
    "by_category",
    "ledger",
}


# -- communities ---------------------------------------------------------------------------------


async def test_create_get_and_list_communities(world: World) -> None:
    code = unique("jinxiu")
    body = {"code": code, "name": "锦绣花园小区", "district": "下陆区团城山街道", "households": 1200}
    response = await world.api.post("/api/v1/communities", body, token=world.admin)
    assert response.status_code == 201, response.text
    created = response.json()
    assert {k: created[k] for k in body} == body and created["created_at"]
    assert (await world.api.get(f"/api/v1/communities/{code}")).json() == created

    for bad in (
        {"code": "A", "name": "x"},
        {"code": "has space", "name": "x"},
        {"code": unique("ok"), "name": ""},
        {"code": unique("ok"), "name": "x", "households": -1},
        {"code": unique("ok"), "name": "x", "households": "12"},
        {"name": "x"},
    ):
        response = await world.api.post("/api/v1/communities", bad, token=world.admin)
        assert_problem(response, 422, "validation_failed")

    # Paginate with the cursor until the new community shows up; `next` is null on the last page.
    seen: list[str] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 2}
        if cursor is not None:
            params["cursor"] = cursor
        page = (await world.api.get("/api/v1/communities", params=params)).json()
        assert {"items", "next"} <= set(page) and len(page["items"]) <= 2
        seen += [c["code"] for c in page["items"]]
        cursor = page["next"]
        if cursor is None:
            break
        assert isinstance(cursor, str)
    assert code in seen and len(seen) == len(set(seen))
    assert_problem(await world.api.get("/api/v1/communities", params={"cursor": "abc"}), 422, "validation_failed")


# -- projects ------------------------------------------------------------------------------------


def project_body(world: World, **extra: Any) -> dict[str, Any]:
    return {
        "code": unique("road"),
        "community": world.community,
        "title": "小区路面刷黑",
        "description": "…",
        "households_in_scope": 400,
        "budget_lines": [{"category": "materials", "label": "沥青材料", "source": "crowdfunding", "amount": "60000"}],
        **extra,
    }


async def test_create_and_read_projects(world: World) -> None:
    body = project_body(world)
    response = await world.api.post("/api/v1/projects", body, token=world.treasurer)
    assert response.status_code == 201, response.text
    created = response.json()
    assert created["code"] == body["code"] and created["community"] == world.community
    assert created["spending_gate"] == "resolution"  # the default
    assert created["budget_lines"] == [
        {"category": "materials", "label": "沥青材料", "source": "crowdfunding", "amount": "60000.00"}
    ]
    got = (await world.api.get(f"/api/v1/projects/{body['code']}")).json()
    assert got["stage"] == "proposal"
    assert set(got["summary"]) >= SUMMARY_KEYS  # the service may add fields
    assert {"size", "root_hash"} <= set(got["summary"]["ledger"])
    assert got["summary"]["by_category"] == [
        {"category": "materials", "label": "沥青材料", "budget": "60000.00", "spent": "0.00"}
    ]
    assert_money_two_decimals(got)

    for source in ("crowdfunding", "grant", "collective", "other"):
        line = {"category": "labour", "label": "人工", "source": source, "amount": "1"}
        response = await world.api.post("/api/v1/projects", project_body(world, budget_lines=[line]), token=world.admin)
        assert response.status_code == 201
    bad_line = {"category": "labour", "label": "人工", "source": "lottery", "amount": "1"}
    for bad in (
        project_body(world, code="X"),
        project_body(world, code="a" * 65),
        project_body(world, budget_lines=[bad_line]),
        project_body(world, spending_gate="sometimes"),
        project_body(world, households_in_scope="400"),
        project_body(world, title=""),
    ):
        assert_problem(await world.api.post("/api/v1/projects", bad, token=world.admin), 422, "validation_failed")
    assert_problem(
        await world.api.post("/api/v1/projects", project_body(world, community="no-such"), token=world.admin),
        404,
        "not_found",
    )
    # Only the admin may waive the spending gate.
    waived = project_body(world, spending_gate="waived")
    assert_problem(await world.api.post("/api/v1/projects", waived, token=world.treasurer), 403, "forbidden")
    response = await world.api.post("/api/v1/projects", waived, token=world.admin)
    assert response.status_code == 201 and response.json()["spending_gate"] == "waived"


async def test_summary_figures(world: World) -> None:
    project = await world.project()
    await world.entry(project, contribution(amount="200", name="张三", household="3栋2单元501"))
    await world.entry(project, contribution(amount="300", name="李四", household="5栋1单元302"))
    await world.entry(project, grant(amount="1000"))
    await world.entry(project, expenditure(amount="450.5"))
    await world.entry(project, expenditure(amount="100", category="labour"))
    refund = {
        "kind": "refund",
        "amount": "50",
        "occurred_on": past(),
        "contributor": {"name": "张三", "household": "3栋2单元501"},
    }
    await world.entry(project, refund)
    s = (await world.api.get(f"/api/v1/projects/{project}")).json()["summary"]
    assert (s["contributed"], s["granted"], s["spent"], s["refunded"]) == ("500.00", "1000.00", "550.50", "50.00")
    assert s["balance"] == "899.50"
    assert s["budget"] == "80000.50" and s["contributors"] == 2 and s["households_in_scope"] == 400
    assert s["participation_rate"] == 2 / 400
    assert {c["category"]: c["spent"] for c in s["by_category"]} == {"materials": "450.50", "labour": "100.00"}
    head = (await world.api.get(f"/api/v1/projects/{project}/ledger")).json()
    assert s["ledger"] == head and s["ledger"]["root_hash"] == s["ledger"]["root_hash"].lower()


async def test_list_projects_filters_and_pagination(world: World) -> None:
    community = unique("filt")
    response = await world.api.post("/api/v1/communities", {"code": community, "name": "筛选小区"}, token=world.admin)
    assert response.status_code == 201
    codes = [await world.project(community=community) for _ in range(3)]
    listed = (await world.api.get("/api/v1/projects", params={"community": community})).json()
    assert [p["code"] for p in listed["items"]] == codes and listed["next"] is None
    page = (await world.api.get("/api/v1/projects", params={"community": community, "limit": 2})).json()
    assert len(page["items"]) == 2 and page["next"] is not None
    rest = (await world.api.get("/api/v1/projects", params={"community": community, "cursor": page["next"]})).json()
    assert [p["code"] for p in page["items"] + rest["items"]] == codes and rest["next"] is None

    response = await world.api.post(
        f"/api/v1/projects/{codes[0]}/decisions",
        {"stage": "deliberation", "held_on": past(), "body": "两委", "eligible": 9, "attendees": 9, "votes_for": 9},
        token=world.admin,
    )
    assert response.status_code == 201, response.text
    by_stage = (
        await world.api.get("/api/v1/projects", params={"community": community, "stage": "deliberation"})
    ).json()
    assert [p["code"] for p in by_stage["items"]] == [codes[0]]
    assert_problem(await world.api.get("/api/v1/projects", params={"stage": "party"}), 422, "validation_failed")
    assert (await world.api.get("/api/v1/projects", params={"community": "no-such"})).json() == {
        "items": [],
        "next": None,
    }


# -- tokens --------------------------------------------------------------------------------------


async def test_token_shown_once_and_revocation(world: World) -> None:
    response = await world.api.post(
        "/api/v1/tokens",
        {"name": "锦绣花园报账员", "role": "treasurer", "community": world.community},
        token=world.admin,
    )
    assert response.status_code == 201, response.text
    created = response.json()
    assert {"id", "token", "name", "role", "community", "created_at", "revoked_at"} <= set(created)
    assert created["role"] == "treasurer" and created["community"] == world.community and created["revoked_at"] is None
    secret = created["token"]
    # Stored only as a hash.
    async with world.engine.connect() as conn:
        row = (
            (await conn.execute(text("SELECT * FROM api_tokens WHERE id = :id"), {"id": created["id"]})).one()._mapping
        )
    assert bytes(row["token_hash"]) == hashlib.sha256(secret.encode()).digest()
    assert all(secret not in str(value) for value in row.values())

    project = await world.project()
    ok = await world.api.post(f"/api/v1/projects/{project}/entries", grant(), token=secret, key=new_key())
    assert ok.status_code == 201
    assert secret not in ok.text

    revoked = await world.api.delete(f"/api/v1/tokens/{created['id']}", token=world.admin)
    assert revoked.status_code == 204 and revoked.content == b""
    after = await world.api.post(f"/api/v1/projects/{project}/entries", grant(), token=secret, key=new_key())
    assert_problem(after, 401, "unauthorized")
    assert_problem(await world.api.get(f"/api/v1/projects/{project}", token=secret), 401, "unauthorized")
    assert_problem(await world.api.delete(f"/api/v1/tokens/{created['id']}", token=world.admin), 404, "not_found")

    admin = await world.api.post("/api/v1/tokens", {"name": "平台管理员", "role": "admin"}, token=world.admin)
    assert admin.status_code == 201 and admin.json()["community"] is None
    for bad in (
        {"name": "x", "role": "treasurer"},
        {"name": "x", "role": "admin", "community": world.community},
        {"name": "x", "role": "root"},
        {"name": "", "role": "admin"},
    ):
        assert_problem(await world.api.post("/api/v1/tokens", bad, token=world.admin), 422, "validation_failed")
    assert_problem(
        await world.api.post(
            "/api/v1/tokens", {"name": "x", "role": "auditor", "community": "no-such"}, token=world.admin
        ),
        404,
        "not_found",
    )
    assert_problem(await world.api.delete("/api/v1/tokens/not-a-uuid", token=world.admin), 404, "not_found")


# -- health --------------------------------------------------------------------------------------


async def test_health(world: World) -> None:
    live = await world.api.get("/healthz")
    assert live.status_code == 200 and live.json()["status"] == "ok"
    ready = await world.api.get("/readyz")
    assert ready.status_code == 200
    assert (ready.json()["status"], ready.json()["revision"], ready.json()["head"]) == (
        "ready",
        head_revision(),
        head_revision(),
    )
    # Probes do not depend on whatever Authorization header a proxy forwards.
    assert (await world.api.get("/healthz", token=world.tokens["garbage"])).status_code == 200


# -- decisions (四议两公开) ------------------------------------------------------------------------


def decision(stage: str, days_ago: int, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "stage": stage,
        "held_on": (today() - timedelta(days=days_ago)).isoformat(),
        "body": "居民代表大会",
    }
    if stage in ("deliberation", "review", "resolution"):
        body |= {"eligible": 30, "attendees": 25, "votes_for": 20, "votes_against": 3, "votes_abstain": 2}
    return body | extra


async def test_decision_trail_opens_spending(world: World) -> None:
    project = await world.project(gate="resolution")
    url = f"/api/v1/projects/{project}/decisions"
    await world.entry(project, contribution(amount="5000"))

    for stage, days_ago in (("proposal", 40), ("deliberation", 35), ("review", 30), ("resolution", 25)):
        response = await world.api.post(url, decision(stage, days_ago), token=world.treasurer)
        assert response.status_code == 201, response.text
        assert response.json()["stage"] == stage
    assert (await world.api.get(f"/api/v1/projects/{project}")).json()["stage"] == "resolution"
    spend = await world.api.post(
        f"/api/v1/projects/{project}/entries", expenditure(), token=world.treasurer, key=new_key()
    )
    assert_problem(spend, 409, "stage_forbids_entry")

    key = new_key()
    announced = await world.api.post(url, decision("announcement", 20, notice_days=7), token=world.treasurer, key=key)
    assert announced.status_code == 201
    assert announced.json()["notice_end"] == (today() - timedelta(days=13)).isoformat()
    # Idempotency-Key is honoured on decisions too.
    again = await world.api.post(url, decision("announcement", 20, notice_days=7), token=world.treasurer, key=key)
    assert again.content == announced.content and again.headers["idempotent-replayed"] == "true"
    changed = await world.api.post(url, decision("announcement", 19, notice_days=7), token=world.treasurer, key=key)
    assert_problem(changed, 422, "idempotency_key_reused")

    # Announced but not started: still closed. A start inside the notice period: 409 conflict.
    spend = await world.api.post(
        f"/api/v1/projects/{project}/entries", expenditure(), token=world.treasurer, key=new_key()
    )
    assert_problem(spend, 409, "stage_forbids_entry")
    assert_problem(await world.api.post(url, decision("start", 15), token=world.treasurer), 409, "conflict")
    response = await world.api.post(url, decision("start", 10), token=world.treasurer)
    assert response.status_code == 201, response.text

    spend = await world.api.post(
        f"/api/v1/projects/{project}/entries", expenditure(), token=world.treasurer, key=new_key()
    )
    assert spend.status_code == 201, spend.text

    listed = (await world.api.get(url)).json()
    assert [d["stage"] for d in listed["items"]] == [
        "proposal",
        "deliberation",
        "review",
        "resolution",
        "announcement",
        "start",
    ]
    assert listed["items"][3]["votes_for"] == 20 and listed["items"][3]["attendees"] == 25


async def test_decision_rules(world: World) -> None:
    project = await world.project(gate="resolution")
    url = f"/api/v1/projects/{project}/decisions"
    assert_problem(await world.api.post(url, decision("review", 5), token=world.treasurer), 409, "conflict")
    assert (await world.api.post(url, decision("proposal", 5), token=world.treasurer)).status_code == 201
    # Quorum: more than half must attend; a majority of attendees must agree.
    thin = decision("deliberation", 4, eligible=30, attendees=10, votes_for=10)
    assert_problem(await world.api.post(url, thin, token=world.treasurer), 409, "conflict")
    split = decision("deliberation", 4, eligible=30, attendees=20, votes_for=10)
    assert_problem(await world.api.post(url, split, token=world.treasurer), 409, "conflict")
    for bad in (
        decision("vote", 4),
        decision("deliberation", 4, eligible=-1),
        decision("deliberation", 4, minutes_sha256="XYZ"),
        decision("announcement", 4, notice_days=91),
        {"stage": "deliberation", "held_on": past()},
    ):
        assert_problem(await world.api.post(url, bad, token=world.treasurer), 422, "validation_failed")
    assert error_fields(
        assert_problem(
            await world.api.post(url, decision("deliberation", -3), token=world.treasurer), 422, "validation_failed"
        )
    ) == {"held_on"}
    assert [d["stage"] for d in (await world.api.get(url)).json()["items"]] == ["proposal"]
    assert_problem(await world.api.get("/api/v1/projects/no-such/decisions"), 404, "not_found")
