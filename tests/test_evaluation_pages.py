"""共评 and 进展公开 on the resident pages: the project page's results are the API's, the form
opened from a slip carries its code (and says nothing of whether it is valid), the form records a
score once and keeps the resident's input when refused, and progress notes show their photos.
The slips themselves: their PDF read back (pdftotext shows every code; zbarimg decodes each QR
code to the form URL, which opens the form with that code)."""

from __future__ import annotations

import html
import os
import re
import subprocess
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from reports.formatting import percent
from tests.api_support import World, assert_problem, past
from tests.evaluation_support import decide, evaluate, issue, tally, tally_sheet_png, upload_png
from tests.pages_support import publish
from tests.test_pages_qr import pdf_text, qr_codes

BASE = "http://127.0.0.1:8000"
# The sheet's pages as PNG, to look at (next to the page tests' screenshots).
SHEET_PNG = Path(
    os.environ.get("LEDGER_SCREENSHOT_DIR", Path(__file__).resolve().parents[1] / "var" / "screenshots")
)  # the test app's LEDGER_PUBLIC_BASE_URL (the default)


def figure(page: str, element_id: str) -> str:
    match = re.search(rf'id="{element_id}">([^<]*)<', page)
    assert match, element_id
    return match.group(1)


def form_value(page: str, element_id: str) -> str:
    match = re.search(rf'<input id="{element_id}"[^>]* value="([^"]*)"', page)
    assert match, element_id
    return html.unescape(match.group(1))


async def test_slips_pdf_codes_and_qr_codes_open_the_form(world: World, tmp_path: Path) -> None:
    project = await world.project()
    issued = await issue(world, project, 3)
    response = await world.api.get(issued["slips_pdf_url"], token=world.treasurer)
    assert response.status_code == 200 and response.headers["content-type"] == "application/pdf"
    assert response.headers["cache-control"] == "no-store"
    (tmp_path / "slips.pdf").write_bytes(response.content)
    text = pdf_text(tmp_path / "slips.pdf")
    for code in issued["codes"]:
        assert code in text, f"{code} printed on its slip"
    assert "共评卡" in text and "第 1 批 第 3 张" in text
    urls = qr_codes(response.content, tmp_path)
    expected = [f"{BASE}/p/{project}?code={c.replace('-', '')}#evaluate" for c in issued["codes"]]
    assert sorted(urls) == sorted(expected), urls
    # Each QR code opens the project page with the form and its code filled in.
    await decide(world, project, "acceptance")
    for url, code in zip(sorted(urls), sorted(issued["codes"]), strict=True):
        parts = urlsplit(url)
        page = await world.api.get(f"{parts.path}?{parts.query}")
        assert page.status_code == 200 and page.headers["cache-control"] == "no-store"
        assert 'id="evaluation-form"' in page.text and 'id="evaluate"' in page.text
        assert form_value(page.text, "eval-code") == code  # as printed: two groups of five


async def test_results_equal_across_api_page_and_sheet(world: World, tmp_path: Path) -> None:
    project = await world.project()
    codes = (await issue(world, project, 16))["codes"]
    await decide(world, project, "acceptance")
    before = await world.api.get(f"/p/{project}")
    # 13 of 16 satisfied: 81.25%, which half-up rounding prints 81.3% (half-even would say 81.2%).
    for code, score in zip(codes, [5] * 7 + [4] * 6 + [3, 2, 1], strict=True):
        assert (await evaluate(world, project, code, score, "路灯很亮" if score == 5 else None)).status_code == 201
    sheet = await upload_png(world, project, tally_sheet_png(77))
    assert (await tally(world, project, {"4": 2, "5": 1}, sheet, method="questionnaire")).status_code == 201
    api = (await world.api.get(f"/api/v1/projects/{project}/evaluations")).json()
    page = await world.api.get(f"/p/{project}")
    assert page.text != before.text, "a new score is on the page at once (the page version moved)"
    assert figure(page.text, "fig-eval-total") == str(api["total"]) == "19"
    assert figure(page.text, "fig-eval-average") == f"{api['average']:.2f}" == "4.11"
    assert figure(page.text, "fig-eval-satisfied") == "84.2%"  # 16/19 = 0.8421
    online = api["by_source"]["online"]
    assert online["satisfied_rate"] == 0.8125
    assert "路灯很亮" in page.text and sheet in page.text

    # The same figures, cell by cell, in the page's table and on a published sheet.
    expected = {source: shown(api, source) for source in ("online", "paper", "overall")}
    assert expected["online"] == ["7", "6", "1", "1", "1", "16", "4.06", "81.3%"]  # by hand: 65/16, 13/16
    assert expected["paper"] == ["1", "2", "0", "0", "0", "3", "4.33", "100.0%"]
    assert expected["overall"] == ["8", "8", "1", "1", "1", "19", "4.11", "84.2%"]
    table = re.search(r'<table class="scores" id="evaluation-scores">(.*?)</table>', page.text, re.S)
    assert table
    cells = [re.findall(r'<td class="num">([^<]*)</td>', row) for row in re.findall(r"<tr>(.*?)</tr>", table.group(1))]
    columns = {source: [row[i] for row in cells if row] for i, source in enumerate(("online", "paper", "overall"))}
    assert columns == expected, columns
    published = await publish(world, project)
    pdf = (await world.api.get(published["pdf_url"])).content
    (tmp_path / "sheet.pdf").write_bytes(pdf)
    text = pdf_text(tmp_path / "sheet.pdf")
    for label, source in (("线上（评价码）", "online"), ("线下（问卷、共评会）", "paper"), ("合计", "overall")):
        row = re.escape(label) + r"\s+" + r"\s+".join(re.escape(cell) for cell in expected[source])
        assert re.search(row, text), (label, expected[source], text[text.find("共评结果") :][:600])
    assert "已向 16 户发放评价码" in text
    keep_pages_as_png(tmp_path / "sheet.pdf", "evaluation-sheet")


