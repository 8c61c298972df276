"""API.md "Entries" and "The Merkle log" through the real app: every kind, batches, lists with
pagination, single entries with receipts, CSV and XLSX exports, roots and proofs (checked with
ledger.merkle, the same code anyone can run against a printed root)."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from datetime import date
from typing import Any

import openpyxl

from ledger import merkle
from ledger.drafts import EntryDraft
from ledger.entries import append_entries
from tests.api_support import (
    MONEY_OUT,
    World,
    assert_money_two_decimals,
    assert_problem,
    contribution,
    error_fields,
    expenditure,
    grant,
    in_kind,
    new_key,
    pledge,
    refund,
    reversal,
)

ENTRY_KEYS = {
    "project",
    "seq",
    "kind",
    "amount",
    "occurred_on",
    "recorded_at",
    "memo",
    "postings",
    "reverses",
    "reversed_by",
    "document",
    "leaf_hash",
    "receipt",
}
KIND_FIELDS = {
    "contribution": {"contributor", "channel", "receipt_no"},
    "grant": {"grantor", "document_no"},
    "expenditure": {"payee", "category", "invoice_no"},
    "refund": {"contributor"},
    "in_kind": {"contributor", "description"},
    "pledge": {"contributor"},
    "reversal": {"reason"},
}
POSTINGS = {
    "contribution": [("cash", "debit"), ("contributions", "credit")],
    "grant": [("cash", "debit"), ("grants", "credit")],
    "expenditure": [("expenses:materials", "debit"), ("cash", "credit")],
    "refund": [("refunds", "debit"), ("cash", "credit")],
    "in_kind": [("in_kind:received", "debit"), ("in_kind:contributed", "credit")],
    "pledge": [("pledges:receivable", "debit"), ("pledges:promised", "credit")],
}


def url(project: str, tail: str = "") -> str:
    return f"/api/v1/projects/{project}{tail}"


def check_entry_shape(body: dict[str, Any], kind: str) -> None:
    assert ENTRY_KEYS | KIND_FIELDS[kind] <= set(body), set(body) ^ ENTRY_KEYS
    assert body["kind"] == kind
    assert MONEY_OUT.fullmatch(body["amount"])
    assert_money_two_decimals(body)
    # The leaf hash commits to the canonical document: SHA-256(0x00 ‖ document), lowercase hex.
    document = body["document"].encode()
    assert body["leaf_hash"] == hashlib.sha256(b"\x00" + document).hexdigest()
    assert json.loads(document)["seq"] == body["seq"]
    # Postings balance.
    debit = sum(int(p["amount"].replace(".", "")) for p in body["postings"] if p["side"] == "debit")
    credit = sum(int(p["amount"].replace(".", "")) for p in body["postings"] if p["side"] == "credit")
    assert debit == credit > 0


async def leaves(world: World, project: str) -> list[bytes]:
    items: list[dict[str, Any]] = []
    after = 0
    while True:
        page = (await world.api.get(url(project, "/entries"), params={"after_seq": after, "limit": 500})).json()
        items += page["items"]
        if page["next"] is None:
            break
        after = page["next"]
    return [bytes.fromhex(e["leaf_hash"]) for e in items]


# -- single entries ------------------------------------------------------------------------------


async def test_every_kind_with_postings_and_receipt(world: World) -> None:
    project = await world.project()
    paid = await world.entry(project, contribution(amount="200"))
    contributor_id = paid["contributor"]["id"]
    bodies = [
        paid,
        await world.entry(project, grant(amount="50000")),
        await world.entry(project, expenditure(amount="1200")),
        await world.entry(project, refund("20", {"id": contributor_id})),
        await world.entry(project, in_kind(amount="300")),
        await world.entry(project, pledge(amount="500")),
    ]
    hashes: list[bytes] = []
    for seq, body in enumerate(bodies, start=1):
        check_entry_shape(body, body["kind"])
        assert body["seq"] == seq and body["project"] == project
        assert [(p["account"], p["side"]) for p in body["postings"]] == POSTINGS[body["kind"]]
        hashes.append(bytes.fromhex(body["leaf_hash"]))
        receipt = body["receipt"]
        assert receipt["seq"] == seq and receipt["leaf_hash"] == body["leaf_hash"]
        # receipt.tree_size is the size right after the entry; its root covers exactly those leaves.
        assert receipt["tree_size"] == seq
        assert receipt["root_hash"] == merkle.root_from_leaf_hashes(hashes).hex()
        assert body["reverses"] is None and body["reversed_by"] is None
    assert paid["contributor"]["name"] == "张三" and paid["channel"] == "wechat" and paid["receipt_no"] == "SJ-0001"
    assert bodies[1]["grantor"] == "下陆区住房和城乡建设局" and bodies[1]["document_no"] == "下住建〔2026〕12号"
    assert (bodies[2]["payee"], bodies[2]["category"], bodies[2]["invoice_no"]) == (
        "某沥青工程有限公司",
        "materials",
        "04417305",
    )
    assert bodies[3]["contributor"]["id"] == contributor_id
    assert bodies[4]["description"] == "义务劳动 6 小时"

    # A reversal reports its original's amount with the original's postings mirrored.
    reversed_ = await world.entry(project, reversal(3))
    check_entry_shape(reversed_, "reversal")
    assert reversed_["amount"] == "1200.00" and reversed_["reverses"] == 3 and reversed_["reason"] == "金额录入错误"
    assert [(p["account"], p["side"]) for p in reversed_["postings"]] == [
        ("expenses:materials", "credit"),
        ("cash", "debit"),
    ]
    original = (await world.api.get(url(project, "/entries/3"))).json()
    assert original["reversed_by"] == 7

    summary = (await world.api.get(url(project))).json()["summary"]
    assert summary["contributed"] == "200.00" and summary["granted"] == "50000.00"
    assert summary["spent"] == "0.00" and summary["refunded"] == "20.00"
    assert summary["balance"] == "50180.00"  # contributed + granted − spent − refunded
    assert summary["in_kind_value"] == "300.00" and summary["pledged"] == "500.00"
    assert summary["ledger"]["size"] == 7
    assert summary["ledger"]["root_hash"] == merkle.root_from_leaf_hashes(await leaves(world, project)).hex()


async def test_contributors_matched_by_name_and_household_or_id(world: World) -> None:
    project = await world.project()
    no_channel = contribution(name="李四", household="5栋1单元302")
    del no_channel["channel"]
    first = await world.entry(project, no_channel)
    assert first["channel"] == "other"  # the default
    again = await world.entry(project, contribution(name="李四", household="5栋1单元302"))
    elsewhere = await world.entry(project, contribution(name="李四", household="6栋1单元101"))
    by_id = await world.entry(
        project, contribution(name=None, household=None) | {"contributor": {"id": first["contributor"]["id"]}}
    )
    assert again["contributor"]["id"] == first["contributor"]["id"] == by_id["contributor"]["id"]
    assert elsewhere["contributor"]["id"] != first["contributor"]["id"]
    summary = (await world.api.get(url(project))).json()["summary"]
    assert summary["contributors"] == 2
    # An unknown id is 422; a refund never creates a contributor.
    unknown = contribution() | {"contributor": {"id": "00000000-0000-4000-8000-000000000000"}}
    response = await world.api.post(url(project, "/entries"), unknown, token=world.treasurer, key=new_key())
    assert_problem(response, 422, "validation_failed")
    response = await world.api.post(
        url(project, "/entries"), refund("1", {"name": "从未出资"}), token=world.treasurer, key=new_key()
    )
    assert "contributor" in error_fields(assert_problem(response, 422, "validation_failed"))
    # A refund by name and household, within what was paid.
    body = await world.entry(project, refund("150", {"name": "李四", "household": "5栋1单元302"}))
    assert body["contributor"]["id"] == first["contributor"]["id"]
    assert (await world.api.get(url(project))).json()["summary"]["contributors"] == 2


async def test_contributor_needs_id_or_name(world: World) -> None:
    project = await world.project()
    body = contribution() | {"contributor": {"household": "3栋"}}
    response = await world.api.post(url(project, "/entries"), body, token=world.treasurer, key=new_key())
    assert "contributor" in error_fields(assert_problem(response, 422, "validation_failed"))


# -- batches -------------------------------------------------------------------------------------


async def test_batch_all_or_none(world: World) -> None:
    project = await world.project()
    entries = [contribution(amount=f"{i}.50", receipt_no=f"SJ-{i}") for i in range(1, 41)]
    entries += [grant(amount="1000"), expenditure(amount="500"), reversal(1)]
    response = await world.api.post(
        url(project, "/entries/batch"), {"entries": entries}, token=world.treasurer, key=new_key()
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert [e["seq"] for e in body["items"]] == list(range(1, 44))
    assert body["tree_size"] == 43
    assert (
        body["root_hash"] == merkle.root_from_leaf_hashes([bytes.fromhex(e["leaf_hash"]) for e in body["items"]]).hex()
    )
    assert body["items"][-1]["amount"] == "1.50" and body["items"][-1]["reverses"] == 1
    for item in body["items"]:
        check_entry_shape(item, item["kind"])
    # One bad entry (an overdraft at position 2) and nothing of the batch is recorded.
    failing = [grant(amount="1"), grant(amount="2"), expenditure(amount="1000000")]
    response = await world.api.post(
        url(project, "/entries/batch"), {"entries": failing}, token=world.treasurer, key=new_key()
    )
    body = assert_problem(response, 422, "validation_failed")
    assert error_fields(body) == {"entries[2]"}
    assert "insufficient_funds" in body["errors"][0]["message"]
    head = (await world.api.get(url(project, "/ledger"))).json()
    assert head["size"] == 43
    # Limits: at least one entry, at most 10,000.
    response = await world.api.post(
        url(project, "/entries/batch"), {"entries": []}, token=world.treasurer, key=new_key()
    )
    assert error_fields(assert_problem(response, 422, "validation_failed")) == {"entries"}
    many = {"entries": [grant(amount="1", memo=None, document_no=None)] * 10_001}
    response = await world.api.post(url(project, "/entries/batch"), many, token=world.treasurer, key=new_key())
    assert error_fields(assert_problem(response, 422, "validation_failed")) == {"entries"}
    assert (await world.api.get(url(project, "/ledger"))).json()["size"] == 43


# -- lists, pagination, one entry ------------------------------------------------------------------


async def test_list_kind_filter_and_pagination(world: World) -> None:
    project = await world.project()
    entries = [contribution(amount="1") if i % 3 else grant(amount="2") for i in range(1, 621)]
    response = await world.api.post(
        url(project, "/entries/batch"), {"entries": entries}, token=world.treasurer, key=new_key()
    )
    assert response.status_code == 201

    default = (await world.api.get(url(project, "/entries"))).json()
    assert [e["seq"] for e in default["items"]] == list(range(1, 51)) and default["next"] == 50
    clamped = (await world.api.get(url(project, "/entries"), params={"limit": 100_000})).json()
    assert len(clamped["items"]) == 500 and clamped["next"] == 500

    seen: list[int] = []
    after: int | None = 0
    pages = 0
    while after is not None:
        page = (await world.api.get(url(project, "/entries"), params={"after_seq": after, "limit": 77})).json()
        assert {"items", "next"} <= set(page)
        seen += [e["seq"] for e in page["items"]]
        after = page["next"]
        assert after is None or after == seen[-1]
        pages += 1
    assert seen == list(range(1, 621)) and pages == 9  # 620 / 77, the last page has null next

    exact = (await world.api.get(url(project, "/entries"), params={"after_seq": 600, "limit": 20})).json()
    assert len(exact["items"]) == 20 and exact["next"] is None
    beyond = (await world.api.get(url(project, "/entries"), params={"after_seq": 620})).json()
    assert beyond == {"items": [], "next": None}

    grants = (await world.api.get(url(project, "/entries"), params={"kind": "grant", "limit": 500})).json()
    assert {e["kind"] for e in grants["items"]} == {"grant"}
    assert [e["seq"] for e in grants["items"]] == [s for s in range(1, 621) if s % 3 == 0]
    assert grants["next"] is None
    assert (await world.api.get(url(project, "/entries"), params={"kind": "pledge"})).json() == {
        "items": [],
        "next": None,
    }


async def test_get_one_entry_with_receipt(world: World) -> None:
    project = await world.project()
    recorded = [await world.entry(project, grant(amount=str(i))) for i in range(1, 6)]
    for i, posted in enumerate(recorded, start=1):
        got = (await world.api.get(url(project, f"/entries/{i}"))).json()
        check_entry_shape(got, "grant")
        for key in ("seq", "amount", "document", "leaf_hash", "postings", "occurred_on", "grantor"):
            assert got[key] == posted[key]
        # The receipt of a stored entry: the tree right after it was appended.
        assert got["receipt"] == posted["receipt"]
    assert_problem(await world.api.get(url(project, "/entries/6")), 404, "not_found")
    assert_problem(await world.api.get(url(project, "/entries/0")), 404, "not_found")


# -- exports -------------------------------------------------------------------------------------


async def test_csv_export_utf8_with_bom(world: World) -> None:
    project = await world.project()
    await world.entry(project, contribution(amount="200.5"))
    await world.entry(project, grant(amount="50000"))
    await world.entry(project, expenditure(amount="1200"))
    await world.entry(project, reversal(3))
    response = await world.api.get(url(project, "/entries.csv"))
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert "attachment" in response.headers["content-disposition"]
    assert response.content.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(response.content[3:].decode("utf-8"))))
    header, data = rows[0], rows[1:]
    assert header[:4] == ["序号", "类型", "发生日期", "金额（元）"]
    assert [r[0] for r in data] == ["1", "2", "3", "4"]
    assert [r[3] for r in data] == ["200.50", "50000.00", "1200.00", "-1200.00"]
    assert data[0][4] == "张*" and data[0][5] == "3栋"
    assert data[2][4] == "某沥青工程有限公司"
    # Empty cells stay empty (only a leading =, + or @ is neutralised against formula injection).
    assert data[1][5] == "" and data[0][8] == ""
    assert all(cell != "'" for row in data for cell in row)
    leaf = (await world.api.get(url(project, "/entries/1"))).json()["leaf_hash"]
    assert data[0][-1] == leaf
    only = (await world.api.get(url(project, "/entries.csv"), params={"kind": "grant"})).content
    assert len(list(csv.reader(io.StringIO(only[3:].decode())))) == 2
    assert_problem(await world.api.get(url(project, "/entries.csv"), params={"kind": "x"}), 422, "validation_failed")


async def test_xlsx_export_opens_in_openpyxl(world: World) -> None:
    project = await world.project()
    await world.entry(project, contribution(amount="200.5"))
    await world.entry(project, grant(amount="50000", memo="第一行\n\t第二行"))
    # A control character that reached the ledger some other way does not break the export.
    draft = EntryDraft(kind="grant", occurred_on=date(2026, 1, 5), amount_fen=100, grantor="区\x01住建局")
    await append_entries(world.engine, project, [draft], recorded_by="test", render=lambda recorded: {})
    response = await world.api.get(url(project, "/entries.xlsx"))
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    book = openpyxl.load_workbook(io.BytesIO(response.content))
    sheet = book.active
    rows = list(sheet.iter_rows(values_only=True))
    assert rows[0][:4] == ("序号", "类型", "发生日期", "金额（元）")
    assert [r[0] for r in rows[1:]] == [1, 2, 3]
    assert [float(r[3]) for r in rows[1:]] == [200.5, 50000.0, 1.0]
    assert rows[1][4] == "张*" and rows[1][5] == "3栋"
    assert rows[2][11] == "第一行\n\t第二行" and rows[3][8] == "区\ufffd住建局"


# -- the Merkle log ------------------------------------------------------------------------------


async def test_roots_inclusion_and_consistency_verify_with_ledger_merkle(world: World) -> None:
    project = await world.project()
    empty = (await world.api.get(url(project, "/ledger"))).json()
    assert empty == {"size": 0, "root_hash": merkle.EMPTY_ROOT.hex()}
    entries = [grant(amount=str(i)) for i in range(1, 14)]
    response = await world.api.post(
        url(project, "/entries/batch"), {"entries": entries}, token=world.treasurer, key=new_key()
    )
    assert response.status_code == 201
    hashes = await leaves(world, project)
    assert len(hashes) == 13

    now = (await world.api.get(url(project, "/ledger"))).json()
    assert now == {"size": 13, "root_hash": merkle.root_from_leaf_hashes(hashes).hex()}
    roots = {0: merkle.EMPTY_ROOT}
    for size in range(1, 14):
        body = (await world.api.get(url(project, "/ledger"), params={"size": size})).json()
        assert body["size"] == size
        assert body["root_hash"] == body["root_hash"].lower()
        roots[size] = bytes.fromhex(body["root_hash"])
        assert roots[size] == merkle.root_from_leaf_hashes(hashes[:size])

    for size in (1, 2, 5, 8, 13):
        for seq in range(1, size + 1):
            body = (await world.api.get(url(project, "/ledger/inclusion"), params={"seq": seq, "size": size})).json()
            assert {"seq", "size", "leaf_hash", "root_hash", "proof"} <= set(body)
            assert (body["seq"], body["size"]) == (seq, size)
            assert body["leaf_hash"] == hashes[seq - 1].hex() and bytes.fromhex(body["root_hash"]) == roots[size]
            merkle.verify_inclusion(
                bytes.fromhex(body["leaf_hash"]), seq - 1, size, [bytes.fromhex(h) for h in body["proof"]], roots[size]
            )
    default = (await world.api.get(url(project, "/ledger/inclusion"), params={"seq": 4})).json()
    assert default["size"] == 13

    for size_from in range(1, 14):
        for size_to in (size_from, 8, 13):
            if size_to < size_from:
                continue
            body = (
                await world.api.get(url(project, "/ledger/consistency"), params={"from": size_from, "to": size_to})
            ).json()
            assert {"from", "to", "from_root", "to_root", "proof"} <= set(body)
            assert (body["from"], body["to"]) == (size_from, size_to)
            assert (
                bytes.fromhex(body["from_root"]) == roots[size_from]
                and bytes.fromhex(body["to_root"]) == roots[size_to]
            )
            merkle.verify_consistency(
                size_from, size_to, [bytes.fromhex(h) for h in body["proof"]], roots[size_from], roots[size_to]
            )

    verify = (await world.api.get(url(project, "/ledger/verify"))).json()
    assert {k: verify[k] for k in ("ok", "size", "root_hash", "first_bad_seq")} == {
        "ok": True,
        "size": 13,
        "root_hash": roots[13].hex(),
        "first_bad_seq": None,
    }

    bad = [
        ("/ledger", {"size": 14}),
        ("/ledger", {"size": -1}),
        ("/ledger/inclusion", {"seq": 14}),
        ("/ledger/inclusion", {"seq": 0}),
        ("/ledger/inclusion", {"seq": 5, "size": 4}),
        ("/ledger/inclusion", {}),
        ("/ledger/consistency", {"from": 5, "to": 4}),
        ("/ledger/consistency", {"from": 0, "to": 4}),
        ("/ledger/consistency", {"from": 1, "to": 14}),
        ("/ledger/consistency", {"from": 1}),
    ]
    for tail, params in bad:
        assert_problem(await world.api.get(url(project, tail), params=params), 422, "validation_failed")
    for tail in ("/ledger", "/ledger/inclusion?seq=1", "/ledger/consistency?from=1&to=1", "/ledger/verify"):
        assert_problem(await world.api.get(url("no-such-project", tail)), 404, "not_found")


async def test_replayed_entry_answers_original_and_writes_nothing(world: World) -> None:
    project = await world.project()
    key = new_key()
    first = await world.api.post(url(project, "/entries"), contribution(), token=world.treasurer, key=key)
    for _ in range(3):
        again = await world.api.post(url(project, "/entries"), contribution(), token=world.treasurer, key=key)
        assert (again.status_code, again.content, again.headers["idempotent-replayed"]) == (201, first.content, "true")
    batch_key = new_key()
    batch = await world.api.post(
        url(project, "/entries/batch"), {"entries": [grant()]}, token=world.treasurer, key=batch_key
    )
    replay = await world.api.post(
        url(project, "/entries/batch"), {"entries": [grant()]}, token=world.treasurer, key=batch_key
    )
    assert replay.content == batch.content and replay.headers["idempotent-replayed"] == "true"
    assert (await world.api.get(url(project, "/ledger"))).json()["size"] == 2


async def test_an_append_answers_compact_json_and_its_replay_the_same_bytes(world: World) -> None:
    """The single append's body is written by pydantic at once (JsonText): the same compact JSON,
    key for key, as the dict it used to dump — Chinese and control characters raw or escaped as
    json.dumps writes them — and the replay is byte for byte the first answer."""
    project = await world.project()
    body = contribution("88.5", "王小明", memo='路面\t刷黑 \u2028"一期" \\ ☃')
    key = new_key()
    first = await world.api.post(f"/api/v1/projects/{project}/entries", body, token=world.treasurer, key=key)
    assert first.status_code == 201, first.text
    parsed = json.loads(first.content)
    assert first.content == json.dumps(parsed, ensure_ascii=False, separators=(",", ":")).encode()
    assert parsed["memo"] == '路面\t刷黑 \u2028"一期" \\ ☃'
    replay = await world.api.post(f"/api/v1/projects/{project}/entries", body, token=world.treasurer, key=key)
    assert replay.status_code == 201 and replay.headers["idempotent-replayed"] == "true"
    assert replay.content == first.content
