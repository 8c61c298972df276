"""Request and response bodies of API v1 (../shared/API.md).

Requests forbid unknown fields (so no client can smuggle ``seq``, hashes or ``recorded_by``) and
are validated strictly from JSON: money only as a decimal string of yuan, counts only as integers.
"""

from __future__ import annotations

import re
import uuid
from datetime import date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, RootModel, WithJsonSchema, field_validator

from ledger import kinds
from ledger.decisions import STAGES
from ledger.money import AMOUNT_MAX_FEN, parse_yuan

MONEY_PATTERN = r"^(0|[1-9][0-9]{0,11})(\.[0-9]{1,2})?$"
CONTROL_CHARACTERS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")
CODE_PATTERN = r"^[a-z0-9-]{2,64}$"


def _integral(value: Any) -> Any:
    # JSON Schema's "integer" is any number with no fractional part, so 1512.0 is one; a fraction
    # (1512.5) or a string ("1512") still fails the strict int check after this.
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


Integral = BeforeValidator(_integral)


def _entry_amount(value: Any) -> int:
    if not isinstance(value, str):
        raise ValueError('金额须为字符串形式的元，如 "200.50"（不接受 JSON 数字）')
    fen = parse_yuan(value)
    if fen <= 0:
        raise ValueError("金额必须大于零")
    if fen > AMOUNT_MAX_FEN:
        raise ValueError("单笔金额不得超过 100,000,000.00 元")
    return fen


def _budget_amount(value: Any) -> int:
    if not isinstance(value, str):
        raise ValueError('金额须为字符串形式的元，如 "60000"（不接受 JSON 数字）')
    fen = parse_yuan(value)
    if fen > AMOUNT_MAX_FEN:
        raise ValueError("预算金额不得超过 100,000,000.00 元")
    return fen


_MONEY_SCHEMA = {"type": "string", "pattern": MONEY_PATTERN, "examples": ["200.50"]}
# In: a yuan string; inside: integer fen.
EntryAmount = Annotated[int, BeforeValidator(_entry_amount), WithJsonSchema(_MONEY_SCHEMA)]
BudgetAmount = Annotated[int, BeforeValidator(_budget_amount), WithJsonSchema(_MONEY_SCHEMA)]
# Out: always two decimals.
MoneyOut = Annotated[str, Field(pattern=r"^-?[0-9]+\.[0-9]{2}$", examples=["200.50"])]

Text100 = Annotated[str, Field(min_length=1, max_length=100)]
Text200 = Annotated[str, Field(min_length=1, max_length=200)]
Memo = Annotated[str, Field(max_length=500)]
ShortCode = Annotated[str, Field(min_length=1, max_length=64)]
Code = Annotated[str, Field(pattern=CODE_PATTERN)]
Category = Annotated[str, Field(pattern=r"^[a-z0-9_-]{1,40}$")]


class RequestBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, str_strip_whitespace=True)

    @field_validator("*", mode="after")
    @classmethod
    def no_control_characters(cls, value: Any) -> Any:
        # JSON may carry \u0000–\u001f, but PostgreSQL text cannot store NUL and a spreadsheet
        # cell cannot hold the other controls (the XLSX export would fail): bad input, 422.
        if isinstance(value, str) and CONTROL_CHARACTERS.search(value):
            raise ValueError("不能包含控制字符（制表符和换行除外）")
        return value


# -- communities, projects, tokens -------------------------------------------------------------


class CommunityIn(RequestBody):
    code: Code
    name: Text100
    district: Annotated[str, Field(max_length=100)] = ""
    households: Annotated[int, Field(ge=0, le=1_000_000), Integral] | None = None


class BudgetLineIn(RequestBody):
    category: Category
    label: Text100
    source: Literal["crowdfunding", "grant", "collective", "other"]
    amount: BudgetAmount


class ProjectIn(RequestBody):
    code: Code
    community: Code
    title: Text100
    description: Annotated[str, Field(max_length=2000)] = ""
    households_in_scope: Annotated[int, Field(ge=0, le=1_000_000), Integral] = 0
    # Categories must differ too (the ledger refuses a repeated one); JSON Schema can only say
    # that whole lines must.
    budget_lines: Annotated[list[BudgetLineIn], Field(max_length=50, json_schema_extra={"uniqueItems": True})] = []
    spending_gate: Literal["resolution", "waived"] = "resolution"
    # Expenditures and refunds above this need a voucher approved by an auditor ("0": all).
    countersign_over: BudgetAmount | None = None
    # The 以奖代补 policy code the project follows (POST /award-policies).
    award_policy: Code | None = None


