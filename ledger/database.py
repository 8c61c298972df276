"""Where the database is, who connects as whom, and the schema's revision.

Two roles, on purpose: migrations run as the *owner* of the schema; the service connects as the
*application* role, which owns nothing and holds only the grants the migrations give it (SELECT and
INSERT on append-only tables). So a bug or an injected statement in the service cannot UPDATE,
DELETE, TRUNCATE or disable the triggers that keep the ledger append-only.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path

import asyncpg
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from ledger.embedded_pg import SUPERUSER, EmbeddedPostgres
from ledger.settings import Settings

log = logging.getLogger(__name__)

DATABASE_NAME = "ledger"
OWNER_ROLE = "ledger_owner"
MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


@dataclass
class DatabaseUrls:
    app: str
    owner: str


class DatabaseRuntime:
    """Resolves URLs from settings, starting the embedded cluster when no URL is configured."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.embedded: EmbeddedPostgres | None = None
        self.urls: DatabaseUrls | None = None

    def start(self) -> DatabaseUrls:
        if self.urls is not None:
            return self.urls
        s = self.settings
        if s.database_url:
            owner = s.owner_database_url or s.database_url
            if owner == s.database_url:
                log.warning(
                    "LEDGER_OWNER_DATABASE_URL not set: migrations run as the application role, "
                    "so the database cannot stop the service itself from editing ledger rows"
                )
            self.urls = DatabaseUrls(app=s.database_url, owner=owner)
            return self.urls
        self.embedded = EmbeddedPostgres(s.data_dir / "pg", binaries=s.pg_binaries)
        info = self.embedded.start()
        asyncio.run(_bootstrap_roles(info.dsn(SUPERUSER, "postgres"), s.app_role))
        self.urls = DatabaseUrls(app=info.url(s.app_role, DATABASE_NAME), owner=info.url(OWNER_ROLE, DATABASE_NAME))
        return self.urls

    def stop(self) -> None:
        if self.embedded is not None:
            self.embedded.stop()


async def _bootstrap_roles(superuser_dsn: str, app_role: str) -> None:
    """Create the owner and application roles and the database, once."""
    conn = await asyncpg.connect(superuser_dsn)
    try:
        for role in (OWNER_ROLE, app_role):
            exists = await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", role)
            if not exists:
                await conn.execute(f'CREATE ROLE "{role}" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE')
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", DATABASE_NAME):
            await conn.execute(f'CREATE DATABASE "{DATABASE_NAME}" OWNER "{OWNER_ROLE}" ENCODING \'UTF8\'')
    finally:
        await conn.close()
    db_dsn = superuser_dsn.rsplit("/postgres?", 1)[0] + f"/{DATABASE_NAME}?" + superuser_dsn.split("?", 1)[1]
    conn = await asyncpg.connect(db_dsn)
    try:
        # Only the owner may create objects; the application role may only use them.
        await conn.execute(f'ALTER SCHEMA public OWNER TO "{OWNER_ROLE}"')
        await conn.execute("REVOKE ALL ON SCHEMA public FROM PUBLIC")
        await conn.execute(f'GRANT USAGE ON SCHEMA public TO "{app_role}"')
        await conn.execute(f'REVOKE ALL ON DATABASE "{DATABASE_NAME}" FROM PUBLIC')
        await conn.execute(f'GRANT CONNECT ON DATABASE "{DATABASE_NAME}" TO "{app_role}", "{OWNER_ROLE}"')
    finally:
        await conn.close()


def create_engine(url: str, settings: Settings) -> AsyncEngine:
    return create_async_engine(
        url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_pool_overflow,
        pool_pre_ping=False,
        # Ledger writes need durable commits: never synchronous_commit=off here.
        connect_args={"server_settings": {"application_name": "ledger", "timezone": "Asia/Shanghai"}},
    )


# -- migrations ---------------------------------------------------------------------------------


def alembic_config(owner_url: str, app_role: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", owner_url.replace("%", "%%"))
    cfg.attributes["app_role"] = app_role
    return cfg


def upgrade(owner_url: str, app_role: str, revision: str = "head") -> None:
    """Apply migrations (synchronous; runs its own event loop, so call it from a thread)."""
    command.upgrade(alembic_config(owner_url, app_role), revision)


def head_revision() -> str | None:
    script = ScriptDirectory.from_config(alembic_config("postgresql://unused", "unused"))
    return script.get_current_head()


async def current_revision(engine: AsyncEngine) -> str | None:
    async with engine.connect() as conn:
        return await conn.run_sync(lambda sync: MigrationContext.configure(sync).get_current_revision())


def redact(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)
