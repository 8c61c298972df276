"""The browser's Merkle verifier (api/static/merkle.js) and both of its SHA-256 implementations,
against transparency-dev's test vectors, under Node's test runner."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

from tests.conftest import SHARED_DIR

ROOT = Path(__file__).resolve().parents[1]


def test_js_verifier_accepts_exactly_the_good_vectors(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "api" / "static", tmp_path / "static")
    shutil.copy(ROOT / "tests" / "js" / "merkle.test.mjs", tmp_path / "merkle.test.mjs")
    (tmp_path / "package.json").write_text(json.dumps({"type": "module"}))
    env = {**os.environ, "MERKLE_VECTORS": str(SHARED_DIR / "testdata" / "merkle")}
    run = subprocess.run(
        ["node", "--test", "merkle.test.mjs"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert "# fail 0" in run.stdout and "# pass 5" in run.stdout, run.stdout[-1000:]