class ErasureIn(RequestBody):
    reason: Annotated[str, Field(min_length=1, max_length=500)]


class ErasureOut(BaseModel):
    id: str = Field(description="出资人 id")
    reason: str
    erased_at: datetime


class TokenIn(RequestBody):
    """An administrator's token belongs to no community; a treasurer's or auditor's to one."""

    model_config = ConfigDict(
        json_schema_extra={
            "oneOf": [
                {"properties": {"role": {"const": "admin"}, "community": {"type": "null"}}},
                {
                    "required": ["community"],
                    "properties": {"role": {"enum": ["treasurer", "auditor"]}, "community": {"type": "string"}},
                },
            ]
        }
    )

    name: Text100
    role: Literal["admin", "treasurer", "auditor"]
    community: Code | None = None


# -- entries -----------------------------------------------------------------------------------

ContributorType = Literal["resident", "household", "enterprise", "organization", "party_branch"]
Channel = Literal["cash", "wechat", "alipay", "bank", "other"]


class ContributorIn(RequestBody):
    """Either ``id`` (an existing contributor) or ``name`` (with ``household``)."""

    model_config = ConfigDict(
        json_schema_extra={
            "anyOf": [
                {"required": ["id"], "properties": {"id": {"type": "string"}}},
                {"required": ["name"], "properties": {"name": {"type": "string"}}},
            ]
        }
    )

    id: uuid.UUID | None = None
    name: Text100 | None = None
    household: Annotated[str, Field(max_length=100)] | None = None
    type: ContributorType = "resident"
    anonymous: bool = False


Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]


class _EntryIn(RequestBody):
    occurred_on: date
    memo: Memo | None = None
    # Digests of files uploaded to the project's community (POST …/attachments).
    attachments: Annotated[list[Sha256], Field(max_length=20)] = []


class ContributionIn(_EntryIn):
    kind: Literal["contribution"]
    amount: EntryAmount
    contributor: ContributorIn
    channel: Channel = "other"
    receipt_no: ShortCode | None = None
    # The seq of the pledge (认筹 entry, same contributor) this payment fulfils.
    pledge: Annotated[int, Field(ge=1, le=2**63 - 1), Integral] | None = None


class GrantIn(_EntryIn):
    kind: Literal["grant"]
    amount: EntryAmount
    grantor: Text200
    document_no: Text100 | None = None
    # Cite the project's 以奖代补 computation: its inputs and result go into the hashed entry.
    cites_award: bool = False


class ExpenditureIn(_EntryIn):
    kind: Literal["expenditure"]
    amount: EntryAmount
    payee: Text200
    category: Category
    invoice_no: ShortCode | None = None


class RefundIn(_EntryIn):
    kind: Literal["refund"]
    amount: EntryAmount
    contributor: ContributorIn
    channel: Channel | None = None


class OtherIncomeIn(_EntryIn):
    """其他收入: bank interest on the project account, sale of leftover materials."""

    kind: Literal["other_income"]
    amount: EntryAmount
    payer: Text200 = Field(description="付款方：如开户银行、余料买方")


class InKindIn(_EntryIn):
    kind: Literal["in_kind"]
    amount: EntryAmount
    contributor: ContributorIn
    description: Annotated[str, Field(min_length=1, max_length=500)]


class PledgeIn(_EntryIn):
    kind: Literal["pledge"]
    amount: EntryAmount
    contributor: ContributorIn


class ReversalIn(_EntryIn):
    kind: Literal["reversal"]
    reverses: Annotated[int, Field(ge=1, le=2**63 - 1), Integral]
    reason: Annotated[str, Field(min_length=1, max_length=500)]


EntryIn = Annotated[
    ContributionIn | GrantIn | ExpenditureIn | RefundIn | OtherIncomeIn | InKindIn | PledgeIn | ReversalIn,
    Field(discriminator="kind"),
]


