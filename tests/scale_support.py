"""Real scale-out parts for the tests, on Unix sockets only (no TCP): Debian's PgBouncer in
transaction mode in front of the embedded primary, and a streaming standby of that primary made
with ``pg_basebackup -R``. Each is started by a fixture and stopped (its processes gone) after.

PostgreSQL and PgBouncer both refuse to run as root; as root (CI, containers) they run as the
embedded cluster's service user, like the primary (ledger/embedded_pg.py).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from ledger.database import DATABASE_NAME
from ledger.embedded_pg import PORT, SUPERUSER, EmbeddedPostgres, _make_traversable, clean_env

BOUNCER_PORT = 6432
START_TIMEOUT_S = 30


def _run_as(pg: EmbeddedPostgres) -> dict[str, object]:
    if pg.run_as is None:
        return {}
    uid, gid = pg.run_as
    return {"user": uid, "group": gid, "extra_groups": []}


def _own(pg: EmbeddedPostgres, *paths: Path) -> None:
    if pg.run_as is None:
        return
    uid, gid = pg.run_as
    for path in paths:
        os.chown(path, uid, gid)


def _wait_for_socket(path: Path, proc: subprocess.Popen[bytes] | None, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while not path.exists():
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"exited with {proc.returncode}: {log.read_text(errors='replace')[-2000:]}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"no socket {path} after {START_TIMEOUT_S}s: {log.read_text(errors='replace')[-2000:]}")
        time.sleep(0.05)


class PgBouncer:
    """``pgbouncer`` in transaction mode on a Unix socket in ``root``, pooling the primary's
    ``ledger`` database for the application role."""

    def __init__(self, primary: EmbeddedPostgres, root: Path, app_role: str, pool_size: int = 8) -> None:
        self.primary = primary
        self.root = root
        self.app_role = app_role
        self.pool_size = pool_size
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def socket_dir(self) -> Path:
        return self.root

    def url(self) -> str:
        return f"postgresql+asyncpg://{self.app_role}@/{DATABASE_NAME}?host={self.root}&port={BOUNCER_PORT}"

    def start(self) -> PgBouncer:
        binary = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
        if not Path(binary).exists():
            pytest.fail("pgbouncer is not installed: run scripts/setup.sh --test")
        self.root.mkdir(parents=True, exist_ok=True)
        users = self.root / "users.txt"
        users.write_text(f'"{self.app_role}" ""\n')
        ini = self.root / "pgbouncer.ini"
        ini.write_text(
            "[databases]\n"
            f"{DATABASE_NAME} = host={self.primary.socket_dir} port={PORT} dbname={DATABASE_NAME}\n"
            "[pgbouncer]\n"
            "listen_addr =\n"  # Unix socket only
            f"unix_socket_dir = {self.root}\n"
            f"listen_port = {BOUNCER_PORT}\n"
            "auth_type = trust\n"
            f"auth_file = {users}\n"
            "pool_mode = transaction\n"
            f"default_pool_size = {self.pool_size}\n"
            "max_client_conn = 1000\n"
            f"logfile = {self.root / 'pgbouncer.log'}\n"
            f"pidfile = {self.root / 'pgbouncer.pid'}\n"
        )
        log = self.root / "pgbouncer.log"
        log.touch()
        _own(self.primary, self.root, users, ini, log)
        _make_traversable(self.root)
        self.proc = subprocess.Popen(
            [binary, str(ini)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=clean_env(self.primary.bin_dir),
            **_run_as(self.primary),  # type: ignore[arg-type]
        )
        _wait_for_socket(self.root / f".s.PGSQL.{BOUNCER_PORT}", self.proc, log)
        return self

    def server_connections(self) -> int:
        """How many server sessions PgBouncer opened to the primary (from its own log)."""
        log = (self.root / "pgbouncer.log").read_text(errors="replace")
        return log.count("new connection to server")

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGINT)  # immediate shutdown
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=15)
        self.proc = None


class Standby:
    """A hot standby of the primary: ``pg_basebackup -R`` over the primary's Unix socket, then
    ``pg_ctl start`` on a socket of its own. Stopping it (``stop``) is how a test takes a replica
    down; ``start`` brings it back."""

    def __init__(self, primary: EmbeddedPostgres, root: Path) -> None:
        self.primary = primary
        self.root = root
        self.data_dir = root / "data"
        self.socket_dir = root / "run"
        self.log_file = root / "standby.log"

    def url(self, user: str) -> str:
        return f"postgresql+asyncpg://{user}@/{DATABASE_NAME}?host={self.socket_dir}&port={PORT}"

    def _run(self, args: list[str]) -> None:
        result = subprocess.run(
            args,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            check=False,
            env=clean_env(self.primary.bin_dir),
            cwd=str(self.root),
            **_run_as(self.primary),  # type: ignore[call-overload]
        )
        if result.returncode != 0:
            tail = self.log_file.read_text(errors="replace")[-3000:] if self.log_file.exists() else ""
            raise RuntimeError(f"{Path(args[0]).name} failed: {result.stderr}\n{tail}")

    def create(self) -> Standby:
        self.root.mkdir(parents=True, exist_ok=True)
        self.socket_dir.mkdir(exist_ok=True, mode=0o700)
        self.log_file.touch()
        _own(self.primary, self.root, self.socket_dir, self.log_file)
        _make_traversable(self.root)
        bin_dir = self.primary.bin_dir
        # The embedded primary trusts local connections (replication included, initdb's default
        # pg_hba.conf); -R writes standby.signal and primary_conninfo over the same socket.
        self._run(
            [
                str(bin_dir / "pg_basebackup"),
                "-h",
                str(self.primary.socket_dir),
                "-p",
                str(PORT),
                "-U",
                SUPERUSER,
                "-D",
                str(self.data_dir),
                "-R",
                "-X",
                "stream",
                "-c",
                "fast",
            ]
        )
        with (self.data_dir / "postgresql.auto.conf").open("a", encoding="utf-8") as fh:
            fh.write("hot_standby = on\nhot_standby_feedback = on\n")
        return self

    def start(self) -> None:
        self._run(
            [
                str(self.primary.bin_dir / "pg_ctl"),
                "-D",
                str(self.data_dir),
                "-l",
                str(self.log_file),
                "-w",
                "-t",
                str(START_TIMEOUT_S),
                "-o",
                f"-k {self.socket_dir} -p {PORT}",
                "start",
            ]
        )

    def stop(self) -> None:
        if not (self.data_dir / "postmaster.pid").exists():
            return
        with contextlib.suppress(RuntimeError):
            self._run([str(self.primary.bin_dir / "pg_ctl"), "-D", str(self.data_dir), "-m", "immediate", "-w", "stop"])
