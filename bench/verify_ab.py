"""Benchmark: ``verify`` of a loaded project by two versions of the code, in alternating runs.

    .venv/bin/python bench/million.py --keep /tmp/million-db        # load 1,000,000 entries once
    git worktree add /tmp/old-tree <commit>                         # the version to compare with
    .venv/bin/python bench/verify_ab.py --keep /tmp/million-db /tmp/old-tree . [--rounds 3]

On a shared two-core box the same verify swings by ±20 % within minutes, so two versions are
compared in turns: old, new, old, new, … each in a fresh process that starts the kept cluster,
calls ``ledger.tree.verify`` (worker processes as the service would choose) and stops it. Every
process is started with ``python -P`` from a temporary folder, so each tree's code, and its
workers' (they import ``ledger`` from the tree the caller imported it from), is what runs — a
``ledger`` folder in the working directory would otherwise be imported first.

Prints each run's seconds, each tree's median, and the ratio of the last tree's median to the
first's.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = """
import asyncio, json, sys, time
sys.path.insert(0, {root!r})
from pathlib import Path
from api.settings import Settings
from ledger import tree
from ledger.database import DatabaseRuntime, create_engine

settings = Settings(data_dir=Path({data!r}), log_level="WARNING")
runtime = DatabaseRuntime(settings)
urls = runtime.start()

async def main():
    engine = create_engine(urls.app, settings)
    try:
        started = time.perf_counter()
        v = await tree.verify(engine, {project!r})
        return {{"seconds": time.perf_counter() - started, "ok": v.ok, "size": v.size}}
    finally:
        await engine.dispose()

try:
    result = asyncio.run(main())
finally:
    runtime.stop()
print(json.dumps(result))
"""


def run(root: Path, data: Path, project: str) -> dict[str, object]:
    code = CHILD.format(root=str(root), data=str(data), project=project)
    with tempfile.TemporaryDirectory() as cwd:
        out = subprocess.run(
            [sys.executable, "-P", "-c", code], cwd=cwd, capture_output=True, text=True, check=True
        ).stdout
    return json.loads(out.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keep", type=Path, required=True, help="a cluster loaded by bench/million.py --keep")
    parser.add_argument("--project", default="million")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("trees", type=Path, nargs=2, help="two checkouts: the baseline, then the one measured")
    args = parser.parse_args()
    trees = [t.resolve() for t in args.trees]
    times: dict[Path, list[float]] = {t: [] for t in trees}
    for round_no in range(1, args.rounds + 1):
        for t in trees:
            result = run(t, args.keep.resolve(), args.project)
            if not result["ok"]:
                sys.exit(f"verify failed in {t}: {result}")
            times[t].append(float(result["seconds"]))  # type: ignore[arg-type]
            print(f"round {round_no}  {t}  {result['seconds']:.2f} s  (size {result['size']:,}, ok)", flush=True)
    print(f"\nverify of {args.project!r}, {args.rounds} alternating rounds; load average {os.getloadavg()[0]:.1f}")
    for t in trees:
        print(f"  {t}: {', '.join(f'{x:.2f}' for x in times[t])} s; median {statistics.median(times[t]):.2f} s")
    base, new = (statistics.median(times[t]) for t in trees)
    print(f"  ratio (second / first): {new / base:.2f}")


if __name__ == "__main__":
    main()