class EntryRequest(RootModel[EntryIn]):
    """One entry; its shape depends on ``kind``."""


class EntryBatchIn(RequestBody):
    entries: Annotated[list[EntryIn], Field(min_length=1, max_length=10_000)]


# -- decisions ---------------------------------------------------------------------------------

Count = Annotated[int, Field(ge=0, le=1_000_000), Integral]


if TYPE_CHECKING:
    Stage = str
    EntryKind = str
else:
    # The 四议两公开 stages in order, as ledger/decisions.py defines them.
    Stage = Literal[STAGES]
    # Every kind of ledger/kinds.py, in its order (tests/test_kinds.py holds the request union to it).
    EntryKind = Literal[kinds.NAMES]


class DecisionIn(RequestBody):
    stage: Stage
    held_on: date
    body: Text100
    eligible: Count | None = None
    attendees: Count | None = None
    votes_for: Count | None = None
    votes_against: Count | None = None
    votes_abstain: Count | None = None
    summary: Annotated[str, Field(max_length=2000)] = ""
    minutes_sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")] | None = None
    notice_days: Annotated[int, Field(ge=0, le=90), Integral] | None = None


# -- responses ---------------------------------------------------------------------------------


class CommunityOut(BaseModel):
    code: str
    name: str
    district: str
    households: int | None
    created_at: datetime


class CommunityPage(BaseModel):
    items: list[CommunityOut]
    next: str | None


class BudgetLineOut(BaseModel):
    category: str
    label: str
    source: str
    amount: MoneyOut


class CategoryOut(BaseModel):
    category: str
    label: str
    budget: MoneyOut
    spent: MoneyOut


class LedgerHeadOut(BaseModel):
    size: int
    root_hash: str


class SummaryOut(BaseModel):
    budget: MoneyOut
    contributed: MoneyOut
    granted: MoneyOut
    other_income: MoneyOut = Field(description="其他收入（利息、变卖余料等）")
    spent: MoneyOut
    refunded: MoneyOut
    balance: MoneyOut = Field(description="众筹 + 奖补 + 其他收入 − 支出 − 退款")
    in_kind_value: MoneyOut
    pledged: MoneyOut
    pledge_paid: MoneyOut = Field(description="实缴：指明所兑现认筹的出资，每笔认筹最多计到认筹额")
    pledge_outstanding: MoneyOut = Field(description="尚未兑现的认筹额（认筹 − 实缴）")
    pledges_open: int = Field(description="尚未全部兑现的认筹笔数")
    contributors: int
    households_in_scope: int
    participation_rate: float | None = Field(description="出资户数 / 范围内户数，0–1 的比例")
    by_category: list[CategoryOut]
    ledger: LedgerHeadOut


class ProjectOut(BaseModel):
    code: str
    community: str
    title: str
    description: str
    households_in_scope: int
    stage: str
    spending_gate: Literal["resolution", "waived"]
    countersign_over: MoneyOut | None = None
    award_policy: str | None = Field(default=None, description="项目适用的以奖代补政策编号")
    created_at: datetime
    budget_lines: list[BudgetLineOut]
    summary: SummaryOut | None = None


class ProjectPage(BaseModel):
    items: list[ProjectOut]
    next: str | None


class ContributorOut(BaseModel):
    id: uuid.UUID
    name: str = Field(description="公开输出中为脱敏姓名（张*）、匿名或已注销")
    household: str | None = Field(description="公开输出只到楼栋（3栋）")
    type: ContributorType
    anonymous: bool


class PostingOut(BaseModel):
    account: str
    side: Literal["debit", "credit"]
    amount: MoneyOut


class ReceiptOut(BaseModel):
    seq: int
    leaf_hash: str
    tree_size: int
    root_hash: str


class SignerOut(BaseModel):
    role: str
    name: str


class WarningOut(BaseModel):
    code: str
    message: str


