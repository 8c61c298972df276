"""The database rule (docs/architecture.md), checked on the source: a ``ledger/`` function takes
the connection its caller opened (a route's ``db.connect()``, api/db.py); only a function that
opens a transaction of its own — with its isolation or its locking — takes the ``AsyncEngine``.

A function whose first parameter is an ``AsyncEngine`` passes if its body opens a transaction
(``engine.begin()``, ``pg.transaction(...)``, an asyncpg ``.transaction(...)``), or if it is in
``ENGINE_ALLOWED`` with the reason. A plain read that takes the engine fails here: it would open
a connection of its own beside the request's (and its caller could not put it in a snapshot)."""

from __future__ import annotations

import ast
from pathlib import Path

LEDGER = Path(__file__).resolve().parents[1] / "ledger"

# Functions that take the engine without a ``begin``/``transaction`` call in their own body.
ENGINE_ALLOWED = {
    # Transaction owners that open it in a helper: the append transaction (raw asyncpg under the
    # project's row lock, retried as a whole), and the ones built on it.
    "entries.append_entries": "opens the append transaction in _append, retried as a whole",
    "imports.run_import": "its commit is append_entries' transaction",
    # The group commit's queue keeps the engine; its groups open their transaction in _commit, and
    # an append run alone is the plain path's (_append) transaction.
    "append_group.AppendGroups.__init__": "keeps the engine for its groups' transactions",
    "append_group._Request.alone": "the plain append transaction (_append)",
    "append_group.groups_for": "finds the engine's queue",
    "database.append_group_max": "reads a setting kept beside the engine, no database",
    "vouchers.approve_voucher": "the approval is recorded inside append_entries' transaction",
    "disclosures.publish_disclosure": "opens the REPEATABLE READ snapshot in _publish_once, retried",
    # verify's cache: a short head read, then verify's own REPEATABLE READ transaction; it never
    # holds a connection while it waits for another caller's verification.
    "tree.VerificationCache.verify": "a cache in front of verify (which owns its transaction)",
    "tree.VerificationCache._fresh": "the cache's head read, on a connection it holds only for it",
    # Setting the database up, before any request.
    "database.ensure_app_role_owns_nothing": "start-up check of the application role",
    "database.current_revision": "migrations: Alembic's revision on its own connection",
    # The public-write rate limit runs before a route is chosen, always on the primary, one
    # autocommitted statement at a time (ledger/rate_limit.py).
    "rate_limit.take": "rate limit: autocommitted upserts on the primary",
    "rate_limit.sweep": "rate limit: autocommitted delete on the primary",
    "pg.connection": "the raw driver of a pooled connection, for the rate limit",
    # Not a function of the ledger's: the replica router holds the engines it routes between.
    "replicas.ReadReplicas.__init__": "holds the primary it falls back to",
}

TRANSACTION_CALLS = {"begin", "transaction"}


def _functions(tree: ast.Module, module: str) -> list[tuple[str, ast.AsyncFunctionDef | ast.FunctionDef]]:
    found: list[tuple[str, ast.AsyncFunctionDef | ast.FunctionDef]] = []
    for node in tree.body:
        if isinstance(node, (ast.AsyncFunctionDef, ast.FunctionDef)):
            found.append((f"{module}.{node.name}", node))
        elif isinstance(node, ast.ClassDef):
            found.extend(
                (f"{module}.{node.name}.{item.name}", item)
                for item in node.body
                if isinstance(item, (ast.AsyncFunctionDef, ast.FunctionDef))
            )
    return found


def _takes_engine(node: ast.AsyncFunctionDef | ast.FunctionDef) -> bool:
    params = [*node.args.posonlyargs, *node.args.args]
    if params and params[0].arg in ("self", "cls"):
        params = params[1:]
    return bool(params) and params[0].annotation is not None and ast.unparse(params[0].annotation) == "AsyncEngine"


def _opens_transaction(node: ast.AsyncFunctionDef | ast.FunctionDef) -> bool:
    return any(
        isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute) and call.func.attr in TRANSACTION_CALLS
        for call in ast.walk(node)
    )


def engine_takers() -> dict[str, bool]:
    """Every ledger function whose first parameter is an AsyncEngine, and whether it opens a
    transaction in its own body."""
    takers: dict[str, bool] = {}
    for path in sorted(LEDGER.glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for name, node in _functions(tree, path.stem):
            if _takes_engine(node):
                takers[name] = _opens_transaction(node)
    return takers


def test_only_transaction_owners_take_the_engine() -> None:
    offenders = sorted(name for name, owns in engine_takers().items() if not owns and name not in ENGINE_ALLOWED)
    assert not offenders, (
        f"these ledger functions take the AsyncEngine but open no transaction: {offenders}. "
        "Take an AsyncConnection instead (the caller opens it: a route's db.connect(), api/db.py), "
        "or, for a transaction owner that opens its transaction in a helper, add it to ENGINE_ALLOWED with why."
    )


def test_the_allow_list_names_only_engine_takers_that_need_it() -> None:
    """No stale entry: each allowed name exists, still takes the engine, and opens no transaction
    itself (one that does needs no entry)."""
    takers = engine_takers()
    stale = sorted(name for name in ENGINE_ALLOWED if takers.get(name, True))
    assert not stale, (
        f"remove from ENGINE_ALLOWED (gone, no longer taking the engine, or opening its own transaction): {stale}"
    )


def test_the_check_sees_a_plain_read_that_takes_the_engine() -> None:
    """The check itself: a read that opens ``engine.connect()`` is caught, a ``begin()`` is not."""
    source = (
        "async def read(engine: AsyncEngine, code: str) -> int:\n"
        "    async with engine.connect() as conn:\n"
        "        return 1\n"
        "async def write(engine: AsyncEngine, code: str) -> None:\n"
        "    async with engine.begin() as conn:\n"
        "        pass\n"
        "async def fine(conn: AsyncConnection, code: str) -> int:\n"
        "    return 1\n"
    )
    found = {name: (_takes_engine(node), _opens_transaction(node)) for name, node in _functions(ast.parse(source), "m")}
    assert found == {"m.read": (True, False), "m.write": (True, True), "m.fine": (False, False)}


API = LEDGER.parent / "api"
ROUTE_DECORATORS = {"get", "post", "put", "patch", "delete", "route"}


def test_handlers_take_the_request_db_not_the_engine() -> None:
    """A route handler reaches the database through ``db: Db`` (api/db.py), whose connections
    open lazily from the request's engine (primary or replica); none takes ``engine`` itself."""
    offenders = []
    for path in sorted(API.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in tree.body:
            if not isinstance(node, ast.AsyncFunctionDef):
                continue
            called = [d.func if isinstance(d, ast.Call) else d for d in node.decorator_list]
            names = {d.id for d in called if isinstance(d, ast.Name)}
            params = [*node.args.args, *node.args.kwonlyargs]
            if names & ROUTE_DECORATORS and any(a.arg == "engine" for a in params):
                offenders.append(f"{path.relative_to(API.parent)}:{node.lineno} {node.name}")
    assert offenders == []
