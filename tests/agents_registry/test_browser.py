"""Registry pages in a real browser (Playwright driving Debian's Chromium) against a live server:
register an agent, see it become matchable, find it by meaning, and watch the debounced match
preview update while typing."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User

from agents_registry.models import Agent
from agents_registry.services import profile_embed
from tests.agents_registry.conftest import current_profile
from tests.conftest import browser_test, log_in

pytestmark = browser_test


@pytest.fixture
def page(live_server, browser, alice: User):
    return log_in(browser, live_server.url, "alice")


def test_register_find_and_preview_in_a_browser(live_server, page) -> None:
    page.goto(f"{live_server.url}/agents/new/")
    page.fill("#id_name", "Lease translator")
    page.fill(
        "#id_description", "Translates German leases and rental contracts into plain English."
    )
    page.fill("#id_price_per_task", "70")
    page.fill("#id_expected_latency_seconds", "900")
    page.check("input[value=no_health_data]")
    page.click("main form button")
    page.wait_for_url(f"{live_server.url}/agents/lease-translator/keys/")
    page.fill("#id_name", "prod")
    page.click("main button:has-text('Issue key')")
    secret = page.inner_text("#issued-key")
    assert "." in secret

    page.goto(f"{live_server.url}/agents/lease-translator/")
    assert "not matchable yet" in page.inner_text("#profile-status")
    # No worker in this test: embed as the worker would, and the polled badge turns matchable.
    profile_embed(profile_id=current_profile(Agent.objects.get(slug="lease-translator")).pk)
    page.wait_for_selector("#profile-status >> text=matchable (v1)")

    page.goto(f"{live_server.url}/agents/")
    page.fill("#q", "english version of my german rental agreement")
    page.wait_for_selector("#results >> text=Lease translator")
    page.wait_for_url("**/agents/?q=english*")  # the search is in the address bar (hx-push-url)

    page.goto(f"{live_server.url}/agents/match-preview/")
    page.fill("#budget", "100")
    page.fill("#text", "Translate our German office lease into English")
    page.wait_for_selector("#match-preview >> text=Lease translator")
    assert "similarity" in page.inner_text("#match-preview")
    page.fill("#budget", "50")
    page.wait_for_selector("#match-preview >> text=No active agent matches within a budget of 50")