class EntryOut(BaseModel):
    project: str
    seq: int
    kind: EntryKind
    amount: MoneyOut
    occurred_on: date
    recorded_at: datetime
    memo: str | None
    contributor: ContributorOut | None
    channel: str | None
    receipt_no: str | None
    grantor: str | None
    document_no: str | None
    payee: str | None
    category: str | None
    invoice_no: str | None
    description: str | None
    reason: str | None
    payer: str | None = Field(default=None, description="其他收入的付款方")
    postings: list[PostingOut]
    reverses: int | None
    reversed_by: int | None
    maker: SignerOut | None = None
    checker: SignerOut | None = None
    attachments: list[str] = []
    pledge: int | None = Field(default=None, description="本笔出资所兑现的认筹的记账序号")
    award: dict[str, int | str] | None = Field(
        default=None, description="以奖代补拨款所引用的奖补核算（政策、版本、各项输入与应奖金额，分为单位）"
    )
    warnings: list[WarningOut] = Field(
        default=[], description="记账时的提示（如超额兑现认筹）；只出现在记账的响应中，记录照常入账"
    )
    document: str = Field(description="RFC 8785 canonical JSON the leaf hash commits to")
    leaf_hash: str
    receipt: ReceiptOut | None


class EntryPage(BaseModel):
    items: list[EntryOut]
    next: int | None = Field(description="pass as after_seq for the next page; null on the last page")


class PledgeOut(BaseModel):
    seq: int = Field(description="认筹的记账序号")
    occurred_on: date
    contributor: ContributorOut
    amount: MoneyOut = Field(description="认筹额")
    paid: MoneyOut = Field(description="实缴：指明兑现本认筹的出资，最多计到认筹额")
    outstanding: MoneyOut = Field(description="未缴")
    excess: MoneyOut = Field(description="超出认筹额（或认筹冲正后）的出资，按普通出资计")
    status: Literal["open", "fulfilled", "reversed"]
    fulfilled_by: list[int] = Field(description="兑现本认筹且未被冲正的出资的记账序号")


class PledgeTotalsOut(BaseModel):
    pledged: MoneyOut
    paid: MoneyOut
    outstanding: MoneyOut
    excess: MoneyOut
    count: int
    open: int


class PledgePage(BaseModel):
    totals: PledgeTotalsOut = Field(description="全项目的认筹/实缴（冲正的认筹不计）")
    items: list[PledgeOut]
    next: str | None


class EntryBatchOut(BaseModel):
    items: list[EntryOut]
    tree_size: int
    root_hash: str


class InclusionOut(BaseModel):
    seq: int
    size: int
    leaf_hash: str
    root_hash: str
    proof: list[str]


