"""Entries (记账凭证): the append transaction.

Drafts and the rules that need no database are in ledger/drafts.py (the kinds in ledger/kinds.py),
the read model in ledger/entry_reads.py.

The append path is the hot path. One transaction per call (one draft, or a batch of up to 10,000):

1. in one round trip (``ledger_append_begin``, migrations/0003): claim the idempotency key
   (advisory try-lock, then look-up — a replay ends here), lock the project's head row (gapless
   ``seq`` comes from it, never from a sequence) and read the project's accounts;
2. read the contributors with their totals, and any reversed originals, in bulk;
3. in Python, under the lock: validate every draft, derive postings, check cash, build the
   canonical documents, hash them and extend the Merkle frontier;
4. write everything — entries, postings, balances, contributor totals, Merkle nodes, the head and
   the stored response — in ONE statement of data-modifying CTEs; then commit (synchronously).

Errors raised by :func:`append_entries` (all leave no trace: no entry, no seq consumed):
NotFound (project), ValidationFailed (bad field, unknown category or contributor, future date),
CountersignRequired (spending above the project's countersign threshold without a checker),
StageForbidsEntry (spending gate), InsufficientFunds (cash would go negative), AlreadyReversed,
Conflict (reversing a reversal, refund beyond what was paid), IdempotencyInFlight,
IdempotencyKeyReused.
"""

from __future__ import annotations

import json
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine

from ledger import awards, merkle, pg
from ledger import kinds as k
from ledger.accounts import EXPENSES_PREFIX, Posting, expense_account
from ledger.canonical import ENTRY_TEXT_FIELDS, SHANGHAI, ContributorStamp, entry_document
from ledger.contributors import Contributor, ContributorAsk, Totals, resolve_contributors_many
from ledger.database import append_group_max
from ledger.decisions import check_spending_allowed
from ledger.drafts import (
    ATTACHMENTS_MAX,
    BATCH_SIZE_MAX,
    CONTRIBUTOR_KINDS,
    COUNTERSIGNED_KINDS,
    TOTAL_FOR_KIND,
    EntryDraft,
    check_static,
)
from ledger.entry_reads import (
    RecordedEntry,
)
from ledger.errors import (
    AlreadyReversed,
    Conflict,
    CountersignRequired,
    EntryWarning,
    IdempotencyInFlight,
    IdempotencyKeyReused,
    InsufficientFunds,
    LedgerError,
    NotFound,
    TokenRevoked,
    ValidationFailed,
)
from ledger.idempotency import IdempotencyRequest, StoredResponse, response_body
from ledger.money import format_fen_grouped
from ledger.pledges import PledgeBook
from ledger.tokens import LIVE_TOKENS_SQL, TOKEN_REVOKED


@dataclass
class AppendResult:
    status: int
    body: str  # JSON text, exactly as first returned
    replayed: bool
    entries: list[RecordedEntry] = field(default_factory=list)


Renderer = Callable[[list[RecordedEntry]], Any]


@dataclass
class _Account:
    id: int
    code: str
    balance_fen: int
    floor_fen: int | None


class _Accounts:
    """A project's accounts by code, as the begin function read them, each made an
    :class:`_Account` when first used: a project has ten or more and an append moves two, and a
    group commit reads every account of each of its projects (py-spy: 2.6 % of the server's
    samples went to making them all)."""

    __slots__ = ("_balances", "_floors", "_ids", "_index", "_made")

    def __init__(self, ids: list[int], codes: list[str], balances: list[int], floors: list[int | None]) -> None:
        self._ids, self._balances, self._floors = ids, balances, floors
        self._index = {code: i for i, code in enumerate(codes)}
        self._made: dict[str, _Account] = {}

    def __contains__(self, code: str) -> bool:
        return code in self._index

    def get(self, code: str) -> _Account | None:
        account = self._made.get(code)
        if account is None:
            i = self._index.get(code)
            if i is None:
                return None
            account = self._made[code] = _Account(self._ids[i], code, self._balances[i], self._floors[i])
        return account

    def __getitem__(self, code: str) -> _Account:
        account = self.get(code)
        if account is None:
            raise KeyError(code)
        return account


@dataclass
class _Original:
    seq: int
    kind: str
    amount_fen: int
    contributor_id: int | None
    postings: list[Posting]
    reversed: bool
    pledge_seq: int | None = None


@dataclass
class _Head:
    project_id: int
    community_id: int
    project_code: str
    spending_gate: str
    size: int
    frontier: merkle.Frontier


