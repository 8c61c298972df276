"""The resident pages over real HTTP: every page of the page map renders in Chinese, light and
safe; figures equal the JSON API's; errors are friendly pages; the objection form goes through
the API's service function and rate limit."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from litestar.testing import AsyncTestClient

from api.app import create_app
from api.pages.views import money
from tests.api_support import Api, LiveServer, World, app_settings, full_names_in, phone_numbers_in, unique
from tests.conftest import Database
from tests.pages_support import HOSTILE, PAGE_BYTES_MAX, Seeded, page_paths, scan, seed, text_of


@pytest.fixture(scope="module")
async def seeded(world: World) -> Seeded:
    return await seed(world)


def assert_safe_headers(headers: object) -> None:
    csp = headers["content-security-policy"]  # type: ignore[index]
    script_src = re.search(r"script-src ([^;]+)", csp)
    assert script_src and script_src.group(1).strip() == "'self'", csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert "frame-ancestors 'none'" in csp
    assert headers["x-content-type-options"] == "nosniff"  # type: ignore[index]
    assert headers["referrer-policy"] in ("same-origin", "no-referrer", "strict-origin-when-cross-origin")  # type: ignore[index]


async def test_every_page_is_chinese_light_and_safe(api: Api, seeded: Seeded) -> None:
    for path in page_paths(seeded):
        response = await api.get(path)
        assert response.status_code == 200, (path, response.text[:300])
        assert response.headers["content-type"].startswith("text/html"), path
        assert_safe_headers(response.headers)
        html = response.text
        assert len(response.content) < PAGE_BYTES_MAX, (path, len(response.content))
        assert '<html lang="zh-CN">' in html, path
        found = scan(html)
        meta = {a.get("property") or a.get("name"): a.get("content") for t, a in found.tags if t == "meta"}
        assert meta.get("og:title") and meta.get("og:description") and meta.get("viewport"), (path, meta)
        sheets = [a["href"] for t, a in found.tags if t == "link" and a.get("rel") == "stylesheet"]
        assert sheets == ["/static/pages.css"], (path, sheets)
        assert [t for t, _ in found.tags].count("h1") == 1, path
        assert not found.inline_scripts, path
        for tag, attrs in found.tags:
            assert not any(name.startswith("on") for name in attrs), (path, tag, attrs)
            if tag == "script":
                assert (attrs.get("src") or "").startswith("/static/"), (path, attrs)
            if tag in ("input", "select", "textarea") and attrs.get("type") != "hidden":
                labels = {a.get("for") for t, a in found.tags if t == "label"}
                assert attrs.get("id") in labels, (path, tag, attrs)
        assert not full_names_in(html) and not phone_numbers_in(text_of(html)), path


async def test_the_stylesheet_is_small_and_loads_no_font(api: Api) -> None:
    response = await api.get("/static/pages.css")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/css")
    assert len(response.content) < 12 * 1024
    assert "@font-face" not in response.text and "@import" not in response.text and "url(" not in response.text


async def test_scripts_are_served_by_the_service_with_their_licence(api: Api) -> None:
    for path in (
        "check.js",
        "merkle.js",
        "sha256.js",
        "cosign.js",
        "vendor/noble-hashes/sha2.js",
        "vendor/noble-hashes/utils.js",
        "vendor/noble-curves/ed25519.js",
        "vendor/noble-curves/abstract/edwards.js",
    ):
        response = await api.get(f"/static/{path}")
        assert response.status_code == 200, path
        assert response.headers["content-type"].split(";")[0] in ("text/javascript", "application/javascript"), path
        assert response.headers["x-content-type-options"] == "nosniff"
        assert "http://" not in response.text and "https://cdn" not in response.text, path
    for package in ("noble-hashes", "noble-curves"):
        licence = await api.get(f"/static/vendor/{package}/LICENSE")
        assert licence.status_code == 200 and "MIT License" in licence.text and "Paul Miller" in licence.text


async def test_hostile_values_show_as_text(api: Api, seeded: Seeded) -> None:
    for path in (f"/p/{seeded.project}/e/{seeded.hostile_seq}", f"/p/{seeded.project}", f"/p/{seeded.project}/entries"):
        html = (await api.get(path)).text
        assert "<script>alert(1)</script>" not in html and "<img src=x" not in html, path
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html, path
        assert not [a for t, a in scan(html).tags if t == "img"], path
    # Query values echoed into the check form are escaped too.
    html = (await api.get(f"/p/{seeded.project}/check", params={"root": HOSTILE[1], "seq": "</textarea><b>"})).text
    assert "<img src=x" not in html and "</textarea><b>" not in html


async def test_project_figures_equal_the_api(api: Api, seeded: Seeded) -> None:
    summary = (await api.get(f"/api/v1/projects/{seeded.project}")).json()["summary"]
    html = (await api.get(f"/p/{seeded.project}")).text
    for key in ("contributed", "granted", "spent", "balance"):
        shown = re.search(rf'id="fig-{key}">([^<]+)<', html)
        assert shown and shown.group(1) == money(summary[key]), (key, shown and shown.group(1), summary[key])
    assert money(summary["balance"]) == "¥50,838.45"  # 2,088.80 + 50,000 − 1,200.35 − 50 (the ¥99 reversed)
    assert summary["ledger"]["root_hash"][:4] in html and f"账本记录数 {summary['ledger']['size']}" in html
    assert "决策程序已豁免" in html  # the project's spending gate is waived
    for label in ("提议", "商议", "审议", "决议", "决议公开", "实施", "验收", "共评", "结项"):
        assert f"<span>{label}</span>" in html
    sheet = seeded.sheets[-1]
    assert f'href="/d/{sheet["id"]}"' in html and "公示中" in html and sheet["pdf_url"] in html


async def test_entries_show_reversals_anonymous_and_erased_as_on_the_sheet(api: Api, seeded: Seeded) -> None:
    p = seeded.project
    reversal = (await api.get(f"/p/{p}/e/{seeded.reversal_seq}")).text
    assert 'class="fields red"' in reversal and "红字冲销" in reversal and "-¥99.00" in reversal
    assert "金额录入错误" in reversal
    original = (await api.get(f"/p/{p}/e/{seeded.reversal_seq - 1}")).text
    assert f'href="/p/{p}/e/{seeded.reversal_seq}"' in original and "已被冲正" in original
    assert "已注销" in (await api.get(f"/p/{p}/e/{seeded.erased_seq}")).text
    anonymous = (await api.get(f"/p/{p}/e/{seeded.anonymous_seq}")).text
    assert "匿名" in anonymous and "钱" not in text_of(anonymous).split("出资人")[1][:20]
    listing = (await api.get(f"/p/{p}/entries")).text
    for shown in ("张*", "欧阳**", "黄石某物业服务有限公司", "匿名", "已注销", "3栋", "¥1,200.35"):
        assert shown in listing, shown
    contributions = (await api.get(f"/p/{p}/entries", params={"kind": "expenditure"})).text
    assert "¥1,200.35" in contributions and "张*" not in contributions


async def test_entries_are_paginated(api: Api, world: World) -> None:
    project = await world.project()
    from tests.api_support import contribution, new_key

    batch = [contribution("1", "张三") for _ in range(53)]
    response = await api.post(
        f"/api/v1/projects/{project}/entries/batch", {"entries": batch}, token=world.treasurer, key=new_key()
    )
    assert response.status_code == 201
    first = (await api.get(f"/p/{project}/entries")).text
    assert f'href="/p/{project}/e/50"' in first and f'href="/p/{project}/e/51"' not in first
    assert "after=50" in first
    second = (await api.get(f"/p/{project}/entries", params={"after": 50})).text
    assert f'href="/p/{project}/e/53"' in second and f'href="/p/{project}/e/50"' not in second
    assert "after=" not in second


async def test_errors_are_friendly_chinese_pages_and_the_api_keeps_problem_json(api: Api, seeded: Seeded) -> None:
    browser = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}
    for path in ("/nope", "/p/no-such-project", f"/p/{seeded.project}/e/999999", "/d/999999999", "/c/nobody"):
        response = await api.get(path, headers=browser)
        assert response.status_code == 404, path
        assert response.headers["content-type"].startswith("text/html"), path
        assert "页面不存在" in response.text and '<html lang="zh-CN">' in response.text
        assert_safe_headers(response.headers)
    api_404 = await api.get("/api/v1/projects/no-such-project")
    assert api_404.status_code == 404 and api_404.headers["content-type"].startswith("application/problem+json")


async def test_objection_form_files_through_the_service_and_hides_contact(api: Api, seeded: Seeded) -> None:
    sheet = seeded.sheets[-1]["id"]
    response = await api.client.post(
        f"/d/{sheet}/objections",
        data={"message": "第 3 笔的金额不对，请核实。我的电话 13812345678", "contact": "15900001111"},
        follow_redirects=False,
    )
    assert response.status_code == 303, response.text
    assert response.headers["location"] == f"/d/{sheet}?filed=1#objections"
    page = await api.get(f"/d/{sheet}?filed=1")
    assert "已收到您的异议" in page.text and "第 3 笔的金额不对" in page.text
    assert "13812345678" not in page.text and "138****5678" in page.text and "15900001111" not in page.text
    listed = (await api.get(f"/api/v1/disclosures/{sheet}/objections")).json()["items"]
    assert listed[-1]["message"].endswith("138****5678") and "contact" not in listed[-1]

    empty = await api.client.post(f"/d/{sheet}/objections", data={"message": "  "}, follow_redirects=False)
    assert empty.status_code == 422 and "异议内容" in empty.text and 'role="alert"' in empty.text


async def test_objection_form_shares_the_api_rate_limit(database: Database, tmp_path: Path, seeded: Seeded) -> None:
    app = create_app(app_settings(database, tmp_path, public_write_rate_per_minute=2, pdf_render_mode="thread"))
    sheet = seeded.sheets[-1]["id"]
    async with AsyncTestClient(app) as client:
        first = await client.post(f"/d/{sheet}/objections", data={"message": "一"}, follow_redirects=False)
        second = await client.post(f"/api/v1/disclosures/{sheet}/objections", json={"message": "二"})
        third = await client.post(f"/d/{sheet}/objections", data={"message": "三"}, follow_redirects=False)
    assert (first.status_code, second.status_code) == (303, 201)
    assert third.status_code == 429 and third.headers["content-type"].startswith("text/html")
    assert "提交太频繁" in third.text


async def test_project_pages_answer_304_until_what_they_show_changes(api: Api, world: World) -> None:
    from tests.api_support import contribution
    from tests.pages_support import publish

    project = await world.project()
    await world.entry(project, contribution("200", "张三"))
    for path in (f"/p/{project}", f"/p/{project}/entries", f"/p/{project}/e/1"):
        first = await api.get(path)
        etag = first.headers["etag"]
        assert first.status_code == 200 and first.headers["cache-control"] == "no-cache"
        again = await api.get(path, headers={"If-None-Match": etag})
        assert again.status_code == 304 and again.content == b"" and again.headers["etag"] == etag
        assert_safe_headers(again.headers)
        assert (await api.get(path)).content == first.content  # served from the rendered cache
    before = {p: (await api.get(p)).headers["etag"] for p in (f"/p/{project}", f"/p/{project}/entries")}
    await world.entry(project, contribution("300", "李四"))
    for path, etag in before.items():
        changed = await api.get(path, headers={"If-None-Match": etag})
        assert changed.status_code == 200 and changed.headers["etag"] != etag and "¥300.00" in changed.text
    etag = (await api.get(f"/p/{project}")).headers["etag"]
    sheet = await publish(world, project)
    changed = await api.get(f"/p/{project}", headers={"If-None-Match": etag})
    assert changed.status_code == 200 and f'href="/d/{sheet["id"]}"' in changed.text
    other = await api.get(f"/p/{project}/entries", params={"kind": "grant"})
    assert other.headers["etag"] != (await api.get(f"/p/{project}/entries")).headers["etag"]
    # An erasure changes names on the pages without touching the tree: it changes the version too.
    import uuid

    from ledger.communities import get_community
    from ledger.contributors import erase_contributor

    etag = (await api.get(f"/p/{project}/e/1")).headers["etag"]
    person = (await api.get(f"/api/v1/projects/{project}/entries/1")).json()["contributor"]["id"]
    async with world.engine.connect() as conn:
        community = await get_community(conn, world.community)
    await erase_contributor(world.engine, community.id, uuid.UUID(person))
    changed = await api.get(f"/p/{project}/e/1", headers={"If-None-Match": etag})
    assert changed.status_code == 200 and "已注销" in changed.text


async def test_the_check_page_finds_an_entry_by_its_receipt_number(api: Api, world: World, seeded: Seeded) -> None:
    from tests.api_support import contribution

    project = await world.project()
    await world.entry(project, contribution("10", receipt_no="SJ-0001"))
    target = await world.entry(project, contribution("20", receipt_no="SJ-4242"))
    html = (await api.get(f"/p/{project}/check", params={"seq": "SJ-4242", "size": "2", "root": "ab"})).text
    assert f'value="{target["seq"]}"' in html and 'data-expect-receipt="SJ-4242"' in html
    assert 'id="check-autorun"' in html
    missing = (await api.get(f"/p/{project}/check", params={"seq": "SJ-9999"})).text
    assert "没有找到收据号“SJ-9999”" in missing and "data-expect-receipt" not in missing
    # Many entries of the seeded project share SJ-0001: the page lists them to choose from.
    several = (await api.get(f"/p/{seeded.project}/check", params={"seq": "SJ-0001"})).text
    assert "对应多笔记录" in several and f'href="/p/{seeded.project}/e/1"' in several


async def test_a_burst_of_readers_shares_version_reads(
    world: World, live_server: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A burst shares at most two version reads: the one in flight when the first reader came, and
    the next (every reader waits for a read that started after it arrived: api/versioned.py)."""
    import asyncio

    import httpx

    from api import versioned

    project = await world.project()
    reads: list[str] = []
    real = versioned.project_state

    async def counted(conn: object, code: str) -> object:
        reads.append(code)
        await asyncio.sleep(0.05)  # long enough for the whole burst to arrive while it is in flight
        return await real(conn, code)  # type: ignore[arg-type]

    monkeypatch.setattr(versioned, "project_state", counted)
    async with httpx.AsyncClient(base_url=live_server.base_url) as client:
        burst = await asyncio.gather(*(client.get(f"/p/{project}") for _ in range(8)))
        missing = await asyncio.gather(*(client.get("/p/no-such-project") for _ in range(4)))
    assert [r.status_code for r in burst] == [200] * 8 and len({r.headers["etag"] for r in burst}) == 1
    assert 1 <= reads.count(project) <= 2
    assert [r.status_code for r in missing] == [404] * 4 and 1 <= reads.count("no-such-project") <= 2


