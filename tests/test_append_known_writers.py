"""The single append authenticates from what a worker remembers (api/auth.py KnownWriters): its
token's immutable facts and the project's community, read once. Revocation is still honoured:
checked inside the transaction that writes, and re-read before any other error, so a revoked
token writes nothing and is told 401 first. Not timed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from litestar.testing import AsyncTestClient
from sqlalchemy.ext.asyncio import AsyncEngine

import api.auth
from api.app import create_app
from ledger import tokens
from ledger.tokens import create_token, revoke_token
from tests.api_support import Api, World, app_settings, contribution, new_key
from tests.conftest import Database


async def _size(api_: Api, project: str) -> int:
    response = await api_.get(f"/api/v1/projects/{project}")
    return int(response.json()["summary"]["ledger"]["size"])


def _count_token_reads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls = [0]
    read = tokens.authenticate_for_project

    async def counting(*args: Any) -> Any:
        calls[0] += 1
        return await read(*args)

    monkeypatch.setattr(api.auth, "authenticate_for_project", counting)
    return calls


async def _revoked_treasurer_is_refused(api_: Api, engine: AsyncEngine, world: World, project: str) -> None:
    """For each way a revoked token may come back while still remembered — a new append, the
    replay of an acknowledged one, an invalid body (401 comes before 422) — a fresh token is
    remembered (two appends), revoked, and then refused with 401, and nothing is written."""
    for case in ("new", "replay", "invalid"):
        issued = await create_token(engine, name=f"会计（{case}）", role="treasurer", community_code=world.community)
        secret = issued.secret
        first_key = new_key()
        first = await api_.post(f"/api/v1/projects/{project}/entries", contribution("100"), token=secret, key=first_key)
        assert first.status_code == 201, first.text
        second = await api_.post(
            f"/api/v1/projects/{project}/entries", contribution("200"), token=secret, key=new_key()
        )
        assert second.status_code == 201, second.text
        size = await _size(api_, project)
        await revoke_token(engine, issued.token.id)
        body, key = {
            "new": (contribution("300"), new_key()),
            "replay": (contribution("100"), first_key),
            "invalid": ({"kind": "contribution", "amount": "-5"}, new_key()),
        }[case]
        refused = await api_.post(f"/api/v1/projects/{project}/entries", body, token=secret, key=key)
        assert refused.status_code == 401, (case, refused.text)
        assert refused.json()["code"] == "unauthorized"
        assert refused.headers["www-authenticate"] == "Bearer"
        assert await _size(api_, project) == size, f"a revoked token wrote nothing ({case})"


async def test_a_remembered_token_reads_nothing_and_a_revoked_one_writes_nothing(
    api: Api, engine: AsyncEngine, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = await world.project()
    calls = _count_token_reads(monkeypatch)
    for amount in ("10", "20", "30"):
        response = await api.post(
            f"/api/v1/projects/{project}/entries", contribution(amount), token=world.treasurer, key=new_key()
        )
        assert response.status_code == 201, response.text
    assert calls[0] <= 1, "the token and project were read once, then remembered"
    await _revoked_treasurer_is_refused(api, engine, world, project)


async def test_a_revoked_token_writes_nothing_without_group_commit(
    database: Database, engine: AsyncEngine, world: World, tmp_path: Path
) -> None:
    """LEDGER_APPEND_GROUP_MAX=1: the append runs alone (ledger.entries._append), which checks
    the remembered token in its own transaction."""
    project = await world.project()
    async with AsyncTestClient(create_app(app_settings(database, tmp_path, append_group_max=1))) as client:
        await _revoked_treasurer_is_refused(Api(client), engine, world, project)


async def test_remembering_never_widens_what_a_token_may_do(api: Api, world: World) -> None:
    """A remembered token is still refused another community's project (403), an auditor's is
    still refused (403), and an unknown project is still 404."""
    mine = await world.project()
    theirs = await world.project(community=world.other_community)
    ok = await api.post(f"/api/v1/projects/{mine}/entries", contribution(), token=world.treasurer, key=new_key())
    assert ok.status_code == 201, ok.text
    other = await api.post(f"/api/v1/projects/{theirs}/entries", contribution(), token=world.treasurer, key=new_key())
    assert other.status_code == 403, other.text
    auditor = await api.post(f"/api/v1/projects/{mine}/entries", contribution(), token=world.auditor, key=new_key())
    assert auditor.status_code == 403, auditor.text
    missing = await api.post(
        "/api/v1/projects/no-such-project/entries", contribution(), token=world.treasurer, key=new_key()
    )
    assert missing.status_code == 404, missing.text


def test_known_writers_are_bounded() -> None:
    known = api.auth.KnownWriters()
    token = tokens.Token(None, "t", "treasurer", "c", 1, None, None)  # type: ignore[arg-type]
    for i in range(known.TOKENS_MAX + 10):
        known.remember(i.to_bytes(8, "big"), token, f"p{i}", 1)
    assert len(known.tokens) == known.TOKENS_MAX
    assert (0).to_bytes(8, "big") not in known.tokens, "the least recently used goes first"
