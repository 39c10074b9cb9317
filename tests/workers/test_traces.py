"""Trace export (validated against its schema), the trace API, the page and its websocket."""

from __future__ import annotations

import jsonschema
import pytest
from asgiref.sync import async_to_sync
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import User

from agents_registry.models import Participant
from agents_registry.services import api_key_issue
from marketplace import services as market_services
from marketplace.routing import websocket_urlpatterns
from tests.conftest import participant_of
from tests.workers.conftest import hosted_agent, post_task
from workers import selectors, services
from workers.models import Execution

pytestmark = pytest.mark.django_db


@pytest.fixture
def finished(poster: Participant, bob: User) -> Execution:
    agent = hosted_agent(bob, "Stats", builtin="text-stats")
    task = market_services.task_claim(task=post_task(poster), claimant=agent.participant)
    execution = Execution.objects.get(task_ref=task.pk)
    services.trace_event_append(
        execution_id=execution.pk,
        kind="llm_call",
        name="plan",
        inputs={"prompt": "x" * 70_000},
        input_tokens=12,
        output_tokens=3,
        cost=1,
        duration_ms=40,
    )
    services.execution_run(execution_id=execution.pk)
    execution.refresh_from_db()
    return execution


def agent_client(execution: Execution, client_factory: object, scopes: list[str] | None = None):
    from rest_framework.test import APIClient

    _, secret = api_key_issue(participant=execution.agent.participant, name="k", scopes=scopes)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {secret}")
    return client


def test_the_export_validates_against_the_versioned_schema(finished: Execution) -> None:
    task = selectors.access_execution(
        viewer=selectors.market_selectors.Viewer(participant=None, is_staff=True),
        execution_id=finished.pk,
    )[1]
    document = selectors.trace_export(execution=finished, task=task)
    schema = selectors.trace_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    ).validate(document)
    assert document["schema_version"] == "1.0"
    assert [event["sequence"] for event in document["events"]] == [1, 2, 3, 4, 5]
    assert document["events"][0]["inputs"]["truncated"] is True
    assert document["totals"] == {
        "events": 5,
        "input_tokens": 12,
        "output_tokens": 3,
        "event_cost": 1,
    }
    assert document["execution"]["status"] == "succeeded"

    broken = {**document, "events": [{**document["events"][0], "kind": "thought"}]}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, schema)


def test_the_poster_and_the_agent_owner_read_the_trace_an_outsider_does_not(
    finished: Execution, client_for: object, alice: User, bob: User, mallory: User
) -> None:
    url = f"/api/v1/executions/{finished.pk}/trace/"
    for user in (alice, bob):
        response = client_for(user).get(url)
        assert response.status_code == 200
        assert response.json()["execution"]["id"] == finished.pk
    outsider = client_for(mallory).get(url)
    assert outsider.status_code == 404
    assert outsider.json()["error"]["code"] == "not_found"
    download = client_for(alice).get(url + "?download=1")
    assert download["Content-Disposition"] == (
        f'attachment; filename="trace-execution-{finished.pk}.json"'
    )
    status = client_for(alice).get(f"/api/v1/executions/{finished.pk}/").json()
    assert (status["status"], status["attempts"], status["trace_length"]) == ("succeeded", 1, 5)


def test_the_schema_is_public(client: object) -> None:
    response = client.get("/api/v1/traces/schema/v1.json")
    assert response.status_code == 200
    assert response.json()["$id"].endswith("/trace/v1.json")


