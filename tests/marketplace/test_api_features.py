"""What an outside agent needs beyond the basics: funding agents through the ledger, hearing
about changes without polling everything (notifications read, ``since``, "my work"), "for me" in
pages with a similarity floor, disputes readable by both parties, and 20 identical POSTs with one
Idempotency-Key answering the replay of one effect."""

from __future__ import annotations

import json
import threading

import pytest
from django.db import connection
from django.utils import timezone
from rest_framework.test import APIClient

from agents_registry.models import ApiKey
from agents_registry.services import personal_token_issue
from ledger.models import JournalEntry
from marketplace import services
from marketplace.models import Bid, Notification
from tests.conftest import participant_of
from tests.marketplace.conftest import available, fund, make_agent, post, walk_to


def _post(client, path: str, body: dict | None = None, **headers):
    return client.post(
        path, data=json.dumps(body or {}), content_type="application/json", **headers
    )


def _token(user, scopes: list[str]) -> APIClient:
    _, secret = personal_token_issue(participant=participant_of(user), name="t", scopes=scopes)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {secret}")
    return client


# --- funding agents ------------------------------------------------------------------------------


def test_an_owner_funds_its_agent_and_takes_credits_back(poster, alice) -> None:
    agent = make_agent(alice, "Alice's delegate")
    start = available(poster)
    client = _token(alice, [ApiKey.Scope.WALLET_WRITE])
    body = {"agent": agent.agent.slug, "amount": 1500, "direction": "to_agent"}
    first = _post(client, "/api/v1/wallet/transfers/", body, HTTP_IDEMPOTENCY_KEY="fund-1")
    again = _post(client, "/api/v1/wallet/transfers/", body, HTTP_IDEMPOTENCY_KEY="fund-1")
    assert first.status_code == again.status_code == 201
    assert again["Idempotent-Replayed"] == "true"
    assert first.json()["owner_available"] == start - 1500
    assert first.json()["agent_available"] == 1500
    assert available(poster) == start - 1500 and available(agent.participant) == 1500
    # The agent can now post work with its own credits.
    task = post(agent.participant, bounty=1000)
    assert task.state == "open"
    back = _post(
        client, "/api/v1/wallet/transfers/", {**body, "amount": 500, "direction": "to_owner"}
    )
    assert back.status_code == 201
    assert available(poster) == start - 1000 and available(agent.participant) == 0


def test_refused_transfers_move_nothing(poster, alice, bob) -> None:
    agent = make_agent(alice, "Alice's delegate")
    bobs = make_agent(bob, "Bob's")
    entries = JournalEntry.objects.count()
    start = available(poster)
    cases = [
        (
            _token(alice, [ApiKey.Scope.WALLET_WRITE]),
            {"agent": agent.agent.slug, "amount": start + 1, "direction": "to_agent"},
            402,
        ),
        (
            _token(alice, [ApiKey.Scope.WALLET_WRITE]),
            {"agent": agent.agent.slug, "amount": 1, "direction": "to_owner"},
            402,
        ),
        (
            _token(alice, [ApiKey.Scope.WALLET_WRITE]),
            {"agent": bobs.agent.slug, "amount": 1, "direction": "to_agent"},
            404,
        ),
        (
            _token(alice, [ApiKey.Scope.WALLET_READ]),
            {"agent": agent.agent.slug, "amount": 1, "direction": "to_agent"},
            403,
        ),
        (agent.client(), {"agent": agent.agent.slug, "amount": 1, "direction": "to_owner"}, 403),
        (
            _token(alice, [ApiKey.Scope.WALLET_WRITE]),
            {"agent": agent.agent.slug, "amount": 1.5, "direction": "to_agent"},
            400,
        ),
    ]
    for client, body, status in cases:
        response = _post(client, "/api/v1/wallet/transfers/", body)
        assert response.status_code == status, (body, response.json())
        assert set(response.json()) == {"error"}
    assert JournalEntry.objects.count() == entries
    assert available(poster) == start and available(agent.participant) == 0


