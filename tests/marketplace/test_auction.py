"""The automatic award: after a number of bids or when the bidding window closes, the best bid by
the auction's score wins (the matcher's view of the bidder, the price, how close the plan is to
plans that won and were accepted before, the ETA), with the decision recorded."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from agents_registry.matching import decision_replay
from agents_registry.models import DecisionRecord
from marketplace import services
from marketplace.models import Bid, Task, TaskEvent
from tests.conftest import participant_of
from tests.marketplace.conftest import fund, make_agent, post


@pytest.fixture(autouse=True)
def _no_exploration(settings) -> None:
    # New bidders' posteriors are wide: with the Thompson draw on, the dearer one wins now and
    # then (the award's seed is random), and these tests are about the rest of the score.
    settings.MATCH_EXPLORATION = 0.0


def _bid(agent, task: Task, *, price: int, plan: str, eta_hours: int = 2) -> dict:
    response = agent.client().post(
        f"/api/v1/tasks/{task.pk}/bids/",
        {"price": price, "eta_hours": eta_hours, "plan": plan},
        format="json",
    )
    assert response.status_code == 201, response.content
    return response.json()


def test_the_nth_bid_awards_the_best_and_records_the_decision(alice: User, bob: User) -> None:
    poster = participant_of(alice)
    fund(poster, 5_000)
    task = post(poster, bounty=1_000, title="Summarise a report", auto_award={"after_bids": 2})
    dear, cheap = make_agent(bob, "Dear"), make_agent(bob, "Cheap")
    first = _bid(dear, task, price=900, plan="Read the report, then summarise it.")
    assert first["status"] == "active"
    # The second bid is the n-th: the same request awards the task.
    second = _bid(cheap, task, price=300, plan="Read the report, then summarise it.")
    assert second["status"] == "awarded"

    task.refresh_from_db()
    assert task.state == Task.State.AWARDED and task.assignee_id == cheap.participant.pk
    bids = {bid.bidder_id: bid for bid in Bid.objects.filter(task=task)}
    assert bids[dear.participant.pk].status == Bid.Status.LOST
    assert bids[cheap.participant.pk].score > bids[dear.participant.pk].score
    # Plans are embedded when the auction scores them, not when the bids arrive.
    assert all(bid.plan_embedding is not None for bid in bids.values())

    record = DecisionRecord.objects.get(subject_ref=task.ledger_ref, purpose="auto_award")
    assert record.chosen_agent_id == cheap.agent.pk
    assert record.parameters["chosen_bid"] == second["id"]
    assert {entry["bid"] for entry in record.parameters["bids"]} == {first["id"], second["id"]}
    assert set(record.weights) <= set(record.parameters["bids"][0]["factors"])
    # The ranking replays from the stored inputs (each agent bidder's estimate and the seed).
    assert decision_replay(record) == [entry["bid"] for entry in record.parameters["bids"]]
    assert record.parameters["bids"][0]["inputs"]["agent_id"] == cheap.agent.pk
    awarded = TaskEvent.objects.get(task=task, kind="awarded")
    assert awarded.data["how"] == "automatic" and awarded.actor_id is None


def test_the_window_awards_once_when_it_closes_and_skips_a_task_without_bids(
    alice: User, bob: User
) -> None:
    poster = participant_of(alice)
    fund(poster, 5_000)
    task = post(poster, bounty=500, title="Label images", auto_award={"window_hours": 1})
    empty = post(poster, bounty=500, title="Nobody bids", auto_award={"window_hours": 1})
    agent = make_agent(bob, "Labeller")
    _bid(agent, task, price=400, plan="Label them by hand.")
    assert services.tasks_auto_award_due() == 0  # the window is still open
    assert Task.objects.get(pk=task.pk).state == Task.State.OPEN

    Task.objects.filter(pk__in=[task.pk, empty.pk]).update(
        bidding_closes_at=timezone.now() - timedelta(seconds=1)
    )
    assert services.tasks_auto_award_due() == 1
    assert services.tasks_auto_award_due() == 0  # idempotent: nothing is awarded twice
    assert Task.objects.get(pk=task.pk).assignee_id == agent.participant.pk
    assert DecisionRecord.objects.filter(subject_ref=task.ledger_ref).count() == 1
    # No bids: the task stays open for awards by hand, and says why.
    empty.refresh_from_db()
    assert empty.state == Task.State.OPEN and empty.bidding_closes_at is None
    assert TaskEvent.objects.filter(task=empty, kind="auto_award_skipped").exists()


def test_a_plan_like_one_that_won_and_was_accepted_scores_higher(alice: User, bob: User) -> None:
    poster = participant_of(alice)
    fund(poster, 10_000)
    veteran = make_agent(bob, "Veteran")
    earlier = post(poster, bounty=800, title="Quarterly report")
    plan = "Extract the tables from the quarterly report, then write a three-bullet summary."
    won = services.bid_place(
        task=earlier, bidder=veteran.participant, price=600, eta_hours=2, plan=plan
    )
    services.bid_award(bid=won, actor=poster)  # embeds the winner's plan
    services.task_start(task=earlier, actor=veteran.participant)
    delivery = services.delivery_submit(
        task=earlier, actor=veteran.participant, text="Three bullets."
    )
    services.delivery_accept(delivery=delivery, actor=poster)

    task = post(poster, bounty=800, title="Annual report", auto_award={"after_bids": 2})
    similar, other = make_agent(bob, "Similar"), make_agent(bob, "Other")
    _bid(other, task, price=600, plan="Translate the annual report into French.")
    _bid(similar, task, price=600, plan=plan.replace("quarterly", "annual"))
    task.refresh_from_db()
    assert task.assignee_id == similar.participant.pk
    record = DecisionRecord.objects.get(subject_ref=task.ledger_ref, purpose="auto_award")
    memory = {
        entry["bidder"]: entry["factors"]["plan_memory"] for entry in record.parameters["bids"]
    }
    assert memory[similar.participant.pk] > memory[other.participant.pk]
