"""Contributors (出资人/出力人): the only place personal data lives.

Entries point at a contributor by id; their documents carry only the public id, the type and a
salted commitment. Erasure (个人信息保护法) deletes name, household, phone and salt, and leaves every
entry and hash as it was; stored responses of idempotent writes that quote the person are redacted,
never deleted, so a retry of such a write is still a replay.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg
from sqlalchemy import bindparam, text, update
from sqlalchemy.ext.asyncio import AsyncEngine

from ledger import pg
from ledger.canonical import contributor_commitment
from ledger.errors import NotFound, ValidationFailed
from ledger.masking import ERASED, contains_phone
from ledger.tables import contributors, erasures

CONTRIBUTOR_TYPES = ("resident", "household", "enterprise", "organization", "party_branch")
SALT_BYTES = 16


@dataclass(frozen=True)
class ContributorRef:
    """How a draft names its contributor: by public id, or by name (and household)."""

    id: uuid.UUID | None = None
    name: str | None = None
    household: str | None = None
    type: str = "resident"
    anonymous: bool = False
    phone: str | None = None

    def match_key(self) -> tuple[str, str]:
        assert self.name is not None
        return (self.name, self.household or "")


@dataclass(frozen=True)
class Contributor:
    id: int
    public_id: uuid.UUID
    type: str
    name: str | None
    household: str | None
    commitment: bytes | None  # None once erased
    # Only on contributors read for a new entry: an anonymous entry commits with it afresh.
    salt: bytes | None = field(default=None, repr=False)

    @property
    def erased(self) -> bool:
        return self.name is None

    def anonymous_commitment(self, anonymous_id: uuid.UUID) -> bytes:
        assert self.salt is not None and self.name is not None, "a contributor of a new entry is not erased"
        return contributor_commitment(self.salt, self.name, self.household, self.type, str(anonymous_id))


# Every ask's contributors, by public id or by (name, household), each row tagged with the
# position (``ord``) of the ask that wanted it and carrying that ask's project totals. Two
# branches so that each uses its unique index (public id; community, name, household).
_FIND = pg.Query(
    """
    SELECT w.ord, c.*, t.paid_fen, t.refunded_fen, t.pledged_fen, t.in_kind_fen
    FROM unnest(CAST(:ords AS integer[]), CAST(:cids AS bigint[]), CAST(:pids AS bigint[]),
                CAST(:ids AS uuid[]), CAST(:names AS text[]), CAST(:households AS text[]))
        AS w(ord, cid, pid, public_id, name, household)
    -- LATERAL: one index look-up per wanted person (a join would let the planner, who cannot
    -- count an unnest, hash the whole table).
    CROSS JOIN LATERAL (
        SELECT * FROM contributors c
        WHERE w.public_id IS NOT NULL AND c.public_id = w.public_id AND c.community_id = w.cid
          AND c.erased_at IS NULL
        UNION ALL
        SELECT * FROM contributors c
        WHERE w.name IS NOT NULL AND c.community_id = w.cid AND c.name = w.name
          AND coalesce(c.household, '') = w.household AND c.erased_at IS NULL
    ) c
    LEFT JOIN LATERAL (
        SELECT * FROM contributor_totals t WHERE t.project_id = w.pid AND t.contributor_id = c.id
    ) t ON true
    """
)
# New people, in a fixed order (so two transactions creating the same people lock alike); a person
# a concurrent transaction has just created is skipped here and read back by _FIND.
_CREATE = pg.Query(
    """
    INSERT INTO contributors (community_id, type, name, household, phone, salt)
    SELECT n.cid, n.type, n.name, n.household, n.phone, n.salt
    FROM unnest(CAST(:cids AS bigint[]), CAST(:types AS text[]), CAST(:names AS text[]),
                CAST(:households AS text[]), CAST(:phones AS text[]), CAST(:salts AS bytea[]))
        AS n(cid, type, name, household, phone, salt)
    ORDER BY n.cid, n.name, n.household
    ON CONFLICT (community_id, name, (coalesce(household, ''))) WHERE erased_at IS NULL DO NOTHING
    RETURNING *
    """
)


Totals = dict[str, int]  # paid, refunded, pledged, in_kind (fen) in one project


@dataclass(frozen=True)
class ContributorAsk:
    """The contributors one append names, in one project: ``create[i]`` says whether ``refs[i]``
    may be created when no one of that name is known (refunds may not)."""

    community_id: int
    project_id: int
    refs: list[ContributorRef]
    create: list[bool]


@dataclass
class _Found:
    by_public_id: dict[uuid.UUID, Contributor] = field(default_factory=dict)
    by_name: dict[tuple[str, str], Contributor] = field(default_factory=dict)
    totals: dict[int, Totals] = field(default_factory=dict)


async def resolve_contributors(
    conn: asyncpg.Connection, community_id: int, project_id: int, refs: list[ContributorRef], *, create: list[bool]
) -> tuple[list[Contributor], dict[int, Totals]]:
    """Find (or, where ``create[i]``, create) the contributor of every ref, with their totals in
    ``project_id``, in one or two round trips.

    Errors: ValidationFailed (field ``contributor``) for an unknown or erased id, an unknown type,
    or, where creating is not allowed (refunds), an unknown name.
    """
    [resolved] = await resolve_contributors_many(conn, [ContributorAsk(community_id, project_id, refs, create)])
    return resolved


async def resolve_contributors_many(
    conn: asyncpg.Connection, asks: list[ContributorAsk]
) -> list[tuple[list[Contributor], dict[int, Totals]]]:
    """:func:`resolve_contributors` for several appends at once (a group commit's), still in one or
    two round trips. Every ask is checked before anyone is created, so an error creates no one."""
    found = await _find(conn, asks, [([r.id for r in a.refs if r.id is not None], _keys(a.refs)) for a in asks])
    missing: dict[tuple[int, str, str], ContributorRef] = {}
    for ask, got in zip(asks, found, strict=True):
        pending: set[tuple[str, str]] = set()
        for i, ref in enumerate(ask.refs):
            if ref.id is not None:
                if ref.id not in got.by_public_id:
                    raise ValidationFailed.on("contributor.id", "出资人不存在或已注销").at(i)
            elif ref.name is None:
                raise ValidationFailed.on("contributor", "须提供出资人 id 或姓名").at(i)
            elif ref.match_key() not in got.by_name:
                # A refund may name someone an earlier draft of the same batch creates.
                if not ask.create[i] and ref.match_key() not in pending:
                    raise ValidationFailed.on("contributor", "该出资人没有出资记录，不能退款").at(i)
                if ref.type not in CONTRIBUTOR_TYPES:
                    raise ValidationFailed.on("contributor.type", f"未知的出资人类型 {ref.type}").at(i)
                pending.add(ref.match_key())
                missing.setdefault((ask.community_id, *ref.match_key()), ref)
    if missing:
        created = await _create(conn, missing)
        # Someone a concurrent transaction created meanwhile: read back (rare, one more trip).
        raced = [
            [r.match_key() for r in a.refs if r.id is None and _raced(a.community_id, r, missing, created)]
            for a in asks
        ]
        again = await _find(conn, asks, [([], keys) for keys in raced]) if any(raced) else []
        for n, (ask, got) in enumerate(zip(asks, found, strict=True)):
            if again:
                got.totals.update(again[n].totals)
            for ref in ask.refs:
                if ref.id is None and ref.match_key() not in got.by_name:
                    person = created.get((ask.community_id, *ref.match_key()))
                    if person is None:
                        person = again[n].by_name[ref.match_key()]
                    got.by_name[ref.match_key()] = person
    return [
        (
            [got.by_public_id[r.id] if r.id is not None else got.by_name[r.match_key()] for r in ask.refs],
            got.totals,
        )
        for ask, got in zip(asks, found, strict=True)
    ]


def _raced(
    community_id: int,
    ref: ContributorRef,
    missing: dict[tuple[int, str, str], ContributorRef],
    created: dict[tuple[int, str, str], Contributor],
) -> bool:
    """Was this person to be created here, and created first by someone else? Only those are read
    back: the people found before need no second look-up."""
    key = (community_id, *ref.match_key())
    return key in missing and key not in created


def _keys(refs: list[ContributorRef]) -> list[tuple[str, str]]:
    return list({r.match_key() for r in refs if r.id is None and r.name is not None})


async def _find(
    conn: asyncpg.Connection, asks: list[ContributorAsk], wanted: list[tuple[list[uuid.UUID], list[tuple[str, str]]]]
) -> list[_Found]:
    """For each ask, the contributors of its community with these public ids or (name, household)
    keys, and their totals in the ask's project."""
    cols: dict[str, list[Any]] = {n: [] for n in ("ords", "cids", "pids", "ids", "names", "households")}

    def want(n: int, ask: ContributorAsk, public_id: uuid.UUID | None, key: tuple[str, str] | None) -> None:
        cols["ords"].append(n)
        cols["cids"].append(ask.community_id)
        cols["pids"].append(ask.project_id)
        cols["ids"].append(public_id)
        cols["names"].append(key[0] if key else None)
        cols["households"].append(key[1] if key else None)

    for n, (ask, (ids, keys)) in enumerate(zip(asks, wanted, strict=True)):
        for public_id in dict.fromkeys(ids):
            want(n, ask, public_id, None)
        for key in keys:
            want(n, ask, None, key)
    found = [_Found() for _ in asks]
    if not cols["ords"]:
        return found
    for r in await pg.fetch(conn, _FIND, **cols):
        got = found[r["ord"]]
        person = _from_row(r)
        got.by_public_id[person.public_id] = person
        got.by_name[(person.name or "", person.household or "")] = person
        if r["paid_fen"] is not None:
            got.totals[r["id"]] = {
                "paid": r["paid_fen"],
                "refunded": r["refunded_fen"],
                "pledged": r["pledged_fen"],
                "in_kind": r["in_kind_fen"],
            }
    return found


async def _create(
    conn: asyncpg.Connection, missing: dict[tuple[int, str, str], ContributorRef]
) -> dict[tuple[int, str, str], Contributor]:
    """Create these people (community, name, household → how a draft named them); those a
    concurrent transaction created first are left out of the result."""
    refs = list(missing.items())
    rows = await pg.fetch(
        conn,
        _CREATE,
        cids=[cid for (cid, _, _), _ in refs],
        types=[r.type for _, r in refs],
        names=[r.name for _, r in refs],
        households=[r.household or None for _, r in refs],
        phones=[r.phone for _, r in refs],
        salts=[os.urandom(SALT_BYTES) for _ in refs],
    )
    return {(r["community_id"], r["name"] or "", r["household"] or ""): _from_row(r) for r in rows}


def _from_row(m: Mapping[str, Any]) -> Contributor:
    commitment = (
        contributor_commitment(m["salt"], m["name"], m["household"], m["type"]) if m["salt"] is not None else None
    )
    return Contributor(
        id=m["id"],
        public_id=m["public_id"],
        type=m["type"],
        name=m["name"],
        household=m["household"],
        commitment=commitment,
        salt=bytes(m["salt"]) if m["salt"] is not None else None,
    )


ERASURE_REASON_MAX = 500


@dataclass(frozen=True)
class Erasure:
    public_id: uuid.UUID
    reason: str
    erased_by: str
    erased_at: datetime
    redacted_responses: int  # stored idempotent responses that quoted the person


async def erase_contributor(
    engine: AsyncEngine,
    community_id: int | None,
    public_id: uuid.UUID,
    *,
    reason: str = "本人申请删除个人信息",
    erased_by: str = "system",
) -> Erasure:
    """Remove a person's personal data for good (``community_id`` None: in any community, for the
    admin). Their entries and all hashes stay valid; the erasure itself is recorded.

    Errors: ValidationFailed (reason), NotFound.
    """
    reason = reason.strip()
    if not 1 <= len(reason) <= ERASURE_REASON_MAX:
        raise ValidationFailed.on("reason", f"须说明注销原因（1–{ERASURE_REASON_MAX} 字）")
    if contains_phone(reason):
        raise ValidationFailed.on("reason", "注销原因中不能包含手机号码")
    async with engine.begin() as conn:
        person = (
            await conn.execute(
                text(
                    "SELECT id, community_id, name, household, phone FROM contributors "
                    "WHERE public_id = :pid AND erased_at IS NULL AND (CAST(:cid AS bigint) IS NULL OR community_id = :cid) "
                    "FOR UPDATE"
                ),
                {"cid": community_id, "pid": public_id},
            )
        ).one_or_none()
        if person is None:
            raise NotFound("出资人不存在或已注销")
        erased_at = datetime.now().astimezone()
        await conn.execute(
            update(contributors)
            .where(contributors.c.id == bindparam("id_"))
            .values(name=None, household=None, phone=None, salt=None, erased_at=erased_at),
            {"id_": person.id},
        )
        await conn.execute(
            erasures.insert().values(
                community_id=person.community_id,
                contributor_id=person.id,
                reason=reason,
                erased_by=erased_by,
                erased_at=erased_at,
            )
        )
        secrets = [s for s in (person.name, person.household, person.phone) if s]
        redacted = await _redact_stored_responses(conn, person.community_id, str(public_id), secrets)
    return Erasure(public_id, reason, erased_by, erased_at, redacted)


async def _redact_stored_responses(conn: Any, community_id: int, public_id: str, secrets: list[str]) -> int:
    """Stored responses of idempotent writes may quote the person (the treasurer saw their name).
    They stay — key, fingerprint and status unchanged — so a retry is still a replay and never a
    second entry; only the person's data leaves the body. Replaced (delete + insert, in this
    transaction) rather than updated: the application role may not rewrite a stored response."""
    rows = (
        await conn.execute(
            text(
                "SELECT scope, key, community_id, fingerprint, status, body, created_at FROM idempotency_keys "
                "WHERE (community_id = :cid OR community_id IS NULL) AND strpos(body, :pid) > 0"
            ),
            {"cid": community_id, "pid": public_id},
        )
    ).all()
    for row in rows:
        await conn.execute(
            text("DELETE FROM idempotency_keys WHERE scope = :scope AND key = :key"),
            {"scope": row.scope, "key": row.key},
        )
        await conn.execute(
            text(
                "INSERT INTO idempotency_keys (scope, key, community_id, fingerprint, status, body, created_at) "
                "VALUES (:scope, :key, :community_id, :fingerprint, :status, :body, :created_at)"
            ),
            {**row._mapping, "body": redact_body(row.body, public_id, secrets)},
        )
    return len(rows)


def redact_body(body: str, public_id: str, secrets: list[str]) -> str:
    """``body`` without the person: every contributor object with their id shows 已注销 and no
    household, and any free text outside contributor objects that still quotes them has it
    replaced."""

    def walk(value: Any) -> Any:
        if isinstance(value, dict):
            who = value.get("contributor")
            if isinstance(who, dict):
                # Someone else's (say 张三丰 when 张三 is erased) stays as it was.
                if who.get("id") == public_id:
                    who.update(name=ERASED, household=None)
                return {k: v if k == "contributor" else walk(v) for k, v in value.items()}
            return {k: walk(v) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v) for v in value]
        if isinstance(value, str):
            return scrub(value)
        return value

    def scrub(value: str) -> str:
        for secret in sorted(secrets, key=len, reverse=True):
            value = value.replace(secret, ERASED)
        return value

    try:
        parsed = json.loads(body)
    except ValueError:
        return scrub(body)
    return json.dumps(walk(parsed), ensure_ascii=False, separators=(",", ":"))
