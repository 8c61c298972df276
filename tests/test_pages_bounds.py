"""Integers in the resident pages' and the workspace's addresses are bounded like the API's
(issue 8, item 5): an id that cannot exist (0, negative, above 2^63−1, where PostgreSQL's BIGINT
would overflow) is the friendly 404 page in Chinese, never a 500; a page number out of range is
the friendly 400 page."""

from __future__ import annotations

import httpx
import pytest

from api.errors import PAGE_MESSAGES
from tests.api_support import World, contribution
from tests.test_workspace import Browser, form_fields, sign_in

HUGE = "160041197184078348288"  # > 2^63−1
SEQ_HUGE = "99999999999999999999"
NOT_IDS = (HUGE, SEQ_HUGE, str(2**63), "0", "-1")


def assert_page(response: httpx.Response, status: int) -> None:
    where = f"{response.request.method} {response.request.url}"
    assert response.status_code == status, (where, response.status_code, response.text[:300])
    assert response.headers["content-type"].startswith("text/html"), where
    assert '<html lang="zh-CN">' in response.text, where
    if status in PAGE_MESSAGES:
        assert PAGE_MESSAGES[status] in response.text, where


@pytest.mark.parametrize("number", NOT_IDS)
async def test_resident_pages_with_an_id_that_cannot_exist_are_404_pages(world: World, number: str) -> None:
    project = await world.project()
    await world.entry(project, contribution(amount="10"))
    api = world.api
    assert_page(await api.get(f"/d/{number}"), 404)
    assert_page(await api.get(f"/p/{project}/e/{number}"), 404)
    # The objection form of a sheet that cannot exist: the same page, nothing filed.
    assert_page(await api.request("POST", f"/d/{number}/objections", content=b"message=x", headers=_FORM), 404)


_FORM = {"Content-Type": "application/x-www-form-urlencoded"}


async def test_resident_list_pages_with_a_page_number_out_of_range(world: World) -> None:
    project = await world.project()
    await world.entry(project, contribution(amount="10"))
    for path in (f"/p/{project}/entries", f"/p/{project}/pledges"):
        for after in (HUGE, str(2**63)):
            assert_page(await world.api.get(path, params={"after": after}), 400)
        # The largest seq there can be: a valid address, an empty page.
        assert_page(await world.api.get(path, params={"after": str(2**63 - 1)}), 200)
    # The check page only echoes what was typed (the browser checks it): digits of any length.
    check = await world.api.get(f"/p/{project}/check", params={"seq": HUGE, "size": HUGE, "root": "ab" * 32})
    assert_page(check, 200)


@pytest.mark.parametrize("number", (HUGE, str(2**63), "0"))
async def test_workspace_forms_with_an_id_that_cannot_exist_are_404_pages(world: World, number: str) -> None:
    project = await world.project()
    treasurer, auditor = Browser(world.api.client), Browser(world.api.client)
    await sign_in(treasurer, world.treasurer)
    await sign_in(auditor, world.auditor)
    form = f"/w/p/{project}/new/contribution"
    for browser, action in (
        (auditor, f"/w/vouchers/{number}/approve"),
        (auditor, f"/w/vouchers/{number}/reject"),
        (treasurer, f"/w/objections/{number}/answer"),
    ):
        csrf = form_fields((await browser.get(form)).text, form)["csrf"] if browser is treasurer else None
        if csrf is None:
            queue = f"/w/p/{project}/vouchers"
            csrf = _csrf((await browser.get(queue)).text)
        data = {"csrf": csrf, "idem": "k-" + number, "reason": "金额不符", "message": "已核实", "project": project}
        assert_page(await browser.post(action, data=data), 404)
    # The desk's notes after a write name a seq and a voucher: only looked up when they exist.
    desk = await treasurer.get(f"/w/p/{project}", params={"done": number, "submitted": number})
    assert_page(desk, 200)


def _csrf(html: str) -> str:
    marker = 'name="csrf" value="'
    start = html.index(marker) + len(marker)
    return html[start : html.index('"', start)]
