"""Entry drafts (what a treasurer asks to record) and the rules that need no database.

The kinds themselves — their fields, required fields, contributors and postings — are defined in
ledger/kinds.py; this module checks a draft against its kind (``check_static``), as the append
transaction (ledger/entries.py) does for every draft under the project's lock, and as a voucher
does when it is submitted. The API's schemas check the same; the ledger trusts no caller.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from ledger import kinds as k
from ledger.canonical import ENTRY_TEXT_FIELDS, Signer
from ledger.contributors import ContributorRef
from ledger.errors import ValidationFailed
from ledger.masking import ORGANISATION_TYPES, refuse_personal_numbers
from ledger.money import AMOUNT_MAX_FEN

# The kinds are defined once, in ledger/kinds.py; the sets the append path and its callers check.
ENTRY_KINDS = k.NAMES
CONTRIBUTOR_KINDS = k.CONTRIBUTOR_KINDS
CHANNELS = k.CHANNELS
COUNTERSIGNED_KINDS = k.COUNTERSIGNED_KINDS
TOTAL_FOR_KIND = k.TOTAL_FOR_KIND
BATCH_SIZE_MAX = 10_000
ATTACHMENTS_MAX = 20
EARLIEST_DATE = date(2000, 1, 1)


@dataclass(frozen=True)
class EntryDraft:
    """What a treasurer asks to record; everything else is derived under the lock."""

    kind: str
    occurred_on: date
    amount_fen: int | None = None  # None only for a reversal, which takes its original's
    memo: str | None = None
    contributor: ContributorRef | None = None
    channel: str | None = None
    receipt_no: str | None = None
    grantor: str | None = None
    document_no: str | None = None
    payee: str | None = None
    category: str | None = None
    invoice_no: str | None = None
    description: str | None = None
    payer: str | None = None  # other_income: who paid it (the bank, the buyer of leftover materials)
    reverses_seq: int | None = None
    reason: str | None = None
    # The pledge (认筹 entry) a contribution fulfils: its seq in the same project.
    pledge_seq: int | None = None
    # A grant that cites the project's 以奖代补 computation (its basis goes into the document).
    cites_award: bool = False
    # SHA-256 digests (hex) of files uploaded by the project's community.
    attachments: tuple[str, ...] = ()
    # Set only by a voucher's approval (ledger/vouchers.py), never from a request body.
    maker: Signer | None = None
    checker: Signer | None = None

    def kind_fields(self) -> dict[str, Any]:
        """The kind-specific fields, as they go into the document."""
        return {name: getattr(self, name) for name in ENTRY_TEXT_FIELDS}


# Published verbatim and hashed into the document: a phone typed here could never be taken back.
PUBLIC_TEXT_FIELDS = (
    "memo",
    "description",
    "reason",
    "payee",
    "payer",
    "grantor",
    "receipt_no",
    "invoice_no",
    "document_no",
)


def check_static(draft: EntryDraft, today: date) -> None:
    """The rules that need no database (the API's schemas check the same; the ledger trusts no
    caller): for the append transaction, and for a voucher when it is submitted."""
    public_text = {name: getattr(draft, name) for name in PUBLIC_TEXT_FIELDS}
    contributor = draft.contributor
    if contributor is not None and contributor.type in ORGANISATION_TYPES:
        public_text["contributor.name"] = contributor.name  # organisations are named in full
    refuse_personal_numbers(public_text)
    kind = k.BY_NAME.get(draft.kind)
    if kind is None:
        raise ValidationFailed.on("kind", f"未知的记录类型 {draft.kind}")
    if draft.occurred_on > today:
        raise ValidationFailed.on("occurred_on", "发生日期不能晚于今天")
    if draft.occurred_on < EARLIEST_DATE:
        raise ValidationFailed.on("occurred_on", "发生日期不能早于 2000-01-01")
    if kind.name == k.REVERSAL:
        if draft.reverses_seq is None or draft.reverses_seq < 1:
            raise ValidationFailed.on("reverses", "须指明被冲正的记账序号")
    elif draft.amount_fen is None or not 1 <= draft.amount_fen <= AMOUNT_MAX_FEN:
        raise ValidationFailed.on("amount", "金额须大于 0 且不超过 100,000,000.00 元")
    for name, message in kind.required:
        if not getattr(draft, name):
            raise ValidationFailed.on(name, message)
    if kind.name == k.REVERSAL:
        return
    if draft.cites_award and draft.kind != "grant":
        raise ValidationFailed.on("cites_award", "只有以奖代补拨款可以引用奖补核算")
    if draft.pledge_seq is not None and (draft.kind != "contribution" or draft.pledge_seq < 1):
        raise ValidationFailed.on("pledge", "只有众筹出资可以指明所兑现的认筹（认筹的记账序号）")
    if draft.channel is not None and draft.channel not in CHANNELS:
        raise ValidationFailed.on("channel", f"未知的支付方式 {draft.channel}")
