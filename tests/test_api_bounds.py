"""Integers in paths and queries are bounded (no number reaches PostgreSQL as a BIGINT overflow),
the bounds are in the OpenAPI document, and OPTIONS / 405 name every method a path serves."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.api_support import World, assert_problem, contribution, new_key, today

HUGE = "160041197184078348288"  # > 2^63-1
INT64_MAX = 2**63 - 1


@pytest.mark.parametrize(
    "path",
    [
        f"/api/v1/disclosures/{HUGE}",
        f"/api/v1/disclosures/{HUGE}/pdf",
        f"/api/v1/disclosures/{HUGE}/objections",
        f"/api/v1/disclosures/{2**63}",
        "/api/v1/disclosures/0",
        "/api/v1/disclosures/-5",
    ],
)
async def test_a_path_id_that_cannot_exist_is_404(world: World, path: str) -> None:
    assert_problem(await world.api.get(path), 404, "not_found")


async def test_huge_ids_in_write_paths_are_404_after_body_and_token(world: World) -> None:
    api = world.api
    url = f"/api/v1/objections/{HUGE}/responses"
    assert_problem(await api.post(url, {"message": "已核实"}, token=world.treasurer), 404, "not_found")
    # API.md's precedence still holds: a malformed body is 400 and a missing token 401 first.
    assert_problem(await api.request("POST", url, content=b"{", token=world.treasurer), 400, "malformed_request")
    assert_problem(await api.post(url, {"message": "已核实"}), 401, "unauthorized")
    objection = f"/api/v1/disclosures/{HUGE}/objections"
    assert_problem(await api.post(objection, {"message": "请公开发票"}), 404, "not_found")
    assert_problem(await api.request("POST", objection, content=b"{"), 400, "malformed_request")


async def test_entry_seq_and_ledger_sizes_are_bounded(world: World) -> None:
    project = await world.project()
    await world.entry(project, contribution(amount="10"))
    api = world.api
    assert_problem(await api.get(f"/api/v1/projects/{project}/entries/{HUGE}"), 404, "not_found")
    assert_problem(await api.get(f"/api/v1/projects/{project}/entries/{INT64_MAX}"), 404, "not_found")
    for url, params in [
        (f"/api/v1/projects/{project}/entries", {"after_seq": HUGE}),
        (f"/api/v1/projects/{project}/entries", {"after_seq": "-1"}),
        (f"/api/v1/projects/{project}/entries", {"limit": "0"}),
        (f"/api/v1/projects/{project}/entries", {"limit": HUGE}),
        (f"/api/v1/projects/{project}/ledger", {"size": HUGE}),
        (f"/api/v1/projects/{project}/ledger/inclusion", {"seq": HUGE}),
        (f"/api/v1/projects/{project}/ledger/consistency", {"from": "1", "to": HUGE}),
        ("/api/v1/projects", {"limit": "0"}),
        ("/api/v1/communities", {"cursor": "x1"}),
    ]:
        body = assert_problem(await api.get(url, params=params), 422, "validation_failed")
        assert body["errors"] and all(not e["message"].startswith("Expected") for e in body["errors"]), body
    # What the document states is accepted: an empty cursor is the first page, a large limit is clamped.
    assert (await api.get("/api/v1/communities", params={"cursor": ""})).status_code == 200
    listed = await api.get(f"/api/v1/projects/{project}/entries", params={"limit": str(INT64_MAX), "after_seq": "0"})
    assert listed.status_code == 200 and len(listed.json()["items"]) == 1


async def test_the_document_states_the_integer_bounds(world: World) -> None:
    document = (await world.api.get("/schema/openapi.json")).json()

    def parameter(path: str, method: str, name: str) -> dict:
        operation = document["paths"][path][method]
        return next(p for p in operation["parameters"] if p["name"] == name)["schema"]

    for path, method, name, low in [
        ("/api/v1/disclosures/{disclosure_id}", "get", "disclosure_id", 1),
        ("/api/v1/objections/{objection_id}/responses", "post", "objection_id", 1),
        ("/api/v1/disclosures/{disclosure_id}/objections", "post", "disclosure_id", 1),
        ("/api/v1/projects/{project}/entries/{seq}", "get", "seq", 1),
        ("/api/v1/projects/{project}/entries", "get", "after_seq", 0),
        ("/api/v1/projects/{project}/entries", "get", "limit", 1),
        ("/api/v1/projects/{project}/ledger", "get", "size", 0),
        ("/api/v1/projects/{project}/ledger/inclusion", "get", "seq", 1),
        ("/api/v1/communities", "get", "limit", 1),
    ]:
        schema = parameter(path, method, name)
        # An optional parameter may be null (absent): its bounds sit on the integer branch.
        schema = next((v for v in schema.get("oneOf", []) if v.get("type") == "integer"), schema)
        assert schema["type"] == "integer", (path, name, schema)
        # Exact integers: 2^63-1 written as a float would be 2^63.
        assert schema["minimum"] == low and type(schema["minimum"]) is int, (path, name, schema)
        assert schema["maximum"] == INT64_MAX and type(schema["maximum"]) is int, (path, name, schema)
    assert parameter("/api/v1/communities", "get", "cursor")["pattern"] == "^[0-9]{0,18}$"


@pytest.mark.parametrize(
    ("path", "methods"),
    [
        ("/api/v1/communities", "GET, OPTIONS, POST"),
        ("/api/v1/projects", "GET, OPTIONS, POST"),
        ("/api/v1/projects/{project}/entries", "GET, OPTIONS, POST"),
        ("/api/v1/projects/{project}/decisions", "GET, OPTIONS, POST"),
        ("/api/v1/projects/{project}/disclosures", "GET, OPTIONS, POST"),
        ("/api/v1/disclosures/1/objections", "GET, OPTIONS, POST"),
        ("/api/v1/disclosures/1", "GET, OPTIONS"),
        ("/api/v1/tokens", "OPTIONS, POST"),
    ],
)
async def test_allow_lists_every_method_of_the_path(world: World, path: str, methods: str) -> None:
    url = path.replace("{project}", "some-project")
    options = await world.api.request("OPTIONS", url)
    assert options.status_code == 204
    assert options.headers["allow"] == methods
    refused = await world.api.request("PUT", url, json_body={})
    assert_problem(refused, 405, "method_not_allowed")
    assert sorted(refused.headers["allow"].split(", ")) == methods.split(", ")


async def test_an_objection_route_with_a_real_id_still_works(world: World) -> None:
    project = await world.project()
    await world.entry(project, contribution(amount="10"))
    start = (today() - timedelta(days=5)).isoformat()
    sheet = await world.api.post(
        f"/api/v1/projects/{project}/disclosures",
        {"period_start": start, "period_end": today().isoformat()},
        token=world.treasurer,
        key=new_key(),
    )
    assert sheet.status_code == 201, sheet.text
    filed = await world.api.post(f"/api/v1/disclosures/{sheet.json()['id']}/objections", {"message": "请公开发票"})
    assert filed.status_code == 201, filed.text
    answered = await world.api.post(
        f"/api/v1/objections/{filed.json()['id']}/responses", {"message": "已公开"}, token=world.treasurer
    )
    assert answered.status_code == 201, answered.text
