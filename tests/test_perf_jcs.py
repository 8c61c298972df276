"""ledger/jcs.py's fast path writes exactly what the rfc8785 package writes (and raises where it
raises), on generated values and on real entry documents. Not timed."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from typing import Any

import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger import jcs, log_check
from ledger.accounts import Posting
from ledger.canonical import (
    ENTRY_TEXT_FIELDS,
    SHANGHAI,
    ContributorStamp,
    Signer,
    entry_document,
    parse_award_basis,
    timestamp_text,
)

_leaf = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**60), max_value=2**60)
    | st.integers(min_value=-(2**53) - 2, max_value=-(2**53) + 2)
    | st.integers(min_value=2**53 - 2, max_value=2**53 + 2)
    | st.text()
    | st.text(alphabet=st.characters(max_codepoint=0x3F))
    | st.floats(allow_nan=False, allow_infinity=False)
)
_keys = st.text(max_size=8) | st.sampled_from(["a", "B", "_", "z", "amount_fen", "项目", "\U0001f600", "\ufb01"])
_values = st.recursive(_leaf, lambda inner: st.lists(inner, max_size=5) | st.dictionaries(_keys, inner, max_size=6))


def _outcome(dump: Any, value: Any) -> tuple[str, Any]:
    try:
        return "ok", dump(value)
    except Exception as exc:
        return "error", type(exc).__name__


@settings(max_examples=200, deadline=None)
@given(_values)
def test_the_fast_path_is_rfc8785(value: Any) -> None:
    assert _outcome(jcs.dumps, value) == _outcome(rfc8785.dumps, value)


def test_control_characters_and_surrogates() -> None:
    for text in ('\x00\x1f\x7f\b\f\n\r\t"\\/', "\u2028\u2029", "汉字\U0001f600", "\ud800"):
        assert _outcome(jcs.dumps, {"k": text}) == _outcome(rfc8785.dumps, {"k": text})


def test_an_entry_document_is_the_same_bytes() -> None:
    fields = {"memo": "路面刷黑众筹\n第二期", "channel": "wechat", "receipt_no": "SJ-0001", "payee": None}
    document = entry_document(
        project_code="jinxiu-road",
        seq=42,
        kind="contribution",
        amount_fen=12_345,
        occurred_on=date(2025, 6, 1),
        recorded_at=datetime(2025, 6, 1, 2, 3, 4, 567, tzinfo=UTC),
        fields=fields,
        contributor=ContributorStamp("3f2a", "resident", bytes(32)),
        anonymous=True,
        postings=[Posting("cash", "debit", 12_345), Posting("contributions", "credit", 12_345)],
        reverses_seq=None,
        maker=Signer("treasurer", "王会计"),
        attachments=("ab" * 32,),
        pledge_seq=7,
        award_basis={"rate": "1.5", "households": 300},
    )
    assert document == rfc8785.dumps(json.loads(document))


def _document(fields: dict[str, Any], amounts: tuple[Any, Any, Any], **extra: Any) -> bytes:
    amount, posted, reverses = amounts
    return entry_document(
        project_code="jinxiu-road",
        seq=3,
        kind="contribution",
        amount_fen=amount,
        occurred_on=date(2025, 6, 1),
        recorded_at=datetime(2025, 6, 1, 2, 3, 4, 567, tzinfo=UTC),
        fields=fields,
        contributor=extra.pop("contributor", None),
        anonymous=False,
        postings=[Posting("cash", "debit", posted), Posting("contributions", "credit", posted)],
        reverses_seq=reverses,
        **extra,
    )


def _as_rfc8785(fields: dict[str, Any], amounts: tuple[Any, Any, Any], **extra: Any) -> bytes:
    """The same document as a plain dict, written by the rfc8785 package."""
    amount, posted, reverses = amounts
    doc: dict[str, Any] = {
        "v": 1,
        "project": "jinxiu-road",
        "seq": 3,
        "kind": "contribution",
        "amount_fen": amount,
        "currency": "CNY",
        "occurred_on": "2025-06-01",
        "recorded_at": "2025-06-01T10:03:04.000567+08:00",
        "postings": [["cash", "debit", posted], ["contributions", "credit", posted]],
        **{k: v for k, v in fields.items() if v is not None},
    }
    contributor = extra.get("contributor")
    if contributor is not None:
        doc["contributor"] = {
            "id": contributor.public_id,
            "type": contributor.type,
            "commitment": contributor.commitment.hex(),
        }
    if reverses is not None:
        doc["reverses"] = reverses
    if extra.get("maker") is not None:
        doc["maker"] = extra["maker"].as_document()
    if extra.get("attachments"):
        doc["attachments"] = list(extra["attachments"])
    return rfc8785.dumps(doc)


_amounts = (
    st.integers(min_value=-(2**53) - 2, max_value=-(2**53) + 2)
    | st.integers(min_value=2**53 - 2, max_value=2**53 + 2)
    | st.integers(min_value=0, max_value=10**6)
)


@settings(max_examples=300, deadline=None)
@given(
    fields=st.dictionaries(st.sampled_from(["memo", "channel", "payee", "description"]), _values, max_size=3),
    amounts=st.tuples(_amounts, _amounts, st.none() | _amounts | st.booleans()),
    name=st.text(max_size=4) | st.none(),
    attachments=st.lists(st.text(max_size=4) | st.integers(), max_size=2),
)
def test_an_entry_document_checks_its_own_members_as_rfc8785_would(
    fields: dict[str, Any], amounts: tuple[Any, Any, Any], name: str | None, attachments: list[Any]
) -> None:
    """entry_document checks its members where it puts them instead of walking the whole
    document (jcs.dumps_plain): for any field values, amounts beyond 2^53, lone surrogates, non-str
    names or attachments, it writes exactly what rfc8785 writes, or fails where rfc8785 fails."""
    extra: dict[str, Any] = {
        "contributor": ContributorStamp("3f2a", name, bytes(32)),  # type: ignore[arg-type]
        "maker": Signer("treasurer", name) if name is not None else None,  # type: ignore[arg-type]
        "attachments": tuple(attachments),
    }
    got = _outcome(lambda _: _document(fields, amounts, **dict(extra)), None)
    want = _outcome(lambda _: _as_rfc8785(fields, amounts, **dict(extra)), None)
    assert got == want


@settings(max_examples=300, deadline=None)
@given(st.datetimes(min_value=datetime(1800, 1, 1), max_value=datetime(9998, 12, 31), timezones=st.just(UTC)))
def test_timestamp_text_is_the_microsecond_isoformat_in_shanghai(moment: datetime) -> None:
    """timestamp_text skips naming the timespec when it would not matter (a tenth of a document):
    the text is still always Shanghai's time with six digits of microseconds, even at .000000."""
    for instant in (moment, moment.replace(microsecond=0)):
        assert timestamp_text(instant) == instant.astimezone(SHANGHAI).isoformat(timespec="microseconds")


