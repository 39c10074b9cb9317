"""The market's choices learn from outcomes: outcomes carry the task's vector and the decision
that led to them, awards and claims leave replayable records, "tasks for me" ranks by the
agent's chance on each task."""

from __future__ import annotations

import pytest

from agents_registry.embeddings import embedding_model_id
from agents_registry.matching import decision_replay
from agents_registry.models import DecisionRecord, Outcome
from agents_registry.services import outcome_record, profile_create
from marketplace import services
from marketplace.exceptions import NotAllowed
from marketplace.models import Bid
from tests.conftest import participant_of
from tests.marketplace.conftest import make_agent, post, walk_to

pytestmark = pytest.mark.django_db


def test_an_outcome_carries_the_task_vector_price_latency_and_the_award_that_led_to_it(
    poster, bob_agent
) -> None:
    task = walk_to("accepted", poster=poster, worker=bob_agent.participant, price=800)
    outcome = Outcome.objects.get(agent=bob_agent.agent, task_ref=task.ledger_ref)
    assert outcome.outcome == "accepted"
    assert [round(value, 5) for value in outcome.embedding] == [
        round(value, 5) for value in task.embedding
    ]
    assert outcome.embedding_model == task.embedding_model == embedding_model_id()
    assert outcome.cost == 800
    assert outcome.latency_seconds is not None
    # The award by hand left a record of how the market ranked the bids, linked to the outcome.
    record = outcome.decision
    assert record.purpose == "award" and record.chosen_agent_id == bob_agent.agent.pk
    (bid,) = Bid.objects.filter(task=task)
    assert record.parameters["chosen_bid"] == bid.pk
    assert record.parameters["bids"][0]["inputs"]["price"] == 800
    assert decision_replay(record) == [bid.pk]


def test_a_claim_leaves_a_decision_record(poster, bob_agent) -> None:
    task = post(poster, bounty=300)
    services.task_claim(task=task, claimant=bob_agent.participant)
    record = DecisionRecord.objects.get(subject_ref=task.ledger_ref)
    assert record.purpose == "claim"
    assert record.chosen_agent_id == bob_agent.agent.pk
    assert record.parameters["bids"][0]["price"] == 300
    assert isinstance(record.parameters["ranking"]["seed"], int)


def test_a_failed_award_records_nothing(poster, bob_agent, outsider) -> None:
    task = post(poster, bounty=300)
    bid = services.bid_place(
        task=task, bidder=bob_agent.participant, price=200, eta_hours=1, plan="Do it."
    )
    with pytest.raises(NotAllowed):
        services.bid_award(bid=bid, actor=outsider)
    assert not DecisionRecord.objects.filter(subject_ref=task.ledger_ref).exists()


def test_tasks_for_me_puts_first_the_work_the_agent_is_likely_to_pass(poster, bob) -> None:
    from agents_registry import embeddings

    agent = make_agent(bob, "Summariser")
    text = "Summarises quarterly reports into three bullet points."
    profile_create(
        agent=agent.agent,
        actor=participant_of(bob),
        description=text,
        price_per_task=50,
        expected_latency_seconds=60,
        embedding=embeddings.embed_text(text),
        embedding_model=embeddings.embedding_model_id(),
    )
    summary = post(poster, bounty=100, title="Summarise the quarterly report", description=text)
    cake = post(poster, bounty=100, title="Bake a cake", description="Chocolate, for twelve.")
    # Its record: it fails summaries like this one and passes cakes like that one.
    for number, (task, outcome) in enumerate(
        [(summary, "rejected")] * 4 + [(cake, "accepted")] * 4
    ):
        outcome_record(
            agent_id=agent.agent.pk,
            profile_id=None,
            task_ref=f"task:{90_000 + number}",
            outcome=outcome,
            cost=50,
            latency_seconds=30,
            embedding=task.embedding,
            embedding_model=task.embedding_model,
        )
    page = agent.client().get("/api/v1/tasks/for-me/").json()
    assert [item["id"] for item in page["results"]] == [cake.pk, summary.pk]
    first, second = page["results"]
    assert first["similarity"] < second["similarity"]  # nearer in text, but it fails those
    assert first["success_estimate"] > 0.5 > second["success_estimate"]
    assert first["evidence"] == "accepted 4 of 4 similar tasks"
    assert second["evidence"] == "accepted 0 of 4 similar tasks"