async def test_an_unexpected_error_on_a_page_is_a_page_without_details(
    api: Api, seeded: Seeded, monkeypatch: pytest.MonkeyPatch
) -> None:
    from api.pages import routes

    async def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("SELECT secret FROM somewhere")

    monkeypatch.setattr(routes, "list_disclosures", broken)
    response = await api.get(f"/p/{seeded.project}/check")
    assert response.status_code == 500 and response.headers["content-type"].startswith("text/html")
    assert "服务器出了点问题" in response.text and "SELECT" not in response.text
    assert_safe_headers(response.headers)


async def test_a_community_page_is_paged_newest_first_and_the_index_stays_short(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A community with many projects: its page shows the newest first, a page at a time, with a
    link to the earlier ones; the index lists each community's newest few and counts the rest."""
    import api.pages.routes as routes

    monkeypatch.setattr(routes, "COMMUNITY_PAGE", 2)
    monkeypatch.setattr(routes, "INDEX_PROJECTS", 2)
    code = unique("pg")
    created = await world.api.post(
        "/api/v1/communities", {"code": code, "name": "翻页小区", "households": 300}, token=world.admin
    )
    assert created.status_code == 201, created.text
    first, second, third = [await world.project(community=code) for _ in range(3)]

    page1 = (await world.api.get(f"/c/{code}")).text
    assert page1.index(third) < page1.index(second) and first not in page1
    earlier = re.search(rf'href="/c/{code}\?before=(\d+)"', page1)
    assert earlier and "更早的项目" in page1
    page2 = (await world.api.get(f"/c/{code}", params={"before": earlier.group(1)})).text
    assert first in page2 and second not in page2 and third not in page2
    assert "?before=" not in page2
    beyond = await world.api.get(f"/c/{code}", params={"before": 1})
    assert beyond.status_code == 200 and "没有更早的项目了" in beyond.text
    assert (await world.api.get(f"/c/{code}", params={"before": 2**63})).status_code == 400

    index = (await world.api.get("/", params={"q": "翻页小区"})).text
    assert third in index and second in index and first not in index
    assert "另有 1 个项目" in index and f'href="/c/{code}"' in index