async def append_entries(
    engine: AsyncEngine,
    project_code: str,
    drafts: list[EntryDraft],
    *,
    recorded_by: str,
    render: Renderer,
    idempotency: IdempotencyRequest | None = None,
    status: int = 201,
    today: date | None = None,
    after_write: Callable[[asyncpg.Connection, list[RecordedEntry]], Awaitable[None]] | None = None,
    dry_run: bool = False,
    live_token: uuid.UUID | None = None,
) -> AppendResult:
    """Record ``drafts`` all or none, in order. ``render`` shapes the stored response body.
    ``live_token``: a token that must not be revoked, checked first inside the transaction that
    writes (TokenRevoked otherwise: nothing is written or replayed) — for a caller authenticated
    from what the service keeps in memory (api/auth.py).
    ``after_write`` runs in the same transaction after the entries are written (a voucher's
    approval records its event there, so the entry and the event commit together or not at all).
    ``dry_run``: check everything exactly as a real append would (under the project's lock, with
    the same errors), then roll back; the result's ``entries`` are what would have been recorded
    and nothing is written (a spreadsheet import's preview)."""
    if not 1 <= len(drafts) <= BATCH_SIZE_MAX:
        raise ValidationFailed.on("entries", f"一次最多 {BATCH_SIZE_MAX} 条，至少 1 条")
    assert not (dry_run and idempotency), "a dry run records nothing, so it has no key to store"
    today = today or datetime.now(SHANGHAI).date()
    # A single append joins the group commit (ledger/append_group.py, which builds on this module),
    # which answers exactly as the plain path below would.
    from ledger.append_group import groups_for

    if len(drafts) == 1 and after_write is None and not dry_run and append_group_max(engine) > 1:
        return await groups_for(engine).append(
            project_code,
            drafts[0],
            recorded_by=recorded_by,
            render=render,
            idempotency=idempotency,
            status=status,
            today=today,
            live_token=live_token,
        )
    try:
        return await _append(
            engine,
            project_code,
            drafts,
            recorded_by,
            render,
            idempotency,
            status,
            today,
            after_write,
            dry_run,
            live_token,
        )
    except _DryRunDone as done:
        return AppendResult(status=200, body="", replayed=False, entries=done.recorded)


class _DryRunDone(Exception):
    """Leaves a dry run's transaction, which rolls it back (contributors it created go too)."""

    def __init__(self, recorded: list[RecordedEntry]) -> None:
        super().__init__("dry run")
        self.recorded = recorded


async def _append(
    engine: AsyncEngine,
    project_code: str,
    drafts: list[EntryDraft],
    recorded_by: str,
    render: Renderer,
    idempotency: IdempotencyRequest | None,
    status: int,
    today: date,
    after_write: Callable[[asyncpg.Connection, list[RecordedEntry]], Awaitable[None]] | None,
    dry_run: bool,
    live_token: uuid.UUID | None = None,
) -> AppendResult:
    async with pg.transaction(engine) as conn:
        begun = await pg.fetchrow(
            conn,
            _BEGIN,
            code=project_code,
            scope=idempotency.scope if idempotency else None,
            key=idempotency.key if idempotency else None,
            tokens=[live_token] if live_token is not None else [],
        )
        assert begun is not None
        # The token must still stand: read by the begin statement with its snapshot, before the
        # function claimed anything (a revocation committed before it is seen); checked before
        # the outcome, so a revoked caller gets no replay either, and the rollback frees the key.
        if live_token is not None and live_token not in begun["live_tokens"]:
            raise TokenRevoked(TOKEN_REVOKED)
        if begun["outcome"] == "in_flight":
            raise IdempotencyInFlight("相同 Idempotency-Key 的请求正在处理中，请稍后重试")
        if begun["outcome"] == "stored":
            assert idempotency is not None
            if bytes(begun["stored_fingerprint"]) != idempotency.fingerprint:
                raise IdempotencyKeyReused("该 Idempotency-Key 已用于另一个不同的请求")
            return _replay(StoredResponse(begun["stored_status"], begun["stored_body"]))
        if begun["outcome"] == "not_found":
            raise NotFound(f"项目 {project_code} 不存在")
        batch = _Batch.locked(conn, project_code, begun, today)
        await batch.load(drafts)
        recorded = [batch.prepare(i, d, recorded_by) for i, d in enumerate(drafts)]
        if dry_run:
            raise _DryRunDone(recorded)
        body = response_body(render(recorded))
        try:
            await write_rows(conn, batch.rows(recorded, [(idempotency, status, body)]))
            if after_write is not None:
                await after_write(conn, recorded)
        except asyncpg.CheckViolationError as exc:
            # Only a bug (or a concurrent schema change) reaches here: every rule is checked above.
            if exc.constraint_name == "balances_not_below_floor":
                raise InsufficientFunds("现金余额不足") from exc
            raise
    return AppendResult(status=status, body=body, replayed=False, entries=recorded)


def _replay(stored: StoredResponse) -> AppendResult:
    return AppendResult(status=stored.status, body=stored.body, replayed=True)


# Claims the key, locks the head and reads the accounts in one round trip (migrations/0003).
# With the caller's remembered token, if any, and whether it still stands (see _append).
_BEGIN = pg.Query(
    f"SELECT b.*, ARRAY({LIVE_TOKENS_SQL}) AS live_tokens FROM ledger_append_begin(:code, :scope, :key) b"
)
_TOTALS = pg.Query(
    """
    SELECT contributor_id, paid_fen, refunded_fen, pledged_fen, in_kind_fen
    FROM contributor_totals WHERE project_id = :pid AND contributor_id = ANY(CAST(:ids AS bigint[]))
    """
)
_ORIGINALS = pg.Query(
    """
    SELECT e.seq, e.kind, e.amount_fen, e.contributor_id, e.pledge_seq,
           EXISTS (SELECT 1 FROM entries r
                   WHERE r.project_id = e.project_id AND r.reverses_seq = e.seq) AS reversed,
           array_agg(a.code ORDER BY p.line_no) AS accounts,
           array_agg(p.side ORDER BY p.line_no) AS sides,
           array_agg(p.amount_fen ORDER BY p.line_no) AS amounts
    FROM entries e
    JOIN postings p ON p.project_id = e.project_id AND p.seq = e.seq
    JOIN accounts a ON a.id = p.account_id
    WHERE e.project_id = :pid AND e.seq = ANY(CAST(:seqs AS bigint[]))
    GROUP BY e.project_id, e.seq, e.community_id  -- the primary key: the other columns depend on it
    """
)


