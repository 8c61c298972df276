"""The kinds of entry (记账凭证的类型): one definition each, read by everything that treats kinds.

A kind says what it is called (its code and Chinese labels), which fields it takes and which of
them it requires, whether it names a contributor and which contributor total it moves, which
accounts it posts to, how it moves cash, and whether it is memorandum only (never cash). The
append path (validation, postings, contributor totals), the API's schemas and error tags, the
exports, the summary's cash identity, the sheet and ``verify`` read this table; a new kind is a
new row here plus what docs/architecture.md lists.

A reversal (冲正) is a kind too, but a special one: it has no posting rule of its own (it mirrors its
original's postings) and moves its original's contributor total, negated.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from ledger.accounts import (
    CASH,
    CONTRIBUTIONS,
    EXPENSES_PREFIX,
    GRANTS,
    IN_KIND_CONTRIBUTED,
    IN_KIND_RECEIVED,
    OTHER_INCOME,
    PLEDGES_PROMISED,
    PLEDGES_RECEIVABLE,
    REFUNDS,
    Posting,
    expense_account,
)

# The contributor totals a kind can move (contributor_totals' columns, without ``_fen``).
CONTRIBUTOR_TOTALS = ("paid", "refunded", "pledged", "in_kind")
# How money moved (方式); any kind that takes ``channel`` takes one of these.
CHANNELS = ("cash", "wechat", "alipay", "bank", "other")


@dataclass(frozen=True)
class Kind:
    name: str  # the code: in the API, the database, the canonical document
    label: str  # 众筹出资: every public output (sheet, exports, pages)
    short_label: str  # 众筹: a spreadsheet's 类型 column, the import's messages
    # The kind's own text fields besides ``memo`` (ledger/canonical.py ENTRY_TEXT_FIELDS names).
    fields: tuple[str, ...]
    # Required fields and the Chinese message when one is missing.
    required: tuple[tuple[str, str], ...] = ()
    # Whether an entry names a contributor (出资人), and whether naming an unknown one creates it.
    contributor: bool = False
    creates_contributor: bool = True
    # The contributor total this kind moves (a reversal moves its original's, negated).
    moves_total: str | None = None
    # Posting rule: (debit account, credit account). EXPENSES_PREFIX stands for the entry's category.
    debit: str | None = None
    credit: str | None = None
    # +1: money in; -1: money out; 0: cash untouched.
    cash: int = 0
    # Memorandum only: recorded and totalled, never cash (出力, 认筹).
    memorandum: bool = False
    # Needs a countersigned voucher above the project's threshold (POST …/vouchers).
    countersigned: bool = False
    # The field naming the other party of a kind without a contributor (收款单位, 付款方).
    counterparty: str | None = None

    @property
    def income_account(self) -> str | None:
        """The account that totals this kind's money in (cash in only)."""
        return self.credit if self.cash > 0 else None


KINDS: tuple[Kind, ...] = (
    Kind(
        "contribution",
        "众筹出资",
        "众筹",
        fields=("channel", "receipt_no"),
        contributor=True,
        moves_total="paid",
        debit=CASH,
        credit=CONTRIBUTIONS,
        cash=+1,
    ),
    Kind(
        "grant",
        "以奖代补",
        "以奖代补",
        fields=("grantor", "document_no"),
        required=(("grantor", "奖补资金须注明拨付单位"),),
        debit=CASH,
        credit=GRANTS,
        cash=+1,
        counterparty="grantor",
    ),
    Kind(
        "expenditure",
        "支出",
        "支出",
        fields=("payee", "category", "invoice_no"),
        required=(("payee", "支出须注明收款单位"), ("category", "支出须注明预算科目")),
        debit=EXPENSES_PREFIX,
        credit=CASH,
        cash=-1,
        countersigned=True,
        counterparty="payee",
    ),
    Kind(
        "refund",
        "退款",
        "退款",
        fields=("channel",),
        contributor=True,
        creates_contributor=False,
        moves_total="refunded",
        debit=REFUNDS,
        credit=CASH,
        cash=-1,
        countersigned=True,
    ),
    Kind(
        "other_income",
        "其他收入",
        "其他收入",
        fields=("payer",),
        required=(("payer", "其他收入须注明付款方（如开户银行、余料买方）"),),
        debit=CASH,
        credit=OTHER_INCOME,
        cash=+1,
        counterparty="payer",
    ),
    Kind(
        "in_kind",
        "出力/实物",
        "出力",
        fields=("description",),
        required=(("description", "出力/实物须说明内容"),),
        contributor=True,
        moves_total="in_kind",
        debit=IN_KIND_RECEIVED,
        credit=IN_KIND_CONTRIBUTED,
        memorandum=True,
    ),
    Kind(
        "pledge",
        "认筹",
        "认筹",
        fields=(),
        contributor=True,
        moves_total="pledged",
        debit=PLEDGES_RECEIVABLE,
        credit=PLEDGES_PROMISED,
        memorandum=True,
    ),
    Kind(
        "reversal",
        "冲正",
        "冲正",
        fields=("reason",),
        required=(("reason", "冲正须说明原因"),),
    ),
)

