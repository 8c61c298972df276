"""Every expected failure of the ledger, each with a stable machine-readable ``code``.

The API maps these once to RFC 9457 problem+json (api/errors.py); the ledger itself knows nothing
of HTTP. Messages are in Chinese: they reach treasurers and residents.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FieldError:
    field: str
    message: str


class LedgerError(Exception):
    code = "ledger_error"

    def __init__(self, detail: str, errors: list[FieldError] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = errors or []
        self.index: int | None = None  # which draft of a batch failed

    def at(self, index: int) -> LedgerError:
        self.index = index
        return self

    def with_field_prefix(self, prefix: str) -> LedgerError:
        """The same error, its fields moved under ``prefix`` (``entries[41]`` in a batch)."""
        errors = [FieldError(f"{prefix}.{e.field}" if e.field else prefix, e.message) for e in self.errors]
        if not errors:
            errors = [FieldError(prefix, self.detail)]
        clone = type(self).__new__(type(self))
        LedgerError.__init__(clone, self.detail, errors)
        clone.index = self.index
        return clone


@dataclass(frozen=True)
class EntryWarning:
    """What a write noticed but did not refuse (a pledge paid beyond its promise): reported in the
    write's response with a stable ``code``, the entry recorded all the same."""

    code: str
    message: str


class NotFound(LedgerError):
    code = "not_found"


class TokenRevoked(LedgerError):
    """The token a write was made with was revoked before the write's transaction checked it."""

    code = "unauthorized"


class ValidationFailed(LedgerError):
    code = "validation_failed"

    @classmethod
    def on(cls, field: str, message: str) -> ValidationFailed:
        return cls(message, [FieldError(field, message)])


class Conflict(LedgerError):
    code = "conflict"


class InsufficientFunds(Conflict):
    code = "insufficient_funds"


class AlreadyReversed(Conflict):
    code = "already_reversed"


class StageForbidsEntry(Conflict):
    code = "stage_forbids_entry"


class CountersignRequired(Conflict):
    code = "countersign_required"


class IdempotencyInFlight(Conflict):
    code = "idempotency_in_flight"


class IdempotencyKeyReused(LedgerError):
    code = "idempotency_key_reused"


class Forbidden(LedgerError):
    """The caller may not do this to this object (approving a voucher they submitted)."""

    code = "forbidden"


class UnsupportedMediaType(LedgerError):
    code = "unsupported_media_type"


class PayloadTooLarge(LedgerError):
    code = "payload_too_large"