def keep_pages_as_png(pdf: Path, name: str) -> None:
    """The PDF's pages at 60 dpi, kept to be looked at."""
    SHEET_PNG.mkdir(parents=True, exist_ok=True)
    subprocess.run(["pdftoppm", "-png", "-r", "60", str(pdf), str(SHEET_PNG / name)], check=True, timeout=120)


def shown(api: dict[str, Any], source: str) -> list[str]:
    """A row of 共评 as every output prints it (5 分 first): counts, count, average, satisfied rate."""
    counts = api["counts"] if source == "overall" else api[source]
    summary = api if source == "overall" else api["by_source"][source]
    rate = summary["satisfied_rate"]
    return [
        *(str(counts[n]) for n in "54321"),
        str(summary["total"]),
        "—" if summary["average"] is None else "{:.2f}".format(Decimal(str(summary["average"]))),
        percent(None if rate is None else Decimal(str(rate))),
    ]


async def test_the_form_records_once_and_keeps_input_when_refused(world: World) -> None:
    project = await world.project()
    codes = (await issue(world, project, 2))["codes"]
    closed_form = await world.api.get(f"/p/{project}")
    assert 'id="evaluation-form"' not in closed_form.text and "验收后才能评价" in closed_form.text
    await decide(world, project, "acceptance")

    async def post(url: str, data: dict[str, str]) -> Any:
        return await world.api.client.post(url, data=data, follow_redirects=False)

    body = {"household_code": codes[0].lower(), "score": "4", "comment": "请联系 13812345678 修路灯"}
    done = await post(f"/p/{project}/evaluations", data=body)
    assert done.status_code == 303 and done.headers["location"] == f"/p/{project}?evaluated=1#evaluate"
    thanks = await world.api.get(done.headers["location"].split("#")[0])
    assert 'id="evaluation-result"' in thanks.text and "138****5678" in thanks.text and "13812345678" not in thanks.text
    # The same form again (a double tap): recorded once, answered as done.
    again = await post(f"/p/{project}/evaluations", data=body)
    assert again.status_code == 303
    # The code with another score: refused, the input kept.
    refused = await post(f"/p/{project}/evaluations", data={**body, "score": "1"})
    assert refused.status_code == 409 and "已经使用过" in refused.text
    assert form_value(refused.text, "eval-code") == codes[0].lower() and 'value="1" checked' in refused.text
    wrong = await post(f"/p/{project}/evaluations", data={"household_code": "AAAAA-BBBBB", "score": "5"})
    assert wrong.status_code == 422 and "评价码不正确" in wrong.text
    no_score = await post(f"/p/{project}/evaluations", data={"household_code": codes[1]})
    assert no_score.status_code == 422 and "评分" in no_score.text
    api = (await world.api.get(f"/api/v1/projects/{project}/evaluations")).json()
    assert api["total"] == 1 and api["online"]["4"] == 1
    await decide(world, project, "closure")
    over = await world.api.get(f"/p/{project}?code={codes[1]}")
    assert 'id="evaluation-form"' not in over.text and "共评已结束" in over.text
    late = await post(f"/p/{project}/evaluations", data={"household_code": codes[1], "score": "5"})
    assert late.status_code == 409 and "结项" in late.text
    assert_problem(await evaluate(world, project, codes[1], 5), 409, "stage_forbids_entry")


async def test_progress_notes_with_photos_on_the_page(world: World) -> None:
    project = await world.project()
    empty = await world.api.get(f"/p/{project}")
    assert "暂无进展" in empty.text
    photo = await upload_png(world, project, tally_sheet_png(120))
    note = await world.api.post(
        f"/api/v1/projects/{project}/progress",
        {"happened_on": past(2), "text": "路面铣刨完成<script>alert(1)</script>", "attachments": [photo]},
        token=world.treasurer,
    )
    assert note.status_code == 201
    page = await world.api.get(f"/p/{project}")
    assert "路面铣刨完成&lt;script&gt;" in page.text and "<script>alert" not in page.text
    assert f'src="/api/v1/attachments/{photo}"' in page.text
    assert (await world.api.get(f"/api/v1/attachments/{photo}")).status_code == 200
    for i in range(11):
        response = await world.api.post(
            f"/api/v1/projects/{project}/progress",
            {"happened_on": past(1), "text": f"第 {i} 天"},
            token=world.treasurer,
        )
        assert response.status_code == 201
    page = await world.api.get(f"/p/{project}")
    assert page.text.count('class="note"') == 10 and f"/p/{project}/progress" in page.text
    listed = await world.api.get(f"/p/{project}/progress")
    assert listed.status_code == 200 and listed.text.count('class="note"') == 12
