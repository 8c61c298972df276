"""All configuration, read once from environment variables (prefix ``LEDGER_``)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
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
    demo: bool = Field(default=False, description="load demo data into an empty database at start-up")

    host: str = "127.0.0.1"
    port: int = 8000
    public_base_url: str = Field(default="http://127.0.0.1:8000", description="printed in QR codes and links on sheets")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["console", "json"] = "console"

    db_pool_size: int = Field(default=20, ge=1, le=200)
    db_pool_overflow: int = Field(default=10, ge=0, le=200)
    db_statement_cache: int = Field(
        default=100,
        ge=0,
        le=10_000,
        description="prepared statements cached per connection; 0 behind PgBouncer in transaction mode"
        " (every statement is then prepared unnamed, in the transaction that runs it)",
    )
    pdf_render_concurrency: int = Field(default=2, ge=1, le=16)
    pdf_render_mode: Literal["process", "thread"] = Field(
        default="process", description="render sheets in worker processes (keeps the API responsive) or threads"
    )
    public_write_rate_per_minute: int = Field(default=20, ge=1, le=10_000)
    rate_limit_namespace: str = Field(
        default="",
        max_length=100,
        description="prefix of the rate limit's keys in the database: services sharing a database and this "
        "namespace (the workers of one deployment) share one budget per client",
    )
    workers: int = Field(default=1, ge=1, le=64, description="uvicorn worker processes of ledger serve")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
