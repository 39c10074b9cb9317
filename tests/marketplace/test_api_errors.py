"""Under /api/ every bad input is a 4xx in the one error shape, and every answer is JSON: unknown
routes, ids out of range, NUL characters, huge offsets and bodies, unsupported methods."""

from __future__ import annotations

import json

import pytest
from django.test import Client

from tests.conftest import participant_of
from tests.marketplace.conftest import make_agent, post


def _error(response) -> dict:
    assert response["Content-Type"].startswith("application/json"), response.content[:200]
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "fields"}
    assert body["error"]["message"]
    return body["error"]


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/no-such-thing/",
        "/api/v1/tasks/abc/",
        "/api/v1/tasks/99999999999999999999/",
        "/api/v1/bids/1.5/award/",
        "/api/v1/executions/-1/",
    ],
)
def test_unknown_routes_and_ids_are_json_404(db: None, client: Client, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 404
    assert _error(response)["code"] == "not_found"


def test_largest_id_is_a_plain_404(db: None, alice) -> None:
    client = make_agent(alice, "Reader").client()
    response = client.get("/api/v1/tasks/999999999999999999/")
    assert response.status_code == 404
    assert _error(response)["code"] == "not_found"


def test_method_not_allowed_is_json(db: None, alice) -> None:
    client = make_agent(alice, "Reader").client()
    response = client.delete("/api/v1/tasks/")
    assert response.status_code == 405
    assert _error(response)["code"] == "method_not_allowed"
    assert "GET" in response["Allow"]


@pytest.mark.parametrize(
    "query", ["offset=9223372036854775808", "offset=-1", "limit=0", "limit=abc", "limit=١٢"]
)
def test_pagination_out_of_range_is_400(db: None, alice, query: str) -> None:
    client = make_agent(alice, "Reader").client()
    response = client.get(f"/api/v1/bids/?{query}")
    assert response.status_code == 400
    assert set(_error(response)["fields"]) & {"limit", "offset"}


def test_nul_in_query_is_400(db: None, alice) -> None:
    client = make_agent(alice, "Reader").client()
    for path in ("/api/v1/skills/?kind=%00", "/api/v1/tasks/?q=a%00b"):
        response = client.get(path)
        assert response.status_code == 400, path
        assert "NUL" in _error(response)["message"]


@pytest.mark.parametrize(
    "body",
    [
        {"title": "t\x00", "description": "d", "bounty": 5},
        {"title": "t", "description": "d", "bounty": 5, "checks": {"regex": "a\x00"}},
        {"title": "t", "description": "d", "bounty": 5, "checks": {"required_fields": ["\x00"]}},
        {"title": "t", "description": "d", "bounty": 5, "check\x00s": {}},
    ],
)
def test_nul_in_json_is_400_and_changes_nothing(db: None, alice, body: dict) -> None:
    from marketplace.models import Task

    client = make_agent(alice, "Poster").client()
    response = client.post("/api/v1/tasks/", data=json.dumps(body), content_type="application/json")
    assert response.status_code == 400
    assert "NUL" in _error(response)["message"]
    assert not Task.objects.exists()


def test_nul_in_delivery_data_is_400(db: None, alice, bob) -> None:
    from marketplace import services

    poster = participant_of(alice)
    from tests.marketplace.conftest import fund

    fund(poster, 1000)
    worker = make_agent(bob, "Worker")
    task = post(poster, bounty=100)
    services.task_claim(task=task, claimant=worker.participant)
    services.task_start(task=task, actor=worker.participant)
    response = worker.client().post(
        f"/api/v1/tasks/{task.pk}/deliveries/",
        data=json.dumps({"text": "ok", "data": {"k": "v\x00"}}),
        content_type="application/json",
    )
    assert response.status_code == 400
    assert "data.k" in _error(response)["message"]
    assert not task.deliveries.exists()


def test_body_over_the_limit_is_json_413(db: None, alice, settings) -> None:
    settings.API_MAX_JSON_BYTES = 1024
    client = make_agent(alice, "Poster").client()
    body = json.dumps({"title": "t", "description": "x" * 5000, "bounty": 5})
    response = client.post("/api/v1/tasks/", data=body, content_type="application/json")
    assert response.status_code == 413
    assert _error(response)["code"] == "too_large"


def test_server_error_is_json(db: None, alice, monkeypatch) -> None:
    from marketplace.api import tasks as task_api

    def crash(**kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(task_api.reads, "task_page", crash)
    client = make_agent(alice, "Reader").client()
    client.raise_request_exception = False
    response = client.get("/api/v1/tasks/?q=x")
    assert response.status_code == 500
    assert _error(response)["code"] == "server_error"
    assert "boom" not in response.content.decode()


def test_pages_outside_the_api_keep_html_errors(db: None, client: Client) -> None:
    response = client.get("/no-such-page/")
    assert response.status_code == 404
    assert not response["Content-Type"].startswith("application/json")
