"""ledger/jcs.py's fast path writes exactly what the rfc8785 package writes (and raises where it
raises), on generated values and on real entry documents. Not timed."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger import jcs
from ledger.accounts import Posting
from ledger.canonical import ContributorStamp, Signer, entry_document

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
    import json

    assert document == rfc8785.dumps(json.loads(document))
