"""No public (anonymous) response carries a contributor's full name or a phone number.

Every anonymous response the API tests make through ``tests.api_support.Api`` is recorded; this
module runs after the other API modules (file order), adds a crawl of its own over every public
read of a project seeded with all the fixture names and two phone numbers, then scans everything
recorded. The crawl alone makes the test meaningful when the module runs by itself.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from ledger.contributors import ContributorRef
from ledger.drafts import EntryDraft
from ledger.entries import append_entries
from tests.api_support import (
    PERSON_NAMES,
    PHONE_NUMBERS,
    PUBLIC_RESPONSES,
    World,
    contribution,
    full_names_in,
    new_key,
    past,
    phone_numbers_in,
)
from tests.pages_support import publish

# Fixed example files that hold no ledger data: the import template's example row is "张三".
STATIC_EXAMPLES = ("/api/v1/imports/template.xlsx",)


async def _seed(world: World) -> str:
    project = await world.project()
    entries = [contribution(amount="10", name=name, household="3栋2单元501") for name in PERSON_NAMES]
    response = await world.api.post(
        f"/api/v1/projects/{project}/entries/batch", {"entries": entries}, token=world.treasurer, key=new_key()
    )
    assert response.status_code == 201, response.text
    drafts = [
        EntryDraft(
            kind="contribution",
            occurred_on=date(2026, 1, 5),
            amount_fen=5_000,
            contributor=ContributorRef(name=name, household="9栋", phone=phone),
        )
        for name, phone in zip(("王五", "赵六"), PHONE_NUMBERS, strict=True)
    ]
    await append_entries(world.engine, project, drafts, recorded_by="test", render=lambda recorded: {})
    decision = {"stage": "proposal", "held_on": past(), "body": "居委会"}
    assert (
        await world.api.post(f"/api/v1/projects/{project}/decisions", decision, token=world.treasurer)
    ).status_code == 201
    return project


async def _crawl(world: World, project: str) -> None:
    api = world.api
    size = (await api.get(f"/api/v1/projects/{project}/ledger")).json()["size"]
    paths: list[tuple[str, dict[str, Any] | None]] = [
        ("/healthz", None),
        ("/readyz", None),
        ("/schema/openapi.json", None),
        (f"/api/v1/communities/{world.community}", None),
        ("/api/v1/communities", {"limit": 500}),
        ("/api/v1/projects", {"community": world.community, "limit": 500}),
        (f"/api/v1/projects/{project}", None),
        (f"/api/v1/projects/{project}/entries", {"limit": 500}),
        (f"/api/v1/projects/{project}/entries.csv", None),
        (f"/api/v1/projects/{project}/entries.xlsx", None),
        (f"/api/v1/projects/{project}/decisions", None),
        (f"/api/v1/projects/{project}/ledger", None),
        (f"/api/v1/projects/{project}/ledger/verify", None),
        (f"/api/v1/projects/{project}/ledger/consistency", {"from": 1, "to": size}),
    ]
    paths += [(f"/api/v1/projects/{project}/entries/{seq}", None) for seq in range(1, size + 1)]
    paths += [(f"/api/v1/projects/{project}/ledger/inclusion", {"seq": seq}) for seq in range(1, size + 1)]
    for kind in ("contribution", "grant"):
        paths.append((f"/api/v1/projects/{project}/entries", {"kind": kind}))
        paths.append((f"/api/v1/projects/{project}/entries.csv", {"kind": kind}))
    # The resident pages (HTML) show the same people: every page of the page map.
    paths += [("/", None), (f"/c/{world.community}", None), (f"/p/{project}", None), (f"/p/{project}/check", None)]
    paths += [(f"/p/{project}/entries", {"kind": kind}) for kind in ("contribution", "pledge", "in_kind")]
    paths += [(f"/p/{project}/e/{seq}", None) for seq in range(1, size + 1)]
    sheet = await publish(world, project)
    await api.post(f"/api/v1/disclosures/{sheet['id']}/objections", {"message": "请核实 13812345678 的出资"})
    paths += [(f"/d/{sheet['id']}", None), (f"/api/v1/disclosures/{sheet['id']}/objections", None)]
    paths += [(f"/api/v1/disclosures/{sheet['id']}", None), (f"/api/v1/disclosures/{sheet['id']}/pdf", None)]
    paths += [(f"/api/v1/projects/{project}/evaluations", None), (f"/api/v1/projects/{project}/progress", None)]
    paths += [(f"/api/v1/projects/{project}/pledges", None), (f"/api/v1/projects/{project}/award", None)]
    paths += [
        (f"/api/v1/projects/{project}/disclosures", None),
        (f"/api/v1/disclosures/{sheet['id']}/checkpoint", None),
    ]
    for path, params in paths:
        response = await api.get(path, params=params)
        assert response.status_code == 200, (path, response.status_code)


async def test_no_public_response_has_a_full_name_or_phone(world: World) -> None:
    project = await _seed(world)
    # Staff see the names (so the seed really holds them) ...
    staff = (await world.api.get(f"/api/v1/projects/{project}/entries", token=world.treasurer)).text
    assert set(full_names_in(staff)) == set(PERSON_NAMES)
    # ... the public never does.
    await _crawl(world, project)
    assert len(PUBLIC_RESPONSES) >= 30
    assert any(r.body[:5] == b"%PDF-" and "公示" in r.text() for r in PUBLIC_RESPONSES)
    leaks = []
    for recorded in PUBLIC_RESPONSES:
        if recorded.url.endswith(STATIC_EXAMPLES):
            continue
        body = recorded.text()
        names, phones = full_names_in(body), phone_numbers_in(body)
        if names or phones:
            leaks.append(f"{recorded.method} {recorded.url} → {recorded.status}: names={names} phones={phones}")
    assert leaks == [], "\n".join(leaks)


def test_phone_scan_ignores_hashes_but_finds_phones() -> None:
    """The scanner itself: hex hashes that happen to hold 11 digits are no phone; a phone is."""
    digest = "ab" + "13812345678" + "c" * 51
    assert phone_numbers_in(f'{{"leaf_hash": "{digest}", "id": "13812345-6789-4abc-8def-138123456789"}}') == []
    assert phone_numbers_in("联系电话13812345678，") == ["13812345678"]
    assert phone_numbers_in('"memo": "15900001111"') == ["15900001111"]
