"""Shared fixtures: one embedded PostgreSQL for the whole session, migrated, with both roles.

Tests never clean up by deleting (the ledger is append-only, by design and by trigger): each test
makes its own community and project with unique codes.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from api.settings import Settings
from ledger.communities import NewCommunity, create_community
from ledger.database import DatabaseRuntime, DatabaseUrls, create_engine, upgrade
from ledger.embedded_pg import SUPERUSER
from ledger.projects import BudgetLine, NewProject, Project, create_project

SHARED_DIR = Path(__file__).resolve().parents[1].parent / "shared"


@dataclass
class Database:
    settings: Settings
    runtime: DatabaseRuntime
    urls: DatabaseUrls
    superuser_url: str


@pytest.fixture(scope="session")
def database(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Database]:
    settings = Settings(data_dir=tmp_path_factory.mktemp("ledger-data"), db_pool_size=30, db_pool_overflow=20)
    runtime = DatabaseRuntime(settings)
    urls = runtime.start()
    upgrade(urls.owner, settings.app_role)
    assert runtime.embedded is not None
    superuser_url = runtime.embedded.info.url(SUPERUSER, "ledger")
    yield Database(settings, runtime, urls, superuser_url)
    runtime.stop()


@pytest.fixture(scope="session")
async def engine(database: Database) -> AsyncIterator[AsyncEngine]:
    eng = create_engine(database.urls.app, database.settings)
    yield eng
    await eng.dispose()


@pytest.fixture(scope="session")
async def owner_engine(database: Database) -> AsyncIterator[AsyncEngine]:
    eng = create_engine(database.urls.owner, database.settings)
    yield eng
    await eng.dispose()


@pytest.fixture(scope="session")
async def superuser_engine(database: Database) -> AsyncIterator[AsyncEngine]:
    eng = create_engine(database.superuser_url, database.settings)
    yield eng
    await eng.dispose()


@pytest.fixture
async def db_conn(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A connection for ledger reads, as a route's ``db.connect()`` gives one (api/db.py)."""
    async with engine.connect() as conn:
        yield conn


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


async def make_project(
    engine: AsyncEngine,
    *,
    spending_gate: str = "waived",
    households: int = 400,
    categories: tuple[str, ...] = ("materials", "labour"),
) -> Project:
    community = await create_community(engine, NewCommunity(code=unique("c"), name="锦绣花园小区", households=1200))
    return await create_project(
        engine,
        NewProject(
            code=unique("p"),
            community_code=community.code,
            title="小区路面刷黑",
            households_in_scope=households,
            spending_gate=spending_gate,
            budget_lines=[
                BudgetLine(
                    category=c,
                    label={"materials": "沥青材料", "labour": "人工费"}.get(c, c),
                    source="crowdfunding",
                    amount_fen=6_000_000,
                )
                for c in categories
            ],
        ),
    )


# Fixtures of the HTTP API tests (one app, client and set of tokens for the whole session).
from tests.api_support import api, api_app, live_server, world  # noqa: E402, F401
