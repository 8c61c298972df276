"""The evaluation form in a real headless Chromium on a phone-size page (360 px), JavaScript off:
opened as a slip's QR code opens it, with the code filled in; a score and a comment submitted;
the thanks and the results on the project page; the same code refused afterwards. Screenshots go
to ``$LEDGER_SCREENSHOT_DIR`` (default var/screenshots) as evaluation-*.png."""

from __future__ import annotations

from playwright.async_api import Browser

from tests.api_support import LiveServer, World, past
from tests.evaluation_support import decide, issue, tally, tally_sheet_png, upload_png
from tests.test_pages_browser import MEASURE, SCREENSHOTS, browser, new_page, no_script_dialogs  # noqa: F401

# Module-scoped browser and the guard against script dialogs come from the page tests.


def fits_a_phone(m: dict[str, object]) -> None:
    assert m["scrollWidth"] <= m["innerWidth"], m  # type: ignore[operator]
    assert not m["small"], m["small"]
    assert not m["taps"], m["taps"]


async def test_evaluating_on_a_phone(browser: Browser, live_server: LiveServer, world: World) -> None:  # noqa: F811
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    project = await world.project()
    codes = (await issue(world, project, 3))["codes"]
    photo = await upload_png(world, project, tally_sheet_png(150))
    note = await world.api.post(
        f"/api/v1/projects/{project}/progress",
        {"happened_on": past(12), "text": "路面刷黑完工，正在养护，请绕行 3 栋东侧。", "attachments": [photo]},
        token=world.treasurer,
    )
    assert note.status_code == 201
    await decide(world, project, "acceptance", days_ago=3)
    sheet = await upload_png(world, project, tally_sheet_png(60))
    assert (await tally(world, project, {"3": 1, "4": 5, "5": 9}, sheet)).status_code == 201

    page = await new_page(browser, java_script_enabled=False)
    plain = codes[0].replace("-", "")
    await page.goto(f"{live_server.base_url}/p/{project}?code={plain}#evaluate")
    assert await page.input_value("#eval-code") == codes[0]  # as printed on the slip
    assert await page.locator("#evaluation-form").is_visible()
    fits_a_phone(await page.evaluate(MEASURE))
    await page.screenshot(path=str(SCREENSHOTS / "evaluation-form.png"), full_page=True)

    await page.click("label[for=score-4]")
    await page.fill("#eval-comment", "路面平整了，晚上路灯还不够亮。")
    await page.click("#evaluation-form button[type=submit]")
    await page.wait_for_selector("#evaluation-result")
    assert page.url.endswith(f"/p/{project}?evaluated=1#evaluate")
    assert await page.inner_text("#evaluation-result") == "已收到您的评价，谢谢！"
    assert await page.inner_text("#fig-eval-total") == "16"
    assert "路灯还不够亮" in await page.inner_text("#comments")
    fits_a_phone(await page.evaluate(MEASURE))
    await page.locator("#evaluate").screenshot(path=str(SCREENSHOTS / "evaluation-results.png"))
    await page.screenshot(path=str(SCREENSHOTS / "evaluation-project.png"), full_page=True)

    # The same slip again, another score: refused, in words, the input kept.
    await page.goto(f"{live_server.base_url}/p/{project}?code={plain}#evaluate")
    await page.click("label[for=score-1]")
    await page.click("#evaluation-form button[type=submit]")
    errors = await page.inner_text("#evaluation-errors")
    assert "已经使用过" in errors, errors
    assert await page.input_value("#eval-code") == codes[0]
    assert await page.is_checked("#score-1")
    fits_a_phone(await page.evaluate(MEASURE))
    await page.screenshot(path=str(SCREENSHOTS / "evaluation-refused.png"), full_page=True)
    await page.context.close()


async def test_the_treasurers_pages_on_a_phone(browser: Browser, live_server: LiveServer, world: World) -> None:  # noqa: F811
    """Issue codes, see them, post a progress note with a photo, record a meeting's tally: the
    workspace's forms in Chromium at 360 px (the file inputs included)."""
    from tests.test_workspace_browser import sign_in

    shots = SCREENSHOTS / "workspace"
    shots.mkdir(parents=True, exist_ok=True)
    project = await world.project()
    base = live_server.base_url
    page = await new_page(browser)
    await sign_in(page, base, world.treasurer)
    await page.goto(f"{base}/w/p/{project}")
    await page.click("#to-evaluation")
    await page.fill("#f-count", "4")
    await page.click("#issue")
    await page.wait_for_selector("#codes")
    assert await page.locator("ol.codes li").count() == 4
    fits_a_phone(await page.evaluate(MEASURE))
    await page.screenshot(path=str(shots / "evaluation.png"), full_page=True)
    slips = await page.request.get(base + (await page.get_attribute("#slips-link", "href") or ""))
    assert slips.status == 200 and (await slips.body()).startswith(b"%PDF-")

    photo = tally_sheet_png(180)
    await page.goto(f"{base}/w/p/{project}/progress")
    await page.fill("#f-text", "排水沟清淤完成，下周开始铺设沥青。")
    await page.set_input_files("#f-photos", files=[{"name": "site.png", "mimeType": "image/png", "buffer": photo}])
    await page.click("#post-progress")
    await page.wait_for_url(f"{base}/w/p/{project}/progress#notes")
    assert "排水沟清淤完成" in await page.inner_text("#progress-notes")
    assert await page.locator("#progress-notes img").count() == 1
    fits_a_phone(await page.evaluate(MEASURE))
    await page.screenshot(path=str(shots / "progress.png"), full_page=True)

    await decide(world, project, "acceptance", days_ago=4)
    await page.goto(f"{base}/w/p/{project}/evaluation")
    await page.select_option("#f-method", "meeting")
    for n, count in ((5, "20"), (4, "8"), (3, "2")):
        await page.fill(f"#f-c{n}", count)
    await page.set_input_files(
        "#f-sheet", files=[{"name": "tally.png", "mimeType": "image/png", "buffer": tally_sheet_png(40)}]
    )
    await page.click("#record-tally")
    await page.wait_for_url(f"{base}/w/p/{project}/evaluation#tallies")
    assert "共评会：5 分 20，4 分 8，3 分 2" in await page.inner_text("#tallies")
    assert await page.inner_text("#evaluation-scores tfoot tr:first-child td:last-child") == "30"
    fits_a_phone(await page.evaluate(MEASURE))
    await page.screenshot(path=str(shots / "evaluation-tally.png"), full_page=True)
    await page.context.close()
