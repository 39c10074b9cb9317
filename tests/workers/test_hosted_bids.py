"""Hosted agents bid on the new tasks that match them, once, at their asking price."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import User

from agents_registry.models import Agent
from agents_registry.services import agent_set_status
from agents_registry.services_profiles import profile_embed
from marketplace import services as market_services
from marketplace.models import Bid, Task
from tests.conftest import participant_of, wait_until
from workers.services import builtin_agents_ensure, hosted_bids_place


@pytest.fixture
def builtin_agents(staff: User, settings: object) -> dict[str, Agent]:
    # The similarity floor is set for the default model (MiniLM), as the real worker uses.
    settings.EMBEDDING_BACKEND = "minilm"
    agents = builtin_agents_ensure(owner=participant_of(staff))
    for agent in agents:  # embed now: a profile is matchable only with its vector
        profile_embed(profile_id=agent.profiles.get(is_current=True).pk)
    return {agent.slug: agent for agent in agents}


def _post(user: User, title: str, description: str, bounty: int = 100):
    return market_services.task_post(
        poster=participant_of(user), title=title, description=description, bounty=bounty
    )


def test_matching_hosted_agents_bid_once_and_unrelated_ones_do_not(
    builtin_agents: dict[str, Agent], alice: User
) -> None:
    task = _post(
        alice,
        "Convert a CSV export of orders to JSON",
        "Turn this CSV into a JSON list of records and validate the email column: "
        "order_id,email,total\n1,a@example.com,3.50",
    )
    bids = hosted_bids_place(task_id=task.pk)
    bidders = {bid.bidder.agent.slug for bid in bids}
    assert "builtin-json-csv" in bidders
    assert "builtin-summarizer" not in bidders
    converter = next(bid for bid in bids if bid.bidder.agent.slug == "builtin-json-csv")
    assert converter.price == converter.bidder.agent.profiles.get(is_current=True).price_per_task
    assert converter.plan.startswith("I will do this as my profile says: Converts CSV")

    # Twice: no second bid from anyone.
    assert hosted_bids_place(task_id=task.pk) == []
    assert Bid.objects.filter(task=task).count() == len(bids)


def test_a_paused_agent_and_an_opted_out_agent_do_not_bid(
    builtin_agents: dict[str, Agent], alice: User, staff: User
) -> None:
    converter = builtin_agents["builtin-json-csv"]
    agent_set_status(agent=converter, actor=participant_of(staff), status="paused", is_staff=True)
    task = _post(alice, "CSV to JSON", "Convert CSV rows to JSON records and validate them.")
    assert "builtin-json-csv" not in {
        bid.bidder.agent.slug for bid in hosted_bids_place(task_id=task.pk)
    }

    stats = builtin_agents["builtin-text-stats"]
    stats.runtime_config = {**stats.runtime_config, "auto_bid": False}
    stats.save(update_fields=["runtime_config"])
    task = _post(alice, "Keywords", "Count the words and extract the keywords of this text.")
    assert "builtin-text-stats" not in {
        bid.bidder.agent.slug for bid in hosted_bids_place(task_id=task.pk)
    }


@pytest.mark.django_db(transaction=True)
def test_posting_a_task_brings_bids_from_a_real_worker(
    celery_worker_process: object, builtin_agents: dict[str, Agent], alice: User
) -> None:
    task = _post(
        alice,
        "Summarise a support report",
        "Summarise this report in three sentences: ticket volume rose, password resets were "
        "slow, and refunds fell after the billing page changed.",
    )
    wait_until(lambda: Bid.objects.filter(task=task).exists(), timeout=30)
    assert Bid.objects.filter(task=task, bidder__agent__runtime="builtin").exists()


def test_a_task_posted_while_the_fitting_agents_were_busy_is_offered_again_once_they_are_free(
    builtin_agents: dict[str, Agent], alice: User
) -> None:
    from datetime import timedelta

    from django.utils import timezone

    from workers.services import hosted_bids_retry

    summarizer = builtin_agents["builtin-summarizer"]
    Agent.objects.filter(pk=summarizer.pk).update(active_tasks=summarizer.concurrency_limit)
    task = _post(
        alice,
        "Summarise a support report",
        "Summarise this report in three sentences: ticket volume rose, password resets were "
        "slow, and refunds fell after the billing page changed.",
    )
    assert "builtin-summarizer" not in {
        bid.bidder.agent.slug for bid in hosted_bids_place(task_id=task.pk)
    }
    later = timezone.now() + timedelta(minutes=1)
    assert hosted_bids_retry(now=later) == 0  # still busy: nothing, and nothing lost

    Agent.objects.filter(pk=summarizer.pk).update(active_tasks=0)  # a delivery was accepted
    assert hosted_bids_retry(now=later) >= 1
    assert Bid.objects.filter(task=task, bidder=summarizer.participant).count() == 1
    assert hosted_bids_retry(now=later) == 0  # offered once: it has a hosted bid now
    # Past the retry window, an unbid task is left alone.
    other = _post(alice, "Summarise another report", "Summarise this text in two sentences.")
    Agent.objects.filter(runtime="builtin").update(active_tasks=100)
    hosted_bids_place(task_id=other.pk)
    Agent.objects.filter(runtime="builtin").update(active_tasks=0)
    assert hosted_bids_retry(now=later + timedelta(hours=25)) == 0
    assert not Bid.objects.filter(task=other).exists()


CSV_TASK = {
    "title": "Convert a CSV export of orders to JSON",
    "description": "Turn this CSV into a JSON list of records and validate the email column: "
    "order_id,email,total\n1,a@example.com,3.50",
    "bounty": "100",
}


def _preview_rows(client, **fields) -> list[tuple[str, str]]:
    """(agent slug, will bid yes/no) per row of the post page's preview, in rank order."""
    html = client.get("/tasks/new/preview/", fields, HTTP_HX_REQUEST="true").content.decode()
    return re.findall(r'data-agent="([^"]+)" data-will-bid="(yes|no)"', html)


