"""A sheet's embedded fonts hold only the glyphs drawn (reports/pdf_fonts.py): a 100-entry sheet
within 250 KB, drawn pixel for pixel as WeasyPrint's own subsets draw it (no tofu, bold still
bold), its text still extractable; the garbage collector is paused while WeasyPrint works
(reports.render.collector_paused). Not timed."""

from __future__ import annotations

import gc
import io
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import weasyprint
from PIL import Image, ImageChops
from pypdf import PdfReader

from reports import render as render_module
from reports.render import TEMPLATES_DIR, PdfRenderer, collector_paused, render_sheet_html, render_sheet_pdf
from reports.sheet_model import SheetModel

try:  # the sample sheet moves to tests/ with the architecture split (issue 9)
    from reports.sheet_sample import sample_sheet
except ImportError:  # pragma: no cover
    from tests.sheet_sample import sample_sheet  # type: ignore[no-redef]

SHEET_BYTES_MAX = 250_000


def _font_files(pdf: bytes) -> dict[str, str]:
    found = {}
    for page in PdfReader(io.BytesIO(pdf)).pages:
        for ref in page["/Resources"]["/Font"].values():
            font = ref.get_object()
            descriptor = font["/DescendantFonts"][0].get_object()["/FontDescriptor"].get_object()
            found[str(font["/BaseFont"])] = str(descriptor["/FontFile3"].get_object()["/Subtype"])
    return found


def _page(pdf: bytes, number: int, folder: Path, name: str) -> Image.Image:
    prefix = folder / name
    command = ["pdftoppm", "-png", "-r", "60", "-f", str(number), "-l", str(number), "-singlefile", "-", str(prefix)]
    subprocess.run(command, input=pdf, check=True)
    return Image.open(f"{prefix}.png").convert("L")


def test_a_hundred_entry_sheet_is_small_and_draws_the_same(tmp_path: Path) -> None:
    model = sample_sheet(100)
    pdf = render_sheet_pdf(model)
    assert len(pdf) <= SHEET_BYTES_MAX, len(pdf)
    fonts = _font_files(pdf)
    assert len(fonts) == 3 and set(fonts.values()) == {"/CIDFontType0C"}, fonts
    assert any("Bold" in name for name in fonts), "headings keep their bold face"
    # The same HTML with WeasyPrint's own font subsets: every page is drawn identically.
    html = weasyprint.HTML(
        string=render_sheet_html(model),
        base_url=TEMPLATES_DIR.as_uri() + "/",
        url_fetcher=weasyprint.urls.URLFetcher(allowed_protocols=()),
    )
    plain = html.write_pdf()
    assert plain is not None and len(plain) > 2 * len(pdf)
    pages = len(PdfReader(io.BytesIO(pdf)).pages)
    assert pages == len(PdfReader(io.BytesIO(plain)).pages)
    for number in range(1, pages + 1):
        ours, theirs = _page(pdf, number, tmp_path, f"c{number}"), _page(plain, number, tmp_path, f"p{number}")
        assert ImageChops.difference(ours, theirs).getbbox() is None, f"page {number} differs"
    text = PdfReader(io.BytesIO(pdf)).pages[0].extract_text()
    assert "资金收支公示" in text and "居民众筹收入" in text


def _collector_states_while_rendering(model: SheetModel) -> bytes:
    """Render ``model`` (in whatever process or thread runs this) and answer whether the collector
    was on while WeasyPrint's finisher ran, then after the render: module level, for the pool."""
    seen: list[bool] = []
    finish = render_module.compact_fonts

    def finisher(document: Any, pdf: Any) -> None:
        seen.append(gc.isenabled())
        finish(document, pdf)

    render_module.compact_fonts = finisher
    try:
        assert render_module.render_sheet_pdf(model).startswith(b"%PDF-")
    finally:
        render_module.compact_fonts = finish
    return json.dumps({"during": seen, "after": gc.isenabled()}).encode()


def test_the_collector_is_paused_while_a_sheet_renders_and_resumed_after() -> None:
    """WeasyPrint's millions of live objects make every automatic full collection walk them again
    (1.2-1.5 s of a 10,000-entry sheet): on the main thread (the CLI, a test) the collector is off
    while WeasyPrint works, then on again."""
    assert gc.isenabled()
    assert json.loads(_collector_states_while_rendering(sample_sheet(20))) == {"during": [False], "after": True}


async def test_a_renderer_process_pauses_the_collector_and_a_renderer_thread_does_not() -> None:
    """In a worker process the render has the process to itself; in ``mode="thread"`` the collector
    belongs to the whole server, which must not go without it while sheets follow one another."""
    model = sample_sheet(20)
    for mode, during in (("process", False), ("thread", True)):
        async with PdfRenderer(max_concurrent=1, mode=mode) as renderer:  # type: ignore[arg-type]
            states = json.loads(await renderer.run(_collector_states_while_rendering, model))
        assert states == {"during": [during], "after": True}, mode
    assert gc.isenabled()


def test_a_failed_render_turns_the_collector_back_on_and_one_already_off_is_left_alone() -> None:
    assert gc.isenabled()
    with pytest.raises(RuntimeError), collector_paused():
        assert not gc.isenabled()
        raise RuntimeError("WeasyPrint failed")
    assert gc.isenabled()

    with collector_paused():  # an outer pause keeps the collector off through an inner one
        with collector_paused():
            pass
        assert not gc.isenabled()
    assert gc.isenabled()

    gc.disable()  # off by its owner's choice: stays off
    try:
        with collector_paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()
