"""A stateful property test: random sequences of writes against the real API, with a model of the
ledger that must equal what the API says after every step.

Rules: append an entry of any kind (some refused: spending or refunding more than there is, a
refund for someone who never gave), send an identical request again with its key (a replay, or a
fresh attempt when the first was refused), send a different body under a used key (422
``idempotency_key_reused``), reverse an entry (refused when it is a reversal, already reversed, or
would take cash below zero, or points past the end), publish a sheet, and read an entry in public.

After every step the project's public summary (every total, the contributor count, the ledger's
size and root) equals the model's; the model predicts each answer's status and code. After the
last step every entry is read in public (amounts, reversal links, masked names) and the whole log
is recomputed (``verify``). Each example starts a new project with people new to the community;
all share one app, one community and one database.

Publishing renders a PDF (about a second), so only about one example in 30 may publish, once; the
test asserts that some did. Hypothesis counts 200 valid examples; it runs more machines than that
(about 390: the test prints the figures).
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

import httpx
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from tests.api_support import Api, World, all_entries, new_key, past, today, unique

EXAMPLES = 200
STEPS = 8
# A few examples may publish a sheet (rendering one takes about a second): drawn per example.
PUBLISHING_ONE_IN = 30
EMPTY_ROOT = hashlib.sha256(b"").hexdigest()

# Surname, household, and the masked name the public sees (given names are two characters unique to
# the example, so that a refund's "never gave" is about this example's people only).
PEOPLE = (("张", "3栋2单元501", "张**"), ("欧阳", "5栋1单元302", "欧阳**"), ("李", "4栋1单元101", "李**"))
CASH_IN = {"contribution": "contributed", "grant": "granted"}
CASH_OUT = {"expenditure": "spent", "refund": "refunded"}
MEMO = {"in_kind": "in_kind_value", "pledge": "pledged"}
NAMED = ("contribution", "refund", "in_kind", "pledge")

T = TypeVar("T")


@dataclass
class Context:
    """What the machine shares across examples: the session's loop, client, tokens, community."""

    loop: asyncio.AbstractEventLoop
    world: World
    community: str
    published: int = 0
    examples: int = 0
    steps: int = 0
    statuses: dict[int, int] = field(default_factory=dict)

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout=300)

    @property
    def api(self) -> Api:
        return self.world.api


@dataclass
class ModelEntry:
    seq: int
    kind: str
    amount_fen: int
    who: int | None  # index into PEOPLE
    anonymous: bool = False
    reverses: int | None = None
    reversed_by: int | None = None


@dataclass
class Sent:
    url: str
    body: dict[str, Any]
    status: int
    answer: dict[str, Any]
    entry: ModelEntry | None = None


def yuan(fen: int) -> str:
    return f"{fen // 100}.{fen % 100:02d}"


amounts = st.integers(min_value=1, max_value=300_000)  # fen: up to 3,000.00 yuan


