"""A big sheet laid out and drawn by two processes at once, joined into the PDF one process makes.

WeasyPrint lays out and draws a document in one thread, and a 10,000-entry sheet (192 pages)
takes it about 9 s, most of it on the detail tables' bands (docs/performance.md §3). Here the
sheet is made by two processes, each of which lays out the *whole* document but spends its time
on half of it:

- the bands (reports/detail_tables.py: five entries on one ``<tr>``, no line longer than its
  table) are numbered in document order and a *cut* band is chosen in the middle;
- the **front** part (this process) keeps the bands before the cut and puts a *ghost* in place of
  every later one: the same row with an empty cell of the band's exact height, which costs
  WeasyPrint no text to shape, break or draw. It draws only the pages before the page the cut
  band starts on;
- the **back** part (a helper process of this one, :func:`second_process`, started on the first
  big sheet and kept warm) keeps the bands from a margin of :data:`OVERLAP_BANDS` before the cut
  and ghosts the earlier ones. It draws the pages from the cut's page on.

Both parts lay out every page, so page breaks, ``counter(page)`` and ``counter(pages)`` in the
footers and the running header come out exactly as in the whole render; each part only *draws*
(and shapes the text of) its own half. Whether that held is checked, not assumed: the bands of
the overlap carry anchors, and the two parts must agree on the page of each, on the cut's page and
on the number of pages, and the back part's first real band must lie before the cut's page (so
every band it draws was laid out for real, from the same first band at the top of the same page as
the whole render's). If anything disagrees — ghosts that moved a page break, a helper that died —
the sheet is rendered whole, as before, and a warning is logged.

The two PDFs are joined with pikepdf (qpdf: 0.1 s, object streams kept); the joined file gets
the outline the whole render would have (built by WeasyPrint's own bookmark code from both parts'
pages) and loses the overlap's anchors. ``tests/test_sheet_split.py`` holds a split sheet to the
whole render page by page: the same text, the same pixels, the same outline.

Only when a second core is free (:func:`a_second_core_is_free`): the halves cost about 1.5 times
the CPU of one process, so on one core, or with every core busy, they would only be slower.
Elsewhere the sheet renders whole.
"""

from __future__ import annotations

import concurrent.futures
import io
import logging
import multiprocessing
import multiprocessing.util
import os
import re
import threading
import traceback
from collections.abc import Callable
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

from reports.detail_tables import BAND_ROWS

# A sheet with fewer bands renders whole: splitting costs each part the layout of every page, and
# below ~5,000 entries that outweighs drawing half (``bench/sheet.py --split``: 2,000 entries
# 0.89-1.11 of the whole render's time, 4,000 entries 0.80-0.93, 10,000 entries 0.77-0.79).
SPLIT_MIN_BANDS = 1000
# Bands before the cut that the back part lays out for real: more than a page holds (~11 bands),
# so the first page the back part draws has no ghost on it.
OVERLAP_BANDS = 40
# The line height of a band (sheet.css ``table.detail td``), in pt.
BAND_LINE_PT = 12.5

_MARK_PREFIX = "sheet-split-"
# A band as the template prints it (reports/templates/sheet.html.j2): one row, one cell, text only.
_BAND = re.compile(r'<tr class="band"><td colspan="(\d+)">([^<]*)</td></tr>')

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PartDrawn:
    """What one part laid out and drew."""

    pdf: bytes
    cut_page: int  # the page the cut band starts on: the first page the back part draws
    page_count: int  # pages of the whole layout (each part lays out all of them)
    mark_pages: dict[int, int]  # band number -> page, for the overlap's bands
    # Per page drawn: (height, bookmarks) as WeasyPrint's pages carry them, for the outline.
    pages: list[tuple[float, list[Any]]]


def band_count(html: str) -> int:
    return sum(1 for _ in _BAND.finditer(html))