class _Batch:
    """State of one append transaction: what was read under the lock, and what will be written."""

    @classmethod
    def locked(cls, conn: asyncpg.Connection, project_code: str, begun: asyncpg.Record, today: date) -> _Batch:
        """The batch of a project whose head the begin function (migrations/0003, 0014) has just
        locked: ``begun`` is its row (head, frontier, accounts and balances)."""
        head = _Head(
            project_id=begun["project_id"],
            community_id=begun["community_id"],
            project_code=project_code,
            spending_gate=begun["spending_gate"],
            size=begun["size"],
            frontier=merkle.Frontier.from_bytes(begun["size"], begun["frontier"]),
        )
        batch = cls(conn, head, today)
        batch.accounts = _Accounts(begun["account_ids"], begun["account_codes"], begun["balances"], begun["floors"])
        return batch

    def __init__(self, conn: asyncpg.Connection, head: _Head, today: date) -> None:
        self.conn = conn
        self.head = head
        self.today = today
        self.accounts = _Accounts([], [], [], [])
        self.contributors: list[Contributor | None] = []
        self.originals: dict[int, _Original] = {}
        self.totals: dict[int, dict[str, int]] = {}  # contributor id → current totals
        self.changed_totals: set[int] = set()  # contributors whose totals this batch changes
        self.balance_deltas: dict[int, int] = defaultdict(int)
        self.nodes: list[tuple[merkle.NodeID, bytes]] = []
        self.gate_error: LedgerError | None = None
        self.countersign_over_fen: int | None = None
        self.pledges = PledgeBook()
        self.award: awards.AwardComputation | None = None
        self.award_granted_fen = 0  # cited grants so far, this batch's included

    async def load(self, drafts: list[EntryDraft]) -> None:
        """What the drafts need besides the head and accounts: contributors, originals, the gate."""
        positions, ask = self.contributor_ask(drafts)
        try:
            [(found, totals)] = await resolve_contributors_many(self.conn, [ask])
        except LedgerError as exc:
            if exc.index is not None:
                exc.index = positions[exc.index]
            raise
        self.take_contributors(drafts, positions, found, totals)
        await self.load_rest(drafts)

    async def load_rest(self, drafts: list[EntryDraft]) -> None:
        """Everything but the contributors (a group commit resolves those for all its appends at
        once). Each read is skipped when no draft needs it, as for a plain contribution."""
        await self._load_originals(drafts)
        await self._load_pledges(drafts)
        await self._load_award(drafts)
        await self._load_gate(drafts)
        await self._load_countersign(drafts)
        await self._check_attachments(drafts)

    async def _load_countersign(self, drafts: list[EntryDraft]) -> None:
        if any(d.kind in COUNTERSIGNED_KINDS and d.checker is None for d in drafts):
            self.countersign_over_fen = await self.conn.fetchval(
                "SELECT countersign_over_fen FROM projects WHERE id = $1", self.head.project_id
            )

    async def _check_attachments(self, drafts: list[EntryDraft]) -> None:
        """Every digest names a file this project's community uploaded (422 otherwise)."""
        wanted = {h for d in drafts for h in d.attachments}
        if not wanted:
            return
        rows = await self.conn.fetch(
            "SELECT sha256 FROM attachment_uploads WHERE community_id = $1 AND sha256 = ANY($2::text[])",
            self.head.community_id,
            sorted(wanted),
        )
        known = {r["sha256"] for r in rows}
        for i, d in enumerate(drafts):
            if len(d.attachments) > ATTACHMENTS_MAX:
                raise ValidationFailed.on("attachments", f"附件最多 {ATTACHMENTS_MAX} 个").at(i)
            for h in d.attachments:
                if h not in known:
                    raise ValidationFailed.on("attachments", f"附件 {h[:12]}… 未上传到本社区").at(i)

    def contributor_ask(self, drafts: list[EntryDraft]) -> tuple[list[int], ContributorAsk]:
        """The drafts that name a contributor (their positions) and what to ask for them."""
        positions = [i for i, d in enumerate(drafts) if d.kind in CONTRIBUTOR_KINDS and d.contributor]
        for i, d in enumerate(drafts):
            if d.kind in CONTRIBUTOR_KINDS and d.contributor is None:
                raise ValidationFailed.on("contributor", "须提供出资人").at(i)
        refs = [drafts[i].contributor for i in positions]
        create = [k.get(drafts[i].kind).creates_contributor for i in positions]
        return positions, ContributorAsk(self.head.community_id, self.head.project_id, refs, create)  # type: ignore[arg-type]

    def take_contributors(
        self, drafts: list[EntryDraft], positions: list[int], found: list[Contributor], totals: dict[int, Totals]
    ) -> None:
        self.contributors = [None] * len(drafts)
        for i, c in zip(positions, found, strict=True):
            self.contributors[i] = c
        # Contributors with no totals yet in this project start from zero; totals this transaction
        # already moved (an earlier append of a group, ledger/append_group.py) are kept.
        for contributor_id, read in totals.items():
            self.totals.setdefault(contributor_id, read)
        for c in found:
            self.totals.setdefault(c.id, dict.fromkeys(k.CONTRIBUTOR_TOTALS, 0))

    async def _load_totals(self, contributor_ids: set[int]) -> None:
        ids = [i for i in contributor_ids if i not in self.totals]
        if ids:
            for r in await pg.fetch(self.conn, _TOTALS, pid=self.head.project_id, ids=ids):
                self.totals[r["contributor_id"]] = {
                    "paid": r["paid_fen"],
                    "refunded": r["refunded_fen"],
                    "pledged": r["pledged_fen"],
                    "in_kind": r["in_kind_fen"],
                }

    async def _load_originals(self, drafts: list[EntryDraft]) -> None:
        seqs = [d.reverses_seq for d in drafts if d.kind == "reversal" and d.reverses_seq is not None]
        seqs = [s for s in seqs if 0 < s <= self.head.size]
        if not seqs:
            return
        for r in await pg.fetch(self.conn, _ORIGINALS, pid=self.head.project_id, seqs=seqs):
            self.originals[r["seq"]] = _Original(
                seq=r["seq"],
                kind=r["kind"],
                amount_fen=r["amount_fen"],
                contributor_id=r["contributor_id"],
                postings=[Posting(a, s, n) for a, s, n in zip(r["accounts"], r["sides"], r["amounts"], strict=True)],
                reversed=r["reversed"],
                pledge_seq=r["pledge_seq"],
            )
        # A reversal moves its original contributor's totals, who need not be named in this batch.
        await self._load_totals({o.contributor_id for o in self.originals.values() if o.contributor_id is not None})

    async def _load_pledges(self, drafts: list[EntryDraft]) -> None:
        """The pledges named by contributions, and those a reversal touches (a reversed pledge, or
        the pledge a reversed contribution named). Later pledges of this batch are opened in memory."""
        seqs = {d.pledge_seq for d in drafts if d.pledge_seq is not None and d.pledge_seq <= self.head.size}
        for o in self.originals.values():
            if o.kind == "pledge":
                seqs.add(o.seq)
            elif o.pledge_seq is not None:
                seqs.add(o.pledge_seq)
        await self.pledges.load(self.conn, self.head.project_id, seqs)

    async def _load_award(self, drafts: list[EntryDraft]) -> None:
        """The award as the ledger stands before this batch (under the lock: no other append moves
        it meanwhile), for grants that cite it."""
        if any(d.cites_award for d in drafts):
            self.award = await awards.project_award(self.conn, self.head.project_id)
            if self.award is not None:
                self.award_granted_fen = self.award.inputs.granted_fen

    # -- per draft, in memory, under the lock --------------------------------------------------

    def prepare(self, index: int, draft: EntryDraft, recorded_by: str) -> RecordedEntry:
        try:
            return self._prepare(index, draft, recorded_by)
        except LedgerError as exc:
            raise exc.at(index) if exc.index is None else exc from None

    def _prepare(self, index: int, draft: EntryDraft, recorded_by: str) -> RecordedEntry:
        check_static(draft, self.today)
        contributor = self.contributors[index] if self.contributors else None
        original: _Original | None = None
        if draft.kind == "reversal":
            original = self._original_for(draft)
            amount_fen = original.amount_fen
            postings = [p.mirrored() for p in original.postings]
        else:
            assert draft.amount_fen is not None
            amount_fen = draft.amount_fen
            kind = k.get(draft.kind)
            if kind.debit == EXPENSES_PREFIX and expense_account(draft.category or "") not in self.accounts:
                raise ValidationFailed.on("category", f"预算科目 {draft.category} 不在本项目预算中")
            if kind.countersigned:
                self._check_countersign(draft, amount_fen)
            if kind.debit == EXPENSES_PREFIX:
                self._check_spending_gate()
            postings = k.postings_for(draft.kind, amount_fen, draft.category)
        self._apply_contributor_totals(draft, contributor, original, amount_fen)
        self._apply_postings(postings)

        seq = self.head.size + 1
        warnings = self._apply_pledges(seq, draft, contributor, original, amount_fen)
        award_basis, award_warnings = self._cite_award(draft, amount_fen)
        warnings += award_warnings
        recorded_at = datetime.now(SHANGHAI)
        fields = draft.kind_fields()
        stamp = None
        anonymous = bool(draft.contributor and draft.contributor.anonymous)
        anonymous_id = uuid.uuid4() if contributor is not None and anonymous else None
        commitment = None
        if contributor is not None:
            assert contributor.commitment is not None, "a contributor matched for a new entry is not erased"
            if anonymous_id is not None:
                commitment = contributor.anonymous_commitment(anonymous_id)
                stamp = ContributorStamp(str(anonymous_id), contributor.type, commitment)
            else:
                commitment = contributor.commitment
                stamp = ContributorStamp(str(contributor.public_id), contributor.type, commitment)
        document = entry_document(
            project_code=self.head.project_code,
            seq=seq,
            kind=draft.kind,
            amount_fen=amount_fen,
            occurred_on=draft.occurred_on,
            recorded_at=recorded_at,
            fields=fields,
            contributor=stamp,
            anonymous=anonymous,
            postings=postings,
            reverses_seq=draft.reverses_seq,
            maker=draft.maker,
            checker=draft.checker,
            attachments=draft.attachments,
            pledge_seq=draft.pledge_seq,
            award_basis=award_basis,
        )
        leaf = merkle.leaf_hash(document)
        self.nodes.extend(self.head.frontier.append(leaf))
        self.head.size = seq
        if original is not None:
            original.reversed = True
        self.originals[seq] = _Original(
            seq=seq,
            kind=draft.kind,
            amount_fen=amount_fen,
            contributor_id=contributor.id if contributor else None,
            postings=postings,
            reversed=False,
            pledge_seq=draft.pledge_seq,
        )
        return RecordedEntry(
            project_code=self.head.project_code,
            seq=seq,
            kind=draft.kind,
            amount_fen=amount_fen,
            occurred_on=draft.occurred_on,
            recorded_at=recorded_at,
            recorded_by=recorded_by,
            fields=fields,
            contributor=contributor,
            anonymous=anonymous,
            postings=postings,
            reverses_seq=draft.reverses_seq,
            reversed_by=None,
            document=document.decode(),
            leaf_hash=leaf,
            tree_size=seq,
            root_hash=self.head.frontier.root(),
            anonymous_id=anonymous_id,
            commitment=commitment,
            maker=draft.maker,
            checker=draft.checker,
            attachments=draft.attachments,
            pledge_seq=draft.pledge_seq,
            award_basis=award_basis,
            warnings=warnings,
        )

    def _original_for(self, draft: EntryDraft) -> _Original:
        assert draft.reverses_seq is not None
        original = self.originals.get(draft.reverses_seq)
        if original is None:
            raise ValidationFailed.on("reverses", f"第 {draft.reverses_seq} 号记录不存在")
        if original.kind == "reversal":
            raise Conflict("冲正记录不能再被冲正，请另录一笔新记录")
        if original.reversed:
            raise AlreadyReversed(f"第 {original.seq} 号记录已被冲正")
        return original

    def _check_countersign(self, draft: EntryDraft, amount_fen: int) -> None:
        threshold = self.countersign_over_fen
        if draft.checker is None and threshold is not None and amount_fen > threshold:
            raise CountersignRequired(
                f"本项目 {format_fen_grouped(threshold)} 元以上的支出和退款须由报账员提交凭证、"
                "审核人复核后记账（POST …/vouchers）"
            )

    def _check_spending_gate(self) -> None:
        if self.gate_error is not None:
            raise self.gate_error

    async def _load_gate(self, drafts: list[EntryDraft]) -> None:
        """Decide once per transaction whether spending is open; raised at the first expenditure,
        after that draft's own 422 checks (error precedence: 422 before 409)."""
        if any(k.get(d.kind).debit == EXPENSES_PREFIX for d in drafts if d.kind in k.BY_NAME):
            try:
                await check_spending_allowed(
                    self.conn, self.head.project_id, self.today, waived=self.head.spending_gate == "waived"
                )
            except LedgerError as exc:
                self.gate_error = exc

    def _apply_contributor_totals(
        self, draft: EntryDraft, contributor: Contributor | None, original: _Original | None, amount_fen: int
    ) -> None:
        if original is not None:
            kind, contributor_id, sign = original.kind, original.contributor_id, -1
        else:
            kind, contributor_id, sign = draft.kind, contributor.id if contributor else None, 1
        total = TOTAL_FOR_KIND.get(kind)
        if total is None or contributor_id is None:
            return
        current = self.totals.setdefault(contributor_id, dict.fromkeys(k.CONTRIBUTOR_TOTALS, 0))
        after = dict(current)
        after[total] += sign * amount_fen
        if after["refunded"] > after["paid"]:
            if draft.kind == "refund":
                raise Conflict(
                    f"退款 {format_fen_grouped(amount_fen)} 元超过该出资人已出资未退金额 "
                    f"{format_fen_grouped(current['paid'] - current['refunded'])} 元"
                )
            raise Conflict("该笔出资已有退款，须先冲正退款")
        current.update(after)
        self.changed_totals.add(contributor_id)

    def _apply_pledges(
        self, seq: int, draft: EntryDraft, contributor: Contributor | None, original: _Original | None, amount_fen: int
    ) -> list[EntryWarning]:
        if original is not None:
            self.pledges.reverse(original.kind, original.seq, original.pledge_seq, amount_fen)
            return []
        anonymous = bool(draft.contributor and draft.contributor.anonymous)
        if draft.kind == "pledge":
            assert contributor is not None, "a pledge names its contributor"
            self.pledges.open(seq, contributor.id, anonymous, amount_fen)
        elif draft.pledge_seq is not None:
            assert contributor is not None, "a contribution names its contributor"
            return self.pledges.fulfil(draft.pledge_seq, contributor.id, anonymous, amount_fen)
        return []

    def _cite_award(self, draft: EntryDraft, amount_fen: int) -> tuple[dict[str, Any] | None, list[EntryWarning]]:
        """A grant citing the award: its basis, and a warning when it is not (or no longer) due.
        The grant is recorded all the same: the money arrived, and the sheet shows both figures."""
        if not draft.cites_award:
            return None, []
        if self.award is None:
            raise ValidationFailed.on("cites_award", "本项目未适用以奖代补政策，无可引用的核算")
        award = self.award
        warnings = []
        if not award.eligible:
            warnings.append(
                EntryWarning(
                    "award_not_eligible", "按政策核算本项目暂不符合以奖代补条件（应奖 0.00 元），本笔仍照实入账"
                )
            )
        elif self.award_granted_fen + amount_fen > award.award_fen:
            due = max(award.award_fen - self.award_granted_fen, 0)
            warnings.append(
                EntryWarning(
                    "award_exceeded",
                    f"本笔 {format_fen_grouped(amount_fen)} 元超出按政策核算尚待拨付的 {format_fen_grouped(due)} 元"
                    f"（应奖 {format_fen_grouped(award.award_fen)} 元），本笔仍照实入账",
                )
            )
        self.award_granted_fen += amount_fen
        return award.basis(), warnings

    def _apply_postings(self, postings: list[Posting]) -> None:
        for posting in postings:
            account = self.accounts.get(posting.account)
            assert account is not None, f"account {posting.account} exists for this project"
            after = account.balance_fen + posting.delta_fen
            if account.floor_fen is not None and after < account.floor_fen:
                raise InsufficientFunds(
                    f"现金余额不足：当前结余 {format_fen_grouped(account.balance_fen)} 元，"
                    f"本笔需 {format_fen_grouped(posting.amount_fen)} 元"
                )
        for posting in postings:
            account = self.accounts[posting.account]
            account.balance_fen += posting.delta_fen
            self.balance_deltas[account.id] += posting.delta_fen

    # -- the one write -------------------------------------------------------------------------

    def rows(
        self,
        recorded: list[RecordedEntry],
        responses: list[tuple[IdempotencyRequest | None, int, str]],
        out: _Rows | None = None,
    ) -> _Rows:
        """Everything this project's appends in this transaction write, as columns (see
        :func:`write_rows`); ``responses`` are the (key, status, body) to store, one per request.
        Added to ``out`` when given (a group commit's projects share one set of columns)."""
        cid, pid = self.head.community_id, self.head.project_id
        if out is None:
            out = _Rows()
        e, p = out.cols["e"], out.cols["p"]
        for r in recorded:
            e["cid"].append(cid)
            e["pid"].append(pid)
            e["seq"].append(r.seq)
            e["kind"].append(r.kind)
            e["amount"].append(r.amount_fen)
            e["occurred_on"].append(r.occurred_on)
            e["recorded_at"].append(r.recorded_at)
            e["recorded_by"].append(r.recorded_by)
            e["contributor_id"].append(r.contributor.id if r.contributor else None)
            e["commitment"].append(r.commitment)
            e["anonymous"].append(r.anonymous)
            e["anonymous_id"].append(r.anonymous_id)
            for name in _TEXT_FIELDS:
                e[name].append(r.fields.get(name))
            e["reverses_seq"].append(r.reverses_seq)
            e["document"].append(r.document)
            e["leaf_hash"].append(r.leaf_hash)
            e["maker_role"].append(r.maker.role if r.maker else None)
            e["maker_name"].append(r.maker.name if r.maker else None)
            e["checker_role"].append(r.checker.role if r.checker else None)
            e["checker_name"].append(r.checker.name if r.checker else None)
            # A text[] column inside an unnest of arrays: carried as one JSON text per entry.
            e["attachments"].append(json.dumps(list(r.attachments)) if r.attachments else None)
            e["pledge_seq"].append(r.pledge_seq)
            e["award_basis"].append(awards.basis_text(r.award_basis) if r.award_basis else None)
            for line_no, posting in enumerate(r.postings, start=1):
                p["cid"].append(cid)
                p["pid"].append(pid)
                p["seq"].append(r.seq)
                p["line_no"].append(line_no)
                p["account_id"].append(self.accounts[posting.account].id)
                p["side"].append(posting.side)
                p["amount"].append(posting.amount_fen)
        b = out.cols["b"]
        for account_id, delta in self.balance_deltas.items():
            b["account"].append(account_id)
            b["delta"].append(delta)
            b["last_seq"].append(self.head.size)
        n = out.cols["n"]
        for (level, idx), hash_ in self.nodes:
            n["cid"].append(cid)
            n["pid"].append(pid)
            n["level"].append(level)
            n["idx"].append(idx)
            n["hash"].append(hash_)
        # Absolute values, read and changed under the project's lock (a delta row could fail the
        # table's CHECK before ON CONFLICT merges it).
        t = out.cols["t"]
        for contributor_id in self.changed_totals:
            d = self.totals[contributor_id]
            t["cid"].append(cid)
            t["pid"].append(pid)
            t["id"].append(contributor_id)
            for name in ("paid", "refunded", "pledged", "in_kind"):
                t[name].append(d.get(name, 0))
        g = out.cols["g"]
        for pledge in self.pledges.rows():
            g["cid"].append(cid)
            g["pid"].append(pid)
            g["seq"].append(pledge.seq)
            g["contributor"].append(pledge.contributor_id)
            g["pledged"].append(pledge.pledged_fen)
            g["paid"].append(pledge.paid_fen)
            g["reversed"].append(pledge.reversed)
        i = out.cols["i"]
        for idem, status, body in responses:
            if idem is not None:
                i["cid"].append(cid)
                i["scope"].append(idem.scope)
                i["key"].append(idem.key)
                i["fingerprint"].append(idem.fingerprint)
                i["status"].append(status)
                i["body"].append(body)
        h = out.cols["h"]
        h["pid"].append(pid)
        h["size"].append(self.head.size)
        h["frontier"].append(self.head.frontier.to_bytes())
        h["root"].append(self.head.frontier.root())
        return out


