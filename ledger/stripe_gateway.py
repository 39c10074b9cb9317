"""The one place that talks to Stripe. Everything else calls these functions.

Tests point ``STRIPE_API_BASE`` at a localstripe server on loopback; production leaves it empty.
Each function returns plain dictionaries, so that Stripe's objects do not leak into the ledger, and
turns Stripe's errors into the ledger's own.
"""

from __future__ import annotations

import json
import time
from functools import lru_cache
from typing import Any

import stripe
from django.conf import settings
from stripe import RequestOptions
from stripe.params import PaymentIntentCreateParams, RefundCreateParams
from stripe.params.checkout import SessionCreateParams

from ledger.exceptions import (
    LedgerError,
    PaymentFailed,
    PaymentsNotConfigured,
    WebhookSignatureInvalid,
)

WEBHOOK_TOLERANCE_SECONDS = 300


def is_configured() -> bool:
    return bool(settings.STRIPE_SECRET_KEY)


def webhooks_configured() -> bool:
    return bool(settings.STRIPE_WEBHOOK_SECRET)


@lru_cache(maxsize=4)
def _client_for(api_key: str, api_base: str) -> stripe.StripeClient:
    return stripe.StripeClient(
        api_key,
        base_addresses={"api": api_base.rstrip("/")} if api_base else None,
        max_network_retries=2,
    )


def _client() -> stripe.StripeClient:
    if not is_configured():
        raise PaymentsNotConfigured()
    return _client_for(settings.STRIPE_SECRET_KEY, settings.STRIPE_API_BASE or "")


def _plain(obj: Any) -> dict[str, Any]:
    return obj.to_dict() if hasattr(obj, "to_dict") else dict(obj)


def object_id(value: Any) -> str:
    """The id of a field that Stripe returns either as an id or as the expanded object."""
    if isinstance(value, dict):
        return str(value.get("id") or "")
    return str(value or "")


def _options(idempotency_key: str | None) -> RequestOptions:
    return {"idempotency_key": idempotency_key} if idempotency_key else {}


def checkout_session_create(
    *,
    amount_cents: int,
    currency: str,
    product_name: str,
    success_url: str,
    cancel_url: str,
    metadata: dict[str, str],
    idempotency_key: str,
    customer_email: str = "",
) -> dict[str, Any]:
    params: SessionCreateParams = {
        "mode": "payment",
        "line_items": [
            {
                "price_data": {
                    "currency": currency,
                    "unit_amount": amount_cents,
                    "product_data": {"name": product_name},
                },
                "quantity": 1,
            }
        ],
        "client_reference_id": metadata.get("purchase_id", ""),
        "metadata": metadata,
        "payment_intent_data": {"metadata": metadata},
        "success_url": success_url,
        "cancel_url": cancel_url,
    }
    if customer_email:
        params["customer_email"] = customer_email
    try:
        session = _client().v1.checkout.sessions.create(params, _options(idempotency_key))
    except stripe.StripeError as error:
        raise LedgerError(f"Stripe refused the checkout: {error.user_message or error}") from error
    return _plain(session)


def checkout_session_retrieve(session_id: str) -> dict[str, Any]:
    try:
        return _plain(_client().v1.checkout.sessions.retrieve(session_id))
    except stripe.StripeError as error:
        raise LedgerError(f"Stripe could not find the checkout: {error}") from error


def setup_session_create(
    *, customer_id: str, success_url: str, cancel_url: str, metadata: dict[str, str]
) -> dict[str, Any]:
    """A Checkout Session in setup mode: the payer saves a card for off-session top-ups."""
    params: SessionCreateParams = {
        "mode": "setup",
        "customer": customer_id,
        # Kept as sent so far (localstripe knows it); the SDK's types, of a newer API version,
        # name it allowed_payment_method_types: to be checked against live Stripe.
        "payment_method_types": ["card"],  # type: ignore[typeddict-unknown-key]
        "metadata": metadata,
        "success_url": success_url,
        "cancel_url": cancel_url,
    }
    try:
        return _plain(_client().v1.checkout.sessions.create(params))
    except stripe.StripeError as error:
        message = error.user_message or str(error)
        raise LedgerError(f"Stripe refused the card setup: {message}") from error


def setup_intent_retrieve(setup_intent_id: str) -> dict[str, Any]:
    return _plain(_client().v1.setup_intents.retrieve(setup_intent_id))


def customer_create(*, description: str, metadata: dict[str, str]) -> str:
    customer = _client().v1.customers.create({"description": description, "metadata": metadata})
    return str(customer.id)


def payment_method_attach(*, payment_method_id: str, customer_id: str) -> None:
    try:
        _client().v1.payment_methods.attach(payment_method_id, {"customer": customer_id})
    except stripe.CardError as error:
        raise PaymentFailed(error.user_message or str(error)) from error


def payment_intent_create_off_session(
    *,
    amount_cents: int,
    currency: str,
    customer_id: str,
    payment_method_id: str,
    metadata: dict[str, str],
    idempotency_key: str,
) -> dict[str, Any]:
    """Charge a saved card now, without the customer present. Declines raise PaymentFailed."""
    params: PaymentIntentCreateParams = {
        "amount": amount_cents,
        "currency": currency,
        "customer": customer_id,
        "payment_method": payment_method_id,
        "off_session": True,
        "confirm": True,
        "metadata": metadata,
    }
    try:
        intent = _client().v1.payment_intents.create(params, _options(idempotency_key))
    except stripe.CardError as error:
        raise PaymentFailed(f"The card was declined: {error.user_message or error}") from error
    return _plain(intent)


def refund_create(
    *, payment_intent_id: str, amount_cents: int | None, idempotency_key: str
) -> dict[str, Any]:
    params: RefundCreateParams = {"payment_intent": payment_intent_id}
    if amount_cents is not None:
        params["amount"] = amount_cents
    try:
        refund = _client().v1.refunds.create(params, _options(idempotency_key))
    except stripe.StripeError as error:
        raise LedgerError(f"Stripe refused the refund: {error.user_message or error}") from error
    return _plain(refund)


def charge_retrieve(charge_id: str) -> dict[str, Any]:
    return _plain(_client().v1.charges.retrieve(charge_id))


def event_from_webhook(*, payload: bytes, signature: str) -> dict[str, Any]:
    """Verify a webhook on its raw body with the signing secret; refuse stale or forged ones."""
    secret = settings.STRIPE_WEBHOOK_SECRET
    if not secret:
        raise PaymentsNotConfigured()
    try:
        stripe.WebhookSignature.verify_header(
            payload.decode("utf-8"), signature, secret, WEBHOOK_TOLERANCE_SECONDS
        )
    except (stripe.SignatureVerificationError, UnicodeDecodeError, ValueError) as error:
        raise WebhookSignatureInvalid(f"Invalid Stripe signature: {error}") from error
    # Stripe's helper refuses old timestamps only; one far in the future is as suspicious.
    stamps = [part[2:] for part in signature.split(",") if part.startswith("t=")]
    if not stamps or not stamps[0].isdigit():
        raise WebhookSignatureInvalid("Invalid Stripe signature: no timestamp.")
    if int(stamps[0]) > time.time() + WEBHOOK_TOLERANCE_SECONDS:
        raise WebhookSignatureInvalid("Invalid Stripe signature: timestamp in the future.")
    try:
        event = json.loads(payload)
    except ValueError as error:
        raise WebhookSignatureInvalid("The webhook body is not JSON.") from error
    if not isinstance(event, dict) or "id" not in event or "type" not in event:
        raise WebhookSignatureInvalid("The webhook body is not a Stripe event.")
    return event
