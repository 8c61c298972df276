"""Benchmark: render the disclosure sheet, next to a naive single-<table> rendering of the same rows.

    .venv/bin/python bench/sheet.py                  # 100 and 1,000 entries, best of 3
    .venv/bin/python bench/sheet.py --entries 100 1000 5000 --repeat 5
    .venv/bin/python bench/sheet.py --renderer       # also: PdfRenderer, threads versus processes
    .venv/bin/python bench/sheet.py --collector 10000 --repeat 3   # garbage collector paused or not
    .venv/bin/python bench/sheet.py --split 10000 --repeat 3       # one process, or two halves at once

For each size it prints seconds (best and median wall time of ``--repeat`` runs, after one warm-up
render that pays for fontconfig and font loading; and the best CPU time, steadier when other work
shares the machine), pages and bytes of

- ``sheet``: :func:`reports.render.render_sheet_pdf` on ``sample_sheet(entries)``: the whole
  sheet (summary, charts, all detail tables, decisions, QR code), as shipped: from 1,000 bands
  (about 5,000 entries) drawn in two halves at once (reports/sheet_split.py);
- ``naive``: the same entries as one long ``<table>`` (one ``<tr>`` per entry, 8 cells, auto
  layout, collapsed borders, repeated header): what one writes first;
- ``chunk``: the naive table cut into tables of 50 rows, the usual advice for long tables;

and the ratios to naive. Targets on a 2-core machine: 100 entries <= 1.5 s; 1,000 entries at
most half the naive table's time.

``--renderer`` renders ``--jobs`` sheets of 100 entries concurrently through
:class:`reports.render.PdfRenderer` in each mode while a coroutine measures how late the event
loop wakes up (what every other request on the server would feel).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import io
import statistics
import sys
import time
from collections.abc import Callable
from html import escape
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psutil
import weasyprint
from pypdf import PdfReader

import reports.render
from reports.formatting import date_iso, yuan
from reports.render import PdfRenderer, RenderMode, render_sheet_pdf
from reports.sheet_model import SheetModel
from reports.sheet_split import SPLIT_MIN_BANDS
from tests.sheet_sample import sample_sheet

NAIVE_CSS = """
@page { size: A4; margin: 14mm 15mm;
  @bottom-center { content: "第 " counter(page) " 页 共 " counter(pages) " 页"; } }
