"""The workspace's 共评 and 进展公开 pages over HTTP: issuing codes (a double submit issues one
batch), showing and printing them only for the token that issued them, a tally with a photo of its
sheet, progress notes with photos; the authorisation matrix and CSRF."""

from __future__ import annotations

import re
from pathlib import Path

from tests.api_support import World, past
from tests.evaluation_support import decide, tally_sheet_png
from tests.test_attachments import photo_with_gps
from tests.test_pages_qr import pdf_text
from tests.test_workspace import Browser, browser, form_fields, sign_in  # noqa: F401

CODE = re.compile(r"<code>([A-Z2-9]{5}-[A-Z2-9]{5})</code>")


async def test_issuing_codes_and_printing_slips(world: World, browser: Browser, tmp_path: Path) -> None:  # noqa: F811
    project = await world.project()
    await sign_in(browser, world.treasurer)
    desk = await browser.get(f"/w/p/{project}")
    assert f'href="/w/p/{project}/evaluation"' in desk.text and f'href="/w/p/{project}/progress"' in desk.text
    page = await browser.get(f"/w/p/{project}/evaluation")
    assert page.status_code == 200 and "项目尚未验收" in page.text
    hidden = form_fields(page.text, f"/w/p/{project}/evaluation/codes")
    bad = await browser.post(f"/w/p/{project}/evaluation/codes", data={**hidden, "count": "0"})
    assert bad.status_code == 422 and "1 到 1000" in bad.text
    # Two clicks on one form: one batch.
    first = await browser.post(f"/w/p/{project}/evaluation/codes", data={**hidden, "count": "3"})
    second = await browser.post(f"/w/p/{project}/evaluation/codes", data={**hidden, "count": "3"})
    assert first.status_code == second.status_code == 303
    assert first.headers["location"] == second.headers["location"] == f"/w/p/{project}/evaluation?batch=1#codes"
    shown = await browser.get(f"/w/p/{project}/evaluation?batch=1")
    codes = CODE.findall(shown.text)
    assert len(codes) == 3 and shown.headers["cache-control"] == "no-store"
    api = (await world.api.get(f"/api/v1/projects/{project}/evaluations")).json()
    assert api["codes_issued"] == 3, "a double submit issued one batch"
    slips = await browser.get(f"/w/p/{project}/evaluation/1/slips.pdf")
    assert slips.status_code == 200 and slips.headers["content-type"] == "application/pdf"
    (tmp_path / "slips.pdf").write_bytes(slips.content)
    text = pdf_text(tmp_path / "slips.pdf")
    assert all(code in text for code in codes)
    # The codes work in the API.
    await decide(world, project, "acceptance")
    scored = await world.api.post(f"/api/v1/projects/{project}/evaluations", {"household_code": codes[0], "score": 5})
    assert scored.status_code == 201

    # Another token of the same community sees the batch but neither its codes nor its slips.
    other = Browser(world.api.client)
    await sign_in(other, world.auditor)
    seen = await other.get(f"/w/p/{project}/evaluation?batch=1")
    assert seen.status_code == 200 and not CODE.findall(seen.text) and "只能由发放人打印" in seen.text
    assert 'id="codes-form"' not in seen.text and 'id="tally-form"' not in seen.text
    assert (await other.get(f"/w/p/{project}/evaluation/1/slips.pdf")).status_code == 403
    own_csrf = form_fields(seen.text, "/w/logout")
    refused = await other.post(f"/w/p/{project}/evaluation/codes", data={**own_csrf, "count": "1"})
    assert refused.status_code == 403 and "只有本社区的报账员可以发放评价码" in refused.text
    stranger = Browser(world.api.client)
    await sign_in(stranger, world.tokens["treasurer_other"])
    assert (await stranger.get(f"/w/p/{project}/evaluation")).status_code == 404
    assert (await stranger.get(f"/w/p/{project}/evaluation/1/slips.pdf")).status_code == 404
    # Without the form's CSRF token nothing is issued.
    forged = await browser.post(f"/w/p/{project}/evaluation/codes", data={"count": "2", "idem": "x"})
    assert forged.status_code == 403
    assert (await world.api.get(f"/api/v1/projects/{project}/evaluations")).json()["codes_issued"] == 3


