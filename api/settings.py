"""All configuration of the service, read once from environment variables (prefix ``LEDGER_``).

The database's part is ledger/settings.py (``DatabaseSettings``, all the ledger reads); what only
the assembled service needs — HTTP, the public URL printed on sheets, logging, PDF rendering, rate
limits, workers, demo data — is added here, in the composition root.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic import Field

from ledger.settings import DatabaseSettings


class Settings(DatabaseSettings):
    demo: bool = Field(default=False, description="load demo data into an empty database at start-up")

    host: str = "127.0.0.1"
    port: int = 8000
    public_base_url: str = Field(default="http://127.0.0.1:8000", description="printed in QR codes and links on sheets")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["console", "json"] = "console"

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
