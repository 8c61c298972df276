"""API.md "Common rules": money, unknown fields, dates, every error code with its status and
problem+json shape, error precedence, body limits, methods that do not exist."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from api.app import create_app
from api.errors import STATUS_BY_CODE
from tests.api_support import (
    LEAK_MARKERS,
    Api,
    LiveServer,
    World,
    app_settings,
    assert_money_two_decimals,
    assert_problem,
    contribution,
    error_fields,
    expenditure,
    future,
    grant,
    new_key,
    past,
    reversal,
)

API_CODES = {
    "malformed_request": 400,
    "idempotency_key_missing": 400,
    "unauthorized": 401,
    "forbidden": 403,
    "not_found": 404,
    "method_not_allowed": 405,
    "insufficient_funds": 409,
    "already_reversed": 409,
    "stage_forbids_entry": 409,
    "idempotency_in_flight": 409,
    "conflict": 409,
    "payload_too_large": 413,
    "validation_failed": 422,
    "idempotency_key_reused": 422,
    "rate_limited": 429,
}


def entries_url(project: str) -> str:
    return f"/api/v1/projects/{project}/entries"


def test_error_codes_of_api_md_map_to_their_status() -> None:
    for code, status in API_CODES.items():
        assert STATUS_BY_CODE[code] == status, code


# -- money ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sent", "shown"),
    [("200", "200.00"), ("200.5", "200.50"), ("200.50", "200.50"), ("0.01", "0.01"), ("100000000.00", "100000000.00")],
)
async def test_money_in_as_yuan_string_out_with_two_decimals(world: World, sent: str, shown: str) -> None:
    project = await world.project()
    body = await world.entry(project, contribution(amount=sent))
    assert body["amount"] == shown
    assert {p["amount"] for p in body["postings"]} == {shown}
    assert_money_two_decimals(body)
    summary = (await world.api.get(f"/api/v1/projects/{project}")).json()
    assert summary["summary"]["contributed"] == shown
    assert summary["summary"]["balance"] == shown
    assert_money_two_decimals(summary)


@pytest.mark.parametrize(
    "amount",
    [
        200,
        200.5,
        0,
        "-5",
        "-0.01",
        "0",
        "0.00",
        "1.234",
        "100000000.01",
        "1e3",
        "",
        " 200",
        "200.",
        ".5",
        "1,000",
        None,
    ],
    ids=repr,
)
async def test_money_refused(world: World, amount: Any) -> None:
    project = await world.project()
    response = await world.api.post(
        entries_url(project), contribution(amount=amount), token=world.treasurer, key=new_key()
    )
    body = assert_problem(response, 422, "validation_failed")
    assert error_fields(body) == {"amount"}
    assert (await world.api.get(f"/api/v1/projects/{project}/ledger")).json()["size"] == 0


async def test_budget_amount_as_json_number_refused(world: World) -> None:
    body = {
        "code": "c-" + new_key()[:12],
        "community": world.community,
        "title": "t",
        "budget_lines": [{"category": "materials", "label": "沥青", "source": "grant", "amount": 60000}],
    }
    response = await world.api.post("/api/v1/projects", body, token=world.admin)
    assert error_fields(assert_problem(response, 422, "validation_failed")) == {"budget_lines[0].amount"}


async def test_summary_money_all_two_decimals(world: World) -> None:
    project = await world.project()
    await world.entry(project, contribution(amount="200.5"))
    await world.entry(project, grant(amount="50000"))
    await world.entry(project, expenditure(amount="1200.1"))
    body = (await world.api.get(f"/api/v1/projects/{project}")).json()
    assert_money_two_decimals(body)
    s = body["summary"]
    assert (s["contributed"], s["granted"], s["spent"], s["balance"]) == ("200.50", "50000.00", "1200.10", "49000.40")


# -- unknown fields ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "smuggled",
    [{"seq": 1}, {"leaf_hash": "00" * 32}, {"recorded_by": "admin"}, {"root_hash": "00"}, {"reversed_by": 3}],
    ids=lambda d: next(iter(d)),
)
async def test_unknown_fields_refused_on_entries(world: World, smuggled: dict[str, Any]) -> None:
    project = await world.project()
    response = await world.api.post(
        entries_url(project), contribution(**smuggled), token=world.treasurer, key=new_key()
    )
    body = assert_problem(response, 422, "validation_failed")
    assert error_fields(body) == set(smuggled)
    assert (await world.api.get(f"/api/v1/projects/{project}/ledger")).json()["size"] == 0


async def test_unknown_fields_refused_everywhere(world: World) -> None:
    project = await world.project()
    nested = contribution()
    nested["contributor"]["phone"] = "13812345678"
    cases: list[tuple[str, dict[str, Any], str, str]] = [
        (entries_url(project), nested, world.treasurer, "contributor.phone"),
        (f"{entries_url(project)}/batch", {"entries": [contribution()], "atomic": False}, world.treasurer, "atomic"),
        (f"{entries_url(project)}/batch", {"entries": [contribution(seq=7)]}, world.treasurer, "entries[0].seq"),
        ("/api/v1/communities", {"code": "x-" + new_key()[:8], "name": "n", "id": 5}, world.admin, "id"),
        (
            "/api/v1/projects",
            {"code": "y-" + new_key()[:8], "community": world.community, "title": "t", "stage": "start"},
            world.admin,
            "stage",
        ),
        ("/api/v1/tokens", {"name": "n", "role": "admin", "secret": "x"}, world.admin, "secret"),
        (
            f"/api/v1/projects/{project}/decisions",
            {"stage": "proposal", "held_on": past(), "body": "居委会", "recorded_by": "x"},
            world.treasurer,
            "recorded_by",
        ),
    ]
    for url, body, token, field in cases:
        response = await world.api.post(url, body, token=token, key=new_key())
        assert field in error_fields(assert_problem(response, 422, "validation_failed")), (url, response.text)


# -- dates ---------------------------------------------------------------------------------------


async def test_dates(world: World) -> None:
    project = await world.project()
    for value in (future(2), future(400)):
        response = await world.api.post(
            entries_url(project), contribution(occurred_on=value), token=world.treasurer, key=new_key()
        )
        assert error_fields(assert_problem(response, 422, "validation_failed")) == {"occurred_on"}
    for value in ("2026-13-01", "2026/11/01", "20261101", 20261101, "", "yesterday"):
        response = await world.api.post(
            entries_url(project), contribution(occurred_on=value), token=world.treasurer, key=new_key()
        )
        assert error_fields(assert_problem(response, 422, "validation_failed")) == {"occurred_on"}, value
    response = await world.api.post(
        f"/api/v1/projects/{project}/decisions",
        {"stage": "proposal", "held_on": future(), "body": "居委会"},
        token=world.treasurer,
    )
    assert error_fields(assert_problem(response, 422, "validation_failed")) == {"held_on"}
    body = await world.entry(project, contribution(occurred_on=past(0)))
    assert body["occurred_on"] == past(0)
    # Timestamps are RFC 3339 with an offset.
    assert datetime.fromisoformat(body["recorded_at"]).tzinfo is not None
    listed = (await world.api.get(entries_url(project))).json()["items"][0]
    assert datetime.fromisoformat(listed["recorded_at"]).tzinfo is not None


# -- every error code ------------------------------------------------------------------------------


async def test_malformed_request_400(world: World) -> None:
    project = await world.project()
    url = entries_url(project)
    t = world.treasurer
    for content in (b"{", b"", b"\xff\xfe{}", b"{'a': 1}", b"[1,"):
        assert_problem(
            await world.api.request("POST", url, content=content, token=t, key=new_key()), 400, "malformed_request"
        )
    response = await world.api.request(
        "POST", url, content=b"{}", token=t, key=new_key(), headers={"Content-Type": "text/plain"}
    )
    assert_problem(response, 400, "malformed_request")
    for key in ("has space", "x" * 256, "ключ".encode(), "tab\tkey", ""):
        response = await world.api.post(url, contribution(), token=t, headers={"Idempotency-Key": key})  # type: ignore[dict-item]
        assert_problem(response, 400, "malformed_request")
    # A NUL byte in the path or query is refused up front, on every route.
    assert_problem(await world.api.get("/api/v1/projects/a%00b"), 400, "malformed_request")
    assert_problem(await world.api.get("/api/v1/projects", params={"community": "a\x00b"}), 400, "malformed_request")
    assert (await world.api.get(f"/api/v1/projects/{project}/ledger")).json()["size"] == 0


async def test_idempotency_key_missing_400(world: World) -> None:
    project = await world.project()
    for url, body in (
        (entries_url(project), contribution()),
        (f"{entries_url(project)}/batch", {"entries": [grant()]}),
    ):
        assert_problem(await world.api.post(url, body, token=world.treasurer), 400, "idempotency_key_missing")
        assert_problem(await world.api.post(url, body), 400, "idempotency_key_missing")
    assert (await world.api.get(f"/api/v1/projects/{project}/ledger")).json()["size"] == 0


async def test_unauthorized_401(world: World) -> None:
    project = await world.project()
    url = entries_url(project)
    cases = [
        await world.api.post(url, contribution(), key=new_key()),
        await world.api.post(url, contribution(), key=new_key(), token=world.tokens["garbage"]),
        await world.api.post(url, contribution(), key=new_key(), token=world.tokens["revoked"]),
        await world.api.post(url, contribution(), key=new_key(), headers={"Authorization": "Basic dXNlcjpwdw=="}),
        await world.api.post(url, contribution(), key=new_key(), headers={"Authorization": "Bearer "}),
        await world.api.get(url, token=world.tokens["garbage"]),
        await world.api.get(f"/api/v1/projects/{project}/ledger/verify", token=world.tokens["revoked"]),
        await world.api.post("/api/v1/tokens", {"name": "x", "role": "admin"}),
    ]
    for response in cases:
        assert_problem(response, 401, "unauthorized")
        assert response.headers.get("www-authenticate", "").lower().startswith("bearer")


async def test_forbidden_403(world: World) -> None:
    project = await world.project()
    for token in (world.auditor, world.tokens["treasurer_other"], world.tokens["auditor_other"]):
        response = await world.api.post(entries_url(project), grant(), token=token, key=new_key())
        assert_problem(response, 403, "forbidden")
    assert_problem(
        await world.api.post("/api/v1/tokens", {"name": "x", "role": "admin"}, token=world.treasurer), 403, "forbidden"
    )
    assert (await world.api.get(f"/api/v1/projects/{project}/ledger")).json()["size"] == 0


async def test_not_found_404(world: World) -> None:
    project = await world.project()
    await world.entry(project, grant())
    for url in (
        "/api/v1/projects/no-such-project",
        "/api/v1/projects/no-such-project/entries",
        f"/api/v1/projects/{project}/entries/2",
        "/api/v1/projects/no-such-project/entries.csv",
        "/api/v1/projects/no-such-project/ledger/verify",
        "/api/v1/projects/no-such-project/decisions",
        "/api/v1/communities/no-such-community",
        "/api/v1/no-such-route",
        "/nothing-here",
    ):
        assert_problem(await world.api.get(url), 404, "not_found")
    response = await world.api.post(
        "/api/v1/projects/no-such-project/entries", grant(), token=world.treasurer, key=new_key()
    )
    assert_problem(response, 404, "not_found")
    assert_problem(
        await world.api.delete("/api/v1/tokens/00000000-0000-0000-0000-000000000000", token=world.admin),
        404,
        "not_found",
    )


@pytest.mark.parametrize("method", ["PUT", "PATCH", "DELETE"])
async def test_method_not_allowed_405_on_entries(world: World, method: str) -> None:
    project = await world.project()
    await world.entry(project, grant())
    for url in (entries_url(project), f"{entries_url(project)}/1", f"{entries_url(project)}/batch"):
        for token in (None, world.treasurer, world.admin):
            response = await world.api.request(method, url, token=token, json_body={"amount": "1"})
            assert_problem(response, 405, "method_not_allowed")
            allowed = {m.strip() for m in response.headers["allow"].split(",")}
            assert method not in allowed and allowed & {"GET", "POST"}
    entry = (await world.api.get(f"{entries_url(project)}/1")).json()
    assert entry["amount"] == "50000.00"


async def test_insufficient_funds_409(world: World) -> None:
    project = await world.project()
    await world.entry(project, contribution(amount="100"))
    response = await world.api.post(
        entries_url(project), expenditure(amount="100.01"), token=world.treasurer, key=new_key()
    )
    assert_problem(response, 409, "insufficient_funds")
    await world.entry(project, expenditure(amount="80"))
    # The contribution cannot be reversed or refunded now that 80 of it is spent.
    assert_problem(
        await world.api.post(entries_url(project), reversal(1), token=world.treasurer, key=new_key()),
        409,
        "insufficient_funds",
    )
    refund = {
        "kind": "refund",
        "amount": "50",
        "occurred_on": past(),
        "contributor": {"name": "张三", "household": "3栋2单元501"},
    }
    assert_problem(
        await world.api.post(entries_url(project), refund, token=world.treasurer, key=new_key()),
        409,
        "insufficient_funds",
    )
    summary = (await world.api.get(f"/api/v1/projects/{project}")).json()["summary"]
    assert (summary["balance"], summary["ledger"]["size"]) == ("20.00", 2)


async def test_already_reversed_and_conflict_409(world: World) -> None:
    project = await world.project()
    await world.entry(project, grant(amount="1000"))
    await world.entry(project, reversal(1))
    assert_problem(
        await world.api.post(entries_url(project), reversal(1), token=world.treasurer, key=new_key()),
        409,
        "already_reversed",
    )
    # A reversal is never reversed.
    assert_problem(
        await world.api.post(entries_url(project), reversal(2), token=world.treasurer, key=new_key()), 409, "conflict"
    )
    # A refund beyond what the contributor paid.
    paid = await world.entry(project, contribution(amount="30", name="赵六", household="8栋1单元101"))
    refund = {
        "kind": "refund",
        "amount": "30.01",
        "occurred_on": past(),
        "contributor": {"id": paid["contributor"]["id"]},
    }
    assert_problem(
        await world.api.post(entries_url(project), refund, token=world.treasurer, key=new_key()), 409, "conflict"
    )
    # Codes are unique.
    assert_problem(
        await world.api.post("/api/v1/communities", {"code": world.community, "name": "重复"}, token=world.admin),
        409,
        "conflict",
    )
    body = {"code": project, "community": world.community, "title": "重复"}
    assert_problem(await world.api.post("/api/v1/projects", body, token=world.admin), 409, "conflict")
    # Decisions out of order.
    gated = await world.project(gate="resolution")
    response = await world.api.post(
        f"/api/v1/projects/{gated}/decisions",
        {"stage": "start", "held_on": past(), "body": "居委会"},
        token=world.treasurer,
    )
    assert_problem(response, 409, "conflict")
    assert (await world.api.get(f"/api/v1/projects/{project}/ledger")).json()["size"] == 3


async def test_stage_forbids_entry_409(world: World) -> None:
    project = await world.project(gate="resolution")
    await world.entry(project, contribution(amount="5000"))
    response = await world.api.post(
        entries_url(project), expenditure(amount="10"), token=world.treasurer, key=new_key()
    )
    assert_problem(response, 409, "stage_forbids_entry")


async def test_idempotency_in_flight_409(world: World, engine: AsyncEngine) -> None:
    """The first request is "in flight" while another transaction holds its key's advisory lock."""
    project = await world.project()
    key = new_key()
    scope = str(world.token_ids["treasurer"])
    async with engine.connect() as conn, conn.begin() as tx:
        await conn.execute(
            text("SELECT pg_advisory_xact_lock(hashtextextended(:scope || chr(31) || :key, 7))"),
            {"scope": scope, "key": key},
        )
        response = await world.api.post(entries_url(project), grant(), token=world.treasurer, key=key)
        assert_problem(response, 409, "idempotency_in_flight")
        await tx.rollback()
    response = await world.api.post(entries_url(project), grant(), token=world.treasurer, key=key)
    assert response.status_code == 201, response.text
    assert (await world.api.get(f"/api/v1/projects/{project}/ledger")).json()["size"] == 1


