"""Domain objects → response bodies. Masking happens here, once, for every public output."""

from __future__ import annotations

import uuid
from decimal import ROUND_DOWN, Decimal
from fractions import Fraction

from api import schemas as s
from ledger.awards import AwardComputation, AwardPolicy
from ledger.canonical import SHANGHAI, Signer
from ledger.communities import Community
from ledger.decisions import Decision
from ledger.entry_reads import RecordedEntry
from ledger.money import format_fen
from ledger.pledges import PledgeLine, PledgeTotals
from ledger.projects import Project
from ledger.summary import Summary
from ledger.tokens import Token
from ledger.vouchers import Voucher
from ledger.witnesses import Cosignature, Witness, b64
from reports.display import ratio_number, shown_contributor
from reports.labels import WITNESS_KIND_LABELS as WITNESS_KINDS


def community_out(c: Community) -> s.CommunityOut:
    return s.CommunityOut(
        code=c.code, name=c.name, district=c.district, households=c.households, created_at=c.created_at
    )


def project_out(p: Project, summary: Summary | None = None) -> s.ProjectOut:
    return s.ProjectOut(
        code=p.code,
        community=p.community_code,
        title=p.title,
        description=p.description,
        households_in_scope=p.households_in_scope,
        stage=p.stage,
        spending_gate=p.spending_gate,  # type: ignore[arg-type]
        countersign_over=format_fen(p.countersign_over_fen) if p.countersign_over_fen is not None else None,
        award_policy=p.award_policy,
        created_at=p.created_at,
        budget_lines=[
            s.BudgetLineOut(category=b.category, label=b.label, source=b.source, amount=format_fen(b.amount_fen))
            for b in p.budget_lines
        ],
        summary=summary_out(summary) if summary else None,
    )


def summary_out(x: Summary) -> s.SummaryOut:
    return s.SummaryOut(
        budget=format_fen(x.budget_fen),
        contributed=format_fen(x.contributed_fen),
        granted=format_fen(x.granted_fen),
        other_income=format_fen(x.other_income_fen),
        spent=format_fen(x.spent_fen),
        refunded=format_fen(x.refunded_fen),
        balance=format_fen(x.balance_fen),
        in_kind_value=format_fen(x.in_kind_value_fen),
        pledged=format_fen(x.pledged_fen),
        pledge_paid=format_fen(x.pledge_paid_fen),
        pledge_outstanding=format_fen(x.pledged_fen - x.pledge_paid_fen),
        pledges_open=x.pledges_open,
        contributors=x.contributors,
        households_in_scope=x.households_in_scope,
        participation_rate=ratio_number(x.participation),
        by_category=[
            s.CategoryOut(
                category=c.category, label=c.label, budget=format_fen(c.budget_fen), spent=format_fen(c.spent_fen)
            )
            for c in x.by_category
        ],
        ledger=s.LedgerHeadOut(size=x.ledger_size, root_hash=x.root_hash.hex()),
    )


def contributor_out(
    *,
    real_id: uuid.UUID,
    entry_id: uuid.UUID,
    name: str | None,
    household: str | None,
    contributor_type: str,
    anonymous: bool,
    erased: bool,
    unmasked: bool,
) -> s.ContributorOut:
    """A contributor as an entry (or a pledge) shows them: masked in public, under the entry's own
    id when anonymous."""
    # The community's own staff see the person behind an anonymous gift, by their real id (a
    # refund names it); the public sees the entry's own id.
    public_id = real_id if unmasked and not erased else entry_id
    shown, building = shown_contributor(
        name, household, contributor_type, anonymous=anonymous, erased=erased, unmasked=unmasked
    )
    return s.ContributorOut(
        id=public_id,
        name=shown,
        household=building,
        type=contributor_type,  # type: ignore[arg-type]
        anonymous=anonymous,
    )


