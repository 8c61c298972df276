"""A private PostgreSQL cluster in a local data folder, so one command runs the whole service.

The cluster listens only on a Unix socket inside the data folder (no TCP port, so it never
collides with a system-wide PostgreSQL on 5432). Binaries come from the ``pgserver`` wheel where
one exists (CPython 3.10–3.12 on x86-64) and otherwise from the system's PostgreSQL package
(``/usr/lib/postgresql/NN/bin``). PostgreSQL refuses to run as root, which is what containers and CI
use, so as root the server runs as the unprivileged system user ``ledgerpg``.

Lifecycle rules:
- The first process to take ``owner.lock`` owns the server: it starts it (or adopts one left
  running by a crashed owner, e.g. after ``kill -9``) and stops it on exit.
- Any other process using the same folder at the same time only connects, and never stops it.
- A stale ``postmaster.pid`` or socket lock (dead or reused PID) is removed before starting.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import pwd
import re
import shutil
import stat
import subprocess
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import psutil

log = logging.getLogger(__name__)

SERVICE_USER = "ledgerpg"
SUPERUSER = "postgres"
SOCKET_PATH_MAX = 100  # sun_path is 108 bytes; leave room for "/.s.PGSQL.5432"
PORT = 5432  # only names the socket file; no TCP listener is opened
START_TIMEOUT_S = 60


class EmbeddedPostgresError(RuntimeError):
    pass


def binary_candidates(preferred: str = "auto") -> list[Path]:
    """PostgreSQL ``bin/`` directories to try, in order of preference (they may not all exist).

    ``preferred`` is ``auto`` (pgserver, then the system's, newest first), ``pgserver``,
    ``system`` or a path. ``ledger backup``/``restore`` pick their client programs from the same
    list, so they match the server binaries the embedded cluster runs.
    """
    candidates: list[Path] = []
    if preferred not in ("auto", "pgserver", "system"):
        candidates.append(Path(preferred))
    if preferred in ("auto", "pgserver"):
        with contextlib.suppress(ImportError), warnings.catch_warnings():
            # pgserver asks platformdirs for a runtime dir at import and warns when XDG_RUNTIME_DIR
            # is unset (as in containers); we only need its binaries.
            warnings.simplefilter("ignore")
            import pgserver

            candidates.append(Path(pgserver.__file__).parent / "pginstall" / "bin")
    if preferred in ("auto", "system"):
        versions = sorted(
            Path("/usr/lib/postgresql").glob("*/bin"),
            key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
            reverse=True,
        )
        candidates.extend(versions)
        pg_config = shutil.which("pg_config")
        if pg_config:
            with contextlib.suppress(subprocess.SubprocessError, OSError):
                out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=True)
                candidates.append(Path(out.stdout.strip()))
    return candidates


def find_binaries(preferred: str = "auto") -> Path:
    """Return the bin directory holding initdb/pg_ctl/postgres (see :func:`binary_candidates`)."""
    candidates = binary_candidates(preferred)
    for bin_dir in candidates:
        if (bin_dir / "initdb").exists() and (bin_dir / "pg_ctl").exists():
            return bin_dir
    raise EmbeddedPostgresError(
        "找不到 PostgreSQL 服务器程序（initdb/pg_ctl）。请安装：apt-get install postgresql，"
        "或设置 LEDGER_DATABASE_URL 使用已有数据库。 "
        "No PostgreSQL server binaries found: install Debian's `postgresql` package "
        "(or pip `pgserver` on CPython 3.10-3.12 x86-64), or set LEDGER_DATABASE_URL."
    )


@dataclass(frozen=True)
class ServerInfo:
    socket_dir: Path
    port: int

    def url(self, user: str, database: str) -> str:
        return f"postgresql+asyncpg://{user}@/{database}?host={self.socket_dir}&port={self.port}"

    def dsn(self, user: str, database: str) -> str:
        """A libpq/asyncpg DSN (no SQLAlchemy driver prefix)."""
        return f"postgresql://{user}@/{database}?host={self.socket_dir}&port={self.port}"


class EmbeddedPostgres:
    """Start, reuse and stop the private cluster under ``root_dir`` (``<data dir>/pg``)."""

    def __init__(self, root_dir: Path, binaries: str = "auto") -> None:
        self.root_dir = root_dir.resolve()
        self.data_dir = self.root_dir / "data"
        self.log_file = self.root_dir / "postgresql.log"
        self.bin_dir = find_binaries(binaries)
        self.run_as = _service_user() if os.geteuid() == 0 else None
        self.socket_dir = self._choose_socket_dir()
        self._lock_fd: int | None = None
        self.owner = False

    # -- public -------------------------------------------------------------------------------

    def start(self) -> ServerInfo:
        """Ensure the server runs; become its owner if no other live process is."""
        self.root_dir.mkdir(parents=True, exist_ok=True)
        self.owner = self._try_take_owner_lock()
        if not self.owner:
            self._wait_until_ready()
            log.info("embedded PostgreSQL owned by another process; connecting only")
            return self.info
        self._prepare_dirs()
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb()
        if self._running_pid() is None:
            self._remove_stale_locks()
            self._pg_ctl_start()
        else:
            log.info("adopting embedded PostgreSQL left running by an earlier process")
        self._wait_until_ready()
        return self.info

    def stop(self) -> None:
        """Stop the server if this process owns it. Safe to call twice."""
        if not self.owner:
            return
        if self._running_pid() is not None:
            self._run(
                [str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), "-m", "fast", "-w", "-t", "30", "stop"],
                check=False,
            )
        self._release_owner_lock()
        self.owner = False

    @property
    def info(self) -> ServerInfo:
        return ServerInfo(socket_dir=self.socket_dir, port=PORT)

    def __enter__(self) -> ServerInfo:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- internals ----------------------------------------------------------------------------

    def _choose_socket_dir(self) -> Path:
        preferred = self.root_dir / "run"
        if len(str(preferred)) <= SOCKET_PATH_MAX - 16:
            return preferred
        digest = hashlib.sha256(str(self.root_dir).encode()).hexdigest()[:12]
        return Path("/tmp") / f"ledger-pg-{digest}"

    def _try_take_owner_lock(self) -> bool:
        fd = os.open(self.root_dir / "owner.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._lock_fd = fd
        return True

    def _release_owner_lock(self) -> None:
        if self._lock_fd is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None

    def _prepare_dirs(self) -> None:
        for path in (self.data_dir, self.socket_dir):
            path.mkdir(parents=True, exist_ok=True, mode=0o700)
        if self.run_as is not None:
            uid, gid = self.run_as
            for path in (self.root_dir, self.data_dir, self.socket_dir):
                os.chown(path, uid, gid)
            self.log_file.touch(exist_ok=True)
            os.chown(self.log_file, uid, gid)
            # The service user must be able to reach the data folder and the binaries.
            for target in (self.root_dir, self.socket_dir, self.bin_dir):
                _make_traversable(target)
        self.data_dir.chmod(0o700)

    def _initdb(self) -> None:
        log.info("initialising embedded PostgreSQL cluster in %s", self.data_dir)
        self._run(
            [
                str(self.bin_dir / "initdb"),
                "-D",
                str(self.data_dir),
                "-U",
                SUPERUSER,
                "--auth-local=trust",
                "--auth-host=reject",
                "--encoding=UTF8",
                "--locale=C.UTF-8",
                "--no-instructions",
            ],
        )
        conf = self.data_dir / "postgresql.conf"
        with conf.open("a", encoding="utf-8") as fh:
            # Only the Unix socket, reachable by this user (and root) alone.
            fh.write(
                "\n# written by ledger.embedded_pg\n"
                "listen_addresses = ''\n"
                "unix_socket_permissions = 0700\n"
                "max_connections = 200\n"
                "shared_buffers = 128MB\n"
                "timezone = 'Asia/Shanghai'\n"
                "log_timezone = 'Asia/Shanghai'\n"
            )

    def _pg_ctl_start(self) -> None:
        args = [
            str(self.bin_dir / "pg_ctl"),
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
        try:
            self._run(args)
        except EmbeddedPostgresError as exc:
            tail = self.log_file.read_text(errors="replace")[-4000:] if self.log_file.exists() else ""
            raise EmbeddedPostgresError(f"{exc}\n--- postgresql.log ---\n{tail}") from exc

    def _running_pid(self) -> int | None:
        """PID of a live postmaster serving *this* data folder, else None."""
        pid = _pid_from_lockfile(self.data_dir / "postmaster.pid")
        if pid is None:
            return None
        try:
            proc = psutil.Process(pid)
            cmdline = proc.cmdline()
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            return None
        is_postgres = bool(cmdline) and Path(cmdline[0]).name in ("postgres", "postmaster")
        return pid if is_postgres and str(self.data_dir) in " ".join(cmdline) else None

    def _remove_stale_locks(self) -> None:
        for stale in (
            self.data_dir / "postmaster.pid",
            self.socket_dir / f".s.PGSQL.{PORT}.lock",
            self.socket_dir / f".s.PGSQL.{PORT}",
        ):
            if stale.exists() or stale.is_symlink():
                log.warning("removing stale %s left by a crashed server", stale)
                stale.unlink()

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        pg_isready = self.bin_dir / "pg_isready"
        while time.monotonic() < deadline:
            result = subprocess.run(
                [str(pg_isready), "-q", "-h", str(self.socket_dir), "-p", str(PORT), "-U", SUPERUSER],
                check=False,
                env=clean_env(self.bin_dir),
            )
            if result.returncode == 0:
                return
            time.sleep(0.2)
        raise EmbeddedPostgresError(f"embedded PostgreSQL did not become ready in {START_TIMEOUT_S}s")

    def _run(self, args: list[str], check: bool = True) -> subprocess.CompletedProcess[str]:
        kwargs: dict[str, object] = {}
        if self.run_as is not None:
            uid, gid = self.run_as
            kwargs = {"user": uid, "group": gid, "extra_groups": [], "cwd": str(self.root_dir)}
        # pg_ctl's children inherit our stdout; send them to files so a daemonised postmaster
        # cannot keep a pipe open and hang this call.
        with open(os.devnull, "rb") as stdin:
            result = subprocess.run(
                args,
                stdin=stdin,
                capture_output=True,
                text=True,
                check=False,
                env=clean_env(self.bin_dir),
                **kwargs,  # type: ignore[call-overload]
            )
        if check and result.returncode != 0:
            raise EmbeddedPostgresError(
                f"{Path(args[0]).name} failed ({result.returncode}): {result.stderr.strip() or result.stdout}"
            )
        return result


def _pid_from_lockfile(path: Path) -> int | None:
    try:
        first = path.read_text().splitlines()[0].strip()
    except (OSError, IndexError):
        return None
    return int(first) if re.fullmatch(r"\d+", first) else None


def clean_env(bin_dir: Path) -> dict[str, str]:
    """The environment for a PostgreSQL program: no inherited PG* variables, ``bin_dir`` first on PATH."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["PATH"] = f"{bin_dir}:{env.get('PATH', '/usr/bin:/bin')}"
    env["LC_ALL"] = "C.UTF-8"
    return env


def _service_user() -> tuple[int, int]:
    try:
        entry = pwd.getpwnam(SERVICE_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", SERVICE_USER],
            check=True,
            capture_output=True,
        )
        entry = pwd.getpwnam(SERVICE_USER)
    return entry.pw_uid, entry.pw_gid


def _make_traversable(path: Path) -> None:
    """Give 'others' search (x) permission on every ancestor, so the service user can reach path.

    Only the execute bit is added: directory listings stay private.
    """
    for directory in [path, *path.parents]:
        mode = directory.stat().st_mode
        if not mode & stat.S_IXOTH:
            directory.chmod(mode | stat.S_IXOTH)
