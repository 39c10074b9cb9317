"""The API's security properties as an outside caller probes them: no key mints a key with more
scopes than it has, the timeline shows each viewer only the bids and parties it may see, one
owner's participants do not deal with each other unless the task is internal, and posters'
regexes run in linear time."""

from __future__ import annotations

import json
import time

import pytest
from django.contrib.auth.models import User

from agents_registry.models import ApiKey, Outcome
from marketplace import services
from marketplace.models import Bid, Task
from tests.conftest import make_human, participant_of
from tests.marketplace.conftest import available, escrow, make_agent, post


def _json(client, path: str, body: dict | None = None, **headers):
    return client.post(
        path, data=json.dumps(body or {}), content_type="application/json", **headers
    )


# --- 1. scope escalation through key minting ----------------------------------------------------


def test_a_key_cannot_mint_a_key_with_more_scopes(alice: User) -> None:
    limited = make_agent(alice, "Limited", scopes=[ApiKey.Scope.AGENTS_WRITE])
    slug = limited.agent.slug
    response = _json(limited.client(), f"/api/v1/agents/{slug}/keys/", {"name": "all"})
    assert response.status_code == 403
    assert "tasks:write" in response.json()["error"]["message"]
    response = _json(
        limited.client(),
        f"/api/v1/agents/{slug}/keys/",
        {"name": "all", "scopes": list(ApiKey.Scope.values)},
    )
    assert response.status_code == 403
    assert ApiKey.objects.filter(participant=limited.participant).count() == 1
    # Within its own scopes it may.
    response = _json(
        limited.client(),
        f"/api/v1/agents/{slug}/keys/",
        {"name": "same", "scopes": [ApiKey.Scope.AGENTS_WRITE]},
    )
    assert response.status_code == 201
    assert response.json()["scopes"] == ["agents:write"]


def test_the_owners_session_or_a_personal_token_grants_any_scope(client_for, alice) -> None:
    agent = make_agent(alice, "Fresh", scopes=[ApiKey.Scope.AGENTS_WRITE])
    every = list(ApiKey.Scope.values)
    response = _json(
        client_for(alice),
        f"/api/v1/agents/{agent.agent.slug}/keys/",
        {"name": "a", "scopes": every},
    )
    assert response.status_code == 201
    _, token = services_token(alice, every)
    response = _json(
        token_client(token),
        f"/api/v1/agents/{agent.agent.slug}/keys/",
        {"name": "b", "scopes": every},
    )
    assert response.status_code == 201


def test_a_tasks_read_key_cannot_list_its_agents_keys(alice: User) -> None:
    reader = make_agent(alice, "Reader", scopes=[ApiKey.Scope.TASKS_READ])
    response = reader.client().get(f"/api/v1/agents/{reader.agent.slug}/keys/")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "missing_scope"


def services_token(user: User, scopes: list[str]):
    from agents_registry.services import personal_token_issue

    return personal_token_issue(participant=participant_of(user), name="t", scopes=scopes)


def token_client(secret: str):
    from rest_framework.test import APIClient

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {secret}")
    return client


# --- 2. bids and parties in the timeline ------------------------------------------------------


def test_events_show_each_viewer_only_what_it_may_see(poster, bob, mallory, client_for) -> None:
    first = make_agent(bob, "First bidder")
    second = make_agent(mallory, "Second bidder")
    outsider = make_agent(make_human("oscar"), "Outsider")
    task = post(poster, bounty=900)
    bid = services.bid_place(
        task=task, bidder=first.participant, price=200, eta_hours=2, plan="Fast."
    )
    services.bid_place(task=task, bidder=second.participant, price=300, eta_hours=3, plan="Slow.")
    services.bid_award(bid=bid, actor=poster)

    def timeline(client) -> list[dict]:
        response = client.get(f"/api/v1/tasks/{task.pk}/events/")
        assert response.status_code == 200
        return response.json()["results"]

    as_poster = timeline(client_for(participant_user(poster)))
    assert [e["kind"] for e in as_poster] == ["posted", "bid_placed", "bid_placed", "awarded"]
    assert {e["data"].get("price") for e in as_poster} >= {200, 300}

    as_loser = timeline(second.client())
    assert [e["kind"] for e in as_loser] == ["posted", "bid_placed", "awarded"]
    assert all(e["data"].get("price") != 200 for e in as_loser)
    assert all((e["actor"] or {}).get("id") != first.participant.pk for e in as_loser)
    assert as_loser[1]["data"]["price"] == 300  # its own bid
    assert as_loser[2]["data"] == {} and as_loser[2]["actor"]["id"] == poster.pk

    as_outsider = timeline(outsider.client())
    assert [e["kind"] for e in as_outsider] == ["posted", "awarded"]
    assert all(set(e["data"]) <= {"bounty"} for e in as_outsider)

    as_assignee = timeline(first.client())
    assert [e["kind"] for e in as_assignee] == ["posted", "bid_placed", "awarded"]
    assert as_assignee[2]["data"]["assignee"] == first.participant.pk

    # The task itself follows the same rule: assignee and price for the parties only.
    detail = outsider.client().get(f"/api/v1/tasks/{task.pk}/").json()
    assert detail["assignee"] is None and detail["price"] is None
    assert detail["status"] == "awarded"
    detail = first.client().get(f"/api/v1/tasks/{task.pk}/").json()
    assert detail["assignee"]["id"] == first.participant.pk and detail["price"] == 200
    # Other bidders' bids are not readable one by one either.
    assert second.client().get(f"/api/v1/tasks/{task.pk}/bids/").json()["count"] == 1
    assert first.client().get(f"/api/v1/tasks/{task.pk}/bids/").json()["count"] == 1


