"""Event subscriptions through the REST API (an agent's key, a person's session) and the pages:
subscribe, the secret shown once, the delivery log, pause/resume/rotate/ping, refusals."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from pytest_httpserver import HTTPServer
from rest_framework.test import APIClient
from standardwebhooks import Webhook

from agents_registry.models import ApiKey
from agents_registry.services import api_key_issue
from tests.conftest import participant_of
from tests.workers.conftest import hosted_agent
from workers.models import EventDelivery, EventSubscription
from workers.services import subscriptions

pytestmark = pytest.mark.django_db


@pytest.fixture
def receiver(settings: object, httpserver: HTTPServer) -> HTTPServer:
    settings.OUTBOUND_HTTP_ALLOWED_HOSTS = [f"127.0.0.1:{httpserver.port}"]
    httpserver.expect_request("/hook", method="POST").respond_with_data("ok")
    return httpserver


def keyed(participant: object, scopes: list[str] | None = None) -> APIClient:
    client = APIClient()
    secret = api_key_issue(participant=participant, name="k", scopes=scopes)[1]
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {secret}")
    return client


def pump() -> None:
    subscriptions.events_fan_out()
    for delivery_id, token in subscriptions.deliveries_dispatch():
        subscriptions.event_delivery_attempt(delivery_id=delivery_id, token=token)


def test_an_agent_subscribes_with_its_key_pings_and_reads_the_log(
    receiver: HTTPServer, bob: User
) -> None:
    agent = hosted_agent(bob, "Listener", runtime="external")
    client = keyed(agent.participant)
    created = client.post(
        "/api/v1/subscriptions/",
        {"url": receiver.url_for("/hook"), "event_types": ["task.matched", "task.awarded"]},
        format="json",
    )
    assert created.status_code == 201, created.json()
    body = created.json()
    assert body["secret"].startswith("whsec_") and body["agent_slug"] == agent.slug
    assert created["Cache-Control"] == "no-store"
    listed = client.get("/api/v1/subscriptions/").json()
    assert [item["id"] for item in listed["results"]] == [body["id"]]
    assert "secret" not in listed["results"][0]

    ping = client.post(f"/api/v1/subscriptions/{body['id']}/ping/")
    assert ping.status_code == 202 and ping.json()["event_type"] == "ping"
    pump()
    request, _ = receiver.log[-1]
    assert Webhook(body["secret"]).verify(request.get_data(), dict(request.headers))["type"] == (
        "ping"
    )
    log = client.get(f"/api/v1/subscriptions/{body['id']}/deliveries/").json()["results"]
    assert [(item["event_type"], item["status"], item["attempts"]) for item in log] == [
        ("ping", "succeeded", 1)
    ]
    assert log[0]["attempt_log"][0]["status_code"] == 200

    rotated = client.post(f"/api/v1/subscriptions/{body['id']}/rotate-secret/").json()
    assert rotated["secret"] != body["secret"] and rotated["previous_valid_until"]
    paused = client.post(f"/api/v1/subscriptions/{body['id']}/pause/").json()
    assert (paused["status"], paused["paused_by"]) == ("paused", "owner")
    resumed = client.post(f"/api/v1/subscriptions/{body['id']}/resume/").json()
    assert resumed["status"] == "active"
    changed = client.patch(
        f"/api/v1/subscriptions/{body['id']}/", {"event_types": ["task.awarded"]}, format="json"
    )
    assert changed.json()["event_types"] == ["task.awarded"]
    assert client.delete(f"/api/v1/subscriptions/{body['id']}/").status_code == 204
    assert not EventSubscription.objects.exists()


def test_refusals_have_the_api_error_shape_and_change_nothing(
    settings: object, alice: User, bob: User, mallory: User
) -> None:
    settings.OUTBOUND_HTTP_ALLOWED_HOSTS = []
    agent = hosted_agent(bob, "Bob's", runtime="external")
    client = keyed(participant_of(alice))
    for given, field in (
        ({"url": "http://10.0.0.5/hook", "event_types": ["task.awarded"]}, "url"),
        ({"url": "https://93.184.215.14/h", "event_types": ["task.gone"]}, "event_types"),
        ({"url": "https://93.184.215.14/h", "event_types": ["task.matched"]}, "event_types"),
        ({"url": "https://93.184.215.14/h"}, "event_types"),
    ):
        response = client.post("/api/v1/subscriptions/", given, format="json")
        assert response.status_code == 400, given
        fields = response.json()["error"]["fields"]  # nested errors are flattened: "a.0"
        assert any(name.split(".")[0] == field for name in fields), response.json()
    someone_elses = client.post(
        "/api/v1/subscriptions/",
        {"url": "https://93.184.215.14/h", "event_types": ["task.awarded"], "agent": agent.slug},
        format="json",
    )
    assert someone_elses.status_code == 404
    reader = keyed(agent.participant, scopes=[ApiKey.Scope.TASKS_READ])
    denied = reader.post(
        "/api/v1/subscriptions/",
        {"url": "https://93.184.215.14/h", "event_types": ["task.awarded"]},
        format="json",
    )
    assert denied.status_code == 403 and denied.json()["error"]["code"] == "missing_scope"
    assert not EventSubscription.objects.exists()

    mine, _ = subscriptions.subscription_create(
        participant=agent.participant, url="https://93.184.215.14/h", event_types=["task.awarded"]
    )
    outsider = keyed(participant_of(mallory))
    for method, path in (
        ("get", f"/api/v1/subscriptions/{mine.pk}/"),
        ("get", f"/api/v1/subscriptions/{mine.pk}/deliveries/"),
        ("post", f"/api/v1/subscriptions/{mine.pk}/pause/"),
        ("post", f"/api/v1/subscriptions/{mine.pk}/rotate-secret/"),
        ("delete", f"/api/v1/subscriptions/{mine.pk}/"),
    ):
        response = getattr(outsider, method)(path)
        assert response.status_code == 404, path
        assert response.json()["error"]["code"] == "not_found"
    assert EventSubscription.objects.get(pk=mine.pk).status == "active"
    # The owner of the agent sees and manages its subscriptions.
    owner = keyed(participant_of(bob))
    assert owner.get(f"/api/v1/subscriptions/{mine.pk}/").json()["agent_slug"] == agent.slug


def test_a_person_subscribes_an_agent_on_the_page_and_reads_its_log(
    receiver: HTTPServer, client_for: object, bob: User, mallory: User
) -> None:
    agent = hosted_agent(bob, "Paged", runtime="external")
    page = client_for(bob)
    assert page.get("/subscriptions/").status_code == 200
    response = page.post(
        "/subscriptions/",
        {
            "subscriber": agent.slug,
            "url": receiver.url_for("/hook"),
            "event_types": ["task.awarded", "payment.received"],
        },
    )
    assert response.status_code == 200
    html = response.content.decode()
    subscription = EventSubscription.objects.get()
    assert subscription.participant_id == agent.participant.pk
    assert subscriptions.subscription_secrets_valid(subscription)[0] in html
    assert response["Cache-Control"] == "no-store"

    response = page.post(f"/subscriptions/{subscription.pk}/", {"action": "ping"})
    assert response.status_code == 302
    pump()
    detail = page.get(f"/subscriptions/{subscription.pk}/").content.decode()
    assert "ping" in detail and "delivered" in detail
    assert EventDelivery.objects.get().status == "succeeded"
    refused = page.post("/subscriptions/", {"url": "ftp://x", "event_types": ["task.awarded"]})
    assert "Only http and https" in refused.content.decode()
    assert client_for(mallory).get(f"/subscriptions/{subscription.pk}/").status_code == 404
