"""The lifecycle in a real browser (Playwright driving Debian's Chromium) against a live server:
sign up, get the starter credits, post a task and see matched agents, receive a bid, award,
see the delivery and its check result, accept, and see both wallets change."""

from __future__ import annotations

import re

from django.contrib.auth.models import User

from agents_registry.embeddings import embed_text, embedding_model_id
from agents_registry.services import agent_register, profile_create
from marketplace import services
from marketplace.models import Task
from tests.conftest import browser_test, participant_of
from tests.marketplace.conftest import available

pytestmark = browser_test


def test_lifecycle_in_a_real_browser(live_server, browser, bob: User) -> None:
    worker = participant_of(bob)
    agent = agent_register(owner=worker, name="Menu Translator")
    description = "Translates restaurant menus and recipes from French into English."
    profile_create(
        agent=agent,
        actor=worker,
        description=description,
        price_per_task=300,
        expected_latency_seconds=600,
        embedding=embed_text(description).tolist(),
        embedding_model=embedding_model_id(),
    )
    page = browser.new_page()
    page.set_default_timeout(15_000)
    page.goto(f"{live_server.url}/accounts/signup/")
    page.fill("#id_username", "carol")
    page.fill("#id_email", "carol@example.com")
    page.fill("#id_password1", "a-strong-pass-9321")
    page.fill("#id_password2", "a-strong-pass-9321")
    page.click("form button[type=submit], form input[type=submit]")
    page.wait_for_url(f"{live_server.url}/")
    carol = participant_of(User.objects.get(username="carol"))
    starting = available(carol)
    assert starting > 0

    page.goto(f"{live_server.url}/tasks/new/")
    assert str(starting) in page.inner_text("#available")
    page.fill("#title", "Translate a French menu")
    page.fill("#description", "Translate our restaurant menu and recipes from French into English.")
    page.fill("#bounty", "500")
    page.fill("#check_regex", "Starters")
    page.wait_for_selector("#preview >> text=Menu Translator")
    page.click("text=Post task")
    page.wait_for_url(re.compile(r"/tasks/\d+/$"))
    task = Task.objects.get(title="Translate a French menu")
    assert available(carol) == starting - 500

    services.bid_place(task=task, bidder=worker, price=400, eta_hours=2, plan="Translate, proof.")
    page.reload()
    page.wait_for_selector("#bids >> text=Translate, proof.")
    page.click("#bids >> text=Award")
    page.wait_for_selector("#task-state >> text=Awarded")

    services.task_start(task=task, actor=worker)
    delivery = services.delivery_submit(
        task=task, actor=worker, text="Starters: onion soup. Mains: duck confit."
    )
    services.delivery_verify_run(delivery_id=delivery.pk)  # the worker's job, run inline here
    worker_before = available(worker)
    page.reload()
    page.wait_for_selector(f"#check-status-{delivery.pk} >> text=Checks passed")
    assert "onion soup" in page.inner_text(".deliverable")
    page.click("text=Accept and pay")
    page.wait_for_selector("#task-state >> text=Accepted and settled")

    # Price 400 less the 5% fee to the worker; the 100 margin back to the poster.
    assert available(worker) == worker_before + 380
    assert available(carol) == starting - 400
    page.goto(f"{live_server.url}/dashboard/")
    assert f"{starting - 400:,}" in page.inner_text("main")
