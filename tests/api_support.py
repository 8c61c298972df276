"""Shared fixtures and helpers for the HTTP API tests (tests/test_api_*.py).

Every API test drives the real app (``create_app``) against the session's embedded PostgreSQL.
The fixtures ``api`` (one app and client for the session) and ``world`` (two communities and a
token per role) are imported by tests/conftest.py so that every test module shares one instance.

Every response to an anonymous request made through :class:`Api` is recorded in
``PUBLIC_RESPONSES``; tests/test_api_public_scan.py scans them (and a crawl of its own) for full
names and phone numbers.
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from litestar.testing import AsyncTestClient
from sqlalchemy.ext.asyncio import AsyncEngine

from api.app import create_app
from api.settings import Settings
from ledger.canonical import SHANGHAI
from ledger.communities import NewCommunity, create_community
from ledger.tokens import create_token, revoke_token

PROBLEM_KEYS = {"type", "title", "status", "detail", "code", "errors"}
MONEY_OUT = re.compile(r"^-?[0-9]+\.[0-9]{2}$")
PHONE = re.compile(r"1[3-9]\d{9}")
# What no response body may contain: tracebacks, SQL, driver names, file paths.
LEAK_MARKERS = ("Traceback", "SELECT ", "INSERT ", "sqlalchemy", "asyncpg", "psycopg", "/work/", 'File "', '.py"')

# Names the fixtures give to people: none of them may appear in full in any public output.
PERSON_NAMES = ("张三", "张小三", "欧阳小明", "李四", "王五", "赵六", "Alice", "钱七")
PHONE_NUMBERS = ("13812345678", "15900001111")


def today() -> date:
    """Today on the server's calendar (Asia/Shanghai)."""
    return datetime.now(SHANGHAI).date()


def past(days: int = 10) -> str:
    return (today() - timedelta(days=days)).isoformat()


def future(days: int = 2) -> str:
    return (today() + timedelta(days=days)).isoformat()


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def new_key() -> str:
    return uuid.uuid4().hex


# -- recording anonymous responses -------------------------------------------------------------


@dataclass
class Recorded:
    method: str
    url: str
    status: int
    content_type: str
    body: bytes

    def text(self) -> str:
        """The body as text; an XLSX is unzipped into its shared strings and sheets, a PDF is
        read back by poppler's pdftotext (what a resident's viewer would show)."""
        if self.body[:2] == b"PK":
            return xlsx_text(self.body)
        if self.body[:5] == b"%PDF-":
            return pdf_text(self.body)
        return self.body.decode("utf-8", errors="replace")


PUBLIC_RESPONSES: list[Recorded] = []


def pdf_text(data: bytes) -> str:
    import subprocess

    return subprocess.run(["pdftotext", "-", "-"], input=data, capture_output=True, check=True).stdout.decode("utf-8")


def xlsx_text(data: bytes) -> str:
    import io
    import zipfile

    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return "\n".join(
            archive.read(name).decode("utf-8", errors="replace") for name in archive.namelist() if name.endswith(".xml")
        )


# -- the client --------------------------------------------------------------------------------