def entry_out(e: RecordedEntry, *, unmasked: bool, receipt_root: bytes | None = None) -> s.EntryOut:
    contributor = None
    if e.contributor is not None:
        c = e.contributor
        contributor = contributor_out(
            real_id=c.public_id,
            entry_id=e.public_contributor_id or c.public_id,
            name=c.name,
            household=c.household,
            contributor_type=c.type,
            anonymous=e.anonymous,
            erased=c.erased,
            unmasked=unmasked,
        )
    root = e.root_hash or receipt_root
    receipt = None
    if root is not None:
        receipt = s.ReceiptOut(
            seq=e.seq, leaf_hash=e.leaf_hash.hex(), tree_size=e.tree_size or e.seq, root_hash=root.hex()
        )
    f = e.fields
    return s.EntryOut(
        project=e.project_code,
        seq=e.seq,
        kind=e.kind,
        amount=format_fen(e.amount_fen),
        occurred_on=e.occurred_on,
        recorded_at=e.recorded_at.astimezone(SHANGHAI),
        memo=f.get("memo"),
        contributor=contributor,
        channel=f.get("channel"),
        receipt_no=f.get("receipt_no"),
        grantor=f.get("grantor"),
        document_no=f.get("document_no"),
        payee=f.get("payee"),
        category=f.get("category"),
        invoice_no=f.get("invoice_no"),
        description=f.get("description"),
        reason=f.get("reason"),
        payer=f.get("payer"),
        postings=[
            s.PostingOut(account=p.account, side=p.side, amount=format_fen(p.amount_fen))  # type: ignore[arg-type]
            for p in e.postings
        ],
        reverses=e.reverses_seq,
        reversed_by=e.reversed_by,
        maker=signer_out(e.maker),
        checker=signer_out(e.checker),
        attachments=list(e.attachments),
        pledge=e.pledge_seq,
        award=e.award_basis,
        warnings=[s.WarningOut(code=w.code, message=w.message) for w in e.warnings],
        document=e.document,
        leaf_hash=e.leaf_hash.hex(),
        receipt=receipt,
    )


def signer_out(x: Signer | None) -> s.SignerOut | None:
    return s.SignerOut(role=x.role, name=x.name) if x is not None else None


def voucher_out(v: Voucher, entry: RecordedEntry | None = None) -> s.VoucherOut:
    """Vouchers are read only by the community's treasurer, auditor and admins: unmasked."""
    d = v.draft
    c = d.contributor
    return s.VoucherOut(
        id=v.id,
        project=v.project_code,
        status=v.status,  # type: ignore[arg-type]
        kind=d.kind,  # type: ignore[arg-type]
        amount=format_fen(d.amount_fen or 0),
        occurred_on=d.occurred_on,
        payee=d.payee,
        category=d.category,
        invoice_no=d.invoice_no,
        memo=d.memo,
        contributor=(c.name or str(c.id)) if c is not None else None,
        attachments=list(d.attachments),
        document_sha256=v.document_sha256,
        submitted_by=s.SignerOut(role=v.maker.role, name=v.maker.name),
        submitted_at=v.submitted_at.astimezone(SHANGHAI),
        checked_by=signer_out(v.checker),
        decided_at=v.decided_at.astimezone(SHANGHAI) if v.decided_at else None,
        reason=v.reason,
        entry_seq=v.entry_seq,
        entry=entry_out(entry, unmasked=True) if entry is not None else None,
    )


def token_out(t: Token) -> s.TokenOut:
    return s.TokenOut(
        id=t.id, name=t.name, role=t.role, community=t.community_code, created_at=t.created_at, revoked_at=t.revoked_at
    )


def decision_out(d: Decision) -> s.DecisionOut:
    return s.DecisionOut(
        id=d.id,
        project=d.project_code,
        stage=d.stage,
        held_on=d.held_on,
        body=d.body,
        eligible=d.eligible,
        attendees=d.attendees,
        votes_for=d.votes_for,
        votes_against=d.votes_against,
        votes_abstain=d.votes_abstain,
        summary=d.summary,
        minutes_sha256=d.minutes_sha256,
        notice_days=d.notice_days,
        notice_end=d.notice_end,
        recorded_at=d.recorded_at,
    )


