"""A sheet's embedded fonts hold only the glyphs drawn (reports/pdf_fonts.py): a 100-entry sheet
within 250 KB, drawn pixel for pixel as WeasyPrint's own subsets draw it (no tofu, bold still
bold), its text still extractable; the garbage collector is paused while WeasyPrint works
(reports.render.collector_paused). Not timed."""

from __future__ import annotations

import gc
import io
import subprocess
from pathlib import Path

import pytest
import weasyprint
from PIL import Image, ImageChops
from pypdf import PdfReader

from reports import render as render_module
from reports.pdf_fonts import compact_fonts
from reports.render import TEMPLATES_DIR, collector_paused, render_sheet_html, render_sheet_pdf

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


def test_the_collector_is_paused_while_a_sheet_renders_and_resumed_after(monkeypatch: pytest.MonkeyPatch) -> None:
    """WeasyPrint's millions of live objects make every automatic full collection walk them again
    (1.2-1.5 s of a 10,000-entry sheet): the collector is off while WeasyPrint works, then on."""
    seen: list[bool] = []

    def finisher(document: object, pdf: object) -> None:
        seen.append(gc.isenabled())
        compact_fonts(document, pdf)  # type: ignore[arg-type]

    monkeypatch.setattr(render_module, "compact_fonts", finisher)
    assert gc.isenabled()
    pdf = render_sheet_pdf(sample_sheet(20))
    assert seen == [False]
    assert gc.isenabled()
    assert pdf.startswith(b"%PDF-")


def test_the_collector_stays_paused_until_the_last_render_ends_and_resumes_after_a_failure() -> None:
    """Renders in threads overlap: the first to end must not turn the collector back on under the
    other, a failed render must not leave it off, and one switched off by its owner stays off."""
    assert gc.isenabled()
    first, second = collector_paused(), collector_paused()
    first.__enter__()
    second.__enter__()
    assert not gc.isenabled()
    first.__exit__(None, None, None)
    assert not gc.isenabled()
    second.__exit__(None, None, None)
    assert gc.isenabled()

    with pytest.raises(RuntimeError), collector_paused():
        raise RuntimeError("WeasyPrint failed")
    assert gc.isenabled()

    gc.disable()
    try:
        with collector_paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()
