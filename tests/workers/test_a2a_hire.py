"""An A2A client (``a2a-sdk``'s) hires a market agent through the market's A2A endpoint, the
interface of the agent's card: the bounty goes into escrow, the hosted agent is awarded and
delivers, the client accepts over A2A and the agent is paid. Served by uvicorn on loopback (the
protocols application ``make run`` starts); the execution runs here, as the worker runs it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anyio
import httpx
import pytest
from a2a.client import ClientConfig, ClientFactory
from a2a.client.card_resolver import parse_agent_card
from a2a.helpers.proto_helpers import get_text_parts
from a2a.types import (
    CancelTaskRequest,
    GetTaskRequest,
    Message,
    Part,
    Role,
    SendMessageRequest,
    TaskState,
)
from a2a.utils.errors import A2AError
from django.contrib.auth.models import User
from django.test import Client as DjangoClient

from agents_registry.services import api_key_issue, profile_embed
from ledger import selectors as ledger_selectors
from marketplace.models import Task
from marketplace.protocols.asgi import build_application
from tests.conftest import participant_of
from tests.protocols_servers import serving
from tests.workers.conftest import fund
from workers import services
from workers.models import Execution
from workers.services.builtin_agents import builtin_agents_ensure

pytestmark = pytest.mark.django_db(transaction=True)

TEXT = "Count the words of this text\n\n```\nSolar panels turn light into power. Cats nap.\n```"


@pytest.fixture
def market(settings: object) -> Iterator[str]:
    with serving(build_application()) as base:
        settings.MCP_URL = f"{base}/mcp"
        yield base


def a2a_call(card: dict, key: str | None, operation: str, request: Any) -> Any:
    """One call of the SDK's client to the card's interface (its tenant included)."""

    async def run() -> Any:
        headers = {"Authorization": f"Api-Key {key}"} if key else {}
        async with httpx.AsyncClient(headers=headers) as http_client:
            config = ClientConfig(streaming=False, polling=True, httpx_client=http_client)
            client = ClientFactory(config).create(parse_agent_card(dict(card)))
            if operation == "send":
                async for response in client.send_message(request):
                    return response.task
            if operation == "cancel":
                return await client.cancel_task(request)
            return await client.get_task(request)

    return anyio.run(run)


def message(text: str, *, task_id: str = "", **metadata: object) -> SendMessageRequest:
    sent = Message(message_id=f"m-{abs(hash((text, task_id)))}", role=Role.ROLE_USER)
    sent.parts.append(Part(text=text))
    if task_id:
        sent.task_id = task_id
    if metadata:
        sent.metadata.update(metadata)
    return SendMessageRequest(message=sent)


def test_an_a2a_client_hires_an_agent_through_the_market_and_pays_on_acceptance(
    market: str, alice: User, staff: User
) -> None:
    agents = {a.slug: a for a in builtin_agents_ensure(owner=participant_of(staff))}
    stats = agents["builtin-text-stats"]
    profile_embed(profile_id=stats.profiles.get(is_current=True).pk)
    poster = participant_of(alice)
    fund(poster, 1000)
    key = api_key_issue(participant=poster, name="a2a")[1]
    card = DjangoClient().get(f"/agents/{stats.slug}/.well-known/agent-card.json").json()
    price = stats.profiles.get(is_current=True).price_per_task

    hired = a2a_call(card, key, "send", message(TEXT))
    assert hired.status.state == TaskState.TASK_STATE_WORKING
    task = Task.objects.get(pk=int(hired.id))
    assert (task.state, task.assignee_id, task.price) == ("awarded", stats.participant.pk, price)
    assert ledger_selectors.escrow_balance(task_ref=task.ledger_ref) == price
    # The same message again (a retry): the same task, posted once.
    assert a2a_call(card, key, "send", message(TEXT)).id == hired.id
    assert Task.objects.filter(poster=poster).count() == 1

    execution = Execution.objects.get(task_ref=task.pk)
    assert services.execution_run(execution_id=execution.pk, worker="tests") == "succeeded"
    delivered = a2a_call(card, key, "get", GetTaskRequest(id=hired.id))
    assert delivered.status.state == TaskState.TASK_STATE_INPUT_REQUIRED
    assert "Reply `accept`" in get_text_parts(delivered.status.message.parts)[0]
    assert "words" in get_text_parts(delivered.artifacts[0].parts)[0]

    before = ledger_selectors.balance_for(owner_ref=stats.participant.ledger_ref).available
    done = a2a_call(card, key, "send", message("accept", task_id=hired.id))
    assert done.status.state == TaskState.TASK_STATE_COMPLETED
    after = ledger_selectors.balance_for(owner_ref=stats.participant.ledger_ref).available
    assert after - before == price - price * 5 // 100


def test_the_markets_card_posts_open_tasks_and_refusals_carry_the_apis_messages(
    market: str, alice: User, mallory: User
) -> None:
    poster = participant_of(alice)
    key = api_key_issue(participant=poster, name="a2a")[1]
    card = DjangoClient().get("/.well-known/agent-card.json").json()
    with pytest.raises(A2AError, match="metadata `bounty`"):
        a2a_call(card, key, "send", message("Translate my menu"))
    posted = a2a_call(card, key, "send", message("Translate my menu", bounty=250))
    assert posted.status.state == TaskState.TASK_STATE_SUBMITTED
    assert Task.objects.get(pk=int(posted.id)).bounty == 250
    with pytest.raises(A2AError, match="credits available"):
        a2a_call(card, key, "send", message("A huge job", bounty=10**9))
    outsider = api_key_issue(participant=participant_of(mallory), name="m")[1]
    with pytest.raises(A2AError, match="Only the poster can cancel"):
        a2a_call(card, outsider, "cancel", CancelTaskRequest(id=posted.id))
    with pytest.raises(A2AError, match="does not exist"):
        a2a_call(card, outsider, "get", GetTaskRequest(id="999999"))
    cancelled = a2a_call(card, key, "cancel", CancelTaskRequest(id=posted.id))
    assert cancelled.status.state == TaskState.TASK_STATE_CANCELED
    with pytest.raises(A2AError, match="no delivery to answer"):
        a2a_call(card, key, "send", message("accept", task_id=posted.id))
    response = httpx.post(f"{market}/a2a", json={"jsonrpc": "2.0", "id": 1, "method": "GetTask"})
    assert response.status_code == 401
    assert Task.objects.count() == 1
