"""Witnesses (见证): independent bodies cosign each sheet's tree head, so no single party can
quietly fork the ledger's history.

Formats are C2SP's, as transparency-dev's tools read them:

- a sheet's tree head is a **checkpoint** (c2sp.org/tlog-checkpoint): three lines, the origin
  (``<public host and path>/p/<project>``), the tree size, the RFC 6962/9162 root in standard
  base64, each ending in a newline;
- a cosignature is a **signed-note** line (c2sp.org/signed-note), Ed25519 type ``0x01``:
  ``— <name> base64(key ID ‖ signature)``, the signature over the checkpoint text, the key ID the
  first four bytes of SHA-256(name ‖ 0x0A ‖ 0x01 ‖ public key). A witness's key is published as a
  verifier key (vkey) ``<name>+<key ID hex>+base64(0x01 ‖ public key)``, and kept as
  ``PRIVATE+KEY+<name>+<key ID hex>+base64(0x01 ‖ seed)``, as golang.org/x/mod/sumdb/note does.

The keys and signing here are what ``ledger witness keygen`` and ``ledger witness sign`` use on the
witness's own computer, offline; the service only verifies (cosignatures carry no token: the
signature is the authentication).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ledger import pg
from ledger.errors import Conflict, NotFound, ValidationFailed
from ledger.signed_note import (
    KEY_SIZE,
    SIGNATURE_SIZE,
    Checkpoint,
    b64,
    check_name,
    checkpoint_text,
    key_id,
    origin,
    parse_checkpoint,
    parse_private_key,
    parse_public_key,
    private_key_text,
    public_bytes,
    sign,
    signature_line,
    unb64,
    verifies,
    vkey,
)

KINDS = {
    "residents_committee": "居委会",
    "owners_committee": "业委会",
    "supervisory_committee": "监督委员会",
    "street": "街道",
}
# The formats, re-exported: the service and the tests use them from here.
__all__ = [
    "Checkpoint",
    "b64",
    "checkpoint_text",
    "key_id",
    "origin",
    "parse_checkpoint",
    "parse_private_key",
    "parse_public_key",
    "private_key_text",
    "public_bytes",
    "sign",
    "signature_line",
    "unb64",
    "verifies",
    "vkey",
]


# -- the service's side ------------------------------------------------------------------------


@dataclass(frozen=True)
class Witness:
    id: int
    community_code: str
    name: str
    kind: str | None
    public_key: bytes
    created_at: datetime

    @property
    def key_id(self) -> bytes:
        return key_id(self.name, self.public_key)

    @property
    def vkey(self) -> str:
        return vkey(self.name, self.public_key)


@dataclass(frozen=True)
class Cosignature:
    id: int
    disclosure_id: int
    witness: Witness
    checkpoint: str
    signature: bytes
    created_at: datetime

    @property
    def line(self) -> str:
        return signature_line(self.witness.name, self.witness.public_key, self.signature)


_WITNESS_COLUMNS = "w.id, c.code AS community_code, w.name, w.kind, w.public_key, w.created_at"


def _witness(r: object) -> Witness:
    return Witness(
        id=r["id"],  # type: ignore[index]
        community_code=r["community_code"],  # type: ignore[index]
        name=r["name"],  # type: ignore[index]
        kind=r["kind"],  # type: ignore[index]
        public_key=bytes(r["public_key"]),  # type: ignore[index]
        created_at=r["created_at"],  # type: ignore[index]
    )


async def register_witness(
    engine: AsyncEngine, community_code: str, name: str, kind: str | None, public_key: bytes, *, created_by: str
) -> Witness:
    """Errors: ValidationFailed (name, kind, key), NotFound (community), Conflict (name or key taken)."""
    check_name(name)
    if kind is not None and kind not in KINDS:
        raise ValidationFailed.on("kind", f"见证人类别须为 {'、'.join(KINDS)} 之一")
    if len(public_key) != KEY_SIZE:
        raise ValidationFailed.on("public_key", "公钥须为 32 字节")
    async with pg.transaction(engine) as conn:
        community_id = await conn.fetchval("SELECT id FROM communities WHERE code = $1", community_code)
        if community_id is None:
            raise NotFound(f"社区 {community_code} 不存在")
        taken = await conn.fetchval(
            "SELECT name FROM witnesses WHERE community_id = $1 AND (name = $2 OR public_key = $3)",
            community_id,
            name,
            public_key,
        )
        if taken is not None:
            raise Conflict(f"本社区已有见证人 {taken} 使用这个名称或公钥")
        row = await conn.fetchrow(
            f"""
            WITH w AS (
                INSERT INTO witnesses (community_id, name, kind, public_key, created_by)
                VALUES ($1, $2, $3, $4, $5) RETURNING *
            )
            SELECT {_WITNESS_COLUMNS} FROM w JOIN communities c ON c.id = w.community_id
            """,
            community_id,
            name,
            kind,
            public_key,
            created_by,
        )
    return _witness(row)


async def list_witnesses(sa_conn: AsyncConnection, community_code: str) -> list[Witness]:
    """Errors: NotFound (community)."""
    conn = await pg.driver(sa_conn)
    if not await conn.fetchval("SELECT EXISTS (SELECT 1 FROM communities WHERE code = $1)", community_code):
        raise NotFound(f"社区 {community_code} 不存在")
    rows = await conn.fetch(
        f"SELECT {_WITNESS_COLUMNS} FROM witnesses w JOIN communities c ON c.id = w.community_id "
        "WHERE c.code = $1 ORDER BY w.id",
        community_code,
    )
    return [_witness(r) for r in rows]


_COSIGNATURES = f"""
    SELECT s.id AS s_id, s.disclosure_id, s.checkpoint, s.signature, s.created_at AS s_created_at, {_WITNESS_COLUMNS}
    FROM cosignatures s JOIN witnesses w ON w.id = s.witness_id JOIN communities c ON c.id = w.community_id