def part_html(html: str, keep: Callable[[int], bool], marks: range) -> str:
    """``html`` with the bands ``keep`` refuses replaced by ghosts, and anchors on ``marks``."""
    number = -1

    def band(match: re.Match[str]) -> str:
        nonlocal number
        number += 1
        anchor = f' id="{_MARK_PREFIX}{number}"' if number in marks else ""
        if keep(number):
            return f'<tr class="band"{anchor}><td colspan="{match[1]}">{match[2]}</td></tr>'
        lines = match[2].count("\n") + 1
        return f'<tr class="band ghost{lines}"{anchor}><td colspan="{match[1]}"></td></tr>'

    # A class per height rather than a style attribute on each ghost: WeasyPrint parses every
    # style attribute on its own (a quarter of a second for a thousand ghosts).
    ghost_css = "".join(
        f"table.detail tr.ghost{lines} td {{ height: {lines * BAND_LINE_PT}pt }}\n" for lines in range(1, BAND_ROWS + 1)
    )
    return _BAND.sub(band, html).replace("</style>", ghost_css + "</style>", 1)


def lay_out_and_draw(make_html: Callable[[str], Any], html: str, cut: int, marks: range, *, front: bool) -> PartDrawn:
    """Lay out ``html`` (a part), draw the pages before the cut's page (front) or from it (back)."""
    from reports.pdf_fonts import compact_fonts
    from reports.render import collector_paused

    with collector_paused():
        document = make_html(html).render()
        mark_pages = {
            int(name.removeprefix(_MARK_PREFIX)): number
            for number, page in enumerate(document.pages)
            for name in page.anchors
            if name.startswith(_MARK_PREFIX)
        }
        cut_page = mark_pages[cut]
        drawn = document.pages[:cut_page] if front else document.pages[cut_page:]
        pdf = document.copy(drawn).write_pdf(finisher=compact_fonts)
        assert pdf is not None
        return PartDrawn(
            pdf=pdf,
            cut_page=cut_page,
            page_count=len(document.pages),
            mark_pages=mark_pages,
            pages=[(page.height, list(page.bookmarks)) for page in drawn],
        )


_helper: concurrent.futures.ProcessPoolExecutor | None = None
_helper_lock = threading.Lock()


def second_process() -> concurrent.futures.ProcessPoolExecutor:
    """This process's helper for second halves: one worker process, started with ``spawn`` on the
    first big sheet and kept (warm: WeasyPrint imported, fonts loaded) for the next ones. Spawned,
    not forked: Pango 1.56 (Debian 13) keeps a fontconfig thread in the renderer, and a child
    forked beside it could wait forever on a lock or a thread pool that did not come along."""
    global _helper
    from reports.render import _warm_worker

    with _helper_lock:
        if _helper is None:
            _helper = concurrent.futures.ProcessPoolExecutor(
                1, mp_context=multiprocessing.get_context("spawn"), initializer=_warm_worker
            )
            # Stopped before this process exits: a multiprocessing worker (a PdfRenderer's) joins
            # its children on the way out *before* the executors' own exit hook would tell the
            # helper to stop, and would wait for it forever. Finalizers with a priority run first,
            # the highest first: before the executor's own queues close (priority 10).
            multiprocessing.util.Finalize(_helper, _helper.shutdown, kwargs={"cancel_futures": True}, exitpriority=100)
        return _helper


def _forget_helper(helper: concurrent.futures.ProcessPoolExecutor) -> None:
    global _helper
    with _helper_lock:
        if _helper is helper:
            _helper = None
    helper.shutdown(wait=False, cancel_futures=True)


