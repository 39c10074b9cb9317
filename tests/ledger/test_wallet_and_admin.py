"""The wallet page, buying credits, the reconciliation command and the admin, through HTTP."""

from __future__ import annotations

from io import StringIO

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django.db import connection, transaction
from django.test import Client

from agents_registry.services import agent_register, api_key_issue, participant_for_user
from ledger import selectors, services, stripe_gateway
from ledger.models import AutoTopUp, JournalEntry, Purchase
from tests.conftest import make_human
from tests.ledger.conftest import new_ref

pytestmark = pytest.mark.django_db


def logged_in(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def ref(user: User) -> str:
    return participant_for_user(user=user).ledger_ref


def test_new_humans_get_starter_credits_once(settings: object) -> None:
    user = make_human("carol")
    assert selectors.balance_for(owner_ref=ref(user)).available == settings.STARTER_CREDITS
    participant_for_user(user=user)
    assert JournalEntry.objects.filter(idempotency_key__startswith="starter:").count() == 1


def test_wallet_page_shows_balances_statement_and_no_payments(settings: object) -> None:
    settings.STRIPE_SECRET_KEY = ""
    user = make_human("carol")
    services.escrow_lock(
        task_ref=new_ref("task"), payer_ref=ref(user), amount=2_500, idempotency_key="l"
    )
    page = logged_in(user).get("/wallet/")
    assert page.status_code == 200
    html = page.content.decode()
    assert '<p class="stat" id="available">7,500</p>' in html
    assert '<p class="stat" id="held">2,500</p>' in html
    assert '<p class="stat" id="posted">10,000</p>' in html
    assert "Payments are not configured" in html
    assert "Bounty locked in escrow" in html and "Promotional grant" in html


def test_the_wallet_page_says_a_debt_blocks_spending_and_how_to_repay_it(settings: object) -> None:
    from ledger.purchases import _take_back

    settings.STRIPE_SECRET_KEY = ""
    user = make_human("dora")
    page = logged_in(user).get("/wallet/").content.decode()
    assert 'id="debt"' not in page
    services.escrow_lock(
        task_ref=new_ref("task"), payer_ref=ref(user), amount=9_000, idempotency_key="d"
    )
    with transaction.atomic():  # what a refund of 10,000 spent credits books
        _take_back(
            owner_ref=ref(user),
            credits=10_000,
            to=services.STRIPE_CLEARING,
            key="refund-d",
            reason=JournalEntry.Reason.PURCHASE_REFUND,
            domain_ref="purchase:0",
            memo="refund",
        )
    page = logged_in(user).get("/wallet/").content.decode()
    assert '<p class="stat" id="receivable">9,000</p>' in page
    assert "you cannot spend from this wallet" in page
    assert '<a href="#buy">Buy credits</a>' in page and 'id="buy"' in page

    # Posting a task says why it is refused, and moves nothing.
    from marketplace import services as market_services
    from marketplace.exceptions import InsufficientBudget
    from marketplace.models import Task

    services.promo_grant(owner_ref=ref(user), amount=500, idempotency_key="gift-d")
    entries = JournalEntry.objects.count()
    with pytest.raises(InsufficientBudget, match="You owe 9,000 credits") as refused:
        market_services.task_post(
            poster=participant_for_user(user=user), title="Anything", description="x", bounty=10
        )
    assert refused.value.http_status == 402
    assert JournalEntry.objects.count() == entries
    assert not Task.objects.filter(title="Anything").exists()
    assert selectors.balance_for(owner_ref=ref(user)).available == 500


def test_statement_more_link_keeps_its_href_and_serves_a_partial() -> None:
    user = make_human("carol")
    for number in range(25):
        services.escrow_lock(
            task_ref=new_ref("task"), payer_ref=ref(user), amount=10, idempotency_key=f"l{number}"
        )
    client = logged_in(user)
    html = client.get("/wallet/").content.decode()
    assert html.count("<tr>") == 22  # the header row, 20 lines and the "More" row
    marker = 'href="/wallet/statement/?before='
    assert marker in html and 'hx-get="/wallet/statement/?before=' in html
    before = html.split(marker)[1].split('"')[0]
    partial = client.get(f"/wallet/statement/?before={before}", HTTP_HX_REQUEST="true")
    body = partial.content.decode()
    assert "<html" not in body and body.count("<tr>") == 6  # 5 locks + the starter grant
    assert "More" not in body
    full = client.get(f"/wallet/statement/?before={before}")
    assert "<html" in full.content.decode()


def test_buying_without_keys_says_payments_are_not_configured(settings: object) -> None:
    settings.STRIPE_SECRET_KEY = ""
    user = make_human("carol")
    response = logged_in(user).post("/wallet/buy/", {"pack": "small"}, follow=True)
    assert "Payments are not configured on this site." in response.content.decode()
    assert not Purchase.objects.exists()


def test_buying_redirects_to_checkout_and_the_success_page_fulfils_once(
    settings: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    """localstripe has no Checkout, so Stripe is stubbed at its one chokepoint here."""
    settings.STRIPE_SECRET_KEY = "sk_test_ledger"
    created: dict = {}

    def create(**params: object) -> dict:
        created.update(params)
        return {"id": "cs_test_1", "url": "https://checkout.stripe.test/cs_test_1"}

    monkeypatch.setattr(stripe_gateway, "checkout_session_create", create)
    monkeypatch.setattr(
        stripe_gateway,
        "checkout_session_retrieve",
        lambda session_id: {"id": session_id, "payment_status": "paid", "payment_intent": "pi_1"},
    )
    user = make_human("carol")
    client = logged_in(user)
    response = client.post("/wallet/buy/", {"pack": "medium"})
    assert response.status_code == 302 and response["Location"].endswith("cs_test_1")
    assert created["amount_cents"] == 1_800  # the server's price, not the browser's
    assert created["metadata"]["owner_ref"] == ref(user)
    assert "{CHECKOUT_SESSION_ID}" in created["success_url"]
    for _ in range(2):
        page = client.get("/wallet/buy/success/?session_id=cs_test_1", follow=True)
    assert "20,000 credits were added to your wallet." in page.content.decode()
    assert selectors.balance_for(owner_ref=ref(user)).available == 30_000
    assert Purchase.objects.get().status == Purchase.Status.PAID
    mallory = make_human("mallory")
    stolen = logged_in(mallory).get("/wallet/buy/success/?session_id=cs_test_1", follow=True)
    assert "not one of yours" in stolen.content.decode()
    assert selectors.balance_for(owner_ref=ref(mallory)).available == 10_000


def test_unknown_pack_is_refused(settings: object, monkeypatch: pytest.MonkeyPatch) -> None:
    settings.STRIPE_SECRET_KEY = "sk_test_ledger"
    user = make_human("carol")
    response = logged_in(user).post("/wallet/buy/", {"pack": "free"}, follow=True)
    assert "There is no credit pack" in response.content.decode()


def test_reconcile_command_is_quiet_when_clean_and_fails_with_a_report() -> None:
    user = make_human("carol")
    out = StringIO()
    call_command("reconcile", stdout=out)
    assert "No differences." in out.getvalue()
    with connection.cursor() as cursor:  # corrupt a cached balance behind the ledger's back
        cursor.execute("ALTER TABLE ledger_account DISABLE TRIGGER ledger_account_guard")
        cursor.execute(
            "UPDATE ledger_account SET balance = balance + 7 WHERE address = %s",
            [f"wallet:{ref(user)}"],
        )
        cursor.execute("ALTER TABLE ledger_account ENABLE TRIGGER ledger_account_guard")
    out = StringIO()
    with pytest.raises(CommandError, match="difference"):
        call_command("reconcile", stdout=out)
    report = out.getvalue()
    assert f"cached balance: wallet:{ref(user)}: expected 10000, found 10007" in report
    assert "ledger total: sum of cached balances: expected 0, found 7" in report


def test_reconcile_compares_escrows_with_the_market(settings: object) -> None:
    user = make_human("carol")
    task = new_ref("task")
    services.escrow_lock(task_ref=task, payer_ref=ref(user), amount=300, idempotency_key="l")
    settings.LEDGER_ESCROW_EXPECTATIONS = "tests.ledger.test_wallet_and_admin.market_view"
    MARKET[task] = 300
    call_command("reconcile", stdout=StringIO())
    MARKET[task] = 200
    out = StringIO()
    with pytest.raises(CommandError):
        call_command("reconcile", stdout=out)
    assert f"escrow: {task}: expected 200, found 300" in out.getvalue()
    MARKET.clear()


MARKET: dict[str, int] = {}


def market_view() -> dict[str, int]:
    return dict(MARKET)


def test_admin_pages_for_staff(admin_client: Client) -> None:
    user = make_human("carol")
    services.escrow_lock(
        task_ref="task:77", payer_ref=ref(user), amount=100, idempotency_key="lock-77"
    )
    trial = admin_client.get("/admin/ledger/account/trial-balance/")
    assert trial.status_code == 200 and "The ledger balances" in trial.content.decode()
    recon = admin_client.get("/admin/ledger/account/reconciliation/")
    assert "No differences." in recon.content.decode()
    wallet = selectors.account_for(address=f"wallet:{ref(user)}")
    statement = admin_client.get(f"/admin/ledger/account/{wallet.pk}/statement/")
    assert "task:77" in statement.content.decode()
    by_key = admin_client.get("/admin/ledger/journalentry/?q=lock-77")
    by_object = admin_client.get("/admin/ledger/journalentry/?q=task:77")
    for found in (by_key, by_object):
        assert "lock-77" in found.content.decode()
    entry = JournalEntry.objects.get(idempotency_key="lock-77")
    change = admin_client.get(f"/admin/ledger/journalentry/{entry.pk}/change/")
    assert change.status_code == 200 and "Reverse this entry" in change.content.decode()
    assert 'name="_save"' not in change.content.decode()  # read-only: no save button


def test_admin_cannot_edit_and_reverses_through_the_service(admin_client: Client) -> None:
    user = make_human("carol")
    entry = services.escrow_lock(
        task_ref="task:78", payer_ref=ref(user), amount=100, idempotency_key="lock-78"
    )
    edit = admin_client.post(f"/admin/ledger/journalentry/{entry.pk}/change/", {"memo": "x"})
    assert edit.status_code == 403
    delete = admin_client.post(f"/admin/ledger/journalentry/{entry.pk}/delete/", {"post": "yes"})
    assert delete.status_code == 403
    response = admin_client.post(
        f"/admin/ledger/journalentry/{entry.pk}/reverse/",
        {"reason": "posted by mistake", "attempt": "a1"},
    )
    assert response.status_code == 302
    reversal = JournalEntry.objects.get(reverses=entry)
    staff = User.objects.get(username="admin")
    assert reversal.actor_ref == f"staff:{staff.pk}" and reversal.memo == "posted by mistake"
    assert selectors.balance_for(owner_ref=ref(user)).available == 10_000


def test_admin_is_for_staff_only() -> None:
    user = make_human("carol")
    response = logged_in(user).get("/admin/ledger/account/trial-balance/")
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


def test_owners_turn_automatic_top_up_of_their_agents_on_and_off(
    settings: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.STRIPE_SECRET_KEY = "sk_test_ledger"
    user = make_human("carol")
    agent = agent_register(owner=participant_for_user(user=user), name="Summariser")
    monkeypatch.setattr(stripe_gateway, "customer_create", lambda **_: "cus_1")
    sessions: list[dict] = []

    def setup(**params: object) -> dict:
        sessions.append(params)
        return {"id": "cs_setup", "url": "https://checkout.stripe.test/setup"}

    monkeypatch.setattr(stripe_gateway, "setup_session_create", setup)
    client = logged_in(user)
    assert "Summariser" in client.get("/wallet/").content.decode()
    response = client.post(
        "/wallet/auto-topup/", {"agent": agent.pk, "threshold": "1500", "pack": "small"}
    )
    assert response["Location"] == "https://checkout.stripe.test/setup"
    assert sessions[0]["metadata"] == {
        "owner_ref": agent.participant.ledger_ref,
        "payer_ref": ref(user),
        "threshold_credits": "1500",
        "pack": "small",
    }
    AutoTopUp.objects.create(
        owner_ref=agent.participant.ledger_ref,
        payer_ref=ref(user),
        threshold_credits=1500,
        pack="small",
        stripe_customer_id="cus_1",
        stripe_payment_method_id="pm_1",
    )
    assert "below 1500 credits" in client.get("/wallet/").content.decode()
    mallory = make_human("mallory")
    stranger = logged_in(mallory).post(
        "/wallet/auto-topup/", {"agent": agent.pk, "action": "disable"}
    )
    assert stranger.status_code == 404
    client.post("/wallet/auto-topup/", {"agent": agent.pk, "action": "disable"})
    assert not AutoTopUp.objects.get().enabled


def test_agents_read_their_own_wallet_through_the_api() -> None:
    user = make_human("carol")
    agent = agent_register(owner=participant_for_user(user=user), name="Reader")
    agent_ref = agent.participant.ledger_ref
    services.promo_grant(owner_ref=agent_ref, amount=700, idempotency_key="g")
    services.escrow_lock(
        task_ref=new_ref("task"), payer_ref=agent_ref, amount=200, idempotency_key="l"
    )
    _, secret = api_key_issue(participant=agent.participant, name="k")
    client = Client(HTTP_AUTHORIZATION=f"Api-Key {secret}")
    body = client.get("/api/v1/wallet/").json()
    assert body == {"owner_ref": agent_ref, "posted": 700, "held": 200, "available": 500, "owed": 0}
    statement = client.get("/api/v1/wallet/statement/?limit=1").json()
    assert [line["amount"] for line in statement["results"]] == [-200]
    assert statement["results"][0]["balance_after"] == 500
    older = client.get(f"/api/v1/wallet/statement/?before={statement['next_before']}").json()
    assert [line["amount"] for line in older["results"]] == [700]
    assert older["next_before"] is None
    _, narrow = api_key_issue(participant=agent.participant, name="n", scopes=["tasks:read"])
    refused = Client(HTTP_AUTHORIZATION=f"Api-Key {narrow}").get("/api/v1/wallet/")
    assert refused.status_code == 403
    assert Client().get("/api/v1/wallet/").status_code in (401, 403)
