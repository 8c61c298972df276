"""The workspace in a real headless Chromium (the system's ``chromium`` through Playwright): a
treasurer's day, an auditor's approval, what residents then see, a double-click, a cross-site
post. Screenshots of every workspace page at 360 px go to ``$LEDGER_SCREENSHOT_DIR``/workspace."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image
from playwright.async_api import Browser, Page, async_playwright

from tests.api_support import LiveServer, World, past
from tests.test_attachments import GPS_IFD, photo_with_gps
from tests.test_pages_browser import ARGS, CHROMIUM, MEASURE, PHONE, SCREENSHOTS


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as p:
        b = await p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        yield b
        await b.close()


@pytest.fixture(scope="module")
def shots() -> Path:
    folder = SCREENSHOTS / "workspace"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


async def new_page(browser: Browser) -> Page:
    context = await browser.new_context(viewport=PHONE, locale="zh-CN")
    return await context.new_page()


async def fits_a_phone(page: Page, shots: Path, name: str) -> None:
    m = await page.evaluate(MEASURE)
    assert m["scrollWidth"] <= m["innerWidth"], (name, m)
    assert not m["small"], (name, m["small"][:5])
    assert not m["taps"], (name, m["taps"][:5])
    await page.screenshot(path=str(shots / f"{name}.png"), full_page=True)


async def sign_in(page: Page, base: str, token: str, shots: Path | None = None) -> None:
    await page.goto(f"{base}/w/")
    assert "/w/login" in page.url
    if shots is not None:
        await fits_a_phone(page, shots, "login")
    await page.fill("#f-token", token)
    await page.click("form.ws-form button[type=submit]")
    await page.wait_for_url(f"{base}/w/")


async def ledger_size(base: str, project: str) -> int:
    async with httpx.AsyncClient() as client:
        return (await client.get(f"{base}/api/v1/projects/{project}/ledger")).json()["size"]  # type: ignore[no-any-return]


async def test_a_treasurers_day_and_an_auditors_approval(
    browser: Browser, live_server: LiveServer, world: World, shots: Path, tmp_path: Path
) -> None:
    base = live_server.base_url
    project = await world.project(countersign_over="0")
    page = await new_page(browser)
    await sign_in(page, base, world.treasurer, shots)
    await fits_a_phone(page, shots, "home")

    # Record a contribution.
    await page.click(f"a[href='/w/p/{project}']")
    await fits_a_phone(page, shots, "project")
    await page.click(f"a[href='/w/p/{project}/new/contribution']")
    await page.fill("#f-amount", "2000")
    await page.fill("#f-contributor-name", "张三")
    await page.fill("#f-contributor-household", "3栋2单元501")
    await page.select_option("#f-channel", "wechat")
    await page.fill("#f-receipt_no", "SJ-0001")
    await fits_a_phone(page, shots, "new_contribution")
    await page.click("#submit")
    await page.wait_for_selector("#flash")
    assert "已记账：第 1 笔" in await page.inner_text("#flash")

    # A bad amount: the API's message next to the field.
    await page.goto(f"{base}/w/p/{project}/new/expenditure")
    await page.fill("#f-amount", "-5")
    await page.fill("#f-payee", "某沥青工程有限公司")
    await page.click("#submit")
    assert await page.is_visible("#f-amount-err")
    await fits_a_phone(page, shots, "new_expenditure_error")

    # Submit a voucher with its invoice (a phone photo carrying GPS).
    invoice = tmp_path / "invoice.jpg"
    invoice.write_bytes(photo_with_gps((120, 80)))
    await page.goto(f"{base}/w/p/{project}/new/expenditure")
    await page.fill("#f-amount", "1200")
    await page.fill("#f-payee", "某沥青工程有限公司")
    await page.select_option("#f-category", "materials")
    await page.fill("#f-invoice_no", "04417305")
    await page.set_input_files("#f-file", str(invoice))
    await fits_a_phone(page, shots, "new_expenditure")
    await page.click("#submit")
    await page.wait_for_selector("#flash")
    assert "等待审核人复核" in await page.inner_text("#flash")
    assert await ledger_size(base, project) == 1
    await page.goto(f"{base}/w/p/{project}/vouchers")
    await fits_a_phone(page, shots, "vouchers_treasurer")
    assert await page.locator("button.approve").count() == 0
    await page.goto(f"{base}/w/p/{project}/publish")
    await fits_a_phone(page, shots, "publish")
    await page.goto(f"{base}/w/p/{project}/objections")
    await fits_a_phone(page, shots, "objections")

    # Sign out: the workspace is closed again.
    await page.goto(f"{base}/w/p/{project}")
    await page.click("#sign-out")
    await page.wait_for_url("**/w/login**")
    assert "已退出" in await page.inner_text("#signed-out")
    await page.goto(f"{base}/w/p/{project}")
    assert "/w/login" in page.url
    await page.context.close()

    # The auditor approves, with the invoice in view.
    page = await new_page(browser)
    await sign_in(page, base, world.auditor)
    await page.goto(f"{base}/w/p/{project}/vouchers")
    await fits_a_phone(page, shots, "vouchers_auditor")
    href = await page.get_attribute("a.attachment", "href")
    assert href is not None and href.startswith("/w/a/")
    await page.click("button.approve")
    await page.wait_for_selector("li[id^=decided-]")
    assert "已通过" in await page.inner_text("li[id^=decided-]")
    assert await ledger_size(base, project) == 2
    await page.context.close()

    # A resident sees the spending and the invoice, which carries no GPS.
    page = await new_page(browser)
    await page.goto(f"{base}/p/{project}")
    assert await page.inner_text("#fig-spent") == "¥1,200.00"
    await page.goto(f"{base}/p/{project}/e/2")
    assert "审核人" in await page.inner_text("main")
    link = page.locator("a.attachment")
    assert await link.count() == 1
    response = await page.request.get(base + (await link.get_attribute("href") or ""))
    assert response.status == 200 and response.headers["content-type"].startswith("image/jpeg")
    image = Image.open(io.BytesIO(await response.body()))
    assert not image.getexif() and not image.getexif().get_ifd(GPS_IFD)
    await page.screenshot(path=str(shots / "resident_entry_with_invoice.png"), full_page=True)
    await page.context.close()


async def test_a_double_click_records_once(browser: Browser, live_server: LiveServer, world: World) -> None:
    base = live_server.base_url
    project = await world.project()
    page = await new_page(browser)
    await sign_in(page, base, world.treasurer)
    await page.goto(f"{base}/w/p/{project}/new/contribution")
    await page.fill("#f-amount", "300")
    await page.fill("#f-contributor-name", "李四")
    await page.dblclick("#submit")
    await page.wait_for_selector("#flash")
    assert await ledger_size(base, project) == 1
    await page.context.close()


async def test_a_cross_site_post_is_refused(browser: Browser, live_server: LiveServer, world: World) -> None:
    base = live_server.base_url
    project = await world.project()
    page = await new_page(browser)
    await sign_in(page, base, world.treasurer)
    target = f"{base}/w/p/{project}/new/contribution"
    fields: dict[str, Any] = {"amount": "500", "occurred_on": past(), "contributor.name": "王五"}
    inputs = "".join(f'<input name="{k}" value="{v}">' for k, v in fields.items())
    # Another site's page posts a form at the workspace, with the victim signed in.
    await page.set_content(f'<form id="evil" method="post" action="{target}">{inputs}</form>')
    async with page.expect_navigation():
        await page.evaluate("document.getElementById('evil').submit()")
    assert await ledger_size(base, project) == 0
    # Even with the session cookie attached (a non-browser client), no CSRF token: refused.
    response = await page.request.post(target, form=fields, headers={"Origin": base})
    assert response.status == 403 and "未作任何更改" in await response.text()
    assert await ledger_size(base, project) == 0
    await page.context.close()
