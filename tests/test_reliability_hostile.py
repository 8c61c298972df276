"""Hostile input: refused with a clear 400/422 (never a 5xx), or stored and shown literally.

- Every JSON write route, with a valid body made hostile: every text value in turn holding a NUL
  or an escaped lone surrogate (``\\ud800``), the whole body or one field 10,000 arrays or objects
  deep, and a raw byte that is not UTF-8. Each is refused with problem+json, a stable code and a
  Chinese ``detail``, and nothing changes.
- Template-injection strings (``{{7*7}}``, ``${7*7}``, ``<%= 7*7 %>``) in every text field of
  every kind of entry, a decision, progress notes, an objection and the project itself are
  stored, and shown as written in JSON, CSV, XLSX, the resident pages (escaped HTML) and the PDF
  sheet (read back with pdftotext), never evaluated.
- The resident pages' forms and query strings, given the same: never a 5xx.
"""

from __future__ import annotations

import html
import json
import re
import subprocess
from collections.abc import Iterator
from typing import Any

from tests.api_support import (
    World,
    all_entries,
    contribution,
    expenditure,
    grant,
    in_kind,
    new_key,
    past,
    pledge,
    refund,
    reversal,
    today,
    unique,
    xlsx_text,
)
from tests.pages_support import publish

TEMPLATES = ("{{7*7}}", "${7*7}", "<%= 7*7 %>")
CJK = re.compile(r"[\u4e00-\u9fff]")
DEEP = 10_000


# -- refusals ----------------------------------------------------------------------------------


