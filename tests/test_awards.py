"""The 以奖代补 award: a table of hand-worked cases for the rule, then policies (append-only,
versioned, admin only), a project's award from real entries, grants that cite it, the page and
the sheet."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from ledger.awards import AwardInputs, AwardPolicy, compute_award
from tests.api_support import (
    World,
    assert_money_two_decimals,
    assert_problem,
    contribution,
    grant,
    new_key,
    refund,
    reversal,
    unique,
)
from tests.conftest import Database
from tests.test_disclosures import pdf_text, period


def policy(
    rate: str = "0.5", cap: int | None = 10_000_000, min_participation: str = "0.3", min_satisfaction: str = "0"
) -> AwardPolicy:
    return AwardPolicy(
        id=1,
        code="xialu-2026",
        version=1,
        name="下陆区共同缔造以奖代补办法",
        issuer="下陆区住房和城乡建设局",
        document_no="下住建〔2026〕3号",
        rate=Decimal(rate),
        cap_fen=cap,
        min_participation=Decimal(min_participation),
        min_satisfaction=Decimal(min_satisfaction),
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
    )


def inputs(
    paid: int,
    refunded: int = 0,
    contributors: int = 200,
    households: int = 400,
    satisfied: int | None = None,
    evaluated: int | None = None,
    granted: int = 0,
) -> AwardInputs:
    return AwardInputs(
        residents_paid_fen=paid,
        residents_refunded_fen=refunded,
        others_net_fen=0,
        contributors=contributors,
        households_in_scope=households,
        satisfied=satisfied,
        evaluated=evaluated,
        granted_fen=granted,
    )


# Worked by hand: (case, policy, inputs, proportional fen, award fen, a phrase the steps must hold).
CASES: list[tuple[str, AwardPolicy, AwardInputs, int, int, str]] = [
    ("plain", policy(), inputs(1_000_000), 500_000, 500_000, "¥10,000.00 × 0.5 = ¥5,000.00"),
    (
        "refunds netted",
        policy(),
        inputs(1_000_000, 200_000),
        400_000,
        400_000,
        "¥10,000.00 − 退款 ¥2,000.00 = ¥8,000.00",
    ),
    ("participation below", policy(), inputs(1_000_000, contributors=119), 500_000, 0, "29.75%，< 最低 m = 30.00%"),
    (
        "participation at minimum",
        policy(),
        inputs(1_000_000, contributors=120),
        500_000,
        500_000,
        "30.00%，≥ 最低 m = 30.00%",
    ),
    # 29.999% is printed cut, as 29.99%: a rate below its minimum never reads as meeting it.
    (
        "participation a hair below",
        policy(),
        inputs(1_000_000, contributors=29_999, households=100_000),
        500_000,
        0,
        "29.99%，< 最低",
    ),
    ("no households in scope", policy(), inputs(1_000_000, households=0), 500_000, 0, "无法计算"),
    ("above the cap", policy(), inputs(30_000_000), 15_000_000, 10_000_000, "min(Y, C) = ¥100,000.00（已达上限）"),
    ("at the cap", policy(), inputs(20_000_000), 10_000_000, 10_000_000, "min(Y, C) = ¥100,000.00。"),
    ("no cap", policy(cap=None), inputs(30_000_000), 15_000_000, 15_000_000, "上限 不设"),
    ("zero crowdfunding", policy(min_participation="0"), inputs(0, contributors=0), 0, 0, "¥0.00 × 0.5 = ¥0.00"),
    # 333.33 × 0.3333 = 111.098889 → ¥111.09 (cut to the fen, never rounded up).
    (
        "rounding",
        policy(rate="0.3333"),
        inputs(33_333),
        11_109,
        11_109,
        "¥333.33 × 0.3333 = ¥111.09（以分为单位，不足一分的部分舍去）",
    ),
    # 0.99 × 0.5 = 0.495 → ¥0.49.
    ("rounding half a fen", policy(rate="0.5"), inputs(99), 49, 49, "¥0.99 × 0.5 = ¥0.49"),
    ("rate above one", policy(rate="1.25", cap=None), inputs(80_000), 100_000, 100_000, "× 1.25 = ¥1,000.00"),
    (
        "satisfaction below",
        policy(min_satisfaction="0.8"),
        inputs(1_000_000, satisfied=79, evaluated=100),
        500_000,
        0,
        "79 ÷ 参评 100 = 79.00%，< 最低 80.00%",
    ),
    (
        "satisfaction at minimum",
        policy(min_satisfaction="0.8"),
        inputs(1_000_000, satisfied=80, evaluated=100),
        500_000,
        500_000,
        "80.00%，≥ 最低 80.00%，符合",
    ),
    ("no evaluation yet", policy(min_satisfaction="0.8"), inputs(1_000_000), 500_000, 0, "尚无共评结果"),
    (
        "both below",
        policy(min_satisfaction="0.8"),
        inputs(1_000_000, contributors=1),
        500_000,
        0,
        "参与率、满意率未达最低要求",
    ),
    ("granted part", policy(), inputs(1_000_000, granted=200_000), 500_000, 500_000, "尚待拨付 ¥3,000.00"),
    ("granted too much", policy(), inputs(1_000_000, granted=600_000), 500_000, 500_000, "超出应奖 ¥1,000.00"),
]


@pytest.mark.parametrize(("case", "rule", "given", "proportional", "award", "phrase"), CASES, ids=[c[0] for c in CASES])
def test_the_rule_against_hand_worked_cases(
    case: str, rule: AwardPolicy, given: AwardInputs, proportional: int, award: int, phrase: str
) -> None:
    result = compute_award(rule, given)
    assert (result.proportional_fen, result.award_fen) == (proportional, award), case
    assert result.eligible == (award > 0 or case == "zero crowdfunding"), case
    text = "\n".join(result.steps)
    assert phrase in text, text
    assert "下陆区共同缔造以奖代补办法" in result.steps[0] and "编号 xialu-2026 第 1 版" in result.steps[0]
    assert result.steps[-2].startswith("结论：")
    assert type(result.award_fen) is int and type(result.proportional_fen) is int


# -- through the API ------------------------------------------------------------------------------


def policy_body(code: str, **extra: Any) -> dict[str, Any]:
    return {
        "code": code,
        "name": "下陆区共同缔造以奖代补办法",
        "issuer": "下陆区住房和城乡建设局",
        "document_no": "下住建〔2026〕3号",
        "rate": "0.5",
        "cap": "100000",
        "min_participation": "0.004",
        "min_satisfaction": "0",
        **extra,
    }


async def publish_policy(world: World, code: str, **extra: Any) -> dict[str, Any]:
    response = await world.api.post("/api/v1/award-policies", policy_body(code, **extra), token=world.admin)
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


async def award(world: World, project: str) -> dict[str, Any]:
    response = await world.api.get(f"/api/v1/projects/{project}/award")
    assert response.status_code == 200, response.text
    body = response.json()
    assert_money_two_decimals(body)
    return body  # type: ignore[no-any-return]


async def test_policies_are_published_by_an_administrator_and_versioned(world: World, database: Database) -> None:
    code = unique("policy")
    first = await publish_policy(world, code)
    assert (first["version"], first["rate"], first["cap"], first["min_participation"]) == (
        1,
        "0.5000",
        "100000.00",
        "0.0040",
    )
    second = await publish_policy(world, code, rate="0.6")
    assert second["version"] == 2
    listed = (await world.api.get("/api/v1/award-policies", params={"code": code})).json()["items"]
    assert [(p["version"], p["rate"]) for p in listed] == [(1, "0.5000"), (2, "0.6000")]

    for token in (world.treasurer, world.auditor, None):
        response = await world.api.post("/api/v1/award-policies", policy_body(unique("p")), token=token)
        assert response.status_code in (401, 403), response.text
    bad_bodies = [
        policy_body(unique("p"), rate=0.5),  # a JSON number
        policy_body(unique("p"), rate="0"),
        policy_body(unique("p"), rate="0.12345"),
        policy_body(unique("p"), rate="11"),
        policy_body(unique("p"), min_participation="1.2"),
        policy_body(unique("p"), cap="0"),
        policy_body(unique("p"), extra="x"),
        policy_body("Bad Code"),
    ]
    for body in bad_bodies:
        assert_problem(
            await world.api.post("/api/v1/award-policies", body, token=world.admin), 422, "validation_failed"
        )

    # Append-only in the database itself, even for the schema's owner.
    owner = await asyncpg.connect(database.urls.owner.replace("postgresql+asyncpg", "postgresql"))
    try:
        for statement in (
            "UPDATE award_policies SET rate = 0.9 WHERE code = $1",
            "DELETE FROM award_policies WHERE code = $1",
        ):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await owner.execute(statement, code)
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await owner.execute("TRUNCATE project_award_policies")
    finally:
        await owner.close()


async def test_a_projects_award_from_its_entries_and_grants_that_cite_it(world: World) -> None:
    code = unique("policy")
    await publish_policy(world, code)
    project = await world.project(award_policy=code)  # 400 households in scope
    assert (await world.api.get(f"/api/v1/projects/{project}")).json()["award_policy"] == code
    await world.entry(project, contribution("3000", "张三", "3栋2单元501"))
    await world.entry(project, contribution("1000", "李四", "5栋1单元302", type_="household"))
    wrong = await world.entry(project, contribution("999", "王五", "6栋"))
    await world.entry(project, reversal(wrong["seq"]))
    await world.entry(project, contribution("5000", "黄石某物业服务有限公司", None, type_="enterprise"))
    await world.entry(project, refund("500", {"name": "张三", "household": "3栋2单元501"}))

    x = await award(world, project)
    # 居民众筹 = 3,000 + 1,000 + 999 − 999 − 500 = 3,500; the enterprise's 5,000 does not count.
    assert (x["residents_paid"], x["residents_refunded"], x["crowdfunded"], x["others_contributed"]) == (
        "4000.00",
        "500.00",
        "3500.00",
        "5000.00",
    )
    # 3 contributors (张三, 李四, the company) of 400 = 0.75% ≥ 0.40%.
    assert (x["contributors"], x["households_in_scope"], x["participation_rate"], x["participation_met"]) == (
        3,
        400,
        "0.0075",
        True,
    )
    assert (x["proportional"], x["cap"], x["award"], x["eligible"], x["granted"]) == (
        "1750.00",
        "100000.00",
        "1750.00",
        True,
        "0.00",
    )
    assert any("¥3,500.00 × 0.5 = ¥1,750.00" in step for step in x["steps"])

    # A grant citing the award: its basis is in the hashed document.
    cited = await world.entry(project, grant("1000", cites_award=True))
    basis = json.loads(cited["document"])["award"]
    assert basis == {
        "policy": code,
        "version": 1,
        "residents_paid_fen": 400_000,
        "residents_refunded_fen": 50_000,
        "contributors": 3,
        "households_in_scope": 400,
        "award_fen": 175_000,
    }
    assert cited["award"] == basis and cited["warnings"] == []
    plain = await world.entry(project, grant("20000"))  # another grant, not this award
    assert plain["award"] is None
    over = await world.entry(project, grant("1000", cites_award=True))
    assert [w["code"] for w in over["warnings"]] == ["award_exceeded"]
    assert "尚待拨付的 750.00 元" in over["warnings"][0]["message"]
    x = await award(world, project)
    assert (x["granted"], x["remaining"]) == ("2000.00", "-250.00")
    await world.entry(project, reversal(over["seq"]))
    x = await award(world, project)
    assert (x["granted"], x["remaining"]) == ("1000.00", "750.00")
    assert (await world.api.get(f"/api/v1/projects/{project}/ledger/verify")).json()["ok"] is True

    # A new version of the policy applies from then on; the cited grant keeps its basis.
    await publish_policy(world, code, rate="1", cap="2000")
    x = await award(world, project)
    assert (x["policy"]["version"], x["proportional"], x["award"]) == (2, "3500.00", "2000.00")
    assert any("min(Y, C) = ¥2,000.00（已达上限）" in step for step in x["steps"])
    reread = await world.api.get(f"/api/v1/projects/{project}/entries/{cited['seq']}")
    assert reread.json()["award"]["award_fen"] == 175_000


async def test_without_a_policy_there_is_nothing_to_cite(world: World) -> None:
    project = await world.project()
    x = await award(world, project)
    assert x["policy"] is None and x["award"] == "0.00" and x["steps"] == ["本项目未适用以奖代补政策。"]
    refused = await world.api.post(
        f"/api/v1/projects/{project}/entries", grant("100", cites_award=True), token=world.treasurer, key=new_key()
    )
    assert_problem(refused, 422, "validation_failed")
    wrong_kind = await world.api.post(
        f"/api/v1/projects/{project}/entries",
        contribution("100", cites_award=True),
        token=world.treasurer,
        key=new_key(),
    )
    assert_problem(wrong_kind, 422, "validation_failed")
    unknown = await world.api.post(
        "/api/v1/projects",
        {"code": unique("p"), "community": world.community, "title": "路灯", "award_policy": "no-such-policy"},
        token=world.admin,
    )
    assert "award_policy" in {e["field"] for e in assert_problem(unknown, 422, "validation_failed")["errors"]}

    # The administrator names a policy later; the treasurer may not.
    code = unique("policy")
    await publish_policy(world, code)
    denied = await world.api.post(f"/api/v1/projects/{project}/award-policy", {"policy": code}, token=world.treasurer)
    assert denied.status_code == 403
    assigned = await world.api.post(f"/api/v1/projects/{project}/award-policy", {"policy": code}, token=world.admin)
    assert assigned.status_code == 201 and assigned.json()["policy"]["code"] == code
    again = await world.api.post(f"/api/v1/projects/{project}/award-policy", {"policy": code}, token=world.admin)
    assert_problem(again, 409, "conflict")
    assert (await world.api.get(f"/api/v1/projects/{project}")).json()["award_policy"] == code


async def test_the_page_and_the_sheet_show_every_step_and_awarded_versus_granted(world: World, tmp_path: Path) -> None:
    code = unique("policy")
    await publish_policy(world, code, cap="1000", min_participation="0")
    project = await world.project(award_policy=code)
    await world.entry(project, contribution("3000", "张三", "3栋2单元501"))
    await world.entry(project, grant("600", cites_award=True))
    x = await award(world, project)
    assert (x["award"], x["granted"]) == ("1000.00", "600.00")  # 1,500 capped at 1,000

    html = (await world.api.get(f"/p/{project}")).text
    assert re.search(r'id="fig-award">¥1,000\.00<', html) and re.search(r'id="fig-award-granted">¥600\.00<', html)
    shown = re.findall(r"<li>([^<]+)</li>", html.split('id="award-steps"')[1].split("</ol>")[0])
    assert [s.replace("&gt;", ">").replace("&lt;", "<") for s in shown] == x["steps"], "the page says what the API says"
    assert "尚待拨付 ¥400.00" in html

    sheet = await world.api.post(
        f"/api/v1/projects/{project}/disclosures", {**period(), "notice_days": 7}, token=world.treasurer, key=new_key()
    )
    assert sheet.status_code == 201, sheet.text
    pdf = (await world.api.get(sheet.json()["pdf_url"])).content
    flat = re.sub(r"\s+", "", pdf_text(pdf, tmp_path))
    assert "以奖代补核算（截至本表）" in flat
    for step in x["steps"]:
        assert re.sub(r"\s+", "", step) in flat, step
    assert "应奖1,000.00元，已拨付600.00元" in flat
