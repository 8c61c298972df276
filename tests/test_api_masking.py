"""Masking in every public output of the API (JSON list and single entry, CSV, XLSX), and the full
names for the community's own treasurer, auditor and the admin."""

from __future__ import annotations

import csv
import io
import uuid
from datetime import date
from typing import Any

import openpyxl

from ledger.communities import get_community
from ledger.contributors import ContributorRef, erase_contributor
from ledger.drafts import EntryDraft
from ledger.entries import append_entries
from tests.api_support import World, assert_problem, contribution, in_kind, new_key, pledge

# (name, household, type, anonymous) → (public name, public household)
CASES: list[tuple[tuple[str, str | None, str, bool], tuple[str, str | None]]] = [
    (("张三", "3栋2单元501", "resident", False), ("张*", "3栋")),
    (("张小三", "12号楼3-201", "resident", False), ("张**", "12号楼")),
    (("欧阳小明", "A座1201", "household", False), ("欧阳**", "A座")),
    (("李", None, "resident", False), ("李*", None)),
    (("Alice", "5栋", "resident", False), ("A*", "5栋")),
    (("bob smith", "5幢101", "resident", False), ("b*", "5幢")),
    (("某某建材有限公司", None, "enterprise", False), ("某某建材有限公司", None)),
    (("锦绣花园业主委员会", None, "organization", False), ("锦绣花园业主委员会", None)),
    (("锦绣小区党支部", None, "party_branch", False), ("锦绣小区党支部", None)),
    (("钱七", "7栋1单元101", "resident", True), ("匿名", None)),  # an anonymous gift names no building
    (("孙悟空", "团城山路8号", "resident", False), ("孙**", None)),
]


async def _seed(world: World) -> str:
    project = await world.project()
    entries = []
    for (name, household, type_, anonymous), _ in CASES:
        entries.append(contribution(amount="10", name=name, household=household, type_=type_, anonymous=anonymous))
    entries.append(in_kind(amount="5", name="赵六"))
    entries.append(pledge(amount="5", name="王五"))
    response = await world.api.post(
        f"/api/v1/projects/{project}/entries/batch", {"entries": entries}, token=world.treasurer, key=new_key()
    )
    assert response.status_code == 201, response.text
    # 赵六 asks to be erased (个人信息保护法).
    async with world.engine.connect() as conn:
        community = await get_community(conn, world.community)
    await erase_contributor(world.engine, community.id, uuid.UUID(response.json()["items"][-2]["contributor"]["id"]))
    return project


def _expected() -> list[tuple[str, str | None]]:
    return [public for _, public in CASES] + [("已注销", None), ("王*", None)]


def _full() -> list[tuple[str, str | None]]:
    return [(name, household) for (name, household, _, _), _ in CASES] + [("已注销", None), ("王五", None)]


def _json(body: dict[str, Any]) -> list[tuple[str, str | None]]:
    return [(e["contributor"]["name"], e["contributor"]["household"]) for e in body["items"]]


def _csv(data: bytes) -> list[tuple[str, str | None]]:
    assert data.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(data.decode("utf-8-sig"))))[1:]
    return [(r[4], r[5] or None) for r in rows]


def _xlsx(data: bytes) -> list[tuple[str, str | None]]:
    rows = list(openpyxl.load_workbook(io.BytesIO(data)).active.iter_rows(values_only=True))[1:]
    return [(str(r[4]), r[5] or None) for r in rows]


async def test_masking_in_json_csv_and_xlsx(world: World) -> None:
    project = await _seed(world)
    base = f"/api/v1/projects/{project}"
    for token, expected in ((None, _expected()), (world.tokens["treasurer_other"], _expected())):
        assert _json((await world.api.get(f"{base}/entries", token=token)).json()) == expected
        singles = [(await world.api.get(f"{base}/entries/{seq}", token=token)).json() for seq in range(1, 14)]
        assert [(e["contributor"]["name"], e["contributor"]["household"]) for e in singles] == expected
        assert _csv((await world.api.get(f"{base}/entries.csv", token=token)).content) == expected
        assert _xlsx((await world.api.get(f"{base}/entries.xlsx", token=token)).content) == expected
    for role in ("treasurer", "auditor", "admin"):
        token = world.tokens[role]
        assert _json((await world.api.get(f"{base}/entries", token=token)).json()) == _full()
        assert _csv((await world.api.get(f"{base}/entries.csv", token=token)).content) == _full()
        assert _xlsx((await world.api.get(f"{base}/entries.xlsx", token=token)).content) == _full()
    # Anonymity is a flag on the entry, not a secret from the treasurer.
    listed = (await world.api.get(f"{base}/entries")).json()["items"]
    assert [e["contributor"]["anonymous"] for e in listed].count(True) == 1


async def test_phone_numbers_are_never_taken_or_shown(world: World) -> None:
    project = await world.project()
    # The API has no phone field: a client cannot even send one.
    body = contribution()
    body["contributor"]["phone"] = "13812345678"
    response = await world.api.post(f"/api/v1/projects/{project}/entries", body, token=world.treasurer, key=new_key())
    assert_problem(response, 422, "validation_failed")
    # A phone stored by other means (the ledger accepts one) never reaches an output, masked or not.
    await append_entries(
        world.engine,
        project,
        [
            EntryDraft(
                kind="contribution",
                occurred_on=date(2026, 1, 5),
                amount_fen=10_000,
                contributor=ContributorRef(name="王五", household="9栋1单元101", phone="13812345678"),
                channel="cash",
            )
        ],
        recorded_by="test",
        render=lambda recorded: {},
    )
    for token in (None, world.treasurer, world.admin):
        for tail in ("/entries", "/entries/1", "/entries.csv"):
            response = await world.api.get(f"/api/v1/projects/{project}{tail}", token=token)
            assert "13812345678" not in response.content.decode("utf-8-sig")
        xlsx = await world.api.get(f"/api/v1/projects/{project}/entries.xlsx", token=token)
        assert all(
            "13812345678" not in str(cell)
            for row in openpyxl.load_workbook(io.BytesIO(xlsx.content)).active.iter_rows(values_only=True)
            for cell in row
        )
