"""The view model of one disclosure sheet (公示表): everything the template prints, display-ready.

The caller (the read side that queries the ledger) builds a :class:`SheetModel`; the renderer only
formats it. Hence the contract:

- names are already masked for the public (张*, 欧阳**, organisations in full, 匿名, 已注销) and
  households cut to the building (3栋); this module never sees a phone or an unmasked name;
- money is integer fen (``int``), never float or Decimal; a reversal row carries a negative amount;
- dates are :class:`datetime.date`; labels (channel, category, stage) are already in Chinese;
- row sequences may be lists or tuples: they are stored as tuples, so a model is immutable and
  picklable (it crosses a process boundary in :class:`reports.render.PdfRenderer`).

Construction checks the invariants that a bug in the builder could break (types of money, signs
of reversals, the cash identity of the summary, the hash format, limits) and raises ``TypeError``
or ``ValueError`` with the field's name, so a wrong sheet is never printed.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import date
from decimal import Decimal

# Detail rows on one sheet, all tables together. A monthly sheet of a busy project has a few
# hundred; 20,000 is about 400 A4 pages and half a minute of rendering. A period with more is
# printed all the same, its first rows and every total, and says on its face how many rows it
# leaves out and where to read them (:class:`OmittedRows`).
SHEET_ROWS_MAX = 20_000
# Any single text field (a name, a payee, a memo); longer text is a builder bug, not data.
TEXT_LENGTH_MAX = 500

# The detail tables, by the SheetModel field that holds their rows.
DETAIL_TABLES = ("contributions", "grants", "other_income", "expenditures", "in_kind", "refunds", "pledges")

_HASH_HEX = re.compile(r"^[0-9a-f]{64}$")


def _check_fen(owner: object, name: str, *, negative_ok: bool = True) -> None:
    value = getattr(owner, name)
    # bool is an int subclass and float/Decimal are never money here.
    if type(value) is not int:
        raise TypeError(f"{type(owner).__name__}.{name} must be int fen, got {type(value).__name__}")
    if not negative_ok and value < 0:
        raise ValueError(f"{type(owner).__name__}.{name} must not be negative, got {value}")


def _check_count(owner: object, name: str, *, optional: bool = False) -> None:
    value = getattr(owner, name)
    if value is None and optional:
        return
    if type(value) is not int or value < 0:
        raise ValueError(f"{type(owner).__name__}.{name} must be a non-negative int, got {value!r}")


def _check_texts(owner: object) -> None:
    for field in fields(owner):  # type: ignore[arg-type]
        value = getattr(owner, field.name)
        if isinstance(value, str) and len(value) > TEXT_LENGTH_MAX:
            raise ValueError(f"{type(owner).__name__}.{field.name} is longer than {TEXT_LENGTH_MAX}")


def _freeze(owner: object, name: str) -> None:
    object.__setattr__(owner, name, tuple(getattr(owner, name)))


def ratio(part: int, whole: int) -> Decimal | None:
    """``part / whole`` as a Decimal fraction (0.687 = 68.7%), or None when ``whole`` is zero."""
    if whole <= 0:
        return None
    return Decimal(part) / Decimal(whole)


# --- Detail rows -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class EntryRow:
    """One ledger entry as printed in a detail table.

    A reversal (冲正, 红字冲销) is printed in the table of the kind it reverses, in red, with a
    negative ``amount_fen``, its own ``seq`` and the note 冲正第 ``reverses_seq`` 号：reason.
    """

    seq: int  # 记账序号, the entry's gapless number in the project (leaf index + 1)
    occurred_on: date
    amount_fen: int  # signed: negative exactly for reversals (in-kind may be 0)
    is_reversal: bool = False
    reverses_seq: int | None = None
    reversal_reason: str | None = None

    def __post_init__(self) -> None:
        if type(self.seq) is not int or self.seq < 1:
            raise ValueError(f"{type(self).__name__}.seq must be a positive int, got {self.seq!r}")
        if not isinstance(self.occurred_on, date):
            raise TypeError(f"{type(self).__name__}.occurred_on must be a date")
        _check_fen(self, "amount_fen")
        if self.is_reversal:
            if self.amount_fen > 0:
                raise ValueError(f"reversal seq {self.seq}: amount_fen must be negative (红字)")
            if self.reverses_seq is None or not 1 <= self.reverses_seq < self.seq:
                raise ValueError(f"reversal seq {self.seq}: reverses_seq must name an earlier entry")
            if not self.reversal_reason:
                raise ValueError(f"reversal seq {self.seq}: reversal_reason is required")
        else:
            if self.amount_fen < 0:
                raise ValueError(f"seq {self.seq}: only a reversal has a negative amount")
            if self.reverses_seq is not None or self.reversal_reason is not None:
                raise ValueError(f"seq {self.seq}: reverses_seq/reversal_reason only on a reversal")
        _check_texts(self)

    @property
    def reversal_note(self) -> str:
        """``冲正第 12 号：金额录入错误`` for a reversal, else empty."""
        if not self.is_reversal:
            return ""
        return f"冲正第 {self.reverses_seq} 号：{self.reversal_reason}"


@dataclass(frozen=True, slots=True, kw_only=True)
class ContributionRow(EntryRow):
    """众筹出资 from a resident, household, unit or enterprise."""

    contributor_name: str  # masked: 张*, 欧阳**; organisations in full; 匿名
    building: str = ""  # 3栋, or empty
    channel_label: str = ""  # 微信 / 支付宝 / 现金 / 银行转账 / 其他
    receipt_no: str = ""  # 收据号


@dataclass(frozen=True, slots=True, kw_only=True)
class GrantRow(EntryRow):
    """以奖代补 or another public grant."""

    grantor: str  # 拨款单位, e.g. 下陆区住房和城乡建设局
    document_no: str = ""  # 文号, e.g. 下住建〔2026〕12号


@dataclass(frozen=True, slots=True, kw_only=True)
class OtherIncomeRow(EntryRow):
    """其他收入: bank interest, the sale of leftover materials."""

    payer: str  # 付款方, e.g. 某银行黄石分行
    memo: str = ""  # 事由, e.g. 利息


@dataclass(frozen=True, slots=True, kw_only=True)
class ExpenditureRow(EntryRow):
    """支出 to a payee in a budget category."""

    payee: str  # enterprise in full, a person masked
    category_label: str  # 预算科目, e.g. 材料费
    invoice_no: str = ""
    approver_name: str = ""  # 审核人, masked


@dataclass(frozen=True, slots=True, kw_only=True)
class InKindRow(EntryRow):
    """出力/实物: labour or materials, valued in ``amount_fen``; memorandum only, never cash."""

    contributor_name: str
    building: str = ""
    description: str = ""  # 义务劳动 4 小时, 水泥 10 袋


@dataclass(frozen=True, slots=True, kw_only=True)
class RefundRow(EntryRow):
    """退款 of a contribution."""

    contributor_name: str
    building: str = ""
    memo: str = ""  # 事由


@dataclass(frozen=True, slots=True, kw_only=True)
class PledgeRow(EntryRow):
    """认筹兑现: one pledge not reversed, as of the sheet (cumulative, not just the period).
    ``amount_fen`` is the promise; 实缴 counts the unreversed payments naming it, up to it."""

    contributor_name: str
    building: str = ""
    fulfilled_fen: int  # 实缴, at most amount_fen
    excess_fen: int = 0  # paid beyond the promise: a plain contribution, noted

    def __post_init__(self) -> None:
        EntryRow.__post_init__(self)
        if self.is_reversal:
            raise ValueError(f"pledge seq {self.seq}: a reversed pledge is not listed")
        _check_fen(self, "fulfilled_fen", negative_ok=False)
        _check_fen(self, "excess_fen", negative_ok=False)
        if self.fulfilled_fen > self.amount_fen:
            raise ValueError(f"pledge seq {self.seq}: 实缴 cannot exceed the promise")

    @property
    def outstanding_fen(self) -> int:
        return self.amount_fen - self.fulfilled_fen


# --- Summary and other blocks ------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class MoneyTotals:
    """Cash figures over one span (the period, or since the project began); reversals netted."""

    contributed_fen: int  # 居民众筹收入 net of reversals (refunds are separate)
    granted_fen: int  # 以奖代补资金
    other_income_fen: int  # 其他收入
    spent_fen: int  # 支出合计
    refunded_fen: int  # 退款

    def __post_init__(self) -> None:
        for name in ("contributed_fen", "granted_fen", "other_income_fen", "spent_fen", "refunded_fen"):
            _check_fen(self, name)

    @property
    def income_fen(self) -> int:
        return self.contributed_fen + self.granted_fen + self.other_income_fen


@dataclass(frozen=True, slots=True, kw_only=True)
class SheetSummary:
    """一、资金收支总表: period and cumulative cash, memorandum figures and participation."""

    period: MoneyTotals
    cumulative: MoneyTotals
    balance_fen: int  # 结余 = cumulative income - spent - refunded (checked)
    budget_fen: int  # sum of the budget lines
    in_kind_value_fen: int  # cumulative valuation of labour and materials, not cash
    in_kind_hours: Decimal | None = None  # cumulative labour hours, if recorded
    pledged_fen: int = 0  # 认筹
    pledge_paid_fen: int = 0  # of which paid (兑现)
    pledges_open: int = 0  # pledges not yet paid in full
    contributors: int = 0  # households (or persons, see contributors_unit) that contributed
    contributors_unit: str = "户"  # 户 or 人
    households_in_scope: int | None = None  # households the project serves
    participation_rate: Decimal | None = None  # fraction 0..1 (0.59 prints 59.0%), None if unknown
    grant_note: str = ""  # printed after the grant line: 下陆区住房和城乡建设局 下住建〔2026〕12号

    def __post_init__(self) -> None:
        for name in ("balance_fen", "budget_fen", "in_kind_value_fen", "pledged_fen", "pledge_paid_fen"):
            _check_fen(self, name)
        _check_count(self, "contributors")
        _check_count(self, "pledges_open")
        if self.pledge_paid_fen > self.pledged_fen:
            raise ValueError("SheetSummary.pledge_paid_fen cannot exceed pledged_fen")
        _check_count(self, "households_in_scope", optional=True)
        if self.participation_rate is not None and not (
            isinstance(self.participation_rate, Decimal) and 0 <= self.participation_rate <= 1
        ):
            raise ValueError("SheetSummary.participation_rate must be a Decimal fraction in [0, 1]")
        if self.in_kind_hours is not None and not isinstance(self.in_kind_hours, Decimal):
            raise TypeError("SheetSummary.in_kind_hours must be a Decimal")
        c = self.cumulative
        expected = c.income_fen - c.spent_fen - c.refunded_fen
        if self.balance_fen != expected:
            raise ValueError(f"SheetSummary.balance_fen {self.balance_fen} != cumulative cash {expected}")
        _check_texts(self)

    @property
    def pledge_rate(self) -> Decimal | None:
        """兑现率: paid share of the pledges."""
        return ratio(self.pledge_paid_fen, self.pledged_fen)


@dataclass(frozen=True, slots=True, kw_only=True)
class BudgetLineRow:
    """二、预算执行情况: one budget line, planned versus spent (cumulative)."""

    category_label: str  # 材料费
    source_label: str  # 众筹 / 以奖代补 / 其他
    budget_fen: int
    spent_fen: int

    def __post_init__(self) -> None:
        _check_fen(self, "budget_fen", negative_ok=False)
        _check_fen(self, "spent_fen")
        _check_texts(self)

    @property
    def execution_rate(self) -> Decimal | None:
        """执行率: spent share of the budget (may exceed 1 when overspent)."""
        return ratio(self.spent_fen, self.budget_fen)


@dataclass(frozen=True, slots=True, kw_only=True)
class DecisionRow:
    """六、决策记录: one recorded step of 四议两公开; counts are None where not applicable."""

    held_on: date
    stage_label: str  # 提议 / 商议 / 审议 / 决议 / 决议公开 / 实施 / 验收 / 共评 / 结项
    body: str  # 会议或机构: 居民代表大会
    eligible: int | None = None  # 应到
    attendees: int | None = None  # 实到
    votes_for: int | None = None
    votes_against: int | None = None
    votes_abstain: int | None = None
    summary: str = ""  # 内容摘要

    def __post_init__(self) -> None:
        if not isinstance(self.held_on, date):
            raise TypeError("DecisionRow.held_on must be a date")
        for name in ("eligible", "attendees", "votes_for", "votes_against", "votes_abstain"):
            _check_count(self, name, optional=True)
        _check_texts(self)


@dataclass(frozen=True, slots=True, kw_only=True)
class PreviousSheet:
    """The previous published sheet's pin, for a consistency proof between two pieces of paper."""

    sheet_number: int
    tree_size: int
    root_hash_hex: str

    def __post_init__(self) -> None:
        _check_count(self, "tree_size")
        if not _HASH_HEX.match(self.root_hash_hex):
            raise ValueError("PreviousSheet.root_hash_hex must be 64 lowercase hex digits")


