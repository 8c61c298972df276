"""docs/architecture.md names real places: every file or folder it mentions in backticks exists, and
every ``module.py`` ``NAME`` pair it gives (where a change goes) names something in that module."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "architecture.md"
PATH = re.compile(r"`((?:ledger|reports|api|tests|migrations|docs|scripts|bench)/[^`\s]*)`")
NAMED = re.compile(r"`((?:ledger|reports|api)/[\w/]+\.py)` `(\w+)`")


def test_every_path_in_the_architecture_page_exists() -> None:
    text = DOC.read_text(encoding="utf-8")
    paths = PATH.findall(text)
    assert len(paths) > 30
    missing = [p for p in paths if not any(ROOT.glob(p.replace("<area>", "*")))]
    assert missing == []


def test_every_named_thing_is_in_its_module() -> None:
    text = DOC.read_text(encoding="utf-8")
    pairs = NAMED.findall(text)
    assert len(pairs) > 5
    missing = [f"{path} {name}" for path, name in pairs if name not in (ROOT / path).read_text(encoding="utf-8")]
    assert missing == []
