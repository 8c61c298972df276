"""The kind registry (ledger/kinds.py) is the one definition every layer reads: the API's request
union and filters, its error tags, the workspace's forms, the import, the labels and the
database's own CHECK must all name exactly its kinds (issue 9)."""

from __future__ import annotations

import re
import typing
from pathlib import Path

from pydantic import BaseModel
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from api import errors, schemas
from api.routes.imports import IMPORT_KINDS
from api.workspace.forms import FIELDS, FORM_KINDS
from ledger import accounts, canonical, drafts, imports, kinds
from reports import labels


def union_members() -> dict[str, type[BaseModel]]:
    union = typing.get_args(schemas.EntryIn)[0]
    members: dict[str, type[BaseModel]] = {}
    for model in typing.get_args(union):
        (tag,) = typing.get_args(model.model_fields["kind"].annotation)
        members[tag] = model
    return members


def test_the_request_union_has_one_model_per_kind_with_its_fields() -> None:
    members = union_members()
    assert tuple(members) == kinds.NAMES
    for name, model in members.items():
        kind = kinds.get(name)
        api_names = {"reverses" if f == "reverses_seq" else f for f in kind.fields}
        assert api_names <= set(model.model_fields), name
        assert ("contributor" in model.model_fields) == kind.contributor, name
        for field, _ in kind.required:
            assert model.model_fields[field].is_required(), (name, field)


def test_every_layer_names_the_same_kinds() -> None:
    assert typing.get_args(schemas.EntryKind) == kinds.NAMES
    assert frozenset(kinds.NAMES) == errors._UNION_TAGS
    assert drafts.ENTRY_KINDS == kinds.NAMES
    assert FORM_KINDS == kinds.NAMES and set(FIELDS) == set(kinds.NAMES)
    assert IMPORT_KINDS == kinds.RECORDED == imports.IMPORT_KINDS
    assert set(imports.KIND_FIELDS) == set(kinds.RECORDED)
    assert {k.name: k.label for k in kinds.KINDS} == labels.KIND_LABELS
    for k in kinds.KINDS:
        assert set(k.fields) <= set(canonical.ENTRY_TEXT_FIELDS), k.name
        for account in (k.debit, k.credit):
            assert account is None or account == accounts.EXPENSES_PREFIX or account in accounts.BASE_ACCOUNTS
            assert account is None or account == accounts.EXPENSES_PREFIX or account in labels.ACCOUNT_LABELS


def test_cash_identity_comes_from_the_kinds() -> None:
    balances = {"cash": 113_520, "contributions": -20_000, "grants": -100_000, "other_income": -3_520}
    balances |= {"expenses:materials": 10_000, "refunds": 0, "in_kind:received": 500, "in_kind:contributed": -500}
    assert kinds.cash_from_balances(balances) == balances["cash"]
    assert kinds.INCOME_KINDS == ("contribution", "grant", "other_income")


async def test_the_database_check_names_exactly_the_registry_kinds(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        definition = (
            await conn.execute(
                text(
                    "SELECT pg_get_constraintdef(oid) FROM pg_constraint "
                    "WHERE conname = 'entries_kind_known' AND conrelid = 'entries'::regclass"
                )
            )
        ).scalar_one()
    assert sorted(kind for kind in kinds.NAMES if f"'{kind}'" in definition) == sorted(kinds.NAMES)
    assert definition.count("'::text") == len(kinds.NAMES), definition


def test_the_pages_checker_script_labels_kinds_as_the_registry() -> None:
    # The resident's in-browser check (api/static/check.js) carries its own copy of the labels:
    # it works from a saved page too. Held to the registry here.
    script = (Path(__file__).resolve().parents[1] / "api" / "static" / "check.js").read_text(encoding="utf-8")
    block = re.search(r"const KIND_LABELS = \{(.*?)\};", script, re.S)
    assert block is not None
    shown = dict(re.findall(r"(\w+): \"([^\"]+)\"", block.group(1)))
    assert shown == dict(kinds.LABELS)
