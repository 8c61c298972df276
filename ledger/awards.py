"""The 以奖代补 award: a policy's rule applied to a project's own effort, every step in the open.

    award = min(cap, rate × residents' net crowdfunding)   when participation ≥ its minimum
                                                           and satisfaction ≥ its minimum
          = 0                                              otherwise

- **Residents' net crowdfunding** (居民众筹净额) is what residents and households paid, less what
  was refunded to them, reversals netted in; gifts of enterprises, organisations and party
  branches, labour and materials (出力) and unpaid pledges do not count: the policy rewards the
  residents' own money.
- **Participation** (参与率) is the summary's: contributors with money still in ÷ households in
  scope, at most 1. **Satisfaction** (满意率) is the 共评 share of 4 and 5 scores.
- Money is integer fen and rates exact :class:`~decimal.Decimal`; rate × crowdfunding is cut to
  the fen below (不足一分的部分舍去), so the award never exceeds the rule. Minimums are compared
  exactly (as fractions); percentages are printed with two decimals cut, never rounded up, so a
  printed rate below its minimum is never shown as meeting it.

A policy is a (code, version), append-only: a change is a new version. A project follows a code
(``project_award_policies``, latest row) and is computed under that code's newest version; a grant
may cite the computation (``cites_award``), which stores its inputs and result in the hashed entry.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_DOWN, Decimal
from fractions import Fraction
from typing import Any

import asyncpg
import rfc8785
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ledger import pg
from ledger.errors import Conflict, NotFound, ValidationFailed
from ledger.evaluations import satisfaction_counts
from ledger.masking import refuse_personal_numbers
from ledger.money import AMOUNT_MAX_FEN, format_fen_grouped
from ledger.participation import participation_rate

RATE_MAX = Decimal(10)
RESIDENT_TYPES = ("resident", "household")
NO_SATISFACTION = "尚无共评结果"


@dataclass(frozen=True)
class NewPolicy:
    code: str
    name: str
    issuer: str
    rate: Decimal
    cap_fen: int | None = None
    min_participation: Decimal = Decimal(0)
    min_satisfaction: Decimal = Decimal(0)
    document_no: str | None = None


@dataclass(frozen=True)
class AwardPolicy:
    id: int
    code: str
    version: int
    name: str
    issuer: str
    document_no: str | None
    rate: Decimal
    cap_fen: int | None
    min_participation: Decimal
    min_satisfaction: Decimal
    created_at: datetime


@dataclass(frozen=True)
class AwardInputs:
    """What the rule is applied to, read under one snapshot."""

    residents_paid_fen: int
    residents_refunded_fen: int
    others_net_fen: int  # enterprises, organisations, party branches: shown, not counted
    contributors: int
    households_in_scope: int
    satisfied: int | None  # 共评 scores of 4 or 5 (None: no results yet)
    evaluated: int | None
    granted_fen: int  # grants that cite the award, reversals netted

    @property
    def crowdfunded_fen(self) -> int:
        return self.residents_paid_fen - self.residents_refunded_fen

    @property
    def participation(self) -> Fraction | None:
        return participation_rate(self.contributors, self.households_in_scope)

    @property
    def satisfaction(self) -> Fraction | None:
        if not self.evaluated or self.satisfied is None:
            return None
        return Fraction(self.satisfied, self.evaluated)


@dataclass(frozen=True)
class AwardComputation:
    policy: AwardPolicy
    inputs: AwardInputs
    participation_met: bool
    satisfaction_met: bool
    proportional_fen: int  # rate × crowdfunding, cut to the fen
    award_fen: int
    steps: list[str] = field(default_factory=list)

    @property
    def eligible(self) -> bool:
        return self.participation_met and self.satisfaction_met

    @property
    def remaining_fen(self) -> int:
        """Awarded but not yet granted (negative when more was granted than computed)."""
        return self.award_fen - self.inputs.granted_fen

    def basis(self) -> dict[str, Any]:
        """What a grant citing this computation stores in its hashed document (integers and
        strings only: canonical JSON has no place for a float)."""
        x = self.inputs
        out: dict[str, Any] = {
            "policy": self.policy.code,
            "version": self.policy.version,
            "residents_paid_fen": x.residents_paid_fen,
            "residents_refunded_fen": x.residents_refunded_fen,
            "contributors": x.contributors,
            "households_in_scope": x.households_in_scope,
            "award_fen": self.award_fen,
        }
        if x.evaluated is not None and x.satisfied is not None:
            out.update(satisfied=x.satisfied, evaluated=x.evaluated)
        return out


def basis_text(basis: dict[str, Any]) -> str:
    return rfc8785.dumps(basis).decode()


# -- the rule ----------------------------------------------------------------------------------


def percent_text(value: Fraction | Decimal) -> str:
    """``0.41256`` → ``41.25%``: two decimals, cut (never rounded up past a minimum)."""
    shown = (Decimal(value.numerator) / Decimal(value.denominator) if isinstance(value, Fraction) else value) * 100
    return f"{shown.quantize(Decimal('0.01'), rounding=ROUND_DOWN)}%"


def _yuan(fen: int) -> str:
    return f"¥{format_fen_grouped(fen)}"


def _rate_text(rate: Decimal) -> str:
    return format(rate.normalize(), "f")


def compute_award(policy: AwardPolicy, x: AwardInputs) -> AwardComputation:
    """The rule, applied with every step written out in Chinese. Pure: no database."""
    steps = [
        f"适用政策：{policy.name}（{policy.issuer}{'，' + policy.document_no if policy.document_no else ''}；"
        f"编号 {policy.code} 第 {policy.version} 版）：奖补比例 r = {_rate_text(policy.rate)}，"
        f"上限 {_yuan(policy.cap_fen) if policy.cap_fen is not None else '不设'}，"
        f"最低参与率 {percent_text(policy.min_participation)}，最低满意率 {percent_text(policy.min_satisfaction)}。",
        f"居民众筹净额 X = 居民（含住户）出资 {_yuan(x.residents_paid_fen)} − 退款 {_yuan(x.residents_refunded_fen)}"
        f" = {_yuan(x.crowdfunded_fen)}（冲正已扣除；企业、单位、党组织出资 {_yuan(x.others_net_fen)}、"
        "出力折价和未缴认筹不计入）。",
    ]
    participation = x.participation
    if policy.min_participation == 0:
        participation_met = True
        shown = percent_text(participation) if participation is not None else "—"
        steps.append(
            f"参与率 a = 出资户数 {x.contributors} ÷ 范围内户数 {x.households_in_scope} = {shown}（政策未设最低参与率）。"
        )
    elif participation is None:
        participation_met = False
        steps.append(
            f"参与率：项目未登记范围内户数，无法计算，不满足最低参与率 {percent_text(policy.min_participation)}。"
        )
    else:
        participation_met = participation >= Fraction(policy.min_participation)
        steps.append(
            f"参与率 a = 出资户数 {x.contributors} ÷ 范围内户数 {x.households_in_scope} = {percent_text(participation)}"
            f"，{'≥' if participation_met else '<'} 最低 m = {percent_text(policy.min_participation)}，"
            f"{'符合' if participation_met else '不符合'}。"
        )
    satisfaction = x.satisfaction
    if policy.min_satisfaction == 0:
        satisfaction_met = True
        shown = percent_text(satisfaction) if satisfaction is not None else NO_SATISFACTION
        steps.append(f"满意率 s = {shown}（政策未设最低满意率）。")
    elif satisfaction is None:
        satisfaction_met = False
        steps.append(f"满意率：{NO_SATISFACTION}，不满足最低满意率 {percent_text(policy.min_satisfaction)}。")
    else:
        satisfaction_met = satisfaction >= Fraction(policy.min_satisfaction)
        steps.append(
            f"满意率 s = 满意（4、5 分）{x.satisfied} ÷ 参评 {x.evaluated} = {percent_text(satisfaction)}"
            f"，{'≥' if satisfaction_met else '<'} 最低 {percent_text(policy.min_satisfaction)}，"
            f"{'符合' if satisfaction_met else '不符合'}。"
        )
    base_fen = max(x.crowdfunded_fen, 0)
    proportional_fen = int((Decimal(base_fen) * policy.rate).to_integral_value(rounding=ROUND_DOWN))
    steps.append(
        f"按比例：Y = X × r = {_yuan(base_fen)} × {_rate_text(policy.rate)} = {_yuan(proportional_fen)}"
        "（以分为单位，不足一分的部分舍去）。"
    )
    capped_fen = proportional_fen if policy.cap_fen is None else min(proportional_fen, policy.cap_fen)
    if policy.cap_fen is not None:
        steps.append(
            f"上限 C = {_yuan(policy.cap_fen)}：min(Y, C) = {_yuan(capped_fen)}"
            f"{'（已达上限）' if proportional_fen > policy.cap_fen else ''}。"
        )
    eligible = participation_met and satisfaction_met
    award_fen = capped_fen if eligible else 0
    assert award_fen >= 0, "an award is never negative"
    if eligible:
        steps.append(f"结论：符合条件，应奖 {_yuan(award_fen)}。")
    else:
        missing = "、".join(
            name for name, met in (("参与率", participation_met), ("满意率", satisfaction_met)) if not met
        )
        steps.append(f"结论：{missing}未达最低要求，暂不符合条件，应奖 {_yuan(0)}。")
    left = award_fen - x.granted_fen
    steps.append(
        f"已拨付（注明依据本核算的以奖代补拨款，冲正已扣除）{_yuan(x.granted_fen)}；"
        + (f"尚待拨付 {_yuan(left)}。" if left >= 0 else f"超出应奖 {_yuan(-left)}。")
    )
    return AwardComputation(
        policy=policy,
        inputs=x,
        participation_met=participation_met,
        satisfaction_met=satisfaction_met,
        proportional_fen=proportional_fen,
        award_fen=award_fen,
        steps=steps,
    )


# -- policies ----------------------------------------------------------------------------------


def _check_new(new: NewPolicy) -> None:
    if not (0 < new.rate <= RATE_MAX):
        raise ValidationFailed.on("rate", "奖补比例须大于 0、不超过 10")
    for name in ("min_participation", "min_satisfaction"):
        if not 0 <= getattr(new, name) <= 1:
            raise ValidationFailed.on(name, "最低比例须在 0 到 1 之间")
    if new.cap_fen is not None and not 1 <= new.cap_fen <= AMOUNT_MAX_FEN:
        raise ValidationFailed.on("cap", "上限须大于 0 且不超过 100,000,000.00 元")
    refuse_personal_numbers({"name": new.name, "issuer": new.issuer, "document_no": new.document_no})


_CREATE = pg.Query(
    """
    INSERT INTO award_policies (code, version, name, issuer, document_no, rate, cap_fen, min_participation,
                                min_satisfaction, created_by)
    SELECT :code, coalesce(max(version), 0) + 1, :name, :issuer, :document_no, :rate, :cap_fen, :min_participation,
           :min_satisfaction, :created_by
    FROM award_policies WHERE code = :code
    RETURNING *
    """
)


async def create_policy(engine: AsyncEngine, new: NewPolicy, *, created_by: str) -> AwardPolicy:
    """A new policy, or the next version of ``new.code``. Errors: ValidationFailed."""
    _check_new(new)
    async with pg.transaction(engine) as conn:
        # Two versions of one code published at once must not both become version n.
        await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 13))", new.code)
        row = await pg.fetchrow(
            conn,
            _CREATE,
            code=new.code,
            name=new.name,
            issuer=new.issuer,
            document_no=new.document_no,
            rate=new.rate,
            cap_fen=new.cap_fen,
            min_participation=new.min_participation,
            min_satisfaction=new.min_satisfaction,
            created_by=created_by,
        )
    assert row is not None
    return _policy(row)


def _policy(row: Any) -> AwardPolicy:
    return AwardPolicy(
        id=row["id"],
        code=row["code"],
        version=row["version"],
        name=row["name"],
        issuer=row["issuer"],
        document_no=row["document_no"],
        rate=row["rate"],
        cap_fen=row["cap_fen"],
        min_participation=row["min_participation"],
        min_satisfaction=row["min_satisfaction"],
        created_at=row["created_at"],
    )


async def list_policies(
    conn: AsyncConnection, *, code: str | None = None, after_id: int = 0, limit: int = 50
) -> list[AwardPolicy]:
    """Every version of every policy (or of one code), oldest first."""
    rows = await (await pg.driver(conn)).fetch(
        "SELECT * FROM award_policies WHERE id > $1 AND ($2::text IS NULL OR code = $2) ORDER BY id LIMIT $3",
        after_id,
        code,
        limit,
    )
    return [_policy(r) for r in rows]


async def require_policy_code(conn: asyncpg.Connection, code: str, field_name: str = "award_policy") -> None:
    """Errors: ValidationFailed when no version of ``code`` was ever published."""
    if not await conn.fetchval("SELECT EXISTS (SELECT 1 FROM award_policies WHERE code = $1)", code):
        raise ValidationFailed.on(field_name, f"以奖代补政策 {code} 不存在")


async def assign_policy(
    conn: asyncpg.Connection, project_id: int, community_id: int, code: str, *, assigned_by: str
) -> None:
    """The project follows ``code`` from now on (inside the caller's transaction)."""
    await require_policy_code(conn, code)
    await conn.execute(
        "INSERT INTO project_award_policies (community_id, project_id, policy_code, assigned_by) VALUES ($1, $2, $3, $4)",
        community_id,
        project_id,
        code,
        assigned_by,
    )


async def assign_policy_to_project(engine: AsyncEngine, project_code: str, code: str, *, assigned_by: str) -> None:
    """Errors: NotFound (project), ValidationFailed (no such policy), Conflict (the same code
    already applies: nothing to record)."""
    async with pg.transaction(engine) as conn:
        row = await conn.fetchrow(
            """
            SELECT p.id, p.community_id,
                   (SELECT policy_code FROM project_award_policies a WHERE a.project_id = p.id
                    ORDER BY a.id DESC LIMIT 1) AS current
            FROM projects p WHERE p.code = $1 FOR UPDATE OF p
            """,
            project_code,
        )
        if row is None:
            raise NotFound(f"项目 {project_code} 不存在")
        if row["current"] == code:
            raise Conflict(f"项目 {project_code} 已适用以奖代补政策 {code}")
        await assign_policy(conn, row["id"], row["community_id"], code, assigned_by=assigned_by)


# -- a project's award -------------------------------------------------------------------------

_INPUTS = pg.Query(
    """
    WITH assigned AS (
        SELECT policy_code FROM project_award_policies WHERE project_id = :pid ORDER BY id DESC LIMIT 1
    ), policy AS (
        SELECT ap.* FROM award_policies ap JOIN assigned ON ap.code = assigned.policy_code
        ORDER BY ap.version DESC LIMIT 1
    ), money AS (
        SELECT coalesce(sum(t.paid_fen) FILTER (WHERE c.type = ANY(CAST(:residents AS text[]))), 0) AS residents_paid,
               coalesce(sum(t.refunded_fen) FILTER (WHERE c.type = ANY(CAST(:residents AS text[]))), 0)
                   AS residents_refunded,
               coalesce(sum(t.paid_fen - t.refunded_fen) FILTER (WHERE c.type <> ALL(CAST(:residents AS text[]))), 0)
                   AS others_net,
               count(*) FILTER (WHERE t.paid_fen - t.refunded_fen > 0) AS contributors
        FROM contributor_totals t JOIN contributors c ON c.id = t.contributor_id
        WHERE t.project_id = :pid
    )
    SELECT policy.*, money.*, p.households_in_scope,
           (SELECT coalesce(sum(g.amount_fen), 0) FROM entries g
             WHERE g.project_id = :pid AND g.award_basis IS NOT NULL
               AND NOT EXISTS (SELECT 1 FROM entries r WHERE r.project_id = g.project_id AND r.reverses_seq = g.seq))
               AS granted
    FROM projects p CROSS JOIN money LEFT JOIN policy ON true
    WHERE p.id = :pid
    """
)


async def evaluation_counts(conn: asyncpg.Connection, project_id: int) -> tuple[int, int] | None:
    """(satisfied, evaluated) from the project's 共评 results (online scores and paper tallies), or
    None while there are none: a policy with a minimum satisfaction is then not met, which the
    steps say in words."""
    satisfied, evaluated = await satisfaction_counts(conn, project_id)
    return (satisfied, evaluated) if evaluated else None


async def project_award(conn: asyncpg.Connection, project_id: int) -> AwardComputation | None:
    """The project's award now (or as the caller's snapshot sees it); None when it follows no policy."""
    row = await pg.fetchrow(conn, _INPUTS, pid=project_id, residents=list(RESIDENT_TYPES))
    if row is None or row["id"] is None:
        return None
    counts = await evaluation_counts(conn, project_id)
    inputs = AwardInputs(
        residents_paid_fen=int(row["residents_paid"]),
        residents_refunded_fen=int(row["residents_refunded"]),
        others_net_fen=int(row["others_net"]),
        contributors=int(row["contributors"]),
        households_in_scope=int(row["households_in_scope"]),
        satisfied=counts[0] if counts else None,
        evaluated=counts[1] if counts else None,
        granted_fen=int(row["granted"]),
    )
    return compute_award(_policy(row), inputs)


async def project_award_by_code(engine: AsyncEngine, project_code: str) -> AwardComputation | None:
    """Errors: NotFound."""
    async with pg.transaction(engine, isolation="repeatable_read") as conn:
        project_id = await conn.fetchval("SELECT id FROM projects WHERE code = $1", project_code)
        if project_id is None:
            raise NotFound(f"项目 {project_code} 不存在")
        return await project_award(conn, project_id)
