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
