"""Group commit: concurrent single appends share one transaction (issue 14).

An append's cost is mostly per transaction, not per entry: the round trips (begin, contributors,
write, commit), the statements' planning and execution, the WAL flush. bench/append.py measured a
batch of 8 entries at a fifth of the database's CPU per entry of 8 single appends. So single
appends arriving while others are being written wait in a queue, and the next transaction takes
them all, up to ``max_size``, the way TigerBeetle batches its requests. Appends of one project
follow one another in the group on its one locked head, like the drafts of a batch (a busy
project's contributions on a 众筹 evening are the common case):

1. ``ledger_append_begin_many`` (migrations/0014) claims every idempotency key and locks every
   project's head in one round trip (a replay or an in-flight key is answered at once; a head
   another transaction holds comes back ``busy``, see below);
2. the contributors of all of them are found (and created) in one or two round trips;
3. each append is checked, hashed and added to its project's tree in Python, exactly as alone
   (``ledger.entries._Batch``: the same code);
4. everything is written by one statement, and committed once. Only then is any caller answered.

No guarantee changes: an append is acknowledged after its commit; each project's ``seq`` comes
from its own locked head, so stays gapless; each append keeps its own idempotency key and stored
response. What could differ is failure, and there a group never decides: if anything fails in a
group of more than one (a refused append, a lost race creating a contributor), the transaction
is rolled back and each append of the group is run again **on its own** (the plain path of
:func:`ledger.entries.append_entries`), so every caller gets exactly the answer — and the ledger
exactly the effects — it would have got alone. A group of one is that plain transaction already.

Under no load nothing waits: a request that arrives while fewer than ``in_flight`` groups are
being written starts a group at once (of one). Under load, requests queue while groups are in
flight and the next group takes them. Requests for a project already in a group in flight wait
for the next group; a project whose head is held by another transaction (a long import, another
worker) is not waited for inside a group: it is appended on its own after the group. A project's
second and later appends in a group are plain ones (:func:`_joins_a_batch`); a reversal, an
expenditure and the like for a project already in a group go alone at once and queue on the
project's lock behind it, as they would without group commit.
"""

from __future__ import annotations

import asyncio
import uuid
import weakref
from collections import deque
from collections.abc import Coroutine
from dataclasses import dataclass
from datetime import date

import asyncpg
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ledger import pg
from ledger.contributors import resolve_contributors_many
from ledger.database import append_group_max
from ledger.drafts import EntryDraft
from ledger.entries import (
    AppendResult,
    Renderer,
    _append,
    _Batch,
    _replay,
    _Rows,
    write_rows,
)
from ledger.entry_reads import RecordedEntry
from ledger.errors import IdempotencyInFlight, IdempotencyKeyReused, LedgerError, NotFound, TokenRevoked
from ledger.idempotency import IdempotencyRequest, StoredResponse, response_body
from ledger.tokens import LIVE_TOKENS_SQL, TOKEN_REVOKED

GROUP_SIZE_MAX = 32
# One group is written at a time; a second starts only while SECOND_GROUP_WAITING appends wait
# (bench/append.py and bench/append_http.py measured two groups always in flight at the same rate
# with half the group size, so more of the database's CPU per append). The second also keeps the
# queue moving if a group is held up, say behind another transaction creating the same person.
IN_FLIGHT_MAX = 2
SECOND_GROUP_WAITING = 8

# The tokens the group's callers were authenticated with from memory that still stand are read in
# the same statement (see _commit).
_BEGIN_MANY = pg.Query(
    f"SELECT b.*, ARRAY({LIVE_TOKENS_SQL}) AS live_tokens "
    "FROM ledger_append_begin_many(:codes, :scopes, :keys) b ORDER BY b.ord"
)


@dataclass
class _Request:
    project_code: str
    draft: EntryDraft
    recorded_by: str
    render: Renderer
    idempotency: IdempotencyRequest | None
    status: int
    today: date
    done: asyncio.Future[AppendResult]
    live_token: uuid.UUID | None = None  # must still stand when the group writes (see append_entries)

    def key(self) -> tuple[str, str] | None:
        return (self.idempotency.scope, self.idempotency.key) if self.idempotency else None

    def settle(self, result: AppendResult | BaseException) -> None:
        if self.done.done():  # the caller went away (its request was cancelled): nothing to tell
            return
        if isinstance(result, BaseException):
            self.done.set_exception(result)
        else:
            self.done.set_result(result)

    async def alone(self, engine: AsyncEngine) -> None:
        """This append in a transaction of its own: the plain path."""
        try:
            result = await _append(
                engine,
                self.project_code,
                [self.draft],
                self.recorded_by,
                self.render,
                self.idempotency,
                self.status,
                self.today,
                None,
                False,
                self.live_token,
            )
        except Exception as exc:  # handed to the caller, who raises it
            self.settle(exc)
        else:
            self.settle(result)


