"""共评: the residents' verdict on a finished project, online (one code per household) and on paper.

**Codes.** The treasurer issues codes in batches and prints them as slips, one per household. A
code is 10 characters from an alphabet with nothing that reads as something else (no 0/O, 1/I/L,
U): 30^10 ≈ 2^49 codes, so with a few hundred valid codes per project and public writes rate
limited per address (the app's ``public_write_rate_per_minute``), guessing one is hopeless.

Codes are stored only as SHA-256 hashes. The codes of a batch are derived (HMAC-SHA256) from a
256-bit seed drawn from :mod:`secrets`; the seed itself is stored only XOR-ed with a key derived
from the *issuing token's secret* (the database holds the token's hash, never the secret). So a
copy of the database yields no code, while the treasurer who issued a batch can reprint its slips
and an idempotent retry of the issue returns the same codes.

**Scores.** One score 1–5 per code, with an optional comment, accepted only between the project's
``acceptance`` and ``closure`` decisions; a used code is refused (the database's unique
constraint decides a race). Paper questionnaires and 效果共评会 tallies are recorded by the
treasurer with the SHA-256 of the tally sheet (an uploaded attachment).

**Results** (online, paper and overall: distribution 1–5, count, average, satisfied rate = share
of 4 and 5) are computed here once, as Decimals; the API, the project page and the sheet all
print these same values.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import asyncpg
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ledger import pg
from ledger.attachments import check_digest, require_uploaded
from ledger.canonical import SHANGHAI
from ledger.decisions import STAGES
from ledger.errors import Conflict, Forbidden, NotFound, StageForbidsEntry, ValidationFailed
from ledger.idempotency import IdempotencyRequest, StoredResponse, claim, response_body, store

ALPHABET = "ABCDEFGHJKMNPQRSTVWXYZ23456789"
CODE_LENGTH = 10
CODE_SPACE = len(ALPHABET) ** CODE_LENGTH  # ≈ 5.9e14 ≈ 2^49
BATCH_MAX = 1000  # slips in one batch: 125 A4 pages
CODES_MAX = 5000  # codes per project when it names no households in scope
COMMENT_MAX = 500
SCORES = (1, 2, 3, 4, 5)
SATISFIED = (4, 5)
METHODS = ("questionnaire", "meeting")
METHOD_LABELS = {"questionnaire": "问卷", "meeting": "共评会"}
SCORE_LABELS = {5: "很满意", 4: "满意", 3: "一般", 2: "不满意", 1: "很不满意"}
COUNT_MAX = 100_000  # one score in one tally: more households than any community has
COMMENTS_PAGE_MAX = 500

_SEED_BYTES = 32
_NONCE_BYTES = 16
_CODE_INFO = b"ledger-evaluation-code"
_WRAP_INFO = b"ledger-evaluation-seed"


# -- codes ----------------------------------------------------------------------------------------


def derive_code(seed: bytes, position: int) -> str:
    """The ``position``-th code (1-based) of a batch. 128 bits of HMAC output reduced modulo
    30^10: the bias (< 2^-79) is nothing."""
    digest = hmac.new(seed, _CODE_INFO + position.to_bytes(4, "big"), hashlib.sha256).digest()
    n = int.from_bytes(digest[:16], "big") % CODE_SPACE
    chars = []
    for _ in range(CODE_LENGTH):
        n, r = divmod(n, len(ALPHABET))
        chars.append(ALPHABET[r])
    return "".join(chars)


def display_code(code: str) -> str:
    """As printed and typed: two groups of five, ``K7QX2-M9RTA``."""
    return f"{code[:5]}-{code[5:]}"


def normalise_code(typed: str) -> str | None:
    """What a resident typed, as the code it stands for (case, spaces and dashes do not matter),
    or None if it cannot be a code."""
    code = "".join(typed.split()).replace("-", "").replace("－", "").upper()
    if len(code) != CODE_LENGTH or any(c not in ALPHABET for c in code):
        return None
    return code


def code_hash(code: str) -> bytes:
    return hashlib.sha256(code.encode("ascii")).digest()


def _wrap_key(issuer_secret: str, nonce: bytes) -> bytes:
    return hmac.new(issuer_secret.encode(), _WRAP_INFO + nonce, hashlib.sha256).digest()


def _xor(a: bytes, b: bytes) -> bytes:
    return bytes(x ^ y for x, y in zip(a, b, strict=True))


@dataclass(frozen=True)
class Issuer:
    """The token that issues a batch: its id (what is recorded, and scopes idempotency keys) and its
    secret (never stored: the batch's seed is wrapped under a key derived from it)."""

    token_id: str
    secret: str


@dataclass(frozen=True)
class Batch:
    id: int
    project_code: str
    community_id: int
    batch_no: int
    count: int
    issued_by: str
    issued_at: datetime
    issued_total: int  # codes of the project, this batch included


@dataclass(frozen=True)
class IssuedBatch:
    batch: Batch
    codes: list[str]  # normalised (no dash), in slip order
    replayed: bool


def _batch_json(batch: Batch) -> dict[str, Any]:
    return {"batch_no": batch.batch_no}


async def issue_codes(
    engine: AsyncEngine,
    project_code: str,
    count: int,
    issuer: Issuer,
    *,
    idempotency: IdempotencyRequest | None = None,
) -> IssuedBatch:
    """A new batch of ``count`` codes. A retry with the same idempotency key returns the same batch
    and codes. Errors: NotFound, ValidationFailed (count), StageForbidsEntry (closed project),
    Conflict (more codes than households in scope), IdempotencyInFlight, IdempotencyKeyReused."""
    if not 1 <= count <= BATCH_MAX:
        raise ValidationFailed.on("count", f"每批评价码须为 1 到 {BATCH_MAX} 份")
    async with engine.begin() as conn:
        if idempotency is not None:
            stored = await claim(conn, idempotency)
            if stored is not None:
                batch_no = json.loads(stored.body)["batch_no"]
                batch, codes = await _batch_with_codes(conn, project_code, batch_no, issuer)
                return IssuedBatch(batch, codes, replayed=True)
        project = (
            await conn.execute(
                text("SELECT id, community_id, stage, households_in_scope FROM projects WHERE code = :code FOR UPDATE"),
                {"code": project_code},
            )
        ).one_or_none()
        if project is None:
            raise NotFound(f"项目 {project_code} 不存在")
        if project.stage == "closure":
            raise StageForbidsEntry("项目已结项，不再发放评价码")
        issued, last_no = (
            await conn.execute(
                text(
                    "SELECT coalesce(sum(count), 0), coalesce(max(batch_no), 0) FROM evaluation_batches "
                    "WHERE project_id = :pid"
                ),
                {"pid": project.id},
            )
        ).one()
        allowed = project.households_in_scope or CODES_MAX
        if issued + count > allowed:
            scope = f"项目范围内 {allowed} 户" if project.households_in_scope else f"每个项目最多 {allowed} 份"
            raise Conflict(
                f"评价码一户一份：{scope}，已发放 {issued} 份，本批最多还能发放 {max(allowed - issued, 0)} 份"
            )
        seed = secrets.token_bytes(_SEED_BYTES)
        nonce = secrets.token_bytes(_NONCE_BYTES)
        row = (
            await conn.execute(
                text(
                    """
                    INSERT INTO evaluation_batches (community_id, project_id, batch_no, count, issued_by,
                                                    seed_nonce, seed_wrapped)
                    VALUES (:cid, :pid, :no, :count, :by, :nonce, :wrapped)
                    RETURNING id, issued_at
                    """
                ),
                {
                    "cid": project.community_id,
                    "pid": project.id,
                    "no": last_no + 1,
                    "count": count,
                    "by": issuer.token_id,
                    "nonce": nonce,
                    "wrapped": _xor(seed, _wrap_key(issuer.secret, nonce)),
                },
            )
        ).one()
        codes = [derive_code(seed, i) for i in range(1, count + 1)]
        if len(set(codes)) != count:
            # Two equal codes among a few hundred of 2^49: a chance of about 10^-10. Refusing is
            # simpler than re-deriving, and a retry draws a new seed.
            raise Conflict("生成的评价码偶然重复，请重试")
        # A code equal to one of another batch (same odds) fails the primary key: the whole
        # batch rolls back, and the treasurer retries.
        await conn.execute(
            text(
                "INSERT INTO evaluation_codes (code_sha256, community_id, project_id, batch_id, position) "
                "SELECT h, :cid, :pid, :bid, p FROM unnest(CAST(:hashes AS bytea[])) WITH ORDINALITY AS t(h, p)"
            ),
            {"cid": project.community_id, "pid": project.id, "bid": row.id, "hashes": [code_hash(c) for c in codes]},
        )
        batch = Batch(
            id=row.id,
            project_code=project_code,
            community_id=project.community_id,
            batch_no=last_no + 1,
            count=count,
            issued_by=issuer.token_id,
            issued_at=row.issued_at,
            issued_total=issued + count,
        )
        if idempotency is not None:
            # The stored answer names the batch, never its codes: a retry re-derives them.
            await store(conn, idempotency, project.community_id, 201, json.dumps(_batch_json(batch)))
    return IssuedBatch(batch, codes, replayed=False)


async def batch_codes(conn: AsyncConnection, project_code: str, batch_no: int, issuer: Issuer) -> IssuedBatch:
    """A batch and its codes, for printing its slips again. Only the token that issued it can
    unwrap its seed. Errors: NotFound, Forbidden (another token)."""
    batch, codes = await _batch_with_codes(conn, project_code, batch_no, issuer)
    return IssuedBatch(batch, codes, replayed=True)


async def _batch_with_codes(
    conn: AsyncConnection, project_code: str, batch_no: int, issuer: Issuer
) -> tuple[Batch, list[str]]:
    row = (
        await conn.execute(
            text(
                """
                SELECT b.*, (SELECT sum(count) FROM evaluation_batches o
                             WHERE o.project_id = b.project_id AND o.batch_no <= b.batch_no) AS issued_total,
                       (SELECT c.code_sha256 FROM evaluation_codes c WHERE c.batch_id = b.id AND c.position = 1)
                           AS first_hash
                FROM evaluation_batches b JOIN projects p ON p.id = b.project_id
                WHERE p.code = :code AND b.batch_no = :no
                """
            ),
            {"code": project_code, "no": batch_no},
        )
    ).one_or_none()
    if row is None:
        raise NotFound(f"第 {batch_no} 批评价码不存在")
    if row.issued_by != issuer.token_id:
        raise Forbidden("只有发放这批评价码时所用的报账员令牌才能取回评价码（评价码只以哈希保存）")
    seed = _xor(bytes(row.seed_wrapped), _wrap_key(issuer.secret, bytes(row.seed_nonce)))
    count = int(row._mapping["count"])
    codes = [derive_code(seed, i) for i in range(1, count + 1)]
    assert code_hash(codes[0]) == bytes(row.first_hash), "the issuing token's secret unwraps its own seed"
    batch = Batch(
        id=row.id,
        project_code=project_code,
        community_id=row.community_id,
        batch_no=row.batch_no,
        count=count,
        issued_by=row.issued_by,
        issued_at=row.issued_at,
        issued_total=int(row.issued_total),
    )
    return batch, codes


async def list_batches(conn: AsyncConnection, project_code: str) -> list[Batch]:
    """The project's batches, oldest first (for the workspace)."""
    rows = await conn.execute(
        text(
            """
            SELECT b.id, b.community_id, b.batch_no, b.count, b.issued_by, b.issued_at,
                   sum(b.count) OVER (ORDER BY b.batch_no) AS issued_total
            FROM evaluation_batches b JOIN projects p ON p.id = b.project_id
            WHERE p.code = :code ORDER BY b.batch_no
            """
        ),
        {"code": project_code},
    )
    return [
        Batch(
            r.id,
            project_code,
            r.community_id,
            r.batch_no,
            int(r._mapping["count"]),
            r.issued_by,
            r.issued_at,
            int(r.issued_total),
        )
        for r in rows
    ]


# -- the window -----------------------------------------------------------------------------------


def evaluation_open(stage: str) -> bool:
    """Scores are taken from the acceptance (验收) until the closure (结项)."""
    if stage not in STAGES:
        return False
    return STAGES.index("acceptance") <= STAGES.index(stage) < STAGES.index("closure")


def window_refusal(stage: str) -> str | None:
    """Why scores are not taken now, or None while they are."""
    if evaluation_open(stage):
        return None
    if stage == "closure":
        return "项目已结项，共评已结束，不再受理评价"
    return "项目尚未验收，验收后才能评价"


# -- online scores ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Evaluation:
    id: int
    project_code: str
    community_id: int
    score: int
    comment: str | None
    created_at: datetime


class CodeUsed(Conflict):
    """The code has been used. ``same`` says whether the earlier score and comment are exactly
    these (a resubmitted form), which a page may treat as done."""

    def __init__(self, detail: str, *, same: bool) -> None:
        super().__init__(detail)
        self.same = same


def check_comment(comment: str | None) -> str | None:
    comment = (comment or "").strip()
    if len(comment) > COMMENT_MAX:
        raise ValidationFailed.on("comment", f"意见不能超过 {COMMENT_MAX} 字")
    return comment or None


_PROJECT_FOR_SCORE = pg.Query(
    # FOR SHARE: a closure (which updates this row) waits for a score being recorded, and a score
    # waits for a closure being recorded, so none is counted after the project closed.
    "SELECT id, community_id, stage FROM projects WHERE code = :code FOR SHARE"
)
_CODE = pg.Query("SELECT 1 FROM evaluation_codes WHERE code_sha256 = :hash AND project_id = :pid")
_INSERT_SCORE = pg.Query(
    """
    INSERT INTO evaluations (community_id, project_id, code_sha256, score, comment)
    VALUES (:cid, :pid, :hash, :score, :comment)
    ON CONFLICT ON CONSTRAINT evaluations_code_once DO NOTHING
    RETURNING id, created_at
    """
)
_EARLIER = pg.Query("SELECT score, comment FROM evaluations WHERE code_sha256 = :hash")


async def submit_evaluation(
    engine: AsyncEngine, project_code: str, typed_code: str, score: int, comment: str | None
) -> Evaluation:
    """Record one household's score. Errors: NotFound (project), ValidationFailed (score, comment,
    a code that is not one of this project's), StageForbidsEntry (outside the window), CodeUsed."""
    if score not in SCORES:
        raise ValidationFailed.on("score", "评分须为 1 到 5 的整数")
    comment = check_comment(comment)
    code = normalise_code(typed_code)
    if code is None:
        raise ValidationFailed.on("household_code", "评价码应为 10 位字母和数字（见评价卡，如 K7QX2-M9RTA）")
    hashed = code_hash(code)
    async with pg.transaction(engine) as conn:
        project = await pg.fetchrow(conn, _PROJECT_FOR_SCORE, code=project_code)
        if project is None:
            raise NotFound(f"项目 {project_code} 不存在")
        if await pg.fetchrow(conn, _CODE, hash=hashed, pid=project["id"]) is None:
            raise ValidationFailed.on("household_code", "评价码不正确，请核对评价卡")
        refusal = window_refusal(project["stage"])
        if refusal:
            raise StageForbidsEntry(refusal)
        row = await pg.fetchrow(
            conn,
            _INSERT_SCORE,
            cid=project["community_id"],
            pid=project["id"],
            hash=hashed,
            score=score,
            comment=comment,
        )
        if row is None:
            earlier = await pg.fetchrow(conn, _EARLIER, hash=hashed)
            assert earlier is not None
            same = earlier["score"] == score and earlier["comment"] == comment
            raise CodeUsed("该评价码已经使用过，每户只能评价一次", same=same)
    return Evaluation(row["id"], project_code, project["community_id"], score, comment, row["created_at"])


# -- paper tallies ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class TallyDraft:
    held_on: date
    method: str
    counts: tuple[int, int, int, int, int]  # scores 1..5
    sheet_sha256: str


@dataclass(frozen=True)
class Tally:
    id: int
    project_code: str
    held_on: date
    method: str
    counts: tuple[int, int, int, int, int]
    sheet_sha256: str
    recorded_at: datetime

    @property
    def total(self) -> int:
        return sum(self.counts)


def _tally_from(row: Any, project_code: str) -> Tally:
    m = row._mapping
    counts = (m["count_1"], m["count_2"], m["count_3"], m["count_4"], m["count_5"])
    return Tally(m["id"], project_code, m["held_on"], m["method"], counts, m["sheet_sha256"], m["recorded_at"])


async def record_tally(
    engine: AsyncEngine,
    project_code: str,
    draft: TallyDraft,
    *,
    recorded_by: str,
    render: Callable[[Tally], Any],
    idempotency: IdempotencyRequest | None = None,
    today: date | None = None,
) -> tuple[StoredResponse, bool]:
    """Record a paper questionnaire's or a meeting's tally. Returns (response, replayed).
    Errors: NotFound, ValidationFailed (date, counts, a sheet not uploaded to the community),
    StageForbidsEntry (outside the window), IdempotencyInFlight, IdempotencyKeyReused."""
    today = today or datetime.now(SHANGHAI).date()
    if draft.method not in METHODS:
        raise ValidationFailed.on("method", "方式须为 questionnaire（问卷）或 meeting（共评会）")
    if len(draft.counts) != len(SCORES) or any(not 0 <= n <= COUNT_MAX for n in draft.counts):
        raise ValidationFailed.on("counts", f"每个分数的票数须为 0 到 {COUNT_MAX}")
    if sum(draft.counts) == 0:
        raise ValidationFailed.on("counts", "统计结果不能全为 0")
    if draft.held_on > today:
        raise ValidationFailed.on("held_on", "日期不能晚于今天")
    check_digest(draft.sheet_sha256)
    async with engine.begin() as conn:
        if idempotency is not None:
            stored = await claim(conn, idempotency)
            if stored is not None:
                return stored, True
        project = (
            await conn.execute(
                text("SELECT id, community_id, stage FROM projects WHERE code = :code FOR SHARE"),
                {"code": project_code},
            )
        ).one_or_none()
        if project is None:
            raise NotFound(f"项目 {project_code} 不存在")
        await require_uploaded(
            conn,
            project.community_id,
            [draft.sheet_sha256],
            field="sheet_sha256",
            message="统计表须先作为附件上传到本社区（填上传后得到的 SHA-256）",
        )
        accepted_on = (
            await conn.execute(
                text(
                    "SELECT held_on FROM decisions WHERE project_id = :pid AND stage = 'acceptance' "
                    "ORDER BY id DESC LIMIT 1"
                ),
                {"pid": project.id},
            )
        ).scalar_one_or_none()
        if accepted_on is not None and draft.held_on < accepted_on:
            raise ValidationFailed.on("held_on", f"共评日期不能早于验收日期 {accepted_on.isoformat()}")
        refusal = window_refusal(project.stage)
        if refusal:
            raise StageForbidsEntry(refusal)
        row = (
            await conn.execute(
                text(
                    """
                    INSERT INTO evaluation_tallies (community_id, project_id, held_on, method, count_1, count_2,
                                                    count_3, count_4, count_5, sheet_sha256, recorded_by)
                    VALUES (:cid, :pid, :held_on, :method, :c1, :c2, :c3, :c4, :c5, :sha, :by)
                    RETURNING *
                    """
                ),
                {
                    "cid": project.community_id,
                    "pid": project.id,
                    "held_on": draft.held_on,
                    "method": draft.method,
                    **{f"c{i}": n for i, n in zip(SCORES, draft.counts, strict=True)},
                    "sha": draft.sheet_sha256,
                    "by": recorded_by,
                },
            )
        ).one()
        body = response_body(render(_tally_from(row, project_code)))
        if idempotency is not None:
            await store(conn, idempotency, project.community_id, 201, body)
    return StoredResponse(201, body), False


# -- results ----------------------------------------------------------------------------------------

_TWO_PLACES = Decimal("0.01")
_FOUR_PLACES = Decimal("0.0001")


@dataclass(frozen=True)
class Scores:
    """A distribution of scores 1–5 and what every output prints of it."""

    counts: tuple[int, int, int, int, int]

    @property
    def total(self) -> int:
        return sum(self.counts)

    @property
    def average(self) -> Decimal | None:
        """Mean score, to two places (half up); None without scores."""
        if not self.total:
            return None
        points = sum(score * n for score, n in zip(SCORES, self.counts, strict=True))
        return (Decimal(points) / Decimal(self.total)).quantize(_TWO_PLACES, ROUND_HALF_UP)

    @property
    def satisfied(self) -> int:
        return self.counts[3] + self.counts[4]

    @property
    def satisfied_rate(self) -> Decimal | None:
        """Share of 4 and 5 (满意), a fraction to four places (half up); None without scores."""
        if not self.total:
            return None
        return (Decimal(self.satisfied) / Decimal(self.total)).quantize(_FOUR_PLACES, ROUND_HALF_UP)

    def __add__(self, other: Scores) -> Scores:
        a, b = self.counts, other.counts
        return Scores((a[0] + b[0], a[1] + b[1], a[2] + b[2], a[3] + b[3], a[4] + b[4]))


@dataclass(frozen=True)
class Results:
    online: Scores
    paper: Scores
    codes_issued: int
    tallies: list[Tally]
    comments_count: int

    @property
    def overall(self) -> Scores:
        return self.online + self.paper


_RESULTS = text(
    """
    SELECT
      ARRAY(SELECT count(e.id) FROM generate_series(1, 5) AS s(score)
            LEFT JOIN evaluations e ON e.project_id = :pid AND e.score = s.score
            GROUP BY s.score ORDER BY s.score) AS online,
      (SELECT coalesce(sum(count), 0) FROM evaluation_batches WHERE project_id = :pid) AS codes_issued,
      (SELECT count(*) FROM evaluations WHERE project_id = :pid AND comment IS NOT NULL) AS comments
    """
)
_TALLIES = text("SELECT * FROM evaluation_tallies WHERE project_id = :pid ORDER BY id")


async def evaluation_results(conn: AsyncConnection, project_id: int, project_code: str) -> Results:
    """The project's results, read inside the caller's transaction (a sheet's snapshot, a page's
    read). A project has at most a few thousand scores: one aggregate over an index."""
    row = (await conn.execute(_RESULTS, {"pid": project_id})).one()
    tallies = [_tally_from(r, project_code) for r in await conn.execute(_TALLIES, {"pid": project_id})]
    paper = Scores((0, 0, 0, 0, 0))
    for t in tallies:
        paper = paper + Scores(t.counts)
    a, b, c, d, e = (int(n) for n in row.online)
    return Results(
        online=Scores((a, b, c, d, e)),
        paper=paper,
        codes_issued=int(row.codes_issued),
        tallies=tallies,
        comments_count=int(row.comments),
    )


_SATISFACTION = pg.Query(
    """
    SELECT (SELECT count(*) FROM evaluations WHERE project_id = :pid AND score >= 4)
           + (SELECT coalesce(sum(count_4 + count_5), 0) FROM evaluation_tallies WHERE project_id = :pid)
               AS satisfied,
           (SELECT count(*) FROM evaluations WHERE project_id = :pid)
           + (SELECT coalesce(sum(count_1 + count_2 + count_3 + count_4 + count_5), 0)
              FROM evaluation_tallies WHERE project_id = :pid) AS evaluated
    """
)


async def satisfaction_counts(conn: asyncpg.Connection, project_id: int) -> tuple[int, int]:
    """(satisfied, evaluated) online and on paper together: what :attr:`Results.overall` counts,
    for the 以奖代补 award's minimum satisfaction (ledger/awards.py), on the award's connection."""
    row = await pg.fetchrow(conn, _SATISFACTION, pid=project_id)
    assert row is not None
    return int(row["satisfied"]), int(row["evaluated"])


@dataclass(frozen=True)
class Comment:
    id: int
    score: int
    comment: str  # as written: public outputs mask numbers in it
    created_at: datetime


_COMMENTS = text(
    """
    SELECT id, score, comment, created_at FROM evaluations
    WHERE project_id = :pid AND comment IS NOT NULL AND id < :before
    ORDER BY id DESC LIMIT :limit
    """
)


async def list_comments(
    conn: AsyncConnection, project_id: int, *, before_id: int | None = None, limit: int = 50
) -> list[Comment]:
    """Comments, newest first."""
    rows = await conn.execute(
        _COMMENTS, {"pid": project_id, "before": before_id or 2**63 - 1, "limit": min(limit, COMMENTS_PAGE_MAX)}
    )
    return [Comment(r.id, r.score, r.comment, r.created_at) for r in rows]
