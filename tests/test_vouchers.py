"""Maker-checker: countersign threshold, vouchers submitted, approved by another person, rejected;
re-checks at approval; replay; append-only voucher events; the sheet's 审核人."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from ledger.tokens import create_token
from tests.api_support import (
    World,
    assert_problem,
    contribution,
    expenditure,
    new_key,
    past,
    refund,
    today,
)
from tests.test_disclosures import pdf_text


def vouchers_url(project: str) -> str:
    return f"/api/v1/projects/{project}/vouchers"


async def submit(world: World, project: str, body: dict[str, Any], *, token: str | None = None) -> dict[str, Any]:
    response = await world.api.post(vouchers_url(project), body, token=token or world.treasurer, key=new_key())
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


async def ledger_size(world: World, project: str) -> int:
    return (await world.api.get(f"/api/v1/projects/{project}/ledger")).json()["size"]  # type: ignore[no-any-return]


async def test_countersign_threshold_refuses_direct_spending(world: World) -> None:
    project = await world.project(countersign_over="0")
    assert (await world.api.get(f"/api/v1/projects/{project}")).json()["countersign_over"] == "0.00"
    paid = await world.entry(project, contribution(amount="500"))
    response = await world.api.post(
        f"/api/v1/projects/{project}/entries", expenditure("1"), token=world.treasurer, key=new_key()
    )
    body = assert_problem(response, 409, "countersign_required")
    assert "审核" in body["detail"]
    response = await world.api.post(
        f"/api/v1/projects/{project}/entries",
        refund("1", {"id": paid["contributor"]["id"]}),
        token=world.treasurer,
        key=new_key(),
    )
    assert_problem(response, 409, "countersign_required")
    assert await ledger_size(world, project) == 1

    # A threshold of 1000 yuan: below it, direct entry; above it, a voucher.
    project = await world.project(countersign_over="1000")
    await world.entry(project, contribution(amount="5000"))
    await world.entry(project, expenditure("1000"))
    response = await world.api.post(
        f"/api/v1/projects/{project}/entries", expenditure("1000.01"), token=world.treasurer, key=new_key()
    )
    assert_problem(response, 409, "countersign_required")
    # No threshold: spending as before.
    plain = await world.project()
    assert (await world.api.get(f"/api/v1/projects/{plain}")).json()["countersign_over"] is None


async def test_voucher_life_submit_approve_replay(world: World, engine: AsyncEngine) -> None:
    project = await world.project(countersign_over="0")
    await world.entry(project, contribution(amount="5000"))
    key = new_key()
    body = expenditure("1200", memo="沥青首批")
    submitted = await world.api.post(vouchers_url(project), body, token=world.treasurer, key=key)
    assert submitted.status_code == 201, submitted.text
    voucher = submitted.json()
    assert voucher["status"] == "pending" and voucher["entry"] is None
    assert voucher["submitted_by"] == {"role": "treasurer", "name": "test treasurer"}
    assert voucher["amount"] == "1200.00" and len(voucher["document_sha256"]) == 64
    again = await world.api.post(vouchers_url(project), body, token=world.treasurer, key=key)
    assert again.content == submitted.content and again.headers["idempotent-replayed"] == "true"
    assert await ledger_size(world, project) == 1

    listed = await world.api.get(vouchers_url(project), token=world.auditor, params={"status": "pending"})
    assert [v["id"] for v in listed.json()["items"]] == [voucher["id"]]

    approve_url = f"/api/v1/vouchers/{voucher['id']}/approve"
    # Who may not approve: the treasurer (wrong role), another community's auditor, nobody.
    assert_problem(await world.api.post(approve_url, token=world.treasurer), 403, "forbidden")
    assert_problem(await world.api.post(approve_url, token=world.tokens["auditor_other"]), 403, "forbidden")
    assert_problem(await world.api.post(approve_url), 401, "unauthorized")

    key = new_key()
    approved = await world.api.post(approve_url, token=world.auditor, key=key)
    assert approved.status_code == 201, approved.text
    out = approved.json()
    assert out["status"] == "approved" and out["checked_by"] == {"role": "auditor", "name": "test auditor"}
    entry = out["entry"]
    document = json.loads(entry["document"])
    assert document["maker"] == {"role": "treasurer", "name": "test treasurer"}
    assert document["checker"] == {"role": "auditor", "name": "test auditor"}
    assert entry["kind"] == "expenditure" and entry["amount"] == "1200.00" and entry["memo"] == "沥青首批"
    assert entry["checker"]["name"] == "test auditor"
    # The public entry shows both signers, and the stored document still verifies.
    public = (await world.api.get(f"/api/v1/projects/{project}/entries/{entry['seq']}")).json()
    assert public["maker"]["name"] == "test treasurer" and public["document"] == entry["document"]
    assert (await world.api.get(f"/api/v1/projects/{project}/ledger/verify")).json()["ok"] is True

    # Replay: the original answer, nothing recorded twice; a new key: 409 (already decided).
    replay = await world.api.post(approve_url, token=world.auditor, key=key)
    assert replay.content == approved.content and replay.headers["idempotent-replayed"] == "true"
    assert_problem(await world.api.post(approve_url, token=world.auditor, key=new_key()), 409, "conflict")
    assert_problem(
        await world.api.post(f"/api/v1/vouchers/{voucher['id']}/reject", {"reason": "晚了"}, token=world.auditor),
        409,
        "conflict",
    )
    assert await ledger_size(world, project) == 2
    shown = (await world.api.get(f"/api/v1/vouchers/{voucher['id']}", token=world.treasurer)).json()
    assert shown["status"] == "approved" and shown["entry_seq"] == entry["seq"]


async def test_sheet_names_the_checker(world: World, engine: AsyncEngine, tmp_path: Path) -> None:
    """The sheet's 审核人 column shows who approved the payment, masked like every person on it."""
    project = await world.project(countersign_over="0")
    await world.entry(project, contribution(amount="5000"))
    checker = await create_token(engine, name="李审核", role="auditor", community_code=world.community)
    voucher = await submit(world, project, expenditure("1200"))
    approved = await world.api.post(f"/api/v1/vouchers/{voucher['id']}/approve", token=checker.secret)
    assert approved.status_code == 201, approved.text
    assert json.loads(approved.json()["entry"]["document"])["checker"]["name"] == "李审核"
    preview = await world.api.get(
        f"/api/v1/projects/{project}/disclosures/preview.pdf",
        token=world.treasurer,
        params={"period_start": past(30), "period_end": today().isoformat()},
    )
    assert preview.status_code == 200, preview.text
    flat = re.sub(r"\s+", "", pdf_text(preview.content, tmp_path))
    assert "审核人" in flat and "04417305李**" in flat
    assert "李审核" not in flat