async def test_idempotency_key_reused_422_and_replay(world: World) -> None:
    project = await world.project()
    key = new_key()
    first = await world.api.post(entries_url(project), grant(amount="10"), token=world.treasurer, key=key)
    assert first.status_code == 201 and "idempotent-replayed" not in first.headers
    again = await world.api.post(entries_url(project), grant(amount="10"), token=world.treasurer, key=key)
    assert again.status_code == 201 and again.headers["idempotent-replayed"] == "true"
    assert again.content == first.content
    # Key order and spacing do not make a different request.
    reordered = json.dumps(dict(reversed(list(grant(amount="10").items()))), ensure_ascii=False, indent=2).encode()
    again = await world.api.request("POST", entries_url(project), content=reordered, token=world.treasurer, key=key)
    assert again.content == first.content
    different = await world.api.post(entries_url(project), grant(amount="11"), token=world.treasurer, key=key)
    assert_problem(different, 422, "idempotency_key_reused")
    # The same key on another route is another request, too.
    batch = await world.api.post(
        f"{entries_url(project)}/batch", {"entries": [grant(amount="10")]}, token=world.treasurer, key=key
    )
    assert_problem(batch, 422, "idempotency_key_reused")
    # Keys are scoped to the token: the admin's identical request is a new entry.
    other = await world.api.post(entries_url(project), grant(amount="10"), token=world.admin, key=key)
    assert other.status_code == 201 and "idempotent-replayed" not in other.headers
    assert other.json()["seq"] == 2
    assert (await world.api.get(f"/api/v1/projects/{project}/ledger")).json()["size"] == 2