# The columns of each table written by an append, by prefix: e entries, p postings, b balances,
# n merkle_nodes, t contributor_totals, g pledge_totals, i idempotency_keys, h project_heads.
_ROW_COLUMNS: dict[str, tuple[str, ...]] = {
    "e": (
        "cid",
        "pid",
        "seq",
        "kind",
        "amount",
        "occurred_on",
        "recorded_at",
        "recorded_by",
        "contributor_id",
        "commitment",
        "anonymous",
        "anonymous_id",
        *ENTRY_TEXT_FIELDS,
        "reverses_seq",
        "document",
        "leaf_hash",
        "maker_role",
        "maker_name",
        "checker_role",
        "checker_name",
        "attachments",
        "pledge_seq",
        "award_basis",
    ),
    "p": ("cid", "pid", "seq", "line_no", "account_id", "side", "amount"),
    "b": ("account", "delta", "last_seq"),
    "n": ("cid", "pid", "level", "idx", "hash"),
    "t": ("cid", "pid", "id", "paid", "refunded", "pledged", "in_kind"),
    "g": ("cid", "pid", "seq", "contributor", "pledged", "paid", "reversed"),
    "i": ("cid", "scope", "key", "fingerprint", "status", "body"),
    "h": ("pid", "size", "frontier", "root"),
}


