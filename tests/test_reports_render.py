"""The disclosure sheet (公示表) rendered for real: WeasyPrint PDFs read back with poppler and pypdf.

No database here: the sheet is rendered from a view model built by ``sample_sheet`` (synthetic,
masked, internally consistent) or by hand.
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
import re
import shutil
import subprocess
import time
from collections import Counter
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
from PIL import Image
from pypdf import PdfReader

from reports.detail_tables import (
    BAND_ROWS,
    CONTRIBUTION_COLUMNS,
    Band,
    SingleRow,
    band_line,
    detail_table,
    text_cells,
)
from reports.formatting import date_cn, date_iso, hex_groups, percent, yuan
from reports.render import (
    PdfRenderer,
    RendererBusyError,
    check_cjk_font,
    check_font_subsetter,
    render_sheet_html,
    render_sheet_pdf,
)
from reports.sheet_model import (
    ContributionRow,
    EntryRow,
    MoneyTotals,
    SheetModel,
    SheetSummary,
    VerificationBlock,
)
from tests.sheet_sample import sample_sheet

pytestmark = pytest.mark.skipif(shutil.which("pdftotext") is None, reason="poppler-utils not installed")

ROW_START = re.compile(r"^\s*(\d+)\s+(\d{4}-\d{2}-\d{2})\s", re.MULTILINE)


@dataclasses.dataclass
class Rendered:
    model: SheetModel
    pdf: bytes
    pages: list[str]  # pdftotext -layout, one string per page

    @property
    def text(self) -> str:
        return "\n".join(self.pages)


def read_pages(pdf: bytes) -> list[str]:
    text = subprocess.run(
        ["pdftotext", "-layout", "-enc", "UTF-8", "-", "-"], input=pdf, capture_output=True, check=True
    ).stdout.decode()
    pages = text.split("\f")
    return pages[:-1] if pages and not pages[-1].strip() else pages


def squash(text: str) -> str:
    return re.sub(r"\s+", " ", text)


def rendered(model: SheetModel) -> Rendered:
    pdf = render_sheet_pdf(model)
    return Rendered(model, pdf, read_pages(pdf))


def all_rows(model: SheetModel) -> list[EntryRow]:
    return [*model.contributions, *model.grants, *model.expenditures, *model.in_kind, *model.refunds]


@pytest.fixture(scope="module")
def sheet() -> Rendered:
    """Sheet 2 of a project: 120 entries (seq 171–290), gate waived, every kind of row."""
    return rendered(sample_sheet(120, waived=True))


@pytest.fixture(scope="module")
def big_sheet() -> Rendered:
    """Sheet 1: 1,000 entries, seq 1–1000."""
    return rendered(sample_sheet(1000, first_seq=1))


# --- Formatting and the model ------------------------------------------------------------------


def test_money_dates_ratios_and_hashes_are_formatted_for_print() -> None:
    assert yuan(1234550) == "12,345.50"
    assert yuan(-1234550) == "-12,345.50"
    assert yuan(5) == "0.05"
    assert yuan(0) == "0.00"
    assert yuan(10_000_000_000) == "100,000,000.00"
    for not_fen in (12.5, Decimal("1"), True, "100"):
        with pytest.raises(TypeError):
            yuan(not_fen)  # type: ignore[arg-type]
    assert date_cn(date(2026, 11, 30)) == "2026年11月30日"
    assert date_cn(date(2026, 12, 1)) == "2026年12月1日"
    assert date_iso(date(2026, 12, 1)) == "2026-12-01"
    assert percent(Decimal("0.5904")) == "59.0%"
    assert percent(Decimal("0.9385")) == "93.9%"
    assert percent(None) == "—"
    assert hex_groups("3f2a9c41" * 8) == " ".join(["3f2a", "9c41"] * 8)


def test_model_refuses_what_a_builder_bug_would_print() -> None:
    with pytest.raises(TypeError, match="int fen"):
        ContributionRow(seq=1, occurred_on=date(2026, 11, 1), amount_fen=200.0, contributor_name="张*")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="negative"):
        ContributionRow(
            seq=2,
            occurred_on=date(2026, 11, 1),
            amount_fen=20000,
            contributor_name="张*",
            is_reversal=True,
            reverses_seq=1,
            reversal_reason="错",
        )
    with pytest.raises(ValueError, match="only a reversal"):
        ContributionRow(seq=3, occurred_on=date(2026, 11, 1), amount_fen=-5, contributor_name="张*")
    with pytest.raises(ValueError, match="earlier entry"):
        ContributionRow(
            seq=3,
            occurred_on=date(2026, 11, 1),
            amount_fen=-5,
            contributor_name="张*",
            is_reversal=True,
            reverses_seq=3,
            reversal_reason="错",
        )
    zero = MoneyTotals(contributed_fen=0, granted_fen=0, other_income_fen=0, spent_fen=0, refunded_fen=0)
    cumulative = dataclasses.replace(zero, contributed_fen=1000, spent_fen=300)
    with pytest.raises(ValueError, match="balance_fen"):
        SheetSummary(period=zero, cumulative=cumulative, balance_fen=800, budget_fen=0, in_kind_value_fen=0)
    assert SheetSummary(period=zero, cumulative=cumulative, balance_fen=700, budget_fen=0, in_kind_value_fen=0)
    with pytest.raises(ValueError, match="64 lowercase hex"):
        VerificationBlock(tree_size=1, root_hash_hex="AB" * 32, previous=None, verify_url="https://x/")
    model = sample_sheet(20)
    with pytest.raises(ValueError, match="seq order"):
        dataclasses.replace(model, contributions=list(reversed(model.contributions)))
    with pytest.raises(TypeError, match="ExpenditureRow"):
        dataclasses.replace(model, contributions=model.expenditures)  # type: ignore[arg-type]


# --- Detail table layout -----------------------------------------------------------------------


def test_band_lines_put_every_column_at_its_cell_offset() -> None:
    row = ContributionRow(
        seq=1234,
        occurred_on=date(2026, 11, 2),
        amount_fen=1_234_550,
        contributor_name="欧阳**",
        building="12栋",
        channel_label="银行转账",
        receipt_no="SJ-0238",
    )
    cells = tuple(column.cell(row) for column in CONTRIBUTION_COLUMNS)
    line = band_line(cells, CONTRIBUTION_COLUMNS)
    assert line is not None
    offsets, x = [], 0
    for column in CONTRIBUTION_COLUMNS:
        offsets.append(x)
        x += column.width_cells

    def cells_before(fragment: str) -> int:
        prefix = line[: line.index(fragment)]
        width = text_cells(prefix)
        assert width is not None
        return width

    # Left-aligned text starts one cell into its column; right-aligned text ends one cell before.
    assert cells_before("2026-11-02") == offsets[1] + 1
    assert cells_before("欧阳**") == offsets[2] + 1
    assert cells_before("12栋") == offsets[3] + 1
    assert cells_before("银行转账") == offsets[4] + 1
    assert cells_before("SJ-0238") == offsets[5] + 1
    assert cells_before("1234") + 4 == offsets[1] - 1
    assert cells_before("12,345.50") + len("12,345.50") == offsets[7] - 1
    # The largest amount the ledger accepts still fits on the line.
    largest = dataclasses.replace(row, amount_fen=10_000_000_000)
    assert band_line(tuple(c.cell(largest) for c in CONTRIBUTION_COLUMNS), CONTRIBUTION_COLUMNS) is not None


def test_entries_that_cannot_be_one_exact_line_get_their_own_row() -> None:
    day = date(2026, 11, 2)
    rows = [
        ContributionRow(seq=seq, occurred_on=day, amount_fen=20000, contributor_name=f"张{'*' * (seq % 2 + 1)}")
        for seq in range(1, 13)
    ]
    rows.insert(3, ContributionRow(seq=100, occurred_on=day, amount_fen=100, contributor_name="Zoë"))  # width unknown
    rows.insert(7, ContributionRow(seq=101, occurred_on=day, amount_fen=100, contributor_name="𠀀*"))  # ext. B
    rows.insert(9, ContributionRow(seq=102, occurred_on=day, amount_fen=100, contributor_name="某" * 14))  # too long
    rows.append(
        ContributionRow(
            seq=103,
            occurred_on=day,
            amount_fen=-20000,
            contributor_name="张*",
            is_reversal=True,
            reverses_seq=1,
            reversal_reason="重复记账",
        )
    )
    plain = detail_table(ContributionRow, rows[:3] + rows[4:7] + rows[8:9] + rows[10:13])
    assert [b.size for b in plain.blocks if isinstance(b, Band)] == [5, 5]
    table = detail_table(ContributionRow, rows)
    singles = [b for b in table.blocks if isinstance(b, SingleRow)]
    assert [s.cells[0] for s in singles] == ["100", "101", "102", "103"]
    assert [s.is_reversal for s in singles] == [False, False, False, True]
    assert singles[-1].cells[-1] == "冲正第 1 号：重复记账"
    bands = [b for b in table.blocks if isinstance(b, Band)]
    assert all(1 <= b.size <= BAND_ROWS and b.size == b.text.count("\n") + 1 for b in bands)
    assert sum(b.size for b in bands) + len(singles) == table.row_count == len(rows)
    assert table.total_fen == sum(r.amount_fen for r in rows)


# --- The PDF -----------------------------------------------------------------------------------


def test_header_title_dates_and_waiver_notice(sheet: Rendered, big_sheet: Rendered) -> None:
    first = squash(sheet.pages[0])
    assert "锦绣花园小区路面刷黑项目资金收支公示（第 2 期）" in first
    assert "社区：团城山街道 锦绣花园社区" in first
    assert "公示期：2026年12月1日 至 2026年12月7日（7 天）" in first
    assert "本期：2026-11-01 至 2026-11-30" in first
    assert "公示日期：2026年12月1日" in first
    assert "项目编号：jinxiu-road-2026" in first
    assert "决策程序在本系统上线前完成，支出门槛已豁免" in first
    assert "豁免" not in big_sheet.text  # gate not waived: no notice
    for heading in (
        "一、资金收支总表",
        "二、预算执行情况",
        "三、收入明细（本期）",
        "四、支出明细（本期）",
        "五、出力与实物（本期）",
        "六、决策记录（四议两公开）",
        "七、核验信息",
        "八、异议反馈",
    ):
        assert heading in sheet.text
    closing = squash(sheet.pages[-1])
    for signature in ("经办人：", "审核人：", "民主理财/监督小组：", "锦绣花园社区居民委员会（盖章）", "2026年12月1日"):
        assert signature in closing


def test_masked_names_and_every_row_with_its_formatted_amount(sheet: Rendered) -> None:
    text = sheet.text
    for name in ("张*", "欧阳**", "司马**", "锦绣花园业主委员会", "黄石市通达沥青工程有限公司"):
        assert name in text
    rows = all_rows(sheet.model)
    assert len(rows) == 120
    for row in rows:
        # One printed line starts with the seq and the date and carries the amount, formatted.
        pattern = rf"^\s*{row.seq}\s+{date_iso(row.occurred_on)}\s.*\s{re.escape(yuan(row.amount_fen))}(\s|$)"
        assert re.search(pattern, text, re.MULTILINE), f"seq {row.seq} not printed with {yuan(row.amount_fen)}"
    assert any(row.amount_fen >= 100_000 for row in rows)  # so that thousands separators were checked


def test_printed_totals_equal_the_model(sheet: Rendered) -> None:
    s = sheet.model.summary
    first = sheet.pages[0]
    for label, period, cumulative in (
        ("居民众筹收入", s.period.contributed_fen, s.cumulative.contributed_fen),
        ("以奖代补资金", s.period.granted_fen, s.cumulative.granted_fen),
        ("其他收入", s.period.other_income_fen, s.cumulative.other_income_fen),
        ("支出合计", s.period.spent_fen, s.cumulative.spent_fen),
        ("退款", s.period.refunded_fen, s.cumulative.refunded_fen),
    ):
        assert re.search(rf"{label}\s+{re.escape(yuan(period))}\s+{re.escape(yuan(cumulative))}", first), label
    assert re.search(rf"结余\s+—\s+{re.escape(yuan(s.balance_fen))}", first)
    assert f"出资 {s.contributors} 户，参与率 {percent(s.participation_rate)}" in squash(first)
    budget_spent = sum(line.spent_fen for line in sheet.model.budget_lines)
    assert budget_spent == s.cumulative.spent_fen
    assert re.search(rf"合计\s+{re.escape(yuan(s.budget_fen))}\s+{re.escape(yuan(budget_spent))}", sheet.text)
    printed = [
        (int(count), total) for count, total in re.findall(r"本期合计（(\d+) 笔）\s+(-?[\d,]+\.\d\d)", sheet.text)
    ]
    m = sheet.model
    expected = [
        (len(rows), yuan(sum(r.amount_fen for r in rows)))
        for rows in (m.contributions, m.grants, m.refunds, m.expenditures, m.in_kind)
    ]
    assert printed == expected
    assert expected[0][1] == yuan(s.period.contributed_fen)
    assert expected[3][1] == yuan(s.period.spent_fen)


def test_root_hashes_are_printed_whole_in_groups_of_four(sheet: Rendered) -> None:
    text = squash(sheet.text)
    verification = sheet.model.verification
    assert verification.previous is not None
    for root in (verification.root_hash_hex, verification.previous.root_hash_hex):
        groups = hex_groups(root).split(" ")
        assert len(groups) == 16
        assert " ".join(groups[:8]) in text
        assert " ".join(groups[8:]) in text
    assert f"账本记录数：{verification.tree_size}" in text
    assert f"上期公示：第 1 期，记录数 {verification.previous.tree_size}" in text


def test_every_page_says_page_x_of_y(sheet: Rendered, big_sheet: Rendered) -> None:
    for document in (sheet, big_sheet):
        count = len(PdfReader(io.BytesIO(document.pdf)).pages)
        assert count == len(document.pages) > 1
        for number, page in enumerate(document.pages, start=1):
            assert f"第 {number} 页 共 {count} 页" in page


def test_fonts_are_embedded_subsets_and_the_pdf_stays_small(sheet: Rendered, tmp_path: Path) -> None:
    path = tmp_path / "sheet.pdf"
    path.write_bytes(sheet.pdf)
    listing = subprocess.run(["pdffonts", str(path)], capture_output=True, text=True, check=True).stdout
    fonts = [line.split() for line in listing.splitlines()[2:] if line.strip()]
    assert fonts, listing
    for font in fonts:
        name, emb, sub, uni = font[0], font[-5], font[-4], font[-3]
        assert (emb, sub, uni) == ("yes", "yes", "yes"), listing
        assert re.fullmatch(r"[A-Z]{6}\+Noto-(Serif|Sans|Sans-Mono)-CJK-SC(-Bold)?", name), name
    assert len(fonts) <= 3, listing  # each CJK face costs ~120 KB even subset
    assert len(sheet.pdf) < 800_000


def test_a_thousand_entries_print_every_seq_exactly_once(big_sheet: Rendered) -> None:
    pages = len(big_sheet.pages)
    assert 15 <= pages <= 35
    seqs = Counter(int(seq) for seq, _ in ROW_START.findall(big_sheet.text))
    assert seqs == Counter(range(1, 1001))
    assert len(big_sheet.pdf) < 1_200_000


def _word_boxes(pdf: bytes, word: str) -> list[tuple[int, float, float, float, float]]:
    """(page, xMin, yMin, xMax, yMax) in points of every occurrence of ``word``."""
    html = subprocess.run(["pdftotext", "-bbox", "-", "-"], input=pdf, capture_output=True, check=True).stdout.decode()
    boxes = []
    for number, page in enumerate(html.split("<page ")[1:], start=1):
        for x0, y0, x1, y1, text in re.findall(
            r'<word xMin="([\d.]+)" yMin="([\d.]+)" xMax="([\d.]+)" yMax="([\d.]+)">([^<]*)</word>', page
        ):
            if text == word:
                boxes.append((number, float(x0), float(y0), float(x1), float(y1)))
    return boxes


class PageImages:
    """Pages of a PDF rasterized by poppler on demand, once each."""

    dpi = 144

    def __init__(self, pdf: bytes, folder: Path) -> None:
        self.pdf, self.folder = pdf, folder
        self.images: dict[int, Image.Image] = {}

    def page(self, number: int) -> Image.Image:
        if number not in self.images:
            prefix = self.folder / f"page{number}"
            pages = ["-f", str(number), "-l", str(number)]
            command = ["pdftoppm", "-png", "-r", str(self.dpi), *pages, "-singlefile", "-", str(prefix)]
            subprocess.run(command, input=self.pdf, check=True)
            self.images[number] = Image.open(f"{prefix}.png").convert("RGB")
        return self.images[number]

    def red_share(self, box: tuple[int, float, float, float, float]) -> float:
        """Share of the inked pixels inside ``box`` that are red."""
        number, x0, y0, x1, y1 = box
        scale = self.dpi / 72
        crop = self.page(number).crop((int(x0 * scale), int(y0 * scale), int(x1 * scale) + 1, int(y1 * scale) + 1))
        data = crop.tobytes()
        pixels = [tuple(data[i : i + 3]) for i in range(0, len(data), 3)]
        inked = [p for p in pixels if min(p) < 200]  # glyph pixels, anti-aliased edges included
        red = [p for p in inked if p[0] - max(p[1], p[2]) > 60]
        return len(red) / max(len(inked), 1)


def test_a_reversal_is_printed_in_red_with_its_note(sheet: Rendered, tmp_path: Path) -> None:
    reversal = next(r for r in sheet.model.contributions if r.is_reversal)
    original = next(r for r in sheet.model.contributions if r.seq == reversal.reverses_seq)
    assert reversal.amount_fen == -original.amount_fen
    negative = yuan(reversal.amount_fen)
    assert negative.startswith("-")
    red_boxes = _word_boxes(sheet.pdf, negative)
    black_boxes = _word_boxes(sheet.pdf, yuan(original.amount_fen))
    assert red_boxes and black_boxes
    images = PageImages(sheet.pdf, tmp_path)
    for box in red_boxes:  # a negative amount is always a reversal
        assert images.red_share(box) > 0.8
    for box in black_boxes:
        assert images.red_share(box) < 0.05
    assert f"冲正第 {original.seq} 号" in squash(sheet.text)
    assert f"冲正第 {original.seq} 号：{reversal.reversal_reason}" in render_sheet_html(sheet.model)


def test_html_is_self_contained_with_vector_charts_and_qr(sheet: Rendered) -> None:
    html = render_sheet_html(sheet.model)
    assert '<html lang="zh-CN">' in html
    assert "<img" not in html and "<link" not in html and "src=" not in html and "url(" not in html
    assert html.count("<svg") == 3  # sources of funds, budget per line, QR code
    assert 'aria-label="资金来源构成图"' in html
    assert 'aria-label="预算执行情况柱状图：预算与已支出"' in html
    assert 'class="qr"' in html
    for line in sheet.model.budget_lines:
        assert f"{line.category_label}（{line.source_label}）" in html
    escaped = dataclasses.replace(sheet.model, project_title="<script>alert(1)</script>")
    assert "<script>" not in render_sheet_html(escaped)


def test_an_empty_first_sheet_still_renders_every_section() -> None:
    model = dataclasses.replace(sample_sheet(0, first_seq=1), budget_lines=(), decisions=())
    document = rendered(model)
    text = squash(document.text)
    assert text.count("本期无记录。") == 6  # six period tables (其他收入 has one since issue 9)
    assert "本项目未设预算科目。" in text and "暂无决策记录。" in text and "暂无收入" in text
    assert "上期公示：无（本期为首期公示）" in text
    assert re.search(r"结余 — 0\.00", text)


def test_pdf_is_deterministic(sheet: Rendered) -> None:
    assert render_sheet_pdf(sheet.model) == sheet.pdf


# --- Start-up checks ---------------------------------------------------------------------------


def test_font_checks_pass_here() -> None:
    check_cjk_font()
    check_font_subsetter()


def _fake_fc_list(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, output: str) -> None:
    script = tmp_path / "fc-list"
    script.write_text(f"#!/bin/sh\nprintf '{output}'\n")
    script.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))


def test_font_check_explains_how_to_install_a_cjk_font(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_fc_list(tmp_path, monkeypatch, "")
    with pytest.raises(RuntimeError) as error:
        check_cjk_font()
    assert "apt-get install fonts-noto-cjk" in str(error.value)
    assert "未找到中文字体" in str(error.value) and "No CJK font" in str(error.value)
    _fake_fc_list(tmp_path, monkeypatch, "Noto Sans CJK SC,Noto Sans CJK JP\\nWenQuanYi Zen Hei\\n")
    with pytest.raises(RuntimeError, match="Noto Sans Mono CJK SC, Noto Serif CJK SC"):
        check_cjk_font()
    monkeypatch.setenv("PATH", str(tmp_path / "nowhere"))
    with pytest.raises(RuntimeError, match="apt-get install fonts-noto-cjk"):
        check_cjk_font()


# --- Async renderer ----------------------------------------------------------------------------


async def test_process_renderer_keeps_the_event_loop_responsive(big_sheet: Rendered) -> None:
    lags: list[float] = []
    done = asyncio.Event()

    async def tick() -> None:
        while not done.is_set():
            start = time.perf_counter()
            await asyncio.sleep(0.01)
            lags.append(time.perf_counter() - start - 0.01)

    async with PdfRenderer(max_concurrent=2, mode="process") as renderer:
        await renderer.start()
        ticker = asyncio.create_task(tick())
        start = time.perf_counter()
        small, large = await asyncio.gather(
            renderer.render(sample_sheet(120, waived=True)), renderer.render(big_sheet.model)
        )
        elapsed = time.perf_counter() - start
        done.set()
        await ticker
    assert large == big_sheet.pdf  # same bytes from a worker process
    assert small.startswith(b"%PDF-")
    assert elapsed > 0.5 and len(lags) > 10
    # The loop kept ticking while WeasyPrint worked for seconds in the workers. Rendering on the
    # loop would stall it for the whole render (seconds); the bound leaves room for a noisy box.
    assert max(lags) < 1.0, max(lags)


async def test_renderer_bounds_waiting_callers(sheet: Rendered) -> None:
    async with PdfRenderer(max_concurrent=1, max_waiting=1, mode="thread") as renderer:
        first = asyncio.create_task(renderer.render(sheet.model))
        second = asyncio.create_task(renderer.render(sheet.model))
        await asyncio.sleep(0)  # first holds the only slot, second waits
        with pytest.raises(RendererBusyError):
            await renderer.render(sheet.model)
        assert await first == sheet.pdf
        assert await second == sheet.pdf
