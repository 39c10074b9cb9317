"""Event subscriptions: a loopback receiver (pytest-httpserver) gets each market event once per
change, signed, and verified with the ``standardwebhooks`` package; a failing receiver is retried
with backoff and paused after the limit; private events never reach non-parties.

The pipeline runs in process here, as beat and the worker run it: fan out, dispatch, one attempt
per taken delivery (no message leaves: these transactions never commit)."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.utils import timezone
from pytest_httpserver import HTTPServer
from standardwebhooks import Webhook

from agents_registry.embeddings import embed_text, embedding_model_id
from agents_registry.models import Participant
from agents_registry.services import profile_create
from marketplace import services as market_services
from tests.conftest import participant_of
from tests.workers.conftest import hosted_agent
from workers.exceptions import InvalidInput
from workers.models import EventDelivery, EventSubscription
from workers.services import subscriptions

pytestmark = pytest.mark.django_db

TEXT = "Translate restaurant menus and recipes from French into English."
ALL_PARTY_EVENTS = [
    "task.awarded",
    "task.delivered",
    "task.revision_requested",
    "task.accepted",
    "task.rejected",
    "dispute.opened",
    "dispute.resolved",
    "payment.received",
]


@pytest.fixture
def receiver(settings: object, httpserver: HTTPServer) -> HTTPServer:
    settings.OUTBOUND_HTTP_ALLOWED_HOSTS = [f"127.0.0.1:{httpserver.port}"]
    settings.EVENTS_MATCH_MIN_SIMILARITY = 0.2
    for path in ("/agent", "/alice", "/mallory", "/mallory-agent"):
        httpserver.expect_request(path, method="POST").respond_with_data("ok")
    return httpserver


def pump() -> list[str]:
    """What beat and the worker do: fan out, dispatch, attempt; the attempts' outcomes."""
    subscriptions.events_fan_out()
    return [
        subscriptions.event_delivery_attempt(delivery_id=delivery_id, token=token)
        for delivery_id, token in subscriptions.deliveries_dispatch()
    ]


def received(server: HTTPServer, path: str, secret: str) -> list[dict]:
    """The bodies ``path`` received, each verified with the standardwebhooks library."""
    bodies = []
    for request, _ in server.log:
        if request.path == path:
            bodies.append(Webhook(secret).verify(request.get_data(), dict(request.headers)))
    return bodies


def translator(owner: User) -> object:
    agent = hosted_agent(owner, "Menu Translator", runtime="external")
    profile_create(
        agent=agent,
        actor=participant_of(owner),
        description=TEXT,
        price_per_task=300,
        expected_latency_seconds=600,
        embedding=embed_text(TEXT).tolist(),
        embedding_model=embedding_model_id(),
    )
    return agent


def test_each_event_reaches_its_parties_once_signed(
    receiver: HTTPServer, poster: Participant, alice: User, bob: User
) -> None:
    agent = translator(bob)
    agent_sub, agent_secret = subscriptions.subscription_create(
        participant=agent.participant,
        url=receiver.url_for("/agent"),
        event_types=["task.matched", *ALL_PARTY_EVENTS],
    )
    _, alice_secret = subscriptions.subscription_create(
        participant=poster, url=receiver.url_for("/alice"), event_types=ALL_PARTY_EVENTS
    )

    task = market_services.task_post(
        poster=poster, title="Translate a menu", description=TEXT, bounty=500
    )
    assert pump() == ["succeeded"]
    bid = market_services.bid_place(
        task=task, bidder=agent.participant, price=400, eta_hours=2, plan="Translate."
    )
    market_services.bid_award(bid=bid, actor=poster)
    market_services.task_start(task=task, actor=agent.participant)
    first = market_services.delivery_submit(task=task, actor=agent.participant, text="Menu v1")
    market_services.revision_request(delivery=first, actor=poster, message="Add the desserts.")
    market_services.task_start(task=task, actor=agent.participant)
    second = market_services.delivery_submit(task=task, actor=agent.participant, text="Menu v2")
    market_services.delivery_accept(delivery=second, actor=poster)
    assert pump() == ["succeeded"] * 8
    assert pump() == []  # nothing twice

    to_agent = received(receiver, "/agent", agent_secret)
    assert [body["type"] for body in to_agent] == [
        "task.matched",
        "task.awarded",
        "task.revision_requested",
        "task.accepted",
        "payment.received",
    ]
    matched, awarded, revision, accepted, payment = to_agent
    assert matched["data"]["task"]["id"] == task.pk
    assert matched["data"]["price"] == 300 and matched["data"]["similarity"] > 0.2
    assert "price" not in matched["data"]["task"]  # a non-party sees the public fields only
    assert awarded["data"]["assignee_id"] == agent.participant.pk
    assert awarded["data"]["task"]["price"] == 400
    assert revision["data"]["message"] == "Add the desserts."
    assert accepted["data"]["delivery_id"] == second.pk
    assert (payment["data"]["amount"], payment["data"]["reason"]) == (380, "settlement")
    to_alice = received(receiver, "/alice", alice_secret)
    assert [body["type"] for body in to_alice] == [
        "task.awarded",
        "task.delivered",
        "task.delivered",
        "task.accepted",
    ]
    assert [body["data"]["delivery_id"] for body in to_alice[1:3]] == [first.pk, second.pk]
    for bodies in (to_agent, to_alice):
        assert len({body["id"] for body in bodies}) == len(bodies)  # one message per change
    headers = [dict(request.headers)["Webhook-Id"] for request, _ in receiver.log]
    assert sorted(headers) == sorted(body["id"] for body in to_agent + to_alice)
    assert EventDelivery.objects.filter(subscription=agent_sub).count() == 5


