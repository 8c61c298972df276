"""What the wrk benchmarks (bench/reads.py, bench/append_http.py) share: a ``ledger serve
--workers N`` process on a free loopback port, and the latency percentiles of wrk's report."""

from __future__ import annotations

import os
import re
import resource
import socket
import subprocess
import time
from pathlib import Path

import httpx

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


_TICK = os.sysconf("SC_CLK_TCK")


def _process_table() -> dict[int, tuple[int, str, float]]:
    """pid → (parent pid, command name, CPU seconds used so far), from /proc."""
    table: dict[int, tuple[int, str, float]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            raw = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid …": comm may hold spaces, so split after its closing parenthesis.
        comm = raw[raw.index("(") + 1 : raw.rindex(")")]
        fields = raw[raw.rindex(")") + 2 :].split()
        # utime + stime, and cutime + cstime: a backend that exited during the run is counted in
        # the postmaster that reaped it.
        used = sum(int(f) for f in fields[11:15])
        table[int(entry)] = (int(fields[1]), comm, used / _TICK)
    return table


def cpu_by_role(server_pid: int) -> dict[str, float]:
    """CPU seconds used so far by the server (the process and its workers), PostgreSQL (every
    ``postgres`` process) and the load generator (this process's finished children: wrk). Take
    one reading before and one after a run: the difference says where the run's CPU went, a
    figure far steadier than requests/s on a shared machine."""
    table = _process_table()
    server = {server_pid}
    grew = True
    while grew:
        grew = False
        for pid, (ppid, _, _) in table.items():
            if ppid in server and pid not in server:
                server.add(pid)
                grew = True
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = {"server": 0.0, "postgres": 0.0, "wrk": children.ru_utime + children.ru_stime}
    for pid, (_, comm, cpu) in table.items():
        if pid in server:
            out["server"] += cpu
        elif comm == "postgres":
            out["postgres"] += cpu
    return out


def cpu_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {role: after[role] - before[role] for role in before}
