"""A small, realistic demo: one community, two projects, a decision trail and some money."""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Awaitable, Callable
from datetime import date, datetime, timedelta
from decimal import Decimal

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from ledger import tree
from ledger.awards import NewPolicy, create_policy, project_award_by_code
from ledger.canonical import SHANGHAI, Signer
from ledger.communities import NewCommunity, create_community
from ledger.contributors import ContributorRef
from ledger.decisions import DecisionDraft, record_decision
from ledger.drafts import EntryDraft
from ledger.entries import append_entries
from ledger.entry_reads import get_entry
from ledger.projects import BudgetLine, NewProject, create_project
from ledger.tables import communities
from ledger.vouchers import Actor, approve_voucher, submit_voucher

log = logging.getLogger(__name__)

SURNAMES = "张王李赵刘陈杨黄周吴徐孙胡朱高林何郭马罗"
GIVEN = ["伟", "芳", "娜", "秀英", "敏", "静", "丽", "强", "磊", "军", "洋", "勇", "艳", "杰", "娟", "涛", "明", "超"]


# Publishes a sheet (project code, period start, period end); the API passes one that renders the
# PDF (the ledger never imports a renderer). Two sheets, entries between them: the resident pages
# then show a sheet, its QR target and a real history check.
PublishSheet = Callable[[str, date, date], Awaitable[object]]

# The demo's two signers: no token stands behind them, only the names the documents carry.
DEMO_MAKER = Actor(id="demo-treasurer", signer=Signer("treasurer", "王会计"))
DEMO_CHECKER = Actor(id="demo-auditor", signer=Signer("auditor", "李监督"))


async def _countersigned(engine: AsyncEngine, project: str, draft: EntryDraft) -> int:
    """Spending as the service records it: a voucher submitted, then approved. Returns the seq."""
    stored, _ = await submit_voucher(engine, project, draft, DEMO_MAKER, render=lambda v: v.id)
    result = await approve_voucher(engine, json.loads(stored.body), DEMO_CHECKER, render=lambda v, e: e.seq)
    return result.entries[0].seq