async def test_payload_too_large_413(world: World) -> None:
    project = await world.project()
    big_memo = contribution(memo="备" * 30_000)  # > 64 KiB as UTF-8
    assert len(json.dumps(big_memo, ensure_ascii=False).encode()) > 64 * 1024
    for url, token in ((entries_url(project), world.treasurer), ("/api/v1/communities", world.admin)):
        response = await world.api.post(url, big_memo, token=token, key=new_key())
        assert_problem(response, 413, "payload_too_large")
    # A batch may be up to 8 MiB: 1.3 MiB of valid entries is recorded ...
    entries = [contribution(amount="1", memo="路" * 200, receipt_no=f"SJ-{i}") for i in range(2000)]
    body = json.dumps({"entries": entries}, ensure_ascii=False).encode()
    assert 1024 * 1024 < len(body) < 8 * 1024 * 1024
    response = await world.api.request(
        "POST", f"{entries_url(project)}/batch", content=body, token=world.treasurer, key=new_key()
    )
    assert response.status_code == 201, response.text[:300]
    assert response.json()["tree_size"] == 2000
    # ... and one beyond 8 MiB is not.
    huge = b'{"entries": [' + b",".join([json.dumps(contribution(memo="x" * 450)).encode()] * 20000) + b"]}"
    assert len(huge) > 8 * 1024 * 1024
    response = await world.api.request(
        "POST", f"{entries_url(project)}/batch", content=huge, token=world.treasurer, key=new_key()
    )
    assert_problem(response, 413, "payload_too_large")
    assert (await world.api.get(f"/api/v1/projects/{project}/ledger")).json()["size"] == 2000


