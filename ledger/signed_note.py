"""C2SP signed notes and checkpoints with Ed25519 keys: what a witness's own computer needs
(``ledger witness keygen`` / ``sign``), with no database or web import, so it starts at once.
See ledger/witnesses.py for the formats and how the service uses them."""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import unicodedata
from dataclasses import dataclass
from urllib.parse import urlsplit

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from ledger.errors import ValidationFailed

ED25519 = 0x01  # signed-note signature type
KEY_SIZE = 32
SIGNATURE_SIZE = 64
NAME_LENGTH_MAX = 100
CHECKPOINT_LENGTH_MAX = 400
EM_DASH = "\u2014"


def check_name(name: str) -> None:
    """A signed-note key name: non-empty, no Unicode space, no plus, no control character."""
    if not 1 <= len(name) <= NAME_LENGTH_MAX:
        raise ValidationFailed.on("name", f"见证人名称须为 1 到 {NAME_LENGTH_MAX} 个字符")
    if "+" in name or any(c.isspace() or unicodedata.category(c) in ("Zs", "Cc", "Cf") for c in name):
        raise ValidationFailed.on("name", "见证人名称不能含空格、加号或控制字符（它也是签名密钥的名称）")


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def unb64(text: str, field: str, what: str) -> bytes:
    try:
        return base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ValidationFailed.on(field, f"{what}不是有效的 base64") from None


def key_id(name: str, public_key: bytes) -> bytes:
    return hashlib.sha256(name.encode() + b"\n" + bytes([ED25519]) + public_key).digest()[:4]


def vkey(name: str, public_key: bytes) -> str:
    return f"{name}+{key_id(name, public_key).hex()}+{b64(bytes([ED25519]) + public_key)}"


def parse_public_key(text: str, name: str) -> bytes:
    """A raw 32-byte key in base64 (API.md), or the witness's vkey, whose name must be ``name``."""
    text = text.strip()
    # Raw: 44 characters ending in "=" (base64 may hold "+" too); a vkey is longer.
    if not (len(text) == 44 and text.endswith("=")) and text.count("+") >= 2 and not text.startswith("PRIVATE"):
        # Names hold no "+", base64 may: split at the first two.
        key_name, key_hex, encoded = text.split("+", 2)
        raw = unb64(encoded, "public_key", "公钥")
        if key_name != name:
            raise ValidationFailed.on("public_key", f"公钥（vkey）的名称是 {key_name}，与见证人名称 {name} 不符")
        if len(raw) != KEY_SIZE + 1 or raw[0] != ED25519:
            raise ValidationFailed.on("public_key", "公钥（vkey）须为 Ed25519 类型")
        if key_id(name, raw[1:]).hex() != key_hex:
            raise ValidationFailed.on("public_key", "公钥（vkey）的密钥编号与公钥不符")
        return raw[1:]
    raw = unb64(text, "public_key", "公钥")
    if len(raw) != KEY_SIZE:
        raise ValidationFailed.on("public_key", "公钥须为 32 字节的 Ed25519 公钥（base64）")
    return raw


def public_bytes(private: Ed25519PrivateKey) -> bytes:
    return private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def private_key_text(name: str, private: Ed25519PrivateKey) -> str:
    seed = private.private_bytes_raw()
    public = public_bytes(private)
    return f"PRIVATE+KEY+{name}+{key_id(name, public).hex()}+{b64(bytes([ED25519]) + seed)}"


def parse_private_key(text: str) -> tuple[str, Ed25519PrivateKey]:
    text = text.strip()
    parts = text.removeprefix("PRIVATE+KEY+").split("+", 2)
    if not text.startswith("PRIVATE+KEY+") or len(parts) != 3:
        raise ValidationFailed.on("key", "不是签名私钥文件（应以 PRIVATE+KEY+ 开头）")
    name, key_hex, encoded = parts
    raw = unb64(encoded, "key", "私钥")
    if len(raw) != KEY_SIZE + 1 or raw[0] != ED25519:
        raise ValidationFailed.on("key", "私钥须为 Ed25519 类型")
    private = Ed25519PrivateKey.from_private_bytes(raw[1:])
    public = public_bytes(private)
    if key_id(name, public).hex() != key_hex:
        raise ValidationFailed.on("key", "私钥文件的密钥编号与私钥不符（文件已损坏？）")
    return name, private


def origin(public_base_url: str, project_code: str) -> str:
    """``https://gongkai.example.org/`` → ``gongkai.example.org/p/<project>`` (schema-less)."""
    parts = urlsplit(public_base_url)
    return f"{parts.netloc}{parts.path.rstrip('/')}/p/{project_code}"


def checkpoint_text(origin_line: str, size: int, root_hash: bytes) -> str:
    return f"{origin_line}\n{size}\n{b64(root_hash)}\n"


@dataclass(frozen=True)
class Checkpoint:
    text: str  # the note text: the three lines, each with its newline
    origin: str
    size: int
    root_hash: bytes


_SIZE = re.compile(r"^(0|[1-9][0-9]{0,18})$")


def parse_checkpoint(note: str) -> Checkpoint:
    """A checkpoint, or a signed note holding one (its signature lines are left aside)."""
    text = note.split("\n\n", 1)[0] + "\n" if "\n\n" in note else note
    lines = text.split("\n")
    if len(text) > CHECKPOINT_LENGTH_MAX or len(lines) != 4 or lines[3] != "":
        raise ValidationFailed.on("checkpoint", "不是检查点（checkpoint）：应为三行，来源、记录数、根哈希")
    origin_line, size_line, root_line = lines[:3]
    if not origin_line or not _SIZE.match(size_line):
        raise ValidationFailed.on("checkpoint", "检查点的来源或记录数不对")
    root = unb64(root_line, "checkpoint", "检查点的根哈希")
    if len(root) != 32 or b64(root) != root_line:
        raise ValidationFailed.on("checkpoint", "检查点的根哈希应为 32 字节（标准 base64）")
    return Checkpoint(text, origin_line, int(size_line), root)


def sign(text: str, private: Ed25519PrivateKey) -> bytes:
    return private.sign(text.encode())


def verifies(text: str, public_key: bytes, signature: bytes) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, text.encode())
    except (InvalidSignature, ValueError):
        return False
    return True


def signature_line(name: str, public_key: bytes, signature: bytes) -> str:
    return f"{EM_DASH} {name} {b64(key_id(name, public_key) + signature)}\n"