def a_second_core_is_free() -> bool:
    """True when this process may use two cores and the machine is not already busy on all of
    them (1-minute load average below the core count). The halves cost about 1.5 times the CPU of
    the whole render, so on a single core or a saturated machine they are slower than one process,
    and they would take the CPU other requests are waiting for."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return cores >= 2 and os.getloadavg()[0] < cores


def render_split_pdf(make_html: Callable[[str], Any], html: str, *, min_bands: int = SPLIT_MIN_BANDS) -> bytes | None:
    """The PDF of ``html`` (a sheet) made by two processes, or None where it should render whole:
    too few bands, no second core free, or the halves disagreed or one failed (logged)."""
    bands = band_count(html)
    if bands < max(min_bands, 2 * OVERLAP_BANDS) or not a_second_core_is_free():
        return None
    cut = bands // 2
    marks = range(cut - OVERLAP_BANDS, cut + 1)
    front_html = part_html(html, lambda number: number < cut, marks)
    back_html = part_html(html, lambda number: number >= marks.start, marks)

    helper = second_process()
    try:
        pending = helper.submit(draw_back, make_html, back_html, cut, marks)
    except BrokenProcessPool:  # it died since the last sheet: start another next time
        _forget_helper(helper)
        log.warning("sheet rendered whole: the process for second halves had died")
        return None
    try:
        front = draw_front(make_html, front_html, cut, marks)
    except Exception:
        pending.cancel()
        log.warning("sheet rendered whole: its first half failed", exc_info=True)
        return None
    try:
        back: PartDrawn | str = pending.result()
    except BrokenProcessPool:
        _forget_helper(helper)
        back = "the process drawing the second half died"
    except Exception:
        back = traceback.format_exc()

    problem = back if isinstance(back, str) else _disagreement(front, back, marks)
    if problem:
        log.warning("sheet rendered whole, not in two halves: %s", problem)
        return None
    assert isinstance(back, PartDrawn)
    try:
        return join(front, back)
    except Exception:
        log.warning("sheet rendered whole: its halves could not be joined", exc_info=True)
        return None


def draw_front(make_html: Callable[[str], Any], html: str, cut: int, marks: range) -> PartDrawn:
    return lay_out_and_draw(make_html, html, cut, marks, front=True)


def draw_back(make_html: Callable[[str], Any], html: str, cut: int, marks: range) -> PartDrawn:
    """In the helper process."""
    return lay_out_and_draw(make_html, html, cut, marks, front=False)


def _disagreement(front: PartDrawn, back: PartDrawn, marks: range) -> str | None:
    if front.page_count != back.page_count:
        return f"{front.page_count} pages against {back.page_count}"
    if front.mark_pages != back.mark_pages:
        return f"bands on different pages: {front.mark_pages} against {back.mark_pages}"
    if not 0 < front.cut_page < front.page_count or back.mark_pages[marks.start] >= back.cut_page:
        return f"cut page {front.cut_page} has ghosts on it, or no page before it"
    return None


def join(front: PartDrawn, back: PartDrawn) -> bytes:
    """One PDF: the front's pages then the back's, with the whole document's outline."""
    import pikepdf
    from weasyprint.document import Document

    # qpdf copies the back's pages lazily: both files stay open until the joined one is written.
    with pikepdf.open(io.BytesIO(front.pdf)) as pdf, pikepdf.open(io.BytesIO(back.pdf)) as back_pdf:
        pdf.pages.extend(back_pdf.pages)

        # The outline, by WeasyPrint's own code over both parts' pages (0.75: CSS px to PDF pt, as
        # write_pdf does), so that it nests and points exactly as the whole render's does.
        pages = [SimpleNamespace(height=height, bookmarks=marks) for height, marks in front.pages + back.pages]
        tree = Document.make_bookmark_tree(SimpleNamespace(pages=pages), 0.75, transform_pages=True)
        with pdf.open_outline() as outline:
            outline.root.clear()
            outline.root.extend(_outline_items(pikepdf, tree))

        # The overlap's anchors are not the sheet's: drop them (and the name tree if nothing is left).
        names = pdf.Root.get("/Names")
        if names is not None and "/Dests" in names:
            dests = pikepdf.NameTree(names.Dests)
            for name in [name for name in dests if name.startswith(_MARK_PREFIX)]:
                del dests[name]
            if not len(dests):
                del names["/Dests"]
            if not len(names.keys()):
                del pdf.Root["/Names"]

        out = io.BytesIO()
        pdf.save(
            out, object_stream_mode=pikepdf.ObjectStreamMode.generate, compress_streams=True, deterministic_id=True
        )
    return out.getvalue()


def _outline_items(pikepdf: Any, tree: list[Any]) -> list[Any]:
    items = []
    for title, (page, x, y), children, state in tree:
        item = pikepdf.OutlineItem(title, page, "XYZ", left=x, top=y, zoom=0)
        item.is_closed = state == "closed"
        item.children.extend(_outline_items(pikepdf, children))
        items.append(item)
    return items