def test_the_wallet_page_moves_credits_once_per_form(poster, alice, client) -> None:
    agent = make_agent(alice, "Alice's delegate")
    start = available(poster)
    client.force_login(alice)
    page = client.get("/wallet/").content.decode()
    assert "Give to agent" in page
    form = {"agent": agent.agent.slug, "amount": "700", "direction": "to_agent", "token": "tok-1"}
    client.post("/wallet/agents/transfer/", form)
    client.post("/wallet/agents/transfer/", form)  # a double submit
    assert available(agent.participant) == 700 and available(poster) == start - 700
    response = client.post("/wallet/agents/transfer/", {**form, "amount": "x", "token": "t2"})
    assert response.status_code == 302 and available(agent.participant) == 700


# --- notifications, since, my work ---------------------------------------------------------------


def test_notifications_page_and_are_marked_read(poster, bob) -> None:
    worker = make_agent(bob, "Worker")
    for _ in range(3):
        task = post(poster, bounty=100)
        services.task_claim(task=task, claimant=worker.participant)
    client = worker.client()
    page = client.get("/api/v1/notifications/?limit=2").json()
    assert page["count"] == 3 and len(page["results"]) == 2 and page["next"]
    first_id = page["results"][0]["id"]
    marked = _post(client, "/api/v1/notifications/read/", {"ids": [first_id, 10**17]})
    assert marked.json() == {"marked": 1, "unread": 2}
    assert client.get("/api/v1/notifications/?unread=true").json()["count"] == 2
    everything = _post(client, "/api/v1/notifications/read/", {"up_to": timezone.now().isoformat()})
    assert everything.json() == {"marked": 2, "unread": 0}
    # Another participant's notification cannot be marked through one's own call.
    alices = Notification.objects.filter(recipient=poster, read_at__isnull=True).count()
    ids = list(Notification.objects.filter(recipient=poster).values_list("pk", flat=True))
    _post(client, "/api/v1/notifications/read/", {"ids": ids})
    assert Notification.objects.filter(recipient=poster, read_at__isnull=True).count() == alices
    assert _post(client, "/api/v1/notifications/read/", {}).status_code == 400


def test_since_and_my_work(poster, bob) -> None:
    worker = make_agent(bob, "Worker")
    done = walk_to("accepted", poster=poster, worker=worker.participant)
    busy = walk_to("in_progress", poster=poster, worker=worker.participant)
    awarded = walk_to("awarded", poster=poster, worker=worker.participant)
    work = worker.client().get("/api/v1/work/").json()
    assert {task["id"] for task in work["results"]} == {busy.pk, awarded.pk}
    assert done.pk not in {task["id"] for task in work["results"]}
    assert {t["status"] for t in work["results"]} == {"in_progress", "awarded"}
    cut = timezone.now()
    services.task_start(task=awarded, actor=worker.participant)
    since = worker.client().get("/api/v1/work/", {"since": cut.isoformat()}).json()
    assert [task["id"] for task in since["results"]] == [awarded.pk]
    events = worker.client().get(f"/api/v1/tasks/{awarded.pk}/events/", {"since": cut.isoformat()})
    assert [event["kind"] for event in events.json()["results"]] == ["started"]
    posted = worker.client().get("/api/v1/work/?role=posted").json()
    assert posted["count"] == 0
    bad = worker.client().get("/api/v1/work/?since=yesterday")
    assert bad.status_code == 400 and "since" in bad.json()["error"]["fields"]


def test_for_me_pages_and_takes_a_minimum_similarity(poster, bob, settings) -> None:
    from agents_registry import embeddings
    from agents_registry.services import profile_create

    worker = make_agent(bob, "Summariser")
    text = "Summarises quarterly reports into three bullet points."
    profile_create(
        agent=worker.agent,
        actor=participant_of(bob),
        description=text,
        price_per_task=50,
        expected_latency_seconds=60,
        embedding=embeddings.embed_text(text),
        embedding_model=embeddings.embedding_model_id(),
    )
    for number in range(3):
        post(poster, bounty=100, title=f"Summarise quarterly report {number}", description=text)
    post(poster, bounty=100, title="Bake a cake", description="Chocolate, for twelve people.")
    client = worker.client()
    page = client.get("/api/v1/tasks/for-me/?limit=2").json()
    assert page["count"] == 4 and len(page["results"]) == 2 and page["next"]
    similar = client.get("/api/v1/tasks/for-me/?min_similarity=0.5").json()
    assert similar["count"] == 3
    assert all(task["similarity"] >= 0.5 for task in similar["results"])
    assert client.get("/api/v1/tasks/for-me/?min_similarity=2").status_code == 400


