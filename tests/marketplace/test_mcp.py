"""The official MCP client against the market's MCP server, served over streamable HTTP by uvicorn
on loopback (the ASGI application ``make run`` starts), on the test database: an agent with
nothing but an API key finds a task, bids, is awarded, delivers and is paid."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anyio
import httpx
import httpx2
import pytest
from django.contrib.auth.models import User
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from agents_registry.embeddings import embed_text, embedding_model_id
from agents_registry.models import ApiKey
from agents_registry.services import api_key_issue, profile_create
from marketplace import services
from marketplace.models import Bid, Delivery, Task
from marketplace.protocols.asgi import build_application
from tests.conftest import participant_of
from tests.marketplace.conftest import available, escrow, make_agent
from tests.protocols_servers import serving

pytestmark = pytest.mark.django_db(transaction=True)

DESCRIPTION = "Summarises long technical documents into short plain-English briefs."


@pytest.fixture
def mcp_url() -> Iterator[str]:
    with serving(build_application()) as base:
        yield f"{base}/mcp"


def call(url: str, key: str | None, tool: str, arguments: dict[str, Any] | None = None) -> Any:
    """One tool call through the official client; the result as the client gives it."""

    async def run() -> Any:
        headers = {"Authorization": f"Api-Key {key}"} if key else {}
        async with (
            httpx2.AsyncClient(headers=headers) as http_client,
            Client(streamable_http_client(url, http_client=http_client)) as client,
        ):
            if tool == "list_tools":
                return await client.list_tools()
            if tool.startswith("market://"):
                return await client.read_resource(tool)
            return await client.call_tool(tool, arguments or {})

    return anyio.run(run)


def ok(result: Any) -> dict[str, Any]:
    assert not result.is_error, result.content
    return result.structured_content


def refusal(result: Any) -> dict[str, Any]:
    assert result.is_error
    text = result.content[0].text  # "Error executing tool <name>: " + the API's error body
    return json.loads(text[text.index("{") :])["error"]


def test_an_agent_with_an_api_key_earns_credits_through_mcp(
    mcp_url: str, alice: User, bob: User, poster
) -> None:
    agent = make_agent(bob, "Brief Writer")
    profile_create(
        agent=agent.agent,
        actor=participant_of(bob),
        description=DESCRIPTION,
        price_per_task=300,
        expected_latency_seconds=600,
        embedding=embed_text(DESCRIPTION).tolist(),
        embedding_model=embedding_model_id(),
    )
    task = services.task_post(
        poster=poster,
        title="Summarise a technical document",
        description="Summarise this long technical document into a short plain-English brief.",
        bounty=500,
    )
    listed = call(mcp_url, agent.secret, "list_tools")
    names = {tool.name for tool in listed.tools}
    assert {
        "tasks_for_me",
        "task_read",
        "bid_place",
        "bid_withdraw",
        "task_claim",
        "task_start",
        "delivery_submit",
        "subtask_post",
        "wallet_read",
        "wallet_statement",
    } <= names

    found = ok(call(mcp_url, agent.secret, "tasks_for_me"))["results"]
    assert [item["id"] for item in found] == [task.pk]
    assert ok(call(mcp_url, agent.secret, "task_read", {"task_id": task.pk}))["bounty"] == 500
    bid = ok(
        call(
            mcp_url,
            agent.secret,
            "bid_place",
            {"task_id": task.pk, "price": 400, "eta_hours": 2, "plan": "Read, then condense."},
        )
    )
    assert (bid["price"], bid["status"]) == (400, "active")

    services.bid_award(bid=Bid.objects.get(pk=bid["id"]), actor=poster)
    assert ok(call(mcp_url, agent.secret, "task_start", {"task_id": task.pk}))["status"] == (
        "in_progress"
    )
    deliver = {"task_id": task.pk, "text": "A short brief.", "data": {"words": 3}}
    first = ok(call(mcp_url, agent.secret, "delivery_submit", deliver))
    again = ok(call(mcp_url, agent.secret, "delivery_submit", deliver))
    assert first["id"] == again["id"]
    assert Delivery.objects.filter(task=task).count() == 1  # the retry replayed the first

    resource = call(mcp_url, agent.secret, f"market://tasks/{task.pk}/deliveries")
    assert json.loads(resource.contents[0].text)["results"][0]["id"] == first["id"]

    # Asked for a revision, the same content is a new delivery (not a replay of the first).
    services.revision_request(
        delivery=Delivery.objects.get(pk=first["id"]), actor=poster, message="Shorter."
    )
    ok(call(mcp_url, agent.secret, "task_start", {"task_id": task.pk}))
    second = ok(call(mcp_url, agent.secret, "delivery_submit", deliver))
    assert second["id"] != first["id"] and second["status"] == "submitted"

    before = ok(call(mcp_url, agent.secret, "wallet_read"))["available"]
    services.delivery_accept(delivery=Delivery.objects.get(pk=second["id"]), actor=poster)
    paid = ok(call(mcp_url, agent.secret, "wallet_read"))["available"]
    assert paid - before == 380  # the price less the 5% platform fee
    assert available(agent.participant) == paid
    statement = ok(call(mcp_url, agent.secret, "wallet_statement"))["results"]
    assert statement[0]["amount"] == 380


def test_a_key_without_the_scope_is_refused_by_the_tool_and_nothing_changes(
    mcp_url: str, bob: User, poster
) -> None:
    reader = make_agent(bob, "Reader", scopes=[ApiKey.Scope.TASKS_READ])
    task = services.task_post(poster=poster, title="Count words", description="one two", bounty=90)
    error = refusal(
        call(
            mcp_url,
            reader.secret,
            "bid_place",
            {"task_id": task.pk, "price": 50, "eta_hours": 1, "plan": "Count."},
        )
    )
    assert error["code"] == "missing_scope"
    assert "bids:write" in error["message"]
    error = refusal(call(mcp_url, reader.secret, "wallet_read"))
    assert error["code"] == "missing_scope"
    assert not Bid.objects.filter(task=task).exists()
    assert ok(call(mcp_url, reader.secret, "task_read", {"task_id": task.pk}))["id"] == task.pk


def test_refusals_carry_the_apis_messages_and_change_nothing(
    mcp_url: str, alice: User, bob: User, mallory: User, poster
) -> None:
    agent = make_agent(bob, "Claimer")
    private = services.task_post(
        poster=poster, title="Secret", description="Only mine.", bounty=80, visibility="private"
    )
    task = services.task_post(poster=poster, title="Open", description="Anyone.", bounty=200)

    error = refusal(
        call(
            mcp_url,
            agent.secret,
            "bid_place",
            {"task_id": task.pk, "price": 900, "eta_hours": 1, "plan": "Too dear."},
        )
    )
    assert error == {
        "code": "invalid",
        "message": "price must not exceed the bounty of 200.",
        "fields": {},
    }
    error = refusal(
        call(
            mcp_url,
            agent.secret,
            "bid_place",
            {"task_id": task.pk, "price": 0, "eta_hours": 1, "plan": "Free."},
        )
    )
    assert error["code"] == "invalid" and "price" in error["fields"]
    assert refusal(call(mcp_url, agent.secret, "task_read", {"task_id": private.pk}))["code"] == (
        "not_found"
    )
    assert refusal(call(mcp_url, agent.secret, "task_start", {"task_id": task.pk}))["code"] == (
        "not_allowed"
    )
    human_key = api_key_issue(participant=participant_of(mallory), name="m")[1]
    assert refusal(call(mcp_url, human_key, "tasks_for_me"))["code"] == "invalid"

    held = escrow(task)
    claimed = ok(call(mcp_url, agent.secret, "task_claim", {"task_id": task.pk}))
    assert (claimed["status"], claimed["assignee"]["id"]) == ("awarded", agent.participant.pk)
    assert refusal(call(mcp_url, agent.secret, "task_claim", {"task_id": task.pk}))["code"] == (
        "invalid_transition"
    )
    assert escrow(task) == held
    assert Task.objects.get(pk=task.pk).assignee_id == agent.participant.pk


def test_without_a_valid_key_the_endpoint_answers_401(mcp_url: str, bob: User) -> None:
    agent = make_agent(bob, "Locked out")
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    headers = {"Accept": "application/json, text/event-stream"}
    for authorization in ("", "Api-Key nope.nope", f"Bearer {agent.secret}x"):
        response = httpx.post(
            mcp_url, json=body, headers={**headers, "Authorization": authorization}
        )
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"] == "Api-Key"
        assert set(response.json()["error"]) == {"code", "message", "fields"}
    # A bearer token is read as the same API key (what MCP hosts usually send).
    response = httpx.post(
        mcp_url,
        json={
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-06-18",
                "capabilities": {},
                "clientInfo": {"name": "curl", "version": "1"},
            },
        },
        headers={**headers, "Authorization": f"Bearer {agent.secret}"},
    )
    assert response.status_code == 200, response.text


def test_tools_are_rate_limited_as_the_api_is(mcp_url: str, bob: User, poster, settings) -> None:
    settings.MARKET_WRITE_RATE = "2/minute"
    agent = make_agent(bob, "Eager")
    tasks = [
        services.task_post(poster=poster, title=f"T{n}", description="d", bounty=50)
        for n in range(3)
    ]
    outcomes = [
        call(
            mcp_url,
            agent.secret,
            "bid_place",
            {"task_id": task.pk, "price": 40, "eta_hours": 1, "plan": "Do it."},
        )
        for task in tasks
    ]
    assert [result.is_error for result in outcomes] == [False, False, True]
    assert refusal(outcomes[2])["code"] == "throttled"
    assert Bid.objects.filter(bidder=agent.participant).count() == 2
    assert not call(mcp_url, agent.secret, "wallet_read").is_error  # reads are not writes
