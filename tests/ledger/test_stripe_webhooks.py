"""Stripe webhooks, signed with the Stripe library's own helper, through the real endpoint."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection
from django.test import Client

from ledger import selectors, services
from ledger.models import ChargeDispute, JournalEntry, Purchase, StripeEvent
from ledger.purchases import wallet_receivable
from ledger.reconciliation import reconcile
from tests.ledger.conftest import (
    WEBHOOK_SECRET,
    funded_wallet,
    new_ref,
    signed_webhook,
    stripe_event,
)

URL = "/stripe/webhook/"


@pytest.fixture
def webhook_secret(settings: object) -> None:
    settings.STRIPE_WEBHOOK_SECRET = WEBHOOK_SECRET


def post(event: dict, **signing: object) -> object:
    payload, header = signed_webhook(event, **signing)
    return Client().post(
        URL, payload, content_type="application/json", HTTP_STRIPE_SIGNATURE=header
    )


def new_purchase(owner: str, *, credits: int = 5_000, cents: int = 500) -> Purchase:
    return Purchase.objects.create(
        owner_ref=owner,
        kind=Purchase.Kind.CHECKOUT,
        pack="small",
        credits=credits,
        amount_cents=cents,
        checkout_session_id=f"cs_{new_ref('x')}",
    )


def completed(purchase: Purchase, *, paid: bool = True) -> dict:
    return stripe_event(
        "checkout.session.completed",
        {
            "object": "checkout.session",
            "id": purchase.checkout_session_id,
            "mode": "payment",
            "payment_status": "paid" if paid else "unpaid",
            "payment_intent": f"pi_{purchase.pk}",
            "client_reference_id": str(purchase.pk),
            "metadata": {"purchase_id": str(purchase.pk), "owner_ref": purchase.owner_ref},
        },
    )


def intent_succeeded(purchase: Purchase) -> dict:
    return stripe_event(
        "payment_intent.succeeded",
        {
            "object": "payment_intent",
            "id": f"pi_{purchase.pk}",
            "metadata": {"purchase_id": str(purchase.pk)},
        },
    )


def purchase_entries(purchase: Purchase) -> int:
    return JournalEntry.objects.filter(idempotency_key=f"purchase:{purchase.pk}").count()


pytestmark = pytest.mark.usefixtures("webhook_secret")


@pytest.mark.django_db
def test_paid_checkout_credits_the_wallet_once() -> None:
    owner = funded_wallet(0)
    purchase = new_purchase(owner)
    event = completed(purchase)
    response = post(event)
    assert response.status_code == 200
    assert response.json()["outcome"] == f"fulfilled purchase {purchase.pk}"
    assert selectors.balance_for(owner_ref=owner).available == 5_000
    purchase.refresh_from_db()
    assert purchase.status == Purchase.Status.PAID
    assert purchase.payment_intent_id == f"pi_{purchase.pk}"
    assert post(event).json()["outcome"] == "duplicate"
    assert selectors.balance_for(owner_ref=owner).available == 5_000
    assert purchase_entries(purchase) == 1


@pytest.mark.django_db
def test_unpaid_checkout_waits_for_the_async_payment() -> None:
    owner = funded_wallet(0)
    purchase = new_purchase(owner)
    assert post(completed(purchase, paid=False)).json()["outcome"] == "awaiting payment"
    assert selectors.balance_for(owner_ref=owner).available == 0
    succeeded = completed(purchase)
    succeeded["type"] = "checkout.session.async_payment_succeeded"
    assert post(succeeded).status_code == 200
    assert selectors.balance_for(owner_ref=owner).available == 5_000


@pytest.mark.django_db
def test_async_payment_failure_marks_the_purchase_failed() -> None:
    owner = funded_wallet(0)
    purchase = new_purchase(owner)
    failed = completed(purchase, paid=False)
    failed["type"] = "checkout.session.async_payment_failed"
    assert post(failed).status_code == 200
    purchase.refresh_from_db()
    assert purchase.status == Purchase.Status.FAILED
    assert selectors.balance_for(owner_ref=owner).available == 0


@pytest.mark.django_db
@pytest.mark.parametrize(
    "tamper",
    ["body", "stale", "wrong_secret", "no_header", "future"],
)
def test_forged_or_stale_webhooks_are_refused(tamper: str) -> None:
    owner = funded_wallet(0)
    purchase = new_purchase(owner)
    event = completed(purchase)
    if tamper == "stale":
        payload, header = signed_webhook(event, timestamp=int(time.time()) - 3600)
    elif tamper == "future":
        payload, header = signed_webhook(event, timestamp=int(time.time()) + 3600)
    elif tamper == "wrong_secret":
        payload, header = signed_webhook(event, secret="whsec_someone_else")
    else:
        payload, header = signed_webhook(event)
    if tamper == "body":
        payload = payload.replace(b'"paid"', b'"PAID"')
    if tamper == "no_header":
        header = ""
    response = Client().post(
        URL, payload, content_type="application/json", HTTP_STRIPE_SIGNATURE=header
    )
    assert response.status_code == 400
    assert selectors.balance_for(owner_ref=owner).available == 0
    assert not StripeEvent.objects.exists()


@pytest.mark.django_db
def test_webhooks_need_a_signing_secret(settings: object) -> None:
    settings.STRIPE_WEBHOOK_SECRET = ""
    owner = funded_wallet(0)
    response = post(completed(new_purchase(owner)))
    assert response.status_code == 503
    assert selectors.balance_for(owner_ref=owner).available == 0


@pytest.mark.django_db(transaction=True)
def test_the_same_event_twenty_times_concurrently_has_one_effect() -> None:
    owner = funded_wallet(0)
    purchase = new_purchase(owner)
    payload, header = signed_webhook(completed(purchase))
    barrier = threading.Barrier(20)

    def deliver(_: int) -> tuple[int, str]:
        try:
            barrier.wait(timeout=30)
            response = Client().post(
                URL, payload, content_type="application/json", HTTP_STRIPE_SIGNATURE=header
            )
            return response.status_code, response.json()["outcome"]
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(deliver, range(20)))
    assert {status for status, _ in results} == {200}
    outcomes = sorted(outcome for _, outcome in results)
    assert outcomes == ["duplicate"] * 19 + [f"fulfilled purchase {purchase.pk}"]
    assert selectors.balance_for(owner_ref=owner).available == 5_000
    assert purchase_entries(purchase) == 1


@pytest.mark.django_db
def test_out_of_order_events_still_have_one_effect_each() -> None:
    owner = funded_wallet(0)
    purchase = new_purchase(owner)
    # The refund arrives first: the payment is booked, then half of it taken back.
    refund = stripe_event(
        "charge.refunded",
        {
            "object": "charge",
            "id": "ch_1",
            "payment_intent": f"pi_{purchase.pk}",
            "metadata": {"purchase_id": str(purchase.pk)},
            "amount_refunded": 250,
        },
    )
    assert post(refund).json()["outcome"] == "refund booked: 2500 credits"
    assert selectors.balance_for(owner_ref=owner).available == 2_500
    # Then the payment's own events: already fulfilled, nothing more.
    intent = intent_succeeded(purchase)
    post(intent)
    post(completed(purchase))
    assert selectors.balance_for(owner_ref=owner).available == 2_500
    assert purchase_entries(purchase) == 1
    # A second refund event with the same cumulative amount books nothing.
    again = stripe_event("charge.refunded", refund["data"]["object"])
    assert post(again).json()["outcome"] == "refund booked: 0 credits"
    purchase.refresh_from_db()
    assert purchase.refunded_cents == 250 and purchase.status == Purchase.Status.PAID


@pytest.mark.django_db
def test_refund_of_spent_credits_becomes_a_receivable_repaid_by_the_next_purchase() -> None:
    owner = funded_wallet(0)
    purchase = new_purchase(owner)
    post(completed(purchase))
    services.escrow_lock(
        task_ref=new_ref("task"), payer_ref=owner, amount=4_000, idempotency_key="spend"
    )
    full_refund = stripe_event(
        "charge.refunded",
        {
            "object": "charge",
            "id": "ch_2",
            "metadata": {"purchase_id": str(purchase.pk)},
            "amount_refunded": 500,
        },
    )
    post(full_refund)
    assert selectors.balance_for(owner_ref=owner).available == 0  # never negative
    assert wallet_receivable(owner_ref=owner) == 4_000
    purchase.refresh_from_db()
    assert purchase.status == Purchase.Status.REFUNDED
    second = new_purchase(owner, credits=20_000, cents=1_800)
    post(completed(second))
    assert wallet_receivable(owner_ref=owner) == 0
    assert selectors.balance_for(owner_ref=owner).available == 16_000
    assert selectors.trial_balance().total == 0


@pytest.mark.django_db
def test_the_payment_webhook_after_a_refund_credited_the_purchase_moves_nothing() -> None:
    """Found by the stateful test: the refund's webhook credits the purchase first; a receivable
    arises, credits come back to the wallet, then the payment's own webhook arrives. It replays
    the credit and must not move anything else (it used to repay the receivable)."""
    owner = funded_wallet(0)
    purchase = new_purchase(owner)

    def refunded(cents: int) -> dict:
        return stripe_event(
            "charge.refunded",
            {
                "object": "charge",
                "id": "ch_3",
                "metadata": {"purchase_id": str(purchase.pk)},
                "amount_refunded": cents,
            },
        )

    post(refunded(345))  # credits 5,000, takes back 3,450
    task = new_ref("task")
    services.escrow_lock(task_ref=task, payer_ref=owner, amount=1, idempotency_key="lock-1")
    post(refunded(500))  # takes back 1,550: 1,549 from the wallet, 1 as receivable
    assert wallet_receivable(owner_ref=owner) == 1
    services.escrow_refund(task_ref=task, refund_to=owner, idempotency_key="refund-1")
    entries = JournalEntry.objects.count()
    intent = intent_succeeded(purchase)
    post(intent)
    assert JournalEntry.objects.count() == entries
    assert wallet_receivable(owner_ref=owner) == 1
    assert selectors.balance_for(owner_ref=owner).available == 1
    assert selectors.trial_balance().total == 0


@pytest.mark.django_db
@pytest.mark.parametrize("result", ["won", "lost", "warning_closed"])
def test_chargeback_holds_then_releases_or_returns_the_credits(result: str) -> None:
    """Only a lost dispute takes the credits: a won one, and an inquiry closed without becoming
    a chargeback (``warning_closed``), give the held credits back."""
    owner = funded_wallet(0)
    purchase = new_purchase(owner)
    post(completed(purchase))
    services.escrow_lock(
        task_ref=new_ref("task"), payer_ref=owner, amount=3_000, idempotency_key="spend"
    )
    dispute = {
        "object": "dispute",
        "id": "dp_1",
        "charge": "ch_9",
        "amount": 500,
        "payment_intent": f"pi_{purchase.pk}",
        "status": "needs_response",
    }
    assert post(stripe_event("charge.dispute.created", dispute)).status_code == 200
    record = ChargeDispute.objects.get(dispute_id="dp_1")
    assert (record.amount_credits, record.from_wallet, record.from_receivable) == (5000, 2000, 3000)
    assert selectors.balance_for(owner_ref=owner).available == 0
    assert wallet_receivable(owner_ref=owner) == 3_000
    closed = stripe_event("charge.dispute.closed", {**dispute, "status": result})
    assert post(closed).json()["outcome"] == f"dispute {result}"
    assert post(closed).json()["outcome"] == "duplicate"
    if result != "lost":
        assert selectors.balance_for(owner_ref=owner).available == 2_000
        assert wallet_receivable(owner_ref=owner) == 0
    else:
        assert selectors.balance_for(owner_ref=owner).available == 0
        assert wallet_receivable(owner_ref=owner) == 3_000
    hold = selectors.account_for(address=services.DISPUTE_HOLD)
    assert hold.balance == 0
    assert selectors.trial_balance().total == 0


@pytest.mark.django_db
def test_unknown_event_types_are_acknowledged_and_ignored() -> None:
    response = post(stripe_event("customer.created", {"object": "customer", "id": "cus_1"}))
    assert response.status_code == 200 and response.json()["outcome"] == "ignored"


def _refunded(purchase: Purchase, cents: int, **extra: object) -> dict:
    return stripe_event(
        "charge.refunded",
        {
            "object": "charge",
            "id": f"ch_{purchase.pk}",
            "metadata": {"purchase_id": str(purchase.pk)},
            "amount_refunded": cents,
            **extra,
        },
    )


def _books(owner: str) -> tuple[int, int, int, int]:
    hold = selectors.account_for(address=services.DISPUTE_HOLD)
    return (
        selectors.balance_for(owner_ref=owner).available,
        wallet_receivable(owner_ref=owner),
        hold.balance if hold is not None else 0,
        JournalEntry.objects.count(),
    )


@pytest.mark.django_db
def test_a_dispute_claws_back_only_what_was_not_refunded_already() -> None:
    owner = funded_wallet(0)
    purchase = new_purchase(owner)  # 500 cents, 5,000 credits
    post(completed(purchase))
    assert post(_refunded(purchase, 300)).status_code == 200  # 3,000 credits back to Stripe
    assert selectors.balance_for(owner_ref=owner).available == 2_000
    dispute = {
        "object": "dispute",
        "id": "dp_capped",
        "charge": f"ch_{purchase.pk}",
        "amount": 500,  # the whole charge, as the bank disputes it
        "payment_intent": f"pi_{purchase.pk}",
        "status": "needs_response",
    }
    assert post(stripe_event("charge.dispute.created", dispute)).status_code == 200
    record = ChargeDispute.objects.get(dispute_id="dp_capped")
    assert (record.amount_credits, record.from_wallet, record.from_receivable) == (2000, 2000, 0)
    assert wallet_receivable(owner_ref=owner) == 0  # no debt for money already given back
    closed = stripe_event("charge.dispute.closed", {**dispute, "status": "lost"})
    assert post(closed).json()["outcome"] == "dispute lost"
    assert _books(owner)[:3] == (0, 0, 0)
    assert selectors.trial_balance().total == 0
    assert reconcile().is_clean


@pytest.mark.django_db
def test_an_event_for_a_purchase_not_known_yet_is_answered_so_stripe_delivers_it_again() -> None:
    owner = funded_wallet(0)
    purchase = new_purchase(owner)
    post(completed(purchase))
    event = stripe_event(
        "charge.refunded",
        {
            "object": "charge",
            "id": "ch_late",
            "payment_intent": "pi_late",
            "metadata": {"owner_ref": owner},  # ours, but no purchase holds this payment yet
            "amount_refunded": 500,
        },
    )
    before = _books(owner)
    response = post(event)
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "purchase_not_yet_known"
    assert set(response.json()["error"]) == {"code", "message", "fields"}
    assert _books(owner) == before
    assert not StripeEvent.objects.filter(pk=event["id"]).exists()  # nothing kept: a retry applies

    Purchase.objects.filter(pk=purchase.pk).update(payment_intent_id="pi_late")  # now known
    assert post(event).json()["outcome"] == "refund booked: 5000 credits"
    assert post(event).json()["outcome"] == "duplicate"
    assert selectors.balance_for(owner_ref=owner).available == 0
    assert reconcile().is_clean

    # An event of another integration on the same Stripe account is acknowledged and ignored.
    theirs = stripe_event("charge.refunded", {"object": "charge", "id": "ch_x", "amount": 1})
    assert post(theirs).json()["outcome"] == "not ours"


@pytest.mark.django_db
@pytest.mark.parametrize(
    "data",
    [
        {"object": "not an object"},
        {"object": ["a", "list"]},
        "no data at all",
        {"object": {"object": "charge", "id": "ch_m", "metadata": "oops"}},
        {"object": {"object": "charge", "id": "ch_m", "amount_refunded": "lots"}},
        {"object": {"object": "charge", "id": "ch_m", "amount_refunded": -5}},
    ],
)
def test_a_signed_event_with_a_malformed_object_is_a_400_that_moves_nothing(data: object) -> None:
    owner = funded_wallet(0)
    purchase = new_purchase(owner)
    post(completed(purchase))
    event = stripe_event("charge.refunded", {})
    event["data"] = data
    if isinstance(data, dict) and isinstance(data.get("object"), dict):
        data["object"].setdefault("metadata", {"purchase_id": str(purchase.pk)})
    before = _books(owner)
    response = post(event)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "malformed_event"
    assert _books(owner) == before
    assert not StripeEvent.objects.filter(pk=event["id"]).exists()
    assert reconcile().is_clean


@pytest.mark.django_db
def test_a_debt_from_a_refund_of_spent_credits_blocks_spending_until_a_purchase_repays_it() -> None:
    from ledger.exceptions import DebtOutstanding, InsufficientCredits

    owner = funded_wallet(0)
    purchase = new_purchase(owner)
    post(completed(purchase))
    services.escrow_lock(
        task_ref=new_ref("task"), payer_ref=owner, amount=4_000, idempotency_key="spend-1"
    )
    post(_refunded(purchase, 100))  # 1,000 back to Stripe from the wallet: no debt yet
    services.promo_grant(owner_ref=owner, amount=2_000, idempotency_key=f"gift-{owner}")
    post(_refunded(purchase, 500))  # 4,000 more: 2,000 from the wallet, 2,000 owed
    assert wallet_receivable(owner_ref=owner) == 2_000
    services.promo_grant(owner_ref=owner, amount=500, idempotency_key=f"gift2-{owner}")
    before = _books(owner)
    assert before[0] == 500  # credits in the wallet, but a debt outstanding

    with pytest.raises(DebtOutstanding) as refused:
        services.escrow_lock(
            task_ref=new_ref("task"), payer_ref=owner, amount=100, idempotency_key="spend-2"
        )
    assert isinstance(refused.value, InsufficientCredits)  # the API answers it as a 402
    assert "2,000 credits" in str(refused.value) and "buy credits" in str(refused.value)
    with pytest.raises(DebtOutstanding):
        services.transfer_post(
            legs=[services.TransferLeg(owner, funded_wallet(0), 100)],
            idempotency_key="tip-1",
        )
    assert _books(owner) == before
    # A replay of a spend made before the debt still answers with its entry.
    services.escrow_lock(
        task_ref=JournalEntry.objects.get(idempotency_key="spend-1").domain_ref,
        payer_ref=owner,
        amount=4_000,
        idempotency_key="spend-1",
    )
    assert _books(owner) == before

    post(completed(new_purchase(owner, credits=5_000, cents=500)))  # repays 2,000 first
    assert wallet_receivable(owner_ref=owner) == 0
    assert selectors.balance_for(owner_ref=owner).available == 3_500
    services.escrow_lock(
        task_ref=new_ref("task"), payer_ref=owner, amount=100, idempotency_key="spend-3"
    )
    assert selectors.trial_balance().total == 0
    assert reconcile().is_clean
