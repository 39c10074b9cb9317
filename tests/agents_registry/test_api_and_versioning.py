"""The REST API: registering, versioned profiles, keys, matching; bad input changes nothing."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.contrib.auth.models import User

from agents_registry.embeddings import embed_text, embedding_model_id
from agents_registry.models import Agent, ApiKey, CapabilityProfile, DecisionCandidate
from agents_registry.selectors import agent_current_profile, match_agents
from agents_registry.services import api_key_issue, decision_record_create, profile_embed
from tests.agents_registry.conftest import current_profile
from tests.conftest import participant_of

pytestmark = pytest.mark.django_db

PROFILE = {
    "description": "Extracts line items, totals and VAT from scanned invoices into JSON.",
    "price_per_task": 40,
    "expected_latency_seconds": 300,
    "tags": ["ocr", "invoices"],
    "output_formats": ["json"],
    "policy_flags": ["no_health_data"],
}


def register(client, name: str = "Invoice reader", **profile) -> dict:
    response = client.post(
        "/api/v1/agents/",
        {"name": name, "profile": {**PROFILE, **profile}},
        format="json",
    )
    assert response.status_code == 201, response.json()
    return response.json()


def counts() -> tuple[int, int]:
    return Agent.objects.count(), CapabilityProfile.objects.count()


def test_register_an_agent_with_its_first_profile(client_for, alice: User) -> None:
    body = register(client_for(alice))
    assert body["slug"] == "invoice-reader"
    assert body["owner"]["id"] == participant_of(alice).pk
    assert body["current_profile"]["version"] == 1
    assert body["current_profile"]["is_matchable"] is False  # the worker has not embedded it yet
    assert body["current_profile"]["policy_flags"] == ["no_health_data"]


def test_editing_keeps_the_old_version_and_its_vector_and_decisions_keep_theirs(
    client_for, alice: User
) -> None:
    client = client_for(alice)
    register(client)
    agent = Agent.objects.get(slug="invoice-reader")
    first = current_profile(agent)
    profile_embed(profile_id=first.pk)
    first.refresh_from_db()
    first_vector = list(first.embedding)
    result = match_agents(text="Read totals from supplier invoices", budget=100, seed=1)
    record = decision_record_create(
        subject_ref="task:1", purpose="shortlist", result=result, chosen_agent_id=agent.pk
    )

    response = client.post(
        "/api/v1/agents/invoice-reader/profiles/",
        {**PROFILE, "description": "Transcribes podcasts and meetings into text with timestamps."},
        format="json",
    )
    assert response.status_code == 201
    assert response.json()["version"] == 2
    profile_embed(profile_id=response.json()["id"])

    first.refresh_from_db()
    assert first.is_current is False
    assert list(first.embedding) == first_vector
    assert first.description == PROFILE["description"]
    assert agent_current_profile(agent=agent).version == 2
    versions = client.get("/api/v1/agents/invoice-reader/profiles/").json()["results"]
    assert [v["version"] for v in versions] == [2, 1]
    record.refresh_from_db()
    assert record.chosen_profile_id == first.pk
    assert list(
        DecisionCandidate.objects.filter(record=record).values_list("profile_id", flat=True)
    ) == [first.pk]
    assert record.weights["exploration"] == settings.MATCH_EXPLORATION
    assert record.parameters["budget"] == 100


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"description": ""}, "description"),
        ({"description": "   "}, "description"),
        ({"description": "too short"}, "description"),
        ({"description": "x" * 4001}, "description"),
        ({"description": "y" * 200_000}, "description"),
        ({"price_per_task": -1}, "price_per_task"),
        ({"price_per_unit": -5, "unit_name": "page"}, "price_per_unit"),
        ({"price_per_unit": 5}, "unit_name"),
        ({"expected_latency_seconds": 0}, "expected_latency_seconds"),
        ({"policy_flags": ["no_weekends"]}, "policy_flags"),
        ({"tags": ["x" * 41]}, "tags"),
        ({"embedding": [0.1] * 100, "embedding_model": "minilm-l6-v2/numpy-1"}, "embedding"),
        ({"embedding": [1.0] * 384, "embedding_model": "minilm-l6-v2/numpy-1"}, "embedding"),
    ],
)
def test_bad_profiles_get_a_clear_400_and_change_nothing(
    client_for, alice: User, change: dict, field: str
) -> None:
    client = client_for(alice)
    register(client)
    before = counts()
    response = client.post(
        "/api/v1/agents/invoice-reader/profiles/", {**PROFILE, **change}, format="json"
    )
    assert response.status_code == 400, response.json()
    error = response.json()["error"]
    assert error["code"] == "invalid"
    assert field in error["message"] or field in error["fields"]
    assert counts() == before
    assert current_profile(Agent.objects.get(slug="invoice-reader")).version == 1
    # Registration with the same bad profile creates no agent either.
    response = client.post(
        "/api/v1/agents/", {"name": "Other", "profile": {**PROFILE, **change}}, format="json"
    )
    assert response.status_code == 400
    assert counts() == before


def test_an_agent_may_send_its_own_vector_of_the_same_model(client_for, alice: User) -> None:
    client = client_for(alice)
    register(client)
    vector = [float(x) for x in embed_text(PROFILE["description"])]
    response = client.post(
        "/api/v1/agents/invoice-reader/profiles/",
        {**PROFILE, "embedding": vector, "embedding_model": embedding_model_id()},
        format="json",
    )
    assert response.status_code == 201
    assert response.json()["is_matchable"] is True
    other_model = client.post(
        "/api/v1/agents/invoice-reader/profiles/",
        {**PROFILE, "embedding": vector, "embedding_model": "text-embedding-3-small"},
        format="json",
    )
    assert other_model.status_code == 400
    assert "embedding_model" in other_model.json()["error"]["message"]


def test_only_the_owner_or_the_agent_edits_and_keys_need_the_scope(
    client_for, api_client, alice: User, mallory: User
) -> None:
    register(client_for(alice))
    before = counts()
    response = client_for(mallory).post(
        "/api/v1/agents/invoice-reader/profiles/", PROFILE, format="json"
    )
    assert response.status_code == 403
    agent = Agent.objects.get(slug="invoice-reader")
    _, weak = api_key_issue(participant=agent.participant, name="bot")  # default scopes
    api_client.credentials(HTTP_AUTHORIZATION=f"Api-Key {weak}")
    response = api_client.post("/api/v1/agents/invoice-reader/profiles/", PROFILE, format="json")
    assert response.status_code == 403
    assert counts() == before
    _, strong = api_key_issue(
        participant=agent.participant, name="bot", scopes=[ApiKey.Scope.AGENTS_WRITE]
    )
    api_client.credentials(HTTP_AUTHORIZATION=f"Api-Key {strong}")
    response = api_client.post("/api/v1/agents/invoice-reader/profiles/", PROFILE, format="json")
    assert response.status_code == 201
    assert response.json()["version"] == 2


def test_keys_are_issued_once_listed_without_secret_and_revoked(client_for, alice: User) -> None:
    client = client_for(alice)
    register(client)
    issued = client.post(
        "/api/v1/agents/invoice-reader/keys/",
        {"name": "prod", "scopes": ["tasks:read"]},
        format="json",
    )
    assert issued.status_code == 201
    secret = issued.json()["key"]
    assert secret.startswith(issued.json()["prefix"] + ".")
    listed = client.get("/api/v1/agents/invoice-reader/keys/").json()["results"]
    assert [key["prefix"] for key in listed] == [issued.json()["prefix"]]
    assert "key" not in listed[0]
    bad = client.post(
        "/api/v1/agents/invoice-reader/keys/", {"name": "x", "scopes": ["root"]}, format="json"
    )
    assert bad.status_code == 400
    assert ApiKey.objects.count() == 1
    revoked = client.post(f"/api/v1/agents/invoice-reader/keys/{issued.json()['prefix']}/revoke/")
    assert revoked.json()["revoked"] is True
    me = client_for(alice).get("/api/v1/me/", HTTP_AUTHORIZATION=f"Api-Key {secret}")
    assert me.status_code == 401


def test_match_endpoint_ranks_with_factors_and_refuses_bad_input(client_for, alice: User) -> None:
    client = client_for(alice)
    register(client)
    profile_embed(profile_id=current_profile(Agent.objects.get(slug="invoice-reader")).pk)
    response = client.post(
        "/api/v1/agents/match/",
        {"text": "Pull totals out of 300 scanned supplier bills", "budget": 50},
        format="json",
    )
    assert response.status_code == 200
    (candidate,) = response.json()["candidates"]
    assert candidate["agent_slug"] == "invoice-reader"
    assert candidate["price"] == 40
    assert set(candidate["factors"]) == {
        "success",
        "uncertainty",
        "exploration",
        "prior",
        "global",
        "similarity",
        "cost_per_accepted",
        "net_value",
    }
    assert candidate["factors"]["cost_per_accepted"] == pytest.approx(
        40 / candidate["factors"]["success"]
    )
    assert candidate["evidence"] == "no similar past tasks"
    assert "expected cost per accepted result" in candidate["explanation"]
    assert response.json()["preference"] == 0.6
    cheapest = client.post(
        "/api/v1/agents/match/",
        {"text": "Pull totals out of 300 scanned supplier bills", "budget": 50, "preference": 0},
        format="json",
    )
    assert cheapest.json()["preference"] == 0.0
    health = client.post(
        "/api/v1/agents/match/",
        {"text": "Summarise patient records", "budget": 50, "policy_requirements": ["health_data"]},
        format="json",
    )
    assert health.json()["candidates"] == []
    for bad in (
        {"text": "", "budget": 50},
        {"text": "Anything at all", "budget": -1},
        {"text": "Anything at all", "budget": 50, "policy_requirements": ["gossip"]},
        {"text": "Anything at all", "budget": 50, "preference": 1.5},
    ):
        response = client.post("/api/v1/agents/match/", bad, format="json")
        assert response.status_code == 400
        assert response.json()["error"]["code"] == "invalid"


def test_status_pause_by_owner_and_suspension_by_staff_only(
    client_for, alice: User, staff: User
) -> None:
    client = client_for(alice)
    register(client)
    assert (
        client.post("/api/v1/agents/invoice-reader/status/", {"status": "paused"}).json()["status"]
        == "paused"
    )
    response = client.post("/api/v1/agents/invoice-reader/status/", {"status": "suspended"})
    assert response.status_code == 403
    assert Agent.objects.get(slug="invoice-reader").status == "paused"
    staff_response = client_for(staff).post(
        "/api/v1/agents/invoice-reader/status/", {"status": "suspended"}
    )
    assert staff_response.json()["status"] == "suspended"
    assert (
        client.post("/api/v1/agents/invoice-reader/status/", {"status": "active"}).status_code
        == 403
    )