def pledge_out(p: PledgeLine, *, unmasked: bool) -> s.PledgeOut:
    return s.PledgeOut(
        seq=p.seq,
        occurred_on=p.occurred_on,
        contributor=contributor_out(
            real_id=p.contributor_real_id,
            entry_id=p.contributor_public_id,
            name=p.contributor_name,
            household=p.contributor_household,
            contributor_type=p.contributor_type,
            anonymous=p.anonymous,
            erased=p.erased,
            unmasked=unmasked,
        ),
        amount=format_fen(p.pledged_fen),
        paid=format_fen(p.fulfilled_fen),
        outstanding=format_fen(p.outstanding_fen),
        excess=format_fen(p.excess_fen),
        status=p.status,  # type: ignore[arg-type]
        fulfilled_by=list(p.fulfilled_by),
    )


def pledge_totals_out(t: PledgeTotals) -> s.PledgeTotalsOut:
    return s.PledgeTotalsOut(
        pledged=format_fen(t.pledged_fen),
        paid=format_fen(t.fulfilled_fen),
        outstanding=format_fen(t.outstanding_fen),
        excess=format_fen(t.excess_fen),
        count=t.count,
        open=t.open_count,
    )


def ratio_text(value: Fraction | Decimal | None) -> str | None:
    """An exact ratio as four decimals, cut (never rounded up past a minimum)."""
    if value is None:
        return None
    exact = Decimal(value.numerator) / Decimal(value.denominator) if isinstance(value, Fraction) else value
    return str(exact.quantize(Decimal("0.0001"), rounding=ROUND_DOWN))


def award_policy_out(p: AwardPolicy) -> s.AwardPolicyOut:
    return s.AwardPolicyOut(
        code=p.code,
        version=p.version,
        name=p.name,
        issuer=p.issuer,
        document_no=p.document_no,
        rate=ratio_text(p.rate) or "",
        cap=format_fen(p.cap_fen) if p.cap_fen is not None else None,
        min_participation=ratio_text(p.min_participation) or "",
        min_satisfaction=ratio_text(p.min_satisfaction) or "",
        created_at=p.created_at.astimezone(SHANGHAI),
    )


def award_out(a: AwardComputation | None) -> s.AwardOut:
    if a is None:
        return s.AwardOut(
            policy=None,
            crowdfunded="0.00",
            residents_paid="0.00",
            residents_refunded="0.00",
            others_contributed="0.00",
            contributors=0,
            households_in_scope=0,
            participation_rate=None,
            participation_met=False,
            satisfied=None,
            evaluated=None,
            satisfied_rate=None,
            satisfaction_met=False,
            eligible=False,
            proportional="0.00",
            cap=None,
            award="0.00",
            granted="0.00",
            remaining="0.00",
            steps=["本项目未适用以奖代补政策。"],
        )
    x = a.inputs
    return s.AwardOut(
        policy=award_policy_out(a.policy),
        crowdfunded=format_fen(x.crowdfunded_fen),
        residents_paid=format_fen(x.residents_paid_fen),
        residents_refunded=format_fen(x.residents_refunded_fen),
        others_contributed=format_fen(x.others_net_fen),
        contributors=x.contributors,
        households_in_scope=x.households_in_scope,
        participation_rate=ratio_text(x.participation),
        participation_met=a.participation_met,
        satisfied=x.satisfied,
        evaluated=x.evaluated,
        satisfied_rate=ratio_text(x.satisfaction),
        satisfaction_met=a.satisfaction_met,
        eligible=a.eligible,
        proportional=format_fen(a.proportional_fen),
        cap=format_fen(a.policy.cap_fen) if a.policy.cap_fen is not None else None,
        award=format_fen(a.award_fen),
        granted=format_fen(x.granted_fen),
        remaining=format_fen(a.remaining_fen),
        steps=a.steps,
    )


def witness_out(w: Witness) -> s.WitnessOut:
    return s.WitnessOut(
        name=w.name,
        kind=w.kind,  # type: ignore[arg-type]
        kind_label=WITNESS_KINDS.get(w.kind) if w.kind else None,
        public_key=b64(w.public_key),
        key_id=w.key_id.hex(),
        vkey=w.vkey,
        created_at=w.created_at.astimezone(SHANGHAI),
    )


def cosignature_out(c: Cosignature) -> s.CosignatureOut:
    return s.CosignatureOut(
        disclosure_id=c.disclosure_id,
        witness=witness_out(c.witness),
        signature=b64(c.signature),
        line=c.line,
        checkpoint=c.checkpoint,
        created_at=c.created_at.astimezone(SHANGHAI),
    )
