"""The registry's pages: directory search, profile with versions, forms, keys, match preview,
and re-embedding by a real worker after commit."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import User

from agents_registry.models import Agent, ApiKey, CapabilityProfile
from agents_registry.services import outcome_record
from tests.agents_registry.conftest import current_profile, make_agent
from tests.conftest import wait_until

pytestmark = pytest.mark.django_db

FORM = {
    "name": "Lease translator",
    "runtime": "external",
    "concurrency_limit": 3,
    "description": "Translates German leases and rental contracts into plain English.",
    "tags": "translation, german, legal",
    "price_per_task": 70,
    "expected_latency_seconds": 900,
}


def test_register_edit_and_history_with_diffs(client_for, alice: User) -> None:
    client = client_for(alice)
    response = client.post("/agents/new/", FORM)
    assert response.status_code == 302
    agent = Agent.objects.get(slug="lease-translator")
    assert response["Location"] == "/agents/lease-translator/keys/"
    assert current_profile(agent).tags == ["translation", "german", "legal"]
    page = client.get("/agents/lease-translator/").content.decode()
    assert "not matchable yet" in page
    assert 'hx-trigger="every 2s"' in page

    response = client.post("/agents/lease-translator/edit/", {**FORM, "price_per_task": 55})
    assert response.status_code == 302
    page = client.get("/agents/lease-translator/").content.decode()
    assert "v2" in page and "price per task" in page and "70 → 55" in page


def test_bad_form_input_shows_errors_and_changes_nothing(client_for, alice: User) -> None:
    client = client_for(alice)
    response = client.post("/agents/new/", {**FORM, "description": "short"})
    assert response.status_code == 200
    assert "at least 20 characters" in response.content.decode()
    response = client.post("/agents/new/", {**FORM, "price_per_task": -3})
    assert response.status_code == 200
    assert Agent.objects.count() == 0


def test_outsiders_cannot_edit_or_see_keys(client_for, alice: User, mallory: User) -> None:
    make_agent(alice, "Mine", "Translates German leases and rental contracts into English.")
    client = client_for(mallory)
    assert client.get("/agents/mine/edit/").status_code == 403
    assert client.get("/agents/mine/keys/").status_code == 403
    assert client.post("/agents/mine/edit/", {**FORM}).status_code == 403
    assert CapabilityProfile.objects.count() == 1


def test_issuing_a_key_shows_the_secret_once(client_for, alice: User) -> None:
    make_agent(alice, "Mine", "Translates German leases and rental contracts into English.")
    client = client_for(alice)
    response = client.post("/agents/mine/keys/", {"name": "prod", "scopes": ["tasks:read"]})
    key = ApiKey.objects.get()
    html = response.content.decode()
    assert "shown only once" in html and f"{key.prefix}." in html
    assert response["Cache-Control"] == "no-store"
    assert f"{key.prefix}." not in client.get("/agents/mine/keys/").content.decode()


def test_directory_search_and_profile_page(client_for, alice: User) -> None:
    make_agent(alice, "Baker", "Designs pastry menus and bakes wedding cakes for bakeries.")
    translator = make_agent(alice, "Translator", "Translates German contracts into English.")
    outcome_record(
        agent_id=translator.pk,
        profile_id=current_profile(translator).pk,
        task_ref="task:1",
        outcome="accepted",
        cost=120,
        latency_seconds=300,
    )
    client = client_for(alice)
    html = client.get("/agents/?q=english version of a german agreement").content.decode()
    assert html.index("Translator") < html.index("Baker")
    partial = client.get("/agents/?q=cakes", HTTP_HX_REQUEST="true").content.decode()
    assert "<html" not in partial and partial.index("Baker") < partial.index("Translator")
    page = client.get("/agents/translator/").content.decode()
    assert "task:1" in page and "Accepted" in page and "120" in page
    outcomes = client.get("/api/v1/agents/translator/outcomes/").json()
    assert outcomes["count"] == 1
    assert outcomes["results"][0] == {
        "task_id": 1,
        "outcome": "accepted",
        "profile_version": 1,
        "cost": 120,
        "latency_seconds": 300.0,
        "created_at": outcomes["results"][0]["created_at"],
    }
    badge = client.get("/agents/translator/profile-status/").content.decode()
    assert "<html" not in badge and "matchable (v1)" in badge


def test_match_preview_partial_shows_factors_and_cost(client_for, alice: User) -> None:
    make_agent(alice, "Translator", "Translates German contracts into English.", price=80)
    client = client_for(alice)
    partial = client.get(
        "/agents/match-preview/",
        {"text": "Translate my German employment contract", "budget": "100"},
        HTTP_HX_REQUEST="true",
    ).content.decode()
    assert "Translator" in partial and "similarity" in partial and ">80<" in partial
    cheap = client.get(
        "/agents/match-preview/",
        {"text": "Translate my German contract", "budget": "50"},
        HTTP_HX_REQUEST="true",
    ).content.decode()
    assert "No active agent matches within a budget of 50" in cheap
    bad = client.get("/agents/match-preview/", {"text": "Translate it please", "budget": "ten"})
    assert "whole number" in bad.content.decode()


def test_match_preview_keeps_its_seed_and_says_when_nothing_matches_well(
    client_for, alice: User
) -> None:
    make_agent(alice, "Translator", "Translates German contracts into English.", price=80)
    make_agent(alice, "Reviewer", "Reviews German contracts for risky clauses.", price=60)
    client = client_for(alice)
    page = client.get("/agents/match-preview/").content.decode()
    assert re.search(r'name="seed" value="\d+"', page)  # drawn once, sent back while typing
    query = {"text": "Translate my German employment contract", "budget": "100", "seed": "7"}
    first = client.get("/agents/match-preview/", query, HTTP_HX_REQUEST="true").content.decode()
    again = client.get("/agents/match-preview/", query, HTTP_HX_REQUEST="true").content.decode()
    assert first == again and "How agents are ranked" in first
    # Outside agents (not hosted) never bid automatically, and the page says why.
    assert 'data-will-bid="yes"' not in first and "its owner decides whether to bid" in first
    far = client.get(
        "/agents/match-preview/",
        {"text": "Fix the leaking roof of my garden shed on Saturday", "budget": "100"},
        HTTP_HX_REQUEST="true",
    ).content.decode()
    assert "No agent matches this description well" in far


@pytest.mark.django_db(transaction=True)
def test_a_real_worker_embeds_a_new_profile_after_commit(
    celery_worker_process: object, client_for, alice: User
) -> None:
    response = client_for(alice).post(
        "/api/v1/agents/",
        {
            "name": "Worker embedded",
            "profile": {
                "description": "Writes pytest suites for Django apps with fixtures and mocks.",
                "price_per_task": 10,
                "expected_latency_seconds": 60,
            },
        },
        format="json",
    )
    assert response.json()["current_profile"]["is_matchable"] is False
    agent = Agent.objects.get(slug="worker-embedded")
    wait_until(lambda: current_profile(agent).embedding is not None, timeout=60)
    assert current_profile(agent).embedding_model == "minilm-l6-v2/numpy-1"


def test_staff_suspends_through_the_admin_and_the_agent_vanishes_from_matching(
    client_for, staff: User, alice: User
) -> None:
    from django.contrib.auth.models import Permission

    from agents_registry.selectors import match_agents

    staff.user_permissions.add(
        *Permission.objects.filter(
            content_type__app_label="agents_registry",
            codename__in=["view_agent", "change_agent", "view_decisionrecord", "view_skill"],
        )
    )
    agent = make_agent(alice, "Rogue", "Translates German contracts into English.")
    assert match_agents(text="Translate a German contract", budget=500).candidates
    response = client_for(staff).post(
        "/admin/agents_registry/agent/",
        {"action": "suspend", "_selected_action": [agent.pk]},
    )
    assert response.status_code == 302
    agent.refresh_from_db()
    assert agent.status == "suspended"
    assert match_agents(text="Translate a German contract", budget=500).candidates == []
    for path in ("/admin/agents_registry/decisionrecord/", "/admin/agents_registry/skill/"):
        assert client_for(staff).get(path).status_code == 200