class AppendGroups:
    """The queue of one engine's single appends, in one event loop."""

    def __init__(self, engine: AsyncEngine, *, max_size: int = GROUP_SIZE_MAX, in_flight: int = IN_FLIGHT_MAX):
        self.engine = engine
        self.max_size = max_size
        self.in_flight_max = in_flight
        self.pending: deque[_Request] = deque()
        self.busy_projects: set[str] = set()  # projects in a group being written
        self.groups_in_flight = 0
        self.tasks: set[asyncio.Task[None]] = set()
        self.loop = asyncio.get_running_loop()
        # Pooled connections kept between groups while appends keep coming (see _run).
        self.idle: list[AsyncConnection] = []
        # Figures for tests and benches: how many groups, and how many appends they carried.
        self.groups_run = 0
        self.appends_grouped = 0

    async def append(
        self,
        project_code: str,
        draft: EntryDraft,
        *,
        recorded_by: str,
        render: Renderer,
        idempotency: IdempotencyRequest | None,
        status: int,
        today: date,
        live_token: uuid.UUID | None = None,
    ) -> AppendResult:
        done: asyncio.Future[AppendResult] = self.loop.create_future()
        request = _Request(project_code, draft, recorded_by, render, idempotency, status, today, done, live_token)
        if project_code in self.busy_projects and not _joins_a_batch(draft):
            # It could not join the next group's batch of this project either: queue on the
            # project's lock now, as without group commit.
            self._spawn(request.alone(self.engine))
        else:
            self.pending.append(request)
            self._start_groups()
        return await done

    def _start_groups(self) -> None:
        while self.pending and self.groups_in_flight < self.in_flight_max:
            if self.groups_in_flight and len(self.pending) < SECOND_GROUP_WAITING:
                return
            group = self._take()
            if not group:
                return  # everything pending is for a project in flight: its group starts the next
            self.groups_in_flight += 1
            self.busy_projects.update(r.project_code for r in group)
            self._spawn(self._run(group))

    def _take(self) -> list[_Request]:
        """Up to max_size pending requests, none for a project in flight nor with an idempotency
        key already taken; a project's second and later requests only if plain (see
        :func:`_joins_a_batch`). Plain requests left out keep their place in the queue; one that
        is not plain, for a project in this group or in flight, goes alone at once (it queues on
        the project's lock behind the group, as it would without group commit)."""
        group: list[_Request] = []
        projects: set[str] = set()
        keys: set[tuple[str, str]] = set()
        kept: deque[_Request] = deque()
        while self.pending:
            r = self.pending.popleft()
            key = r.key()
            taken = r.project_code in projects or r.project_code in self.busy_projects
            if taken and not _joins_a_batch(r.draft):
                self._spawn(r.alone(self.engine))
                continue
            if len(group) >= self.max_size or r.project_code in self.busy_projects or (key is not None and key in keys):
                kept.append(r)
                continue
            group.append(r)
            projects.add(r.project_code)
            if key is not None:
                keys.add(key)
        self.pending = kept
        return group

    def _spawn(self, work: Coroutine[None, None, None]) -> None:
        task = asyncio.ensure_future(work)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _run(self, group: list[_Request]) -> None:
        busy: list[_Request] = []
        try:
            busy = await self._commit(group)
        except Exception as exc:  # see the module docstring
            if len(group) == 1:
                group[0].settle(exc)
            else:
                for r in group:
                    self._spawn(r.alone(self.engine))
        finally:
            self.groups_in_flight -= 1
            self.busy_projects.difference_update(r.project_code for r in group)
            for r in busy:
                self._spawn(r.alone(self.engine))
            self._start_groups()
            # A group hands its connection to the next one rather than back to the pool: a check-out
            # and check-in through SQLAlchemy's pool cost about as much client CPU as BEGIN and
            # COMMIT together, once per group (docs/performance.md §5). When no group is left in
            # flight the queue is at rest, and its connections go back to the pool.
            if not self.groups_in_flight:
                while self.idle:
                    await self.idle.pop().close()

    async def _commit(self, group: list[_Request]) -> list[_Request]:
        """Write the group in one transaction; settle each request after the commit. Returns the
        requests whose project was busy (for the caller to run alone once this transaction is
        over: they hold no lock here, but their idempotency keys are claimed until then)."""
        results: list[tuple[_Request, AppendResult | LedgerError]] = []
        busy: list[_Request] = []
        members: list[tuple[_Request, _Batch]] = []
        pooled = self.idle.pop() if self.idle else await self.engine.connect().start()
        try:
            conn = await pg.driver(pooled)
            async with conn.transaction(isolation="read_committed"):
                rows = await pg.fetch(
                    conn,
                    _BEGIN_MANY,
                    codes=[r.project_code for r in group],
                    scopes=[r.idempotency.scope if r.idempotency else None for r in group],
                    keys=[r.idempotency.key if r.idempotency else None for r in group],
                    tokens=list({r.live_token for r in group if r.live_token is not None}),
                )
                # Tokens authenticated from memory must still stand, in the transaction that writes.
                # Read in the begin statement, with its snapshot (taken before the function claims
                # anything): a revocation committed before it is seen, as when this was a statement
                # of its own. A revoked caller is told so whatever its key's outcome (a replay too),
                # and nothing is written for it; its key and head stay claimed until the commit.
                live = set(rows[0]["live_tokens"]) if rows else set()
                batches: dict[str, _Batch] = {}  # one per project: its appends follow one another
                for r, row in zip(group, rows, strict=True):
                    outcome = row["outcome"]
                    if r.live_token is not None and r.live_token not in live:
                        results.append((r, TokenRevoked(TOKEN_REVOKED)))
                    elif outcome == "in_flight":
                        results.append((r, IdempotencyInFlight("相同 Idempotency-Key 的请求正在处理中，请稍后重试")))
                    elif outcome == "stored":
                        assert r.idempotency is not None
                        if bytes(row["stored_fingerprint"]) != r.idempotency.fingerprint:
                            results.append((r, IdempotencyKeyReused("该 Idempotency-Key 已用于另一个不同的请求")))
                        else:
                            results.append((r, _replay(StoredResponse(row["stored_status"], row["stored_body"]))))
                    elif outcome == "not_found":
                        results.append((r, NotFound(f"项目 {r.project_code} 不存在")))
                    elif outcome == "busy":
                        busy.append(r)
                    else:
                        if r.project_code not in batches:
                            batches[r.project_code] = _Batch.locked(conn, r.project_code, row, r.today)
                        members.append((r, batches[r.project_code]))
                if members:
                    await write_rows(conn, await self._prepare(conn, members, results))
        except BaseException:
            await pooled.close()  # back to the pool, which discards it if a transaction is left open
            raise
        self.idle.append(pooled)
        self.groups_run += 1
        self.appends_grouped += len(members)
        for r, result in results:
            r.settle(result)
        return busy

    @staticmethod
    async def _prepare(
        conn: asyncpg.Connection,
        members: list[tuple[_Request, _Batch]],
        results: list[tuple[_Request, AppendResult | LedgerError]],
    ) -> _Rows:
        """Check and build every member's entry, in queue order, each on its project's batch."""
        asks = [batch.contributor_ask([r.draft]) for r, batch in members]
        found = await resolve_contributors_many(conn, [ask for _, ask in asks])
        # Per project (its batch), in queue order: the entries and the responses to store.
        written: dict[str, tuple[_Batch, list[RecordedEntry], list[tuple[IdempotencyRequest | None, int, str]]]] = {}
        for (r, batch), (positions, _), (people, totals) in zip(members, asks, found, strict=True):
            batch.take_contributors([r.draft], positions, people, totals)
            await batch.load_rest([r.draft])
            entry = batch.prepare(0, r.draft, r.recorded_by)
            body = response_body(r.render([entry]))
            _, entries, responses = written.setdefault(r.project_code, (batch, [], []))
            entries.append(entry)
            responses.append((r.idempotency, r.status, body))
            results.append((r, AppendResult(status=r.status, body=body, replayed=False, entries=[entry])))
        out = _Rows()
        for batch, entries, responses in written.values():
            batch.rows(entries, responses, out)
        return out


def _joins_a_batch(draft: EntryDraft) -> bool:
    """May this draft follow another append of its project in the same group? Only when it needs
    nothing read beyond its contributor (no original to reverse, no pledge, award, spending gate,
    countersign threshold or attachment): those reads see the database as it was before the
    group, which is right for a project's first append in it and for no later one."""
    return (
        draft.kind in ("contribution", "in_kind", "other_income", "grant")
        and draft.pledge_seq is None
        and not draft.cites_award
        and not draft.attachments
    )


_GROUPS: weakref.WeakKeyDictionary[AsyncEngine, AppendGroups] = weakref.WeakKeyDictionary()


def groups_for(engine: AsyncEngine) -> AppendGroups:
    """The engine's queue in the running event loop (a new loop gets a new queue)."""
    groups = _GROUPS.get(engine)
    if groups is None or groups.loop is not asyncio.get_running_loop():
        groups = _GROUPS[engine] = AppendGroups(engine, max_size=append_group_max(engine))
    return groups