async def load_demo(engine: AsyncEngine, *, defer_later: bool = False) -> bool:
    """Load the demo if the database has no community yet. Returns whether it loaded. With
    ``defer_later`` the road project's later entries are left to :func:`load_demo_later`."""
    async with engine.connect() as conn:
        if (await conn.execute(select(func.count()).select_from(communities))).scalar_one():
            return False
    today = datetime.now(SHANGHAI).date()
    rng = random.Random(2026)
    await create_community(
        engine, NewCommunity(code="jinxiu", name="锦绣花园小区", district="下陆区团城山街道", households=1200)
    )
    # 1 yuan of award for each yuan residents raise, up to 100,000, once 5% of households take part.
    await create_policy(
        engine,
        NewPolicy(
            code="xialu-2026",
            name="下陆区共同缔造以奖代补实施办法",
            issuer="下陆区住房和城乡建设局",
            document_no="下住建〔2026〕3号",
            rate=Decimal(1),
            cap_fen=10_000_000,
            min_participation=Decimal("0.05"),
        ),
        created_by="demo",
    )
    await create_project(
        engine,
        NewProject(
            code="jinxiu-road-2026",
            community_code="jinxiu",
            title="小区路面刷黑",
            description="3栋至8栋之间主干道沥青刷黑，居民众筹与以奖代补共同出资。",
            households_in_scope=400,
            budget_lines=[
                BudgetLine("materials", "沥青材料", "crowdfunding", 6_000_000),
                BudgetLine("labour", "人工费", "grant", 4_000_000),
                BudgetLine("signage", "标线与标识", "collective", 500_000),
            ],
            # Every expenditure and refund is countersigned (经办人 and 审核人), as on paper.
            countersign_over_fen=0,
            award_policy="xialu-2026",
            created_by="demo",
        ),
    )
    start = today - timedelta(days=60)
    trail = [
        DecisionDraft("proposal", start, "居民议事会", summary="居民提议对主干道进行刷黑"),
        DecisionDraft("deliberation", start + timedelta(days=3), "社区两委会议", eligible=9, attendees=8, votes_for=8),
        DecisionDraft(
            "review",
            start + timedelta(days=6),
            "社区党员大会",
            eligible=80,
            attendees=61,
            votes_for=58,
            votes_against=1,
            votes_abstain=2,
        ),
        DecisionDraft(
            "resolution",
            start + timedelta(days=10),
            "居民代表大会",
            eligible=60,
            attendees=50,
            votes_for=45,
            votes_against=3,
            votes_abstain=2,
            summary="通过路面刷黑方案及众筹办法",
        ),
        DecisionDraft("announcement", start + timedelta(days=11), "决议公开", notice_days=7),
        DecisionDraft("start", start + timedelta(days=19), "开工", summary="施工单位进场"),
    ]
    for decision in trail:
        await record_decision(engine, "jinxiu-road-2026", decision, recorded_by="demo", render=lambda d: d.id)

    drafts: list[EntryDraft] = []
    for i in range(36):
        name = rng.choice(SURNAMES) + rng.choice(GIVEN)
        household = f"{rng.randint(3, 8)}栋{rng.randint(1, 3)}单元{rng.randint(1, 6)}0{rng.randint(1, 4)}"
        drafts.append(
            EntryDraft(
                kind="contribution",
                occurred_on=start + timedelta(days=12 + i % 10),
                amount_fen=rng.choice([10_000, 20_000, 20_000, 50_000, 100_000]),
                contributor=ContributorRef(name=name, household=household, anonymous=i % 11 == 5),
                channel=rng.choice(["wechat", "cash", "alipay"]),
                receipt_no=f"SJ-{i + 1:04d}",
                memo="路面刷黑众筹",
            )
        )
    drafts += [
        EntryDraft(
            kind="contribution",
            occurred_on=start + timedelta(days=15),
            amount_fen=500_000,
            contributor=ContributorRef(name="黄石某物业服务有限公司", type="enterprise"),
            channel="bank",
            receipt_no="SJ-0100",
            memo="驻区企业捐资",
        ),
        EntryDraft(
            kind="pledge",
            occurred_on=start + timedelta(days=12),
            amount_fen=100_000,
            contributor=ContributorRef(name="欧阳小明", household="5栋1单元302"),
        ),
        EntryDraft(
            kind="in_kind",
            occurred_on=start + timedelta(days=25),
            amount_fen=60_000,
            contributor=ContributorRef(name="李建国", household="4栋2单元101"),
            description="义务劳动 6 小时",
        ),
    ]
    loaded = await append_entries(engine, "jinxiu-road-2026", drafts, recorded_by="demo", render=lambda es: len(es))
    pledged = next(e.seq for e in loaded.entries if e.kind == "pledge")
    # 欧阳小明 pays 600.00 of the 1,000.00 pledged, naming the pledge: 400.00 stays open.
    await append_entries(
        engine,
        "jinxiu-road-2026",
        [
            EntryDraft(
                kind="contribution",
                occurred_on=start + timedelta(days=22),
                amount_fen=60_000,
                contributor=ContributorRef(name="欧阳小明", household="5栋1单元302"),
                channel="wechat",
                receipt_no="SJ-0101",
                memo="兑现认筹（第一次）",
                pledge_seq=pledged,
            )
        ],
        recorded_by="demo",
        render=lambda es: len(es),
    )
    # The district pays the award as computed so far, citing the computation.
    computed = await project_award_by_code(engine, "jinxiu-road-2026")
    assert computed is not None and computed.award_fen > 0, "the demo's residents earn an award"
    await append_entries(
        engine,
        "jinxiu-road-2026",
        [
            EntryDraft(
                kind="grant",
                occurred_on=start + timedelta(days=23),
                amount_fen=computed.award_fen,
                grantor="下陆区住房和城乡建设局",
                document_no="下住建〔2026〕12号",
                memo="以奖代补第一批（按核算拨付）",
                cites_award=True,
            )
        ],
        recorded_by="demo",
        render=lambda es: len(es),
    )
    spending = [
        EntryDraft(
            kind="expenditure",
            occurred_on=start + timedelta(days=26),
            amount_fen=1_200_000,
            payee="黄石某沥青工程有限公司",
            category="materials",
            invoice_no="04417305",
            memo="沥青首批",
        ),
        EntryDraft(
            kind="expenditure",
            occurred_on=start + timedelta(days=30),
            amount_fen=850_035,
            payee="黄石某劳务有限公司",
            category="labour",
            invoice_no="04417399",
            memo="摊铺人工",
        ),
        EntryDraft(
            kind="expenditure",
            occurred_on=start + timedelta(days=31),
            amount_fen=12_000,
            payee="某五金店",
            category="signage",
            invoice_no="00012345",
            memo="误录金额",
        ),
    ]
    for draft in spending:
        await _countersigned(engine, "jinxiu-road-2026", draft)
    if not defer_later:
        await load_demo_later(engine, None)
    await create_project(
        engine,
        NewProject(
            code="jinxiu-garden-2025",
            community_code="jinxiu",
            title="口袋公园改造",
            description="上线前已完成四议两公开，支出门槛豁免。",
            households_in_scope=1200,
            spending_gate="waived",
            budget_lines=[BudgetLine("greening", "绿化", "crowdfunding", 2_000_000)],
        ),
    )
    await append_entries(
        engine,
        "jinxiu-garden-2025",
        [
            EntryDraft(
                kind="contribution",
                occurred_on=today - timedelta(days=5),
                amount_fen=30_000,
                contributor=ContributorRef(name="司马光", household="1栋1单元101"),
                channel="wechat",
            ),
            EntryDraft(
                kind="expenditure",
                occurred_on=today - timedelta(days=2),
                amount_fen=10_000,
                payee="某园林绿化公司",
                category="greening",
                invoice_no="0001",
            ),
        ],
        recorded_by="demo",
        render=lambda es: len(es),
    )
    log.info("demo data loaded: community jinxiu, projects jinxiu-road-2026 and jinxiu-garden-2025")
    return True


