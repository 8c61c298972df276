"""A big sheet drawn by two processes (reports/sheet_split.py) is the sheet one process draws.

Not timed (``bench/sheet.py --split`` measures the gain): these hold the split to the whole render
page by page — text, pixels, outline, metadata — and check that it falls back to the whole render
whenever its halves disagree, one of them fails or no second core is free, and that its helper
process is started once and kept.
"""

from __future__ import annotations

import functools
import io
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pikepdf
import pytest
from PIL import Image, ImageChops

from reports import sheet_split
from reports.render import PdfRenderer, render_sheet_html, render_sheet_pdf
from reports.sheet_model import SheetModel
from tests.sheet_sample import sample_sheet

ROOT = Path(__file__).resolve().parents[1]
# 600 entries print as ~110 bands over ~13 pages: enough for a cut in the middle of a table with
# the overlap (40 bands) before it, small enough to render twice in a few seconds.
ENTRIES = 600
SPLIT_FROM = 50  # bands: a threshold this sheet passes
NEVER = 10**9


def _font_programs(pdf: bytes) -> int:
    with pikepdf.open(io.BytesIO(pdf)) as document:
        return sum(
            1 for obj in document.objects if isinstance(obj, pikepdf.Stream) and obj.get("/Subtype") == "/CIDFontType0C"
        )


def _outline(pdf: bytes) -> list[tuple[Any, ...]]:
    rows: list[tuple[Any, ...]] = []
    with pikepdf.open(io.BytesIO(pdf)) as document, document.open_outline() as outline:

        def walk(items: list[Any], depth: int) -> None:
            for item in items:
                page, kind, *place = item.destination
                number = document.pages.index(pikepdf.Page(page))
                rows.append((depth, item.title, number, str(kind), [round(float(x), 3) for x in place], item.is_closed))
                walk(item.children, depth + 1)

        walk(outline.root, 0)
    return rows


def _catalog(pdf: bytes) -> tuple[list[str], dict[str, str]]:
    with pikepdf.open(io.BytesIO(pdf)) as document:
        return sorted(document.Root.keys()), {str(k): str(v) for k, v in document.docinfo.items()}


def _page_texts(pdf: bytes, pages: int) -> list[str]:
    return [
        subprocess.run(
            ["pdftotext", "-layout", "-f", str(n), "-l", str(n), "-", "-"], input=pdf, capture_output=True, check=True
        ).stdout.decode()
        for n in range(1, pages + 1)
    ]


def _page_images(pdf: bytes, folder: Path) -> list[Image.Image]:
    subprocess.run(["pdftoppm", "-png", "-r", "40", "-", str(folder / "p")], input=pdf, check=True)
    return [Image.open(path).convert("L") for path in sorted(folder.glob("p*.png"))]


def _split_on_a_quiet_machine(model: SheetModel) -> bytes:
    """In a renderer's worker process: the split, whatever else the test machine is running (its
    load average would otherwise decide, see :func:`sheet_split.a_second_core_is_free`)."""
    os.getloadavg = lambda: (0.0, 0.0, 0.0)
    return render_sheet_pdf(model, split_min_bands=SPLIT_FROM)


async def test_a_sheet_drawn_in_two_halves_is_the_whole_sheet_page_for_page(tmp_path: Path) -> None:
    model = sample_sheet(ENTRIES)
    assert sheet_split.band_count(render_sheet_html(model)) >= max(SPLIT_FROM, 2 * sheet_split.OVERLAP_BANDS)
    # A renderer's worker process runs no other thread: the place the service splits sheets.
    async with PdfRenderer(max_concurrent=1) as renderer:
        whole = await renderer.run(functools.partial(render_sheet_pdf, split_min_bands=NEVER), model)
        split = await renderer.run(_split_on_a_quiet_machine, model)

    # It was split: each half embeds its own subset of each of the three faces.
    assert _font_programs(whole) == 3
    assert _font_programs(split) == 6

    pages = len(pikepdf.open(io.BytesIO(whole)).pages)
    assert pages >= 10
    assert len(pikepdf.open(io.BytesIO(split)).pages) == pages
    # Footers say 第 N 页 共 M 页 on every page, and the running title: as in the whole render.
    assert _page_texts(split, pages) == _page_texts(whole, pages)
    (tmp_path / "whole").mkdir()
    (tmp_path / "split").mkdir()
    whole_images = _page_images(whole, tmp_path / "whole")
    split_images = _page_images(split, tmp_path / "split")
    assert len(whole_images) == len(split_images) == pages
    for number, (a, b) in enumerate(zip(whole_images, split_images, strict=True), start=1):
        assert a.size == b.size and ImageChops.difference(a, b).getbbox() is None, f"page {number} differs"
    # The outline nests and points as the whole render's does, the metadata is the same, and the
    # anchors the halves used to agree on are gone.
    assert _outline(split) == _outline(whole)
    assert len(_outline(whole)) >= 10
    assert _catalog(split) == _catalog(whole)