@dataclass
class _Rows:
    cols: dict[str, dict[str, list[Any]]] = field(
        default_factory=lambda: {t: {c: [] for c in cs} for t, cs in _ROW_COLUMNS.items()}
    )


async def write_rows(conn: asyncpg.Connection, rows: _Rows) -> None:
    """Write the rows of one or more appends (of several projects: a group commit's) in ONE
    statement of data-modifying CTEs.

    A column with no value but NULL goes as a NULL array, not as an array of NULLs: a multi-
    argument ``unnest`` pads a NULL array with NULLs as it pads any shorter one, so the rows are
    the same, and asyncpg does not encode element by element the dozen columns a contribution
    leaves empty (memo, payee, reversal, signers, …). py-spy found 8 % of the server's samples
    encoding this statement's arrays; with this and one set of columns per group (not one per
    project, flattened), the server's CPU per append fell by 9 % (docs/performance.md §5)."""
    params: dict[str, list[Any] | None] = {}
    for table, columns in rows.cols.items():
        for column, values in columns.items():
            params[f"{table}_{column}"] = None if values.count(None) == len(values) else values
    await pg.execute(conn, _WRITE_SQL, **params)


_TEXT_FIELDS = ENTRY_TEXT_FIELDS

_WRITE_SQL = pg.Query(
    """
    WITH new_entries AS (
        INSERT INTO entries (community_id, project_id, seq, kind, amount_fen, occurred_on, recorded_at,
                             recorded_by, contributor_id, contributor_commitment, anonymous, memo, channel,
                             receipt_no, grantor, document_no, payee, category, invoice_no, description,
                             reason, payer, reverses_seq, document, leaf_hash, anonymous_id,
                             maker_role, maker_name, checker_role, checker_name, attachments, pledge_seq,
                             award_basis)
        SELECT u.cid, u.pid, u.seq, u.kind, u.amount, u.occurred_on, u.recorded_at, u.recorded_by,
               u.contributor_id, u.commitment, u.anonymous, u.memo, u.channel, u.receipt_no, u.grantor,
               u.document_no, u.payee, u.category, u.invoice_no, u.description, u.reason, u.payer, u.reverses_seq,
               u.document, u.leaf_hash, u.anonymous_id, u.maker_role, u.maker_name, u.checker_role,
               u.checker_name,
               CASE WHEN u.attachments IS NULL THEN NULL
                    ELSE ARRAY(SELECT jsonb_array_elements_text(CAST(u.attachments AS jsonb))) END,
               u.pledge_seq, u.award_basis
        FROM unnest(
            CAST(:e_cid AS bigint[]), CAST(:e_pid AS bigint[]),
            CAST(:e_seq AS bigint[]), CAST(:e_kind AS text[]), CAST(:e_amount AS bigint[]),
            CAST(:e_occurred_on AS date[]), CAST(:e_recorded_at AS timestamptz[]),
            CAST(:e_recorded_by AS text[]), CAST(:e_contributor_id AS bigint[]),
            CAST(:e_commitment AS bytea[]), CAST(:e_anonymous AS boolean[]), CAST(:e_anonymous_id AS uuid[]),
            CAST(:e_memo AS text[]), CAST(:e_channel AS text[]), CAST(:e_receipt_no AS text[]),
            CAST(:e_grantor AS text[]), CAST(:e_document_no AS text[]), CAST(:e_payee AS text[]),
            CAST(:e_category AS text[]), CAST(:e_invoice_no AS text[]), CAST(:e_description AS text[]),
            CAST(:e_reason AS text[]), CAST(:e_payer AS text[]),
            CAST(:e_reverses_seq AS bigint[]), CAST(:e_document AS text[]), CAST(:e_leaf_hash AS bytea[]),
            CAST(:e_maker_role AS text[]), CAST(:e_maker_name AS text[]),
            CAST(:e_checker_role AS text[]), CAST(:e_checker_name AS text[]), CAST(:e_attachments AS text[]),
            CAST(:e_pledge_seq AS bigint[]), CAST(:e_award_basis AS text[]))
            AS u(cid, pid, seq, kind, amount, occurred_on, recorded_at, recorded_by, contributor_id, commitment,
                 anonymous, anonymous_id, memo, channel, receipt_no, grantor, document_no, payee, category,
                 invoice_no, description, reason, payer, reverses_seq, document, leaf_hash, maker_role,
                 maker_name, checker_role, checker_name, attachments, pledge_seq, award_basis)
        RETURNING 1
    ), new_postings AS (
        INSERT INTO postings (community_id, project_id, seq, line_no, account_id, side, amount_fen)
        SELECT * FROM unnest(
            CAST(:p_cid AS bigint[]), CAST(:p_pid AS bigint[]),
            CAST(:p_seq AS bigint[]), CAST(:p_line_no AS smallint[]), CAST(:p_account_id AS bigint[]),
            CAST(:p_side AS text[]), CAST(:p_amount AS bigint[]))
        RETURNING 1
    ), moved_balances AS (
        UPDATE balances b SET balance_fen = b.balance_fen + d.delta, last_seq = d.last_seq
        FROM unnest(CAST(:b_account AS bigint[]), CAST(:b_delta AS bigint[]), CAST(:b_last_seq AS bigint[]))
            AS d(account_id, delta, last_seq)
        WHERE b.account_id = d.account_id
        RETURNING 1
    ), new_nodes AS (
        INSERT INTO merkle_nodes (community_id, project_id, level, idx, hash)
        SELECT * FROM unnest(
            CAST(:n_cid AS bigint[]), CAST(:n_pid AS bigint[]),
            CAST(:n_level AS smallint[]), CAST(:n_idx AS bigint[]), CAST(:n_hash AS bytea[]))
        RETURNING 1
    ), moved_totals AS (
        INSERT INTO contributor_totals AS t
            (community_id, project_id, contributor_id, paid_fen, refunded_fen, pledged_fen, in_kind_fen)
        SELECT * FROM unnest(
            CAST(:t_cid AS bigint[]), CAST(:t_pid AS bigint[]),
            CAST(:t_id AS bigint[]), CAST(:t_paid AS bigint[]), CAST(:t_refunded AS bigint[]),
            CAST(:t_pledged AS bigint[]), CAST(:t_in_kind AS bigint[]))
        ON CONFLICT (project_id, contributor_id, community_id) DO UPDATE SET
            paid_fen = EXCLUDED.paid_fen,
            refunded_fen = EXCLUDED.refunded_fen,
            pledged_fen = EXCLUDED.pledged_fen,
            in_kind_fen = EXCLUDED.in_kind_fen
        RETURNING 1
    ), moved_pledges AS (
        INSERT INTO pledge_totals AS g (community_id, project_id, pledge_seq, contributor_id, pledged_fen, paid_fen,
                                        reversed)
        SELECT * FROM unnest(
            CAST(:g_cid AS bigint[]), CAST(:g_pid AS bigint[]),
            CAST(:g_seq AS bigint[]), CAST(:g_contributor AS bigint[]), CAST(:g_pledged AS bigint[]),
            CAST(:g_paid AS bigint[]), CAST(:g_reversed AS boolean[]))
        ON CONFLICT (project_id, pledge_seq, community_id) DO UPDATE SET paid_fen = EXCLUDED.paid_fen, reversed = EXCLUDED.reversed
        RETURNING 1
    ), stored_responses AS (
        INSERT INTO idempotency_keys (community_id, scope, key, fingerprint, status, body)
        SELECT * FROM unnest(
            CAST(:i_cid AS bigint[]), CAST(:i_scope AS text[]), CAST(:i_key AS text[]),
            CAST(:i_fingerprint AS bytea[]), CAST(:i_status AS smallint[]), CAST(:i_body AS text[]))
        RETURNING 1
    )
    UPDATE project_heads h
    SET size = u.size, frontier = u.frontier, root_hash = u.root, updated_at = now()
    FROM unnest(CAST(:h_pid AS bigint[]), CAST(:h_size AS bigint[]), CAST(:h_frontier AS bytea[]),
                CAST(:h_root AS bytea[])) AS u(pid, size, frontier, root)
    WHERE h.project_id = u.pid
    """
)
