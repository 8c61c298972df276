"""The resident pages in a real headless Chromium (the system's Debian ``chromium``, driven by
Playwright; Playwright's own browser download is never used).

Covers what only a browser shows: layout at 360 px and 1280 px, text and tap-target sizes, the
in-browser check (genuine ✓; altered root, document or proof ✗), the check without WebCrypto (a
non-secure origin), WeChat's user agent, JavaScript off, hostile memos, and axe-core.
Screenshots of every page at 360 px go to ``$LEDGER_SCREENSHOT_DIR`` (default var/screenshots).
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from axe_playwright_python.async_playwright import Axe
from playwright.async_api import Browser, Page, Route, async_playwright

from api.pages.views import money
from tests.api_support import LiveServer, World
from tests.pages_support import Seeded, page_paths, seed

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PHONE = {"width": 360, "height": 740}
DESKTOP = {"width": 1280, "height": 800}
WECHAT_UA = (
    "Mozilla/5.0 (Linux; Android 12; M2012K11AC Build/SKQ1.220303.001; wv) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Version/4.0 Chrome/107.0.5304.141 Mobile Safari/537.36 XWEB/5169 MMWEBSDK/20230805 MMWEBID/1234 "
    "MicroMessenger/8.0.42.2460(0x28002A35) WeChat/arm64 Weixin NetType/WIFI Language/zh_CN ABI/arm64"
)
SCREENSHOTS = Path(os.environ.get("LEDGER_SCREENSHOT_DIR", Path(__file__).resolve().parents[1] / "var" / "screenshots"))

# Measured in the page: sideways overflow, text smaller than 16 px, tap targets lower than 44 px.
# Links inside running text (a sentence in a <p>) are exempt from the tap-target rule, as in WCAG.
MEASURE = """() => {
  const visible = (el) => { const r = el.getBoundingClientRect(); return r.width > 0 && r.height > 0; };
  const small = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  while (walker.nextNode()) {
    const node = walker.currentNode;
    if (!node.textContent.trim() || !node.parentElement || !visible(node.parentElement)) continue;
    const size = parseFloat(getComputedStyle(node.parentElement).fontSize);
    if (size < 16) small.push(node.parentElement.tagName + ":" + node.textContent.trim().slice(0, 20) + ":" + size);
  }
  const taps = [];
  for (const el of document.querySelectorAll("a, button, input, select, textarea")) {
    if (!visible(el) || el.closest("p, dd, li.inline")) continue;
    const r = el.getBoundingClientRect();
    if (r.height < 44) taps.push(el.tagName + ":" + (el.textContent || el.name).trim().slice(0, 20) + ":" + r.height);
  }
  return {scrollWidth: document.documentElement.scrollWidth, innerWidth: window.innerWidth, small, taps,
          fonts: [...document.fonts].length};
}"""


DIALOGS: list[str] = []  # alert() from an injected script would land here


@pytest.fixture(autouse=True)
def no_script_dialogs() -> Iterator[None]:
    DIALOGS.clear()
    yield
    assert not DIALOGS, f"a script ran: {DIALOGS}"


@pytest.fixture(scope="module")
async def seeded(world: World) -> Seeded:
    return await seed(world)


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as p:
        b = await p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        yield b
        await b.close()


async def new_page(browser: Browser, **options: Any) -> Page:
    context = await browser.new_context(viewport=options.pop("viewport", PHONE), locale="zh-CN", **options)
    page = await context.new_page()
    page.on("dialog", lambda dialog: DIALOGS.append(dialog.message))
    return page


async def check(page: Page, size: int | str, root: str, *, seq: int | None = None) -> tuple[str, str]:
    # check.js marks the form once it has taken over its submit (data-receipt-seq); typing before
    # that, on a loaded machine, submits the plain GET form and the page navigates mid-check.
    await page.wait_for_selector("#check-form[data-receipt-seq]", state="attached")
    if seq is not None:
        await page.fill("#check-seq", str(seq))
    await page.fill("#check-size", str(size))
    await page.fill("#check-root", root)
    await page.click("#check-form button[type=submit]")
    return await outcome(page, "#check-result")


async def outcome(page: Page, selector: str) -> tuple[str, str]:
    await page.wait_for_function(
        "s => ['ok', 'fail'].includes(document.querySelector(s)?.dataset.result)", arg=selector, timeout=15_000
    )
    el = page.locator(selector)
    return (await el.get_attribute("data-result")) or "", await el.inner_text()


def flip(hex_digits: str) -> str:
    return ("1" if hex_digits[0] != "1" else "2") + hex_digits[1:]


@pytest.fixture(scope="module")
def screenshots() -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS


async def test_every_page_fits_a_phone_and_a_desktop(
    browser: Browser, live_server: LiveServer, seeded: Seeded, screenshots: Path
) -> None:
    summary = json.loads(await _get(browser, f"{live_server.base_url}/api/v1/projects/{seeded.project}"))["summary"]
    for viewport in (PHONE, DESKTOP):
        page = await new_page(browser, viewport=viewport)
        for path in [*page_paths(seeded), "/p/no-such-project"]:
            response = await page.goto(live_server.base_url + path)
            assert response is not None and response.status in (200, 404), path
            m = await page.evaluate(MEASURE)
            assert m["scrollWidth"] <= m["innerWidth"], (path, viewport, m)
            assert not m["small"], (path, viewport, m["small"][:5])
            assert not m["taps"], (path, viewport, m["taps"][:5])
            assert m["fonts"] == 0, "no web fonts"
            if viewport is PHONE:
                name = path.strip("/").replace("/", "_").replace("?", "_").replace("=", "-") or "index"
                await page.screenshot(path=str(screenshots / f"{name}.png"), full_page=True)
        await page.goto(f"{live_server.base_url}/p/{seeded.project}")
        for key in ("contributed", "granted", "spent", "balance"):
            assert await page.inner_text(f"#fig-{key}") == money(summary[key])
        await page.context.close()


async def _get(browser: Browser, url: str) -> str:
    page = await new_page(browser)
    response = await page.request.get(url)
    text = await response.text()
    await page.context.close()
    return text


async def test_the_check_accepts_a_genuine_entry_and_catches_a_wrong_root(
    browser: Browser, live_server: LiveServer, seeded: Seeded
) -> None:
    sheet = seeded.sheets[-1]
    page = await new_page(browser)
    await page.goto(f"{live_server.base_url}/p/{seeded.project}/e/2")
    result, text = await check(
        page, sheet["tree_size"], " ".join(sheet["root_hash"][i : i + 4] for i in range(0, 64, 4))
    )
    assert result == "ok" and text.startswith("已核验 ✓") and "WebCrypto" in text, text
    result, text = await check(page, sheet["tree_size"], flip(sheet["root_hash"]))
    assert result == "fail" and text.startswith("核验失败 ✗") and "根哈希" in text, text
    result, text = await check(page, sheet["tree_size"], "abc")
    assert result == "fail" and "64 位" in text, text
    # An entry recorded after the sheet is not in it: said in plain words.
    result, text = await check(
        page, seeded.sheets[0]["tree_size"], seeded.sheets[0]["root_hash"], seq=seeded.hostile_seq
    )
    assert result == "fail" and "晚于这张公示表" in text, text
    await page.context.close()


async def test_the_check_catches_a_server_that_alters_the_document_or_the_proof(
    browser: Browser, live_server: LiveServer, seeded: Seeded
) -> None:
    sheet = seeded.sheets[-1]
    page = await new_page(browser)
    entry_url = f"**/api/v1/projects/{seeded.project}/entries/2"

    async def altered_amount(route: Route) -> None:
        response = await route.fetch()
        body = await response.json()
        doc = json.loads(body["document"])
        doc["amount_fen"] += 100
        body["document"] = json.dumps(doc, separators=(",", ":"), ensure_ascii=False)
        await route.fulfill(response=response, json=body)

    async def altered_everywhere(route: Route) -> None:
        # A cleverer server changes the amount everywhere it shows: only the hash can tell.
        response = await route.fetch()
        body = await response.json()
        doc = json.loads(body["document"])
        doc["amount_fen"] += 100
        body["document"] = json.dumps(doc, separators=(",", ":"), ensure_ascii=False)
        body["amount"] = f"{doc['amount_fen'] // 100}.{doc['amount_fen'] % 100:02d}"
        await route.fulfill(response=response, json=body)

    async def altered_proof(route: Route) -> None:
        response = await route.fetch()
        body = await response.json()
        body["proof"][0] = flip(body["proof"][0])
        await route.fulfill(response=response, json=body)

    await page.goto(f"{live_server.base_url}/p/{seeded.project}/e/2")
    await page.route(entry_url, altered_amount)
    result, text = await check(page, sheet["tree_size"], sheet["root_hash"])
    assert result == "fail" and "金额" in text and "改动" in text, text
    await page.unroute(entry_url)

    await page.goto(f"{live_server.base_url}/p/{seeded.project}/check")
    await page.route(entry_url, altered_everywhere)
    result, text = await check(page, sheet["tree_size"], sheet["root_hash"], seq=2)
    assert result == "fail" and "根哈希" in text, text
    await page.unroute(entry_url)

    await page.route("**/ledger/inclusion?*", altered_proof)
    result, text = await check(page, sheet["tree_size"], sheet["root_hash"], seq=2)
    assert result == "fail" and "证明" in text, text
    await page.unroute("**/ledger/inclusion?*")
    result, text = await check(page, sheet["tree_size"], sheet["root_hash"], seq=2)
    assert result == "ok", text
    await page.context.close()


async def test_a_qr_link_fills_the_form_and_runs_the_check(
    browser: Browser, live_server: LiveServer, seeded: Seeded
) -> None:
    sheet = seeded.sheets[0]
    page = await new_page(browser)
    await page.goto(
        f"{live_server.base_url}/p/{seeded.project}/check?seq=1&size={sheet['tree_size']}&root={sheet['root_hash']}"
    )
    result, text = await outcome(page, "#check-result")
    assert result == "ok" and "众筹出资 ¥200.00" in text, text
    assert await page.locator("#check-doc").is_visible()
    # Picking a published sheet fills size and root.
    await page.select_option("#check-sheet", str(seeded.sheets[-1]["id"]))
    assert await page.input_value("#check-size") == str(seeded.sheets[-1]["tree_size"])
    await page.context.close()


async def test_the_check_works_without_webcrypto_on_plain_http(
    browser: Browser, live_server: LiveServer, seeded: Seeded
) -> None:
    """A 街道 intranet on plain http is not a secure context: crypto.subtle is undefined there."""
    port = urlsplit(live_server.base_url).port
    async with async_playwright() as p:
        lan = await p.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=[*ARGS, "--host-resolver-rules=MAP ledger.test 127.0.0.1"]
        )
        page = await new_page(lan)
        sheet = seeded.sheets[-1]
        await page.goto(f"http://ledger.test:{port}/p/{seeded.project}/e/1")
        assert await page.evaluate("() => window.isSecureContext") is False
        assert await page.evaluate("() => typeof (window.crypto && window.crypto.subtle)") == "undefined"
        result, text = await check(page, sheet["tree_size"], sheet["root_hash"])
        assert result == "ok" and "noble-hashes" in text, text
        result, text = await check(page, sheet["tree_size"], flip(sheet["root_hash"]))
        assert result == "fail", text
        await page.goto(f"http://ledger.test:{port}/d/{sheet['id']}")
        await page.click("#history-form button[type=submit]")
        result, text = await outcome(page, "#history-result")
        assert result == "ok" and "noble-hashes" in text, text
        await lan.close()


async def test_the_history_check_between_two_sheets(browser: Browser, live_server: LiveServer, seeded: Seeded) -> None:
    first, second = seeded.sheets
    page = await new_page(browser)
    await page.goto(f"{live_server.base_url}/d/{second['id']}")
    await page.click("#history-form button[type=submit]")
    result, text = await outcome(page, "#history-result")
    assert result == "ok" and "历史没有被改写" in text, text
    await page.fill("#history-from-root", flip(first["root_hash"]))
    await page.click("#history-form button[type=submit]")
    result, text = await outcome(page, "#history-result")
    assert result == "fail" and "对不上" in text, text

    async def altered(route: Route) -> None:
        response = await route.fetch()
        body = await response.json()
        body["proof"][-1] = flip(body["proof"][-1])
        await route.fulfill(response=response, json=body)

    await page.fill("#history-from-root", first["root_hash"])
    await page.route("**/ledger/consistency?*", altered)
    await page.click("#history-form button[type=submit]")
    result, text = await outcome(page, "#history-result")
    assert result == "fail", text
    await page.context.close()


async def test_hostile_memos_run_no_script_and_pages_carry_a_csp(
    browser: Browser, live_server: LiveServer, seeded: Seeded
) -> None:
    page = await new_page(browser)
    for path in (f"/p/{seeded.project}/e/{seeded.hostile_seq}", f"/p/{seeded.project}/entries", f"/p/{seeded.project}"):
        response = await page.goto(live_server.base_url + path)
        assert response is not None
        headers = await response.all_headers()
        assert "frame-ancestors 'none'" in headers["content-security-policy"]
        assert await page.locator("img").count() == 0
        assert await page.evaluate("() => document.querySelectorAll('main script').length") <= 1
    await page.goto(f"{live_server.base_url}/p/{seeded.project}/e/{seeded.hostile_seq}")
    assert "<script>alert(1)</script>" in await page.inner_text("#main")
    await page.context.close()


async def test_wechat_in_app_browser(browser: Browser, live_server: LiveServer, seeded: Seeded) -> None:
    page = await new_page(browser, user_agent=WECHAT_UA)
    sheet = seeded.sheets[-1]
    await page.goto(f"{live_server.base_url}/p/{seeded.project}")
    assert await page.get_attribute('meta[property="og:title"]', "content") == "小区路面刷黑 · 锦绣花园小区"
    assert "结余" in (await page.get_attribute('meta[property="og:description"]', "content") or "")
    await page.click("text=核验我的出资")
    result, _ = await check(page, sheet["tree_size"], sheet["root_hash"], seq=1)
    assert result == "ok"
    await page.context.close()


async def test_pages_work_with_javascript_off(browser: Browser, live_server: LiveServer, seeded: Seeded) -> None:
    page = await new_page(browser, java_script_enabled=False)
    await page.goto(f"{live_server.base_url}/")
    await page.fill("#q", "路面")
    await page.click("form.search button")
    await page.click(f'a[href="/p/{seeded.project}"]')
    await page.click("text=查看全部")
    await page.click(f'a[href="/p/{seeded.project}/entries?kind=expenditure"]')
    assert "¥1,200.35" in await page.inner_text("main")
    await page.goto(f"{live_server.base_url}/d/{seeded.sheets[-1]['id']}")
    await page.fill("#objection-message", "不开脚本也能提交异议")
    await page.click(".objection-form button")
    assert "已收到您的异议" in await page.inner_text("main")
    await page.context.close()


async def test_no_serious_accessibility_violations(browser: Browser, live_server: LiveServer, seeded: Seeded) -> None:
    axe = Axe()
    page = await new_page(browser, bypass_csp=True)
    for path in [*page_paths(seeded), "/nope"]:
        await page.goto(live_server.base_url + path)
        results = await axe.run(page)
        bad = [
            (v["id"], v["impact"], [n["target"] for n in v["nodes"]][:3])
            for v in results.response["violations"]
            if v["impact"] in ("serious", "critical")
        ]
        assert not bad, (path, bad)
    await page.context.close()


async def test_the_check_by_receipt_number(browser: Browser, live_server: LiveServer, world: World) -> None:
    from tests.api_support import contribution

    project = await world.project()
    await world.entry(project, contribution("10", receipt_no="SJ-0001"))
    await world.entry(project, contribution("20", receipt_no="SJ-4242"))
    head = (await world.api.get(f"/api/v1/projects/{project}/ledger")).json()
    page = await new_page(browser)
    await page.goto(f"{live_server.base_url}/p/{project}/check")
    await page.fill("#check-seq", "SJ-4242")
    await page.fill("#check-size", str(head["size"]))
    await page.fill("#check-root", head["root_hash"])
    async with page.expect_navigation():
        await page.click("#check-form button[type=submit]")
    result, text = await outcome(page, "#check-result")
    assert result == "ok" and "第 2 笔" in text and "¥20.00" in text, text

    async def other_receipt(route: Route) -> None:
        response = await route.fetch()
        body = await response.json()
        doc = json.loads(body["document"])
        doc["receipt_no"] = "SJ-0001"
        body["document"] = json.dumps(doc, separators=(",", ":"), ensure_ascii=False)
        await route.fulfill(response=response, json=body)

    await page.route(f"**/api/v1/projects/{project}/entries/2", other_receipt)
    result, text = await check(page, head["size"], head["root_hash"])
    assert result == "fail" and "收据号" in text, text
    await page.context.close()


async def test_the_browser_checks_witnesses_cosignatures(
    browser: Browser, live_server: LiveServer, seeded: Seeded, world: World, tmp_path: Path, screenshots: Path
) -> None:
    """A witness signs the sheet's checkpoint with `ledger witness sign`; /d/{id} verifies it in
    the browser (WebCrypto's Ed25519), catches a server that alters the checkpoint, and without
    WebCrypto (plain http) verifies with the vendored @noble/curves."""
    from tests.test_witnesses import cli, keygen, register

    sheet = seeded.sheets[-1]
    name = "锦绣花园监督委员会"
    key, raw, _ = keygen(tmp_path, name)
    await register(world, name, raw, kind="supervisory_committee")
    text = (await world.api.get(f"/api/v1/disclosures/{sheet['id']}/checkpoint")).text
    body = json.loads(cli("sign", "--key", str(key), "--json", "-", stdin=text).stdout)
    assert (await world.api.post(f"/api/v1/disclosures/{sheet['id']}/cosignatures", body)).status_code == 201

    page = await new_page(browser)
    await page.goto(f"{live_server.base_url}/d/{sheet['id']}")
    await page.click("#witness-form button[type=submit]")
    result, shown = await outcome(page, "#witness-result")
    assert result == "ok" and "1 位见证人的签名都有效" in shown and "WebCrypto" in shown, shown
    assert await page.locator("#witness-list .witness-result").get_attribute("data-result") == "ok"
    await page.screenshot(path=str(screenshots / f"d_{sheet['id']}_witnessed.png"), full_page=True)

    async def altered(route: Route) -> None:
        # The same signature line under another root: the browser must notice.
        response = await route.fetch()
        note = await response.text()
        origin, size, _root64, rest = note.split("\n", 3)
        other = base64.b64encode(bytes(32)).decode()
        await route.fulfill(response=response, body="\n".join([origin, size, other, rest]))

    async def resigned(route: Route) -> None:
        # A server that also prints the sheet's own root but a forged signature line.
        response = await route.fetch()
        note = await response.text()
        head, _, line = note.rpartition("\n\n")
        forged = line.split(" ")
        sig = bytearray(base64.b64decode(forged[-1]))
        sig[10] ^= 1
        await route.fulfill(
            response=response, body=f"{head}\n\n{' '.join(forged[:-1])} {base64.b64encode(bytes(sig)).decode()}\n"
        )

    for handler, phrase in ((altered, "根哈希"), (resigned, name)):
        await page.route("**/checkpoint", handler)
        await page.click("#witness-form button[type=submit]")
        result, shown = await outcome(page, "#witness-result")
        assert result == "fail" and phrase in shown, shown
        await page.unroute("**/checkpoint")
    await page.context.close()

    port = urlsplit(live_server.base_url).port
    async with async_playwright() as p:
        lan = await p.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=[*ARGS, "--host-resolver-rules=MAP ledger.test 127.0.0.1"]
        )
        plain = await new_page(lan)
        await plain.goto(f"http://ledger.test:{port}/d/{sheet['id']}")
        assert await plain.evaluate("() => typeof (window.crypto && window.crypto.subtle)") == "undefined"
        await plain.click("#witness-form button[type=submit]")
        result, shown = await outcome(plain, "#witness-result")
        assert result == "ok" and "noble-curves" in shown and "noble-hashes" in shown, shown
        await lan.close()