async def test_self_approval_refused(world: World, engine: AsyncEngine) -> None:
    """The admin may approve, but never a voucher it submitted; nor may an auditor token held by
    the submitter under the same display name."""
    project = await world.project(countersign_over="0")
    await world.entry(project, contribution(amount="5000"))
    voucher = await submit(world, project, expenditure("100"), token=world.admin)
    response = await world.api.post(f"/api/v1/vouchers/{voucher['id']}/approve", token=world.admin)
    body = assert_problem(response, 403, "forbidden")
    assert "自己" in body["detail"]

    twin = await create_token(engine, name="test treasurer", role="auditor", community_code=world.community)
    voucher = await submit(world, project, expenditure("100"))
    response = await world.api.post(f"/api/v1/vouchers/{voucher['id']}/approve", token=twin.secret)
    assert_problem(response, 403, "forbidden")
    assert await ledger_size(world, project) == 1


async def test_rejection_never_touches_the_ledger(world: World) -> None:
    project = await world.project(countersign_over="0")
    await world.entry(project, contribution(amount="5000"))
    voucher = await submit(world, project, expenditure("300"))
    reject_url = f"/api/v1/vouchers/{voucher['id']}/reject"
    assert_problem(await world.api.post(reject_url, {"reason": ""}, token=world.auditor), 422, "validation_failed")
    assert_problem(await world.api.post(reject_url, {"reason": "x"}, token=world.treasurer), 403, "forbidden")
    key = new_key()
    rejected = await world.api.post(reject_url, {"reason": "发票抬头不符"}, token=world.auditor, key=key)
    assert rejected.status_code == 201, rejected.text
    assert rejected.json()["status"] == "rejected" and rejected.json()["reason"] == "发票抬头不符"
    replay = await world.api.post(reject_url, {"reason": "发票抬头不符"}, token=world.auditor, key=key)
    assert replay.content == rejected.content and replay.headers["idempotent-replayed"] == "true"
    assert_problem(
        await world.api.post(f"/api/v1/vouchers/{voucher['id']}/approve", token=world.auditor, key=new_key()),
        409,
        "conflict",
    )
    assert await ledger_size(world, project) == 1
    # Still visible to the community's treasurer and auditor; to no one else.
    for token in (world.treasurer, world.auditor):
        listed = await world.api.get(vouchers_url(project), token=token, params={"status": "rejected"})
        assert [v["id"] for v in listed.json()["items"]] == [voucher["id"]]
    assert_problem(await world.api.get(vouchers_url(project), token=world.tokens["treasurer_other"]), 403, "forbidden")
    assert_problem(await world.api.get(vouchers_url(project)), 401, "unauthorized")
    assert_problem(
        await world.api.get(f"/api/v1/vouchers/{voucher['id']}", token=world.tokens["auditor_other"]), 403, "forbidden"
    )


