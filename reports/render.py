"""Render a :class:`~reports.sheet_model.SheetModel` to HTML and to PDF (WeasyPrint).

- :func:`render_sheet_html` and :func:`render_sheet_pdf` are synchronous and pure: same model,
  same bytes.
- :class:`PdfRenderer` is what the async service uses: rendering runs in worker processes (or
  threads), at most ``max_concurrent`` at a time, with a bounded number of callers waiting.
  WeasyPrint is pure Python for most of its work and holds the GIL, so rendering in a thread stalls
  the event loop; a worker process does not (``bench/sheet.py`` measures both).
- :func:`check_cjk_font` and :func:`check_font_subsetter` are start-up checks: without a CJK
  font every 汉字 prints as an empty box, and without HarfBuzz's subsetter each PDF takes seconds.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import gc
import multiprocessing
import subprocess
import threading
from collections.abc import Callable, Iterator
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Literal, TypeVar

import jinja2
from markupsafe import Markup

from reports.charts import budget_chart_svg, qr_svg, sources_chart_svg
from reports.detail_tables import CELL_PT, TABLE_FONT_PT, detail_table
from reports.formatting import FILTERS, hex_groups
from reports.pdf_fonts import compact_fonts
from reports.sheet_model import (
    ContributionRow,
    ExpenditureRow,
    GrantRow,
    InKindRow,
    OtherIncomeRow,
    PledgeRow,
    RefundRow,
    SheetModel,
    ratio,
)
from reports.sheet_split import SPLIT_MIN_BANDS, render_split_pdf

if TYPE_CHECKING:
    import weasyprint

TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"
SHEET_TEMPLATE = "sheet.html.j2"
# The families sheet.css names, all from the Debian package fonts-noto-cjk.
SHEET_FONT_FAMILIES = ("Noto Serif CJK SC", "Noto Sans CJK SC", "Noto Sans Mono CJK SC")

_NO_CJK_FONT = (
    "未找到中文字体（fontconfig: fc-list :lang=zh 无结果），公示表 PDF 中的汉字将显示为方框。"
    "请安装 Noto CJK 字体：apt-get install fonts-noto-cjk\n"
    "No CJK font found by fontconfig (fc-list :lang=zh): Chinese text in disclosure PDFs would "
    "print as empty boxes. Install one with: apt-get install fonts-noto-cjk"
)
_NO_SUBSETTER = (
    "WeasyPrint 未找到 HarfBuzz 字体子集库，每份公示表 PDF 将多耗时数秒。请安装：apt-get install "
    "libharfbuzz-subset0\n"
    "WeasyPrint cannot load HarfBuzz's subsetter (libharfbuzz-subset), so every PDF would spend "
    "seconds subsetting CJK fonts with fontTools. Install it with: apt-get install libharfbuzz-subset0"
)


# --- HTML --------------------------------------------------------------------------------------


@functools.cache
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )
    env.filters.update(FILTERS)
    return env


def _two_lines(hex_digits: str) -> tuple[str, str]:
    groups = hex_groups(hex_digits).split(" ")
    half = len(groups) // 2
    return " ".join(groups[:half]), " ".join(groups[half:])


def _omitted_note(model: SheetModel, name: str) -> str:
    """The line closing a table whose rows the sheet could not all print."""
    omitted = model.omitted
    left_out = model.total_of(name).rows - len(getattr(model, name))
    if omitted is None or left_out <= 0:
        return ""
    if name != "pledges":
        head = f"另有 {left_out:,} 笔（记账序号 {omitted.entries_from_seq} 及以后）"
    elif omitted.pledges_after_seq:
        head = f"另有 {left_out:,} 笔（记账序号 {omitted.pledges_after_seq} 之后）"
    else:
        head = f"这 {left_out:,} 笔认筹均"
    return f"{head}因篇幅所限未印出，见本表开头的说明；合计含这些记录。"


def render_sheet_html(model: SheetModel) -> str:
    """The sheet as one self-contained HTML document (inline CSS and SVG, no external resource)."""
    spent_fen = sum(line.spent_fen for line in model.budget_lines)
    budget_fen = sum(line.budget_fen for line in model.budget_lines)
    previous = model.verification.previous
    context = {
        "m": model,
        "tables": {
            name: detail_table(row_type, getattr(model, name), model.total_of(name), _omitted_note(model, name))
            for name, row_type in (
                ("contributions", ContributionRow),
                ("grants", GrantRow),
                ("other_income", OtherIncomeRow),
                ("expenditures", ExpenditureRow),
                ("in_kind", InKindRow),
                ("refunds", RefundRow),
                ("pledges", PledgeRow),
            )
        },
        "budget_total_fen": budget_fen,
        "budget_spent_fen": spent_fen,
        "budget_rate": ratio(spent_fen, budget_fen),
        "root_hash_lines": _two_lines(model.verification.root_hash_hex),
        "previous_hash_lines": _two_lines(previous.root_hash_hex) if previous else None,
        # Generated here from numbers and escaped text only, hence safe to inline.
        "sources_chart": Markup(sources_chart_svg(model.summary)),
        "budget_chart": Markup(budget_chart_svg(model.budget_lines)),
        "qr": Markup(qr_svg(model.verification.verify_url)),
        "table_font_pt": TABLE_FONT_PT,
        "cell_pt": CELL_PT,
    }
    return _environment().get_template(SHEET_TEMPLATE).render(context)


# --- PDF ---------------------------------------------------------------------------------------


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector while WeasyPrint lays out and draws a document.

    WeasyPrint allocates boxes, styles and text layouts by the million, and they all stay alive
    until the PDF is written, so every automatic full collection walks the whole growing document
    again, finding nothing: 1.2-1.5 s of a 10,000-entry sheet's 10 s (``bench/sheet.py
    --collector``). Paused, the document's own cyclic garbage (~650,000 objects for that sheet) is
    freed at the end by one collection of the young generation (everything made since the pause),
    which does not walk the long-lived heap: a sheet of 100 entries pays nothing for it.

    Only on the main thread of its process: a :class:`PdfRenderer` worker process, the CLI, a
    test. The collector is process-wide, so in ``mode="thread"`` a pause would cover the whole
    server for as long as renders follow one another; there, and when the collector is already off
    (an outer pause, or its owner's choice), this does nothing.
    """
    if not gc.isenabled() or threading.current_thread() is not threading.main_thread():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
        gc.collect(0)  # the young generation: what this render made, not the whole heap


