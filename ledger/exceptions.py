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


class DebtOutstanding(InsufficientCredits):
    """The participant owes credits (a refund or chargeback of credits already spent): spending
    waits until a purchase repays the debt."""

    code = "debt_outstanding"

    def __init__(self, *, owner_ref: str, owed: int) -> None:
        LedgerError.__init__(
            self,
            f"You owe {owed:,} credits after a refund or chargeback of credits already spent;"
            " buy credits to repay the debt before spending again.",
        )
        self.address, self.available, self.needed, self.owed = owner_ref, 0, owed, owed


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


class WebhookMalformed(LedgerError):
    """A signed event whose object is not what its type promises: Stripe should stop sending it."""

    code = "malformed_event"
    http_status = 400


class PurchaseNotYetKnown(LedgerError):
    """An event names a purchase of ours that this database does not hold (yet): nothing is
    recorded, and the non-2xx answer makes Stripe deliver it again later."""

    code = "purchase_not_yet_known"
    http_status = 409


class WebhookSignatureInvalid(LedgerError):
    code = "invalid_signature"
    http_status = 400
