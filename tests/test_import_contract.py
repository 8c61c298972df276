"""The layers' import rule (docs/architecture.md), checked on the source: ``ledger/`` (the domain
and its database) imports neither ``api/`` nor ``reports/``; ``reports/`` (facts → sheet model →
bytes) imports neither ``api/`` nor anything that reaches the database. Every import counts, at module level or inside a function, plain
or ``from``; a relative import is resolved against its package."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# reports/ never touches the database either: the ledger hands it facts (ledger/sheet_facts.py).
FORBIDDEN = {
    "ledger": ("api", "reports"),
    "reports": ("api", "sqlalchemy", "asyncpg", "ledger.pg", "ledger.database"),
}


def imported_modules(path: Path, package: str) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1])
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            found.append((node.lineno, module))
            # ``from . import x`` and ``from api import cli`` name modules in their names too.
            found.extend((node.lineno, f"{module}.{alias.name}") for alias in node.names)
    return found


def violations() -> list[str]:
    out = []
    for layer, forbidden in FORBIDDEN.items():
        for path in sorted((ROOT / layer).rglob("*.py")):
            relative = path.relative_to(ROOT).as_posix()
            package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
            for line, module in imported_modules(path, package):
                hit = any(module == f or module.startswith(f + ".") for f in forbidden)
                if hit:
                    out.append(f"{relative}:{line} imports {module}")
    return out


def test_lower_layers_never_import_upper_ones() -> None:
    assert violations() == []


def test_the_checker_sees_every_form_of_import(tmp_path: Path) -> None:
    source = tmp_path / "m.py"
    source.write_text(
        "import api.app\nfrom reports import exports\ndef f():\n    from api.routes import entries\n"
        "from . import sibling\nfrom ..api import x\n",
        encoding="utf-8",
    )
    modules = [m for _, m in imported_modules(source, "ledger.sub")]
    assert "api.app" in modules and "reports" in modules and "api.routes" in modules
    assert "ledger.sub.sibling" in modules and "ledger.api.x" in modules
