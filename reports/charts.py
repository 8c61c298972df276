"""Charts and the QR code of a sheet, as inline SVG drawn here: vector, small, no raster library.

Everything is grey on white so it survives a cheap black-and-white printer; user units are
millimetres, and the width is the printable width of A4 portrait.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from html import escape

import segno

from reports.formatting import percent, yuan
from reports.sheet_model import BudgetLineRow, SheetSummary, ratio

CHART_WIDTH_MM = 180.0
_FONT = "Noto Serif CJK SC, serif"
_BOLD_FONT = "Noto Sans CJK SC, sans-serif"  # the sheet's only bold face (see sheet.css)
_LABEL_MM = 2.8  # 8 pt
_STROKE = 0.25
# Fills for the sources of funds, dark to light: 众筹, 以奖代补, 其他.
_SOURCE_FILLS = ("#3a3a3a", "#9a9a9a", "#e2e2e2")


def _svg(height_mm: float, body: Sequence[str], label: str) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" aria-label="{escape(label)}" '
        f'width="{CHART_WIDTH_MM}mm" height="{height_mm:.1f}mm" '
        f'viewBox="0 0 {CHART_WIDTH_MM} {height_mm:.1f}" font-family="{_FONT}" font-size="{_LABEL_MM}">'
        + "".join(body)
        + "</svg>"
    )


def _text(x: float, y: float, text: str, anchor: str = "start", fill: str = "#000") -> str:
    return f'<text x="{x:.2f}" y="{y:.2f}" text-anchor="{anchor}" fill="{fill}">{escape(text)}</text>'


def _rect(x: float, y: float, width: float, height: float, fill: str, stroke: str = "#000") -> str:
    return (
        f'<rect x="{x:.2f}" y="{y:.2f}" width="{max(width, 0):.2f}" height="{height:.2f}" '
        f'fill="{fill}" stroke="{stroke}" stroke-width="{_STROKE}"/>'
    )


def budget_chart_svg(lines: Sequence[BudgetLineRow]) -> str:
    """预算 / 已支出 per budget line: an open bar for the budget, a dark bar for what was spent.

    Bars share one scale (the largest budget or spending), so lines compare at a glance; an
    overspent line's dark bar runs past its budget outline and its rate is printed in bold.
    """
    if not lines:
        return ""
    label_right, bar_left, bar_right, amount_right = 40.0, 42.0, 124.0, 150.0
    row_mm, bar_mm, top = 6.5, 3.4, 7.0
    scale_fen = max(max(line.budget_fen, line.spent_fen) for line in lines) or 1
    span = bar_right - bar_left
    body = [
        _rect(bar_left, 1.2, 4, 2.6, "#fff"),
        _text(bar_left + 5.5, 3.6, "预算"),
        _rect(bar_left + 18, 1.2, 4, 2.6, "#3a3a3a"),
        _text(bar_left + 23.5, 3.6, "已支出"),
        _text(amount_right, 3.6, "已支出（元）", anchor="end"),
        _text(CHART_WIDTH_MM, 3.6, "执行率", anchor="end"),
    ]
    for index, line in enumerate(lines):
        y = top + index * row_mm
        baseline = y + bar_mm - 0.55
        budget_width = span * line.budget_fen / scale_fen
        spent_width = span * max(line.spent_fen, 0) / scale_fen
        rate = line.execution_rate
        overspent = rate is not None and rate > 1
        body.append(_text(label_right, baseline, f"{line.category_label}（{line.source_label}）", anchor="end"))
        body.append(_rect(bar_left, y, budget_width, bar_mm, "#fff"))
        body.append(_rect(bar_left, y + 0.7, spent_width, bar_mm - 1.4, "#3a3a3a", stroke="none"))
        rate_text = percent(rate) + ("（超支）" if overspent else "")
        weight = f' font-family="{_BOLD_FONT}" font-weight="bold"' if overspent else ""
        body.append(
            f'<text x="{CHART_WIDTH_MM:.2f}" y="{baseline:.2f}" text-anchor="end"{weight}>{escape(rate_text)}</text>'
        )
        body.append(_text(amount_right, baseline, yuan(line.spent_fen), anchor="end"))
    height = top + len(lines) * row_mm
    return _svg(height, body, "预算执行情况柱状图：预算与已支出")


def sources_chart_svg(summary: SheetSummary) -> str:
    """累计资金来源: one stacked bar of 居民众筹 / 以奖代补 / 其他, with a legend of amounts and shares."""
    totals = summary.cumulative
    parts = (
        ("居民众筹", max(totals.contributed_fen, 0)),
        ("以奖代补", max(totals.granted_fen, 0)),
        ("其他收入", max(totals.other_income_fen, 0)),
    )
    whole = sum(amount for _, amount in parts)
    bar_top, bar_mm = 1.0, 5.0
    body: list[str] = []
    if whole == 0:
        body.append(_rect(0, bar_top, CHART_WIDTH_MM, bar_mm, "#fff"))
        body.append(_text(CHART_WIDTH_MM / 2, bar_top + 3.6, "暂无收入", anchor="middle"))
    else:
        x = 0.0
        for (_, amount), fill in zip(parts, _SOURCE_FILLS, strict=True):
            width = CHART_WIDTH_MM * amount / whole
            if width > 0:
                body.append(_rect(x, bar_top, width, bar_mm, fill))
                if width > 14:
                    ink = "#fff" if fill == _SOURCE_FILLS[0] else "#000"
                    label = percent(ratio(amount, whole) or Decimal(0))
                    body.append(_text(x + width / 2, bar_top + 3.6, label, anchor="middle", fill=ink))
            x += width
    legend_y = bar_top + bar_mm + 4.4
    for index, ((label, amount), fill) in enumerate(zip(parts, _SOURCE_FILLS, strict=True)):
        x = index * 60.0
        body.append(_rect(x, legend_y - 2.5, 3, 3, fill))
        body.append(_text(x + 4.5, legend_y, f"{label} {yuan(amount)} 元（{percent(ratio(amount, whole))}）"))
    return _svg(legend_y + 1.6, body, "资金来源构成图")


def qr_svg(url: str) -> str:
    """A QR code (error correction M) for ``url``; sized by the template's CSS."""
    code = segno.make(url, error="m", micro=False)
    return code.svg_inline(scale=1, border=2, omitsize=True, dark="#000", svgclass="qr", lineclass=None)