async def load_demo_later(engine: AsyncEngine, publish_sheet: PublishSheet | None) -> None:
    """The road project's later entries (a reversal in 红字, the corrected expenditure, a refund),
    with a sheet published before and after them when ``publish_sheet`` is given."""
    async with engine.connect() as conn:
        first = await get_entry(conn, "jinxiu-road-2026", 1)
        last = (await tree.head(conn, "jinxiu-road-2026")).size  # the mistyped expenditure
    start = first.occurred_on - timedelta(days=12)
    today = datetime.now(SHANGHAI).date()
    if publish_sheet is not None:
        await publish_sheet("jinxiu-road-2026", start, start + timedelta(days=31))
    await append_entries(
        engine,
        "jinxiu-road-2026",
        [
            EntryDraft(
                kind="reversal",
                occurred_on=start + timedelta(days=32),
                reverses_seq=last,
                reason="金额录入错误，应为 120.00 元",
            ),
        ],
        recorded_by="demo",
        render=lambda es: len(es),
    )
    for draft in [
        EntryDraft(
            kind="expenditure",
            occurred_on=start + timedelta(days=32),
            amount_fen=12_000,
            payee="某五金店",
            category="signage",
            invoice_no="00012345",
            memo="标识牌",
        ),
        EntryDraft(
            kind="refund",
            occurred_on=start + timedelta(days=40),
            amount_fen=5_000,
            contributor=ContributorRef(id=first.contributor.public_id),  # type: ignore[union-attr]
            memo="结余退款",
        ),
    ]:
        await _countersigned(engine, "jinxiu-road-2026", draft)
    if publish_sheet is not None:
        await publish_sheet("jinxiu-road-2026", start, today)
