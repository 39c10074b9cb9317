"""Automatic top-up end to end against a real localstripe server on loopback.

localstripe charges the saved card, then delivers its own signed webhooks to the live test server;
our fulfilment must count each payment once whichever arrives first.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import stripe
from django.conf import settings
from django.test import Client

from ledger import selectors, services, stripe_gateway
from ledger.models import AutoTopUp, JournalEntry, Purchase, StripeEvent
from ledger.purchases import purchase_refund, wallet_receivable
from ledger.tasks import auto_topup_check
from ledger.topup import auto_topup_configure, auto_topup_run
from tests.conftest import wait_until
from tests.ledger.conftest import WEBHOOK_SECRET, funded_wallet, new_ref, signed_webhook

pytestmark = pytest.mark.django_db(transaction=True)

GOOD_CARD = "4242424242424242"
DECLINED_CARD = "4000000000000341"  # attaches, then every charge is declined


@pytest.fixture
def stripe_live(stripe_settings: str, live_server: Any) -> str:
    """localstripe sends its webhooks to this test's live server, signed with our secret."""
    response = httpx.post(
        f"{stripe_settings}/_config/webhooks/ledger-tests",
        data={"url": f"{live_server.url}/stripe/webhook/", "secret": WEBHOOK_SECRET},
        timeout=10,
    )
    assert response.status_code == 200
    return stripe_settings


def saved_card(number: str) -> tuple[str, str]:
    """What the browser does with Stripe.js: a customer and a card attached to it."""
    client = stripe.StripeClient(
        settings.STRIPE_SECRET_KEY, base_addresses={"api": settings.STRIPE_API_BASE}
    )
    card = {"number": number, "exp_month": 12, "exp_year": 2030, "cvc": "123"}
    method = client.v1.payment_methods.create({"type": "card", "card": card})
    customer = stripe_gateway.customer_create(description="owner of an agent", metadata={})
    stripe_gateway.payment_method_attach(payment_method_id=method.id, customer_id=customer)
    return customer, method.id


def enable(agent: str, owner: str, card: str) -> None:
    customer, method = saved_card(card)
    auto_topup_configure(
        owner_ref=agent,
        payer_ref=owner,
        threshold_credits=1_000,
        pack_code="small",
        customer_id=customer,
        payment_method_id=method,
    )


