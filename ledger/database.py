"""Where the database is, who connects as whom, and the schema's revision.

Two roles, on purpose: migrations run as the *owner* of the schema; the service connects as the
*application* role, which owns nothing and holds only the grants the migrations give it (SELECT and
INSERT on append-only tables). So a bug or an injected statement in the service cannot UPDATE,
DELETE, TRUNCATE or disable the triggers that keep the ledger append-only.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import asyncpg
from sqlalchemy import event, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from ledger.embedded_pg import SUPERUSER, EmbeddedPostgres
from ledger.settings import DatabaseSettings

if TYPE_CHECKING:
    from alembic.config import Config

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

    def __init__(self, settings: DatabaseSettings) -> None:
        self.settings = settings
        self.embedded: EmbeddedPostgres | None = None
        self.urls: DatabaseUrls | None = None

    def start(self) -> DatabaseUrls:
        if self.urls is not None:
            return self.urls
        s = self.settings
        if s.database_url:
            # Without a separate owner URL, migrations run as the application role; start-up then
            # refuses to serve (ensure_app_role_owns_nothing) unless that role owns nothing.
            owner = s.owner_database_url or s.database_url
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


class UnsafeDatabaseRole(RuntimeError):
    """The application role could switch off the ledger's append-only protection."""


# Owning a table (directly or through a role one is a member of) lets a role DISABLE its triggers
# and DROP it; a superuser may do anything. Either way PostgreSQL could no longer stop the service
# itself from rewriting history, which is the point of the two-role design.
_APP_ROLE_POWERS = """
SELECT r.rolsuper,
       coalesce((SELECT array_agg(c.relname::text ORDER BY c.relname <> 'entries', c.relname)
                 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                 WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p')
                   AND pg_has_role(c.relowner, 'MEMBER')), '{}') AS owned
FROM pg_roles r WHERE r.rolname = current_user
"""


async def ensure_app_role_owns_nothing(engine: AsyncEngine) -> None:
    """Refuse to serve as a role that owns ledger tables or is a superuser (raises UnsafeDatabaseRole)."""
    async with engine.connect() as conn:
        powers = (await conn.exec_driver_sql(_APP_ROLE_POWERS)).mappings().one()
        user = (await conn.exec_driver_sql("SELECT current_user")).scalar_one()
    superuser, owned = bool(powers["rolsuper"]), list(powers["owned"])
    if not superuser and not owned:
        return
    what = "是超级用户" if superuser else f"拥有账本表（{', '.join(owned[:5])}{' 等' if len(owned) > 5 else ''}）"
    raise UnsafeDatabaseRole(
        f"拒绝启动：应用连接所用的数据库角色 {user} {what}，可以关闭只增不改的触发器、改写账本。"
        "请用拥有这些表的角色设置 LEDGER_OWNER_DATABASE_URL（迁移以它运行），"
        "另建一个不拥有任何表、非超级用户的登录角色设置 LEDGER_DATABASE_URL，见 docs/deploy.md。"
        f" / Refusing to start: the application role {user!r} "
        + ("is a superuser" if superuser else f"owns ledger tables ({', '.join(owned[:5])})")
        + ", so it could disable the append-only triggers. Set LEDGER_OWNER_DATABASE_URL to the owning role"
        " and LEDGER_DATABASE_URL to a separate non-owner, non-superuser login role (docs/deploy.md)."
    )


def create_engine(url: str, settings: DatabaseSettings, *, application_name: str = "ledger") -> AsyncEngine:
    """The pooled engine of one database URL.

    ``LEDGER_DB_STATEMENT_CACHE=0`` is for PgBouncer in transaction mode, where consecutive
    transactions of one client connection may run on different server sessions: asyncpg's cache
    and SQLAlchemy's are both off, so every statement is prepared unnamed inside the transaction
    that runs it and nothing named is left behind on a server session (asyncpg >= 0.29 re-parses
    an unnamed statement in its own Sync). Nothing else relies on session state across
    transactions: advisory locks are transaction-level, ``SET`` is never used, and the two start-up
    parameters below are ones PgBouncer tracks per client.
    """
    cache = settings.db_statement_cache
    engine = create_async_engine(
        url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_pool_overflow,
        pool_pre_ping=False,
        # Ledger writes need durable commits: never synchronous_commit=off here.
        connect_args={
            "server_settings": {"application_name": application_name, "timezone": "Asia/Shanghai"},
            "statement_cache_size": cache,
            "prepared_statement_cache_size": cache,
        },
    )
    event.listen(engine.sync_engine.pool, "checkin", _discard_if_transaction_left_open)
    _APPEND_GROUP_MAX[engine] = settings.append_group_max
    return engine


_APPEND_GROUP_MAX: weakref.WeakKeyDictionary[AsyncEngine, int] = weakref.WeakKeyDictionary()


def append_group_max(engine: AsyncEngine) -> int:
    """``LEDGER_APPEND_GROUP_MAX`` of the settings the engine was made with: how many single
    appends one transaction may take (ledger/append_group.py); 1 means no group commit."""
    group_max = _APPEND_GROUP_MAX.get(engine)
    # Asked on every single append: the settings' default is looked up only for a foreign engine.
    return group_max if group_max is not None else DatabaseSettings.model_fields["append_group_max"].default


def _discard_if_transaction_left_open(dbapi_connection: Any, record: Any) -> None:
    """A connection goes back to the pool only with no transaction open on it; otherwise it is
    closed (the server rolls the transaction back) and the pool opens a fresh one when needed.

    A request cancelled mid-flight (the client went away, the server shut down) interrupts
    whatever statement is running. SQLAlchemy's rollback-on-return only knows transactions it
    began itself, not the raw asyncpg ones of ledger/pg.py; and when a ``BEGIN`` is interrupted,
    asyncpg keeps its record of the block (``_top_xact``) although no ``async with`` will ever end
    it. Returned as it was, such a connection stayed *idle in transaction* holding its locks (a
    project's head row: every later append to that project waited), or handed the next request a
    transaction that became a SAVEPOINT inside the stale one: its entry answered 201 and was never
    committed. tests/test_reliability_cancel.py cancels 1,000 requests at random points.
    """
    if dbapi_connection is None:
        return
    raw = dbapi_connection.driver_connection
    if raw.is_closed():
        return
    # is_in_transaction() is the server's state at its last ReadyForQuery: true also when a COMMIT
    # or ROLLBACK was interrupted before its answer came back.
    if raw.is_in_transaction() or getattr(raw, "_top_xact", None) is not None:
        log.warning("a pooled connection was returned inside a transaction (a cancelled request); closing it")
        raw.terminate()
        record.invalidate()


# -- migrations ---------------------------------------------------------------------------------


# Alembic is imported where it is used: it is half the start-up time of a command that never
# migrates (ledger verify, export, backup from a cron).


def alembic_config(owner_url: str, app_role: str) -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", owner_url.replace("%", "%%"))
    cfg.attributes["app_role"] = app_role
    return cfg


def upgrade(owner_url: str, app_role: str, revision: str = "head") -> None:
    """Apply migrations (synchronous; runs its own event loop, so call it from a thread)."""
    from alembic import command

    command.upgrade(alembic_config(owner_url, app_role), revision)


def head_revision() -> str | None:
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(alembic_config("postgresql://unused", "unused"))
    return script.get_current_head()


async def current_revision(engine: AsyncEngine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    async with engine.connect() as conn:
        return await conn.run_sync(lambda sync: MigrationContext.configure(sync).get_current_revision())


def redact(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)