async def test_payload_too_large_413_chunked_without_content_length(world: World, live_server: LiveServer) -> None:
    """Through a real server: a chunked body has no Content-Length, so the limit applies while reading."""
    project = await world.project()
    head = b'{"kind": "grant", "amount": "1", "occurred_on": "' + past().encode() + b'", "grantor": "'

    async def oversized() -> Any:
        yield head
        for _ in range(100):
            yield b"x" * 1024
        yield b'"}'

    async def small() -> Any:
        yield head
        yield "下陆区住建局".encode()
        yield b'"}'

    async with httpx.AsyncClient(base_url=live_server.base_url, timeout=30) as client:
        headers = {"Authorization": f"Bearer {world.treasurer}", "Content-Type": "application/json"}
        response = await client.post(
            entries_url(project), content=oversized(), headers={**headers, "Idempotency-Key": new_key()}
        )
        assert "content-length" not in response.request.headers
        assert response.request.headers["transfer-encoding"] == "chunked"
        assert_problem(response, 413, "payload_too_large")
        response = await client.post(
            entries_url(project), content=small(), headers={**headers, "Idempotency-Key": new_key()}
        )
        assert response.status_code == 201, response.text
        size = (await client.get(f"/api/v1/projects/{project}/ledger")).json()["size"]
    assert size == 1


