"""What the resident pages show, shaped from the API's own presenters.

Figures come from the same response models as the JSON API (``api.presenters``: masking, two
decimal money strings), so a page can never disagree with ``/api/v1``; labels are the sheet's
(``reports.labels``) and the stage names the decision trail's.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from api import schemas as s
from ledger.attachments import PUBLIC_KINDS
from ledger.canonical import SHANGHAI
from ledger.decisions import STAGES
from ledger.masking import mask_person_name
from ledger.money import format_fen_grouped
from reports.display import signed_fen
from reports.formatting import date_cn, hex_groups
from reports.formatting import percent as sheet_percent
from reports.labels import (
    CHANNEL_LABELS,
    CONTRIBUTOR_TYPE_LABELS,
    KIND_LABELS,
    SCORE_LABELS,
    SOURCE_LABELS,
    STAGE_LABELS,
    TALLY_METHOD_LABELS,
    account_label,
)

TEMPLATES = Path(__file__).resolve().parents[1] / "templates"
STATIC = Path(__file__).resolve().parents[1] / "static"


def money(amount: str | None) -> str:
    """The API's ``"1234.50"`` as ``¥1,234.50`` (no float: via Decimal to integer fen)."""
    if amount is None:
        return "—"
    fen = int(Decimal(amount) * 100)
    return f"¥{format_fen_grouped(fen)}"


def signed_money(entry: s.EntryOut) -> str:
    """Reversals (红字) carry the original's amount and are shown negative, as on the sheet."""
    fen = signed_fen(entry.kind, int(Decimal(entry.amount) * 100))
    return f"-¥{format_fen_grouped(-fen)}" if fen < 0 else f"¥{format_fen_grouped(fen)}"


def rate(part: str, whole: str) -> str:
    a, b = Decimal(part), Decimal(whole)
    if b <= 0:
        return "—"
    return sheet_percent(a / b)


def percent(value: float | None) -> str:
    """The API's ratios (JSON numbers: the participation rate, the satisfied rate) as the sheet
    prints them, rounded half up: ``59.0%``."""
    return sheet_percent(None if value is None else Decimal(str(value)))


def score_average(value: float | None) -> str:
    """The API's average (a JSON number of two places) as the sheet prints it: ``4.40``."""
    return "—" if value is None else f"{Decimal(str(value)):.2f}"


def when(moment: datetime | date) -> str:
    if isinstance(moment, datetime):
        local = moment.astimezone(SHANGHAI)
        return f"{date_cn(local.date())} {local:%H:%M}"
    return date_cn(moment)


@dataclass(frozen=True)
class StageStep:
    code: str
    label: str
    held_on: date | None
    state: str  # done | current | todo


def stage_steps(stage: str, decisions: list[s.DecisionOut]) -> list[StageStep]:
    """四议两公开 as a step bar: each stage with the date of its latest recorded decision."""
    dates: dict[str, date] = {}
    for d in decisions:
        dates[d.stage] = d.held_on
    current = STAGES.index(stage) if stage in STAGES else -1
    return [
        StageStep(
            code,
            STAGE_LABELS[code],
            dates.get(code),
            "done" if i < current else "current" if i == current else "todo",
        )
        for i, code in enumerate(STAGES)
    ]


def stage_label(stage: str) -> str:
    return STAGE_LABELS.get(stage, "筹备中")


def counterparty(e: s.EntryOut) -> str:
    """Who paid or was paid, masked as in every public output."""
    if e.contributor is not None:
        return e.contributor.name
    return e.payee or e.payer or e.grantor or ""


def make_environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        # Every value is escaped: memos and names are typed by people.
        autoescape=select_autoescape(default=True, default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        money=money,
        signed_money=signed_money,
        when=when,
        hex_groups=hex_groups,
        percent=percent,
        stage_label=stage_label,
        counterparty=counterparty,
        masked_person=mask_person_name,
        score_average=score_average,
        score_rate=percent,
    )
    env.globals.update(
        KIND_LABELS=KIND_LABELS,
        CHANNEL_LABELS=CHANNEL_LABELS,
        SOURCE_LABELS=SOURCE_LABELS,
        CONTRIBUTOR_TYPE_LABELS=CONTRIBUTOR_TYPE_LABELS,
        STAGE_LABELS=STAGE_LABELS,
        rate=rate,
        account_label=account_label,
        ATTACHMENT_PUBLIC_KINDS=PUBLIC_KINDS,
        TALLY_METHOD_LABELS=TALLY_METHOD_LABELS,
        SCORE_LABELS=SCORE_LABELS,
    )
    return env
