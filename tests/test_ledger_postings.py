"""Postings per kind (DESIGN.md's table), balanced entries, and the summary after a realistic run
with reversals, against figures worked out by hand."""

from __future__ import annotations

from datetime import date
from fractions import Fraction

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from ledger import tree
from ledger.contributors import ContributorRef
from ledger.drafts import EntryDraft
from ledger.entries import append_entries
from ledger.entry_reads import list_entries
from ledger.projects import Project
from ledger.summary import CategoryLine, project_summary
from tests.conftest import make_project

DAY = date(2025, 6, 1)
A = ContributorRef(name="张三", household="3栋1单元201")
B = ContributorRef(name="李四", household="5栋2单元502")
C = ContributorRef(name="王五", household="6栋1单元101")
D = ContributorRef(name="赵六", household="8栋3单元302")
E = ContributorRef(name="黄石某物业服务有限公司", type="enterprise")
F = ContributorRef(name="欧阳小明", household="4栋2单元101")
G = ContributorRef(name="孙七", household="7栋1单元601")

# DESIGN.md, "The ledger": kind → (debit account, credit account).
TABLE = {
    "contribution": ("cash", "contributions"),
    "grant": ("cash", "grants"),
    "refund": ("refunds", "cash"),
    "in_kind": ("in_kind:received", "in_kind:contributed"),
    "pledge": ("pledges:receivable", "pledges:promised"),
}
MEMORANDUM = {"in_kind:received", "in_kind:contributed", "pledges:receivable", "pledges:promised"}


def paid(who: ContributorRef, fen: int, pledge: int | None = None) -> EntryDraft:
    return EntryDraft(
        kind="contribution", occurred_on=DAY, amount_fen=fen, contributor=who, channel="wechat", pledge_seq=pledge
    )


def grant(fen: int) -> EntryDraft:
    return EntryDraft(
        kind="grant", occurred_on=DAY, amount_fen=fen, grantor="下陆区住建局", document_no="下住建〔2025〕12号"
    )


def spend(category: str, fen: int) -> EntryDraft:
    return EntryDraft(kind="expenditure", occurred_on=DAY, amount_fen=fen, payee="某工程公司", category=category)


def refund(who: ContributorRef, fen: int) -> EntryDraft:
    return EntryDraft(kind="refund", occurred_on=DAY, amount_fen=fen, contributor=who)


def pledge(who: ContributorRef, fen: int) -> EntryDraft:
    return EntryDraft(kind="pledge", occurred_on=DAY, amount_fen=fen, contributor=who)


def in_kind(who: ContributorRef, fen: int) -> EntryDraft:
    return EntryDraft(kind="in_kind", occurred_on=DAY, amount_fen=fen, contributor=who, description="义务劳动")


def reverse(seq: int) -> EntryDraft:
    return EntryDraft(kind="reversal", occurred_on=DAY, reverses_seq=seq, reason="录入有误")


# Appended in these groups (singles and batches, so totals are carried across transactions).
SEQUENCE: list[list[EntryDraft]] = [
    [paid(A, 20_000)],  # 1
    [paid(B, 50_000), paid(C, 10_000), grant(3_000_000)],  # 2 3 4
    [pledge(D, 100_000)],  # 5
    [pledge(A, 30_000), paid(D, 40_000, pledge=5)],  # 6 7
    [in_kind(F, 60_000)],  # 8
    [spend("materials", 1_200_000)],  # 9
    [spend("labour", 850_035)],  # 10
    [refund(B, 20_000)],  # 11
    [reverse(3)],  # 12: 王五's contribution had the wrong amount …
    [paid(C, 15_000)],  # 13: … and is recorded again
    [reverse(9), spend("materials", 1_150_000)],  # 14 15
    [reverse(5)],  # 16: 赵六 withdraws the pledge
    [reverse(8)],  # 17
    [in_kind(F, 45_000)],  # 18
    [paid(E, 500_000)],  # 19
    [reverse(11)],  # 20: the partial refund to 李四 was a mistake …
    [refund(B, 50_000)],  # 21: … he asked for all of it back
    [grant(1_000_000), paid(A, 10_000, pledge=6)],  # 22 23: 张三 pays 100.00 of the 300.00 pledged
    [paid(G, 8_000), refund(G, 3_000)],  # 24 25: someone new, paid and partly refunded in one import
]

# Worked out by hand from SEQUENCE.
EXPECTED_BALANCES = {
    "cash": 2_589_965,
    "contributions": -643_000,  # 200 + 500 + 100 + 400 − 100 + 150 + 5000 + 100 + 80 yuan
    "grants": -4_000_000,
    "other_income": 0,  # every project has the account (issue 9); this sequence records no other income
    "refunds": 53_000,  # 200 − 200 + 500 + 30
    "expenses:materials": 1_150_000,
    "expenses:labour": 850_035,
    "in_kind:received": 45_000,
    "in_kind:contributed": -45_000,
    "pledges:receivable": 30_000,
    "pledges:promised": -30_000,
}
# name → (paid, refunded, pledged, in kind)
EXPECTED_TOTALS = {
    "张三": (30_000, 0, 30_000, 0),
    "李四": (50_000, 50_000, 0, 0),
    "王五": (15_000, 0, 0, 0),
    "赵六": (40_000, 0, 0, 0),
    "黄石某物业服务有限公司": (500_000, 0, 0, 0),
    "欧阳小明": (0, 0, 0, 45_000),
    "孙七": (8_000, 3_000, 0, 0),
}


async def run_sequence(engine: AsyncEngine) -> Project:
    project = await make_project(engine)  # budget lines materials and labour, 60,000.00 each
    seq = 0
    for group in SEQUENCE:
        result = await append_entries(engine, project.code, group, recorded_by="test", render=lambda r: len(r))
        assert [e.seq for e in result.entries] == list(range(seq + 1, seq + len(group) + 1))
        seq += len(group)
    return project


