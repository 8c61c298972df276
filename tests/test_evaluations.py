"""共评 through the API: codes issued in batches and stored only as hashes, one score per code
inside the evaluation window (after acceptance, before closure), paper tallies with the tally
sheet's digest, results (online and paper side by side), masking of comments, and guessing
stopped by the per-address rate limit."""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
from litestar.testing import AsyncTestClient
from sqlalchemy.ext.asyncio import AsyncEngine

from api.app import create_app
from ledger.evaluations import ALPHABET, CODE_LENGTH, CODE_SPACE, code_hash, normalise_code
from tests.api_support import World, app_settings, assert_problem, new_key
from tests.conftest import Database
from tests.evaluation_support import decide, evaluate, issue, tally, tally_sheet_png, upload_png

DISPLAY = re.compile(rf"^[{ALPHABET}]{{5}}-[{ALPHABET}]{{5}}$")


def test_codes_are_unguessable_and_typeable() -> None:
    assert CODE_SPACE.bit_length() - 1 >= 40, "at least 40 bits of entropy per code"
    assert not set(ALPHABET) & set("01OILU"), "nothing that reads as something else"
    assert len(set(ALPHABET)) == len(ALPHABET) == 30 and CODE_LENGTH == 10
    assert normalise_code(" k7qx2 - m9rta ") == "K7QX2M9RTA"
    assert normalise_code("K7QX2-M9RT0") is None and normalise_code("K7QX2") is None