class Api:
    """Thin wrapper over the test client: bearer tokens, idempotency keys, recording."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    async def request(
        self,
        method: str,
        url: str,
        *,
        token: str | None = None,
        json_body: Any = None,
        content: bytes | None = None,
        key: str | None = None,
        headers: dict[str, str] | None = None,
        params: dict[str, Any] | None = None,
    ) -> httpx.Response:
        sent: dict[str, str] = dict(headers or {})
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"
        if key is not None:
            sent["Idempotency-Key"] = key
        if json_body is not None:
            content = json.dumps(json_body, ensure_ascii=False).encode()
        if content is not None:
            sent.setdefault("Content-Type", "application/json")
        response = await self.client.request(method, url, content=content, headers=sent, params=params)
        if "Authorization" not in sent and "authorization" not in {k.lower() for k in sent}:
            PUBLIC_RESPONSES.append(
                Recorded(
                    method,
                    str(response.url),
                    response.status_code,
                    response.headers.get("content-type", ""),
                    response.content,
                )
            )
        assert_no_leak(response)
        return response

    async def get(self, url: str, **kw: Any) -> httpx.Response:
        return await self.request("GET", url, **kw)

    async def post(self, url: str, body: Any = None, **kw: Any) -> httpx.Response:
        return await self.request("POST", url, json_body=body, **kw)

    async def delete(self, url: str, **kw: Any) -> httpx.Response:
        return await self.request("DELETE", url, **kw)


def assert_no_leak(response: httpx.Response) -> None:
    if response.content[:2] == b"PK":
        return
    text = response.content.decode("utf-8", errors="replace")
    for marker in LEAK_MARKERS:
        assert marker not in text, f"{response.request.method} {response.request.url} leaks {marker!r}: {text[:300]}"


def assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """An RFC 9457 problem+json with the given status and stable code; returns the body."""
    assert response.status_code == status, f"expected {status} {code}, got {response.status_code}: {response.text}"
    assert response.headers["content-type"].startswith("application/problem+json"), response.headers
    body = response.json()
    assert set(body) >= PROBLEM_KEYS, body  # RFC 9457 allows extension members
    assert body["status"] == status and body["code"] == code, body
    assert isinstance(body["type"], str) and body["type"]
    assert isinstance(body["title"], str) and body["title"]
    assert isinstance(body["detail"], str) and body["detail"]
    assert isinstance(body["errors"], list)
    for err in body["errors"]:
        assert {"field", "message"} <= set(err), err
        assert isinstance(err["field"], str) and isinstance(err["message"], str)
    return body  # type: ignore[no-any-return]


def error_fields(body: dict[str, Any]) -> set[str]:
    return {e["field"] for e in body["errors"]}


def money_values(node: Any) -> Iterable[str]:
    """Every value under a money key, anywhere in a response body."""
    money_keys = {
        "amount",
        "budget",
        "contributed",
        "granted",
        "spent",
        "refunded",
        "balance",
        "in_kind_value",
        "pledged",
        "pledge_paid",
        "pledge_outstanding",
        "paid",
        "outstanding",
        "excess",
    }
    if isinstance(node, dict):
        for k, v in node.items():
            if k in money_keys and v is not None:
                yield v
            else:
                yield from money_values(v)
    elif isinstance(node, list):
        for item in node:
            yield from money_values(item)


def assert_money_two_decimals(body: Any) -> None:
    found = list(money_values(body))
    for value in found:
        assert isinstance(value, str) and MONEY_OUT.fullmatch(value), f"money not two decimals: {value!r}"


async def all_entries(client: httpx.AsyncClient, project: str, **headers: str) -> list[dict[str, Any]]:
    """Every entry of a project, read page by page through the public list."""
    items: list[dict[str, Any]] = []
    after = 0
    while True:
        page = (
            await client.get(
                f"/api/v1/projects/{project}/entries", params={"after_seq": after, "limit": 500}, headers=headers
            )
        ).json()
        items += page["items"]
        if page["next"] is None:
            return items
        after = page["next"]


# -- the world: communities, tokens per role ----------------------------------------------------


@dataclass
class World:
    engine: AsyncEngine
    api: Api
    community: str  # "own" community
    other_community: str
    tokens: dict[str, str | None] = field(default_factory=dict)
    token_ids: dict[str, uuid.UUID] = field(default_factory=dict)

    @property
    def admin(self) -> str:
        return self.tokens["admin"]  # type: ignore[return-value]

    @property
    def treasurer(self) -> str:
        return self.tokens["treasurer"]  # type: ignore[return-value]

    @property
    def auditor(self) -> str:
        return self.tokens["auditor"]  # type: ignore[return-value]

    async def project(self, *, gate: str = "waived", community: str | None = None, **extra: Any) -> str:
        """A new project in the own community, created through the API by the admin."""
        code = unique("p")
        body = {
            "code": code,
            "community": community or self.community,
            "title": "小区路面刷黑",
            "description": "路面刷黑改造",
            "households_in_scope": 400,
            "budget_lines": [
                {"category": "materials", "label": "沥青材料", "source": "crowdfunding", "amount": "60000"},
                {"category": "labour", "label": "人工费", "source": "grant", "amount": "20000.5"},
            ],
            "spending_gate": gate,
            **extra,
        }
        response = await self.api.post("/api/v1/projects", body, token=self.admin)
        assert response.status_code == 201, response.text
        return code

    async def entry(self, project: str, body: dict[str, Any], *, token: str | None = None) -> dict[str, Any]:
        response = await self.api.post(
            f"/api/v1/projects/{project}/entries", body, token=token or self.treasurer, key=new_key()
        )
        assert response.status_code == 201, response.text
        return response.json()  # type: ignore[no-any-return]


ROLES = ("admin", "treasurer", "treasurer_other", "auditor", "auditor_other", "revoked", "garbage", "anonymous")


async def make_world(engine: AsyncEngine, api: Api) -> World:
    own = await create_community(engine, NewCommunity(code=unique("own"), name="锦绣花园小区", households=1200))
    other = await create_community(engine, NewCommunity(code=unique("oth"), name="团城山小区", households=800))
    world = World(engine=engine, api=api, community=own.code, other_community=other.code)
    specs = {
        "admin": ("admin", None),
        "treasurer": ("treasurer", own.code),
        "treasurer_other": ("treasurer", other.code),
        "auditor": ("auditor", own.code),
        "auditor_other": ("auditor", other.code),
    }
    for role_name, (role, community) in specs.items():
        issued = await create_token(engine, name=f"test {role_name}", role=role, community_code=community)
        world.tokens[role_name] = issued.secret
        world.token_ids[role_name] = issued.token.id
    revoked = await create_token(engine, name="test revoked", role="treasurer", community_code=own.code)
    await revoke_token(engine, revoked.token.id)
    world.tokens["revoked"] = revoked.secret
    world.tokens["garbage"] = "gtl_" + "x" * 43
    world.tokens["anonymous"] = None
    return world


def app_settings(database: Any, data_dir: Path, **overrides: Any) -> Settings:
    # The rate limit is held in the (shared) test database: each app of a test has its own budget.
    overrides.setdefault("rate_limit_namespace", uuid.uuid4().hex)
    return Settings(
        database_url=database.urls.app,
        owner_database_url=database.urls.owner,
        data_dir=data_dir,
        db_pool_size=20,
        db_pool_overflow=20,
        **overrides,
    )


@pytest.fixture(scope="session")
async def api_app(database: Any, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Any]:
    """The real application, started once for all API tests. Every request of the in-process client
    comes from one address, so the suite's objections and scores would share one per-address
    budget: the rate limit has tests of its own, each with its own app."""
    app = create_app(app_settings(database, tmp_path_factory.mktemp("api-data"), public_write_rate_per_minute=10_000))
    yield app


@pytest.fixture(scope="session")
async def api(api_app: Any) -> AsyncIterator[Api]:
    async with AsyncTestClient(api_app, timeout=60) as client:
        yield Api(client)


@pytest.fixture(scope="session")
async def world(engine: AsyncEngine, api: Api) -> World:
    return await make_world(engine, api)


@dataclass
class LiveServer:
    base_url: str
    server: uvicorn.Server
    thread: threading.Thread


@pytest.fixture(scope="session")
def live_server(database: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """The real app behind uvicorn on 127.0.0.1 (a free port), for what the in-process test client
    cannot do: truly concurrent requests, chunked request bodies, schemathesis over the network."""
    # Schemathesis files objections far faster than residents: the rate limit has tests of its own.
    app = create_app(
        app_settings(
            database, tmp_path_factory.mktemp("live-data"), log_level="WARNING", public_write_rate_per_minute=10_000
        )
    )
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    # A long keep-alive: with uvicorn's 5 s default, a client that reuses a pooled connection just as
    # the server closes it gets a ReadError — seen on a loaded box, a race in the test, not the app.
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", lifespan="on", backlog=512, timeout_keep_alive=300
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="live-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "live server did not start"
        time.sleep(0.05)
    try:
        yield LiveServer(f"http://127.0.0.1:{port}", server, thread)
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


# -- scanning public outputs -------------------------------------------------------------------

# Hashes, commitments and UUIDs are long runs of hex digits that may contain 11 decimal digits by
# chance: they are removed before looking for phone numbers.
_HEX_RUNS = re.compile(r"[0-9a-fA-F]{32,}|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_PHONE_TOKEN = re.compile(r"(?<!\d)1[3-9]\d{9}(?!\d)")


def phone_numbers_in(text: str) -> list[str]:
    return _PHONE_TOKEN.findall(_HEX_RUNS.sub(" ", text))


def full_names_in(text: str) -> list[str]:
    return [name for name in PERSON_NAMES if name in text]


# -- request bodies ----------------------------------------------------------------------------


def contribution(
    amount: str = "200",
    name: str = "张三",
    household: str | None = "3栋2单元501",
    *,
    type_: str = "resident",
    anonymous: bool = False,
    **extra: Any,
) -> dict[str, Any]:
    contributor: dict[str, Any] = {"name": name, "type": type_, "anonymous": anonymous}
    if household is not None:
        contributor["household"] = household
    return {
        "kind": "contribution",
        "amount": amount,
        "occurred_on": past(),
        "contributor": contributor,
        "channel": "wechat",
        "receipt_no": "SJ-0001",
        "memo": "路面刷黑众筹",
        **extra,
    }


def grant(amount: str = "50000", **extra: Any) -> dict[str, Any]:
    return {
        "kind": "grant",
        "amount": amount,
        "occurred_on": past(),
        "grantor": "下陆区住房和城乡建设局",
        "document_no": "下住建〔2026〕12号",
        "memo": "以奖代补第一批",
        **extra,
    }


def expenditure(amount: str = "1200", category: str = "materials", **extra: Any) -> dict[str, Any]:
    return {
        "kind": "expenditure",
        "amount": amount,
        "occurred_on": past(),
        "payee": "某沥青工程有限公司",
        "category": category,
        "invoice_no": "04417305",
        "memo": "沥青",
        **extra,
    }


def refund(amount: str, contributor: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "kind": "refund",
        "amount": amount,
        "occurred_on": past(),
        "contributor": contributor,
        "memo": "退款",
        **extra,
    }


def in_kind(amount: str = "300", name: str = "李四", **extra: Any) -> dict[str, Any]:
    return {
        "kind": "in_kind",
        "amount": amount,
        "occurred_on": past(),
        "contributor": {"name": name, "household": "5栋1单元302"},
        "description": "义务劳动 6 小时",
        **extra,
    }


def pledge(amount: str = "500", name: str = "王五", **extra: Any) -> dict[str, Any]:
    return {"kind": "pledge", "amount": amount, "occurred_on": past(), "contributor": {"name": name}, **extra}


def reversal(seq: int, **extra: Any) -> dict[str, Any]:
    return {"kind": "reversal", "reverses": seq, "occurred_on": past(), "reason": "金额录入错误", **extra}
