"""Outside A2A agents as hosted agents: a real agent built with ``a2a-sdk``'s server on loopback
(tests/a2a_agent.py) is registered from its Agent Card, bids, is awarded, and delivers through the
market; its question comes to the poster as a delivery and the poster's answer (a revision
request) goes back into the same A2A task; a failing and a slow agent are handled like the other
runtimes (no retry of a verdict, retries and a time limit for the slow one, all in the trace).

Executions run in process (``execution_run``), as the worker runs them."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.contrib.auth.models import User
from google.protobuf import json_format
from pytest_httpserver import HTTPServer
from rest_framework.test import APIClient

from agents_registry.models import Agent, CapabilityProfile, Participant
from agents_registry.services import profile_embed
from ledger import selectors as ledger_selectors
from marketplace import services as market_services
from marketplace.models import Bid, Delivery, Task
from tests import a2a_agent
from tests.conftest import participant_of
from tests.protocols_servers import free_port, serving
from tests.workers.conftest import post_task
from workers import services
from workers.exceptions import InvalidInput, RuntimeFailure, TransientRuntimeError
from workers.models import Execution, TraceEvent
from workers.runtimes import a2a as a2a_runtime
from workers.runtimes.base import RunContext, TaskBrief
from workers.services.a2a import a2a_agent_register
from workers.services.subscriptions import events_fan_out

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _bids_on_hashed_text(settings: object) -> None:
    settings.HOSTED_AUTO_BID_MIN_SIMILARITY = 0.05  # the hashing embedder's similarities are low


@pytest.fixture
def agent_server(settings: object) -> Iterator[tuple[str, a2a_agent.WordCounter]]:
    port = free_port()
    application, executor = a2a_agent.application(f"http://127.0.0.1:{port}")
    settings.OUTBOUND_HTTP_ALLOWED_HOSTS = [f"127.0.0.1:{port}"]
    with serving(application, port=port) as base:
        yield base, executor


def register(owner: User, base: str, **options: object) -> Agent:
    agent = a2a_agent_register(
        owner=participant_of(owner), card_url=base, price_per_task=200, **options
    )
    agent.runtime_config = {**agent.runtime_config, "poll_interval_seconds": 0.2}
    agent.save(update_fields=["runtime_config"])
    # A worker embeds a new profile after its commit; this transaction never commits.
    profile_embed(profile_id=CapabilityProfile.objects.get(agent=agent).pk)
    return agent


def awarded(poster: Participant, agent: Agent, description: str) -> Task:
    """The agent bids on the task by itself (as hosted agents do) and the poster awards it."""
    task = post_task(poster, title="Count the words", description=description, bounty=300)
    bids = services.hosted_bids_place(task_id=task.pk)
    assert [bid.bidder_id for bid in bids] == [agent.participant.pk]
    assert bids[0].price == 200
    market_services.bid_award(bid=bids[0], actor=poster)
    return task


def run_once(task: Task) -> tuple[str, Execution]:
    execution = Execution.objects.filter(task_ref=task.pk).latest("pk")
    outcome = services.execution_run(execution_id=execution.pk, worker="tests")
    execution.refresh_from_db()
    return outcome, execution


def names(execution: Execution) -> list[str]:
    return list(
        TraceEvent.objects.filter(execution=execution)
        .order_by("sequence")
        .values_list("name", flat=True)
    )


def test_an_a2a_agent_is_registered_from_its_card_awarded_and_paid(
    agent_server: tuple[str, a2a_agent.WordCounter], poster: Participant, bob: User
) -> None:
    base, executor = agent_server
    agent = register(bob, base)
    assert agent.runtime == Agent.Runtime.A2A
    assert agent.runtime_config["endpoint"] == f"{base}/a2a"
    profile = CapabilityProfile.objects.get(agent=agent)
    assert profile.price_per_task == 200
    assert "Counts the words" in profile.description and "Count words" in profile.tags

    task = awarded(poster, agent, "one two three four five")
    outcome, execution = run_once(task)
    assert outcome == "succeeded", (execution.error_message, names(execution))
    delivery = Delivery.objects.get(task=task)
    assert delivery.text == "8 words"  # the title's three and the description's five
    assert delivery.data["result"] == {"words": 8}
    assert delivery.data["a2a"]["state"] == "completed"
    assert "one two three four five" in executor.received[0]
    execution = Execution.objects.get(task_ref=task.pk)
    assert names(execution)[:3] == [
        "attempt started",
        "a2a:SendMessage",
        "a2a:TASK_STATE_COMPLETED",
    ]

    before = ledger_selectors.balance_for(owner_ref=agent.participant.ledger_ref).available
    market_services.delivery_accept(delivery=delivery, actor=poster)
    after = ledger_selectors.balance_for(owner_ref=agent.participant.ledger_ref).available
    assert after - before == 190  # the price less the 5% fee


def test_a_question_reaches_the_poster_and_the_answer_goes_back_into_the_a2a_task(
    agent_server: tuple[str, a2a_agent.WordCounter], poster: Participant, bob: User
) -> None:
    base, executor = agent_server
    agent = register(bob, base)
    task = awarded(poster, agent, "ask: count these words please")
    assert run_once(task)[0] == "succeeded"
    question = Delivery.objects.get(task=task)
    assert question.text.startswith("The agent asks: Which language should I use?")
    assert question.data["a2a"]["state"] == "input-required"

    market_services.revision_request(delivery=question, actor=poster, message="English, please.")
    events_fan_out()  # beat's pass over the timeline sends the revision back to the agent
    assert run_once(task)[0] == "succeeded"
    assert executor.received[1] == "English, please."
    answer = Delivery.objects.filter(task=task).latest("pk")
    assert answer.text == "2 words"  # it counted the reply it was sent, in the same A2A task
    assert answer.data["a2a"]["task_id"] == question.data["a2a"]["task_id"]
    assert Task.objects.get(pk=task.pk).state == Task.State.DELIVERED
    assert events_fan_out() == 0 and Execution.objects.filter(task_ref=task.pk).count() == 2


def test_a_failing_agent_fails_the_execution_once_and_the_task_returns_to_the_market(
    agent_server: tuple[str, a2a_agent.WordCounter], poster: Participant, bob: User
) -> None:
    base, _ = agent_server
    agent = register(bob, base)
    task = awarded(poster, agent, "fail: this one")
    outcome, execution = run_once(task)
    assert outcome == "failed" and execution.attempts == 1  # a verdict is not retried
    assert "I cannot do this kind of task." in execution.error_message
    assert Task.objects.get(pk=task.pk).state == Task.State.OPEN
    assert agent.participant.pk in Task.objects.get(pk=task.pk).barred
    assert "runtime_failed" in names(execution)
    assert Bid.objects.get(task=task, bidder=agent.participant).status == Bid.Status.WITHDRAWN


def test_a_slow_agent_is_cancelled_at_the_time_limit_retried_then_failed(
    agent_server: tuple[str, a2a_agent.WordCounter], poster: Participant, bob: User
) -> None:
    base, _ = agent_server
    agent = register(bob, base, time_limit_seconds=4)
    agent.runtime_config = {**agent.runtime_config, "max_attempts": 2}
    agent.save(update_fields=["runtime_config"])
    task = awarded(poster, agent, "slow: count these")
    outcome, execution = run_once(task)
    assert outcome == "retrying" and execution.error_code == "runtime_unavailable"
    assert "time limit of 4 s" in execution.error_message
    assert "a2a:CancelTask" in names(execution)
    Execution.objects.filter(pk=execution.pk).update(lease_expires_at=execution.created_at)
    outcome, execution = run_once(task)
    assert (outcome, execution.attempts) == ("failed", 2)
    assert Task.objects.get(pk=task.pk).state == Task.State.OPEN
    assert not Delivery.objects.filter(task=task).exists()


def test_cards_at_refused_addresses_or_invalid_are_refused(
    settings: object, agent_server: tuple[str, a2a_agent.WordCounter], bob: User
) -> None:
    base, _ = agent_server
    owner = participant_of(bob)
    for url, fragment in (
        ("http://10.1.2.3/", "private"),
        ("http://169.254.169.254/latest/meta-data/", "metadata"),
        (f"{base}/nothing-here.json", "answered 404"),
    ):
        with pytest.raises(InvalidInput) as refused:
            a2a_agent_register(owner=owner, card_url=url, price_per_task=10)
        assert fragment in refused.value.fields["card_url"][0], (url, refused.value)
    settings.OUTBOUND_HTTP_ALLOWED_HOSTS = []  # the card's own host is loopback: refused too
    with pytest.raises(InvalidInput, match="loopback"):
        a2a_agent_register(owner=owner, card_url=base, price_per_task=10)
    assert not Agent.objects.filter(runtime=Agent.Runtime.A2A).exists()


def test_cards_that_are_not_valid_or_speak_no_json_rpc_are_refused(
    settings: object, httpserver: HTTPServer, bob: User
) -> None:
    settings.OUTBOUND_HTTP_ALLOWED_HOSTS = [f"127.0.0.1:{httpserver.port}"]
    card = json_format.MessageToDict(a2a_agent.agent_card(httpserver.url_for("")))
    grpc_only = {
        **card,
        "supportedInterfaces": [
            {
                "url": "https://93.184.215.14/rpc",
                "protocolBinding": "GRPC",
                "protocolVersion": "1.0",
            }
        ],
    }
    private_endpoint = {
        **card,
        "supportedInterfaces": [
            {"url": "http://10.0.0.7/a2a", "protocolBinding": "JSONRPC", "protocolVersion": "1.0"}
        ],
    }
    for path, body, fragment in (
        ("/partial.json", {"name": "Half a card"}, "lacks required fields"),
        ("/wrong-type.json", {**card, "skills": "many"}, "not valid"),
        ("/grpc.json", grpc_only, "offers GRPC"),
        ("/private.json", private_endpoint, "private"),
    ):
        httpserver.expect_request(path).respond_with_json(body)
        with pytest.raises(InvalidInput) as refused:
            a2a_agent_register(
                owner=participant_of(bob), card_url=httpserver.url_for(path), price_per_task=10
            )
        assert fragment in refused.value.fields["card_url"][0], (path, refused.value)
    assert not Agent.objects.filter(runtime=Agent.Runtime.A2A).exists()


def test_an_owner_registers_an_a2a_agent_on_the_page_and_through_the_api(
    agent_server: tuple[str, a2a_agent.WordCounter], client_for: object, bob: User
) -> None:
    base, _ = agent_server
    page = client_for(bob)
    assert "Agent Card URL" in page.get("/agents/new/a2a/").content.decode()
    response = page.post(
        "/agents/new/a2a/",
        {
            "card_url": base,
            "price_per_task": 150,
            "expected_latency_seconds": 60,
            "concurrency_limit": 2,
        },
    )
    agent = Agent.objects.get(runtime=Agent.Runtime.A2A)
    assert response.status_code == 302 and response["Location"] == f"/agents/{agent.slug}/"
    refused = page.post(
        "/agents/new/a2a/",
        {
            "card_url": "http://10.9.9.9",
            "price_per_task": 1,
            "expected_latency_seconds": 60,
            "concurrency_limit": 2,
        },
    )
    assert "private address" in refused.content.decode()

    api = APIClient()
    api.force_login(bob)
    created = api.post(
        "/api/v1/a2a/agents/",
        {"card_url": base, "price_per_task": 90, "name": "Counter two"},
        format="json",
    )
    assert created.status_code == 201, created.json()
    assert (created.json()["runtime"], created.json()["name"]) == ("a2a", "Counter two")
    bad = api.post(
        "/api/v1/a2a/agents/", {"card_url": "ftp://x", "price_per_task": 9}, format="json"
    )
    assert bad.status_code == 400 and "card_url" in bad.json()["error"]["fields"]
    assert Agent.objects.filter(runtime=Agent.Runtime.A2A).count() == 2


@pytest.mark.parametrize(
    ("status", "expected"),
    [(503, TransientRuntimeError), (429, TransientRuntimeError), (400, RuntimeFailure)],
)
def test_transport_answers_are_retried_only_when_trying_again_can_help(
    settings: object, httpserver: HTTPServer, status: int, expected: type
) -> None:
    settings.OUTBOUND_HTTP_ALLOWED_HOSTS = [f"127.0.0.1:{httpserver.port}"]
    httpserver.expect_request("/a2a", method="POST").respond_with_data("no", status=status)
    context = RunContext(
        execution_id=10**9,  # no such execution: nothing to continue
        attempt=1,
        task=TaskBrief(task_id=1, title="Count", description="one two", budget=10),
        agent_config={"endpoint": httpserver.url_for("/a2a"), "poll_interval_seconds": 0.2},
        record=lambda **event: None,
        time_limit_seconds=10,
    )
    with pytest.raises(expected) as failure:
        a2a_runtime.run(context)
    assert type(failure.value) is expected
    assert str(status) in str(failure.value)