_texts = st.none() | st.text(max_size=6) | st.sampled_from(["", "路面刷黑众筹", 'a"\\\n\x01', "\u2028"])
_big_or_small = st.integers(min_value=0, max_value=10**6) | st.integers(min_value=2**53 - 1, max_value=2**53 + 1)


@settings(max_examples=400, deadline=None)
@given(
    texts=st.tuples(*[_texts] * len(ENTRY_TEXT_FIELDS)),
    amount=st.integers(min_value=0, max_value=10**9),
    posted=st.lists(st.tuples(st.none() | st.sampled_from(["cash", "contributions"]), _big_or_small), max_size=3),
    person=st.none() | st.tuples(st.text(max_size=4), st.none() | st.sampled_from(["resident", "unit"])),
    anonymous_id=st.none() | st.just("0b5c1e4a-2d2f-4a8e-9d35-7f1c2b3a4d5e"),
    anonymous=st.booleans(),
    refs=st.tuples(st.none() | _big_or_small, st.none() | _big_or_small),
    signers=st.tuples(st.none() | st.text(max_size=3), st.none() | st.text(max_size=3)),
    attachments=st.none() | st.lists(st.text(max_size=3), max_size=2),
    award=st.none() | st.sampled_from(['{"rate":"1.5","households":300}', '{"b":[1,null,"x"],"a":{}}']),
)
def test_verify_rebuilds_what_entry_document_writes(
    texts: tuple[str | None, ...],
    amount: int,
    posted: list[tuple[str | None, int]],
    person: tuple[str, str | None] | None,
    anonymous_id: str | None,
    anonymous: bool,
    refs: tuple[int | None, int | None],
    signers: tuple[str | None, str | None],
    attachments: list[str] | None,
    award: str | None,
) -> None:
    """log_check.rebuild_document builds the document from an entry's stored columns by position
    and checks only what the column types leave open; for any values those columns can hold it
    writes exactly what entry_document (every member checked) writes, or fails where it fails."""
    reverses, pledge = refs
    maker, checker = signers
    recorded_at = datetime(2025, 6, 1, 2, 3, 4, 567, tzinfo=UTC)
    # An account id with no account reads as no code (None): the document writes null.
    lines: list[Any] = [
        (account, side, value) for (account, value), side in zip(posted, ["debit", "credit"] * 2, strict=False)
    ]
    postings = [Posting(*line) for line in lines]
    people: Any = {} if person is None else {5: person}
    columns = {
        "seq": 9,
        "kind": "contribution",
        "amount_fen": amount,
        "occurred_on": date(2025, 6, 1),
        "recorded_at": recorded_at,
        **dict(zip(ENTRY_TEXT_FIELDS, texts, strict=True)),
        "reverses_seq": reverses,
        "anonymous": anonymous,
        "anonymous_id": anonymous_id,
        "contributor_id": 5,
        "contributor_commitment": bytes(range(32)),
        "leaf_hash": bytes(32),
        "document": b"",
        "maker_role": "treasurer",
        "maker_name": maker,
        "checker_role": "auditor",
        "checker_name": checker,
        "attachments": attachments,
        "pledge_seq": pledge,
        "award_basis": award,
    }
    row = tuple(columns[name] for name in log_check.ENTRY_COLUMNS)
    public_id, kind = person if person is not None else (None, None)
    if anonymous_id is not None:
        public_id = anonymous_id
    stamp = None if public_id is None else ContributorStamp(public_id, kind, bytes(range(32)))  # type: ignore[arg-type]
    expected = _outcome(
        lambda _: entry_document(
            project_code="jinxiu-road",
            seq=9,
            kind="contribution",
            amount_fen=amount,
            occurred_on=date(2025, 6, 1),
            recorded_at=recorded_at,
            fields=dict(zip(ENTRY_TEXT_FIELDS, texts, strict=True)),
            contributor=stamp,
            anonymous=anonymous,
            postings=postings,
            reverses_seq=reverses,
            maker=None if maker is None else Signer("treasurer", maker),
            checker=None if checker is None else Signer("auditor", checker),
            attachments=tuple(attachments or ()),
            pledge_seq=pledge,
            award_basis=parse_award_basis(award),
        ),
        None,
    )
    got = _outcome(lambda _: log_check.rebuild_document("jinxiu-road", row, postings, people), None)
    assert got == expected
    if expected[0] == "ok":
        assert expected[1] == rfc8785.dumps(json.loads(expected[1]))
