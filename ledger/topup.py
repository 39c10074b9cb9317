"""Automatic top-up: when a wallet falls below its threshold, charge the saved card off-session.

At most one top-up is in flight per wallet (a partial unique index on pending top-ups), so a burst
of low-balance signals charges the card once. A decline marks the purchase failed and is shown to
the owner; the next signal tries again.
"""

from __future__ import annotations

import logging

from django.db import IntegrityError, transaction

from ledger import stripe_gateway
from ledger.exceptions import LedgerError, PaymentFailed, PaymentsNotConfigured
from ledger.models import AutoTopUp, Purchase
from ledger.packs import CURRENCY, pack_get
from ledger.purchases import purchase_fulfil
from ledger.selectors import balance_for

logger = logging.getLogger(__name__)


def auto_topup_configure(
    *,
    owner_ref: str,
    payer_ref: str,
    threshold_credits: int,
    pack_code: str,
    customer_id: str,
    payment_method_id: str,
) -> AutoTopUp:
    """Enable (or change) automatic top-up of ``owner_ref`` with a card already saved at Stripe."""
    pack_get(pack_code)
    if threshold_credits <= 0:
        raise LedgerError("The threshold must be above zero.")
    config, _ = AutoTopUp.objects.update_or_create(
        owner_ref=owner_ref,
        defaults={
            "payer_ref": payer_ref,
            "enabled": True,
            "threshold_credits": threshold_credits,
            "pack": pack_code,
            "stripe_customer_id": customer_id,
            "stripe_payment_method_id": payment_method_id,
            "last_failure": "",
        },
    )
    return config


def auto_topup_disable(*, owner_ref: str) -> None:
    AutoTopUp.objects.filter(owner_ref=owner_ref).update(enabled=False)


def auto_topup_run(*, owner_ref: str) -> str:
    """Top up ``owner_ref`` once if it is below its threshold; returns what happened."""
    config = AutoTopUp.objects.filter(owner_ref=owner_ref, enabled=True).first()
    if config is None:
        return "disabled"
    if not stripe_gateway.is_configured():
        return "payments not configured"
    if balance_for(owner_ref=owner_ref).available >= config.threshold_credits:
        return "not needed"
    pack = pack_get(config.pack)
    pending = Purchase.objects.filter(
        owner_ref=owner_ref, kind=Purchase.Kind.AUTO_TOPUP, status=Purchase.Status.PENDING
    )
    try:
        with transaction.atomic():
            purchase = Purchase.objects.create(
                owner_ref=owner_ref,
                kind=Purchase.Kind.AUTO_TOPUP,
                pack=pack.code,
                credits=pack.credits,
                amount_cents=pack.amount_cents,
                currency=CURRENCY,
            )
    except IntegrityError:
        # One is pending. If its charge was never made (the process died before Stripe
        # answered), make it now: the same idempotency key makes Stripe return the first
        # PaymentIntent if there was one, so the card is charged at most once.
        unpaid = pending.first()
        if unpaid is None or unpaid.payment_intent_id:
            return "in flight"
        purchase = unpaid
    try:
        intent = stripe_gateway.payment_intent_create_off_session(
            amount_cents=purchase.amount_cents,
            currency=CURRENCY,
            customer_id=config.stripe_customer_id,
            payment_method_id=config.stripe_payment_method_id,
            metadata={"purchase_id": str(purchase.pk), "owner_ref": owner_ref},
            idempotency_key=f"topup:{purchase.pk}",
        )
    except PaymentFailed as error:
        Purchase.objects.filter(pk=purchase.pk, status=Purchase.Status.PENDING).update(
            status=Purchase.Status.FAILED, failure_message=str(error)
        )
        AutoTopUp.objects.filter(pk=config.pk).update(last_failure=str(error))
        return "declined"
    Purchase.objects.filter(pk=purchase.pk).update(
        payment_intent_id=intent["id"],
        charge_id=stripe_gateway.object_id(intent.get("latest_charge")),
    )
    if intent.get("status") == "succeeded":
        purchase_fulfil(
            purchase_id=purchase.pk,
            payment_intent_id=intent["id"],
            charge_id=stripe_gateway.object_id(intent.get("latest_charge")),
        )
        AutoTopUp.objects.filter(pk=config.pk).update(last_failure="")
        return "topped up"
    return str(intent.get("status"))


def auto_topup_sweep() -> int:
    """Run every enabled top-up; returns how many charged a card."""
    topped_up = 0
    for owner_ref in list(
        AutoTopUp.objects.filter(enabled=True).values_list("owner_ref", flat=True)
    ):
        try:
            topped_up += auto_topup_run(owner_ref=owner_ref) == "topped up"
        except Exception:  # one wallet's failure must not stop the others' top-ups
            logger.exception("automatic top-up of %s failed; the next round tries again", owner_ref)
    return topped_up


def auto_topup_setup_start(
    *,
    owner_ref: str,
    payer_ref: str,
    threshold_credits: int,
    pack_code: str,
    success_url: str,
    cancel_url: str,
) -> str:
    """Send the payer to Stripe to save a card; the setup webhook then enables the top-up."""
    if not stripe_gateway.is_configured():
        raise PaymentsNotConfigured()
    pack_get(pack_code)
    if threshold_credits <= 0:
        raise LedgerError("The threshold must be above zero.")
    existing = AutoTopUp.objects.filter(owner_ref=owner_ref).first()
    customer_id = (
        existing.stripe_customer_id
        if existing and existing.stripe_customer_id
        else stripe_gateway.customer_create(
            description=f"Payer for {owner_ref}", metadata={"payer_ref": payer_ref}
        )
    )
    session = stripe_gateway.setup_session_create(
        customer_id=customer_id,
        success_url=success_url,
        cancel_url=cancel_url,
        metadata={
            "owner_ref": owner_ref,
            "payer_ref": payer_ref,
            "threshold_credits": str(threshold_credits),
            "pack": pack_code,
        },
    )
    return str(session["url"])