async def test_validation_failed_422_field_level(world: World) -> None:
    project = await world.project()
    bad = contribution(amount="1.234", channel="paypal")
    bad["contributor"]["type"] = "alien"
    response = await world.api.post(entries_url(project), bad, token=world.treasurer, key=new_key())
    body = assert_problem(response, 422, "validation_failed")
    assert error_fields(body) == {"amount", "channel", "contributor.type"}
    assert all(e["message"] for e in body["errors"])
    response = await world.api.post(entries_url(project), {"kind": "donation"}, token=world.treasurer, key=new_key())
    assert assert_problem(response, 422, "validation_failed")["errors"]
    response = await world.api.post(entries_url(project), [contribution()], token=world.treasurer, key=new_key())
    assert_problem(response, 422, "validation_failed")
    # In a batch, fields are named by position: entries[41].amount.
    entries = [contribution(amount="10") for _ in range(50)]
    entries[41]["amount"] = "-10"
    response = await world.api.post(
        f"{entries_url(project)}/batch", {"entries": entries}, token=world.treasurer, key=new_key()
    )
    assert error_fields(assert_problem(response, 422, "validation_failed")) == {"entries[41].amount"}
    # ... also when the ledger, not the schema, refuses the entry (unknown category).
    entries = [contribution(amount="10") for _ in range(50)]
    entries[41] = expenditure(amount="1", category="fireworks")
    response = await world.api.post(
        f"{entries_url(project)}/batch", {"entries": entries}, token=world.treasurer, key=new_key()
    )
    assert error_fields(assert_problem(response, 422, "validation_failed")) == {"entries[41].category"}
    # A NUL character in a string is bad input, not a server error.
    response = await world.api.post(
        entries_url(project), grant(grantor="区\x00住建局"), token=world.treasurer, key=new_key()
    )
    assert error_fields(assert_problem(response, 422, "validation_failed")) == {"grantor"}
    # So are the other control characters a spreadsheet cell cannot hold (tab and newline are fine).
    response = await world.api.post(
        entries_url(project), grant(memo="第一\x1b批"), token=world.treasurer, key=new_key()
    )
    assert error_fields(assert_problem(response, 422, "validation_failed")) == {"memo"}
    # Query parameters too.
    for params in (
        {"limit": "0"},
        {"limit": "abc"},
        {"after_seq": "-1"},
        {"kind": "donation"},
        {"after_seq": str(2**64)},
    ):
        assert_problem(await world.api.get(entries_url(project), params=params), 422, "validation_failed")
    assert_problem(await world.api.get(f"{entries_url(project)}/{2**64}"), 404, "not_found")  # a seq that cannot exist
    assert (await world.api.get(f"/api/v1/projects/{project}/ledger")).json()["size"] == 0


