"""``ledger`` command line: serve, migrate, issue tokens, erase a contributor."""

from __future__ import annotations

import asyncio
import sys

import click

from ledger.cli_usage import ChineseUsageGroup
from ledger.database import DatabaseRuntime, create_engine, current_revision, head_revision, redact, upgrade
from ledger.settings import Settings, get_settings


@click.group(cls=ChineseUsageGroup)
def main() -> None:
    """共同缔造公开账本 — ledger for neighbourhood co-creation projects."""


@main.command()
@click.option("--host", default=None, help="listen address (LEDGER_HOST, default 127.0.0.1)")
@click.option("--port", default=None, type=int, help="port (LEDGER_PORT, default 8000)")
@click.option("--demo", is_flag=True, help="load demo data if the database is empty")
def serve(host: str | None, port: int | None, demo: bool) -> None:
    """Run the HTTP service (starts the embedded PostgreSQL when no LEDGER_DATABASE_URL is set)."""
    import uvicorn

    from api.app import create_app

    overrides: dict[str, object] = {"demo": demo} if demo else {}
    if host:
        overrides["host"] = host
    if port:
        overrides["port"] = port
    settings = get_settings().model_copy(update=overrides)
    if "public_base_url" not in settings.model_fields_set and (host or port):
        settings = settings.model_copy(update={"public_base_url": f"http://{settings.host}:{settings.port}"})
    app = create_app(settings)
    click.echo(
        f"共同缔造公开账本：http://{settings.host}:{settings.port}/  (API: /api/v1, OpenAPI: /schema/openapi.json)"
    )
    uvicorn.run(app, host=settings.host, port=settings.port, log_config=None, lifespan="on")


@main.group()
def db() -> None:
    """Database schema."""


def _with_database(settings: Settings) -> tuple[DatabaseRuntime, str, str]:
    runtime = DatabaseRuntime(settings)
    urls = runtime.start()
    return runtime, urls.app, urls.owner


@db.command("upgrade")
@click.argument("revision", default="head")
def db_upgrade(revision: str) -> None:
    """Apply migrations (as the schema owner)."""
    settings = get_settings()
    runtime, _, owner = _with_database(settings)
    try:
        upgrade(owner, settings.app_role, revision)
        click.echo(f"migrated {redact(owner)} to {revision}")
    finally:
        runtime.stop()


@db.command("current")
def db_current() -> None:
    """Show the database's migration revision and the code's head."""
    settings = get_settings()
    runtime, app_url, _ = _with_database(settings)

    async def show() -> str | None:
        engine = create_engine(app_url, settings)
        try:
            return await current_revision(engine)
        finally:
            await engine.dispose()

    try:
        current = asyncio.run(show())
    finally:
        runtime.stop()
    head = head_revision()
    click.echo(f"current: {current or '(none)'}  head: {head}{'' if current == head else '  (upgrade needed)'}")


@main.group()
def token() -> None:
    """Access tokens."""


@token.command("create")
@click.option("--role", type=click.Choice(["admin", "treasurer", "auditor"]), required=True)
@click.option("--community", default=None, help="community code (treasurer and auditor tokens)")
@click.option("--name", required=True, help="who holds it, e.g. 锦绣花园报账员")
def token_create(role: str, community: str | None, name: str) -> None:
    """Create a token and print it once."""
    from ledger.errors import LedgerError
    from ledger.tokens import create_token

    settings = get_settings()
    runtime, app_url, owner = _with_database(settings)

    async def issue() -> str:
        engine = create_engine(app_url, settings)
        try:
            issued = await create_token(engine, name=name, role=role, community_code=community)
            return issued.secret
        finally:
            await engine.dispose()

    try:
        upgrade(owner, settings.app_role)
        secret = asyncio.run(issue())
    except LedgerError as exc:
        click.echo(f"错误：{exc.detail}", err=True)
        sys.exit(2)
    finally:
        runtime.stop()
    click.echo(secret)
    click.echo("（令牌只显示这一次，请妥善保存 / shown once: store it now）", err=True)


@main.group()
def contributor() -> None:
    """Contributors' personal data."""


@contributor.command("erase")
@click.argument("public_id")
@click.option("--reason", required=True, help="why, e.g. 本人申请删除个人信息")
def contributor_erase(public_id: str, reason: str) -> None:
    """Erase a contributor's personal data (个人信息保护法); entries and hashes stay valid."""
    import uuid

    from ledger.contributors import erase_contributor
    from ledger.errors import LedgerError, NotFound

    settings = get_settings()
    runtime, app_url, owner = _with_database(settings)

    async def erase() -> str:
        engine = create_engine(app_url, settings)
        try:
            try:
                target = uuid.UUID(public_id)
            except ValueError:
                raise NotFound("出资人不存在或已注销") from None
            erasure = await erase_contributor(engine, None, target, reason=reason, erased_by="cli")
            return f"已注销出资人 {erasure.public_id}（{erasure.erased_at.isoformat(timespec='seconds')}）"
        finally:
            await engine.dispose()

    try:
        upgrade(owner, settings.app_role)
        message = asyncio.run(erase())
    except LedgerError as exc:
        click.echo(f"错误：{exc.detail}", err=True)
        sys.exit(2)
    finally:
        runtime.stop()
    click.echo(message)


# The treasurer's and the 街道's jobs live in their own modules; registered here so `ledger --help`
# lists them with the rest (`ledger import`: ledger/cli_import.py).
from ledger import cli_backup, cli_import, cli_jobs  # noqa: E402

for _command in (*cli_jobs.COMMANDS, *cli_backup.COMMANDS, cli_import.import_command):
    main.add_command(_command)


if __name__ == "__main__":
    main()
