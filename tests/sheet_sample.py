"""A synthetic but realistic sheet, for tests, the benchmark and previews of the template.

Every person here is invented; names are already masked as the real read side masks them. The
data is deterministic for a given ``seed`` and internally consistent: period totals are the sums
of the rows, cumulative figures add a previous period, and the balance is the cash identity.
"""

from __future__ import annotations

import hashlib
import random
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from decimal import Decimal

from reports.sheet_model import (
    BudgetLineRow,
    ContributionRow,
    DecisionRow,
    EntryRow,
    ExpenditureRow,
    GrantRow,
    InKindRow,
    MoneyTotals,
    PreviousSheet,
    RefundRow,
    SheetModel,
    SheetSummary,
    VerificationBlock,
)

PERIOD_START = date(2026, 11, 1)
PERIOD_END = date(2026, 11, 30)
PUBLISHED_ON = date(2026, 12, 1)

_SURNAMES = "张王李赵刘陈杨黄周吴徐孙胡朱高林何郭马罗梁宋郑谢韩唐冯于董萧程曹袁邓许傅沈曾彭吕苏卢蒋蔡贾丁魏"
_COMPOUND_SURNAMES = ("欧阳", "司马", "诸葛", "上官")
_ORGANISATIONS = ("锦绣花园业主委员会", "黄石市锦程物业服务有限公司", "团城山街道第二党支部", "锦绣便民超市")
_CHANNELS = ("微信", "微信", "微信", "现金", "现金", "支付宝", "银行转账")
_PERSON_AMOUNTS_YUAN = (50, 100, 100, 200, 200, 200, 300, 500, 500, 800, 1000, 2000)
_PAYEES = (
    ("黄石市通达沥青工程有限公司", "材料费"),
    ("下陆区顺发建材经营部", "材料费"),
    ("湖北楚安市政工程有限公司", "人工费"),
    ("黄石市绿源环卫服务有限公司", "其他"),
    ("黄石市恒力机械设备租赁有限公司", "设备租赁"),
)
# Longer than the payee column: printed on a row of its own, wrapped.
_LONG_PAYEE = "黄石经济技术开发区·铁山区锦绣花园片区路面改造联合施工项目部（临时账户）"
_IN_KIND = (("义务劳动", 4), ("清运建筑垃圾", 3), ("协助摊铺沥青", 6), ("夜间看护施工现场", 8))
_REFUND_MEMOS = ("重复缴纳，原路退回", "搬离小区，申请退回出资", "认筹超额部分退回")
_CATEGORIES = ("材料费", "人工费", "设备租赁", "其他")


def masked_person(rng: random.Random) -> str:
    surname = rng.choice(_COMPOUND_SURNAMES) if rng.random() < 0.12 else rng.choice(_SURNAMES)
    return surname + "*" * rng.choice((1, 2, 2))


def _building(rng: random.Random) -> str:
    return f"{rng.randint(1, 18)}栋"


