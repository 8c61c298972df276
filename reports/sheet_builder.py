"""Builds a sheet's view model from its facts (ledger/sheet_facts.py): pure, no database.

The ledger gathers the facts inside the publishing snapshot; this module shapes them for paper —
tables by kind, masked names (every sheet is public), labels, the omitted-rows note — and
reports/render.py turns the model into PDF bytes.
"""

from __future__ import annotations

from typing import Any

from ledger import kinds
from ledger.accounts import EXPENSES_PREFIX, REFUNDS
from ledger.awards import AwardComputation
from ledger.decisions import Decision
from ledger.disclosures import SheetSnapshot
from ledger.entry_reads import RecordedEntry
from ledger.evaluations import Results
from ledger.masking import mask_person_name
from ledger.pledges import PledgeLine
from ledger.sheet_facts import SheetFacts, WitnessedSheet
from reports import sheet_model as m
from reports.display import entry_contributor, ratio_decimal, shown_contributor, signed_fen
from reports.labels import CHANNEL_LABELS, SOURCE_LABELS, STAGE_LABELS
from reports.labels import WITNESS_KIND_LABELS as WITNESS_KINDS

# The detail table of each kind of entry (a reversal goes to its original's); pledges have a
# table of their own, cumulative.
TABLE_OF_KIND = {
    "contribution": "contributions",
    "grant": "grants",
    "other_income": "other_income",
    "expenditure": "expenditures",
    "in_kind": "in_kind",
    "refund": "refunds",
}


LISTED_KINDS = tuple(TABLE_OF_KIND)  # what ledger/sheet_facts.py gathers rows of


def verify_url(public_base_url: str, project_code: str, disclosure_id: int | None) -> str:
    """Where the QR code leads: the sheet's own page (its root, the history check, objections);
    a preview, not yet numbered, leads to the project page."""
    base = public_base_url.rstrip("/")
    return f"{base}/d/{disclosure_id}" if disclosure_id is not None else f"{base}/p/{project_code}"


