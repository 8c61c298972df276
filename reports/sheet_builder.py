"""Builds a sheet's view model from the ledger, inside the publishing snapshot.

Read side only: everything comes from one REPEATABLE READ transaction (the caller's ``conn``), so
the printed figures, the rows and the pinned root agree. Names are masked here, for every sheet.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from ledger import accounts as acc
from ledger import kinds
from ledger.awards import project_award
from ledger.decisions import STAGE_LABELS, Decision, list_decisions_in
from ledger.disclosures import SheetSnapshot
from ledger.entries import RecordedEntry, get_entry, list_entries
from ledger.evaluations import evaluation_results
from ledger.masking import mask_person_name, public_contributor
from ledger.pledges import PAGE_SIZE_MAX as PLEDGE_PAGE
from ledger.pledges import PledgeLine, list_pledges, pledge_totals
from ledger.summary import project_summary
from ledger.witnesses import KINDS as WITNESS_KINDS
from ledger.witnesses import list_cosignatures
from reports import sheet_model as m
from reports.labels import CHANNEL_LABELS, SOURCE_LABELS

SHEET_PAGE = 5000
# The detail table of each kind of entry (a reversal goes to its original's); pledges have a
# table of their own, cumulative.
TABLE_OF_KIND = {
    "contribution": "contributions",
    "grant": "grants",
    "expenditure": "expenditures",
    "in_kind": "in_kind",
    "refund": "refunds",
}


def verify_url(public_base_url: str, project_code: str, disclosure_id: int | None) -> str:
    """Where the QR code leads: the sheet's own page (its root, the history check, objections);
    a preview, not yet numbered, leads to the project page."""
    base = public_base_url.rstrip("/")
    return f"{base}/d/{disclosure_id}" if disclosure_id is not None else f"{base}/p/{project_code}"


async def build_sheet_model(
    conn: AsyncConnection, snap: SheetSnapshot, *, public_base_url: str, objection_contact: str = ""
) -> m.SheetModel:
    project = snap.project
    limit = m.SHEET_ROWS_MAX
    labels = {line.category: line.label for line in project.budget_lines}
    rows: dict[str, list[Any]] = {k: [] for k in TABLE_OF_KIND}
    printed, cut_seq = await _print_rows(conn, snap, rows, labels, limit)
    # Every figure comes from the ledger, never from the printed rows: a sheet cut at its row
    # limit still adds up every entry of its period.
    period = await _period_money(conn, snap)
    totals = await _table_totals(conn, snap)
    pledge_sum = await pledge_totals(conn, project.id)
    totals["pledges"] = m.TableTotal(
        rows=pledge_sum.count, amount_fen=pledge_sum.pledged_fen, paid_fen=pledge_sum.fulfilled_fen
    )
    pledge_lines = await _pledges(conn, snap, room=limit - printed)
    omitted = _omitted(snap, public_base_url, totals, printed, cut_seq, pledge_lines, limit)
    summary = await project_summary(conn, project)
    decisions = await list_decisions_in(conn, project.id, project.code)
    grant_note = "；".join(await _grant_sources(conn, snap))
    sheet_summary = m.SheetSummary(
        period=period,
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
        participation_rate=(
            min(Decimal(summary.contributors) / Decimal(project.households_in_scope), Decimal(1))
            if project.households_in_scope
            else None
        ),
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
        expenditures=rows["expenditure"],
        in_kind=rows["in_kind"],
        refunds=rows["refund"],
        decisions=[_decision_row(d) for d in decisions],
        pledges=[_pledge_row(p) for p in pledge_lines],
        table_totals=tuple(totals.items()),
        omitted=omitted,
        award=await _award(conn, snap),
        evaluation=await _evaluation(conn, snap),
        verification=m.VerificationBlock(
            tree_size=snap.tree_size,
            root_hash_hex=snap.root_hash.hex(),
            previous=previous,
            verify_url=verify_url(public_base_url, project.code, snap.disclosure_id),
            witnessed=await _witnessed(conn, snap),
        ),
        objection_contact=objection_contact or f"{project.community_name}居民委员会",
        public_url=f"{public_base_url.rstrip('/')}/p/{project.code}",
    )


async def _print_rows(
    conn: AsyncConnection, snap: SheetSnapshot, rows: dict[str, list[Any]], labels: dict[str, str], limit: int
) -> tuple[int, int | None]:
    """Fill ``rows`` (by kind) with the period's entries in seq order, at most ``limit`` rows in
    all. Returns how many were printed and the seq of the first entry left out (None: none)."""
    printed = 0
    by_seq: dict[int, RecordedEntry] = {}
    after = 0
    while True:
        page = await list_entries(
            conn,
            snap.project.code,
            after_seq=after,
            limit=SHEET_PAGE,
            seq_max=snap.tree_size,
            occurred_from=snap.period_start,
            occurred_to=snap.period_end,
        )
        by_seq.update((e.seq, e) for e in page)
        await _with_originals(conn, snap, page, by_seq)
        for e in page:
            source = by_seq[e.reverses_seq] if e.kind == "reversal" and e.reverses_seq else e
            if source.kind not in rows:
                continue  # pledges are summarised, not listed
            if printed == limit:
                return printed, e.seq
            rows[source.kind].append(_row(source.kind, e, source, labels))
            printed += 1
        if len(page) < SHEET_PAGE:
            return printed, None
        after = page[-1].seq


# A period's money by account, from the postings of its entries (reversals post the mirror image
# of their original, so they net out), as of the sheet's tree size.
_PERIOD_MONEY_SQL = text(
    """
    SELECT a.code, sum(CASE WHEN po.side = 'debit' THEN po.amount_fen ELSE -po.amount_fen END) AS net
    FROM entries e
    JOIN postings po ON po.project_id = e.project_id AND po.seq = e.seq
    JOIN accounts a ON a.id = po.account_id
    WHERE e.project_id = :pid AND e.seq <= :size AND e.occurred_on BETWEEN :start AND :end
    GROUP BY a.code
    """
)

# Each detail table's count and signed total over the period: a reversal counts in its
# original's table, negated, as it is printed.
_TABLE_TOTALS_SQL = text(
    """
    SELECT coalesce(o.kind, e.kind) AS kind, count(*) AS rows,
           sum(CASE WHEN e.kind = 'reversal' THEN -e.amount_fen ELSE e.amount_fen END) AS fen
    FROM entries e
    LEFT JOIN entries o ON e.kind = 'reversal' AND o.project_id = e.project_id AND o.seq = e.reverses_seq
    WHERE e.project_id = :pid AND e.seq <= :size AND e.occurred_on BETWEEN :start AND :end
    GROUP BY 1
    """
)

# 拨款单位 and 文号 of the period's grants, each once, in the order they were first recorded.
_GRANT_SOURCES_SQL = text(
    """
    SELECT grantor, document_no FROM entries
    WHERE project_id = :pid AND kind = 'grant' AND seq <= :size AND occurred_on BETWEEN :start AND :end
    GROUP BY grantor, document_no ORDER BY min(seq)
    """
)


def _period_params(snap: SheetSnapshot) -> dict[str, Any]:
    return {"pid": snap.project.id, "size": snap.tree_size, "start": snap.period_start, "end": snap.period_end}


async def _period_money(conn: AsyncConnection, snap: SheetSnapshot) -> m.MoneyTotals:
    net = {r.code: int(r.net) for r in await conn.execute(_PERIOD_MONEY_SQL, _period_params(snap))}
    return m.MoneyTotals(
        contributed_fen=kinds.income_fen(net, "contribution"),
        granted_fen=kinds.income_fen(net, "grant"),
        other_income_fen=kinds.income_fen(net, "other_income"),
        spent_fen=sum(v for k, v in net.items() if k.startswith(acc.EXPENSES_PREFIX)),
        refunded_fen=net.get(acc.REFUNDS, 0),
    )


async def _table_totals(conn: AsyncConnection, snap: SheetSnapshot) -> dict[str, m.TableTotal]:
    found = {r.kind: r for r in await conn.execute(_TABLE_TOTALS_SQL, _period_params(snap))}
    return {
        table: m.TableTotal(rows=int(found[kind].rows), amount_fen=int(found[kind].fen))
        if kind in found
        else m.TableTotal(rows=0, amount_fen=0)
        for kind, table in TABLE_OF_KIND.items()
    }


async def _grant_sources(conn: AsyncConnection, snap: SheetSnapshot) -> list[str]:
    rows = await conn.execute(_GRANT_SOURCES_SQL, _period_params(snap))
    return [f"{r.grantor} {r.document_no or ''}".strip() for r in rows]


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


async def _evaluation(conn: AsyncConnection, snap: SheetSnapshot) -> m.EvaluationBlock | None:
    """共评 results in the publishing snapshot: the same figures as the API and the page."""
    results = await evaluation_results(conn, snap.project.id, snap.project.code)
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


async def _witnessed(conn: AsyncConnection, snap: SheetSnapshot) -> list[m.WitnessedSheet]:
    """Earlier sheets of the project and who had cosigned them by now (this snapshot)."""
    raw = (await conn.get_raw_connection()).driver_connection
    assert raw is not None, "a connection in a transaction has its driver connection"
    sheets = await raw.fetch(
        "SELECT id, sheet_number, tree_size FROM disclosures WHERE project_id = $1 AND sheet_number < $2 "
        "ORDER BY sheet_number",
        snap.project.id,
        snap.sheet_number,
    )
    signed = await list_cosignatures(raw, [r["id"] for r in sheets])
    out = []
    for r in sheets:
        names = dict.fromkeys(
            f"{c.witness.name}（{WITNESS_KINDS[c.witness.kind]}）" if c.witness.kind else c.witness.name
            for c in signed[r["id"]]
        )
        if names:
            out.append(
                m.WitnessedSheet(sheet_number=r["sheet_number"], tree_size=r["tree_size"], witnesses=list(names))
            )
    return out


async def _award(conn: AsyncConnection, snap: SheetSnapshot) -> m.AwardBlock | None:
    """The award as the publishing snapshot sees it (the same connection, the same transaction)."""
    raw = (await conn.get_raw_connection()).driver_connection
    computed = await project_award(raw, snap.project.id)
    if computed is None:
        return None
    return m.AwardBlock(steps=computed.steps, award_fen=computed.award_fen, granted_fen=computed.inputs.granted_fen)


async def _pledges(conn: AsyncConnection, snap: SheetSnapshot, *, room: int) -> list[PledgeLine]:
    """Every pledge not reversed, as of the snapshot (the publishing transaction's): cumulative."""
    out: list[PledgeLine] = []
    after = 0
    while len(out) < room:
        page = await list_pledges(conn, snap.project.id, after_seq=after, limit=PLEDGE_PAGE)
        out.extend(p for p in page if not p.reversed)
        if len(page) < PLEDGE_PAGE:
            break
        after = page[-1].seq
    return out[:room]


def _pledge_row(p: PledgeLine) -> m.PledgeRow:
    name, building = public_contributor(
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


async def _with_originals(
    conn: AsyncConnection, snap: SheetSnapshot, entries: list[RecordedEntry], by_seq: dict[int, RecordedEntry]
) -> None:
    """Adds to ``by_seq`` the originals of the reversals among ``entries`` (which may lie before
    the period): a reversal is printed with its original's kind, payee, contributor and category."""
    for e in entries:
        if e.kind == "reversal" and e.reverses_seq is not None and e.reverses_seq not in by_seq:
            by_seq[e.reverses_seq] = await get_entry(conn, snap.project.code, e.reverses_seq)


def _who(e: RecordedEntry) -> tuple[str, str]:
    c = e.contributor
    if c is None:
        return "", ""
    name, building = public_contributor(c.name, c.household, c.type, anonymous=e.anonymous, erased=c.erased)
    return name, building or ""


def _row(kind: str, e: RecordedEntry, src: RecordedEntry, labels: dict[str, str]) -> m.EntryRow:
    reversal = e.kind == "reversal"
    common: dict[str, Any] = {
        "seq": e.seq,
        "occurred_on": e.occurred_on,
        "amount_fen": -e.amount_fen if reversal else e.amount_fen,
        "is_reversal": reversal,
        "reverses_seq": e.reverses_seq if reversal else None,
        "reversal_reason": e.fields.get("reason") if reversal else None,
    }
    f = src.fields
    name, building = _who(src)
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