class LedgerMachine(RuleBasedStateMachine):
    ctx: ClassVar[Context]

    def __init__(self) -> None:
        super().__init__()
        self.entries: list[ModelEntry] = []
        self.root = EMPTY_ROOT
        self.sent: dict[str, Sent] = {}
        self.stored_keys: list[str] = []  # first answer 201: a retry replays it
        self.refused_keys: list[str] = []  # refused, so not stored: a retry runs again
        self.people_known: set[int] = set()
        self.sheets: list[dict[str, Any]] = []
        self.may_publish = False
        self.project = ""
        self.given_name = ""
        self.checked = 0  # steps the invariant has seen

    # -- setting up ----------------------------------------------------------------------------

    @initialize(publishing=st.integers(min_value=0, max_value=PUBLISHING_ONE_IN - 1))
    def start(self, publishing: int) -> None:
        ctx = self.ctx
        ctx.examples += 1
        # Two CJK characters unique to this example (the people of one example are new to the
        # community, which all examples share).
        self.given_name = chr(0x4E00 + ctx.examples // 200) + chr(0x4E00 + ctx.examples % 200)
        self.project = ctx.run(ctx.world.project(community=ctx.community))
        self.may_publish = publishing == PUBLISHING_ONE_IN - 1
        self.checked = ctx.steps

    # -- the model -----------------------------------------------------------------------------

    def totals(self) -> dict[str, int]:
        t = dict.fromkeys(("contributed", "granted", "spent", "refunded", "in_kind_value", "pledged"), 0)
        for e in self.entries:
            original = self.entries[e.reverses - 1] if e.reverses else e
            sign = -1 if e.reverses else 1
            account = {**CASH_IN, **CASH_OUT, **MEMO}[original.kind]
            t[account] += sign * original.amount_fen
        t["balance"] = t["contributed"] + t["granted"] - t["spent"] - t["refunded"]
        return t

    def paid_less_refunded(self) -> dict[int, tuple[int, int]]:
        """Per person: (paid, refunded), net of reversals."""
        per: dict[int, list[int]] = {}
        for e in self.entries:
            original = self.entries[e.reverses - 1] if e.reverses else e
            if original.kind in ("contribution", "refund") and original.who is not None:
                slot = 0 if original.kind == "contribution" else 1
                per.setdefault(original.who, [0, 0])[slot] += (-1 if e.reverses else 1) * original.amount_fen
        return {who: (p, r) for who, (p, r) in per.items()}

    def predict_append(self, kind: str, amount: int, who: int | None) -> tuple[int, str | None]:
        balance = self.totals()["balance"]
        if kind == "expenditure" and amount > balance:
            return 409, "insufficient_funds"
        if kind == "refund" and who is not None:
            if who not in self.people_known:
                return 422, "validation_failed"  # a refund never creates a contributor
            paid, refunded = self.paid_less_refunded().get(who, (0, 0))
            if refunded + amount > paid:
                return 409, "conflict"
            if amount > balance:
                return 409, "insufficient_funds"
        return 201, None

    def predict_reversal(self, target: ModelEntry) -> tuple[int, str | None]:
        if target.kind == "reversal":
            return 409, "conflict"
        if target.reversed_by is not None:
            return 409, "already_reversed"
        if target.kind == "contribution" and target.who is not None:
            paid, refunded = self.paid_less_refunded().get(target.who, (0, 0))
            if paid - target.amount_fen < refunded:
                return 409, "conflict"  # refund first
        if target.kind in CASH_IN and target.amount_fen > self.totals()["balance"]:
            return 409, "insufficient_funds"
        return 201, None

    def record(self, entry: ModelEntry, answer: dict[str, Any]) -> None:
        assert answer["seq"] == entry.seq == len(self.entries) + 1, (answer["seq"], entry)
        assert answer["kind"] == entry.kind and answer["amount"] == yuan(entry.amount_fen)
        assert answer["receipt"]["tree_size"] == entry.seq
        self.entries.append(entry)
        if entry.reverses:
            self.entries[entry.reverses - 1].reversed_by = entry.seq
        if entry.who is not None and entry.kind != "refund":
            self.people_known.add(entry.who)
        self.root = answer["receipt"]["root_hash"]

    # -- talking to the API --------------------------------------------------------------------

    def post(self, url: str, body: dict[str, Any], key: str) -> httpx.Response:
        ctx = self.ctx
        ctx.steps += 1
        response = ctx.run(ctx.api.post(url, body, token=ctx.world.admin, key=key))
        ctx.statuses[response.status_code] = ctx.statuses.get(response.status_code, 0) + 1
        assert response.status_code < 500, response.text
        return response

    def expect(self, response: httpx.Response, status: int, code: str | None) -> None:
        assert response.status_code == status, (status, code, response.status_code, response.text)
        if code is not None:
            assert response.json()["code"] == code, response.text

    def entry_body(self, entry: ModelEntry) -> dict[str, Any]:
        kind = entry.kind
        body: dict[str, Any] = {"kind": kind, "occurred_on": past(3), "memo": f"第{len(self.sent)}笔"}
        if kind == "reversal":
            return body | {"reverses": entry.reverses, "reason": "金额录入错误"}
        body["amount"] = yuan(entry.amount_fen)
        if entry.who is not None:
            surname, household, _ = PEOPLE[entry.who]
            name = surname + self.given_name
            body["contributor"] = {"name": name, "household": household}
            if kind != "refund":
                body["contributor"]["anonymous"] = entry.anonymous
        if kind == "contribution":
            body |= {"channel": "wechat", "receipt_no": f"SJ-{len(self.sent)}"}
        elif kind == "grant":
            body |= {"grantor": "下陆区住房和城乡建设局", "document_no": "下住建〔2026〕12号"}
        elif kind == "expenditure":
            body |= {"payee": "某沥青工程有限公司", "category": ("materials", "labour")[entry.amount_fen % 2]}
        elif kind == "in_kind":
            body["description"] = "义务劳动"
        return body

    def predict(self, entry: ModelEntry) -> tuple[int, str | None]:
        if entry.kind != "reversal":
            return self.predict_append(entry.kind, entry.amount_fen, entry.who)
        assert entry.reverses is not None
        if entry.reverses > len(self.entries):
            return 422, "validation_failed"
        return self.predict_reversal(self.entries[entry.reverses - 1])

    def submit(self, key: str, body: dict[str, Any], entry: ModelEntry) -> None:
        """Send, check the predicted answer, and keep the model in step."""
        url = f"/api/v1/projects/{self.project}/entries"
        predicted = self.predict(entry)
        response = self.post(url, body, key)
        self.expect(response, *predicted)
        self.sent[key] = Sent(url, body, response.status_code, response.json(), entry)
        if response.status_code == 201:
            if entry.kind == "reversal":
                entry.amount_fen = self.entries[entry.reverses - 1].amount_fen  # type: ignore[operator]
            entry.seq = len(self.entries) + 1
            self.record(entry, response.json())
            self.stored_keys.append(key)
            if key in self.refused_keys:
                self.refused_keys.remove(key)
        elif key not in self.refused_keys:
            self.refused_keys.append(key)

    # -- rules ---------------------------------------------------------------------------------

    @rule(
        kind=st.sampled_from(("contribution", "grant", "expenditure", "refund", "in_kind", "pledge")),
        amount=amounts,
        who=st.integers(0, len(PEOPLE) - 1),
        anonymous=st.booleans(),
    )
    def append(self, kind: str, amount: int, who: int, anonymous: bool) -> None:
        named = kind in NAMED
        entry = ModelEntry(0, kind, amount, who if named else None, anonymous and named and kind != "refund")
        self.submit(new_key(), self.entry_body(entry), entry)

    @precondition(lambda self: bool(self.entries))
    @rule(data=st.data())
    def reverse(self, data: st.DataObject) -> None:
        """Reverse an entry (or one past the end: 422)."""
        seq = data.draw(st.integers(1, len(self.entries) + 1), label="reverses")
        entry = ModelEntry(0, "reversal", 0, None, reverses=seq)
        self.submit(new_key(), self.entry_body(entry), entry)

    @precondition(lambda self: bool(self.stored_keys))
    @rule(data=st.data())
    def replay(self, data: st.DataObject) -> None:
        """The identical request again: the stored answer, byte for byte, and nothing recorded."""
        key = data.draw(st.sampled_from(self.stored_keys), label="key")
        sent = self.sent[key]
        response = self.post(sent.url, sent.body, key)
        assert response.status_code == sent.status and response.json() == sent.answer
        assert response.headers.get("Idempotent-Replayed") == "true"

    @precondition(lambda self: bool(self.stored_keys))
    @rule(data=st.data(), amount=amounts)
    def conflicting_key(self, data: st.DataObject, amount: int) -> None:
        """A different body under a used key: 422 idempotency_key_reused, nothing recorded."""
        key = data.draw(st.sampled_from(self.stored_keys), label="key")
        sent = self.sent[key]
        body = dict(sent.body)
        body["memo"] = f"{body['memo']}（改）"
        if "amount" in body:
            body["amount"] = yuan(amount)
        self.expect(self.post(sent.url, body, key), 422, "idempotency_key_reused")

    @precondition(lambda self: bool(self.refused_keys))
    @rule(data=st.data())
    def retry_refused(self, data: st.DataObject) -> None:
        """A refused request sent again runs again (nothing was stored): it may pass now."""
        key = data.draw(st.sampled_from(self.refused_keys), label="key")
        sent = self.sent[key]
        assert sent.entry is not None
        self.submit(
            key,
            sent.body,
            ModelEntry(
                0, sent.entry.kind, sent.entry.amount_fen, sent.entry.who, sent.entry.anonymous, sent.entry.reverses
            ),
        )

    @precondition(lambda self: self.may_publish and not self.sheets)
    @rule()
    def publish(self) -> None:
        body = {"period_start": past(30), "period_end": today().isoformat(), "notice_days": 7}
        url = f"/api/v1/projects/{self.project}/disclosures"
        response = self.post(url, body, new_key())
        self.expect(response, 201, None)
        sheet = response.json()
        assert sheet["sheet_number"] == len(self.sheets) + 1
        assert (sheet["tree_size"], sheet["root_hash"]) == (len(self.entries), self.root)
        self.sheets.append(sheet)
        self.ctx.published += 1

    @precondition(lambda self: bool(self.entries))
    @rule(data=st.data())
    def read_entry(self, data: st.DataObject) -> None:
        """One entry as the public sees it: kind, amount, reversal links, the masked name."""
        e = self.entries[data.draw(st.integers(0, len(self.entries) - 1), label="index")]
        ctx = self.ctx
        ctx.steps += 1
        item = ctx.run(ctx.api.get(f"/api/v1/projects/{self.project}/entries/{e.seq}")).json()
        self.check_entry(item, e)

    def check_entry(self, item: dict[str, Any], e: ModelEntry) -> None:
        assert (item["seq"], item["kind"], item["amount"]) == (e.seq, e.kind, yuan(e.amount_fen)), (item, e)
        assert item["reverses"] == e.reverses and item["reversed_by"] == e.reversed_by, (item, e)
        if e.who is not None:
            shown = "匿名" if e.anonymous else PEOPLE[e.who][2]
            assert item["contributor"]["name"] == shown, item["contributor"]

    def teardown(self) -> None:
        """After the last step: every entry as the public sees it, and the whole log recomputed."""
        if not self.entries:
            return
        ctx = self.ctx
        items = ctx.run(all_entries(ctx.api.client, self.project))
        assert len(items) == len(self.entries)
        for item, e in zip(items, self.entries, strict=True):
            self.check_entry(item, e)
        verify = ctx.run(ctx.api.get(f"/api/v1/projects/{self.project}/ledger/verify")).json()
        assert verify["ok"] and verify["size"] == len(self.entries) and verify["root_hash"] == self.root, verify

    @invariant()
    def summary_equals_model(self) -> None:
        if self.ctx.steps == self.checked:
            return  # nothing was sent since the last check (right after the project was made)
        self.checked = self.ctx.steps
        ctx = self.ctx
        summary = ctx.run(ctx.api.get(f"/api/v1/projects/{self.project}")).json()["summary"]
        totals = self.totals()
        assert min(totals.values()) >= 0, totals
        expected = {k: yuan(v) for k, v in totals.items()}
        assert {k: summary[k] for k in expected} == expected
        paid = self.paid_less_refunded()
        assert summary["contributors"] == sum(1 for p, r in paid.values() if p - r > 0)
        assert summary["ledger"] == {"size": len(self.entries), "root_hash": self.root}
        assert not summary["balance"].startswith("-")


def scripted_publish() -> None:
    """One example written out, so the publish rule and its model checks run in every run: money in,
    a reversal, a sheet (its number, size and root checked against the model), more entries after
    it, a replay; the invariant after every step and the teardown's full read and verify."""
    machine = LedgerMachine()
    machine.start(publishing=PUBLISHING_ONE_IN - 1)
    steps = [
        lambda: machine.append(kind="contribution", amount=20_000, who=0, anonymous=False),
        lambda: machine.append(kind="grant", amount=50_000, who=0, anonymous=False),
        lambda: machine.append(kind="expenditure", amount=30_000, who=0, anonymous=False),
        lambda: machine.append(kind="contribution", amount=5_000, who=1, anonymous=True),
        machine.publish,
        lambda: machine.append(kind="refund", amount=1_000, who=0, anonymous=False),
    ]
    for step in steps:
        step()
        machine.summary_equals_model()
    assert machine.sheets and machine.sheets[0]["tree_size"] == 4
    machine.teardown()


async def test_the_api_behaves_like_the_model(world: World) -> None:
    """run_state_machine_as_test is synchronous: it runs in a worker thread and sends each request
    to the session's event loop, where the shared in-process client lives."""
    community = unique("sm")
    created = await world.api.post(
        "/api/v1/communities", {"code": community, "name": "状态机小区", "households": 300}, token=world.admin
    )
    assert created.status_code == 201, created.text
    ctx = Context(asyncio.get_running_loop(), world, community)
    LedgerMachine.ctx = ctx
    started, cpu = time.perf_counter(), time.process_time()
    await asyncio.to_thread(
        run_state_machine_as_test,
        LedgerMachine,
        settings=settings(
            max_examples=EXAMPLES,
            stateful_step_count=STEPS,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )
    await asyncio.to_thread(scripted_publish)
    elapsed = time.perf_counter() - started
    print(
        f"\nstateful: {ctx.examples} examples, {ctx.steps} requests, statuses {dict(sorted(ctx.statuses.items()))}, "
        f"{ctx.published} sheets published, {elapsed:.1f} s (CPU of the test process {time.process_time() - cpu:.1f} s)"
    )
    assert ctx.examples >= EXAMPLES
    assert ctx.published >= 1, "no example published a sheet"
    assert {201, 409, 422} <= set(ctx.statuses), ctx.statuses