@dataclass(frozen=True, slots=True, kw_only=True)
class WitnessedSheet:
    """An earlier sheet whose checkpoint witnesses had cosigned when this one was published."""

    sheet_number: int
    tree_size: int
    witnesses: Sequence[str]  # 锦绣花园业委会（业委会）, in signing order

    def __post_init__(self) -> None:
        _freeze(self, "witnesses")
        _check_count(self, "tree_size")
        if not self.witnesses:
            raise ValueError("WitnessedSheet.witnesses must name at least one witness")


@dataclass(frozen=True, slots=True, kw_only=True)
class VerificationBlock:
    """七、核验信息: the Merkle tree pinned by this sheet."""

    tree_size: int  # 账本记录数 at publication
    root_hash_hex: str  # RFC 9162 root, 64 lowercase hex digits
    previous: PreviousSheet | None
    verify_url: str  # the QR code points here
    witnessed: Sequence[WitnessedSheet] = ()  # earlier sheets cosigned by witnesses, by number

    def __post_init__(self) -> None:
        _check_count(self, "tree_size")
        if not _HASH_HEX.match(self.root_hash_hex):
            raise ValueError("VerificationBlock.root_hash_hex must be 64 lowercase hex digits")
        if self.previous is not None and self.previous.tree_size > self.tree_size:
            raise ValueError("the previous sheet cannot pin a larger tree than this one")
        if not self.verify_url:
            raise ValueError("VerificationBlock.verify_url is required")
        _freeze(self, "witnessed")