def render_sheet_pdf(model: SheetModel, *, split_min_bands: int = SPLIT_MIN_BANDS) -> bytes:
    """The sheet as PDF bytes: A4, fonts embedded as subsets, nothing fetched from anywhere.

    A sheet of ``split_min_bands`` bands or more (five entries each: 5,000 entries by default) is
    laid out and drawn by two processes at once when a second core is free
    (reports/sheet_split.py): the same PDF pages, sooner."""
    html = render_sheet_html(model)
    return render_split_pdf(_sheet_html, html, min_bands=split_min_bands) or write_pdf(_sheet_html(html))


def _sheet_html(html: str) -> weasyprint.HTML:
    import weasyprint  # imported here so that importing this module stays cheap

    return weasyprint.HTML(
        string=html,
        base_url=TEMPLATES_DIR.as_uri() + "/",
        # The sheet is self-contained: refuse every URL, so no text in a model can make the
        # renderer read a file or call a server.
        url_fetcher=weasyprint.urls.URLFetcher(allowed_protocols=()),
    )


def write_pdf(html: weasyprint.HTML) -> bytes:
    """``html`` as PDF bytes, as every document of the service is written: with the collector
    paused (:func:`collector_paused`) and only the glyphs drawn embedded, not every glyph id below
    the highest (reports/pdf_fonts.py)."""
    with collector_paused():
        pdf = html.write_pdf(finisher=compact_fonts)
    assert pdf is not None
    return pdf


def check_cjk_font() -> None:
    """Raise ``RuntimeError`` (Chinese and English, with the apt command) if fontconfig lacks the fonts.

    The service calls this at start-up: without a CJK font WeasyPrint prints every 汉字 as an
    empty box, without any error. The sheet names three Noto CJK families (all in the Debian
    package fonts-noto-cjk); its detail tables rely on the monospaced one's exact widths.
    """
    try:
        found = subprocess.run(
            ["fc-list", ":lang=zh", "family"], capture_output=True, text=True, timeout=30, check=False
        )
    except (FileNotFoundError, subprocess.TimeoutExpired) as exc:
        raise RuntimeError(f"{_NO_CJK_FONT}\n(fc-list: {exc})") from exc
    if found.returncode != 0 or not found.stdout.strip():
        raise RuntimeError(_NO_CJK_FONT)
    families = {name.strip() for line in found.stdout.splitlines() for name in line.split(",")}
    missing = sorted(set(SHEET_FONT_FAMILIES) - families)
    if missing:
        raise RuntimeError(f"{_NO_CJK_FONT}\n缺少字体 / missing families: {', '.join(missing)}")


def check_font_subsetter() -> None:
    """Raise ``RuntimeError`` if WeasyPrint cannot use HarfBuzz's font subsetter."""
    from weasyprint.text import ffi  # WeasyPrint's own binding; loaded with allow_fail

    if getattr(ffi, "harfbuzz_subset", None) is None or not ffi.harfbuzz.hb_version_atleast(4, 1, 0):
        raise RuntimeError(_NO_SUBSETTER)