"""


def _cosignature(r: object) -> Cosignature:
    return Cosignature(
        id=r["s_id"],  # type: ignore[index]
        disclosure_id=r["disclosure_id"],  # type: ignore[index]
        witness=_witness(r),
        checkpoint=r["checkpoint"],  # type: ignore[index]
        signature=bytes(r["signature"]),  # type: ignore[index]
        created_at=r["s_created_at"],  # type: ignore[index]
    )


async def list_cosignatures(conn: AsyncConnection, disclosure_ids: list[int]) -> dict[int, list[Cosignature]]:
    """Cosignatures by sheet, oldest first, read on the caller's connection (a request's, or the
    publishing snapshot's)."""
    rows = await (await pg.driver(conn)).fetch(
        _COSIGNATURES + " WHERE s.disclosure_id = ANY($1::bigint[]) ORDER BY s.id", disclosure_ids
    )
    out: dict[int, list[Cosignature]] = {i: [] for i in disclosure_ids}
    for r in rows:
        out[r["disclosure_id"]].append(_cosignature(r))
    return out


async def sheet_checkpoint(sa_conn: AsyncConnection, disclosure_id: int, public_base_url: str) -> tuple[str, int]:
    """The sheet's checkpoint text under the service's current address, and its community.
    Errors: NotFound."""
    row = await (await pg.driver(sa_conn)).fetchrow(
        "SELECT d.tree_size, d.root_hash, d.community_id, p.code FROM disclosures d "
        "JOIN projects p ON p.id = d.project_id WHERE d.id = $1",
        disclosure_id,
    )
    if row is None:
        raise NotFound(f"公示表 {disclosure_id} 不存在")
    text = checkpoint_text(origin(public_base_url, row["code"]), row["tree_size"], bytes(row["root_hash"]))
    return text, row["community_id"]


def signed_note(text: str, cosignatures: list[Cosignature]) -> str:
    """The checkpoint with the signature lines made over exactly this text."""
    lines = [c.line for c in cosignatures if c.checkpoint == text]
    return text + ("\n" + "".join(lines) if lines else "")


async def add_cosignature(
    engine: AsyncEngine, disclosure_id: int, witness_name: str, signature: bytes, public_base_url: str
) -> tuple[Cosignature, bool]:
    """Verify a witness's signature over the sheet's checkpoint and keep it; (cosignature,
    created). Errors: NotFound (sheet), ValidationFailed (unknown witness, or a signature that
    does not verify: over another root or size, or by another key)."""
    async with engine.connect() as sa_conn:
        text, community_id = await sheet_checkpoint(sa_conn, disclosure_id, public_base_url)
    if len(signature) == 4 + SIGNATURE_SIZE:
        key_prefix, signature = signature[:4], signature[4:]
    else:
        key_prefix = None
    if len(signature) != SIGNATURE_SIZE:
        raise ValidationFailed.on("signature", "签名须为 64 字节的 Ed25519 签名（base64），或签名行中的 68 字节")
    async with pg.transaction(engine) as conn:
        row = await conn.fetchrow(
            f"SELECT {_WITNESS_COLUMNS} FROM witnesses w JOIN communities c ON c.id = w.community_id "
            "WHERE w.community_id = $1 AND w.name = $2",
            community_id,
            witness_name,
        )
        if row is None:
            raise ValidationFailed.on("witness", f"本社区没有登记名为 {witness_name} 的见证人")
        witness = _witness(row)
        if key_prefix is not None and key_prefix != witness.key_id:
            raise ValidationFailed.on("signature", "签名中的密钥编号不是这位见证人的")
        if not verifies(text, witness.public_key, signature):
            raise ValidationFailed.on(
                "signature",
                "签名无法用这位见证人的公钥验证：签的不是本公示表的检查点（记录数或根哈希不同），或不是这把密钥签的",
            )
        stored = await conn.fetchrow(
            _COSIGNATURES + " WHERE s.disclosure_id = $1 AND s.witness_id = $2 AND s.checkpoint = $3",
            disclosure_id,
            witness.id,
            text,
        )
        if stored is not None:
            # Ed25519 is deterministic: the same witness and text give the same signature.
            return _cosignature(stored), False
        new_id = await conn.fetchval(
            "INSERT INTO cosignatures (community_id, disclosure_id, witness_id, checkpoint, signature) "
            "VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING RETURNING id",
            community_id,
            disclosure_id,
            witness.id,
            text,
            signature,
        )
        row = await conn.fetchrow(
            _COSIGNATURES + " WHERE s.disclosure_id = $1 AND s.witness_id = $2 AND s.checkpoint = $3",
            disclosure_id,
            witness.id,
            text,
        )
    return _cosignature(row), new_id is not None
