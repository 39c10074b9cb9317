"""Buying credits through Stripe, and what Stripe tells us afterwards.

* :func:`checkout_start` makes a Checkout Session for a credit pack (price from the server);
* :func:`purchase_fulfil` is **the** fulfilment: one idempotent function, called by the webhook
  (``checkout.session.completed`` when paid, ``checkout.session.async_payment_succeeded``,
  ``payment_intent.succeeded``) and by the success page, whichever comes first;
* :func:`webhook_receive` verifies a webhook on its raw body and applies it through
  :func:`stripe_event_apply`, which records the event id in the same transaction as the ledger
  effect, so a duplicated or concurrent delivery has exactly one effect;
* refunds and chargebacks post reversals; credits already spent become a receivable of the
  participant, never a negative wallet. A later purchase repays the receivable first.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from django.db import connection, transaction

from ledger import stripe_gateway
from ledger.exceptions import (
    LedgerError,
    PaymentsNotConfigured,
    PurchaseNotYetKnown,
    WebhookMalformed,
)
from ledger.models import (
    Account,
    AutoTopUp,
    ChargeDispute,
    JournalEntry,
    Purchase,
    StripeEvent,
)
from ledger.packs import CURRENCY, pack_get
from ledger.services import (
    DISPUTE_HOLD,
    STRIPE_CLEARING,
    Leg,
    _post,
    receivable_address,
    wallet_address,
)

logger = logging.getLogger(__name__)
Reason = JournalEntry.Reason


def _now() -> datetime:
    return datetime.now(tz=UTC)


def _from_timestamp(value: Any) -> datetime:
    try:
        return datetime.fromtimestamp(int(value), tz=UTC)
    except (TypeError, ValueError):
        return _now()


def _cents(obj: dict[str, Any], field: str) -> int:
    """A whole, non-negative amount of cents from an event's object; a malformed one refuses the
    event (400: Stripe stops resending what can never be applied)."""
    value = obj.get(field) or 0
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise WebhookMalformed(f"The event's {field} is not a whole number of cents: {value!r}.")
    return value


# --- Buying ---------------------------------------------------------------------------------------


def checkout_start(
    *, owner_ref: str, pack_code: str, success_url: str, cancel_url: str, email: str = ""
) -> str:
    """Start buying a pack; returns the Stripe Checkout URL to redirect the browser to."""
    if not stripe_gateway.is_configured():
        raise PaymentsNotConfigured()
    pack = pack_get(pack_code)
    purchase = Purchase.objects.create(
        owner_ref=owner_ref,
        kind=Purchase.Kind.CHECKOUT,
        pack=pack.code,
        credits=pack.credits,
        amount_cents=pack.amount_cents,
        currency=CURRENCY,
    )
    try:
        session = stripe_gateway.checkout_session_create(
            amount_cents=pack.amount_cents,
            currency=CURRENCY,
            product_name=f"{pack.label} for the agent marketplace",
            success_url=success_url,
            cancel_url=cancel_url,
            metadata={"purchase_id": str(purchase.pk), "owner_ref": owner_ref, "pack": pack.code},
            idempotency_key=f"checkout:{purchase.pk}",
            customer_email=email,
        )
    except LedgerError as error:
        Purchase.objects.filter(pk=purchase.pk).update(
            status=Purchase.Status.FAILED, failure_message=str(error)
        )
        raise
    Purchase.objects.filter(pk=purchase.pk).update(checkout_session_id=session["id"])
    return str(session["url"])


def purchase_fulfil(
    *,
    purchase_id: int,
    payment_intent_id: str = "",
    charge_id: str = "",
    occurred_at: datetime | None = None,
) -> JournalEntry:
    """Credit a paid purchase, exactly once: stripe_clearing -> wallet, then repay receivables.

    Only the call that credits repays: a replay (the payment's webhook after a refund's webhook
    already credited the purchase, or a duplicate) changes nothing, whatever the wallet now holds.
    """
    with transaction.atomic():
        purchase = Purchase.objects.select_for_update().get(pk=purchase_id)
        crediting = purchase.credit_entry_id is None
        entry = _post(
            idempotency_key=f"purchase:{purchase.pk}",
            operation="purchase",
            payload={"purchase": purchase.pk, "owner_ref": purchase.owner_ref},
            reason=Reason.PURCHASE,
            legs=[Leg(STRIPE_CLEARING, wallet_address(purchase.owner_ref), purchase.credits)],
            domain_ref=f"purchase:{purchase.pk}",
            memo=f"{purchase.credits:,} credits ({purchase.get_kind_display()})",
            occurred_at=occurred_at,
        )
        changes: dict[str, Any] = {}
        if purchase.credit_entry_id is None:
            changes["credit_entry_id"] = entry.pk
        if purchase.status in (Purchase.Status.PENDING, Purchase.Status.FAILED):
            changes["status"] = Purchase.Status.PAID
            changes["failure_message"] = ""
        if payment_intent_id and not purchase.payment_intent_id:
            changes["payment_intent_id"] = payment_intent_id
        if charge_id and not purchase.charge_id:
            changes["charge_id"] = charge_id
        if changes:
            Purchase.objects.filter(pk=purchase.pk).update(updated_at=_now(), **changes)
        if crediting:
            _receivable_repay(owner_ref=purchase.owner_ref, key=f"repay:purchase:{purchase.pk}")
    return entry


def _locked_balance(address: str) -> int:
    """The balance of an account, locked for the rest of the transaction (0 if it is not open).

    Taken before ``ledger_post`` locks the same row, so the split between wallet and receivable
    below cannot be overtaken by a concurrent spend.
    """
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT balance FROM ledger_account WHERE address = %s FOR UPDATE", [address]
        )
        row = cursor.fetchone()
    return row[0] if row else 0


def _receivable_repay(*, owner_ref: str, key: str) -> None:
    # The wallet first: accounts that may not go negative are locked before the others.
    in_wallet = _locked_balance(wallet_address(owner_ref))
    owed = -_locked_balance(receivable_address(owner_ref))
    amount = min(owed, in_wallet)
    if amount > 0:
        _post(
            idempotency_key=key,
            operation="receivable_repay",
            payload={"owner_ref": owner_ref},
            reason=Reason.RECEIVABLE_REPAYMENT,
            legs=[Leg(wallet_address(owner_ref), receivable_address(owner_ref), amount)],
            domain_ref=owner_ref,
        )


def checkout_return(*, session_id: str, owner_ref: str) -> Purchase:
    """The success page: ask Stripe about the session and fulfil it if it is paid."""
    session = stripe_gateway.checkout_session_retrieve(session_id)
    purchase = Purchase.objects.filter(checkout_session_id=session_id).first()
    if purchase is None or purchase.owner_ref != owner_ref:
        raise LedgerError("This checkout is not one of yours.")
    if session.get("payment_status") == "paid":
        purchase_fulfil(
            purchase_id=purchase.pk,
            payment_intent_id=stripe_gateway.object_id(session.get("payment_intent")),
        )
        purchase.refresh_from_db()
    return purchase


# --- Refunds and chargebacks ----------------------------------------------------------------------


def _credits_for(purchase: Purchase, cents: int) -> int:
    """Credits worth ``cents`` of this purchase (floored; cumulative, so no drift)."""
    return purchase.credits * cents // purchase.amount_cents


def _take_back(
    *, owner_ref: str, credits: int, to: str, key: str, reason: str, domain_ref: str, memo: str
) -> tuple[int, int]:
    """Take ``credits`` from a wallet to ``to``; what the wallet lacks is booked as receivable."""
    if credits <= 0:
        return 0, 0
    from_wallet = min(credits, max(_locked_balance(wallet_address(owner_ref)), 0))
    from_receivable = credits - from_wallet
    legs = []
    if from_wallet:
        legs.append(Leg(wallet_address(owner_ref), to, from_wallet))
    if from_receivable:
        legs.append(Leg(receivable_address(owner_ref), to, from_receivable))
    _post(
        idempotency_key=key,
        operation=reason,
        payload={"owner_ref": owner_ref, "credits": credits, "to": to},
        reason=reason,
        legs=legs,
        domain_ref=domain_ref,
        memo=memo,
    )
    return from_wallet, from_receivable


def purchase_refund_apply(
    *, purchase_id: int, refunded_cents_total: int, occurred_at: datetime | None = None
) -> int:
    """Book a (partial) refund: Stripe says ``refunded_cents_total`` of the charge is refunded.

    Cumulative and therefore idempotent: only the part not yet booked is reversed. Returns the
    credits taken back now.
    """
    with transaction.atomic():
        purchase = Purchase.objects.select_for_update().get(pk=purchase_id)
        if purchase.credit_entry_id is None:
            # A refund of a purchase we never credited (events out of order): credit it first, so
            # the books show both movements.
            purchase_fulfil(purchase_id=purchase.pk, occurred_at=occurred_at)
            purchase.refresh_from_db()
        total = min(refunded_cents_total, purchase.amount_cents)
        if total <= purchase.refunded_cents:
            return 0
        credits = _credits_for(purchase, total) - _credits_for(purchase, purchase.refunded_cents)
        if credits > 0:
            _take_back(
                owner_ref=purchase.owner_ref,
                credits=credits,
                to=STRIPE_CLEARING,
                key=f"refund:purchase:{purchase.pk}:{total}",
                reason=Reason.PURCHASE_REFUND,
                domain_ref=f"purchase:{purchase.pk}",
                memo=f"Refund of {total / 100:.2f} {purchase.currency.upper()} at Stripe",
            )
        Purchase.objects.filter(pk=purchase.pk).update(
            refunded_cents=total,
            status=Purchase.Status.REFUNDED if total == purchase.amount_cents else purchase.status,
            updated_at=_now(),
        )
    return credits


def purchase_refund(*, purchase_id: int, amount_cents: int | None, actor_ref: str) -> int:
    """Staff refund through Stripe, booked at once (the ``charge.refunded`` webhook then finds it
    already booked)."""
    purchase = Purchase.objects.get(pk=purchase_id)
    if purchase.status not in (Purchase.Status.PAID, Purchase.Status.REFUNDED):
        raise LedgerError("Only a paid purchase can be refunded.")
    if not purchase.payment_intent_id:
        raise LedgerError("This purchase has no Stripe payment to refund.")
    remaining = purchase.amount_cents - purchase.refunded_cents
    amount = remaining if amount_cents is None else amount_cents
    if not 0 < amount <= remaining:
        raise LedgerError(f"Between 1 and {remaining} cents can still be refunded.")
    stripe_gateway.refund_create(
        payment_intent_id=purchase.payment_intent_id,
        amount_cents=amount,
        idempotency_key=f"refund:{purchase.pk}:{purchase.refunded_cents + amount}",
    )
    logger.info("purchase %s refunded %s cents by %s", purchase.pk, amount, actor_ref)
    return purchase_refund_apply(
        purchase_id=purchase.pk, refunded_cents_total=purchase.refunded_cents + amount
    )


def _dispute_open(
    dispute: dict[str, Any], purchase: Purchase, occurred_at: datetime
) -> ChargeDispute:
    existing = ChargeDispute.objects.select_for_update().filter(dispute_id=dispute["id"]).first()
    if existing is not None:
        return existing
    # What was refunded already is back with the payer: a dispute can only claw back the rest.
    disputable = purchase.amount_cents - purchase.refunded_cents
    credits = _credits_for(purchase, min(_cents(dispute, "amount"), max(disputable, 0)))
    from_wallet, from_receivable = _take_back(
        owner_ref=purchase.owner_ref,
        credits=credits,
        to=DISPUTE_HOLD,
        key=f"dispute:{dispute['id']}:hold",
        reason=Reason.CHARGEBACK_HOLD,
        domain_ref=f"purchase:{purchase.pk}",
        memo=f"Chargeback {dispute['id']} opened",
    )
    return ChargeDispute.objects.create(
        dispute_id=dispute["id"],
        purchase=purchase,
        amount_credits=credits,
        from_wallet=from_wallet,
        from_receivable=from_receivable,
    )


def _dispute_close(dispute: dict[str, Any], purchase: Purchase, occurred_at: datetime) -> str:
    record = _dispute_open(dispute, purchase, occurred_at)
    if record.status != ChargeDispute.Status.OPEN:
        return f"dispute already {record.status}"
    status = str(dispute.get("status") or "")
    # Only "lost" takes the money: "won", "warning_closed" (an inquiry that never became a
    # chargeback) and "prevented" leave it with us, so the held credits go back.
    won = status != "lost"
    if won:
        legs = [
            Leg(DISPUTE_HOLD, wallet_address(purchase.owner_ref), record.from_wallet),
            Leg(DISPUTE_HOLD, receivable_address(purchase.owner_ref), record.from_receivable),
        ]
        reason = Reason.CHARGEBACK_RELEASE
    else:
        legs = [Leg(DISPUTE_HOLD, STRIPE_CLEARING, record.amount_credits)]
        reason = Reason.CHARGEBACK_LOST
    legs = [leg for leg in legs if leg.amount > 0]
    if legs:
        _post(
            idempotency_key=f"dispute:{record.dispute_id}:close",
            operation=reason,
            payload={"dispute": record.dispute_id, "won": won},
            reason=reason,
            legs=legs,
            domain_ref=f"purchase:{purchase.pk}",
            memo=f"Chargeback {record.dispute_id} {status or 'closed'}",
            occurred_at=occurred_at,
        )
    ChargeDispute.objects.filter(pk=record.pk).update(
        status=ChargeDispute.Status.WON if won else ChargeDispute.Status.LOST
    )
    if won:
        _receivable_repay(owner_ref=purchase.owner_ref, key=f"repay:dispute:{record.dispute_id}")
    return f"dispute {status or 'closed'}"


# --- Saving a card for automatic top-ups ------------------------------------------------------


def _auto_topup_setup_complete(session: dict[str, Any]) -> str:
    """A setup-mode Checkout finished: remember the saved card for the wallet it was meant for."""
    metadata = session.get("metadata") or {}
    owner_ref = metadata.get("owner_ref")
    if not owner_ref or not session.get("setup_intent"):
        return "setup without a wallet"
    setup_intent = stripe_gateway.setup_intent_retrieve(session["setup_intent"])
    payment_method = setup_intent.get("payment_method")
    if not payment_method:
        return "setup without a payment method"
    AutoTopUp.objects.update_or_create(
        owner_ref=owner_ref,
        defaults={
            "payer_ref": metadata.get("payer_ref", owner_ref),
            "enabled": True,
            "threshold_credits": int(metadata.get("threshold_credits") or 1_000),
            "pack": metadata.get("pack") or "small",
            "stripe_customer_id": session.get("customer") or "",
            "stripe_payment_method_id": payment_method,
            "last_failure": "",
        },
    )
    return f"auto top-up enabled for {owner_ref}"


# --- Webhooks -------------------------------------------------------------------------------------


def webhook_receive(*, payload: bytes, signature: str) -> str:
    """Verify and apply one webhook delivery; returns what it did (for the log)."""
    event = stripe_gateway.event_from_webhook(payload=payload, signature=signature)
    return stripe_event_apply(event=event)


def _purchase_or_retry(obj: dict[str, Any]) -> Purchase | None:
    """The purchase an event is about. None when the event is not ours (no purchase of ours in
    its metadata: another integration on the same Stripe account). One that names a purchase of
    ours that is not here (yet) raises :class:`PurchaseNotYetKnown`: nothing is recorded, and
    Stripe delivers the event again later, when the purchase may be known."""
    purchase = _purchase_for(obj)
    if purchase is None and _names_our_purchase(obj):
        raise PurchaseNotYetKnown(
            "This event is about a purchase this marketplace does not know yet; deliver it again."
        )
    return purchase


def _names_our_purchase(obj: dict[str, Any]) -> bool:
    metadata = obj.get("metadata") or {}
    return bool(metadata.get("purchase_id") or metadata.get("owner_ref"))


def _purchase_for(obj: dict[str, Any]) -> Purchase | None:
    metadata = obj.get("metadata") or {}
    purchase_id = metadata.get("purchase_id") or obj.get("client_reference_id")
    if purchase_id and str(purchase_id).isdigit():
        found = Purchase.objects.filter(pk=int(purchase_id)).first()
        if found is not None:
            return found
    for field, value in (
        ("checkout_session_id", obj.get("id") if obj.get("object") == "checkout.session" else None),
        ("payment_intent_id", obj.get("payment_intent")),
        ("payment_intent_id", obj.get("id") if obj.get("object") == "payment_intent" else None),
        ("charge_id", obj.get("charge")),
        ("charge_id", obj.get("id") if obj.get("object") == "charge" else None),
    ):
        if value:
            found = Purchase.objects.filter(**{field: value}).first()
            if found is not None:
                return found
    return None


def _on_checkout_completed(obj: dict[str, Any], at: datetime) -> str:
    if obj.get("mode") == "setup":
        return _auto_topup_setup_complete(obj)
    purchase = _purchase_or_retry(obj)
    if purchase is None:
        return "not ours"
    if obj.get("payment_status") != "paid":
        return "awaiting payment"
    purchase_fulfil(
        purchase_id=purchase.pk,
        payment_intent_id=stripe_gateway.object_id(obj.get("payment_intent")),
        occurred_at=at,
    )
    return f"fulfilled purchase {purchase.pk}"


def _on_paid(obj: dict[str, Any], at: datetime) -> str:
    purchase = _purchase_or_retry(obj)
    if purchase is None:
        return "not ours"
    payment_intent = stripe_gateway.object_id(obj.get("payment_intent")) or (
        obj.get("id") if obj.get("object") == "payment_intent" else ""
    )
    purchase_fulfil(
        purchase_id=purchase.pk,
        payment_intent_id=payment_intent or "",
        charge_id=stripe_gateway.object_id(obj.get("latest_charge")),
        occurred_at=at,
    )
    return f"fulfilled purchase {purchase.pk}"


def _on_payment_failed(obj: dict[str, Any], at: datetime) -> str:
    purchase = _purchase_or_retry(obj)
    if purchase is None:
        return "not ours"
    error = obj.get("last_payment_error") or {}
    message = error.get("message") or "The payment failed."
    changed = Purchase.objects.filter(pk=purchase.pk, status=Purchase.Status.PENDING).update(
        status=Purchase.Status.FAILED, failure_message=message, updated_at=_now()
    )
    if purchase.kind == Purchase.Kind.AUTO_TOPUP:
        AutoTopUp.objects.filter(owner_ref=purchase.owner_ref).update(last_failure=message)
    return f"purchase {purchase.pk} failed" if changed else "already settled"


def _on_charge_refunded(obj: dict[str, Any], at: datetime) -> str:
    purchase = _purchase_or_retry(obj)
    if purchase is None:
        return "not ours"
    credits = purchase_refund_apply(
        purchase_id=purchase.pk,
        refunded_cents_total=_cents(obj, "amount_refunded"),
        occurred_at=at,
    )
    return f"refund booked: {credits} credits"


def _on_dispute(obj: dict[str, Any], at: datetime, *, closed: bool) -> str:
    purchase = _purchase_or_retry(obj)
    if purchase is None:
        return "not ours"
    purchase = Purchase.objects.select_for_update().get(pk=purchase.pk)
    if purchase.credit_entry_id is None:
        purchase_fulfil(purchase_id=purchase.pk, occurred_at=at)
        purchase.refresh_from_db()
    if closed:
        return _dispute_close(obj, purchase, at)
    _dispute_open(obj, purchase, at)
    return "dispute opened"


HANDLERS: dict[str, Callable[[dict[str, Any], datetime], str]] = {
    "checkout.session.completed": _on_checkout_completed,
    "checkout.session.async_payment_succeeded": _on_checkout_completed,
    "checkout.session.async_payment_failed": _on_payment_failed,
    "payment_intent.succeeded": _on_paid,
    "payment_intent.payment_failed": _on_payment_failed,
    "charge.refunded": _on_charge_refunded,
    "charge.dispute.created": lambda obj, at: _on_dispute(obj, at, closed=False),
    "charge.dispute.closed": lambda obj, at: _on_dispute(obj, at, closed=True),
}


def stripe_event_apply(*, event: dict[str, Any]) -> str:
    """Apply one verified event exactly once.

    The event id is inserted first, in the same transaction as the effect: a concurrent delivery
    of the same event waits on the unique index, then finds it and does nothing.
    """
    handler = HANDLERS.get(event["type"])
    if handler is None:
        return "ignored"
    at = _from_timestamp(event.get("created"))
    data = event.get("data")
    obj = data.get("object") if isinstance(data, dict) else None
    if not isinstance(obj, dict) or not isinstance(obj.get("metadata") or {}, dict):
        raise WebhookMalformed(f"The {event['type']} event carries no object to apply.")
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(
                "INSERT INTO ledger_stripeevent (event_id, type, created_at_stripe, received_at,"
                " outcome) VALUES (%s, %s, %s, now(), '') ON CONFLICT DO NOTHING RETURNING 1",
                [event["id"], event["type"], at],
            )
            if cursor.fetchone() is None:
                return "duplicate"
        outcome = handler(obj, at)
        StripeEvent.objects.filter(pk=event["id"]).update(outcome=outcome[:200])
    return outcome


def wallet_receivable(*, owner_ref: str) -> int:
    """What a participant owes the platform after refunds or chargebacks of spent credits."""
    balance = (
        Account.objects.filter(address=receivable_address(owner_ref))
        .values_list("balance", flat=True)
        .first()
    )
    return -(balance or 0)