def build_sheet_model(facts: SheetFacts, *, public_base_url: str, objection_contact: str = "") -> m.SheetModel:
    """The sheet's model from its facts: pure (no database, no I/O)."""
    snap = facts.snap
    project = snap.project
    labels = {line.category: line.label for line in project.budget_lines}
    rows: dict[str, list[Any]] = {k: [] for k in TABLE_OF_KIND}
    for e in facts.entries:
        source = facts.source_of(e)
        rows[source.kind].append(_row(source.kind, e, source, labels))
    totals = {
        table: m.TableTotal(rows=t.rows, amount_fen=t.signed_fen) if (t := facts.kind_totals.get(kind)) else _NO_ROWS
        for kind, table in TABLE_OF_KIND.items()
    }
    pledge_sum = facts.pledge_totals
    totals["pledges"] = m.TableTotal(
        rows=pledge_sum.count, amount_fen=pledge_sum.pledged_fen, paid_fen=pledge_sum.fulfilled_fen
    )
    omitted = _omitted(snap, public_base_url, totals, len(facts.entries), facts.cut_seq, facts.pledges, facts.rows_max)
    summary = facts.summary
    grant_note = "；".join(f"{grantor} {document_no or ''}".strip() for grantor, document_no in facts.grant_sources)
    sheet_summary = m.SheetSummary(
        period=_money(facts.period_net),
        cumulative=m.MoneyTotals(
            contributed_fen=summary.contributed_fen,
            granted_fen=summary.granted_fen,
            other_income_fen=summary.other_income_fen,
            spent_fen=summary.spent_fen,
            refunded_fen=summary.refunded_fen,
        ),
        balance_fen=summary.balance_fen,
        budget_fen=summary.budget_fen,
        in_kind_value_fen=summary.in_kind_value_fen,
        pledged_fen=summary.pledged_fen,
        pledge_paid_fen=summary.pledge_paid_fen,
        pledges_open=summary.pledges_open,
        contributors=summary.contributors,
        households_in_scope=project.households_in_scope or None,
        participation_rate=ratio_decimal(summary.participation),
        grant_note=grant_note[:200],
    )
    previous = (
        m.PreviousSheet(
            sheet_number=snap.previous.sheet_number,
            tree_size=snap.previous.tree_size,
            root_hash_hex=snap.previous.root_hash.hex(),
        )
        if snap.previous
        else None
    )
    street, _, _ = project.community_district.partition(" ")
    return m.SheetModel(
        title=snap.title,
        community_name=project.community_name,
        street=street,
        project_code=project.code,
        project_title=project.title,
        sheet_number=snap.sheet_number,
        period_start=snap.period_start,
        period_end=snap.period_end,
        published_on=snap.published_on,
        notice_start=snap.notice_start,
        notice_end=snap.notice_end,
        notice_days=snap.notice_days,
        spending_gate_waived=project.spending_gate == "waived",
        summary=sheet_summary,
        budget_lines=[
            m.BudgetLineRow(
                category_label=line.label,
                source_label=SOURCE_LABELS.get(line.source, line.source),
                budget_fen=line.budget_fen,
                spent_fen=line.spent_fen,
            )
            for line in summary.by_category
        ],
        contributions=rows["contribution"],
        grants=rows["grant"],
        other_income=rows["other_income"],
        expenditures=rows["expenditure"],
        in_kind=rows["in_kind"],
        refunds=rows["refund"],
        decisions=[_decision_row(d) for d in facts.decisions],
        pledges=[_pledge_row(p) for p in facts.pledges],
        table_totals=tuple(totals.items()),
        omitted=omitted,
        award=_award(facts.award),
        evaluation=_evaluation(facts.evaluation),
        verification=m.VerificationBlock(
            tree_size=snap.tree_size,
            root_hash_hex=snap.root_hash.hex(),
            previous=previous,
            verify_url=verify_url(public_base_url, project.code, snap.disclosure_id),
            witnessed=_witnessed(facts.witnessed),
        ),
        objection_contact=objection_contact or f"{project.community_name}居民委员会",
        public_url=f"{public_base_url.rstrip('/')}/p/{project.code}",
    )


_NO_ROWS = m.TableTotal(rows=0, amount_fen=0)


def _money(net: dict[str, int]) -> m.MoneyTotals:
    """A period's money from its postings netted by account (kinds' posting rules, ledger/kinds.py)."""
    return m.MoneyTotals(
        contributed_fen=kinds.income_fen(net, "contribution"),
        granted_fen=kinds.income_fen(net, "grant"),
        other_income_fen=kinds.income_fen(net, "other_income"),
        spent_fen=sum(v for k, v in net.items() if k.startswith(EXPENSES_PREFIX)),
        refunded_fen=net.get(REFUNDS, 0),
    )


def _omitted(
    snap: SheetSnapshot,
    public_base_url: str,
    totals: dict[str, m.TableTotal],
    printed: int,
    cut_seq: int | None,
    pledge_lines: list[PledgeLine],
    limit: int,
) -> m.OmittedRows | None:
    """What a sheet too long to print whole leaves out, and where a reader finds it."""
    pledges_cut = len(pledge_lines) < totals["pledges"].rows
    if cut_seq is None and not pledges_cut:
        return None
    base, code = public_base_url.rstrip("/"), snap.project.code
    period = f"from={snap.period_start.isoformat()}&to={snap.period_end.isoformat()}"
    return m.OmittedRows(
        limit=limit,
        rows_total=sum(t.rows for t in totals.values()),
        rows_printed=printed + len(pledge_lines),
        entries_from_seq=cut_seq,
        pledges_after_seq=(pledge_lines[-1].seq if pledge_lines else 0) if pledges_cut else None,
        entries_url=f"{base}/p/{code}/entries",
        export_url=f"{base}/api/v1/projects/{code}/entries.csv?{period}",
        pledges_url=f"{base}/p/{code}/pledges",
    )


