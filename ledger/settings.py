"""The database's configuration, read from environment variables (prefix ``LEDGER_``).

Only what the ledger itself needs to reach PostgreSQL lives here. The service's own settings
(listen address, public URL, logging, PDF rendering, rate limits, workers, demo data) extend this
class in api/settings.py, where the application is assembled; ledger/ never reads them.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class DatabaseSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LEDGER_", extra="ignore")

    # With no URL the service runs its own PostgreSQL under data_dir/pg.
    database_url: str | None = Field(
        default=None, description="postgresql+asyncpg://… of the application (non-owner) role"
    )
    owner_database_url: str | None = Field(
        default=None, description="URL of the role that owns the schema; migrations run as it"
    )
    read_database_url: str | None = Field(
        default=None,
        description="streaming replicas for public reads: one or more postgresql+asyncpg:// URLs, comma-separated",
    )
    replica_lag_max_s: float = Field(
        default=5.0, gt=0, le=3600, description="a replica further behind than this is skipped (reads use the primary)"
    )
    app_role: str = Field(default="ledger_app", description="login role the application connects as")
    data_dir: Path = Path("./var")
    pg_binaries: str = Field(default="auto", description="auto | pgserver | system | /path/to/bin")
    auto_migrate: bool = True

    db_pool_size: int = Field(default=20, ge=1, le=200)
    db_pool_overflow: int = Field(default=10, ge=0, le=200)
    db_statement_cache: int = Field(
        default=100,
        ge=0,
        le=10_000,
        description="prepared statements cached per connection; 0 behind PgBouncer in transaction mode"
        " (every statement is then prepared unnamed, in the transaction that runs it)",
    )
    append_group_max: int = Field(
        default=32,
        ge=1,
        le=1000,
        description="concurrent single appends written by one transaction at most (group commit,"
        " ledger/append_group.py); 1 turns grouping off: each append is its own transaction",
    )