@dataclass
class _Ledger:
    """Running state while inventing entries."""

    rng: random.Random
    seq: int
    cash_fen: int
    contributions: list[ContributionRow] = field(default_factory=list)
    grants: list[GrantRow] = field(default_factory=list)
    expenditures: list[ExpenditureRow] = field(default_factory=list)
    in_kind: list[InKindRow] = field(default_factory=list)
    refunds: list[RefundRow] = field(default_factory=list)
    receipt_no: int = 236
    hours: int = 0
    reversed_seqs: set[int] = field(default_factory=set)

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq - 1

    def contribution(self, day: date, name: str | None = None, amount_yuan: int | None = None) -> None:
        rng = self.rng
        organisation = name is None and rng.random() < 0.04
        if name is None:
            name = (
                rng.choice(_ORGANISATIONS) if organisation else ("匿名" if rng.random() < 0.03 else masked_person(rng))
            )
        if amount_yuan is None:
            amount_yuan = rng.choice((5000, 8000, 10000)) if organisation else rng.choice(_PERSON_AMOUNTS_YUAN)
        self.receipt_no += 1
        row = ContributionRow(
            seq=self.next_seq(),
            occurred_on=day,
            amount_fen=amount_yuan * 100,
            contributor_name=name,
            building="" if organisation else _building(rng),
            channel_label=rng.choice(_CHANNELS),
            receipt_no=f"SJ-{self.receipt_no:04d}",
        )
        self.contributions.append(row)
        self.cash_fen += row.amount_fen

    def grant(self, day: date, grantor: str, document_no: str, amount_yuan: int) -> None:
        row = GrantRow(
            seq=self.next_seq(), occurred_on=day, amount_fen=amount_yuan * 100, grantor=grantor, document_no=document_no
        )
        self.grants.append(row)
        self.cash_fen += row.amount_fen

    def expenditure(self, day: date, payee: str | None = None, category: str | None = None) -> None:
        rng = self.rng
        if payee is None:
            if rng.random() < 0.15:
                payee, category = masked_person(rng), "人工费"  # a casual worker, masked
            else:
                payee, category = rng.choice(_PAYEES)
        top_yuan = 12000 if category in ("材料费", "人工费") else 1500
        amount_fen = min(rng.randint(200, top_yuan) * 100 + rng.choice((0, 50, 35)), self.cash_fen)
        if amount_fen <= 0:
            self.contribution(day)
            return
        row = ExpenditureRow(
            seq=self.next_seq(),
            occurred_on=day,
            amount_fen=amount_fen,
            payee=payee,
            category_label=category or "其他",
            invoice_no=f"{rng.randint(0, 99999999):08d}",
            approver_name=rng.choice(("李*", "王**", "陈*")),
        )
        self.expenditures.append(row)
        self.cash_fen -= amount_fen

    def in_kind_row(self, day: date) -> None:
        rng = self.rng
        work, hours = rng.choice(_IN_KIND)
        self.hours += hours
        self.in_kind.append(
            InKindRow(
                seq=self.next_seq(),
                occurred_on=day,
                amount_fen=hours * 100 * 100,  # 100 yuan an hour
                contributor_name=masked_person(rng),
                building=_building(rng),
                description=f"{work} {hours} 小时",
            )
        )

    def refund(self, day: date) -> None:
        candidates = [c for c in self.contributions if not c.is_reversal and c.seq not in self.reversed_seqs]
        original = self.rng.choice(candidates)
        amount_fen = min(original.amount_fen, self.cash_fen)
        row = RefundRow(
            seq=self.next_seq(),
            occurred_on=day,
            amount_fen=amount_fen,
            contributor_name=original.contributor_name,
            building=original.building,
            memo=self.rng.choice(_REFUND_MEMOS),
        )
        self.refunds.append(row)
        self.cash_fen -= amount_fen

    def reverse(self, day: date, original: EntryRow, reason: str) -> None:
        """红字冲销 of ``original``: same kind, same fields, negative amount, its own seq."""
        self.reversed_seqs.add(original.seq)
        row = replace(
            original,
            seq=self.next_seq(),
            occurred_on=day,
            amount_fen=-original.amount_fen,
            is_reversal=True,
            reverses_seq=original.seq,
            reversal_reason=reason,
        )
        if isinstance(row, ContributionRow):
            self.contributions.append(row)
            self.cash_fen += row.amount_fen
        elif isinstance(row, ExpenditureRow):
            self.expenditures.append(row)
            self.cash_fen -= row.amount_fen
        else:
            raise ValueError(f"the sample reverses contributions and expenditures, not {type(row).__name__}")

    def reverse_something(self, day: date) -> None:
        """Reverse an earlier contribution (重复记账) or, now and then, a spending (发票作废)."""
        spendings = [e for e in self.expenditures if not e.is_reversal and e.seq not in self.reversed_seqs]
        receipts = [c for c in self.contributions if not c.is_reversal and c.seq not in self.reversed_seqs]
        if spendings and self.rng.random() < 0.3:
            self.reverse(day, self.rng.choice(spendings), "发票作废，重新开具")
        elif receipts and (candidate := self.rng.choice(receipts)).amount_fen <= self.cash_fen:
            self.reverse(day, candidate, "重复记账")
        else:
            self.contribution(day)


