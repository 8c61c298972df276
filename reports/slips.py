"""评价卡: the printable slips of one batch of evaluation codes, eight to an A4 page.

Each slip carries its code (in two groups of five, in a monospaced face so 2/Z and 5/S do not
blur) and a QR code that opens the project page's evaluation form with the code filled in. The
slips are made on request from the codes (never stored: the service keeps only their hashes).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import quote

import jinja2
import segno
from markupsafe import Markup

from reports.formatting import date_cn
from reports.render import TEMPLATES_DIR, write_pdf

SLIPS_TEMPLATE = "slips.html.j2"
SLIPS_PER_PAGE = 8
SLIPS_MAX = 1000


def form_url(public_base_url: str, project_code: str, code: str) -> str:
    """Where a slip's QR code leads: the project page, its evaluation form, the code filled in."""
    return f"{public_base_url.rstrip('/')}/p/{quote(project_code)}?code={quote(code)}#evaluate"


@dataclass(frozen=True, slots=True, kw_only=True)
class SlipsModel:
    project_code: str
    project_title: str
    community_name: str
    batch_no: int
    codes: Sequence[str]  # normalised codes (no dash), in slip order
    public_base_url: str
    issued_on: object  # a date

    def __post_init__(self) -> None:
        object.__setattr__(self, "codes", tuple(self.codes))
        if not 1 <= len(self.codes) <= SLIPS_MAX:
            raise ValueError(f"a batch prints 1 to {SLIPS_MAX} slips")
        if any(len(c) != 10 or not c.isalnum() for c in self.codes):
            raise ValueError("codes are 10 letters and digits")


@dataclass(frozen=True)
class Slip:
    number: int
    code_text: str
    url: str
    qr: Markup


def qr_img(url: str) -> Markup:
    """A QR code as an embedded PNG (a data: URI). WeasyPrint draws an SVG QR code (the sheet's)
    path by path, which for a few hundred slips took most of the rendering time; a bitmap drawn
    without smoothing prints as sharp."""
    uri = segno.make(url, error="m", micro=False).png_data_uri(scale=6, border=2)
    # Generated from the URL only (letters, digits, the service's own address): safe to inline.
    return Markup(f'<img class="qr" alt="" src="{uri}">')


@functools.cache
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR), autoescape=True, undefined=jinja2.StrictUndefined
    )
    env.filters["date_cn"] = date_cn
    return env


def render_slips_html(model: SlipsModel) -> str:
    slips = [
        Slip(
            number=i,
            code_text=f"{code[:5]}-{code[5:]}",
            url=form_url(model.public_base_url, model.project_code, code),
            qr=qr_img(form_url(model.public_base_url, model.project_code, code)),
        )
        for i, code in enumerate(model.codes, start=1)
    ]
    pages = [slips[i : i + SLIPS_PER_PAGE] for i in range(0, len(slips), SLIPS_PER_PAGE)]
    page_url = f"{model.public_base_url.rstrip('/')}/p/{model.project_code}"
    return _environment().get_template(SLIPS_TEMPLATE).render(m=model, pages=pages, page_url=page_url)


def render_slips_pdf(model: SlipsModel) -> bytes:
    """The slips as PDF bytes. Like the sheet, nothing is fetched from anywhere: only the data: URIs
    of the QR codes made here are read."""
    import weasyprint

    html = weasyprint.HTML(
        string=render_slips_html(model),
        base_url=TEMPLATES_DIR.as_uri() + "/",
        url_fetcher=weasyprint.urls.URLFetcher(allowed_protocols=("data",)),
    )
    return write_pdf(html)
