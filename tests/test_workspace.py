"""The workspace (/w/…) over HTTP: session cookie, CSRF, the forms' validation next to the field,
double submits recorded once, vouchers through forms, and the authorisation matrix."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from tests.api_support import World, past
from tests.test_attachments import MINIMAL_PDF


class Browser:
    """One person's browser over the session's shared test client: its own session cookie, sent
    by hand (the shared client's jar is emptied after every request), redirects not followed."""

    def __init__(self, client: Browser) -> None:
        self.client = client
        self.session = ""

    async def request(self, method: str, url: str, headers: dict[str, str] | None = None, **kw: Any) -> httpx.Response:
        sent = dict(headers or {})
        if self.session:
            sent["Cookie"] = f"ws_session={self.session}"
        try:
            response = await self.client.request(method, url, headers=sent, follow_redirects=False, **kw)
        finally:
            self.client.cookies.clear()
        found = re.search(r"ws_session=([^;]*)", response.headers.get("set-cookie", ""))
        if found:
            self.session = found.group(1)
        return response

    async def get(self, url: str, **kw: Any) -> httpx.Response:
        return await self.request("GET", url, **kw)

    async def post(self, url: str, **kw: Any) -> httpx.Response:
        return await self.request("POST", url, **kw)


@pytest.fixture
def browser(world: World) -> Browser:
    return Browser(world.api.client)


async def sign_in(client: Browser, token: str) -> None:
    response = await client.post("/w/login", data={"token": token, "next": "/w/"})
    assert response.status_code == 303, response.text
    cookie = response.headers["set-cookie"]
    assert "HttpOnly" in cookie and "samesite=strict" in cookie.lower() and "Path=/w" in cookie
    assert "Secure" not in cookie  # plain http here; https sets it


def form_fields(html: str, action: str) -> dict[str, str]:
    """The hidden inputs (csrf, idem) of the form posting to ``action``."""
    start = html.index(f'action="{action}"')
    chunk = html[start : html.index("</form>", start)]
    return dict(re.findall(r'type="hidden" name="([a-z_]+)" value="([^"]*)"', chunk))


async def entries_count(world: World, project: str) -> int:
    return (await world.api.get(f"/api/v1/projects/{project}/ledger")).json()["size"]  # type: ignore[no-any-return]


async def test_sign_in_and_out(world: World, browser: Browser) -> None:
    response = await browser.get("/w/")
    assert response.status_code == 303 and response.headers["location"].startswith("/w/login")
    bad = await browser.post("/w/login", data={"token": "gtl_wrong", "next": "/w/"})
    assert bad.status_code == 401 and "令牌无效" in bad.text
    await sign_in(browser, world.treasurer)
    home = await browser.get("/w/")
    assert home.status_code == 200 and "报账员" in home.text and "test treasurer" in home.text
    assert (
        home.headers["cache-control"] == "no-store"
        and "frame-ancestors 'none'" in home.headers["content-security-policy"]
    )
    hidden = form_fields(home.text, "/w/logout")
    # Signing out without the CSRF token is refused; with it, the cookie is cleared.
    assert (await browser.post("/w/logout", data={})).status_code == 403
    out = await browser.post("/w/logout", data=hidden)
    assert out.status_code == 303 and "Max-Age=0" in out.headers["set-cookie"]
    assert (await browser.get("/w/")).status_code == 303


async def test_contribution_form_validation_and_double_submit(world: World, browser: Browser) -> None:
    project = await world.project()
    await sign_in(browser, world.treasurer)
    url = f"/w/p/{project}/new/contribution"
    page = await browser.get(url)
    assert (page.status_code == 200 and "记一笔众筹出资" in page.text) or "记一笔" in page.text
    hidden = form_fields(page.text, url)
    # The API's messages, next to their fields; nothing recorded.
    bad = await browser.post(url, data={**hidden, "amount": "12.345", "occurred_on": past(), "contributor.name": ""})
    assert bad.status_code == 422
    assert 'id="f-amount-err"' in bad.text and "最多两位小数" in bad.text
    assert 'value="12.345"' in bad.text  # what was typed stays
    bad = await browser.post(url, data={**hidden, "amount": "12.34", "occurred_on": past(), "contributor.name": ""})
    assert bad.status_code == 422 and 'id="f-contributor-name-err"' in bad.text
    assert await entries_count(world, project) == 0
    good = {**hidden, "amount": "200", "occurred_on": past(), "contributor.name": "张三", "channel": "wechat"}
    first = await browser.post(url, data=good)
    second = await browser.post(url, data=good)  # a double-click: the same form, the same key
    assert first.status_code == second.status_code == 303
    assert first.headers["location"] == second.headers["location"] == f"/w/p/{project}?done=1"
    assert await entries_count(world, project) == 1
    desk = await browser.get(first.headers["location"])
    assert "已记账：第 1 笔" in desk.text


async def test_cross_site_post_refused(world: World, browser: Browser) -> None:
    project = await world.project()
    await sign_in(browser, world.treasurer)
    url = f"/w/p/{project}/new/contribution"
    body = {"amount": "200", "occurred_on": past(), "contributor.name": "张三"}
    refused = await browser.post(url, data=body)  # no CSRF token
    assert refused.status_code == 403 and "未作任何更改" in refused.text
    hidden = form_fields((await browser.get(url)).text, url)
    evil = await browser.post(url, data={**hidden, **body}, headers={"Origin": "https://evil.example"})
    assert evil.status_code == 403
    assert await entries_count(world, project) == 0


async def test_voucher_through_the_forms(world: World, browser: Browser) -> None:
    project = await world.project(countersign_over="0")
    await world.entry(project, {"kind": "grant", "amount": "5000", "occurred_on": past(), "grantor": "下陆区住建局"})
    await sign_in(browser, world.treasurer)
    url = f"/w/p/{project}/new/expenditure"
    hidden = form_fields((await browser.get(url)).text, url)
    data = {**hidden, "amount": "1200", "occurred_on": past(), "payee": "某沥青工程有限公司", "category": "materials"}
    response = await browser.post(url, data=data, files={"file": ("invoice.pdf", MINIMAL_PDF, "application/pdf")})
    assert response.status_code == 303 and "submitted=" in response.headers["location"], response.text
    assert await entries_count(world, project) == 1
    # The treasurer sees the queue but has no approve button, and cannot approve.
    queue = await browser.get(f"/w/p/{project}/vouchers")
    assert "待审核（1）" in queue.text and "/approve" not in queue.text
    voucher_id = re.search(r'id="voucher-(\d+)"', queue.text).group(1)  # type: ignore[union-attr]

    auditor = Browser(world.api.client)
    if True:
        await sign_in(auditor, world.auditor)
        queue = await auditor.get(f"/w/p/{project}/vouchers")
        attachment = re.search(r'href="(/w/a/[0-9a-f]{64})"', queue.text).group(1)  # type: ignore[union-attr]
        assert (await auditor.get(attachment)).content == MINIMAL_PDF
        assert (await auditor.get(f"/w/p/{project}/new/expenditure")).status_code == 403
        action = f"/w/vouchers/{voucher_id}/approve"
        approved = await auditor.post(action, data=form_fields(queue.text, action))
        assert approved.status_code == 303
    refused = await browser.post(action, data=form_fields(queue.text, action) | {"csrf": hidden["csrf"]})
    assert refused.status_code == 403
    assert await entries_count(world, project) == 2
    entry = (await world.api.get(f"/api/v1/projects/{project}/entries/2")).json()
    assert entry["checker"]["name"] == "test auditor" and len(entry["attachments"]) == 1


async def test_other_community_sees_nothing(world: World, browser: Browser) -> None:
    project = await world.project()
    await sign_in(browser, world.tokens["treasurer_other"])
    for path in ("", "/new/contribution", "/vouchers", "/publish", "/objections"):
        response = await browser.get(f"/w/p/{project}{path}")
        assert response.status_code == 404, path
        assert "小区路面刷黑" not in response.text
    home = await browser.get("/w/")
    assert project not in home.text


async def test_publish_with_preview_and_answer_objections(world: World, browser: Browser) -> None:
    project = await world.project()
    await world.entry(project, {"kind": "grant", "amount": "5000", "occurred_on": past(), "grantor": "下陆区住建局"})
    await sign_in(browser, world.treasurer)
    url = f"/w/p/{project}/publish"
    page = await browser.get(url)
    hidden = form_fields(page.text, url)
    period = {"period_start": past(30), "period_end": past(0), "notice_days": "7"}
    preview = await browser.get(f"/w/p/{project}/preview.pdf", params=period)
    assert preview.status_code == 200 and preview.content.startswith(b"%PDF-")
    bad = await browser.post(url, data={**hidden, **period, "period_start": past(0), "period_end": past(30)})
    assert bad.status_code in (409, 422) and 'id="form-errors"' in bad.text
    published = await browser.post(url, data={**hidden, **period})
    again = await browser.post(url, data={**hidden, **period})  # double-click
    assert published.status_code == again.status_code == 303
    assert published.headers["location"] == again.headers["location"]
    sheets = (await world.api.get(f"/api/v1/projects/{project}/disclosures")).json()["items"]
    assert len(sheets) == 1
    sheet_id = sheets[0]["id"]

    filed = await world.api.post(f"/api/v1/disclosures/{sheet_id}/objections", {"message": "第 1 笔金额有误？"})
    assert filed.status_code == 201, filed.text
    objection_id = filed.json()["id"]
    page = await browser.get(f"/w/p/{project}/objections")
    assert "第 1 笔金额有误" in page.text
    action = f"/w/objections/{objection_id}/answer"
    hidden = form_fields(page.text, action)
    for _ in range(2):  # double-click
        answered = await browser.post(action, data={**hidden, "message": "已核对，金额无误。"})
        assert answered.status_code == 303 and answered.headers["location"] == f"/w/p/{project}/objections"
    listed = (await world.api.get(f"/api/v1/disclosures/{sheet_id}/objections")).json()["items"]
    assert [r["message"] for r in listed[0]["responses"]] == ["已核对，金额无误。"]

    # An auditor reads the objections but may not answer them.
    auditor = Browser(world.api.client)
    await sign_in(auditor, world.auditor)
    page = await auditor.get(f"/w/p/{project}/objections")
    assert page.status_code == 200 and action not in page.text
    own_csrf = form_fields(page.text, "/w/logout")["csrf"]
    refused = await auditor.post(action, data={"csrf": own_csrf, "message": "x"})
    assert refused.status_code == 403 and "只有本社区的报账员" in refused.text


async def test_home_lists_the_newest_projects_first(
    world: World, browser: Browser, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A community with more projects than one page holds: the desk shows the newest (the ones
    being worked on) and says the list is cut, instead of hiding the project just created."""
    import api.workspace.routes as routes

    monkeypatch.setattr(routes, "LIST_MAX", 2)
    older, middle, newest = [await world.project() for _ in range(3)]
    await sign_in(browser, world.treasurer)
    html = (await browser.get("/w/")).text
    assert f'href="/w/p/{newest}"' in html and f'href="/w/p/{middle}"' in html
    assert f'href="/w/p/{older}"' not in html
    assert html.index(newest) < html.index(middle)
    assert "只列出最近创建的 2 个项目" in html