async def test_approval_rechecks_cash(world: World) -> None:
    project = await world.project(countersign_over="0")
    await world.entry(project, contribution(amount="100"))
    first = await submit(world, project, expenditure("80"))
    second = await submit(world, project, expenditure("80"))
    ok = await world.api.post(f"/api/v1/vouchers/{first['id']}/approve", token=world.auditor)
    assert ok.status_code == 201, ok.text
    response = await world.api.post(f"/api/v1/vouchers/{second['id']}/approve", token=world.auditor)
    assert_problem(response, 409, "insufficient_funds")
    shown = (await world.api.get(f"/api/v1/vouchers/{second['id']}", token=world.auditor)).json()
    assert shown["status"] == "pending"
    assert await ledger_size(world, project) == 2


async def test_approval_inside_the_notice_period_refused(world: World) -> None:
    project = await world.project(gate="resolution", countersign_over="0")
    await world.entry(project, contribution(amount="5000"))
    url = f"/api/v1/projects/{project}/decisions"
    votes = {"eligible": 30, "attendees": 25, "votes_for": 20, "votes_against": 3, "votes_abstain": 2}
    for stage, days_ago, extra in (
        ("proposal", 20, {}),
        ("deliberation", 15, votes),
        ("review", 10, votes),
        ("resolution", 5, votes),
        ("announcement", 2, {"notice_days": 7}),
    ):
        response = await world.api.post(
            url, {"stage": stage, "held_on": past(days_ago), "body": "居民代表大会", **extra}, token=world.treasurer
        )
        assert response.status_code == 201, response.text
    voucher = await submit(world, project, expenditure("100"))
    response = await world.api.post(f"/api/v1/vouchers/{voucher['id']}/approve", token=world.auditor)
    assert_problem(response, 409, "stage_forbids_entry")
    assert await ledger_size(world, project) == 1


async def test_voucher_body_rules(world: World) -> None:
    project = await world.project(countersign_over="0")
    response = await world.api.post(vouchers_url(project), contribution(), token=world.treasurer, key=new_key())
    assert_problem(response, 422, "validation_failed")
    response = await world.api.post(
        vouchers_url(project), expenditure(category="nope"), token=world.treasurer, key=new_key()
    )
    assert_problem(response, 422, "validation_failed")
    response = await world.api.post(vouchers_url(project), expenditure(), token=world.auditor, key=new_key())
    assert_problem(response, 403, "forbidden")
    response = await world.api.post(vouchers_url(project), expenditure(), token=world.treasurer)
    assert_problem(response, 400, "idempotency_key_missing")
    assert_problem(await world.api.post("/api/v1/vouchers/999999999/approve", token=world.auditor), 404, "not_found")


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE voucher_events SET reason = 'x' WHERE voucher_id = :id",
        "DELETE FROM voucher_events WHERE voucher_id = :id",
        "UPDATE vouchers SET amount_fen = 1 WHERE id = :id",
        "TRUNCATE vouchers CASCADE",
    ],
)
async def test_voucher_tables_are_append_only(world: World, owner_engine: AsyncEngine, statement: str) -> None:
    """Even the tables' owner cannot rewrite a voucher or its decision (the triggers)."""
    project = await world.project(countersign_over="0")
    voucher = await submit(world, project, expenditure("100"))
    await world.api.post(f"/api/v1/vouchers/{voucher['id']}/reject", {"reason": "重复提交"}, token=world.auditor)
    with pytest.raises(Exception, match=r"append-only"):
        async with owner_engine.begin() as conn:
            await conn.execute(text(statement), {"id": voucher["id"]})