class ConsistencyOut(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    from_: int = Field(alias="from", serialization_alias="from")
    to: int
    from_root: str
    to_root: str
    proof: list[str]


class VerifyOut(BaseModel):
    ok: bool
    size: int
    root_hash: str
    first_bad_seq: int | None
    unbalanced_accounts: list[str] = Field(default=[], description="余额与分录合计不符的科目")
    contributor_totals_ok: bool = Field(default=True, description="各出资人累计（已出资、已退款等）与记录重算一致")
    pledge_totals_ok: bool = Field(default=True, description="各笔认筹的认筹额与实缴额与记录重算一致")
    checked_at: datetime = Field(description="这次重算的时间：树大小不变时沿用上次结果，有新记录后重算")


class TokenOut(BaseModel):
    id: uuid.UUID
    name: str
    role: str
    community: str | None
    created_at: datetime
    revoked_at: datetime | None


class TokenCreatedOut(TokenOut):
    token: str = Field(description="shown only in this response; store it now")


class DecisionOut(BaseModel):
    id: int
    project: str
    stage: str
    held_on: date
    body: str
    eligible: int | None
    attendees: int | None
    votes_for: int | None
    votes_against: int | None
    votes_abstain: int | None
    summary: str
    minutes_sha256: str | None
    notice_days: int | None
    notice_end: date | None
    recorded_at: datetime


class DecisionList(BaseModel):
    items: list[DecisionOut]
    next: str | None = None


# -- 共评 (evaluation) and 进展公开 (progress notes) --------------------------------------------

Sha256Hex = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
TallyCount = Annotated[int, Field(ge=0, le=100_000), Integral]
ScoreCounts = dict[str, int]  # {"1": n, …, "5": n}


class EvaluationCodesIn(RequestBody):
    count: Annotated[int, Field(ge=1, le=1000), Integral] = Field(description="本批份数（一户一份），1–1000")


class EvaluationCodesOut(BaseModel):
    project: str
    batch: int = Field(description="本项目的第几批")
    count: int
    issued_total: int = Field(description="本项目已发放的评价码总数（含本批）")
    codes: list[str] = Field(description="评价码（只在此响应和打印的评价卡上出现，服务只保存其哈希）")
    slips_pdf_url: str = Field(description="可打印的评价卡 PDF（每张一个二维码）；只有发码的令牌能取")
    issued_at: datetime


class EvaluationIn(RequestBody):
    household_code: Annotated[str, Field(min_length=1, max_length=40)] = Field(description="评价卡上的评价码")
    score: Annotated[int, Field(ge=1, le=5)]
    comment: Annotated[str, Field(max_length=500)] | None = None


class EvaluationOut(BaseModel):
    id: int
    project: str
    score: int
    comment: str | None = Field(description="公开输出中手机号、身份证号已遮盖")
    created_at: datetime


class TallyCountsIn(RequestBody):
    one: TallyCount = Field(0, alias="1")
    two: TallyCount = Field(0, alias="2")
    three: TallyCount = Field(0, alias="3")
    four: TallyCount = Field(0, alias="4")
    five: TallyCount = Field(0, alias="5")

    def as_tuple(self) -> tuple[int, int, int, int, int]:
        return (self.one, self.two, self.three, self.four, self.five)


class TallyIn(RequestBody):
    held_on: date
    method: Literal["questionnaire", "meeting"]
    counts: TallyCountsIn = Field(description='各分数的票数：{"1": n, …, "5": n}')
    sheet_sha256: Sha256Hex = Field(description="统计表（已上传附件）的 SHA-256")


class TallyOut(BaseModel):
    id: int
    project: str
    held_on: date
    method: Literal["questionnaire", "meeting"]
    counts: ScoreCounts
    total: int
    sheet_sha256: str
    recorded_at: datetime


class ScoreSummaryOut(BaseModel):
    total: int
    average: float | None = Field(description="平均分，两位小数")
    satisfied_rate: float | None = Field(description="满意率（4、5 分的比例），0–1，四位小数")


class EvaluationCommentOut(BaseModel):
    id: int
    score: int
    comment: str
    created_at: datetime


class EvaluationResultsOut(BaseModel):
    project: str
    accepting: bool = Field(description="现在是否受理评价（验收后、结项前）")
    online: ScoreCounts = Field(description="线上（评价码）各分数的份数")
    paper: ScoreCounts = Field(description="线下（问卷、共评会）各分数的份数")
    counts: ScoreCounts = Field(description="线上线下合计")
    total: int
    average: float | None
    satisfied_rate: float | None
    by_source: dict[str, ScoreSummaryOut] = Field(description="online、paper 各自的份数、平均分、满意率")
    codes_issued: int
    tallies: list[TallyOut]
    comments: list[EvaluationCommentOut] = Field(description="意见，新的在前（分页：cursor）")
    next: str | None = None


class ProgressIn(RequestBody):
    happened_on: date
    text: Annotated[str, Field(min_length=1, max_length=2000)]
    attachments: Annotated[list[Sha256Hex], Field(max_length=10)] = []


class ProgressOut(BaseModel):
    id: int
    project: str
    happened_on: date
    text: str
    attachments: list[str] = Field(description="照片、文件的 SHA-256（公开：/api/v1/attachments/{sha256}）")
    document: str = Field(description="RFC 8785 JSON：日期、内容与附件摘要")
    document_sha256: str
    posted_at: datetime


class ProgressPage(BaseModel):
    items: list[ProgressOut]
    next: str | None


class FieldErrorOut(BaseModel):
    field: str
    message: str


class Problem(BaseModel):
    """RFC 9457 problem details."""

    type: str
    title: str
    status: int
    detail: str
    code: str
    errors: list[FieldErrorOut]


class ReplicaOut(BaseModel):
    name: str
    state: Literal["unknown", "ok", "lagging", "down", "not_standby"]
    lag_s: float | None = Field(description="how far behind the primary (seconds, to the check interval)")
    replay_lsn: str | None = None
    reads: int = Field(description="public reads routed to it by this process")


class HealthOut(BaseModel):
    status: str
    revision: str | None = None
    head: str | None = None
    replicas: list[ReplicaOut] | None = Field(default=None, description="LEDGER_READ_DATABASE_URL 的只读副本")


# -- disclosures (公示) -------------------------------------------------------------------------


class DisclosureIn(RequestBody):
    period_start: date
    period_end: date
    notice_days: Annotated[int, Field(ge=1, le=90), Integral] = 7
    title: Annotated[str, Field(min_length=1, max_length=200)] | None = None


class PreviousSheetOut(BaseModel):
    id: int
    sheet_number: int
    tree_size: int
    root_hash: str


class DisclosureOut(BaseModel):
    id: int
    project: str
    sheet_number: int
    title: str
    period_start: date
    period_end: date
    tree_size: int
    root_hash: str
    previous: PreviousSheetOut | None
    pdf_sha256: str
    pdf_url: str
    notice_days: int
    notice_start: date
    notice_end: date
    status: Literal["公示中", "公示期满"]
    published_at: datetime
    checkpoint_url: str = Field(default="", description="C2SP 检查点（见证人对其签名）")
    cosignatures: list[CosignatureOut] = Field(default=[], description="见证人的签名")


class DisclosurePage(BaseModel):
    items: list[DisclosureOut]
    next: str | None


class ObjectionIn(RequestBody):
    message: Annotated[str, Field(min_length=1, max_length=2000)]
    contact: Annotated[str, Field(max_length=200)] | None = None


class ObjectionResponseIn(RequestBody):
    message: Annotated[str, Field(min_length=1, max_length=2000)]


class ObjectionResponseOut(BaseModel):
    id: int
    objection_id: int
    message: str
    created_at: datetime


class ObjectionOut(BaseModel):
    id: int
    disclosure_id: int
    message: str
    created_at: datetime
    responses: list[ObjectionResponseOut]


class ObjectionList(BaseModel):
    items: list[ObjectionOut]
    next: str | None = None


# -- vouchers and attachments --------------------------------------------------------------------

VoucherIn = Annotated[ExpenditureIn | RefundIn, Field(discriminator="kind")]


class VoucherRequest(RootModel[VoucherIn]):
    """The entry the voucher asks for: an expenditure or a refund."""


class ApproveIn(RequestBody):
    """Approval needs no fields: the voucher says what is recorded (an empty body is accepted too)."""


class RejectIn(RequestBody):
    reason: Annotated[str, Field(min_length=1, max_length=500)]


class VoucherOut(BaseModel):
    id: int
    project: str
    status: Literal["pending", "approved", "rejected"]
    kind: Literal["expenditure", "refund"]
    amount: MoneyOut
    occurred_on: date
    payee: str | None
    category: str | None
    invoice_no: str | None
    memo: str | None
    contributor: str | None = Field(description="退款的出资人（仅本社区报账员、审核人可见）")
    attachments: list[str]
    document_sha256: str
    submitted_by: SignerOut
    submitted_at: datetime
    checked_by: SignerOut | None
    decided_at: datetime | None
    reason: str | None
    entry_seq: int | None = Field(description="审核通过后所记的记账序号")
    entry: EntryOut | None


class VoucherPage(BaseModel):
    items: list[VoucherOut]
    next: str | None


class AttachmentOut(BaseModel):
    sha256: str
    media_type: Literal["image/jpeg", "image/png", "application/pdf"]
    size: int
    url: str


# -- awards (以奖代补) ---------------------------------------------------------------------------

RATE_PATTERN = r"^(0|[1-9][0-9]?)(\.[0-9]{1,4})?$"
RATIO_PATTERN = r"^(0(\.[0-9]{1,4})?|1(\.0{1,4})?)$"


def _decimal(pattern: str, what: str) -> Any:
    compiled = re.compile(pattern)

    def parse(value: Any) -> Decimal:
        if not isinstance(value, str) or not compiled.fullmatch(value):
            raise ValueError(f'{what}须为字符串形式的小数，最多四位小数，如 "0.5"（不接受 JSON 数字）')
        return Decimal(value)

    return parse


Rate = Annotated[
    Decimal,
    BeforeValidator(_decimal(RATE_PATTERN, "奖补比例")),
    WithJsonSchema({"type": "string", "pattern": RATE_PATTERN, "examples": ["0.5"]}),
]
Ratio = Annotated[
    Decimal,
    BeforeValidator(_decimal(RATIO_PATTERN, "比例")),
    WithJsonSchema({"type": "string", "pattern": RATIO_PATTERN, "examples": ["0.3"]}),
]
RatioOut = Annotated[str, Field(pattern=r"^[0-9]+\.[0-9]{4}$", examples=["0.3000"])]


class AwardPolicyIn(RequestBody):
    code: Code
    name: Text100
    issuer: Text200
    document_no: Text100 | None = None
    rate: Rate
    cap: BudgetAmount | None = None
    min_participation: Ratio = Decimal(0)
    min_satisfaction: Ratio = Decimal(0)


class AwardPolicyAssignIn(RequestBody):
    policy: Code


class AwardPolicyOut(BaseModel):
    code: str
    version: int = Field(description="同一编号的第几版；修改政策即发布新一版，旧版永久保留")
    name: str
    issuer: str
    document_no: str | None
    rate: RatioOut
    cap: MoneyOut | None
    min_participation: RatioOut
    min_satisfaction: RatioOut
    created_at: datetime


class AwardPolicyPage(BaseModel):
    items: list[AwardPolicyOut]
    next: str | None


class AwardOut(BaseModel):
    policy: AwardPolicyOut | None = Field(description="项目适用的政策（该编号的最新一版）；未适用时为 null")
    crowdfunded: MoneyOut = Field(description="居民众筹净额：居民和住户出资减退款")
    residents_paid: MoneyOut
    residents_refunded: MoneyOut
    others_contributed: MoneyOut = Field(description="企业、单位、党组织的出资（不计入）")
    contributors: int
    households_in_scope: int
    participation_rate: RatioOut | None = Field(description="出资户数 ÷ 范围内户数，四位小数，舍去其后")
    participation_met: bool
    satisfied: int | None
    evaluated: int | None
    satisfied_rate: RatioOut | None
    satisfaction_met: bool
    eligible: bool
    proportional: MoneyOut = Field(description="居民众筹净额 × 比例，不足一分舍去")
    cap: MoneyOut | None
    award: MoneyOut = Field(description="应奖金额")
    granted: MoneyOut = Field(description="注明依据本核算的以奖代补拨款（冲正已扣除）")
    remaining: MoneyOut = Field(description="应奖 − 已拨付（负数为超拨）")
    steps: list[str] = Field(description="核算的每一步，中文")


# -- witnesses (见证) ---------------------------------------------------------------------------

WitnessKind = Literal["residents_committee", "owners_committee", "supervisory_committee", "street"]


class WitnessIn(RequestBody):
    name: Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[^\s+]+$")]
    public_key: Annotated[str, Field(min_length=40, max_length=300)] = Field(
        description="32 字节 Ed25519 公钥的 base64，或 ledger witness keygen 给出的 vkey"
    )
    kind: WitnessKind | None = None


class WitnessOut(BaseModel):
    name: str
    kind: WitnessKind | None
    kind_label: str | None = Field(description="居委会、业委会、监督委员会、街道")
    public_key: str = Field(description="32 字节 Ed25519 公钥，base64")
    key_id: str = Field(description="签名行中的密钥编号：SHA-256(名称 ‖ 0x0A ‖ 0x01 ‖ 公钥) 的前 4 字节，十六进制")
    vkey: str = Field(description="C2SP signed-note 验证密钥")
    created_at: datetime


class WitnessList(BaseModel):
    items: list[WitnessOut]


class CosignatureIn(RequestBody):
    witness: Annotated[str, Field(min_length=1, max_length=100)]
    signature: Annotated[str, Field(min_length=80, max_length=100)] = Field(
        description="对检查点三行文本的 Ed25519 签名（64 字节，base64），或签名行中的 68 字节"
    )


class CosignatureOut(BaseModel):
    disclosure_id: int
    witness: WitnessOut
    signature: str = Field(description="64 字节 Ed25519 签名，base64")
    line: str = Field(description="C2SP signed-note 签名行：— 名称 base64(密钥编号 ‖ 签名)")
    checkpoint: str = Field(description="所签的检查点文本")
    created_at: datetime


class CosignatureList(BaseModel):
    items: list[CosignatureOut]
