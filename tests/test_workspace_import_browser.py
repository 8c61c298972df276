"""The workspace's 导入表格 page in a real headless Chromium (the system's ``chromium``): upload a
spreadsheet, read its dry run (problems listed by row and column), fix it, confirm with a
double-click (recorded once), and the same file again refused. Screenshots at 360 px go to
``$LEDGER_SCREENSHOT_DIR``/workspace."""

from __future__ import annotations

from pathlib import Path

from playwright.async_api import Browser

from tests.api_support import LiveServer, World
from tests.import_support import HEADER, contribution_rows, csv_text, day, xlsx
from tests.test_workspace_browser import browser, fits_a_phone, ledger_size, new_page, shots, sign_in

__all__ = ["browser", "shots"]  # module-scoped fixtures shared with the workspace's other browser tests


async def test_import_a_spreadsheet_after_its_dry_run(
    browser: Browser, live_server: LiveServer, world: World, shots: Path, tmp_path: Path
) -> None:
    base = live_server.base_url
    project = await world.project()
    page = await new_page(browser)
    await sign_in(page, base, world.treasurer)
    await page.goto(f"{base}/w/p/{project}")
    await page.click("#to-import")
    await page.wait_for_url(f"{base}/w/p/{project}/import")
    assert await page.get_attribute("#template-link", "href") == "/api/v1/imports/template.xlsx"
    await fits_a_phone(page, shots, "import_form")

    # A sheet with problems: every one listed by row and column, and no way to confirm it.
    bad = tmp_path / "众筹明细（有错）.xlsx"
    rows = [("锦绣花园小区路面刷黑众筹明细",), ("日期", "姓名", "房号", "金额（元）", "方式")]
    rows += [
        (day().isoformat(), "张三", "3栋2单元501", "2,000.00", "微信"),
        (day().isoformat(), "李四", "5栋", "两百", "刷卡"),
    ]
    rows += [("合计", None, None, "2,200.00", None)]
    bad.write_bytes(xlsx(rows))
    await page.set_input_files("#f-file", str(bad))
    await page.click("#check")
    await page.wait_for_selector("#import-problems")
    problems = await page.inner_text("#import-problems")
    assert '第 4 行「金额（元）」: 无法识别 "两百"' in problems
    assert '第 4 行「方式」: 无法识别 "刷卡"' in problems
    assert await page.locator("#confirm").count() == 0
    await fits_a_phone(page, shots, "import_problems")

    # The fixed sheet, as Excel on Chinese Windows saves a CSV (GBK).
    good = tmp_path / "众筹明细.csv"
    good.write_bytes(csv_text([HEADER, *contribution_rows(3), ("合计", None, None, "600.00")]).encode("gbk"))
    await page.set_input_files("#f-file", str(good))
    await page.click("#check")
    await page.wait_for_selector("#confirm")
    assert "编码 GB18030" in await page.inner_text("#import-file")
    assert await page.locator("#import-rows li").count() == 3
    assert "居民00001" in await page.inner_text("#import-rows")  # the treasurer's own data, in full
    assert "600.00" in await page.inner_text("#import-totals")
    assert await ledger_size(base, project) == 0
    await fits_a_phone(page, shots, "import_check")

    # A double-click on 确认 records once.
    await page.dblclick("#confirm")
    await page.wait_for_selector("#flash")
    assert "已导入表格：第 1–3 笔" in await page.inner_text("#flash")
    assert await ledger_size(base, project) == 3
    await fits_a_phone(page, shots, "import_done")

    # The same file again is refused, pointing at the first import.
    await page.goto(f"{base}/w/p/{project}/import")
    await page.set_input_files("#f-file", str(good))
    await page.click("#check")
    await page.wait_for_selector("#import-error")
    assert "内容相同的文件已于" in await page.inner_text("#import-error")
    assert await ledger_size(base, project) == 3

    # A post without the form's CSRF token changes nothing.
    response = await page.request.post(
        f"{base}/w/p/{project}/import/confirm", form={"sha256": "0" * 64}, headers={"Origin": base}
    )
    assert response.status == 403
    await page.context.close()

    # An auditor checks, but does not import.
    page = await new_page(browser)
    await sign_in(page, base, world.auditor)
    response = await page.goto(f"{base}/w/p/{project}/import")
    assert response is not None and response.status == 403
    await page.context.close()
