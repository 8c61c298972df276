"""10,000 mixed entries over 20 projects while the public reads summaries, over real HTTP.

The live server (uvicorn on 127.0.0.1) takes 20 writers at once, one per project, each recording
500 entries of every kind: contributions, grants, expenditures in two categories, refunds,
in-kind gifts, pledges and reversals. Most go through the batch path (batches of 95: the load a
spreadsheet import makes); 25 per project are single appends in between. Meanwhile four readers
fetch project summaries as fast as they are answered. Every summary read must satisfy the cash
identity (balance = contributed + granted - spent - refunded), have balance >= 0, spending by
category adding up to spending, and a ledger that never shrinks between two reads. At the end
each project's summary equals the writer's own reckoning, and ``verify`` recomputes its log.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.api_support import LiveServer, World, new_key, past

PROJECTS = 20
PER_PROJECT = 500
BATCH = 95
SINGLES_BETWEEN = 5  # single appends after each batch
READERS = 4
PEOPLE = 30


def yuan(fen: int) -> str:
    return f"{fen // 100}.{fen % 100:02d}"


def fen(text: str) -> int:
    sign = -1 if text.startswith("-") else 1
    whole, cents = text.lstrip("-").split(".")
    return sign * (int(whole) * 100 + int(cents))


@dataclass
class Plan:
    """One project's entries, made valid by keeping the writer's own books as it goes."""

    rng: random.Random
    entries: list[dict[str, Any]] = field(default_factory=list)
    totals: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(
            ("contributed", "granted", "spent", "refunded", "in_kind_value", "pledged"), 0
        )
    )
    paid: dict[int, int] = field(default_factory=dict)  # person → paid less refunded
    reversible: list[tuple[int, str, int, int | None]] = field(default_factory=list)  # seq, kind, fen, person

    @property
    def cash(self) -> int:
        t = self.totals
        return t["contributed"] + t["granted"] - t["spent"] - t["refunded"]

    def person(self, k: int) -> dict[str, Any]:
        return {"name": "居民" + chr(0x4E00 + k), "household": f"{k % 20 + 1}栋{k % 3 + 1}单元"}

    def add(self, body: dict[str, Any], account: str, amount: int, who: int | None = None) -> None:
        body.setdefault("occurred_on", past(5))
        body.setdefault("memo", f"第{len(self.entries) + 1}笔")
        self.entries.append(body)
        self.totals[account] += amount
        if body["kind"] != "refund":
            self.reversible.append((len(self.entries), body["kind"], amount, who))

    def next_entry(self) -> None:
        rng, roll = self.rng, self.rng.random()
        if self.cash < 200_000 or roll < 0.30:
            who = rng.randrange(PEOPLE)
            amount = rng.randrange(1_000, 50_000)
            body = {
                "kind": "contribution",
                "amount": yuan(amount),
                "contributor": self.person(who),
                "channel": "wechat",
            }
            self.add(body, "contributed", amount, who)
            self.paid[who] = self.paid.get(who, 0) + amount
        elif roll < 0.40:
            amount = rng.randrange(100_000, 500_000)
            self.add({"kind": "grant", "amount": yuan(amount), "grantor": "下陆区住建局"}, "granted", amount)
        elif roll < 0.70:
            amount = rng.randrange(1, min(self.cash, 200_000))
            category = rng.choice(("materials", "labour"))
            body = {"kind": "expenditure", "amount": yuan(amount), "payee": "某工程公司", "category": category}
            self.add(body, "spent", amount)
        elif roll < 0.78 and any(v > 0 for v in self.paid.values()):
            who = rng.choice([k for k, v in self.paid.items() if v > 0])
            amount = rng.randrange(1, min(self.paid[who], self.cash) + 1)
            self.add({"kind": "refund", "amount": yuan(amount), "contributor": self.person(who)}, "refunded", amount)
            self.paid[who] -= amount
        elif roll < 0.85:
            who = rng.randrange(PEOPLE)
            amount = rng.randrange(1_000, 30_000)
            body = {
                "kind": "in_kind",
                "amount": yuan(amount),
                "contributor": self.person(who),
                "description": "义务劳动",
            }
            self.add(body, "in_kind_value", amount)
        elif roll < 0.92:
            who = rng.randrange(PEOPLE)
            amount = rng.randrange(1_000, 30_000)
            self.add({"kind": "pledge", "amount": yuan(amount), "contributor": self.person(who)}, "pledged", amount)
        else:
            self.reverse_one()

    def reverse_one(self) -> None:
        """Reverse an earlier entry that may be reversed now (cash and refunds permitting)."""
        account = {"contribution": "contributed", "grant": "granted", "expenditure": "spent"}
        account |= {"in_kind": "in_kind_value", "pledge": "pledged"}
        for i in self.rng.sample(range(len(self.reversible)), min(8, len(self.reversible))):
            seq, kind, amount, who = self.reversible[i]
            if kind in ("contribution", "grant") and amount > self.cash:
                continue
            if kind == "contribution" and (who is None or self.paid[who] < amount):
                continue  # would reverse money already refunded
            del self.reversible[i]
            self.entries.append({"kind": "reversal", "reverses": seq, "occurred_on": past(2), "reason": "录入错误"})
            self.totals[account[kind]] -= amount
            if kind == "contribution" and who is not None:
                self.paid[who] -= amount
            return
        self.add({"kind": "grant", "amount": "1000.00", "grantor": "下陆区住建局"}, "granted", 100_000)


def check_summary(summary: dict[str, Any]) -> None:
    s = {k: fen(summary[k]) for k in ("contributed", "granted", "spent", "refunded", "balance")}
    assert s["balance"] == s["contributed"] + s["granted"] - s["spent"] - s["refunded"], summary
    assert s["balance"] >= 0, summary
    assert sum(fen(c["spent"]) for c in summary["by_category"]) == s["spent"], summary


async def test_ten_thousand_mixed_entries_with_concurrent_public_reads(world: World, live_server: LiveServer) -> None:
    projects = [await world.project() for _ in range(PROJECTS)]
    plans = {}
    for i, project in enumerate(projects):
        plan = Plan(random.Random(i))
        while len(plan.entries) < PER_PROJECT:
            plan.next_entry()
        plans[project] = plan
    auth = {"Authorization": f"Bearer {world.treasurer}", "Content-Type": "application/json"}
    writing = True
    reads: list[int] = [0]
    sizes_seen: dict[str, int] = dict.fromkeys(projects, 0)
    paths = {"batch": 0, "single": 0}
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    started, cpu = time.perf_counter(), time.process_time()
    async with httpx.AsyncClient(base_url=live_server.base_url, timeout=300, limits=limits) as client:

        async def post(project: str, path: str, body: Any) -> dict[str, Any]:
            response = await client.post(
                f"/api/v1/projects/{project}/{path}",
                content=json.dumps(body, ensure_ascii=False).encode(),
                headers={**auth, "Idempotency-Key": new_key()},
            )
            assert response.status_code == 201, response.text
            return response.json()  # type: ignore[no-any-return]

        async def writer(project: str) -> None:
            entries = plans[project].entries
            i = 0
            while i < len(entries):
                chunk = entries[i : i + BATCH]
                answer = await post(project, "entries/batch", {"entries": chunk})
                assert answer["tree_size"] == i + len(chunk)
                paths["batch"] += len(chunk)
                i += len(chunk)
                for entry in entries[i : i + SINGLES_BETWEEN]:
                    assert (await post(project, "entries", entry))["seq"] == i + 1
                    paths["single"] += 1
                    i += 1

        async def reader(n: int) -> None:
            rng = random.Random(1000 + n)
            while writing:
                project = rng.choice(projects)
                response = await client.get(f"/api/v1/projects/{project}")
                assert response.status_code == 200, response.text
                summary = response.json()["summary"]
                check_summary(summary)
                size = summary["ledger"]["size"]
                assert size >= sizes_seen[project], "a reader saw the ledger shrink"
                sizes_seen[project] = size
                reads[0] += 1

        readers = [asyncio.create_task(reader(n)) for n in range(READERS)]
        try:
            async with asyncio.TaskGroup() as group:
                for project in projects:
                    group.create_task(writer(project))
        finally:
            writing = False
            await asyncio.gather(*readers)
        load_s = time.perf_counter() - started

        for project, plan in plans.items():
            summary = (await client.get(f"/api/v1/projects/{project}")).json()["summary"]
            check_summary(summary)
            expected = {k: yuan(v) for k, v in plan.totals.items()} | {"balance": yuan(plan.cash)}
            assert {k: summary[k] for k in expected} == expected, project
            assert summary["ledger"]["size"] == PER_PROJECT
            verify = (await client.get(f"/api/v1/projects/{project}/ledger/verify")).json()
            assert verify["ok"] and verify["size"] == PER_PROJECT, verify

    kinds: dict[str, int] = {}
    for plan in plans.values():
        for entry in plan.entries:
            kinds[entry["kind"]] = kinds.get(entry["kind"], 0) + 1
    print(
        f"\n{PROJECTS * PER_PROJECT} entries ({paths['batch']} in batches of {BATCH}, {paths['single']} single) "
        f"{dict(sorted(kinds.items()))}; {reads[0]} summary reads during the load; load {load_s:.1f} s, "
        f"total {time.perf_counter() - started:.1f} s, CPU of the test process (server included) "
        f"{time.process_time() - cpu:.1f} s"
    )
    assert paths["batch"] + paths["single"] == PROJECTS * PER_PROJECT
    assert reads[0] >= 100, "the readers hardly ran during the load"
