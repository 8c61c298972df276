"""A sheet's embedded fonts hold only the glyphs drawn (reports/pdf_fonts.py): a 100-entry sheet
within 250 KB, drawn pixel for pixel as WeasyPrint's own subsets draw it (no tofu, bold still
bold), its text still extractable. Not timed."""

from __future__ import annotations

import io
import subprocess
from pathlib import Path

import weasyprint
from PIL import Image, ImageChops
from pypdf import PdfReader

from reports.render import TEMPLATES_DIR, render_sheet_html, render_sheet_pdf

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