def test_the_preview_promises_exactly_the_bids_that_posting_brings(
    builtin_agents: dict[str, Agent], alice: User, client_for
) -> None:
    client = client_for(alice)
    fields = {**CSV_TASK, "form_key": "draft-1"}
    rows = _preview_rows(client, **fields)
    promised = {slug for slug, will_bid in rows if will_bid == "yes"}
    assert "builtin-json-csv" in promised
    assert ("builtin-summarizer", "no") in rows  # listed, and said not to bid
    html = client.get("/tasks/new/preview/", fields, HTTP_HX_REQUEST="true").content.decode()
    assert "below the 0.30 that hosted agents need to bid" in html
    assert "How agents are ranked" in html and "Cost per accepted" in html

    posted = client.post("/tasks/new/", fields)
    assert posted.status_code == 302
    task = Task.objects.get(idempotency_key="draft-1")
    bids = hosted_bids_place(task_id=task.pk)
    assert {bid.bidder.agent.slug for bid in bids} == promised


def test_one_draft_keeps_its_order_while_another_draws_anew(
    builtin_agents: dict[str, Agent], alice: User, client_for
) -> None:
    client = client_for(alice)

    def exploration(form_key: str) -> str:
        html = client.get(
            "/tasks/new/preview/", {**CSV_TASK, "form_key": form_key}, HTTP_HX_REQUEST="true"
        ).content.decode()
        return " ".join(re.findall(r"exploration (-?[0-9.]+)", html))

    first = exploration("draft-a")
    assert first and exploration("draft-a") == first  # the same draft: the same draw
    assert _preview_rows(client, **CSV_TASK, form_key="draft-a") == _preview_rows(
        client, **CSV_TASK, form_key="draft-a"
    )
    assert any(exploration(f"draft-{n}") != first for n in range(5))  # other drafts redraw


def test_a_description_no_agent_fits_says_so_and_promises_no_bid(
    builtin_agents: dict[str, Agent], alice: User, client_for
) -> None:
    client = client_for(alice)
    fields = {
        "title": "Fix the leaking roof of my garden shed",
        "description": "Bring a ladder and new roofing felt on Saturday morning.",
        "bounty": "100",
        "form_key": "roof",
    }
    html = client.get("/tasks/new/preview/", fields, HTTP_HX_REQUEST="true").content.decode()
    assert "No agent matches this description well" in html
    assert "hosted agents bid only above similarity 0.30" in html
    assert 'data-will-bid="yes"' not in html
    client.post("/tasks/new/", fields)
    assert hosted_bids_place(task_id=Task.objects.get(idempotency_key="roof").pk) == []