def _evaluation(results: Results) -> m.EvaluationBlock | None:
    """共评 results in the publishing snapshot: the same figures as the API and the page."""
    if not results.codes_issued and not results.overall.total:
        return None
    rows = [
        m.ScoreRow(label=label, counts=x.counts, average=x.average, satisfied_rate=x.satisfied_rate)
        for label, x in (
            ("线上（评价码）", results.online),
            ("线下（问卷、共评会）", results.paper),
            ("合计", results.overall),
        )
    ]
    return m.EvaluationBlock(rows=rows, codes_issued=results.codes_issued, tallies=len(results.tallies))


def _witnessed(sheets: list[WitnessedSheet]) -> list[m.WitnessedSheet]:
    """Earlier sheets of the project and who had cosigned them by the snapshot."""
    out = []
    for sheet in sheets:
        names = dict.fromkeys(
            f"{c.witness.name}（{WITNESS_KINDS[c.witness.kind]}）" if c.witness.kind else c.witness.name
            for c in sheet.cosignatures
        )
        if names:
            out.append(
                m.WitnessedSheet(sheet_number=sheet.sheet_number, tree_size=sheet.tree_size, witnesses=list(names))
            )
    return out


def _award(computed: AwardComputation | None) -> m.AwardBlock | None:
    if computed is None:
        return None
    return m.AwardBlock(steps=computed.steps, award_fen=computed.award_fen, granted_fen=computed.inputs.granted_fen)


def _pledge_row(p: PledgeLine) -> m.PledgeRow:
    name, building = shown_contributor(
        p.contributor_name, p.contributor_household, p.contributor_type, anonymous=p.anonymous, erased=p.erased
    )
    return m.PledgeRow(
        seq=p.seq,
        occurred_on=p.occurred_on,
        amount_fen=p.pledged_fen,
        contributor_name=name,
        building=building or "",
        fulfilled_fen=p.fulfilled_fen,
        excess_fen=p.excess_fen,
    )


def _row(kind: str, e: RecordedEntry, src: RecordedEntry, labels: dict[str, str]) -> m.EntryRow:
    reversal = e.kind == "reversal"
    common: dict[str, Any] = {
        "seq": e.seq,
        "occurred_on": e.occurred_on,
        "amount_fen": signed_fen(e.kind, e.amount_fen),
        "is_reversal": reversal,
        "reverses_seq": e.reverses_seq if reversal else None,
        "reversal_reason": e.fields.get("reason") if reversal else None,
    }
    f = src.fields
    name, building = entry_contributor(src)  # every sheet is public: masked
    if kind == "contribution":
        return m.ContributionRow(
            **common,
            contributor_name=name,
            building=building,
            channel_label=CHANNEL_LABELS.get(f.get("channel") or "", ""),
            receipt_no=f.get("receipt_no") or "",
        )
    if kind == "grant":
        return m.GrantRow(**common, grantor=f.get("grantor") or "", document_no=f.get("document_no") or "")
    if kind == "expenditure":
        category = f.get("category") or ""
        return m.ExpenditureRow(
            **common,
            payee=f.get("payee") or "",
            category_label=labels.get(category, category),
            invoice_no=f.get("invoice_no") or "",
            # 审核人: the auditor who approved the voucher (countersigned spending only).
            approver_name=mask_person_name(src.checker.name) if src.checker else "",
        )
    if kind == "other_income":
        return m.OtherIncomeRow(**common, payer=f.get("payer") or "", memo=f.get("memo") or "")
    if kind == "in_kind":
        return m.InKindRow(**common, contributor_name=name, building=building, description=f.get("description") or "")
    return m.RefundRow(**common, contributor_name=name, building=building, memo=f.get("memo") or "")


def _decision_row(d: Decision) -> m.DecisionRow:
    return m.DecisionRow(
        held_on=d.held_on,
        stage_label=STAGE_LABELS.get(d.stage, d.stage),
        body=d.body,
        eligible=d.eligible,
        attendees=d.attendees,
        votes_for=d.votes_for,
        votes_against=d.votes_against,
        votes_abstain=d.votes_abstain,
        summary=d.summary[:200],
    )
