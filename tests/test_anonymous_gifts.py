"""An anonymous gift cannot be linked to its giver in any public output (JSON, document, CSV, XLSX,
PDF sheet): it publishes its own contributor id, fresh per entry, and no building. Inside, it is
still the same person: totals, refunds and the unmasked views see them."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import openpyxl

from ledger import tree
from tests.api_support import World, contribution, new_key, refund, today
from tests.test_disclosures import pdf_text

QIAN = ("钱七", "7栋1单元101")


async def _seed(world: World) -> tuple[str, list[dict[str, Any]]]:
    """钱七 gives twice by name and twice anonymously; 张三 (another building) once by name."""
    project = await world.project()
    entries = [
        contribution("100", *QIAN),
        contribution("30", *QIAN, anonymous=True),
        contribution("200", "张三", "3栋2单元501"),
        contribution("50", *QIAN),
        contribution("20", *QIAN, anonymous=True),
    ]
    response = await world.api.post(
        f"/api/v1/projects/{project}/entries/batch", {"entries": entries}, token=world.treasurer, key=new_key()
    )
    assert response.status_code == 201, response.text
    return project, response.json()["items"]


def _document_contributor(entry: dict[str, Any]) -> dict[str, Any]:
    return json.loads(entry["document"])["contributor"]  # type: ignore[no-any-return]


async def test_anonymous_entries_publish_their_own_id_and_no_building(world: World) -> None:
    project, recorded = await _seed(world)
    listed = (await world.api.get(f"/api/v1/projects/{project}/entries")).json()["items"]
    named = [listed[0], listed[3]]
    anonymous = [listed[1], listed[4]]
    named_id = named[0]["contributor"]["id"]
    assert named[1]["contributor"]["id"] == named_id, "named gifts of one person share their id"
    anonymous_ids = {e["contributor"]["id"] for e in anonymous}
    assert len(anonymous_ids) == 2 and named_id not in anonymous_ids, "fresh per anonymous entry"
    for e in anonymous:
        assert e["contributor"]["name"] == "匿名" and e["contributor"]["household"] is None
        assert e["contributor"]["anonymous"] is True
        single = (await world.api.get(f"/api/v1/projects/{project}/entries/{e['seq']}")).json()
        assert single["contributor"] == e["contributor"]
    # The hashed document says the same: its own id, and a commitment unlike the named ones'.
    named_commitments = {_document_contributor(e)["commitment"] for e in named}
    assert len(named_commitments) == 1
    for e in anonymous:
        stamp = _document_contributor(e)
        assert stamp["id"] == e["contributor"]["id"]
        assert stamp["commitment"] not in named_commitments
        assert named_id not in e["document"]
        assert "7栋" not in json.dumps(e, ensure_ascii=False)

    # The treasurer's own views (and the stored response) still show the real person.
    for view in (
        recorded,
        (await world.api.get(f"/api/v1/projects/{project}/entries", token=world.treasurer)).json()["items"],
    ):
        for i in (1, 4):
            assert view[i]["contributor"]["id"] == named_id
            assert (view[i]["contributor"]["name"], view[i]["contributor"]["household"]) == QIAN
            assert view[i]["document"] == listed[i]["document"]

    # Spreadsheets: 匿名 and no building on the anonymous rows, for the public and another community.
    for token in (None, world.tokens["treasurer_other"]):
        data = (await world.api.get(f"/api/v1/projects/{project}/entries.csv", token=token)).content
        rows = list(csv.reader(io.StringIO(data.decode("utf-8-sig"))))[1:]
        assert [(r[4], r[5]) for r in rows] == [
            ("钱*", "7栋"),
            ("匿名", ""),
            ("张*", "3栋"),
            ("钱*", "7栋"),
            ("匿名", ""),
        ]
        book = openpyxl.load_workbook(
            io.BytesIO((await world.api.get(f"/api/v1/projects/{project}/entries.xlsx", token=token)).content)
        )
        cells = [(r[4], r[5]) for r in list(book.active.iter_rows(values_only=True))[1:]]
        assert cells[1] == ("匿名", None) and cells[4] == ("匿名", None)


async def test_anonymous_gifts_still_count_and_refund_as_the_same_person(world: World) -> None:
    project, recorded = await _seed(world)
    person = {"name": QIAN[0], "household": QIAN[1]}
    summary = (await world.api.get(f"/api/v1/projects/{project}")).json()["summary"]
    assert summary["contributors"] == 2, "钱七 is one contributor however he gives"
    # Paid 100 + 30 + 50 + 20 = 200 in all: a refund of 200 is allowed, one cent more is not.
    too_much = await world.api.post(
        f"/api/v1/projects/{project}/entries", refund("200.01", person), token=world.treasurer, key=new_key()
    )
    assert too_much.status_code == 409, too_much.text
    by_real_id = await world.entry(project, refund("200", {"id": recorded[1]["contributor"]["id"]}))
    assert by_real_id["contributor"]["id"] == recorded[0]["contributor"]["id"]
    verification = await tree.verify(world.engine, project)
    assert verification.ok and verification.contributor_totals_ok


async def test_the_pdf_sheet_shows_no_building_for_an_anonymous_gift(world: World, tmp_path: Path) -> None:
    project = await world.project()
    await world.entry(project, contribution("30", *QIAN, anonymous=True))
    await world.entry(project, contribution("200", "张三", "3栋2单元501"))
    period = {"period_start": (today() - timedelta(days=30)).isoformat(), "period_end": today().isoformat()}
    response = await world.api.post(
        f"/api/v1/projects/{project}/disclosures", {**period, "notice_days": 7}, token=world.treasurer, key=new_key()
    )
    assert response.status_code == 201, response.text
    pdf = (await world.api.get(response.json()["pdf_url"])).content
    flat = re.sub(r"\s+", "", pdf_text(pdf, tmp_path))
    assert "匿名" in flat and "张*" in flat and "3栋" in flat
    assert "7栋" not in flat and "钱" not in flat


async def test_after_erasure_an_anonymous_gift_stays_anonymous(world: World) -> None:
    """已注销 beside the erased giver's named entries, but 匿名 (own id, no building) on the
    anonymous ones: 已注销 there would tie them to the erased person."""
    project, recorded = await _seed(world)
    person = recorded[0]["contributor"]["id"]
    erased = await world.api.post(f"/api/v1/contributors/{person}/erasure", {"reason": "本人申请"}, token=world.admin)
    assert erased.status_code == 201, erased.text
    for token in (None, world.tokens["treasurer_other"]):
        listed = (await world.api.get(f"/api/v1/projects/{project}/entries", token=token)).json()["items"]
        shown = [(e["contributor"]["name"], e["contributor"]["household"]) for e in listed]
        assert shown == [("已注销", None), ("匿名", None), ("张*", "3栋"), ("已注销", None), ("匿名", None)]
        assert [e["contributor"]["id"] == person for e in listed] == [True, False, False, True, False]
    # The community's treasurer sees 已注销 everywhere: the person is gone for everyone.
    listed = (await world.api.get(f"/api/v1/projects/{project}/entries", token=world.treasurer)).json()["items"]
    assert [listed[i]["contributor"]["name"] for i in (0, 1, 3, 4)] == ["已注销", "匿名", "已注销", "匿名"]
    assert (await tree.verify(world.engine, project)).ok
