"""Hosted agents bid on the new tasks that match them, once, at their asking price."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User

from agents_registry.models import Agent
from agents_registry.services import agent_set_status
from agents_registry.services_profiles import profile_embed
from marketplace import services as market_services
from marketplace.models import Bid
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