# --- Async renderer ----------------------------------------------------------------------------

RenderMode = Literal["process", "thread"]
M = TypeVar("M")


class RendererBusyError(RuntimeError):
    """Too many sheets are waiting to be rendered; the caller should retry later (HTTP 503)."""


def _warm_worker() -> None:
    # Pay WeasyPrint's import and fontconfig's first font lookup once per worker, not per request.
    import weasyprint

    weasyprint.HTML(string='<p style="font-family: Noto Serif CJK SC">公示</p>').write_pdf()


def _ready() -> bool:
    return True


class PdfRenderer:
    """Render sheets to PDF off the event loop, ``max_concurrent`` at a time.

    ``mode="process"`` (default) renders in a pool of worker processes, started with ``spawn``
    and replaced after ``max_renders_per_worker`` sheets (WeasyPrint's caches grow); the event
    loop stays responsive. ``mode="thread"`` needs no extra processes but shares the GIL with the
    event loop. At most ``max_waiting`` callers wait for a slot; more get :class:`RendererBusyError`.

    Use as ``async with PdfRenderer() as renderer: pdf = await renderer.render(model)``, or call
    :meth:`start` (optional, pre-spawns and warms the workers) and :meth:`aclose`.
    """

    def __init__(
        self,
        *,
        max_concurrent: int = 2,
        max_waiting: int = 32,
        mode: RenderMode = "process",
        max_renders_per_worker: int = 200,
    ) -> None:
        if not 1 <= max_concurrent <= 64:
            raise ValueError("max_concurrent must be between 1 and 64")
        if not 0 <= max_waiting <= 10_000:
            raise ValueError("max_waiting must be between 0 and 10000")
        if mode not in ("process", "thread"):
            raise ValueError("mode must be 'process' or 'thread'")
        self.max_concurrent = max_concurrent
        self.max_waiting = max_waiting
        self.mode: RenderMode = mode
        self.max_renders_per_worker = max_renders_per_worker
        self._slots = asyncio.Semaphore(max_concurrent)
        self._waiting = 0
        self._executor: concurrent.futures.Executor | None = None

    def _make_executor(self) -> concurrent.futures.Executor:
        if self.mode == "thread":
            return concurrent.futures.ThreadPoolExecutor(self.max_concurrent, thread_name_prefix="sheet-pdf")
        return concurrent.futures.ProcessPoolExecutor(
            self.max_concurrent,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_warm_worker,
            max_tasks_per_child=self.max_renders_per_worker,
        )

    def _current_executor(self) -> concurrent.futures.Executor:
        if self._executor is None:
            self._executor = self._make_executor()
        return self._executor

    async def start(self) -> None:
        """Start and warm every worker now rather than on the first requests."""
        loop = asyncio.get_running_loop()
        executor = self._current_executor()
        if self.mode == "process":
            await asyncio.gather(*(loop.run_in_executor(executor, _ready) for _ in range(self.max_concurrent)))
        else:
            await loop.run_in_executor(executor, _warm_worker)

    async def render(self, model: SheetModel) -> bytes:
        """The sheet as PDF bytes. Raises :class:`RendererBusyError` when too many are waiting."""
        return await self.run(render_sheet_pdf, model)

    async def run(self, make_pdf: Callable[[M], bytes], model: M) -> bytes:
        """``make_pdf(model)`` (a module-level function, picklable with its model) in the pool: the
        sheet, or another document such as the evaluation slips. Raises :class:`RendererBusyError`."""
        if self._slots.locked() and self._waiting >= self.max_waiting:
            raise RendererBusyError(f"{self._waiting} sheets are already waiting to be rendered")
        self._waiting += 1
        try:
            await self._slots.acquire()
        finally:
            self._waiting -= 1
        try:
            executor = self._current_executor()
            try:
                return await asyncio.get_running_loop().run_in_executor(executor, make_pdf, model)
            except BrokenProcessPool as exc:
                # A worker died (killed, out of memory): the pool is unusable, start a new one.
                if self._executor is executor:
                    self._executor = None
                    executor.shutdown(wait=False, cancel_futures=True)
                raise RuntimeError("PDF 渲染进程异常退出 / a PDF worker process died") from exc
        finally:
            self._slots.release()

    async def aclose(self) -> None:
        executor, self._executor = self._executor, None
        if executor is not None:
            await asyncio.to_thread(executor.shutdown, wait=True, cancel_futures=True)

    async def __aenter__(self) -> PdfRenderer:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()