BY_NAME: Mapping[str, Kind] = {k.name: k for k in KINDS}
NAMES: tuple[str, ...] = tuple(k.name for k in KINDS)
REVERSAL = "reversal"
# Kinds a treasurer records directly (every kind but the reversal, which names its original).
RECORDED: tuple[str, ...] = tuple(n for n in NAMES if n != REVERSAL)
LABELS: Mapping[str, str] = {k.name: k.label for k in KINDS}
CONTRIBUTOR_KINDS: tuple[str, ...] = tuple(k.name for k in KINDS if k.contributor)
COUNTERSIGNED_KINDS: tuple[str, ...] = tuple(k.name for k in KINDS if k.countersigned)
TOTAL_FOR_KIND: Mapping[str, str] = {k.name: k.moves_total for k in KINDS if k.moves_total}
INCOME_KINDS: tuple[str, ...] = tuple(k.name for k in KINDS if k.cash > 0)


def get(name: str) -> Kind:
    """The kind called ``name``; KeyError for an unknown one (callers validate first)."""
    return BY_NAME[name]


def posting_accounts(kind: str, category: str | None = None) -> tuple[str, str]:
    """The accounts a new entry of ``kind`` debits and credits with its whole amount."""
    k = BY_NAME[kind]
    assert k.debit is not None and k.credit is not None, f"{kind} has a posting rule"
    if k.debit == EXPENSES_PREFIX:
        assert category is not None, "an expenditure always names its category"
        return expense_account(category), k.credit
    return k.debit, k.credit


def postings_for(kind: str, amount_fen: int, category: str | None = None) -> list[Posting]:
    """The balanced postings of a new entry of ``kind`` (not a reversal: it mirrors its original):
    its amount debited to one account and credited to another (:func:`posting_accounts`)."""
    debit, credit = posting_accounts(kind, category)
    return [Posting(debit, "debit", amount_fen), Posting(credit, "credit", amount_fen)]


def income_fen(balances: Mapping[str, int], kind: str) -> int:
    """Money in through one income kind, from debit-positive balances (credits are negative)."""
    account = BY_NAME[kind].income_account
    assert account is not None, f"{kind} brings money in"
    return -balances.get(account, 0)


def cash_from_balances(balances: Mapping[str, int]) -> int:
    """Cash as the kinds' cash effects say it must be: income less spending and refunds, from the
    non-cash side of every posting rule that touches cash. Equal to the cash account's balance in
    a ledger that adds up (the summary asserts it; ``verify`` checks every account's postings)."""
    total = 0
    for k in KINDS:
        if k.cash > 0:
            total += income_fen(balances, k.name)
        elif k.cash < 0:
            assert k.debit is not None
            total -= _debited(balances, k.debit)
    return total


def _debited(balances: Mapping[str, int], account: str) -> int:
    if account == EXPENSES_PREFIX:
        return sum(v for code, v in balances.items() if code.startswith(EXPENSES_PREFIX))
    return balances.get(account, 0)


def total_filters(column: str = "kind") -> Iterable[tuple[str, str]]:
    """``(total, SQL condition)`` per contributor total: which kinds move it (``verify`` recomputes
    the stored totals with these)."""
    for total in CONTRIBUTOR_TOTALS:
        names = [k.name for k in KINDS if k.moves_total == total]
        yield total, f"{column} IN ({', '.join(repr(n) for n in names)})"


def _check_registry() -> None:
    for k in KINDS:
        if k.name == REVERSAL:
            continue
        assert k.debit is not None and k.credit is not None, k.name
        touches_cash = CASH in (k.debit, k.credit)
        assert touches_cash != k.memorandum, f"{k.name}: memorandum kinds never touch cash"
        assert k.cash == (1 if k.debit == CASH else -1 if k.credit == CASH else 0), k.name
        assert (k.moves_total is not None) == k.contributor, k.name
        assert not (k.contributor and k.counterparty), k.name
        assert {f for f, _ in k.required} <= set(k.fields), k.name


_check_registry()