# --- disputes and executions visible to their parties --------------------------------------------


def test_a_dispute_is_readable_by_both_parties_only(poster, bob, mallory, client_for) -> None:
    worker = make_agent(bob, "Worker")
    task = walk_to("disputed", poster=poster, worker=worker.participant)
    answered = _post(
        worker.client(), f"/api/v1/tasks/{task.pk}/dispute/evidence/", {"text": "It is right."}
    )
    assert answered.status_code == 200
    for client in (worker.client(), client_for(poster.user), client_for(bob)):
        dispute = client.get(f"/api/v1/tasks/{task.pk}/dispute/").json()
        assert dispute["status"] == "open"
        assert dispute["poster_evidence"] == "Not what I asked."
        assert dispute["assignee_evidence"] == "It is right."
    assert client_for(mallory).get(f"/api/v1/tasks/{task.pk}/dispute/").status_code == 404


def test_executions_list_is_the_agents_own(poster, bob, mallory, client_for) -> None:
    worker = make_agent(bob, "Worker")
    response = worker.client().get("/api/v1/executions/")
    assert response.status_code == 200 and response.json()["count"] == 0
    assert client_for(mallory).get("/api/v1/executions/").json()["count"] == 0


# --- one effect for concurrent identical POSTs ---------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_twenty_identical_bids_with_one_key_answer_one_effect(alice, bob) -> None:
    owner = participant_of(alice)
    fund(owner, 1000)
    worker = make_agent(bob, "Racer")
    task = post(owner, bounty=500)
    barrier = threading.Barrier(20)
    answers: list = [None] * 20

    def bid(index: int) -> None:
        try:
            barrier.wait()
            answers[index] = _post(
                worker.client(),
                f"/api/v1/tasks/{task.pk}/bids/",
                {"price": 300, "eta_hours": 2, "plan": "Quickly."},
                HTTP_IDEMPOTENCY_KEY="bid-once",
            )
        finally:
            connection.close()

    threads = [threading.Thread(target=bid, args=(i,)) for i in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [answer.status_code for answer in answers] == [201] * 20
    assert len({answer.json()["id"] for answer in answers}) == 1
    assert sum(answer.get("Idempotent-Replayed") == "true" for answer in answers) == 19
    assert Bid.objects.filter(task=task).count() == 1


def test_a_replay_with_another_body_is_a_conflict(poster, bob) -> None:
    worker = make_agent(bob, "Worker")
    task = post(poster, bounty=500)
    path = f"/api/v1/tasks/{task.pk}/bids/"
    body = {"price": 300, "eta_hours": 2, "plan": "Quickly."}
    assert _post(worker.client(), path, body, HTTP_IDEMPOTENCY_KEY="k").status_code == 201
    conflict = _post(worker.client(), path, {**body, "price": 301}, HTTP_IDEMPOTENCY_KEY="k")
    assert conflict.status_code == 409
    assert Bid.objects.filter(task=task).count() == 1


# --- personal tokens -----------------------------------------------------------------------------


def test_a_personal_token_is_made_and_revoked_on_its_page(poster, alice, client) -> None:
    import re

    client.force_login(alice)
    page = client.post(
        "/settings/tokens/",
        {"name": "script", "scopes": ["tasks:read", "tasks:write"], "expires_in_days": "30"},
    )
    secret = re.search(r'<pre id="issued-token">([^<]+)</pre>', page.content.decode()).group(1)
    assert page["Cache-Control"] == "no-store"
    token = APIClient()
    token.credentials(HTTP_AUTHORIZATION=f"Api-Key {secret}")
    me = token.get("/api/v1/me/").json()
    assert me["kind"] == "human" and me["scopes"] == ["tasks:read", "tasks:write"]
    assert token.get("/api/v1/wallet/").status_code == 403  # not a scope it was given
    prefix = secret.split(".")[0]
    client.post("/settings/tokens/", {"revoke": prefix})
    assert token.get("/api/v1/me/").status_code == 401
    listed = client.get("/settings/tokens/").content.decode()
    assert prefix in listed and "revoked" in listed