@dataclass(frozen=True, slots=True, kw_only=True)
class AwardBlock:
    """以奖代补核算: the policy's rule applied to the project, each step a sentence (ledger/awards.py
    writes them), with the result and what was granted citing it."""

    steps: Sequence[str]
    award_fen: int  # 应奖
    granted_fen: int  # 已拨付 (grants citing the computation, reversals netted)

    def __post_init__(self) -> None:
        _freeze(self, "steps")
        _check_fen(self, "award_fen", negative_ok=False)
        _check_fen(self, "granted_fen", negative_ok=False)
        if not self.steps or not all(isinstance(x, str) and 0 < len(x) <= TEXT_LENGTH_MAX for x in self.steps):
            raise ValueError("AwardBlock.steps must be non-empty sentences")


@dataclass(frozen=True, slots=True, kw_only=True)
class TableTotal:
    """A detail table's figures from the ledger: every entry that belongs in it, printed or not
    (the period's entries of its kind, reversals netted in; for 认筹兑现 every pledge to date)."""

    rows: int
    amount_fen: int
    paid_fen: int = 0  # 认筹兑现 only: 实缴

    def __post_init__(self) -> None:
        _check_count(self, "rows")
        _check_fen(self, "amount_fen")
        _check_fen(self, "paid_fen", negative_ok=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class OmittedRows:
    """More detail rows than one sheet prints: what was left out, and where to read it."""

    limit: int  # SHEET_ROWS_MAX when the sheet was built
    rows_total: int  # detail rows the sheet would hold without a limit
    rows_printed: int
    # Period entries from this seq on are not printed (the cut follows the seq order); None when
    # every entry is printed and only pledges are left out.
    entries_from_seq: int | None
    # Pledges after this seq are not printed (0: none is); None when every pledge is printed.
    pledges_after_seq: int | None
    entries_url: str  # the public entries page
    export_url: str  # the period's entries as a spreadsheet
    pledges_url: str  # the public pledges page

    def __post_init__(self) -> None:
        for name in ("limit", "rows_total", "rows_printed"):
            _check_count(self, name)
        if not self.rows_printed <= self.limit < self.rows_total:
            raise ValueError("OmittedRows: printed <= limit < total rows")
        if self.entries_from_seq is None and self.pledges_after_seq is None:
            raise ValueError("OmittedRows: something must be left out")

    @property
    def rows_omitted(self) -> int:
        return self.rows_total - self.rows_printed


@dataclass(frozen=True, slots=True, kw_only=True)
class ScoreRow:
    """共评: one way of scoring (online by code, on paper, both) — the distribution 1–5 and what
    ledger/evaluations.py computes of it (the same values the API and the page give)."""

    label: str  # 线上（评价码） / 线下（问卷、共评会） / 合计
    counts: Sequence[int]  # scores 1..5
    average: Decimal | None  # two places; None without scores
    satisfied_rate: Decimal | None  # share of 4 and 5, four places; None without scores

    def __post_init__(self) -> None:
        _freeze(self, "counts")
        if len(self.counts) != 5 or any(type(n) is not int or n < 0 for n in self.counts):
            raise ValueError("ScoreRow.counts are five non-negative ints (scores 1 to 5)")
        for name in ("average", "satisfied_rate"):
            value = getattr(self, name)
            if (value is None) != (self.total == 0) or (value is not None and not isinstance(value, Decimal)):
                raise ValueError(f"ScoreRow.{name} is a Decimal exactly when there are scores")
        if self.satisfied_rate is not None and not 0 <= self.satisfied_rate <= 1:
            raise ValueError("ScoreRow.satisfied_rate is a fraction in [0, 1]")
        _check_texts(self)

    @property
    def total(self) -> int:
        return sum(self.counts)


@dataclass(frozen=True, slots=True, kw_only=True)
class EvaluationBlock:
    """共评结果 as of the sheet: online, paper and together, and how many codes were issued."""

    rows: Sequence[ScoreRow]  # online, paper, overall
    codes_issued: int
    tallies: int  # paper questionnaires and meetings recorded

    def __post_init__(self) -> None:
        _freeze(self, "rows")
        if len(self.rows) != 3 or any(type(r) is not ScoreRow for r in self.rows):
            raise ValueError("EvaluationBlock.rows are online, paper and overall")
        online, paper, overall = self.rows
        if list(overall.counts) != [a + b for a, b in zip(online.counts, paper.counts, strict=True)]:
            raise ValueError("EvaluationBlock: the overall row is online plus paper")
        _check_count(self, "codes_issued")
        _check_count(self, "tallies")


# --- The sheet ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class SheetModel:
    """One disclosure sheet, in print order. Detail tables list the period's entries by seq."""

    title: str  # 锦绣花园小区路面刷黑项目资金收支公示 (第 N 期 is added by the template)
    community_name: str  # 锦绣花园社区
    street: str  # 团城山街道 (街道/district text printed before the community)
    project_code: str
    project_title: str
    sheet_number: int  # 第 N 期
    period_start: date
    period_end: date
    published_on: date  # 公示日期
    notice_start: date
    notice_end: date
    notice_days: int
    spending_gate_waived: bool  # decided before the service existed: say so on the sheet
    summary: SheetSummary
    budget_lines: Sequence[BudgetLineRow]
    contributions: Sequence[ContributionRow]
    grants: Sequence[GrantRow]
    expenditures: Sequence[ExpenditureRow]
    in_kind: Sequence[InKindRow]
    refunds: Sequence[RefundRow]
    decisions: Sequence[DecisionRow]
    verification: VerificationBlock
    objection_contact: str  # 社区居委会 电话 0714-6288123（工作日 8:30–17:30）
    public_url: str  # the project's public page
    committee_name: str = ""  # who seals the sheet; default: community_name + 居民委员会
    objection_reply_days: int = 3  # 个工作日内公开答复
    pledges: Sequence[PledgeRow] = ()  # every pledge not reversed, as of the sheet, by seq
    other_income: Sequence[OtherIncomeRow] = ()  # 其他收入 of the period
    award: AwardBlock | None = None  # None: the project follows no 以奖代补 policy
    # Each detail table's count and total from the ledger, as (table name, total) pairs: the
    # name is a field of this model ("contributions", …, "pledges"). A table without one is
    # whole, and its rows give its total.
    table_totals: Sequence[tuple[str, TableTotal]] = ()
    omitted: OmittedRows | None = None  # rows left out because the sheet would be too long
    evaluation: EvaluationBlock | None = None  # None: no codes issued and no scores yet

    def __post_init__(self) -> None:
        row_fields = {
            "budget_lines": BudgetLineRow,
            "contributions": ContributionRow,
            "grants": GrantRow,
            "other_income": OtherIncomeRow,
            "expenditures": ExpenditureRow,
            "in_kind": InKindRow,
            "refunds": RefundRow,
            "decisions": DecisionRow,
            "pledges": PledgeRow,
        }
        for name, row_type in row_fields.items():
            _freeze(self, name)
            for row in getattr(self, name):
                if type(row) is not row_type:
                    raise TypeError(f"SheetModel.{name} holds {row_type.__name__}, got {type(row).__name__}")
        if self.detail_row_count > SHEET_ROWS_MAX:
            raise ValueError(f"a sheet holds at most {SHEET_ROWS_MAX} detail rows")
        self._check_totals()
        for name in DETAIL_TABLES:
            seqs = [row.seq for row in getattr(self, name)]
            if seqs != sorted(seqs):
                raise ValueError(f"SheetModel.{name} must be in seq order")
        if type(self.sheet_number) is not int or self.sheet_number < 1:
            raise ValueError("SheetModel.sheet_number must be a positive int")
        if self.period_end < self.period_start:
            raise ValueError("SheetModel.period_end is before period_start")
        if self.notice_end < self.notice_start:
            raise ValueError("SheetModel.notice_end is before notice_start")
        _check_count(self, "notice_days")
        _check_count(self, "objection_reply_days")
        _check_texts(self)

    def _check_totals(self) -> None:
        """The ledger's totals against the rows: equal where a table is whole, never fewer rows
        than printed, and a cut sheet says so (builder bugs, never printed)."""
        _freeze(self, "table_totals")
        totals = dict(self.table_totals)
        if not set(totals) <= set(DETAIL_TABLES) or len(totals) != len(self.table_totals):
            raise ValueError("SheetModel.table_totals: unknown or repeated tables")
        missing_rows = 0
        for name, total in totals.items():
            rows: Sequence[EntryRow] = getattr(self, name)
            if total.rows < len(rows):
                raise ValueError(f"SheetModel.{name}: more rows printed than the ledger holds")
            missing_rows += total.rows - len(rows)
            if total.rows == len(rows):
                paid = sum(r.fulfilled_fen for r in rows) if name == "pledges" else 0  # type: ignore[attr-defined]
                if (total.amount_fen, total.paid_fen) != (sum(r.amount_fen for r in rows), paid):
                    raise ValueError(f"SheetModel.{name}: the rows do not add up to the ledger's total")
        period = self.summary.period
        for name, figure in (
            ("contributions", period.contributed_fen),
            ("grants", period.granted_fen),
            ("other_income", period.other_income_fen),
            ("expenditures", period.spent_fen),
            ("refunds", period.refunded_fen),
        ):
            if name in totals and totals[name].amount_fen != figure:
                raise ValueError(f"SheetModel.{name}: the table's total differs from the period's")
        if self.omitted is None:
            if missing_rows:
                raise ValueError("SheetModel: rows are left out but the sheet does not say so")
        elif (self.omitted.rows_printed, self.omitted.rows_omitted) != (self.detail_row_count, missing_rows):
            raise ValueError("SheetModel.omitted does not match the tables")

    def total_of(self, name: str) -> TableTotal:
        """A detail table's ledger total (from its rows where the builder gave none)."""
        for table, total in self.table_totals:
            if table == name:
                return total
        rows: Sequence[EntryRow] = getattr(self, name)
        paid = sum(r.fulfilled_fen for r in rows) if name == "pledges" else 0  # type: ignore[attr-defined]
        return TableTotal(rows=len(rows), amount_fen=sum(r.amount_fen for r in rows), paid_fen=paid)

    @property
    def detail_row_count(self) -> int:
        return sum(len(getattr(self, name)) for name in DETAIL_TABLES)

    @property
    def seal_name(self) -> str:
        """The body whose seal (盖章) the sheet carries."""
        return self.committee_name or f"{self.community_name}居民委员会"
