"""What the wrk benchmarks (bench/reads.py, bench/append_http.py) share: a ``ledger serve
--workers N`` process on a free loopback port, and the latency percentiles of wrk's report."""

from __future__ import annotations

import contextlib
import os
import re
import resource
import socket
import subprocess
import time
from pathlib import Path

import httpx
import psutil

ROOT = Path(__file__).resolve().parents[1]

# wrk --latency prints "    50.000%    2.31ms" (or 50%, us, s) per percentile.
_LATENCY = re.compile(r"^\s+(50|99)(?:\.000)?%\s+([\d.]+)(us|ms|s)\s*$", re.M)
_TO_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def latencies_ms(wrk_output: str) -> dict[str, float]:
    """{"50": p50, "99": p99} in milliseconds, from wrk's ``--latency`` report."""
    return {q: float(v) * _TO_MS[u] for q, v, u in _LATENCY.findall(wrk_output)}


def serve(
    app_url: str, owner_url: str, data_dir: str, workers: int, extra_env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[bytes], str]:
    """``ledger serve --workers N`` on an external database (the benchmark's embedded one), ready
    (``/readyz`` 200) when this returns; the caller terminates the process."""
    port = free_port()
    env = {
        **os.environ,
        "LEDGER_DATABASE_URL": app_url,
        "LEDGER_OWNER_DATABASE_URL": owner_url,
        "LEDGER_DATA_DIR": data_dir,
        "LEDGER_LOG_LEVEL": "WARNING",
        "LEDGER_PDF_RENDER_MODE": "thread",
        **(extra_env or {}),
    }
    proc = subprocess.Popen(
        [str(ROOT / ".venv" / "bin" / "ledger"), "serve", "--port", str(port), "--workers", str(workers)],
        env=env,
        stdout=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if httpx.get(f"{base}/readyz", timeout=5).status_code == 200:
                break
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    return proc, base


def _cpu(proc: psutil.Process) -> float:
    """CPU seconds of a process, with its reaped children's (a PostgreSQL backend that exited
    during the run is counted in the postmaster that reaped it)."""
    t = proc.cpu_times()
    return t.user + t.system + t.children_user + t.children_system


def cpu_by_role(server_pid: int) -> dict[str, float]:
    """CPU seconds used so far by the server (the process and its workers), PostgreSQL (every
    ``postgres`` process) and the load generator (this process's finished children: wrk). Take
    one reading before and one after a run: the difference says where the run's CPU went, a
    figure far steadier than requests/s on a shared machine."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = {"server": 0.0, "postgres": 0.0, "wrk": children.ru_utime + children.ru_stime}
    server = psutil.Process(server_pid)
    for proc in [server, *server.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            out["server"] += _cpu(proc)
    for proc in psutil.process_iter(["name"]):
        if proc.info["name"] == "postgres":
            with contextlib.suppress(psutil.Error):
                out["postgres"] += _cpu(proc)
    return out


def cpu_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {role: after[role] - before[role] for role in before}