def test_a_low_wallet_is_topped_up_once_and_the_webhook_changes_nothing(
    stripe_live: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    owner, agent = funded_wallet(0), funded_wallet(1_500)
    enable(agent, owner, GOOD_CARD)
    sent: list[tuple[str, dict]] = []
    monkeypatch.setattr(
        services.current_app, "send_task", lambda name, kwargs: sent.append((name, kwargs))
    )
    services.escrow_lock(
        task_ref=new_ref("task"), payer_ref=agent, amount=1_000, idempotency_key="spend"
    )
    # The spend left 500 < 1,000: the check is queued once the spend has committed.
    assert sent == [("ledger.tasks.auto_topup_check", {"owner_ref": agent})]
    assert auto_topup_check.apply(kwargs={"owner_ref": agent}).get() == "topped up"
    assert selectors.balance_for(owner_ref=agent).available == 5_500
    purchase = Purchase.objects.get(owner_ref=agent)
    assert purchase.status == Purchase.Status.PAID and purchase.payment_intent_id.startswith("pi_")
    # localstripe's own payment_intent.succeeded webhook arrives about a second later.
    wait_until(lambda: StripeEvent.objects.filter(type="payment_intent.succeeded").exists())
    assert selectors.balance_for(owner_ref=agent).available == 5_500
    credits = JournalEntry.objects.filter(reason="purchase", domain_ref=f"purchase:{purchase.pk}")
    assert credits.count() == 1
    # Above the threshold now: nothing more to do.
    assert auto_topup_run(owner_ref=agent) == "not needed"


def test_a_declined_card_fails_the_top_up_without_credits(stripe_live: str) -> None:
    owner, agent = funded_wallet(0), funded_wallet(100)
    enable(agent, owner, DECLINED_CARD)
    assert auto_topup_run(owner_ref=agent) == "declined"
    purchase = Purchase.objects.get(owner_ref=agent)
    assert purchase.status == Purchase.Status.FAILED
    assert "declined" in purchase.failure_message
    assert selectors.balance_for(owner_ref=agent).available == 100
    wait_until(lambda: StripeEvent.objects.filter(type="payment_intent.payment_failed").exists())
    purchase.refresh_from_db()
    assert purchase.status == Purchase.Status.FAILED
    assert selectors.balance_for(owner_ref=agent).available == 100
    # A failed top-up is not "in flight": the next low-balance signal tries again.
    assert auto_topup_run(owner_ref=agent) == "declined"
    assert Purchase.objects.filter(owner_ref=agent, status="failed").count() == 2


def test_a_refund_takes_back_the_credits_and_books_what_was_spent(stripe_live: str) -> None:
    owner, agent = funded_wallet(0), funded_wallet(0)
    enable(agent, owner, GOOD_CARD)
    assert auto_topup_run(owner_ref=agent) == "topped up"
    purchase = Purchase.objects.get(owner_ref=agent)
    services.escrow_lock(
        task_ref=new_ref("task"), payer_ref=agent, amount=4_000, idempotency_key="spend"
    )
    assert purchase_refund(purchase_id=purchase.pk, amount_cents=None, actor_ref="staff:1") == 5_000
    assert selectors.balance_for(owner_ref=agent).available == 0
    assert wallet_receivable(owner_ref=agent) == 4_000
    # Stripe's charge.refunded for the same refund (localstripe does not send it: we sign it from
    # the charge as localstripe now reports it) finds it already booked.
    purchase.refresh_from_db()
    charge = stripe_gateway.charge_retrieve(purchase.charge_id)
    assert charge["amount_refunded"] == 500
    event = {
        "id": "evt_refund_ls",
        "type": "charge.refunded",
        "created": charge["created"],
        "data": {"object": {**charge, "payment_intent": purchase.payment_intent_id}},
    }
    payload, header = signed_webhook(event)
    answer = Client().post(
        "/stripe/webhook/", payload, content_type="application/json", HTTP_STRIPE_SIGNATURE=header
    )
    assert answer.json()["outcome"] == "refund booked: 0 credits"
    assert wallet_receivable(owner_ref=agent) == 4_000
    assert selectors.trial_balance().total == 0


def test_saving_a_card_through_setup_checkout_turns_top_up_on(stripe_live: str) -> None:
    """The setup-mode Checkout's webhook: the card saved at Stripe is remembered for the agent."""
    owner, agent = funded_wallet(0), funded_wallet(0)
    customer, method = saved_card(GOOD_CARD)
    client = stripe.StripeClient(
        settings.STRIPE_SECRET_KEY, base_addresses={"api": settings.STRIPE_API_BASE}
    )
    intent = client.v1.setup_intents.create({"customer": customer})
    client.v1.setup_intents.confirm(intent.id, {"payment_method": method})
    session = {
        "object": "checkout.session",
        "id": "cs_setup_1",
        "mode": "setup",
        "customer": customer,
        "setup_intent": intent.id,
        "metadata": {
            "owner_ref": agent,
            "payer_ref": owner,
            "threshold_credits": "2000",
            "pack": "medium",
        },
    }
    payload, header = signed_webhook(
        {
            "id": "evt_setup_1",
            "type": "checkout.session.completed",
            "created": 1700000000,
            "data": {"object": session},
        }
    )
    answer = Client().post(
        "/stripe/webhook/", payload, content_type="application/json", HTTP_STRIPE_SIGNATURE=header
    )
    assert answer.json()["outcome"] == f"auto top-up enabled for {agent}"
    config = AutoTopUp.objects.get(owner_ref=agent)
    assert (config.payer_ref, config.threshold_credits, config.pack) == (owner, 2000, "medium")
    assert config.stripe_payment_method_id == method and config.stripe_customer_id == customer
    assert auto_topup_run(owner_ref=agent) == "topped up"
    assert selectors.balance_for(owner_ref=agent).available == 20_000


def test_a_top_up_cut_short_before_stripe_answered_is_resumed_not_doubled(stripe_live: str) -> None:
    owner, agent = funded_wallet(0), funded_wallet(0)
    enable(agent, owner, GOOD_CARD)
    # A worker died after recording the purchase and before Stripe answered.
    stranded = Purchase.objects.create(
        owner_ref=agent, kind="auto_topup", pack="small", credits=5_000, amount_cents=500
    )
    assert auto_topup_run(owner_ref=agent) == "topped up"
    assert Purchase.objects.filter(owner_ref=agent).count() == 1
    stranded.refresh_from_db()
    assert stranded.status == Purchase.Status.PAID
    assert selectors.balance_for(owner_ref=agent).available == 5_000
