"""What the wrk benchmarks (bench/reads.py, bench/append_http.py) share: a ``ledger serve
--workers N`` process on a free loopback port, and the latency percentiles of wrk's report."""

from __future__ import annotations

import os
import re
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


def serve(app_url: str, owner_url: str, data_dir: str, workers: int) -> tuple[subprocess.Popen[bytes], str]:
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
