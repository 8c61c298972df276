"""``ledger`` command line: serve, migrate, issue tokens, erase a contributor."""

from __future__ import annotations

import asyncio
import sys
from typing import TYPE_CHECKING

import click

from api.cli.usage import ChineseUsageGroup
from api.settings import Settings, get_settings

if TYPE_CHECKING:
    from ledger.database import DatabaseRuntime

# ledger.database (alembic, SQLAlchemy) is imported by the commands that use it, not here: a
# witness signs on a laptop without a database, and should not wait seconds for imports.


@click.group(cls=ChineseUsageGroup)
def main() -> None:
    """共同缔造公开账本 — ledger for neighbourhood co-creation projects."""


@main.command()
@click.option("--host", default=None, help="listen address (LEDGER_HOST, default 127.0.0.1)")
@click.option("--port", default=None, type=int, help="port (LEDGER_PORT, default 8000)")
@click.option("--demo", is_flag=True, help="load demo data if the database is empty")
@click.option(
    "--workers",
    default=None,
    type=click.IntRange(1, 64),
    help="worker processes (LEDGER_WORKERS, default 1); they share the database and its rate limit",
)
def serve(host: str | None, port: int | None, demo: bool, workers: int | None) -> None:
    """Run the HTTP service (starts the embedded PostgreSQL when no LEDGER_DATABASE_URL is set)."""
    import uvicorn

    overrides: dict[str, object] = {"demo": demo} if demo else {}
    if host:
        overrides["host"] = host
    if port:
        overrides["port"] = port
    if workers:
        overrides["workers"] = workers
    settings = get_settings().model_copy(update=overrides)
    if "public_base_url" not in settings.model_fields_set and (host or port):
        settings = settings.model_copy(update={"public_base_url": f"http://{settings.host}:{settings.port}"})
    banner = f"共同缔造公开账本：http://{settings.host}:{settings.port}/  (API: /api/v1, OpenAPI: /schema/openapi.json)"
    if settings.workers == 1:
        from api.app import create_app

        app = create_app(settings)
        click.echo(banner)
        uvicorn.run(app, host=settings.host, port=settings.port, log_config=None, lifespan="on")
        return
    _serve_workers(settings, banner)


def _serve_workers(settings: Settings, banner: str) -> None:
    """Several uvicorn worker processes on one port. They build their app from the environment, so
    the settings given here travel as LEDGER_* variables; the embedded PostgreSQL (when no URL is
    configured) is started and migrated once, here, and every worker connects to it."""
    import os

    import uvicorn

    from ledger.database import DatabaseRuntime, upgrade

    if settings.demo:
        raise click.UsageError("--demo 只能与单个 worker 一起使用（--workers 1）")
    runtime = DatabaseRuntime(settings)
    urls = runtime.start()
    try:
        if settings.auto_migrate:
            upgrade(urls.owner, settings.app_role)
        os.environ.update(
            {
                "LEDGER_DATABASE_URL": urls.app,
                "LEDGER_OWNER_DATABASE_URL": urls.owner,
                "LEDGER_AUTO_MIGRATE": "false",
                "LEDGER_HOST": settings.host,
                "LEDGER_PORT": str(settings.port),
                "LEDGER_PUBLIC_BASE_URL": settings.public_base_url,
                "LEDGER_WORKERS": "1",
            }
        )
        click.echo(f"{banner}  [{settings.workers} workers]")
        uvicorn.run(
            "api.app:create_app",
            factory=True,
            host=settings.host,
            port=settings.port,
            workers=settings.workers,
            log_config=None,
            lifespan="on",
        )
    finally:
        runtime.stop()


@main.group()
def db() -> None:
    """Database schema."""


def _with_database(settings: Settings) -> tuple[DatabaseRuntime, str, str]:
    from ledger.database import DatabaseRuntime

    runtime = DatabaseRuntime(settings)
    urls = runtime.start()
    return runtime, urls.app, urls.owner


@db.command("upgrade")
@click.argument("revision", default="head")
def db_upgrade(revision: str) -> None:
    """Apply migrations (as the schema owner)."""
    from ledger.database import redact, upgrade

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
    from ledger.database import create_engine, current_revision, head_revision

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
    from ledger.database import create_engine, upgrade
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
    from ledger.database import create_engine, upgrade
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


