"""The canonical document of an entry: what its Merkle leaf commits to.

RFC 8785 (JCS) JSON of the entry's fields. The contributor appears only as a pseudonymous id, a
type and a salted commitment to their personal data — never a name, household or phone — so the
document can be published, and erasing a person (deleting name and salt) leaves every hash valid.
Keys with no value are left out, so adding an optional field later does not change old documents.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from ledger import jcs
from ledger.accounts import Posting

DOCUMENT_VERSION = 1
# The kind-specific text fields of an entry, stored in columns of the same names.
ENTRY_TEXT_FIELDS = (
    "memo",
    "channel",
    "receipt_no",
    "grantor",
    "document_no",
    "payee",
    "category",
    "invoice_no",
    "description",
    "reason",
    "payer",
)
SHANGHAI = ZoneInfo("Asia/Shanghai")


@dataclass(frozen=True)
class Signer:
    """A person who signs an entry (经办人 the maker, 审核人 the checker): their role and display
    name, as the hashed document names them."""

    role: str
    name: str

    def as_document(self) -> dict[str, str]:
        return {"name": self.name, "role": self.role}


@dataclass(frozen=True)
class ContributorStamp:
    """What an entry's document says about its contributor."""

    public_id: str
    type: str
    commitment: bytes


def contributor_commitment(
    salt: bytes, name: str, household: str | None, contributor_type: str, anonymous_id: str | None = None
) -> bytes:
    """SHA-256(salt ‖ JCS({name, household, type})): lets a person prove an entry is theirs.

    An anonymous entry commits to its own ``anonymous_id`` as well, so its commitment differs from
    the one on the person's named entries (equal commitments would link them)."""
    fields: dict[str, Any] = {"household": household, "name": name, "type": contributor_type}
    if anonymous_id is not None:
        fields["anonymous_id"] = anonymous_id
    return hashlib.sha256(salt + jcs.dumps(fields)).digest()


def parse_award_basis(text: str | None) -> dict[str, Any] | None:
    """A grant's stored 以奖代补 basis (``entries.award_basis``, RFC 8785 JSON) as the document holds it."""
    return json.loads(text) if text else None


def timestamp_text(moment: datetime) -> str:
    # Not cached: every entry is stamped with its own datetime.now() (ledger/entries.py), even in
    # one batch, so a cache only ever missed and cost verify a few percent.
    local = moment.astimezone(SHANGHAI)
    # The same text either way: "auto" writes microseconds unless there are none, and is cheaper
    # to call than naming the timespec (a keyword argument parsed per call).
    return local.isoformat() if local.microsecond else local.isoformat(timespec="microseconds")


def entry_document(
    *,
    project_code: str,
    seq: int,
    kind: str,
    amount_fen: int,
    occurred_on: date,
    recorded_at: datetime,
    fields: dict[str, Any],
    contributor: ContributorStamp | None,
    anonymous: bool,
    postings: Sequence[Posting],
    reverses_seq: int | None,
    maker: Signer | None = None,
    checker: Signer | None = None,
    attachments: Sequence[str] = (),
    pledge_seq: int | None = None,
    award_basis: dict[str, Any] | None = None,
) -> bytes:
    """The RFC 8785 bytes of an entry's document, from values of any type (each member is checked
    as RFC 8785 would before the fast encoder writes it)."""
    doc = document_object(
        project_code,
        seq,
        kind,
        amount_fen,
        occurred_on,
        recorded_at,
        fields.items(),
        None
        if contributor is None
        else contributor_object(contributor.public_id, contributor.type, contributor.commitment),
        anonymous,
        [[p.account, p.side, p.amount_fen] for p in postings],
        reverses_seq,
        None if maker is None else maker.as_document(),
        None if checker is None else checker.as_document(),
        list(attachments),
        pledge_seq,
        award_basis,
    )
    if award_basis is not None:
        return jcs.dumps(doc)  # a JSON value of any shape: walked member by member
    return jcs.dumps_plain(doc) if _plain_entry(doc) else jcs.dumps(doc)


def contributor_object(public_id: str, contributor_type: str | None, commitment: bytes) -> dict[str, Any]:
    """The document's ``contributor`` member."""
    return {"id": public_id, "type": contributor_type, "commitment": commitment.hex()}


def document_object(
    project_code: str,
    seq: int,
    kind: str,
    amount_fen: int,
    occurred_on: date,
    recorded_at: datetime,
    texts: Iterable[tuple[str, Any]],
    contributor: dict[str, Any] | None,
    anonymous: bool,
    postings: list[list[Any]],
    reverses_seq: int | None,
    maker: dict[str, Any] | None,
    checker: dict[str, Any] | None,
    attachments: list[Any] | None,
    pledge_seq: int | None,
    award_basis: dict[str, Any] | None,
) -> dict[str, Any]:
    """An entry's document as a JSON object, the one definition of its members: what
    :func:`entry_document` writes, and what ``verify`` rebuilds from an entry's stored columns
    (ledger/log_check.py, which calls this with positional arguments and checks only what its
    column types leave open). ``texts``: (name, value) of the kind's text fields (None: left
    out); ``postings``: [account, side, amount] lines. Members with no value are left out, so
    adding an optional member later changes no old document."""
    doc: dict[str, Any] = {
        "v": DOCUMENT_VERSION,
        "project": project_code,
        "seq": seq,
        "kind": kind,
        "amount_fen": amount_fen,
        "currency": "CNY",
        "occurred_on": occurred_on.isoformat(),
        "recorded_at": timestamp_text(recorded_at),
        "postings": postings,
    }
    for name, value in texts:
        if value is not None:
            if name not in _TEXT_FIELDS:
                raise TypeError(f"not an entry text field: {name!r}")
            doc[name] = value
    if contributor is not None:
        doc["contributor"] = contributor
        if anonymous:
            doc["anonymous"] = True
    if reverses_seq is not None:
        doc["reverses"] = reverses_seq
    # Countersigned spending names both signers; the digests prove which files backed it.
    if maker is not None:
        doc["maker"] = maker
    if checker is not None:
        doc["checker"] = checker
    if attachments:
        doc["attachments"] = attachments
    # Which promise this payment keeps is the treasurer's statement: hashed, so it cannot be moved.
    if pledge_seq is not None:
        doc["pledge"] = pledge_seq
    # A grant citing the 以奖代补 computation carries its inputs and result (ledger/awards.py).
    if award_basis is not None:
        doc["award"] = award_basis
    return doc


_TEXT_FIELDS = frozenset(ENTRY_TEXT_FIELDS)


def _plain_entry(doc: dict[str, Any]) -> bool:
    """What :func:`jcs.dumps` checks of every member, checked where ``entry_document`` puts them
    (walking the whole document again was a fifth of the time to rebuild one): strings, safe
    integers, True, the postings' triples, and objects and arrays of strings. Anything else
    (a field that is not a string, an amount beyond 2^53) goes the way of any value."""
    for key, value in doc.items():
        kind = type(value)
        if kind is str or kind is bool:
            continue
        if kind is int:
            if not jcs.is_safe_integer(value):
                return False
        elif key == "postings":
            for posting in value:
                if type(posting) is not list or len(posting) != 3:
                    return False
                account, side, amount = posting
                if type(account) is not str or type(side) is not str or not jcs.is_safe_integer(amount):
                    return False
        elif kind is dict:
            for name, member in value.items():
                if type(name) is not str or not name.isascii() or not (member is None or type(member) is str):
                    return False
        elif kind is list:
            if not all(type(item) is str for item in value):
                return False
        else:
            return False
    return True