def test_private_events_never_reach_non_parties(
    receiver: HTTPServer, poster: Participant, alice: User, bob: User, mallory: User
) -> None:
    own = hosted_agent(alice, "Alice's helper", runtime="external")  # may take her private work
    outsider = translator(bob)
    snoop = translator(mallory)
    _, outsider_secret = subscriptions.subscription_create(
        participant=outsider.participant,
        url=receiver.url_for("/agent"),
        event_types=["task.matched", *ALL_PARTY_EVENTS],
    )
    subscriptions.subscription_create(
        participant=participant_of(mallory),
        url=receiver.url_for("/mallory"),
        event_types=ALL_PARTY_EVENTS,
    )
    subscriptions.subscription_create(
        participant=snoop.participant,
        url=receiver.url_for("/mallory-agent"),
        event_types=["task.matched", *ALL_PARTY_EVENTS],
    )
    private = market_services.task_post(
        poster=poster, title="Menu", description=TEXT, bounty=500, visibility="private"
    )
    public = market_services.task_post(poster=poster, title="Menu", description=TEXT, bounty=500)
    for task, taker in ((private, own), (public, outsider)):
        market_services.task_claim(task=task, claimant=taker.participant)
        market_services.task_start(task=task, actor=taker.participant)
        delivery = market_services.delivery_submit(task=task, actor=taker.participant, text="x")
        market_services.delivery_reject(delivery=delivery, actor=poster, reason="Wrong.")
    pump()
    assert "/mallory" not in [request.path for request, _ in receiver.log]
    # Mallory's agent hears only that a public task matching it was posted.
    bodies = [json.loads(r.get_data()) for r, _ in receiver.log if r.path == "/mallory-agent"]
    assert [(b["type"], b["data"]["task"]["id"]) for b in bodies] == [("task.matched", public.pk)]
    # Bob's agent hears of the public task it took, and of nothing private.
    heard = received(receiver, "/agent", outsider_secret)
    assert {body["data"]["task"]["id"] for body in heard} == {public.pk}
    assert [body["type"] for body in heard] == [
        "task.matched",
        "task.awarded",
        "task.rejected",
        "dispute.opened",
    ]


def test_a_failing_receiver_is_retried_with_backoff_then_paused_then_resumed(
    settings: object, httpserver: HTTPServer, poster: Participant, bob: User
) -> None:
    settings.OUTBOUND_HTTP_ALLOWED_HOSTS = [f"127.0.0.1:{httpserver.port}"]
    settings.EVENTS_PAUSE_AFTER_FAILURES = 3
    settings.EVENTS_RETRY_BACKOFF_SECONDS = 10.0
    agent = hosted_agent(bob, "Flaky", runtime="external")
    subscription, secret = subscriptions.subscription_create(
        participant=agent.participant,
        url=httpserver.url_for("/flaky"),
        event_types=["task.awarded"],
    )
    httpserver.expect_request("/flaky").respond_with_data("down", status=503)
    market_services.task_claim(
        task=market_services.task_post(poster=poster, title="T", description="d", bounty=50),
        claimant=agent.participant,
    )
    delays = []
    for _ in range(3):
        assert pump() == ["retrying"]
        delivery = EventDelivery.objects.get(subscription=subscription)
        delays.append((delivery.next_attempt_at - timezone.now()).total_seconds())
        EventDelivery.objects.filter(pk=delivery.pk).update(next_attempt_at=timezone.now())
    assert 4 < delays[0] <= 10 and 9 < delays[1] <= 20 and 19 < delays[2] <= 40
    subscription.refresh_from_db()
    assert (subscription.status, subscription.paused_by) == ("paused", "failures")
    assert "3 failed attempts" in subscription.paused_reason
    assert pump() == []  # paused: nothing is sent
    delivery.refresh_from_db()
    assert [entry["status_code"] for entry in delivery.attempt_log] == [503, 503, 503]

    # Events keep being recorded while paused, and go out once the owner resumes it.
    market_services.task_claim(
        task=market_services.task_post(poster=poster, title="U", description="e", bounty=50),
        claimant=agent.participant,
    )
    assert pump() == []
    httpserver.clear()
    httpserver.expect_request("/flaky").respond_with_data("ok")
    assert subscriptions.subscription_resume(subscription=subscription) == 2
    assert sorted(pump()) == ["succeeded", "succeeded"]
    assert len(received(httpserver, "/flaky", secret)) == 2
    subscription.refresh_from_db()
    assert (subscription.status, subscription.consecutive_failures) == ("active", 0)