def _string_paths(node: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Where the strings of a body are (dict keys and list indexes)."""
    if isinstance(node, str):
        yield path
    elif isinstance(node, dict):
        for k, v in node.items():
            yield from _string_paths(v, (*path, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _string_paths(v, (*path, i))


def _replaced(node: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    copy = dict(node) if isinstance(node, dict) else list(node)
    copy[path[0]] = _replaced(node[path[0]], path[1:], value)
    return copy


def _hostile_variants(body: dict[str, Any]) -> Iterator[tuple[str, bytes]]:
    # ensure_ascii: a lone surrogate is written as the escape "\ud800", which JSON allows.
    for path in _string_paths(body):
        where = ".".join(map(str, path))
        for label, value in (("NUL", "前\x00后"), ("lone surrogate", "前\ud800后"), ("low surrogate", "\udfff")):
            yield f"{label} in {where}", json.dumps(_replaced(body, path, value)).encode()
    yield "arrays 10,000 deep", b"[" * DEEP + b"]" * DEEP
    yield "objects 10,000 deep", b'{"a":' * DEEP + b"1" + b"}" * DEEP
    first = next(iter(body))
    deep_field = json.dumps({**body, first: "DEEP"}).replace('"DEEP"', "[" * 5_000 + "]" * 5_000)
    yield f"{first} 5,000 deep", deep_field.encode()
    text_path = next(iter(_string_paths(body)))
    marked = json.dumps(_replaced(body, text_path, "BYTE"), ensure_ascii=False).encode()
    yield "a byte that is not UTF-8", marked.replace(b"BYTE", b"\xff\xfe")


async def _state(world: World, project: str, sheet: int) -> list[Any]:
    """What a refused request must leave as it was."""
    api = world.api
    reads = [
        f"/api/v1/projects/{project}",
        f"/api/v1/projects/{project}/decisions",
        f"/api/v1/projects/{project}/progress",
        f"/api/v1/projects/{project}/disclosures",
        f"/api/v1/disclosures/{sheet}/objections",
        "/api/v1/communities?limit=500",
    ]
    return [(await api.get(path, token=world.admin)).json() for path in reads]


async def test_hostile_bodies_are_refused_with_problem_json_and_change_nothing(world: World) -> None:
    api = world.api
    project = await world.project()
    first = await world.entry(project, contribution("500", "张三", "3栋2单元501"))
    await world.entry(project, grant("50000"))
    sheet = await publish(world, project)
    objection = await api.post(f"/api/v1/disclosures/{sheet['id']}/objections", {"message": "请核实", "contact": "3栋"})
    assert objection.status_code == 201, objection.text
    person = {"name": "张三", "household": "3栋2单元501"}
    routes: list[tuple[str, str | None, dict[str, Any]]] = [
        (
            "/api/v1/communities",
            world.admin,
            {"code": unique("h"), "name": "小区", "district": "下陆区", "households": 9},
        ),
        (
            "/api/v1/projects",
            world.admin,
            {
                "code": unique("h"),
                "community": world.community,
                "title": "刷黑",
                "description": "路面",
                "budget_lines": [{"category": "materials", "label": "沥青", "source": "crowdfunding", "amount": "9"}],
            },
        ),
        *[
            (f"/api/v1/projects/{project}/entries", world.treasurer, body)
            for body in (
                contribution("1", "李四", "4栋"),
                grant("1"),
                expenditure("1"),
                refund("1", person),
                in_kind("1"),
                pledge("1"),
                reversal(first["seq"]),
            )
        ],
        (f"/api/v1/projects/{project}/entries/batch", world.treasurer, {"entries": [contribution("1", "李四", "4栋")]}),
        (f"/api/v1/projects/{project}/vouchers", world.treasurer, expenditure("1")),
        (
            f"/api/v1/projects/{project}/disclosures",
            world.treasurer,
            {"period_start": past(30), "period_end": today().isoformat(), "notice_days": 7, "title": "公示"},
        ),
        (f"/api/v1/disclosures/{sheet['id']}/objections", None, {"message": "请核实", "contact": "3栋"}),
        (f"/api/v1/objections/{objection.json()['id']}/responses", world.treasurer, {"message": "已核实"}),
        (
            f"/api/v1/projects/{project}/decisions",
            world.treasurer,
            {"stage": "proposal", "held_on": past(), "body": "居委会", "summary": "提议"},
        ),
        (f"/api/v1/projects/{project}/progress", world.treasurer, {"happened_on": past(), "text": "开工"}),
        (f"/api/v1/projects/{project}/evaluations", None, {"household_code": "ABCD-2345", "score": 5, "comment": "好"}),
        ("/api/v1/tokens", world.admin, {"name": "报账员", "role": "treasurer", "community": world.community}),
        (f"/api/v1/contributors/{first['contributor']['id']}/erasure", world.admin, {"reason": "本人申请"}),
        (
            "/api/v1/award-policies",
            world.admin,
            {"code": unique("a"), "name": "以奖代补", "issuer": "住建局", "rate": "0.5", "cap": "1000"},
        ),
        (f"/api/v1/communities/{world.community}/witnesses", world.admin, {"name": "业委会", "public_key": "A" * 44}),
    ]
    before = await _state(world, project, sheet["id"])
    refusals = 0
    failures = []
    for url, token, body in routes:
        for label, content in _hostile_variants(body):
            headers = {"Content-Type": "application/json", "Idempotency-Key": new_key()}
            if token is not None:
                headers["Authorization"] = f"Bearer {token}"
            response = await api.client.post(url, content=content, headers=headers)
            refusals += 1
            ok = (
                response.status_code in (400, 422)
                and response.headers.get("content-type", "").startswith("application/problem+json")
                and response.json()["code"] in ("malformed_request", "validation_failed")
                and CJK.search(response.json()["detail"])
            )
            if not ok:
                failures.append(f"{url} {label}: {response.status_code} {response.text[:200]}")
    assert failures == [], "\n".join(failures)
    assert await _state(world, project, sheet["id"]) == before, "a refused request changed something"
    print(f"\n{refusals} hostile bodies over {len(routes)} routes, each refused with 400/422")


# -- stored and shown literally ----------------------------------------------------------------


def _pdf_text(pdf: bytes) -> str:
    return subprocess.run(["pdftotext", "-", "-"], input=pdf, capture_output=True, check=True).stdout.decode()


def _squeezed(text: str) -> str:
    """Without whitespace: a narrow table cell of the sheet wraps ``<%= 7*7 %>invoice`` in two."""
    return re.sub(r"\s+", "", text)


def _shown(output: str, fields: set[str], tagged: dict[str, list[str]], *, squeeze: bool = False) -> list[str]:
    """The problems: a field's template strings missing from the output, or evaluated there."""
    look = _squeezed(output) if squeeze else output
    problems = []
    for f in sorted(fields):
        for value in tagged[f]:
            literal = _squeezed(value) if squeeze else value
            if literal not in look:
                problems.append(f"{f}: {value!r} missing")
        if f"49{f}" in look:
            problems.append(f"{f}: evaluated to 49")
    return problems


async def test_template_strings_are_stored_and_shown_literally(world: World) -> None:
    api = world.api
    tagged: dict[str, list[str]] = {}

    def tag(template: str, field: str) -> str:
        tagged.setdefault(field, []).append(template + field)
        return template + field

    project = await world.project(title=tag("{{7*7}}", "title"), description=tag("${7*7}", "description"))
    url = f"/api/v1/projects/{project}/entries"
    for t in TEMPLATES:
        bodies = [
            contribution(
                "500", tag(t, "name"), tag(t, "household"), receipt_no=tag(t, "receipt"), memo=tag(t, "cmemo")
            ),
            grant(grantor=tag(t, "grantor"), document_no=tag(t, "docno"), memo=tag(t, "gmemo")),
            expenditure("10", payee=tag(t, "payee"), invoice_no=tag(t, "invoice"), memo=tag(t, "xmemo")),
            in_kind(name=tag(t, "kname"), description=tag(t, "descr"), memo=tag(t, "kmemo")),
            pledge(memo=tag(t, "pmemo")),
            refund("1", {"name": t + "name", "household": t + "household"}, memo=tag(t, "rmemo")),
        ]
        for body in bodies:
            answer = await api.post(url, body, token=world.treasurer, key=new_key())
            assert answer.status_code == 201, answer.text
        undo = await api.post(
            url, reversal(answer.json()["seq"], reason=tag(t, "reason")), token=world.treasurer, key=new_key()
        )
        assert undo.status_code == 201, undo.text
        note = {"happened_on": past(), "text": tag(t, "progress")}
        assert (await api.post(f"/api/v1/projects/{project}/progress", note, token=world.treasurer)).status_code == 201
    decision = {"stage": "proposal", "held_on": past(), "body": tag("<%= 7*7 %>", "dbody")}
    decision["summary"] = tag("{{7*7}}", "dsummary")
    assert (await api.post(f"/api/v1/projects/{project}/decisions", decision, token=world.treasurer)).status_code == 201
    sheet = await publish(world, project)
    filed = {"message": tag("${7*7}", "objection"), "contact": "3栋"}
    assert (await api.post(f"/api/v1/disclosures/{sheet['id']}/objections", filed)).status_code == 201

    entry_fields = {"cmemo", "receipt", "grantor", "docno", "gmemo", "payee", "invoice", "xmemo", "descr", "kmemo"}
    entry_fields |= {"pmemo", "rmemo", "reason"}
    # Every entry text reaches the exports: the 说明 cell joins description, reason and memo.
    export_fields = entry_fields
    staff = await all_entries(api.client, project, Authorization=f"Bearer {world.treasurer}")
    public = await all_entries(api.client, project)
    csv_url, xlsx_url = f"{url}.csv", f"{url}.xlsx"
    pages = [f"/p/{project}", f"/p/{project}/entries", f"/p/{project}/progress", f"/d/{sheet['id']}"]
    pages += [f"/p/{project}/e/{e['seq']}" for e in public]
    page_text = ""
    for path in pages:
        response = await api.get(path)
        assert response.status_code == 200, path
        # Escaped, never raw markup: "<%=" would open a tag-like run in the page.
        assert "<%=" not in response.text, path
        page_text += html.unescape(response.text)
    outputs: dict[str, tuple[str, set[str], bool]] = {
        "staff JSON": (json.dumps(staff, ensure_ascii=False), entry_fields | {"name", "household", "kname"}, False),
        "public JSON": (json.dumps(public, ensure_ascii=False), entry_fields, False),
        "staff CSV": (
            (await api.get(csv_url, token=world.treasurer)).text,
            export_fields | {"name", "household"},
            False,
        ),
        "public CSV": ((await api.get(csv_url)).text, export_fields, False),
        "public XLSX": (html.unescape(xlsx_text((await api.get(xlsx_url)).content)), export_fields, False),
        "pages": (
            page_text,
            entry_fields | {"title", "description", "progress", "dbody", "dsummary", "objection"},
            False,
        ),
        # The sheet prints what SHEET.md lists (no memos of contributions or expenditures).
        "PDF sheet": (
            _pdf_text((await api.get(sheet["pdf_url"])).content),
            {
                "title",
                "grantor",
                "docno",
                "receipt",
                "payee",
                "invoice",
                "descr",
                "rmemo",
                "reason",
                "dbody",
                "dsummary",
            },
            True,
        ),
        "objections JSON": (
            (await api.get(f"/api/v1/disclosures/{sheet['id']}/objections")).text,
            {"objection"},
            False,
        ),
    }
    problems = [
        f"{name}: {p}"
        for name, (output, fields, squeeze) in outputs.items()
        for p in _shown(output, fields, tagged, squeeze=squeeze)
    ]
    assert problems == [], "\n".join(problems)
    # Names are masked in public: the template string in a name never reaches it in full.
    assert not any(t + "name" in json.dumps(public, ensure_ascii=False) for t in TEMPLATES)


# -- the resident pages' forms and queries -----------------------------------------------------


async def test_hostile_forms_and_queries_on_the_resident_pages_never_fail(world: World) -> None:
    api = world.api
    project = await world.project()
    await world.entry(project, contribution("500"))
    sheet = await publish(world, project)
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    bodies = [b"message=%00&contact=", b"message=%FF%FE&contact=%ED%A0%80", b"message=" + b"%5B" * 5000]
    bodies += [f"message={t}".encode() for t in ("%7B%7B7*7%7D%7D", "%24%7B7*7%7D", "%3C%25%3D+7*7+%25%3E")]
    statuses = []
    for body in bodies:
        for path in (f"/d/{sheet['id']}/objections", f"/p/{project}/evaluations"):
            response = await api.client.post(path, content=body, headers=form, follow_redirects=False)
            statuses.append(response.status_code)
            assert response.status_code < 500, (path, body[:40], response.status_code)
    queries = ["q=%00", "q=%FF", "q=%ED%A0%80", "q={{7*7}}", "kind=%24%7B7*7%7D", "after_seq=99999999999999999999"]
    for path in ("/", f"/p/{project}/entries", f"/api/v1/projects/{project}/entries", "/api/v1/communities"):
        for query in queries:
            response = await api.client.get(f"{path}?{query}")
            statuses.append(response.status_code)
            assert response.status_code < 500, (path, query, response.status_code, response.text[:200])
    # The objections filed through the form are shown as written on the sheet's page.
    page = html.unescape((await api.get(f"/d/{sheet['id']}")).text)
    for t in TEMPLATES:
        assert t in page, t
    assert 303 in statuses and any(s in (400, 422) for s in statuses), statuses