async def test_codes_issued_once_stored_only_as_hashes(world: World, database: Database) -> None:
    project = await world.project()
    key = new_key()
    first = await issue(world, project, 5, key=key)
    assert first["batch"] == 1 and first["count"] == 5 and first["issued_total"] == 5
    assert len(set(first["codes"])) == 5 and all(DISPLAY.match(c) for c in first["codes"]), first["codes"]
    assert first["slips_pdf_url"] == f"/api/v1/projects/{project}/evaluation-codes/1/slips.pdf"
    # A retry returns the same batch and the same codes (re-derived, never stored).
    again = await world.api.post(
        f"/api/v1/projects/{project}/evaluation-codes", {"count": 5}, token=world.treasurer, key=key
    )
    assert again.status_code == 201 and again.headers.get("Idempotent-Replayed") == "true"
    assert again.json() == first
    second = await issue(world, project, 3)
    assert second["batch"] == 2 and second["issued_total"] == 8 and not set(second["codes"]) & set(first["codes"])

    # Nowhere in the database is a code in the clear: not in any table, not in the stored responses.
    conn = await asyncpg.connect(database.superuser_url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        tables = [
            r["tablename"]
            for r in await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
            # Rendered sheets and uploaded files: large, and nothing writes a code into them.
            if r["tablename"] not in ("disclosures", "attachments")
        ]
        assert {"evaluation_codes", "evaluation_batches", "idempotency_keys"} <= set(tables)
        for code in first["codes"] + second["codes"]:
            plain = code.replace("-", "")
            needles = (plain, code, plain.encode().hex(), code_hash(plain).hex())
            for table in tables:
                found = await conn.fetchval(
                    f"SELECT count(*) FROM {table} t WHERE strpos(t::text, $1) > 0 OR strpos(t::text, $2) > 0 "
                    "OR strpos(t::text, $3) > 0",
                    *needles[:3],
                )
                assert found == 0, f"code {code} found in {table}"
            hashed = await conn.fetchval(
                "SELECT count(*) FROM evaluation_codes WHERE code_sha256 = $1", code_hash(plain)
            )
            assert hashed == 1, "each code is stored as its SHA-256"
    finally:
        await conn.close()


async def test_issue_refusals(world: World) -> None:
    project = await world.project()  # 400 households in scope
    url = f"/api/v1/projects/{project}/evaluation-codes"
    assert_problem(await world.api.post(url, {"count": 5}, token=world.treasurer), 400, "idempotency_key_missing")
    assert_problem(await world.api.post(url, {"count": 5}, key=new_key()), 401, "unauthorized")
    assert_problem(await world.api.post(url, {"count": 5}, token=world.auditor, key=new_key()), 403, "forbidden")
    assert_problem(
        await world.api.post(url, {"count": 5}, token=world.tokens["treasurer_other"], key=new_key()), 403, "forbidden"
    )
    assert_problem(
        await world.api.post(url, {"count": 0}, token=world.treasurer, key=new_key()), 422, "validation_failed"
    )
    assert_problem(
        await world.api.post(url, {"count": "5"}, token=world.treasurer, key=new_key()), 422, "validation_failed"
    )
    # One per household: never more codes than households in scope.
    await issue(world, project, 399)
    body = assert_problem(
        await world.api.post(url, {"count": 2}, token=world.treasurer, key=new_key()), 409, "conflict"
    )
    assert "400" in body["detail"] and "399" in body["detail"]
    await issue(world, project, 1)
    # Slips only for the token that issued the batch (nobody else can unwrap its codes).
    slips = f"/api/v1/projects/{project}/evaluation-codes/1/slips.pdf"
    assert_problem(await world.api.get(slips, token=world.admin), 403, "forbidden")
    assert_problem(await world.api.get(slips, token=world.auditor), 403, "forbidden")
    assert_problem(await world.api.get(slips), 401, "unauthorized")
    assert_problem(
        await world.api.get(f"/api/v1/projects/{project}/evaluation-codes/9/slips.pdf", token=world.treasurer),
        404,
        "not_found",
    )
    closed = await world.project()
    await decide(world, closed, "closure")
    assert_problem(
        await world.api.post(
            f"/api/v1/projects/{closed}/evaluation-codes", {"count": 1}, token=world.treasurer, key=new_key()
        ),
        409,
        "stage_forbids_entry",
    )


async def test_evaluation_window(world: World) -> None:
    project = await world.project()
    codes = (await issue(world, project, 4))["codes"]
    await decide(world, project, "start", days_ago=20)
    before = assert_problem(await evaluate(world, project, codes[0], 5), 409, "stage_forbids_entry")
    assert "验收" in before["detail"]
    await decide(world, project, "acceptance", days_ago=10)
    assert (await evaluate(world, project, codes[0], 5)).status_code == 201
    await decide(world, project, "evaluation", days_ago=5)  # the 共评会 held: still open
    assert (await evaluate(world, project, codes[1], 4)).status_code == 201
    await decide(world, project, "closure", days_ago=1)
    after = assert_problem(await evaluate(world, project, codes[2], 3), 409, "stage_forbids_entry")
    assert "结项" in after["detail"]
    results = (await world.api.get(f"/api/v1/projects/{project}/evaluations")).json()
    assert results["online"] == {"1": 0, "2": 0, "3": 0, "4": 1, "5": 1} and results["accepting"] is False


async def test_a_code_counts_once(world: World) -> None:
    project = await world.project()
    other = await world.project()
    codes = (await issue(world, project, 3))["codes"]
    foreign = (await issue(world, other, 1))["codes"][0]
    for p in (project, other):
        await decide(world, p, "acceptance")
    # Typed as a resident might: lower case, spaces for the dash.
    typed = codes[0].lower().replace("-", " ")
    created = await evaluate(world, project, typed, 4, "路面平整多了")
    assert created.status_code == 201, created.text
    assert created.json()["score"] == 4 and created.json()["project"] == project
    used = assert_problem(await evaluate(world, project, codes[0], 1), 409, "conflict")
    assert "已经使用" in used["detail"]
    assert_problem(await evaluate(world, project, codes[0], 4, "路面平整多了"), 409, "conflict")
    # Another project's code, a made-up one, a malformed one: not this project's codes.
    for code in (foreign, "ABCDE-FGHJK", "12345"):
        body = assert_problem(await evaluate(world, project, code, 5), 422, "validation_failed")
        assert body["errors"][0]["field"] == "household_code"
    for bad in ({"household_code": codes[1], "score": 6}, {"household_code": codes[1], "score": "5"}):
        assert_problem(await world.api.post(f"/api/v1/projects/{project}/evaluations", bad), 422, "validation_failed")
    assert_problem(await evaluate(world, "no-such-project", codes[1], 5), 404, "not_found")
    results = (await world.api.get(f"/api/v1/projects/{project}/evaluations")).json()
    assert results["online"]["4"] == 1 and results["total"] == 1


async def test_guessing_codes_hits_the_rate_limit(database: Database, world: World, tmp_path: Path) -> None:
    project = await world.project()
    await issue(world, project, 2)
    await decide(world, project, "acceptance")
    app = create_app(app_settings(database, tmp_path, public_write_rate_per_minute=3, pdf_render_mode="thread"))
    async with AsyncTestClient(app) as client:
        statuses = []
        for i, guess in enumerate(["AAAAA-AAAAA", "AAAAA-AAAAB", "AAAAA-AAAAC", "AAAAA-AAAAD", "AAAAA-AAAAE"]):
            response = await client.post(
                f"/api/v1/projects/{project}/evaluations",
                json={"household_code": guess, "score": 5},
                headers={"X-Forwarded-For": f"10.0.0.{i}"},
            )
            statuses.append(response.status_code)
        assert statuses == [422, 422, 422, 429, 429], "a client-supplied header does not reset the limit"
        assert response.json()["code"] == "rate_limited"
        # The evaluation form of the page shares the same per-address budget.
        page = await client.post(
            f"/p/{project}/evaluations", data={"household_code": "AAAAA-AAAAF", "score": "5"}, follow_redirects=False
        )
        assert page.status_code == 429 and page.headers["content-type"].startswith("text/html")


async def test_paper_tallies_and_results(world: World) -> None:
    project = await world.project()
    codes = (await issue(world, project, 6))["codes"]
    sheet = await upload_png(world, project, tally_sheet_png())
    # Before acceptance: refused, like an online score.
    assert_problem(await tally(world, project, {"5": 3}, sheet), 409, "stage_forbids_entry")
    await decide(world, project, "acceptance", days_ago=10)
    # The tally sheet must have been uploaded to this community; the counts must say something.
    other_world_sheet = "0" * 64
    assert_problem(await tally(world, project, {"5": 3}, other_world_sheet), 422, "validation_failed")
    assert_problem(await tally(world, project, {"1": 0}, sheet), 422, "validation_failed")
    assert_problem(await tally(world, project, {"6": 1}, sheet), 422, "validation_failed")
    assert_problem(await tally(world, project, {"5": -1}, sheet), 422, "validation_failed")
    early = assert_problem(await tally(world, project, {"5": 1}, sheet, days_ago=20), 422, "validation_failed")
    assert early["errors"][0]["field"] == "held_on"
    assert_problem(
        await world.api.post(
            f"/api/v1/projects/{project}/evaluation-tallies",
            {"held_on": "2026-01-01", "method": "meeting", "counts": {"5": 1}, "sheet_sha256": sheet},
            token=world.auditor,
        ),
        403,
        "forbidden",
    )
    meeting = await tally(world, project, {"3": 2, "4": 10, "5": 20}, sheet)
    assert meeting.status_code == 201, meeting.text
    assert meeting.json()["total"] == 32 and meeting.json()["counts"] == {"1": 0, "2": 0, "3": 2, "4": 10, "5": 20}
    questionnaire = await tally(world, project, {"1": 1, "2": 1, "5": 4}, sheet, method="questionnaire")
    assert questionnaire.status_code == 201
    for code, score in zip(codes[:4], (5, 5, 2, 4), strict=True):
        assert (await evaluate(world, project, code, score, f"评分 {score}")).status_code == 201

    r = (await world.api.get(f"/api/v1/projects/{project}/evaluations")).json()
    assert r["online"] == {"1": 0, "2": 1, "3": 0, "4": 1, "5": 2}
    assert r["paper"] == {"1": 1, "2": 1, "3": 2, "4": 10, "5": 24}
    assert r["counts"] == {"1": 1, "2": 2, "3": 2, "4": 11, "5": 26} and r["total"] == 42
    # By hand: online (2+4+5+5)/4 = 4.00, 3/4 satisfied; paper 169/38 = 4.447 → 4.45, 34/38 = 0.8947.
    assert r["by_source"]["online"] == {"total": 4, "average": 4.0, "satisfied_rate": 0.75}
    assert r["by_source"]["paper"] == {"total": 38, "average": 4.45, "satisfied_rate": 0.8947}
    points = 1 + 2 * 2 + 3 * 2 + 4 * 11 + 5 * 26
    assert Decimal(str(r["average"])) == (Decimal(points) / 42).quantize(Decimal("0.01")) == Decimal("4.40")
    assert r["satisfied_rate"] == 0.881  # 37/42 = 0.88095… → 0.8810
    assert r["codes_issued"] == 6 and [t["method"] for t in r["tallies"]] == ["meeting", "questionnaire"]
    assert all(t["sheet_sha256"] == sheet for t in r["tallies"])
    assert [c["comment"] for c in r["comments"]] == ["评分 4", "评分 2", "评分 5", "评分 5"]
    # Comments page newest first.
    page1 = (await world.api.get(f"/api/v1/projects/{project}/evaluations", params={"limit": 3})).json()
    assert len(page1["comments"]) == 3 and page1["next"]
    page2 = (
        await world.api.get(f"/api/v1/projects/{project}/evaluations", params={"limit": 3, "cursor": page1["next"]})
    ).json()
    assert [c["comment"] for c in page2["comments"]] == ["评分 5"] and page2["next"] is None
    # The tally sheet itself is the community's (its digest is public, the file is not).
    assert_problem(await world.api.get(f"/api/v1/attachments/{sheet}"), 404, "not_found")


async def test_no_results_yet(world: World) -> None:
    project = await world.project()
    r = (await world.api.get(f"/api/v1/projects/{project}/evaluations")).json()
    assert r["total"] == 0 and r["average"] is None and r["satisfied_rate"] is None and r["comments"] == []
    assert r["by_source"]["online"] == {"total": 0, "average": None, "satisfied_rate": None}


async def test_comments_masked_in_public_kept_for_the_community(world: World) -> None:
    project = await world.project()
    codes = (await issue(world, project, 1))["codes"]
    await decide(world, project, "acceptance")
    created = await evaluate(world, project, codes[0], 2, "井盖松了，请联系我 13812345678")
    assert created.status_code == 201
    assert created.json()["comment"] == "井盖松了，请联系我 138****5678"
    public = (await world.api.get(f"/api/v1/projects/{project}/evaluations")).json()
    assert public["comments"][0]["comment"] == "井盖松了，请联系我 138****5678"
    for token in (world.treasurer, world.auditor):
        own: Any = (await world.api.get(f"/api/v1/projects/{project}/evaluations", token=token)).json()
        assert own["comments"][0]["comment"] == "井盖松了，请联系我 13812345678"
    foreign = (
        await world.api.get(f"/api/v1/projects/{project}/evaluations", token=world.tokens["treasurer_other"])
    ).json()
    assert foreign["comments"][0]["comment"].endswith("138****5678")


async def test_scores_race_for_one_code(world: World, engine: AsyncEngine) -> None:
    import asyncio

    from ledger.errors import Conflict
    from ledger.evaluations import submit_evaluation

    project = await world.project()
    code = (await issue(world, project, 1))["codes"][0]
    await decide(world, project, "acceptance")
    outcomes = await asyncio.gather(
        *(submit_evaluation(engine, project, code, score, None) for score in (1, 2, 3, 4, 5)), return_exceptions=True
    )
    assert sum(not isinstance(o, Exception) for o in outcomes) == 1
    assert all(isinstance(o, Conflict) for o in outcomes if isinstance(o, Exception)), outcomes


async def test_the_award_counts_the_residents_verdict(world: World) -> None:
    """以奖代补's minimum satisfaction is met or not by these very results (online and paper)."""
    from tests.api_support import contribution, unique
    from tests.test_awards import award, publish_policy

    code = unique("policy")
    await publish_policy(world, code, min_satisfaction="0.8")
    project = await world.project(award_policy=code)
    await world.entry(project, contribution("2000", "张三", "3栋2单元501"))
    await world.entry(project, contribution("1000", "李四", "5栋1单元302"))  # 2 of 400 households ≥ 0.4%
    before = await award(world, project)
    assert (before["evaluated"], before["satisfaction_met"], before["eligible"]) == (None, False, False)
    codes = (await issue(world, project, 4))["codes"]
    await decide(world, project, "acceptance")
    for c, score in zip(codes, (5, 4, 2, 1), strict=True):
        assert (await evaluate(world, project, c, score)).status_code == 201
    x = await award(world, project)
    assert (x["satisfied"], x["evaluated"], x["satisfaction_met"]) == (2, 4, False)
    sheet = await upload_png(world, project, tally_sheet_png(5))
    assert (await tally(world, project, {"4": 6, "5": 6, "3": 2}, sheet)).status_code == 201
    x = await award(world, project)
    results = (await world.api.get(f"/api/v1/projects/{project}/evaluations")).json()
    assert (x["satisfied"], x["evaluated"]) == (results["counts"]["4"] + results["counts"]["5"], results["total"])
    assert (x["satisfied"], x["evaluated"], x["satisfaction_met"], x["eligible"]) == (14, 18, False, False)
    assert (await tally(world, project, {"5": 2}, sheet)).status_code == 201
    x = await award(world, project)
    assert (x["satisfied"], x["evaluated"], x["satisfaction_met"], x["eligible"]) == (16, 20, True, True)