def test_the_running_agent_appends_events_with_the_traces_scope(
    poster: Participant, bob: User, client_for: object
) -> None:
    agent = hosted_agent(bob, "External-ish", builtin="no-op")
    task = market_services.task_claim(task=post_task(poster), claimant=agent.participant)
    execution = Execution.objects.get(task_ref=task.pk)
    client = agent_client(execution, None)
    url = f"/api/v1/executions/{execution.pk}/trace/events/"

    response = client.post(
        url,
        {"kind": "tool_call", "name": "search", "inputs": {"q": "solar"}, "input_tokens": 5},
        format="json",
    )
    assert response.status_code == 201, response.json()
    assert response.json()["sequence"] == 1
    assert response.json()["source"] == "agent"

    bad = client.post(url, {"kind": "thought", "cost": -2}, format="json")
    assert bad.status_code == 400
    assert set(bad.json()["error"]["fields"]) == {"kind", "cost"}
    huge = client.post(url, {"kind": "message", "outputs": {"x": "y" * 70_000}}, format="json")
    assert huge.status_code == 400
    assert "At most 65536 bytes" in huge.json()["error"]["message"]

    no_scope = agent_client(execution, None, scopes=["tasks:read"])
    refused = no_scope.post(url, {"kind": "message"}, format="json")
    assert refused.status_code == 403
    assert "traces:write" in refused.json()["error"]["message"]
    owner = client_for(bob).post(url, {"kind": "message"}, format="json")
    assert owner.status_code == 403
    assert Execution.objects.get(pk=execution.pk).trace_length == 1

    services.execution_run(execution_id=execution.pk)
    closed = client.post(url, {"kind": "message"}, format="json")
    assert closed.status_code == 409
    assert closed.json()["error"]["code"] == "execution_finished"


def test_the_trace_page_shows_the_timeline_and_its_partial(
    finished: Execution, client_for: object, alice: User, mallory: User
) -> None:
    page = client_for(alice).get(f"/executions/{finished.pk}/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "Execution #" in html and "Download trace (JSON)" in html
    assert "builtin:text-stats" in html
    assert "/ws/executions/" not in html  # final: no live socket
    partial = client_for(alice).get(f"/executions/{finished.pk}/", HTTP_HX_REQUEST="true")
    body = partial.content.decode()
    # A finished execution's partial also replaces the refetching element with an inert one.
    assert body.lstrip().startswith('<div id="timeline-refresh" hx-swap-oob="true"></div>')
    assert '<div id="timeline" aria-live="polite">' in body
    assert "<html" not in body
    assert client_for(mallory).get(f"/executions/{finished.pk}/").status_code == 404
    download = client_for(alice).get(f"/executions/{finished.pk}/trace.json")
    assert download.json()["execution"]["id"] == finished.pk


@pytest.mark.django_db(transaction=True)
def test_the_websocket_admits_the_poster_refuses_an_outsider_and_relays_progress(
    poster: Participant, bob: User, alice: User, mallory: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    from workers import live

    monkeypatch.setattr(live, "HINT_INTERVAL_SECONDS", 0)
    agent = hosted_agent(bob, "Stats", builtin="text-stats")
    task = market_services.task_claim(task=post_task(poster), claimant=agent.participant)
    execution = Execution.objects.get(task_ref=task.pk)
    application = URLRouter(websocket_urlpatterns)

    async def scenario() -> tuple[bool, dict, bool, int | None]:
        communicator = WebsocketCommunicator(application, f"/ws/executions/{execution.pk}/")
        communicator.scope["user"] = alice
        connected, _ = await communicator.connect()
        from channels.db import database_sync_to_async

        await database_sync_to_async(services.trace_event_append)(
            execution_id=execution.pk, kind="message", name="progress"
        )
        # A worker may claim the execution meanwhile: skip its "running" hints.
        message = await communicator.receive_json_from(timeout=5)
        while message.get("kind") != "event":
            message = await communicator.receive_json_from(timeout=5)
        await communicator.disconnect()

        outsider = WebsocketCommunicator(application, f"/ws/executions/{execution.pk}/")
        outsider.scope["user"] = mallory
        outsider_connected, code = await outsider.connect()
        await outsider.disconnect()  # a refused consumer, too, runs until its disconnect
        return connected, message, outsider_connected, code

    connected, message, outsider_connected, code = async_to_sync(scenario)()
    assert connected is True
    assert message == {"type": "execution.changed", "kind": "event"}
    assert outsider_connected is False
    assert code == 4404
    assert participant_of(mallory).pk != poster.pk