@main.group()
def witness() -> None:
    """见证人：在自己的电脑上生成密钥、签名公示表的检查点（不连数据库）。"""


@witness.command("keygen")
@click.option("--name", required=True, help="见证人名称，与登记时一致，如 锦绣花园业委会（不能有空格或加号）")
@click.option(
    "-o", "--output", "output", type=click.Path(dir_okay=False), required=True, help="私钥文件（只有本人可读）"
)
def witness_keygen(name: str, output: str) -> None:
    """Make an Ed25519 key pair: the private key goes to OUTPUT (mode 0600, never overwritten); the
    public key to register is printed (raw base64 and the C2SP verifier key)."""
    import os

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from ledger import signed_note as w
    from ledger.errors import LedgerError

    try:
        w.check_name(name)
    except LedgerError as exc:
        click.echo(f"错误：{exc.detail}", err=True)
        sys.exit(2)
    private = Ed25519PrivateKey.generate()
    public = w.public_bytes(private)
    try:
        fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        click.echo(f"错误：{output} 已存在，不会覆盖（那可能是您正在使用的私钥）", err=True)
        sys.exit(2)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(w.private_key_text(name, private) + "\n")
    click.echo(f"私钥已写入 {output}（请妥善保管，不要发给任何人）")
    click.echo(f"公钥（登记用，base64）：{w.b64(public)}")
    click.echo(f"验证密钥（vkey）：{w.vkey(name, public)}")


def _read_source(source: str) -> str:
    if source == "-":
        return sys.stdin.read()
    if source.startswith(("http://", "https://")):
        import urllib.request

        with urllib.request.urlopen(source, timeout=30) as response:
            return str(response.read(64 * 1024).decode("utf-8"))
    with open(source, encoding="utf-8") as f:
        return f.read(64 * 1024)


@witness.command("sign")
@click.option("--key", "key_file", required=True, type=click.Path(exists=True, dir_okay=False), help="私钥文件")
@click.option("--root", default=None, help="纸质公示表上印的根哈希（十六进制，可带空格）：不一致就不签")
@click.option("--size", default=None, type=int, help="纸质公示表上印的账本记录数：不一致就不签")
@click.option("--json", "as_json", is_flag=True, help="输出提交签名用的 JSON（POST …/cosignatures 的请求体）")
@click.argument("source")
def witness_sign(key_file: str, root: str | None, size: int | None, as_json: bool, source: str) -> None:
    """Sign the checkpoint in SOURCE (a file, a URL of …/checkpoint, or - for standard input) with
    the witness's key. Prints the signed note (checkpoint, blank line, signature line), or with
    --json the body to post. Compare the checkpoint with the paper sheet first (--root, --size)."""
    import json

    from ledger import signed_note as w
    from ledger.errors import LedgerError

    try:
        with open(key_file, encoding="utf-8") as f:
            name, private = w.parse_private_key(f.read())
        checkpoint = w.parse_checkpoint(_read_source(source))
        if root is not None and checkpoint.root_hash.hex() != "".join(root.split()).lower():
            raise LedgerError(f"检查点的根哈希 {checkpoint.root_hash.hex()} 与纸质公示表上的不同：不签")
        if size is not None and checkpoint.size != size:
            raise LedgerError(f"检查点的记录数 {checkpoint.size} 与纸质公示表上的 {size} 不同：不签")
    except (LedgerError, OSError, UnicodeDecodeError) as exc:
        click.echo(f"错误：{getattr(exc, 'detail', None) or exc}", err=True)
        sys.exit(2)
    signature = w.sign(checkpoint.text, private)
    public = w.public_bytes(private)
    if as_json:
        click.echo(json.dumps({"witness": name, "signature": w.b64(signature)}, ensure_ascii=False))
    else:
        click.echo(checkpoint.text + "\n" + w.signature_line(name, public, signature), nl=False)


# The treasurer's and the 街道's jobs live in their own modules; registered here so `ledger --help`
# lists them with the rest (`ledger import`: api/cli/imports.py).
from api.cli import backup as cli_backup  # noqa: E402
from api.cli import imports as cli_import  # noqa: E402
from api.cli import jobs as cli_jobs  # noqa: E402

for _command in (*cli_jobs.COMMANDS, *cli_backup.COMMANDS, cli_import.import_command):
    main.add_command(_command)


if __name__ == "__main__":
    main()