async def test_a_tally_with_its_sheet(world: World, browser: Browser) -> None:  # noqa: F811
    project = await world.project()
    await sign_in(browser, world.treasurer)
    closed = await browser.get(f"/w/p/{project}/evaluation")
    assert 'id="tally-form"' not in closed.text, "no tally before the acceptance"
    await decide(world, project, "acceptance", days_ago=5)
    page = await browser.get(f"/w/p/{project}/evaluation")
    hidden = form_fields(page.text, f"/w/p/{project}/evaluation/tallies")
    data = {**hidden, "held_on": past(1), "method": "questionnaire", "c5": "12", "c4": "3", "c1": "1"}
    no_sheet = await browser.post(f"/w/p/{project}/evaluation/tallies", data=data)
    assert no_sheet.status_code == 422 and "统计表" in no_sheet.text
    bad_count = await browser.post(
        f"/w/p/{project}/evaluation/tallies",
        data={**data, "c3": "三"},
        files={"sheet": ("sheet.png", tally_sheet_png(), "image/png")},
    )
    assert bad_count.status_code == 422
    files = {"sheet": ("sheet.jpg", photo_with_gps(), "image/jpeg")}
    done = await browser.post(f"/w/p/{project}/evaluation/tallies", data=data, files=files)
    again = await browser.post(f"/w/p/{project}/evaluation/tallies", data=data, files=files)
    assert done.status_code == again.status_code == 303, done.text
    api = (await world.api.get(f"/api/v1/projects/{project}/evaluations")).json()
    assert api["paper"] == {"1": 1, "2": 0, "3": 0, "4": 3, "5": 12} and len(api["tallies"]) == 1
    sheet = api["tallies"][0]["sheet_sha256"]
    # The community's staff read the sheet; the public does not.
    assert (await browser.get(f"/w/a/{sheet}")).status_code == 200
    assert (await world.api.get(f"/api/v1/attachments/{sheet}")).status_code == 404
    shown = await browser.get(f"/w/p/{project}/evaluation")
    assert "问卷：5 分 12，4 分 3" in shown.text


async def test_progress_notes_with_photos(world: World, browser: Browser) -> None:  # noqa: F811
    project = await world.project()
    await sign_in(browser, world.treasurer)
    page = await browser.get(f"/w/p/{project}/progress")
    hidden = form_fields(page.text, f"/w/p/{project}/progress")
    empty = await browser.post(f"/w/p/{project}/progress", data={**hidden, "happened_on": past(1), "text": ""})
    assert empty.status_code == 422
    phone = await browser.post(
        f"/w/p/{project}/progress", data={**hidden, "happened_on": past(1), "text": "有事打 13812345678"}
    )
    assert phone.status_code == 422 and "手机号" in phone.text and "13812345678" in phone.text  # kept in the form
    data = {**hidden, "happened_on": past(1), "text": "东侧路段摊铺完成。"}
    files = [
        ("photos", ("a.jpg", photo_with_gps(), "image/jpeg")),
        ("photos", ("b.png", tally_sheet_png(99), "image/png")),
    ]
    done = await browser.post(f"/w/p/{project}/progress", data=data, files=files)
    again = await browser.post(f"/w/p/{project}/progress", data=data, files=files)
    assert done.status_code == again.status_code == 303, done.text
    notes = (await world.api.get(f"/api/v1/projects/{project}/progress")).json()["items"]
    assert len(notes) == 1 and len(notes[0]["attachments"]) == 2, "a double submit posts once"
    for sha in notes[0]["attachments"]:
        photo = await world.api.get(f"/api/v1/attachments/{sha}")
        assert photo.status_code == 200
        assert b"Exif" not in photo.content[:200], "the photo's metadata is gone"
    public = await world.api.get(f"/p/{project}")
    assert "东侧路段摊铺完成。" in public.text and notes[0]["attachments"][0] in public.text
    auditor = Browser(world.api.client)
    await sign_in(auditor, world.auditor)
    seen = await auditor.get(f"/w/p/{project}/progress")
    assert seen.status_code == 200 and 'id="progress-form"' not in seen.text and "东侧路段" in seen.text
    own_csrf = form_fields(seen.text, "/w/logout")
    refused = await auditor.post(f"/w/p/{project}/progress", data={**data, **own_csrf})
    assert refused.status_code == 403 and "只有本社区的报账员可以发布进展" in refused.text