def _fake_root(label: str) -> str:
    return hashlib.sha256(label.encode()).hexdigest()


def _decisions() -> list[DecisionRow]:
    return [
        DecisionRow(held_on=date(2026, 8, 20), stage_label="提议", body="社区党委", summary="居民代表联名提议路面刷黑"),
        DecisionRow(held_on=date(2026, 8, 26), stage_label="商议", body="社区“两委”联席会", eligible=11, attendees=10),
        DecisionRow(held_on=date(2026, 8, 30), stage_label="审议", body="社区党员大会", eligible=86, attendees=71),
        DecisionRow(
            held_on=date(2026, 9, 4),
            stage_label="决议",
            body="居民代表大会",
            eligible=60,
            attendees=50,
            votes_for=45,
            votes_against=3,
            votes_abstain=2,
            summary="通过实施方案、预算 120,000.00 元及众筹办法",
        ),
        DecisionRow(held_on=date(2026, 9, 5), stage_label="决议公开", body="社区居委会", summary="公示 7 天，无异议"),
        DecisionRow(held_on=date(2026, 9, 15), stage_label="实施", body="项目实施小组", summary="签订施工合同，开工"),
    ]


def sample_sheet(entries: int = 120, *, first_seq: int = 171, seed: int = 2026, waived: bool = False) -> SheetModel:
    """A sheet with ``entries`` detail rows numbered ``first_seq`` on (sheet 1 when that is 1).

    From 12 entries on it always holds: contributions by 张* and 欧阳**, a grant, an enterprise
    payee and a payee too long for one line, in-kind work, a refund, and a reversal (冲正) of an
    earlier contribution followed by its corrected entry.
    """
    rng = random.Random(seed)
    first_sheet = first_seq == 1
    previous_cumulative = (
        MoneyTotals(contributed_fen=0, granted_fen=0, other_income_fen=0, spent_fen=0, refunded_fen=0)
        if first_sheet
        else MoneyTotals(
            contributed_fen=3_642_000, granted_fen=0, other_income_fen=120_000, spent_fen=3_025_035, refunded_fen=0
        )
    )
    opening_cash = previous_cumulative.income_fen - previous_cumulative.spent_fen - previous_cumulative.refunded_fen
    ledger = _Ledger(rng=rng, seq=first_seq, cash_fen=opening_cash)
    days = (PERIOD_END - PERIOD_START).days + 1

    def day_of(index: int) -> date:
        return PERIOD_START + timedelta(days=index * days // max(entries, 1))

    scripted = 12
    if entries >= scripted:
        ledger.contribution(day_of(0), "张*", 200)
        ledger.contribution(day_of(1), "欧阳**", 500)
        ledger.grant(day_of(2), "下陆区住房和城乡建设局", "下住建〔2026〕12号", 50_000)
        ledger.expenditure(day_of(3), "黄石市通达沥青工程有限公司", "材料费")
        ledger.contribution(day_of(4), "王*", 2000)  # meant to be 200 yuan: reversed below
        ledger.in_kind_row(day_of(5))
        ledger.reverse(day_of(6), ledger.contributions[-1], "金额录入错误，应为 200 元")
        ledger.contribution(day_of(7), "王*", 200)
        ledger.expenditure(day_of(8), _LONG_PAYEE, "人工费")
        ledger.contribution(day_of(9), "司马**", 300)
        ledger.refund(day_of(10))
        ledger.contribution(day_of(11), "锦绣花园业主委员会", 10_000)
    for index in range(scripted if entries >= scripted else 0, entries):
        draw = rng.random()
        day = day_of(index)
        if draw < 0.72:
            ledger.contribution(day)
        elif draw < 0.84:
            ledger.expenditure(day)
        elif draw < 0.93:
            ledger.in_kind_row(day)
        elif draw < 0.96 and ledger.contributions:
            ledger.refund(day)
        elif draw < 0.97:
            ledger.grant(day, "团城山街道办事处", f"团办〔2026〕{rng.randint(1, 60)}号", rng.choice((5000, 10000)))
        else:
            ledger.reverse_something(day)
    assert ledger.seq == first_seq + entries

    period = MoneyTotals(
        contributed_fen=sum(r.amount_fen for r in ledger.contributions),
        granted_fen=sum(r.amount_fen for r in ledger.grants),
        other_income_fen=0,
        spent_fen=sum(r.amount_fen for r in ledger.expenditures),
        refunded_fen=sum(r.amount_fen for r in ledger.refunds),
    )
    cumulative = MoneyTotals(
        contributed_fen=previous_cumulative.contributed_fen + period.contributed_fen,
        granted_fen=previous_cumulative.granted_fen + period.granted_fen,
        other_income_fen=previous_cumulative.other_income_fen,
        spent_fen=previous_cumulative.spent_fen + period.spent_fen,
        refunded_fen=previous_cumulative.refunded_fen + period.refunded_fen,
    )
    # Earlier spending by category, then this period's.
    spent_by_category: Counter[str] = Counter()
    if not first_sheet:
        spent_by_category.update({"材料费": 2_120_000, "人工费": 805_035, "其他": 100_000})
    for row in ledger.expenditures:
        spent_by_category[row.category_label] += row.amount_fen
    budgets = {"材料费": 6_000_000, "人工费": 4_000_000, "设备租赁": 1_500_000, "其他": 500_000}
    sources = {"材料费": "众筹", "人工费": "以奖代补", "设备租赁": "众筹", "其他": "其他"}
    budget_lines = [
        BudgetLineRow(category_label=c, source_label=sources[c], budget_fen=budgets[c], spent_fen=spent_by_category[c])
        for c in _CATEGORIES
    ]
    people = {(r.contributor_name, r.building) for r in ledger.contributions}
    contributors = len(people) + (0 if first_sheet else 170)
    households = max(400, contributors)
    pledged_fen = 5_200_000 + entries * 10_000
    summary = SheetSummary(
        period=period,
        cumulative=cumulative,
        balance_fen=cumulative.income_fen - cumulative.spent_fen - cumulative.refunded_fen,
        budget_fen=sum(budgets.values()),
        in_kind_value_fen=(0 if first_sheet else 4_200_000) + sum(r.amount_fen for r in ledger.in_kind),
        in_kind_hours=Decimal((0 if first_sheet else 42) + ledger.hours),
        pledged_fen=pledged_fen,
        pledge_paid_fen=min(pledged_fen, cumulative.contributed_fen),
        contributors=contributors,
        households_in_scope=households,
        participation_rate=Decimal(contributors) / Decimal(households),
        grant_note="下陆区住房和城乡建设局 下住建〔2026〕12号" if ledger.grants else "",
    )
    sheet_number = 1 if first_sheet else 2
    tree_size = ledger.seq - 1
    verify_base = "https://gongkai.example.org/p/jinxiu-road-2026"
    return SheetModel(
        title="锦绣花园小区路面刷黑项目资金收支公示",
        community_name="锦绣花园社区",
        street="团城山街道",
        project_code="jinxiu-road-2026",
        project_title="锦绣花园小区路面刷黑（共同缔造）",
        sheet_number=sheet_number,
        period_start=PERIOD_START,
        period_end=PERIOD_END,
        published_on=PUBLISHED_ON,
        notice_start=PUBLISHED_ON,
        notice_end=PUBLISHED_ON + timedelta(days=6),
        notice_days=7,
        spending_gate_waived=waived,
        summary=summary,
        budget_lines=budget_lines,
        contributions=ledger.contributions,
        grants=ledger.grants,
        expenditures=ledger.expenditures,
        in_kind=ledger.in_kind,
        refunds=ledger.refunds,
        decisions=_decisions(),
        verification=VerificationBlock(
            tree_size=tree_size,
            root_hash_hex=_fake_root(f"{seed}:{tree_size}"),
            previous=None
            if first_sheet
            else PreviousSheet(sheet_number=1, tree_size=first_seq - 1, root_hash_hex=_fake_root(f"{seed}:prev")),
            verify_url=f"{verify_base}/verify?size={tree_size}",
        ),
        objection_contact="锦绣花园社区居委会（电话 0714-6288123，工作日 8:30–17:30）",
        public_url=verify_base,
    )