_FALLBACK_SCRIPT = """
import logging, os, sys
from concurrent.futures.process import BrokenProcessPool
sys.path.insert(0, {root!r})
logging.basicConfig(level=logging.WARNING, format="%(name)s %(message)s")
from reports import sheet_split
from reports.render import render_sheet_pdf
from tests.sheet_sample import sample_sheet

quiet = lambda: (0.0, 0.0, 0.0)
os.getloadavg = quiet  # whatever else runs on the machine meanwhile (the load is tested below)
model = sample_sheet({entries})
whole = render_sheet_pdf(model, split_min_bands={never})
split = render_sheet_pdf(model, split_min_bands={split_from})
assert split != whole  # it does split here
assert render_sheet_pdf(model, split_min_bands={split_from}) == split  # same model, same bytes

sheet_split.BAND_LINE_PT = 20  # ghosts taller than their bands: the halves break pages apart
assert render_sheet_pdf(model, split_min_bands={split_from}) == whole
sheet_split.BAND_LINE_PT = 12.5

os.getloadavg = lambda: (2.0 * os.cpu_count(), 0.0, 0.0)  # every core busy: no second process
assert render_sheet_pdf(model, split_min_bands={split_from}) == whole
os.getloadavg = quiet
real_affinity = os.sched_getaffinity
os.sched_getaffinity = lambda pid: {{0}}  # one core
assert render_sheet_pdf(model, split_min_bands={split_from}) == whole
os.sched_getaffinity = real_affinity

real_front = sheet_split.draw_front
sheet_split.draw_front = lambda *args: 1 / 0  # the first half fails
assert render_sheet_pdf(model, split_min_bands={split_from}) == whole
sheet_split.draw_front = real_front

helper = sheet_split.second_process()
try:  # the helper for second halves dies between two sheets
    helper.submit(os._exit, 3).result()
except BrokenProcessPool:
    pass
assert render_sheet_pdf(model, split_min_bands={split_from}) == whole
assert render_sheet_pdf(model, split_min_bands={split_from}) == split  # and the next one has a new helper
assert sheet_split.second_process() is not helper
print("ok")
"""


def test_a_split_is_repeatable_and_otherwise_the_sheet_renders_whole() -> None:
    """Halves that disagree, a busy machine, a single core, a first half that fails, a helper that
    died: the whole render (and a new helper for the next sheet)."""
    script = _FALLBACK_SCRIPT.format(root=str(ROOT), entries=ENTRIES, never=NEVER, split_from=SPLIT_FROM)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
    warnings = [line for line in done.stderr.splitlines() if line.startswith("reports.sheet_split")]
    assert len(warnings) == 3, done.stderr
    assert "bands on different pages" in warnings[0] or "pages against" in warnings[0]
    assert "first half failed" in warnings[1]
    assert "had died" in warnings[2]


def test_the_helper_for_second_halves_is_started_once_and_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    model = sample_sheet(ENTRIES)
    helper = sheet_split.second_process()
    try:
        first = helper.submit(os.getpid).result()
        assert first != os.getpid()
        pdfs = [render_sheet_pdf(model, split_min_bands=SPLIT_FROM) for _ in range(2)]
        assert [_font_programs(pdf) for pdf in pdfs] == [6, 6]
        assert pdfs[0] == pdfs[1]
        assert sheet_split.second_process() is helper
        assert helper.submit(os.getpid).result() == first  # the same warm process, not a new one
    finally:
        sheet_split._forget_helper(helper)


def test_every_band_of_the_template_is_found() -> None:
    """The split finds bands by the template's markup: if that changes, it must not go blind."""
    html = render_sheet_html(sample_sheet(ENTRIES))
    printed = html.count('<tr class="band">')
    assert printed > 100
    assert sheet_split.band_count(html) == printed
    ghosts = sheet_split.part_html(html, lambda number: number % 2 == 0, range(0))
    assert ghosts.count('<tr class="band ghost') == printed // 2
    assert ghosts.count('<tr class="band">') == printed - printed // 2
    assert sheet_split.band_count(ghosts) == printed - printed // 2
