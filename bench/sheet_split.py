"""Spike, not a renderer: what would laying out and drawing a big sheet in two processes cost?

    .venv/bin/python bench/sheet_split.py [--entries 10000] [--repeat 2]

The 10,000-entry sheet misses its 10 s goal inside WeasyPrint (layout 6–7 s, drawing 3–4 s, one
process; docs/performance.md §3). This measures the ceiling of the one remedy left, splitting the
work: the sheet's HTML is cut at the middle band of its longest detail table into

- the first part: everything before that band (the table closed there);
- the second part: the document's head and styles, that table's opening (columns and header
  row), and everything from that band on,

and both are rendered (``render()`` then ``write_pdf(finisher=compact_fonts)``) at once in two
worker processes, then joined with pypdf. It prints each part's seconds and pages, the wall time,
the join's time and bytes, and the whole sheet rendered in one process in the same run, with the
ratio.

What it leaves out, and a real split would need (see docs/performance.md §3): the cut is not
proven to fall where the whole render breaks a page (the parts' pages can differ from the
whole's), the second part's pages count from 1 and neither part knows the total for "第 X 页 共 Y
页", and the second part's running header lacks the title the first part's ``h1`` sets.
"""

from __future__ import annotations

import argparse
import io
import re
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import weasyprint
from pypdf import PdfReader, PdfWriter

from reports.pdf_fonts import compact_fonts
from reports.render import render_sheet_html, render_sheet_pdf
from tests.sheet_sample import sample_sheet


def render(html: str) -> tuple[float, int, bytes]:
    started = time.perf_counter()
    document = weasyprint.HTML(string=html).render()
    pdf = document.write_pdf(finisher=compact_fonts)
    return time.perf_counter() - started, len(document.pages), pdf


def warm(_: int) -> None:
    """fontconfig and the fonts, loaded once per worker before anything is timed."""
    render_sheet_pdf(sample_sheet(20))


def halves(html: str) -> tuple[str, str]:
    bands = [m.start() for m in re.finditer(r'<tr class="band">', html)]
    if len(bands) < 2:
        sys.exit("the sheet has too few bands to split; use more --entries")
    cut = bands[len(bands) // 2]
    table = html.rfind("<table", 0, cut)
    rows = html.find("<tbody>", table) + len("<tbody>\n")
    body = html.find("<body>") + len("<body>\n")
    return html[:cut] + "</tbody></table></section></body></html>", html[:body] + "<section>" + html[table:rows] + html[
        cut:
    ]


def join(parts: list[bytes]) -> bytes:
    writer = PdfWriter()
    for pdf in parts:
        writer.append(PdfReader(io.BytesIO(pdf)))
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entries", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    html = render_sheet_html(sample_sheet(args.entries))
    first, second = halves(html)
    with ProcessPoolExecutor(2) as pool:
        list(pool.map(warm, range(2)))
        for _ in range(args.repeat):
            started = time.perf_counter()
            (time_a, pages_a, pdf_a), (time_b, pages_b, pdf_b) = pool.map(render, [first, second])
            wall = time.perf_counter() - started
            started = time.perf_counter()
            joined = join([pdf_a, pdf_b])
            joining = time.perf_counter() - started
            whole_s, whole_pages, whole_pdf = next(pool.map(render, [html]))
            print(
                f"{args.entries:,} entries: parts {time_a:.2f} s ({pages_a} pages) and {time_b:.2f} s ({pages_b} pages)"
                f" at once, wall {wall:.2f} s; pypdf join {joining:.2f} s, {len(joined):,} B"
                f" | whole, one process: {whole_s:.2f} s, {whole_pages} pages, {len(whole_pdf):,} B"
                f" | ratio (wall + join) / whole {(wall + joining) / whole_s:.2f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
