"""进展公开: progress notes posted by the treasurer, public, their photos public too, their document
hashed; append-only in the database (UPDATE, DELETE and TRUNCATE refused, also to the owner and a
superuser in replica mode); the 共评 tables likewise."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import asyncpg
import pytest

from tests.api_support import World, assert_problem, new_key, past
from tests.conftest import Database
from tests.evaluation_support import decide, evaluate, issue, tally, tally_sheet_png, upload_png
from tests.test_ledger_append_only import dsn, refused, rolled_back

GUARDED = ("progress_notes", "evaluation_batches", "evaluation_codes", "evaluations", "evaluation_tallies")


async def post(world: World, project: str, body: dict[str, Any], **kw: Any) -> Any:
    return await world.api.post(f"/api/v1/projects/{project}/progress", body, **{"token": world.treasurer, **kw})


async def test_notes_with_photos_are_public_and_hashed(world: World) -> None:
    project = await world.project()
    photo = await upload_png(world, project, tally_sheet_png(90))
    assert_problem(await world.api.get(f"/api/v1/attachments/{photo}"), 404, "not_found")  # not public yet
    key = new_key()
    body = {"happened_on": past(3), "text": "3栋至5栋路段沥青摊铺完成，明天养护。", "attachments": [photo]}
    created = await post(world, project, body, key=key)
    assert created.status_code == 201, created.text
    note = created.json()
    assert note["text"] == body["text"] and note["attachments"] == [photo] and note["project"] == project
    # The document commits to the date, the text and the photo's digest.
    document = json.loads(note["document"])
    assert document["attachments"] == [photo] and document["text"] == body["text"]
    assert document["happened_on"] == body["happened_on"] and document["type"] == "progress"
    assert hashlib.sha256(note["document"].encode()).hexdigest() == note["document_sha256"]
    replay = await post(world, project, body, key=key)
    assert replay.status_code == 201 and replay.headers["Idempotent-Replayed"] == "true" and replay.json() == note
    # The photo is public now, to anyone.
    image = await world.api.get(f"/api/v1/attachments/{photo}")
    assert image.status_code == 200 and image.headers["content-type"] == "image/png"
    later = await post(world, project, {"happened_on": past(1), "text": "养护结束，恢复通行。"})
    assert later.status_code == 201
    listed = (await world.api.get(f"/api/v1/projects/{project}/progress")).json()
    assert [n["id"] for n in listed["items"]] == [later.json()["id"], note["id"]] and listed["next"] is None
    first_page = (await world.api.get(f"/api/v1/projects/{project}/progress", params={"limit": 1})).json()
    assert len(first_page["items"]) == 1 and first_page["next"] == str(later.json()["id"])
    rest = (
        await world.api.get(f"/api/v1/projects/{project}/progress", params={"limit": 1, "cursor": first_page["next"]})
    ).json()
    assert [n["id"] for n in rest["items"]] == [note["id"]]


async def test_note_refusals(world: World) -> None:
    project = await world.project()
    other = await world.project(community=world.other_community)
    foreign_photo = await world.api.request(
        "POST",
        f"/api/v1/projects/{other}/attachments",
        content=tally_sheet_png(10),
        headers={"Content-Type": "image/png"},
        token=world.tokens["treasurer_other"],
    )
    ok = {"happened_on": past(1), "text": "开工"}
    assert_problem(await post(world, project, ok, token=None), 401, "unauthorized")
    assert_problem(await post(world, project, ok, token=world.auditor), 403, "forbidden")
    assert_problem(await post(world, project, ok, token=world.tokens["treasurer_other"]), 403, "forbidden")
    assert_problem(await post(world, "no-such-project", ok), 404, "not_found")
    for bad in (
        {"happened_on": past(1), "text": ""},
        {"happened_on": past(1), "text": "x" * 2001},
        {"happened_on": "2999-01-01", "text": "未来"},
        {"happened_on": past(1), "text": "开工", "attachments": ["not-a-digest"]},
        {"happened_on": past(1), "text": "开工", "attachments": [foreign_photo.json()["sha256"]]},
        {"happened_on": past(1), "text": "开工", "extra": 1},
    ):
        assert_problem(await post(world, project, bad), 422, "validation_failed")
    phone = assert_problem(
        await post(world, project, {"happened_on": past(1), "text": "有事找 13812345678"}), 422, "validation_failed"
    )
    assert phone["errors"][0]["field"] == "text"
    assert (await world.api.get(f"/api/v1/projects/{project}/progress")).json()["items"] == []


@pytest.fixture
async def seeded(world: World, database: Database) -> int:
    """A project with a row in every table of progress notes and 共评."""
    project = await world.project()
    assert (await post(world, project, {"happened_on": past(2), "text": "开工"})).status_code == 201
    codes = (await issue(world, project, 2))["codes"]
    await decide(world, project, "acceptance")
    assert (await evaluate(world, project, codes[0], 5)).status_code == 201
    sheet = await upload_png(world, project, tally_sheet_png(30))
    assert (await tally(world, project, {"4": 3}, sheet)).status_code == 201
    conn = await asyncpg.connect(dsn(database.urls.owner))
    try:
        project_id: int = await conn.fetchval("SELECT id FROM projects WHERE code = $1", project)
    finally:
        await conn.close()
    return project_id


@pytest.mark.parametrize("table", GUARDED)
async def test_append_only_in_the_database(database: Database, seeded: int, table: str) -> None:
    condition = f"project_id = {seeded}"
    column = "community_id"
    conn = await asyncpg.connect(dsn(database.urls.owner))
    try:
        before = await conn.fetchval(f"SELECT count(*) FROM {table} WHERE {condition}")
    finally:
        await conn.close()
    assert before >= 1
    for sql in (f"UPDATE {table} SET {column} = {column} WHERE {condition}", f"DELETE FROM {table} WHERE {condition}"):
        await refused(database.urls.app, sql, rf"permission denied for table {table}")
        op = sql.split()[0]
        await refused(database.urls.owner, sql, rf"{op} on public\.{table} is refused: the table is append-only")
        async with rolled_back(database.superuser_url) as conn:
            await conn.execute("SET LOCAL session_replication_role = replica")
            with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
                await conn.execute(sql)
    await refused(database.urls.app, f"TRUNCATE {table}", rf"permission denied for table {table}")
    await refused(database.urls.owner, f"TRUNCATE {table} CASCADE", r"TRUNCATE on public\.\w+ is refused")
    conn = await asyncpg.connect(dsn(database.urls.owner))
    try:
        assert await conn.fetchval(f"SELECT count(*) FROM {table} WHERE {condition}") == before
    finally:
        await conn.close()