body { font-family: "Noto Serif CJK SC"; font-size: 9pt; }
table { width: 100%; border-collapse: collapse; }
thead { display: table-header-group; }
tr { break-inside: avoid; }
th { font-family: "Noto Sans CJK SC"; font-weight: bold; background: #e6e6e6; }
th, td { border: 0.4pt solid #808080; padding: 1pt 3pt; }
td.r { text-align: right; }
"""


def naive_html(model: SheetModel, rows_per_table: int | None = None) -> str:
    """Every detail entry of ``model`` as one row of one long table (or of tables of N rows)."""
    rows: list[tuple[int, tuple[str, ...]]] = []
    for r in model.contributions:
        rows.append((r.seq, ("众筹", r.contributor_name, r.building, r.receipt_no)))
    for g in model.grants:
        rows.append((g.seq, ("拨款", g.grantor, "", g.document_no)))
    for e in model.expenditures:
        rows.append((e.seq, ("支出", e.payee, e.category_label, e.invoice_no)))
    for k in model.in_kind:
        rows.append((k.seq, ("出力", k.contributor_name, k.building, k.description)))
    for f in model.refunds:
        rows.append((f.seq, ("退款", f.contributor_name, f.building, f.memo)))
    by_seq = {
        r.seq: r for r in (*model.contributions, *model.grants, *model.expenditures, *model.in_kind, *model.refunds)
    }
    body = []
    for seq, cells in sorted(rows):
        entry = by_seq[seq]
        tds = "".join(f"<td>{escape(c)}</td>" for c in cells)
        body.append(
            f'<tr><td class="r">{seq}</td><td>{date_iso(entry.occurred_on)}</td>{tds}'
            f'<td class="r">{yuan(entry.amount_fen)}</td><td>{escape(entry.reversal_note)}</td></tr>'
        )
    head = "".join(f"<th>{h}</th>" for h in ("序号", "日期", "类别", "对象", "楼栋/科目", "凭证/内容", "金额", "备注"))
    size = rows_per_table or len(body) or 1
    tables = "".join(
        f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body[i : i + size])}</tbody></table>"
        for i in range(0, len(body), size)
    )
    return (
        f'<!DOCTYPE html><html lang="zh-CN"><head><meta charset="utf-8"><style>{NAIVE_CSS}</style></head>'
        f"<body><h1>{escape(model.title)}</h1>{tables}</body></html>"
    )


def render_naive_pdf(model: SheetModel) -> bytes:
    pdf = weasyprint.HTML(string=naive_html(model)).write_pdf()
    assert pdf is not None
    return pdf


def render_chunked_pdf(model: SheetModel) -> bytes:
    """The naive table cut into tables of 50 rows: the usual advice for long tables."""
    pdf = weasyprint.HTML(string=naive_html(model, rows_per_table=50)).write_pdf()
    assert pdf is not None
    return pdf


def measure(render: Callable[[SheetModel], bytes], model: SheetModel, repeat: int) -> tuple[float, float, float, bytes]:
    """Best and median wall seconds, best CPU seconds (steadier on a shared machine), the PDF."""
    seconds, cpu_seconds = [], []
    pdf = b""
    for _ in range(repeat):
        start, cpu_start = time.perf_counter(), time.process_time()
        pdf = render(model)
        seconds.append(time.perf_counter() - start)
        cpu_seconds.append(time.process_time() - cpu_start)
    return min(seconds), statistics.median(seconds), min(cpu_seconds), pdf


def pages(pdf: bytes) -> int:
    return len(PdfReader(io.BytesIO(pdf)).pages)


def bench_sizes(sizes: list[int], repeat: int) -> None:
    render_sheet_pdf(sample_sheet(20, first_seq=1))  # warm-up: fontconfig, fonts, Jinja
    print(f"{'entries':>8} {'what':>6} {'best s':>8} {'median s':>9} {'cpu s':>7} {'pages':>6} {'bytes':>10}")
    for entries in sizes:
        model = sample_sheet(entries, first_seq=1)
        best, cpu = {}, {}
        for name, render in (("sheet", render_sheet_pdf), ("naive", render_naive_pdf), ("chunk", render_chunked_pdf)):
            best[name], median, cpu[name], pdf = measure(render, model, repeat)
            print(
                f"{entries:>8} {name:>6} {best[name]:>8.2f} {median:>9.2f} {cpu[name]:>7.2f} "
                f"{pages(pdf):>6} {len(pdf):>10,}"
            )
        for name in ("sheet", "chunk"):
            print(
                f"{entries:>8} {'ratio':>6} {best[name] / best['naive']:>8.2f} {'':>9} "
                f"{cpu[name] / cpu['naive']:>7.2f}  ({name} / naive)"
            )


def bench_collector(entries: int, repeat: int) -> None:
    """The same sheet rendered by one process with the garbage collector paused (as shipped) and
    left running, taking turns. ``render`` is what a caller waits for; ``then gc`` is a full
    collection run right after: the paused render has already freed its document (a
    young-generation collection inside ``render``), the running one leaves that to a later
    collection, so ``both`` is the worker's whole CPU cost either way."""
    model = sample_sheet(entries, first_seq=1)
    render_sheet_pdf(sample_sheet(20, first_seq=1))
    paused = reports.render.collector_paused
    results: dict[str, list[tuple[float, float]]] = {"paused": [], "running": []}
    print(f"\n{entries:,} entries, collector paused (as shipped) and running, taking turns")
    print(f"{'collector':>10} {'render s':>9} {'then gc s':>10} {'both s':>7}")
    for _ in range(repeat):
        for name in ("running", "paused"):
            reports.render.collector_paused = paused if name == "paused" else contextlib.nullcontext
            try:
                start = time.perf_counter()
                render_sheet_pdf(model, split_min_bands=sys.maxsize)  # one process, as measured before the split
                rendered = time.perf_counter() - start
                gc.collect()
                collected = time.perf_counter() - start - rendered
            finally:
                reports.render.collector_paused = paused
            results[name].append((rendered, collected))
            print(f"{name:>10} {rendered:>9.2f} {collected:>10.2f} {rendered + collected:>7.2f}")
    medians = {
        name: (statistics.median(r for r, _ in runs), statistics.median(r + c for r, c in runs))
        for name, runs in results.items()
    }
    for name, (render, both) in medians.items():
        print(f"{name:>10} median render {render:.2f} s, render and gc {both:.2f} s")
    print(
        f"{'ratio':>10} paused / running: render {medians['paused'][0] / medians['running'][0]:.2f}, "
        f"render and gc {medians['paused'][1] / medians['running'][1]:.2f}"
    )


def _cpu_with_children() -> float:
    """CPU seconds of this process and its live children (the helper for second halves)."""
    me = psutil.Process()
    total = sum(me.cpu_times()[:2])
    for child in me.children(recursive=True):
        with contextlib.suppress(psutil.NoSuchProcess):
            total += sum(child.cpu_times()[:2])
    return total


def bench_split(entries: int, repeat: int) -> None:
    """The same sheet rendered by one process and in two halves at once (as shipped, from
    ``SPLIT_MIN_BANDS``), taking turns. ``wall`` is what a caller waits for; ``CPU`` adds the
    helper process that draws second halves (the first split also starts it: about 0.8 s)."""
    model = sample_sheet(entries, first_seq=1)
    render_sheet_pdf(sample_sheet(20, first_seq=1))
    results: dict[str, list[float]] = {"whole": [], "split": []}
    print(f"\n{entries:,} entries, one process and two halves (as shipped), taking turns")
    print(f"{'render':>7} {'wall s':>7} {'CPU s':>6} {'pages':>6} {'bytes':>10}")
    for _ in range(repeat):
        for name in ("whole", "split"):
            before = _cpu_with_children()
            start = time.perf_counter()
            pdf = render_sheet_pdf(model, split_min_bands=sys.maxsize if name == "whole" else SPLIT_MIN_BANDS)
            wall = time.perf_counter() - start
            cpu = _cpu_with_children() - before
            results[name].append(wall)
            print(f"{name:>7} {wall:>7.2f} {cpu:>6.2f} {pages(pdf):>6} {len(pdf):>10,}")
    whole, split = (statistics.median(results[name]) for name in ("whole", "split"))
    print(f"median wall: whole {whole:.2f} s, split {split:.2f} s; ratio split / whole {split / whole:.2f}")


async def _loop_lag(stop: asyncio.Event, lags: list[float]) -> None:
    interval = 0.005
    while not stop.is_set():
        start = time.perf_counter()
        await asyncio.sleep(interval)
        lags.append(time.perf_counter() - start - interval)


async def bench_renderer(jobs: int, max_concurrent: int) -> None:
    model = sample_sheet(100)
    print(f"\nPdfRenderer: {jobs} sheets of 100 entries at once, max_concurrent={max_concurrent}")
    print(f"{'mode':>8} {'wall s':>7} {'loop lag max ms':>16} {'p99 ms':>7} {'median ms':>10}")
    modes: tuple[RenderMode, ...] = ("thread", "process")
    for mode in modes:
        async with PdfRenderer(max_concurrent=max_concurrent, mode=mode) as renderer:
            await renderer.start()
            await renderer.render(model)  # warm every code path once
            stop, lags = asyncio.Event(), list[float]()
            ticker = asyncio.create_task(_loop_lag(stop, lags))
            start = time.perf_counter()
            pdfs = await asyncio.gather(*(renderer.render(model) for _ in range(jobs)))
            wall = time.perf_counter() - start
            stop.set()
            await ticker
            assert all(pdf.startswith(b"%PDF-") for pdf in pdfs)
            lags_ms = sorted(lag * 1000 for lag in lags)
            p99 = lags_ms[int(len(lags_ms) * 0.99) - 1] if lags_ms else 0.0
            print(
                f"{mode:>8} {wall:>7.2f} {max(lags_ms, default=0):>16.1f} {p99:>7.1f} "
                f"{statistics.median(lags_ms) if lags_ms else 0:>10.1f}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entries", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--renderer", action="store_true", help="also compare PdfRenderer modes")
    parser.add_argument("--jobs", type=int, default=4)
    parser.add_argument("--max-concurrent", type=int, default=2)
    parser.add_argument(
        "--collector",
        type=int,
        metavar="ENTRIES",
        help="only: a sheet of ENTRIES rendered with the garbage collector paused and running, in turns",
    )
    parser.add_argument(
        "--split",
        type=int,
        metavar="ENTRIES",
        help="only: a sheet of ENTRIES rendered by one process and in two halves at once, in turns",
    )
    args = parser.parse_args()
    if args.collector:
        bench_collector(args.collector, args.repeat)
        return
    if args.split:
        bench_split(args.split, args.repeat)
        return
    bench_sizes(args.entries, args.repeat)
    if args.renderer:
        asyncio.run(bench_renderer(args.jobs, args.max_concurrent))


if __name__ == "__main__":
    main()
