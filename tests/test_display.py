"""Display in one place (reports/display.py): one participation rate, one way to decide masking,
one red-ink sign, one percentage — the JSON, the pages, the exports and the sheet agree."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction
from pathlib import Path

from api.pages.views import percent as page_percent
from ledger.participation import participation_rate
from reports.display import ratio_decimal, ratio_number, shown_contributor, signed_fen
from reports.formatting import percent as sheet_percent
from tests.api_support import Api, World, contribution
from tests.test_disclosures import pdf_text, period


def test_one_participation_rate_capped_at_one() -> None:
    assert participation_rate(5, 400) == Fraction(1, 80)
    assert participation_rate(3, 2) == 1  # givers from outside the scope never make it exceed 100%
    assert participation_rate(3, 0) is None and participation_rate(3, None) is None
    rate = participation_rate(236, 400)
    assert ratio_number(rate) == 0.59 and ratio_decimal(rate) == Decimal("0.59")
    assert ratio_number(participation_rate(1, 3)) == 0.3333


def test_pages_and_sheet_round_percentages_alike() -> None:
    for value in ("0.5905", "0.0125", "0.99949", "1"):
        assert page_percent(float(value)) == sheet_percent(Decimal(value))
    assert page_percent(0.5905) == "59.1%"  # half up, as the sheet prints it


def test_masking_is_decided_in_one_place() -> None:
    args = ("张小三", "3栋2单元501", "resident")
    assert shown_contributor(*args, anonymous=False, erased=False) == ("张**", "3栋")
    assert shown_contributor(*args, anonymous=False, erased=False, unmasked=True) == ("张小三", "3栋2单元501")
    assert shown_contributor(*args, anonymous=True, erased=False) == ("匿名", None)
    assert shown_contributor(None, None, "resident", anonymous=False, erased=True, unmasked=True) == ("已注销", None)
    assert signed_fen("reversal", 1200) == -1200 and signed_fen("other_income", 1200) == 1200


async def test_api_and_sheet_show_the_same_capped_rate(api: Api, world: World, tmp_path: Path) -> None:
    code = await world.project(households_in_scope=2)
    for name in ("张三", "李四", "王五"):
        await world.entry(code, contribution("100", name, None))
    summary = (await api.get(f"/api/v1/projects/{code}")).json()["summary"]
    assert summary["contributors"] == 3 and summary["participation_rate"] == 1.0
    response = await api.get(f"/api/v1/projects/{code}/disclosures/preview.pdf", params=period(), token=world.treasurer)
    assert "参与率 100.0%" in pdf_text(response.content, tmp_path).replace("\n", " ")
    page = (await api.get(f"/p/{code}")).text
    assert "参与率 100.0%" in page
