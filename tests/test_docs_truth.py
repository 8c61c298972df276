"""The documents say what the service does (issue 8, item 15).

- docs/deploy.md's table of the application role's privileges equals what a migrated database
  grants it: table by table, column by column, nothing more, with the append-only tables named.
- The README's table of which writes take an ``Idempotency-Key`` equals the OpenAPI document's
  write operations, and the routes behave so: a required key's absence is 400
  ``idempotency_key_missing``, an optional one's is not.

When a migration grants something new or a write route is added, these fail until the documents
say so.
"""

from __future__ import annotations

import re
from pathlib import Path

import asyncpg

from tests.api_support import World, assert_problem
from tests.conftest import Database
from tests.test_ledger_append_only import dsn

ROOT = Path(__file__).resolve().parents[1]
PRIVILEGES = ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER")


def _table_after(path: Path, marker: str) -> list[list[str]]:
    """The cells of the markdown table that follows ``<!-- marker``, header and rule left out."""
    text = path.read_text(encoding="utf-8")
    start = text.index(f"<!-- {marker}")
    rows = []
    for line in text[start:].splitlines()[1:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    assert len(rows) > 2, f"no table after {marker} in {path.name}"
    return rows[2:]


# -- docs/deploy.md: the application role's grants ---------------------------------------------------

Grants = dict[str, tuple[frozenset[str], dict[str, frozenset[str]]]]  # table → (privileges, column privileges)


def _documented_grants() -> tuple[Grants, set[str]]:
    grants: Grants = {}
    append_only: set[str] = set()
    for tables_cell, privileges_cell in _table_after(ROOT / "docs" / "deploy.md", "app-role-grants"):
        tables = re.findall(r"`([a-z_]+)`", tables_cell)
        if "append-only" in privileges_cell:
            append_only.update(tables)
        # A parenthesis without column names is a remark, not a column list.
        cell = re.sub(r"\((?![^)]*`)[^)]*\)", "", privileges_cell)
        whole: set[str] = set()
        columns: dict[str, frozenset[str]] = {}
        for privilege, column_list in re.findall(r"\b(" + "|".join(PRIVILEGES) + r")\b(?:\s*\(([^)]*)\))?", cell):
            if column_list:
                columns[privilege] = frozenset(re.findall(r"`([a-z_]+)`", column_list))
            else:
                whole.add(privilege)
        for table in tables:
            assert table not in grants, f"{table} is in the table twice"
            grants[table] = (frozenset(whole), columns)
    return grants, append_only


_GRANTED = """
SELECT c.relname, array_agg(a.privilege_type::text) AS privileges
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace, aclexplode(c.relacl) a
WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND a.grantee = $1::regrole
GROUP BY c.relname
"""
_COLUMNS_GRANTED = """
SELECT c.relname, a.privilege_type::text AS privilege, array_agg(att.attname::text) AS columns
FROM pg_attribute att JOIN pg_class c ON c.oid = att.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace,
     aclexplode(att.attacl) a
WHERE n.nspname = 'public' AND a.grantee = $1::regrole
GROUP BY c.relname, a.privilege_type
"""
_APPEND_ONLY = """
SELECT c.relname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
WHERE t.tgname = c.relname || '_no_update_delete' AND t.tgenabled = 'A'
"""
_OWNED_OR_UNUSABLE = """
SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'public' AND (
    pg_has_role($1, c.relowner, 'MEMBER')
    OR (c.relkind = 'S' AND NOT has_sequence_privilege($1, c.oid, 'USAGE'))
)
"""


async def test_deploy_md_states_the_application_roles_real_grants(database: Database) -> None:
    role = database.settings.app_role
    conn = await asyncpg.connect(dsn(database.superuser_url))
    try:
        whole = {r["relname"]: frozenset(r["privileges"]) for r in await conn.fetch(_GRANTED, role)}
        columns: dict[str, dict[str, frozenset[str]]] = {}
        for r in await conn.fetch(_COLUMNS_GRANTED, role):
            columns.setdefault(r["relname"], {})[r["privilege"]] = frozenset(r["columns"])
        append_only = {r["relname"] for r in await conn.fetch(_APPEND_ONLY)}
        owned_or_unusable = [r["relname"] for r in await conn.fetch(_OWNED_OR_UNUSABLE, role)]
    finally:
        await conn.close()
    actual: Grants = {t: (whole.get(t, frozenset()), columns.get(t, {})) for t in set(whole) | set(columns)}
    documented, documented_append_only = _documented_grants()
    assert sorted(documented) == sorted(actual), "docs/deploy.md names exactly the tables the role may touch"
    for table, grant in actual.items():
        assert documented[table] == grant, f"{table}: docs/deploy.md says {documented[table]}, the database {grant}"
    assert documented_append_only == append_only, "the append-only tables are the ones with the triggers"
    assert owned_or_unusable == [], "the role owns nothing and may use every sequence"


# -- README: which writes take an Idempotency-Key ------------------------------------------------------

WRITE_METHODS = ("post", "put", "patch", "delete")
# README row → what OpenAPI says of the header ("required unless dry_run" is an optional header
# that the route demands when the request is not a dry run).
CLASSES = {"required unless": "conditional", "required": "required", "optional": "optional", "not taken": "none"}


def _operation(text: str) -> tuple[str, str]:
    method, path = text.split(" ", 1)
    return method.lower(), re.sub(r"\{[^}]*\}", "{}", path)


def _documented_keys() -> dict[tuple[str, str], str]:
    found: dict[tuple[str, str], str] = {}
    for kind_cell, writes_cell in _table_after(ROOT / "README.md", "idempotency-keys"):
        kind = next(v for k, v in CLASSES.items() if kind_cell.startswith(k))
        for write in re.findall(r"`((?:POST|PUT|PATCH|DELETE) [^`]+)`", writes_cell):
            assert _operation(write) not in found, write
            found[_operation(write)] = kind
    return found


async def test_readme_states_which_writes_take_an_idempotency_key(world: World) -> None:
    document = (await world.api.get("/schema/openapi.json")).json()
    served: dict[tuple[str, str], str] = {}
    for path, item in document["paths"].items():
        for method in WRITE_METHODS:
            if method not in item or not path.startswith("/api/v1/"):
                continue
            key = [p for p in item[method].get("parameters", []) if p["name"] == "Idempotency-Key"]
            kind = ("required" if key[0].get("required") else "optional") if key else "none"
            served[_operation(f"{method} {path.removeprefix('/api/v1')}")] = kind
    documented = _documented_keys()
    assert sorted(documented) == sorted(served), "the README's table names every write the API serves"
    for operation, kind in served.items():
        said = "optional" if documented[operation] == "conditional" else documented[operation]
        assert said == kind, f"{operation}: README says {documented[operation]}, OpenAPI {kind}"

    # The routes do what both say: without a key a required one is refused before anything else
    # is looked at; an optional one goes on to its other checks.
    project = await world.project()
    concrete = {"{}": project}
    for (method, path), kind in documented.items():
        if kind == "none":
            continue
        url = "/api/v1" + path.replace("{}", concrete["{}"] if path.startswith("/projects/") else "999999999", 1)
        headers = {"Content-Type": "application/json"}
        response = await world.api.request(method.upper(), url, content=b"{}", token=world.treasurer, headers=headers)
        if kind in ("required", "conditional"):
            assert_problem(response, 400, "idempotency_key_missing")
        else:
            assert response.json().get("code") != "idempotency_key_missing", (url, response.text)