async def test_postings_follow_the_table_and_balance(engine: AsyncEngine) -> None:
    project = await run_sequence(engine)
    async with engine.connect() as conn:
        entries = await list_entries(conn, project.code, limit=100)
        memo_flags = dict(
            (
                await conn.execute(
                    text("SELECT code, is_memorandum FROM accounts WHERE project_id = :pid"), {"pid": project.id}
                )
            ).all()
        )
    assert [e.seq for e in entries] == list(range(1, 26))
    assert {code for code, memo in memo_flags.items() if memo} == MEMORANDUM
    by_seq = {e.seq: e for e in entries}
    for e in entries:
        lines = [(p.account, p.side, p.amount_fen) for p in e.postings]
        assert sum(a for _, s, a in lines if s == "debit") == sum(a for _, s, a in lines if s == "credit")
        assert all(a == e.amount_fen for _, _, a in lines)
        if e.kind == "reversal":
            assert e.reverses_seq is not None
            original = by_seq[e.reverses_seq]
            assert original.reversed_by == e.seq
            flip = {"debit": "credit", "credit": "debit"}
            assert lines == [(p.account, flip[p.side], p.amount_fen) for p in original.postings]
            assert e.amount_fen == original.amount_fen
            kind = original.kind
        else:
            kind = e.kind
            if kind == "expenditure":
                expected = [
                    (f"expenses:{e.fields['category']}", "debit", e.amount_fen),
                    ("cash", "credit", e.amount_fen),
                ]
            else:
                debit, credit = TABLE[kind]
                expected = [(debit, "debit", e.amount_fen), (credit, "credit", e.amount_fen)]
            assert lines == expected, f"seq {e.seq} ({kind})"
        if kind in ("in_kind", "pledge"):
            assert not {a for a, _, _ in lines} & {"cash", "contributions", "grants", "refunds"}
            assert {a for a, _, _ in lines} <= MEMORANDUM
    assert {s for s, e in by_seq.items() if e.reversed_by} == {3, 5, 8, 9, 11}


async def test_balances_totals_and_summary_match_hand_computed_figures(engine: AsyncEngine) -> None:
    project = await run_sequence(engine)
    async with engine.connect() as conn:
        balances = dict(
            (
                await conn.execute(
                    text(
                        "SELECT a.code, b.balance_fen FROM balances b JOIN accounts a ON a.id = b.account_id "
                        "WHERE b.project_id = :pid"
                    ),
                    {"pid": project.id},
                )
            ).all()
        )
        # The kept balances agree with the postings (the test may sum; the summary must not).
        from_postings = dict(
            (
                await conn.execute(
                    text(
                        "SELECT a.code, sum(CASE p.side WHEN 'debit' THEN p.amount_fen ELSE -p.amount_fen END) "
                        "FROM postings p JOIN accounts a ON a.id = p.account_id WHERE p.project_id = :pid "
                        "GROUP BY a.code"
                    ),
                    {"pid": project.id},
                )
            ).all()
        )
        totals = {
            r.name: (r.paid_fen, r.refunded_fen, r.pledged_fen, r.in_kind_fen)
            for r in await conn.execute(
                text(
                    "SELECT c.name, t.paid_fen, t.refunded_fen, t.pledged_fen, t.in_kind_fen FROM contributor_totals t "
                    "JOIN contributors c ON c.id = t.contributor_id WHERE t.project_id = :pid"
                ),
                {"pid": project.id},
            )
        }
        summary = await project_summary(conn, project)

    assert balances == EXPECTED_BALANCES
    assert sum(balances.values()) == 0, "double entry: the books balance"
    assert {k: int(v) for k, v in from_postings.items()} == {k: v for k, v in EXPECTED_BALANCES.items() if v}
    assert totals == EXPECTED_TOTALS

    assert summary.contributed_fen == 643_000
    assert summary.granted_fen == 4_000_000
    assert summary.spent_fen == 2_000_035
    assert summary.refunded_fen == 53_000
    assert summary.balance_fen == 2_589_965
    assert summary.in_kind_value_fen == 45_000
    assert summary.pledged_fen == 30_000
    # Only payments that name their pledge keep it: 张三 paid 100.00 against pledge 6 (his 200.00 at
    # seq 1 came before he pledged); 赵六's 400.00 against pledge 5 kept nothing once 5 was reversed.
    assert summary.pledge_paid_fen == 10_000
    assert summary.pledges_open == 1
    assert summary.contributors == 5  # 张三 王五 赵六 the company 孙七; 李四 got everything back
    assert summary.budget_fen == 12_000_000
    assert summary.by_category == [
        CategoryLine("materials", "沥青材料", "crowdfunding", 6_000_000, 1_150_000),
        CategoryLine("labour", "人工费", "crowdfunding", 6_000_000, 850_035),
    ]
    assert summary.ledger_size == 25
    assert summary.participation == Fraction(5, 400)
    assert (await tree.verify(engine, project.code)).ok


async def test_empty_project_summary_is_all_zero(engine: AsyncEngine) -> None:
    project = await make_project(engine)
    async with engine.connect() as conn:
        summary = await project_summary(conn, project)
    assert (summary.contributed_fen, summary.granted_fen, summary.spent_fen, summary.refunded_fen) == (0, 0, 0, 0)
    assert (summary.balance_fen, summary.in_kind_value_fen, summary.pledged_fen, summary.pledge_paid_fen) == (
        0,
        0,
        0,
        0,
    )
    assert summary.contributors == 0 and summary.ledger_size == 0
