"""RFC 8785 (JSON Canonicalization Scheme) at the speed of a C encoder (msgspec's).

The ``rfc8785`` package serializes in pure Python: it was three quarters of ``verify``'s CPU and a
visible share of every append (bench/million.py, bench/append.py --profile). For the values the
ledger hashes — objects with ASCII keys, strings, integers within ±(2^53 − 1), booleans, null,
arrays — RFC 8785's output is exactly what ``msgspec.json.Encoder(order="sorted")`` writes (as
does ``json.dumps(sort_keys=True, separators=(",", ":"), ensure_ascii=False)``, six times slower:
8.5 µs against 1.4 µs for an entry document): keys sorted by code point (= by UTF-16 unit for
ASCII), no whitespace, strings escaped the same way (``\\"``, ``\\\\``, ``\\b \\f \\n \\r \\t``, other controls as lowercase
``\\u00xx``, everything else raw UTF-8), integers in plain decimal. Anything else (a float, a
non-ASCII key, an integer beyond 2^53, a lone surrogate) goes to ``rfc8785`` itself, which also
raises its errors. tests/test_perf_jcs.py compares the two on generated values.
"""

from __future__ import annotations

from typing import Any

import msgspec
import rfc8785

_SAFE_INTEGER = 2**53 - 1
_encode = msgspec.json.Encoder(order="sorted").encode


def _plain(value: Any) -> bool:
    stack = [value]
    while stack:
        item = stack.pop()
        kind = type(item)
        if kind is str or kind is bool or item is None:
            continue
        if kind is int:
            if -_SAFE_INTEGER <= item <= _SAFE_INTEGER:
                continue
            return False
        if kind is dict:
            for key, member in item.items():
                if type(key) is not str or not key.isascii():
                    return False
                stack.append(member)
            continue
        if kind is list:
            stack.extend(item)
            continue
        return False
    return True


def dumps(value: Any) -> bytes:
    """The RFC 8785 canonical form of ``value``, as UTF-8 bytes."""
    return dumps_plain(value) if _plain(value) else rfc8785.dumps(value)


def is_safe_integer(value: object) -> bool:
    """An ``int`` (not a bool) within ±(2^53 − 1), which RFC 8785 writes as plain decimal."""
    return type(value) is int and -_SAFE_INTEGER <= value <= _SAFE_INTEGER


def dumps_plain(value: Any) -> bytes:
    """The RFC 8785 form of a value its caller has checked holds only what the fast path writes
    exactly (see the module's docstring), skipping the walk :func:`dumps` makes over every member."""
    try:
        return _encode(value)
    except UnicodeEncodeError:  # a lone surrogate: rfc8785 says what is wrong with it
        return rfc8785.dumps(value)