def test_a_delivery_gives_up_after_the_attempt_limit_and_can_be_retried(
    settings: object, poster: Participant, bob: User
) -> None:
    settings.OUTBOUND_HTTP_ALLOWED_HOSTS = ["127.0.0.1:9"]  # nothing listens there
    settings.EVENTS_MAX_ATTEMPTS = 2
    agent = hosted_agent(bob, "Gone", runtime="external")
    subscription, _ = subscriptions.subscription_create(
        participant=agent.participant, url="http://127.0.0.1:9/hook", event_types=["task.awarded"]
    )
    market_services.task_claim(
        task=market_services.task_post(poster=poster, title="T", description="d", bounty=50),
        claimant=agent.participant,
    )
    assert pump() == ["retrying"]
    EventDelivery.objects.update(next_attempt_at=timezone.now())
    assert pump() == ["failed"]
    delivery = EventDelivery.objects.get(subscription=subscription)
    assert delivery.status == "failed" and "Could not reach" in delivery.last_error
    subscriptions.delivery_retry(delivery=delivery)
    assert EventDelivery.objects.get(pk=delivery.pk).status == "pending"


def test_a_stale_or_duplicate_message_has_no_effect(
    receiver: HTTPServer, poster: Participant, bob: User
) -> None:
    agent = hosted_agent(bob, "Dup", runtime="external")
    subscriptions.subscription_create(
        participant=agent.participant, url=receiver.url_for("/agent"), event_types=["task.awarded"]
    )
    market_services.task_claim(
        task=market_services.task_post(poster=poster, title="T", description="d", bounty=50),
        claimant=agent.participant,
    )
    subscriptions.events_fan_out()
    [(delivery_id, token)] = subscriptions.deliveries_dispatch()
    assert subscriptions.event_delivery_attempt(delivery_id=delivery_id, token=token) == (
        "succeeded"
    )
    assert subscriptions.event_delivery_attempt(delivery_id=delivery_id, token=token) == "skipped"
    assert subscriptions.deliveries_dispatch() == []
    assert len(receiver.log) == 1


def test_a_rotated_secret_signs_beside_the_old_one_for_a_day(
    receiver: HTTPServer, poster: Participant, bob: User
) -> None:
    agent = hosted_agent(bob, "Rotating", runtime="external")
    subscription, old = subscriptions.subscription_create(
        participant=agent.participant, url=receiver.url_for("/agent"), event_types=["task.awarded"]
    )
    new = subscriptions.subscription_secret_rotate(subscription=subscription)
    subscription.refresh_from_db()
    assert subscriptions.subscription_secrets_valid(subscription) == [new, old]
    market_services.task_claim(
        task=market_services.task_post(poster=poster, title="T", description="d", bounty=50),
        claimant=agent.participant,
    )
    pump()
    assert received(receiver, "/agent", old) == received(receiver, "/agent", new)
    EventSubscription.objects.filter(pk=subscription.pk).update(
        previous_secret_retires_at=timezone.now() - timedelta(seconds=1)
    )
    subscription.refresh_from_db()
    assert subscriptions.subscription_secrets_valid(subscription) == [new]


def test_refused_subscriptions_say_what_to_fix(settings: object, poster: Participant) -> None:
    settings.OUTBOUND_HTTP_ALLOWED_HOSTS = []
    for url, event_types, field in (
        ("http://127.0.0.1:8000/hook", ["task.awarded"], "url"),
        ("http://169.254.169.254/latest", ["task.awarded"], "url"),
        ("ftp://example.com/hook", ["task.awarded"], "url"),
        ("https://example.com/hook", [], "event_types"),
        ("https://example.com/hook", ["task.exploded"], "event_types"),
        ("https://example.com/hook", ["task.matched"], "event_types"),  # a person has no profile
    ):
        with pytest.raises(InvalidInput) as refused:
            subscriptions.subscription_create(participant=poster, url=url, event_types=event_types)
        assert field in refused.value.fields, (url, event_types)
    assert not EventSubscription.objects.exists()


def test_the_fan_out_reads_each_event_once_across_passes_and_settles(
    receiver: HTTPServer, poster: Participant, bob: User
) -> None:
    """Events read above the cursor are remembered until it moves past them."""
    from workers.models import EventCursor, EventFanout

    agent = hosted_agent(bob, "Counter", runtime="external")
    subscriptions.subscription_create(
        participant=agent.participant, url=receiver.url_for("/agent"), event_types=["task.awarded"]
    )
    market_services.task_claim(
        task=market_services.task_post(poster=poster, title="T", description="d", bounty=50),
        claimant=agent.participant,
    )
    assert subscriptions.events_fan_out() == 1
    assert subscriptions.events_fan_out() == 0
    assert EventFanout.objects.count() == 2  # "posted" and "awarded" (both read, one delivery)
    from marketplace.models import TaskEvent

    TaskEvent.objects.update(created_at=timezone.now() - timedelta(minutes=5))
    assert subscriptions.events_fan_out() == 0
    assert EventCursor.objects.get().position == TaskEvent.objects.latest("pk").pk
    assert EventFanout.objects.count() == 0
    assert EventDelivery.objects.count() == 1
