"""Domain errors of the ledger. ``code`` and ``http_status`` shape the API's error body."""

from __future__ import annotations


class LedgerError(Exception):
    code = "ledger_error"
    http_status = 400


class InsufficientCredits(LedgerError):
    code = "insufficient_credits"
    http_status = 402

    def __init__(self, *, address: str, available: int, needed: int) -> None:
        self.address = address
        self.available = available
        self.needed = needed
        super().__init__(
            f"Insufficient credits in {address}: {available} available, {needed} needed."
        )


class IdempotencyConflict(LedgerError):
    code = "idempotency_conflict"
    http_status = 409

    def __init__(self, key: str) -> None:
        self.key = key
        super().__init__(f"The idempotency key {key!r} was already used for a different request.")


class EscrowAlreadyResolved(LedgerError):
    code = "escrow_already_resolved"
    http_status = 409


class EscrowNotFound(LedgerError):
    code = "escrow_not_found"
    http_status = 404


class EscrowBalanceChanged(LedgerError):
    """The settlement plan was made for another escrow balance (a delegation happened since)."""

    code = "escrow_balance_changed"
    http_status = 409


class EntryAlreadyReversed(LedgerError):
    code = "entry_already_reversed"
    http_status = 409


class UnknownAccount(LedgerError):
    code = "unknown_account"
    http_status = 404


class LedgerBusy(LedgerError):
    """A serialization failure or deadlock inside a caller's transaction: retry the whole request.

    Raised only when the ledger cannot retry by itself (the caller owns the transaction); it is
    never reported as insufficient credits.
    """

    code = "ledger_busy"
    http_status = 503


class PaymentsNotConfigured(LedgerError):
    code = "payments_not_configured"
    http_status = 503

    def __init__(self) -> None:
        super().__init__("Payments are not configured on this site.")


class PaymentFailed(LedgerError):
    code = "payment_failed"
    http_status = 402


class WebhookSignatureInvalid(LedgerError):
    code = "invalid_signature"
    http_status = 400
