"""Erasure (个人信息保护法) through its doors — ``POST /api/v1/contributors/{id}/erasure`` (admin) and
``ledger contributor erase`` — and what it does to idempotency: a retry of a write that named the
erased person is still a replay (redacted), never a second entry."""

from __future__ import annotations

import asyncio
import uuid
from datetime import date

from click.testing import CliRunner
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from api.cli import main as cli
from api.settings import get_settings
from ledger import tree
from ledger.contributors import ContributorRef
from ledger.database import create_engine
from ledger.drafts import EntryDraft
from ledger.entries import append_entries
from tests.api_support import World, assert_problem, contribution, new_key
from tests.conftest import Database, make_project

NAME, HOUSEHOLD = "上官婉儿", "9栋2单元803"


async def _entry_count(engine: AsyncEngine, project: str) -> int:
    async with engine.connect() as conn:
        return int(
            (
                await conn.execute(
                    text("SELECT count(*) FROM entries e JOIN projects p ON p.id = e.project_id WHERE p.code = :c"),
                    {"c": project},
                )
            ).scalar_one()
        )


async def test_erasure_keeps_the_idempotent_retry_a_replay(world: World) -> None:
    project = await world.project()
    url = f"/api/v1/projects/{project}/entries"
    body = contribution("88", NAME, HOUSEHOLD)
    key = new_key()
    first = await world.api.post(url, body, token=world.treasurer, key=key)
    assert first.status_code == 201, first.text
    assert first.json()["contributor"]["name"] == NAME
    person = first.json()["contributor"]["id"]
    # A batch naming the person and someone else: only the person is redacted from its response.
    batch_key = new_key()
    batch = {"entries": [contribution("5", NAME, HOUSEHOLD), contribution("6", "张三丰", "1栋")]}
    assert (await world.api.post(f"{url}/batch", batch, token=world.treasurer, key=batch_key)).status_code == 201
    count = await _entry_count(world.engine, project)

    erase = f"/api/v1/contributors/{person}/erasure"
    assert_problem(await world.api.post(erase, {"reason": "本人申请"}), 401, "unauthorized")
    for role in ("treasurer", "auditor"):
        assert_problem(await world.api.post(erase, {"reason": "本人申请"}, token=world.tokens[role]), 403, "forbidden")
    assert_problem(await world.api.post(erase, {}, token=world.admin), 422, "validation_failed")
    assert_problem(await world.api.post(erase, {"reason": ""}, token=world.admin), 422, "validation_failed")
    assert_problem(
        await world.api.post(erase, {"reason": "请联系 13812345678"}, token=world.admin), 422, "validation_failed"
    )
    for unknown in (uuid.uuid4(), "not-a-uuid"):
        assert_problem(
            await world.api.post(f"/api/v1/contributors/{unknown}/erasure", {"reason": "x"}, token=world.admin),
            404,
            "not_found",
        )
    assert first.json()["contributor"]["name"] == NAME, "refusals changed nothing"

    done = await world.api.post(erase, {"reason": "本人申请删除个人信息"}, token=world.admin)
    assert done.status_code == 201, done.text
    assert done.json()["id"] == person and done.json()["reason"] == "本人申请删除个人信息"
    assert_problem(await world.api.post(erase, {"reason": "再次"}, token=world.admin), 404, "not_found")

    retry = await world.api.post(url, body, token=world.treasurer, key=key)
    assert retry.status_code == 201, retry.text
    assert retry.headers.get("idempotent-replayed") == "true"
    assert NAME not in retry.text and HOUSEHOLD not in retry.text and "9栋" not in retry.text
    replayed = retry.json()
    assert replayed["contributor"] == {**first.json()["contributor"], "name": "已注销", "household": None}
    assert {k: v for k, v in replayed.items() if k != "contributor"} == {
        k: v for k, v in first.json().items() if k != "contributor"
    }, "the seq, document and receipt are what the first request got"
    again = await world.api.post(f"{url}/batch", batch, token=world.treasurer, key=batch_key)
    assert again.status_code == 201 and again.headers.get("idempotent-replayed") == "true"
    names = [(e["contributor"]["name"], e["contributor"]["household"]) for e in again.json()["items"]]
    assert names == [("已注销", None), ("张三丰", "1栋")]
    assert await _entry_count(world.engine, project) == count, "no second entry"
    # A different body under the same key is still refused: the fingerprint was kept.
    changed = await world.api.post(url, {**body, "amount": "89"}, token=world.treasurer, key=key)
    assert_problem(changed, 422, "idempotency_key_reused")
    verification = (await world.api.get(f"/api/v1/projects/{project}/ledger/verify")).json()
    assert verification["ok"] is True and verification["contributor_totals_ok"] is True
    async with world.engine.connect() as conn:
        recorded = (
            await conn.execute(
                text(
                    "SELECT e.reason, e.erased_by FROM erasures e JOIN contributors c ON c.id = e.contributor_id "
                    "WHERE c.public_id = :id"
                ),
                {"id": person},
            )
        ).one()
    assert recorded.reason == "本人申请删除个人信息" and recorded.erased_by == str(world.token_ids["admin"])


def test_cli_erases_a_contributor(database: Database) -> None:
    settings = database.settings

    async def seed() -> tuple[str, str]:
        engine = create_engine(database.urls.app, settings)
        try:
            project = await make_project(engine)
            draft = EntryDraft(
                kind="contribution",
                occurred_on=date(2025, 6, 1),
                amount_fen=100,
                contributor=ContributorRef(name=NAME, household=HOUSEHOLD),
            )
            result = await append_entries(engine, project.code, [draft], recorded_by="t", render=lambda r: {})
            contributor = result.entries[0].contributor
            assert contributor is not None
            return project.code, str(contributor.public_id)
        finally:
            await engine.dispose()

    async def state(project: str, public_id: str) -> tuple[object, bool]:
        engine = create_engine(database.urls.app, settings)
        try:
            async with engine.connect() as conn:
                name = (
                    await conn.execute(text("SELECT name FROM contributors WHERE public_id = :id"), {"id": public_id})
                ).scalar_one()
            return name, (await tree.verify(engine, project)).ok
        finally:
            await engine.dispose()

    project, public_id = asyncio.run(seed())
    env = {"LEDGER_DATABASE_URL": database.urls.app, "LEDGER_OWNER_DATABASE_URL": database.urls.owner}
    get_settings.cache_clear()
    try:
        runner = CliRunner()
        result = runner.invoke(cli, ["contributor", "erase", public_id, "--reason", "本人申请"], env=env)
        assert result.exit_code == 0, result.output
        assert public_id in result.output
        assert asyncio.run(state(project, public_id)) == (None, True)
        result = runner.invoke(cli, ["contributor", "erase", public_id, "--reason", "本人申请"], env=env)
        assert result.exit_code == 2 and "不存在或已注销" in result.output
        result = runner.invoke(cli, ["contributor", "erase", str(uuid.uuid4()), "--reason", " "], env=env)
        assert result.exit_code == 2 and "原因" in result.output
        result = runner.invoke(cli, ["contributor", "erase", public_id], env=env)
        assert result.exit_code != 0, "--reason is required"
    finally:
        get_settings.cache_clear()
