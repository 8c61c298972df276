"""The authorization matrix: every role against every write and every read that can unmask names.

Roles: anonymous, admin, treasurer and auditor of the project's community, treasurer and auditor
of another community, a revoked token and a garbage token. An "unexpected allow" is a 2xx where
the matrix says the call must be refused; there must be none (and no other surprise either).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import openpyxl

from ledger.tokens import create_token
from tests.api_support import ROLES, World, contribution, grant, new_key, past, unique

STAFF = {"admin", "treasurer", "auditor"}  # may read this community's names unmasked
BAD_TOKENS = {"revoked", "garbage"}


@dataclass
class Endpoint:
    name: str
    call: Callable[[World, str, str | None], Awaitable[httpx.Response]]
    allowed: frozenset[str]  # roles that succeed; the others get 401 (no/bad token) or 403
    success: int


async def _post_community(w: World, project: str, token: str | None) -> httpx.Response:
    return await w.api.post("/api/v1/communities", {"code": unique("m"), "name": "矩阵小区"}, token=token)


async def _post_project(w: World, project: str, token: str | None) -> httpx.Response:
    body = {"code": unique("m"), "community": w.community, "title": "矩阵项目"}
    return await w.api.post("/api/v1/projects", body, token=token)


async def _post_waived_project(w: World, project: str, token: str | None) -> httpx.Response:
    body = {"code": unique("m"), "community": w.community, "title": "矩阵项目", "spending_gate": "waived"}
    return await w.api.post("/api/v1/projects", body, token=token)


async def _post_entry(w: World, project: str, token: str | None) -> httpx.Response:
    return await w.api.post(f"/api/v1/projects/{project}/entries", grant(amount="1"), token=token, key=new_key())


async def _post_batch(w: World, project: str, token: str | None) -> httpx.Response:
    body = {"entries": [grant(amount="1"), grant(amount="2")]}
    return await w.api.post(f"/api/v1/projects/{project}/entries/batch", body, token=token, key=new_key())


async def _post_decision(w: World, project: str, token: str | None) -> httpx.Response:
    fresh = await w.project()
    body = {"stage": "proposal", "held_on": past(), "body": "居委会"}
    return await w.api.post(f"/api/v1/projects/{fresh}/decisions", body, token=token, key=new_key())


async def _post_token(w: World, project: str, token: str | None) -> httpx.Response:
    body = {"name": "矩阵令牌", "role": "auditor", "community": w.community}
    return await w.api.post("/api/v1/tokens", body, token=token)


async def _delete_token(w: World, project: str, token: str | None) -> httpx.Response:
    victim = await create_token(w.engine, name="待吊销", role="auditor", community_code=w.community)
    return await w.api.delete(f"/api/v1/tokens/{victim.token.id}", token=token)


def _get(path: str) -> Callable[[World, str, str | None], Awaitable[httpx.Response]]:
    async def call(w: World, project: str, token: str | None) -> httpx.Response:
        return await w.api.get(path.format(project=project, community=w.community), token=token)

    return call


EVERYONE = frozenset(ROLES) - BAD_TOKENS
COMMUNITY_WRITERS = frozenset({"admin", "treasurer"})
ADMIN = frozenset({"admin"})

ENDPOINTS = [
    Endpoint("POST /communities", _post_community, ADMIN, 201),
    Endpoint("POST /projects", _post_project, COMMUNITY_WRITERS, 201),
    Endpoint("POST /projects (waived gate)", _post_waived_project, ADMIN, 201),
    Endpoint("POST entries", _post_entry, COMMUNITY_WRITERS, 201),
    Endpoint("POST entries/batch", _post_batch, COMMUNITY_WRITERS, 201),
    Endpoint("POST decisions", _post_decision, COMMUNITY_WRITERS, 201),
    Endpoint("POST /tokens", _post_token, ADMIN, 201),
    Endpoint("DELETE /tokens/{id}", _delete_token, ADMIN, 204),
    Endpoint("GET entries", _get("/api/v1/projects/{project}/entries"), EVERYONE, 200),
    Endpoint("GET entries/1", _get("/api/v1/projects/{project}/entries/1"), EVERYONE, 200),
    Endpoint("GET entries.csv", _get("/api/v1/projects/{project}/entries.csv"), EVERYONE, 200),
    Endpoint("GET entries.xlsx", _get("/api/v1/projects/{project}/entries.xlsx"), EVERYONE, 200),
    Endpoint("GET project", _get("/api/v1/projects/{project}"), EVERYONE, 200),
    Endpoint("GET ledger/verify", _get("/api/v1/projects/{project}/ledger/verify"), EVERYONE, 200),
    Endpoint("GET decisions", _get("/api/v1/projects/{project}/decisions"), EVERYONE, 200),
    Endpoint("GET community", _get("/api/v1/communities/{community}"), EVERYONE, 200),
]


def expected_status(endpoint: Endpoint, role: str) -> int:
    if role in endpoint.allowed:
        return endpoint.success
    if role in BAD_TOKENS or role == "anonymous":
        return 401
    return 403


async def test_authorization_matrix(world: World) -> None:
    project = await world.project()
    await world.entry(project, contribution(amount="200"))
    unexpected_allows: list[str] = []
    mismatches: list[str] = []
    for endpoint in ENDPOINTS:
        for role in ROLES:
            response = await endpoint.call(world, project, world.tokens[role])
            expected = expected_status(endpoint, role)
            if response.status_code != expected:
                mismatches.append(f"{endpoint.name} as {role}: {response.status_code}, expected {expected}")
            if response.status_code < 300 and expected >= 400:
                unexpected_allows.append(f"{endpoint.name} as {role}")
            if expected >= 400:
                assert response.headers["content-type"].startswith("application/problem+json")
    assert unexpected_allows == [], unexpected_allows
    assert mismatches == [], mismatches
    # The refused writes left no trace: 1 contribution, plus one entry and a batch of two for each
    # of the admin and the treasurer.
    assert (await world.api.get(f"/api/v1/projects/{project}/ledger")).json()["size"] == 1 + 2 * 3


def _names_json(response: httpx.Response) -> tuple[str, str | None]:
    body = response.json()
    entry = body["items"][0] if "items" in body else body
    return entry["contributor"]["name"], entry["contributor"]["household"]


def _names_csv(response: httpx.Response) -> tuple[str, str | None]:
    row = list(csv.reader(io.StringIO(response.content.decode("utf-8-sig"))))[1]
    return row[4], row[5]


def _names_xlsx(response: httpx.Response) -> tuple[str, str | None]:
    row = list(openpyxl.load_workbook(io.BytesIO(response.content)).active.iter_rows(values_only=True))[1]
    return str(row[4]), str(row[5])


async def test_masked_unless_staff_of_the_community(world: World) -> None:
    project = await world.project()
    await world.entry(project, contribution(amount="200", name="张三", household="3栋2单元501"))
    readers: list[tuple[str, Callable[[httpx.Response], tuple[str, str | None]]]] = [
        (f"/api/v1/projects/{project}/entries", _names_json),
        (f"/api/v1/projects/{project}/entries/1", _names_json),
        (f"/api/v1/projects/{project}/entries.csv", _names_csv),
        (f"/api/v1/projects/{project}/entries.xlsx", _names_xlsx),
    ]
    seen: dict[tuple[str, str], Any] = {}
    for path, names in readers:
        for role in ROLES:
            if role in BAD_TOKENS:
                continue
            response = await world.api.get(path, token=world.tokens[role])
            assert response.status_code == 200
            seen[(path, role)] = names(response)
            expected = ("张三", "3栋2单元501") if role in STAFF else ("张*", "3栋")
            assert seen[(path, role)] == expected, (path, role, seen[(path, role)])
