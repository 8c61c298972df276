"""The single append's fast path (api/fast_append.py) answers a known treasurer's append without
Litestar's request cycle — with the route's exact bytes and headers — and leaves everything else
to the route, whose answer is then exactly the one it gives when the fast path is not there.

"The route's answer" is taken from the same app with the worker's memory of writers emptied
(``KnownWriters``): then the fast path cannot know the caller and every request goes through
Litestar. Which path answered is recorded by wrapping ``api.fast_append._append``. Not timed."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest

import api.fast_append
import api.routes.entries
from api.auth import KnownWriters
from api.http import JSON_BODY_MAX
from tests.api_support import Api, World, contribution, expenditure, new_key, reversal


def _record_paths(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """True for each request the fast path answered, False for each it handed on."""
    answered: list[bool] = []
    fast = api.fast_append._append

    async def recording(*args: Any, **kwargs: Any) -> bool:
        result = await fast(*args, **kwargs)
        answered.append(result)
        return result

    monkeypatch.setattr(api.fast_append, "_append", recording)
    return answered


def _forget_writers(api_app: Any) -> None:
    api_app.state["known_writers"] = KnownWriters()


def _headers(response: httpx.Response) -> list[tuple[str, str]]:
    return list(response.headers.multi_items())


async def _size(api_: Api, project: str) -> int:
    response = await api_.get(f"/api/v1/projects/{project}")
    return int(response.json()["summary"]["ledger"]["size"])


async def test_a_known_treasurers_append_gets_the_routes_bytes_and_headers(
    api: Api, api_app: Any, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = await world.project()
    url = f"/api/v1/projects/{project}/entries"
    answered = _record_paths(monkeypatch)
    _forget_writers(api_app)

    by_route = await api.post(url, contribution("100"), token=world.treasurer, key=new_key())
    key = new_key()
    fast = await api.post(url, contribution("200", name="李四"), token=world.treasurer, key=key)
    fast_replay = await api.post(url, contribution("200", name="李四"), token=world.treasurer, key=key)
    _forget_writers(api_app)
    route_replay = await api.post(url, contribution("200", name="李四"), token=world.treasurer, key=key)

    assert answered == [False, True, True, False]
    assert [r.status_code for r in (by_route, fast, fast_replay, route_replay)] == [201, 201, 201, 201]
    # The same header names, values and order as the route's answer to a new append...
    assert [name for name, _ in _headers(fast)] == [name for name, _ in _headers(by_route)]
    assert fast.headers["content-type"] == by_route.headers["content-type"] == "application/json"
    assert int(fast.headers["content-length"]) == len(fast.content)
    # ...and, for a replay, exactly the route's replay of the same key: the stored bytes.
    assert _headers(fast_replay) == _headers(route_replay)
    assert fast_replay.headers["idempotent-replayed"] == "true"
    assert fast_replay.content == route_replay.content == fast.content
    entry = fast.json()
    assert entry["seq"] == by_route.json()["seq"] + 1 == 2
    assert entry["contributor"]["name"] == "李四" and entry["amount"] == "200.00"
    assert await _size(api, project) == 2


async def test_the_fast_path_keeps_the_ledger_and_its_receipts(
    api: Api, api_app: Any, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Appends answered by the fast path are the ledger's entries, gapless, each receipt the
    tree's root at its size."""
    project = await world.project()
    url = f"/api/v1/projects/{project}/entries"
    answered = _record_paths(monkeypatch)
    bodies = [
        (await api.post(url, contribution(str(100 + i), name=f"居民{i}"), token=world.treasurer, key=new_key())).json()
        for i in range(6)
    ]
    assert answered[1:] == [True] * 5
    assert [b["seq"] for b in bodies] == [1, 2, 3, 4, 5, 6]
    for body in bodies:
        proof = await api.get(
            f"/api/v1/projects/{project}/ledger/inclusion", params={"seq": body["seq"], "size": body["seq"]}
        )
        assert proof.status_code == 200, proof.text
        assert proof.json()["root_hash"] == body["receipt"]["root_hash"]
    verify = await api.get(f"/api/v1/projects/{project}/ledger/verify")
    assert verify.json()["ok"] is True, verify.text


Request = Callable[[str, str], Awaitable[httpx.Response]]


async def test_what_the_fast_path_does_not_answer_gets_the_routes_answer(
    api: Api, api_app: Any, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = await world.project()
    url = f"/api/v1/projects/{project}/entries"
    token = world.treasurer
    used_key = new_key()
    assert (await api.post(url, contribution("100"), token=token, key=used_key)).status_code == 201

    def raw(content: bytes, **headers: str) -> Request:
        async def send(_: str, key: str) -> httpx.Response:
            return await api.request("POST", url, token=token, key=key or None, content=content, headers=headers)

        return send

    def body(value: Any) -> Request:
        async def send(_: str, key: str) -> httpx.Response:
            return await api.post(url, value, token=token, key=key)

        return send

    cases: dict[str, tuple[Request, int, bool]] = {
        # name: (request, status, whether the append itself was tried — and failed — by the fast path)
        "invalid body": (body({"kind": "contribution", "amount": "-5"}), 422, False),
        "malformed JSON": (raw(b'{"kind": "contribution",'), 400, False),
        "not JSON": (raw(json.dumps(contribution()).encode(), **{"Content-Type": "text/plain"}), 400, False),
        "no Idempotency-Key": (raw(json.dumps(contribution()).encode()), 400, False),
        "too big": (raw(b'{"memo": "' + b"x" * JSON_BODY_MAX + b'"}'), 413, False),
        "nothing to reverse": (body(reversal(999)), 422, True),
        "spending more than the balance": (body(expenditure("99999")), 409, True),
        "key reused with another body": (body(contribution("555")), 422, True),
    }
    size = await _size(api, project)
    for name, (send, status, tried) in cases.items():
        key = "" if name == "no Idempotency-Key" else used_key if name == "key reused with another body" else new_key()
        # Remembered: the previous request of this token to this project was accepted.
        assert (await api.post(url, contribution("1"), token=token, key=new_key())).status_code == 201
        size += 1
        answered = _record_paths(monkeypatch)
        appends = _count_appends(monkeypatch)
        remembered = await send(name, key)
        assert answered == [False], name
        # An append the fast path tried and saw fail is not tried again by the route.
        assert appends == {"fast path": int(tried), "route": 0}, name
        _forget_writers(api_app)
        by_route = await send(name, key)
        assert answered == [False, False], name
        assert appends == {"fast path": int(tried), "route": int(tried)}, name
        assert remembered.status_code == by_route.status_code == status, (name, remembered.text, by_route.text)
        assert _headers(remembered) == _headers(by_route), name
        assert remembered.content == by_route.content, name
        assert remembered.headers["content-type"].startswith("application/problem+json"), name
        assert await _size(api, project) == size, f"{name}: something was written"
        monkeypatch.undo()


def _count_appends(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    calls = {"fast path": 0, "route": 0}
    for where, module in (("fast path", api.fast_append), ("route", api.routes.entries)):
        append = module.append_entries

        async def counting(*args: Any, _where: str = where, _append: Any = append, **kwargs: Any) -> Any:
            calls[_where] += 1
            return await _append(*args, **kwargs)

        monkeypatch.setattr(module, "append_entries", counting)
    return calls
