"""The Merkle log: roots, inclusion and consistency proofs, full verification (all public)."""

from __future__ import annotations

from typing import Annotated

from litestar import Request, get
from litestar.params import Parameter, QueryParameter

from api import schemas as s
from api.db import Db
from api.http import INT64_MAX
from api.routes.common import OPTIONAL_BEARER, problems
from ledger import tree
from ledger.canonical import SHANGHAI

TAGS = ["ledger"]
# Tree sizes and sequence numbers are BIGINTs; their upper bound against the current tree is the
# ledger's (422), the type's bound is declared here.
Size = Annotated[int, Parameter(ge=0, le=INT64_MAX, description="树大小；缺省为当前大小")]
Seq = Annotated[int, Parameter(ge=1, le=INT64_MAX)]


@get(
    "/projects/{project:str}/ledger",
    tags=TAGS,
    summary="任一树大小的根哈希",
    security=OPTIONAL_BEARER,
    responses=problems(404, 422),
)
async def ledger_root(db: Db, project: str, size: Size | None = None) -> s.LedgerHeadOut:
    async with db.connect() as conn:
        size_at, root = await tree.root_at(conn, project, size)
    return s.LedgerHeadOut(size=size_at, root_hash=root.hex())


@get(
    "/projects/{project:str}/ledger/inclusion",
    tags=TAGS,
    summary="包含证明：某笔记录在某个树大小中",
    security=OPTIONAL_BEARER,
    responses=problems(404, 422),
)
async def ledger_inclusion(db: Db, project: str, seq: Seq, size: Size | None = None) -> s.InclusionOut:
    async with db.connect() as conn:
        proof = await tree.inclusion(conn, project, seq, size)
    return s.InclusionOut(
        seq=proof.seq,
        size=proof.size,
        leaf_hash=proof.leaf_hash.hex(),
        root_hash=proof.root_hash.hex(),
        proof=[h.hex() for h in proof.proof],
    )


@get(
    "/projects/{project:str}/ledger/consistency",
    tags=TAGS,
    summary="一致性证明：两张公示表之间历史未被改写",
    security=OPTIONAL_BEARER,
    responses=problems(404, 422),
)
async def ledger_consistency(
    db: Db,
    project: str,
    size_from: Annotated[int, QueryParameter(name="from", ge=1, le=INT64_MAX)],
    size_to: Annotated[int, QueryParameter(name="to", ge=1, le=INT64_MAX)],
) -> s.ConsistencyOut:
    async with db.connect() as conn:
        proof = await tree.consistency(conn, project, size_from, size_to)
    return s.ConsistencyOut.model_validate(
        {
            "from": proof.size_from,
            "to": proof.size_to,
            "from_root": proof.root_from.hex(),
            "to_root": proof.root_to.hex(),
            "proof": [h.hex() for h in proof.proof],
        }
    )


@get(
    "/projects/{project:str}/ledger/verify",
    tags=TAGS,
    summary="从存储字段重算每片叶子并核对整棵树（同一树大小只重算一次）",
    security=OPTIONAL_BEARER,
    responses=problems(404),
)
async def ledger_verify(request: Request, db: Db, project: str) -> s.VerifyOut:
    checked = await request.app.state.verify_cache.verify(db.engine, project)
    result = checked.result
    return s.VerifyOut(
        checked_at=checked.checked_at.astimezone(SHANGHAI),
        ok=result.ok,
        size=result.size,
        root_hash=result.root_hash.hex(),
        first_bad_seq=result.first_bad_seq,
        unbalanced_accounts=list(result.unbalanced_accounts),
        contributor_totals_ok=result.contributor_totals_ok,
        pledge_totals_ok=result.pledge_totals_ok,
    )


ROUTES = [ledger_root, ledger_inclusion, ledger_consistency, ledger_verify]