def participant_user(participant) -> User:
    return participant.user


# --- 3. self-dealing ----------------------------------------------------------------------------


def test_one_owners_agents_cannot_take_its_tasks(poster, alice) -> None:
    own_agent = make_agent(alice, "Alice's worker")
    task = post(poster, bounty=500)
    before = available(poster)
    for path, body in (
        (f"/api/v1/tasks/{task.pk}/bids/", {"price": 100, "eta_hours": 1, "plan": "Mine."}),
        (f"/api/v1/tasks/{task.pk}/claim/", {}),
    ):
        response = _json(own_agent.client(), path, body)
        assert response.status_code == 403, path
        assert "internal" in response.json()["error"]["message"]
    assert not Bid.objects.filter(task=task).exists()
    task.refresh_from_db()
    assert task.state == "open" and available(poster) == before and escrow(task) == 500


def test_an_agent_cannot_take_work_from_its_sibling_agent(alice, bob) -> None:
    from tests.marketplace.conftest import fund

    poster_agent = make_agent(alice, "Alice's poster")
    sibling = make_agent(alice, "Alice's worker")
    fund(poster_agent.participant, 1000)
    task = post(poster_agent.participant, bounty=300)
    response = _json(sibling.client(), f"/api/v1/tasks/{task.pk}/claim/")
    assert response.status_code == 403
    # Another owner's agent may.
    assert (
        _json(make_agent(bob, "Bob's").client(), f"/api/v1/tasks/{task.pk}/claim/").status_code
        == 200
    )


def test_internal_work_is_for_the_owners_agents_and_moves_no_reputation(poster, alice, bob) -> None:
    own_agent = make_agent(alice, "Alice's worker")
    task = post(poster, bounty=400, internal=True)
    assert task.visibility == "private"
    outsider = make_agent(bob, "Bob's")
    assert _json(outsider.client(), f"/api/v1/tasks/{task.pk}/claim/").status_code == 404
    assert _json(own_agent.client(), f"/api/v1/tasks/{task.pk}/claim/").status_code == 200
    services.task_start(task=task, actor=own_agent.participant)
    delivery = services.delivery_submit(task=task, actor=own_agent.participant, text="done")
    services.delivery_accept(delivery=delivery, actor=poster)
    assert not Outcome.objects.filter(agent=own_agent.agent).exists()
    with pytest.raises(Exception, match="internal task is private"):
        post(poster, bounty=10, internal=True, visibility="public")


def test_for_me_leaves_out_the_owners_own_tasks(poster, alice, bob) -> None:
    own = make_agent(alice, "Alice's matcher")
    assert own.client().get("/api/v1/tasks/for-me/").json()["count"] == 0


# --- 4. regexes in linear time ----------------------------------------------------------------


def test_a_catastrophic_regex_runs_in_linear_time() -> None:
    started = time.perf_counter()
    results = services.checks_run(checks={"regex": "^(a+)+$"}, text="a" * 100_000 + "!", data=None)
    assert time.perf_counter() - started < 1
    assert results[0]["passed"] is False


def test_patterns_re2_cannot_run_are_refused_when_posting(poster) -> None:
    from marketplace.exceptions import InvalidInput

    for checks in (
        {"regex": r"(a)\1"},
        {"regex": "(?=a)a"},
        {"json_schema": {"type": "string", "pattern": r"(x)\1"}},
        {"json_schema": {"type": "object", "patternProperties": {"^a": {}}}},
    ):
        with pytest.raises(InvalidInput):
            post(poster, bounty=10, checks=checks)
    assert not Task.objects.exists()
    results = services.checks_run(
        checks={"json_schema": {"type": "string", "pattern": "^(a+)+$"}},
        text="",
        data="a" * 50 + "!",
    )
    assert results[0]["passed"] is False


# --- whole credits and limits -----------------------------------------------------------------


@pytest.mark.parametrize("bounty", [100.0, "100", "1_000", "١٠٠", 1e3, True, 10**13])
def test_amounts_are_whole_credits(poster, client_for, bounty) -> None:
    start = available(poster)
    response = _json(
        client_for(participant_user(poster)),
        "/api/v1/tasks/",
        {"title": "t", "description": "d", "bounty": bounty},
    )
    assert response.status_code == 400
    assert "bounty" in response.json()["error"]["fields"]
    assert not Task.objects.exists() and available(poster) == start


def test_abandon_reason_limit_is_the_services(poster, bob) -> None:
    worker = make_agent(bob, "Worker")
    task = post(poster, bounty=100)
    services.task_claim(task=task, claimant=worker.participant)
    response = _json(worker.client(), f"/api/v1/tasks/{task.pk}/abandon/", {"reason": "x" * 2001})
    assert response.status_code == 400
    assert "reason" in response.json()["error"]["fields"]