async def test_rate_limited_429_on_public_writes(database: Any, world: World, tmp_path: Any) -> None:
    """Objections are the one public write (disclosures); the limiter runs before the handler,
    so the disclosure need not exist."""
    from litestar.testing import AsyncTestClient

    app = create_app(app_settings(database, tmp_path, public_write_rate_per_minute=2))
    async with AsyncTestClient(app) as client:
        api = Api(client)
        url = "/api/v1/disclosures/999999999/objections"
        statuses = [(await api.post(url, {"message": "账目有误", "contact": "3栋"})).status_code for _ in range(2)]
        assert 429 not in statuses
        limited = await api.post(url, {"message": "账目有误", "contact": "3栋"})
        assert_problem(limited, 429, "rate_limited")
        # Writes by treasurers are not limited.
        project = await world.project()
        for _ in range(4):
            response = await api.post(entries_url(project), grant(amount="1"), token=world.treasurer, key=new_key())
            assert response.status_code == 201


# -- precedence ----------------------------------------------------------------------------------


async def test_error_precedence_examples_of_api_md(world: World) -> None:
    api, t = world.api, world.treasurer
    waived = await world.project()
    # Malformed body with no token: 400, not 401.
    assert_problem(
        await api.request("POST", entries_url(waived), content=b"{", key=new_key()), 400, "malformed_request"
    )
    # Missing key with no token: 400.
    assert_problem(await api.post(entries_url(waived), grant()), 400, "idempotency_key_missing")
    # No token on a missing project: 401, not 404.
    assert_problem(await api.post(entries_url("no-such-project"), grant(), key=new_key()), 401, "unauthorized")
    # Treasurer of another community on a valid body: 403; with an invalid body: still 403.
    other = world.tokens["treasurer_other"]
    assert_problem(await api.post(entries_url(waived), grant(), token=other, key=new_key()), 403, "forbidden")
    assert_problem(await api.post(entries_url(waived), grant(amount=5), token=other, key=new_key()), 403, "forbidden")
    # Invalid body on a missing project: 404 before 422.
    assert_problem(
        await api.post(entries_url("no-such-project"), grant(amount=5), token=t, key=new_key()), 404, "not_found"
    )
    # Unknown category on a waived project with no money: 422, not 409.
    response = await api.post(entries_url(waived), expenditure(category="fireworks"), token=t, key=new_key())
    assert error_fields(assert_problem(response, 422, "validation_failed")) == {"category"}
    # Expenditure on a gated project with no money: the gate (409 stage_forbids_entry), not insufficient funds.
    gated = await world.project(gate="resolution")
    assert_problem(
        await api.post(entries_url(gated), expenditure(), token=t, key=new_key()), 409, "stage_forbids_entry"
    )
    # ... and an unknown category there is still 422 first.
    response = await api.post(entries_url(gated), expenditure(category="fireworks"), token=t, key=new_key())
    assert_problem(response, 422, "validation_failed")
    for project in (waived, gated):
        assert (await api.get(f"/api/v1/projects/{project}/ledger")).json()["size"] == 0


# -- nothing internal leaks ----------------------------------------------------------------------


async def test_no_internal_details_in_any_error(world: World) -> None:
    """Api.request checks every response of the suite; here, inputs chosen to reach deep paths."""
    project = await world.project()
    nasty = ["'; DROP TABLE entries; --", "\\", "%", "\u202e", "😀" * 50, "a" * 5000]
    responses = []
    for value in nasty:
        responses.append(await world.api.get(f"/api/v1/projects/{value}"))
        responses.append(await world.api.get("/api/v1/projects", params={"community": value, "cursor": value}))
        responses.append(await world.api.get(entries_url(project), params={"kind": value}))
        responses.append(
            await world.api.post(entries_url(project), grant(grantor=value), token=world.treasurer, key=new_key())
        )
    responses.append(await world.api.get(f"/api/v1/projects/{project}/ledger/inclusion", params={"seq": 2**70}))
    responses.append(
        await world.api.get(f"/api/v1/projects/{project}/ledger/consistency", params={"from": -1, "to": 2**70})
    )
    for response in responses:
        assert response.status_code < 500, response.text
        for marker in LEAK_MARKERS:
            assert marker not in response.text
