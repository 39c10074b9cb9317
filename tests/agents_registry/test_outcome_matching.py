"""The matcher learns who succeeds at what: per-task estimates from outcomes on similar tasks,
cost of pass, posterior sampling, replayable decision records."""

from __future__ import annotations

import functools
import itertools
import math

import pytest

from agents_registry.embeddings import embed_text, embedding_model_id
from agents_registry.matching import decision_replay
from agents_registry.models import DecisionRecord, Outcome
from agents_registry.selectors import estimates_for_agents, match_agents
from agents_registry.services import decision_record_create, outcome_record

pytestmark = pytest.mark.django_db

GENERIC = "A general assistant that takes on many kinds of written work for clients."
NO_EXPLORATION = {"exploration": 0.0}

TRANSLATION_TASKS = [
    "Translate a German commercial lease contract into English",
    "Translate this French employment agreement into English, keeping clause numbers",
    "Translate a Spanish supplier contract into English for our legal team",
    "Render an Italian non-disclosure agreement in plain English",
    "Translate the German terms and conditions of our web shop into English",
    "Translate a Dutch rental agreement for an apartment into English",
    "Translate a Portuguese distribution contract into English",
    "Translate the German articles of association of a GmbH into English",
]
SQL_TASKS = [
    "Write a PostgreSQL query that reports monthly revenue per customer",
    "Optimise a slow SQL join between orders and invoices with the right indexes",
    "Write SQL that finds duplicate customer records by email address",
    "Design a PostgreSQL schema for a library's loans and members",
    "Write a window-function query that ranks products by weekly sales",
    "Fix a SQL query that double counts refunds in the revenue report",
    "Write a recursive SQL query over an employee management hierarchy",
    "Write a SQL migration that splits a full name column into first and last name",
]


@functools.cache
def vector(text: str):
    return embed_text(text)


def slugs(result) -> list[str]:
    return [candidate.agent.slug for candidate in result.candidates]


_task_numbers = itertools.count(1)


def record(agent, text: str, outcome: str, *, cost: int = 50) -> Outcome:
    return outcome_record(
        agent_id=agent.pk,
        profile_id=None,
        task_ref=f"task:{next(_task_numbers) + 10_000}",
        outcome=outcome,
        cost=cost,
        latency_seconds=60,
        embedding=vector(text),
        embedding_model=embedding_model_id(),
    )


def test_an_agent_is_first_for_the_kind_it_succeeds_at_and_not_for_the_other(
    agent_factory,
) -> None:
    # Equal profiles and prices: only the outcomes on similar tasks tell them apart.
    linguist = agent_factory("Linguist", GENERIC, price=50)
    coder = agent_factory("Coder", GENERIC, price=50)
    for text in TRANSLATION_TASKS[:6]:
        record(linguist, text, "accepted")
        record(coder, text, "rejected")
    for text in SQL_TASKS[:6]:
        record(linguist, text, "rejected")
        record(coder, text, "accepted")
    translation = match_agents(
        embedding=vector(TRANSLATION_TASKS[7]), budget=100, weights=NO_EXPLORATION
    )
    sql = match_agents(embedding=vector(SQL_TASKS[7]), budget=100, weights=NO_EXPLORATION)
    assert slugs(translation) == ["linguist", "coder"]
    assert slugs(sql) == ["coder", "linguist"]
    # The same global record (6 of 12 accepted each), opposite estimates per kind of task.
    best, worst = translation.candidates
    assert best.factors["global"] == pytest.approx(worst.factors["global"])
    assert best.factors["success"] > 0.6 > 0.4 > worst.factors["success"]
    # The explanation names the evidence and the expected cost per accepted result.
    assert best.estimate.inputs.evidence.similar_total >= 3
    assert best.evidence.startswith("accepted ")
    assert best.evidence.endswith(" similar tasks")
    assert best.factors["cost_per_accepted"] == pytest.approx(50 / best.factors["success"])
    assert "expected cost per accepted result" in best.explanation
    # The estimate of given agents (the bidders of an auction) agrees with the match's.
    literal = "[" + ",".join(f"{v:.7g}" for v in vector(TRANSLATION_TASKS[7])) + "]"
    found = estimates_for_agents(
        vector_literal=literal, model=embedding_model_id(), agent_ids=[linguist.pk, coder.pk]
    )
    assert found[linguist.pk].mean == pytest.approx(best.factors["success"], abs=1e-4)
    assert found[coder.pk].mean == pytest.approx(worst.factors["success"], abs=1e-4)


def test_past_work_counts_fully_within_the_distance_of_the_nearest_past_tasks(
    agent_factory, settings
) -> None:
    # The radius is the distance of the task's MATCH_NEIGHBOURHOOD-th nearest past task (at most
    # MATCH_KERNEL_RADIUS), in the match and in a bidder's estimate alike.
    settings.MATCH_NEIGHBOURHOOD = 3
    linguist = agent_factory("Linguist", GENERIC, price=50)
    past = [*TRANSLATION_TASKS[:6], *SQL_TASKS[:6]]
    for text in past:
        record(linguist, text, "accepted" if text in TRANSLATION_TASKS else "rejected")
    query = vector(TRANSLATION_TASKS[7])
    distances = sorted(1.0 - float(vector(text) @ query) for text in past)
    radius = min(distances[2], settings.MATCH_KERNEL_RADIUS)
    assert radius < settings.MATCH_KERNEL_RADIUS  # the setting alone would count more fully
    expected = sum(
        min(1.0, math.exp(-max(0.0, distance - radius) / settings.MATCH_KERNEL_WIDTH))
        for distance in distances
    )
    result = match_agents(embedding=query, budget=100, weights=NO_EXPLORATION)
    assert result.candidates[0].estimate.inputs.evidence.weighted_total == pytest.approx(
        expected, rel=1e-3
    )
    literal = "[" + ",".join(f"{v:.7g}" for v in query) + "]"
    found = estimates_for_agents(
        vector_literal=literal, model=embedding_model_id(), agent_ids=[linguist.pk]
    )
    assert found[linguist.pk].inputs.evidence.weighted_total == pytest.approx(expected, rel=1e-3)


def test_ranking_changes_when_outcomes_change(agent_factory) -> None:
    first = agent_factory("First", GENERIC, price=50)
    agent_factory("Second", GENERIC, price=50)
    task = vector(TRANSLATION_TASKS[0])
    # No outcomes: equal estimates, the lower profile id first.
    assert slugs(match_agents(embedding=task, budget=100, weights=NO_EXPLORATION)) == [
        "first",
        "second",
    ]
    for text in TRANSLATION_TASKS[1:5]:
        record(first, text, "rejected")
    assert slugs(match_agents(embedding=task, budget=100, weights=NO_EXPLORATION)) == [
        "second",
        "first",
    ]


def test_a_decision_record_replays_to_the_same_ranking_from_its_inputs(agent_factory) -> None:
    agents = [agent_factory(f"Agent {index}", GENERIC, price=30 + 10 * index) for index in range(4)]
    for agent, outcome in zip(
        agents, ("accepted", "rejected", "accepted", "timed_out"), strict=True
    ):
        for text in TRANSLATION_TASKS[:3]:
            record(agent, text, outcome)
    result = match_agents(embedding=vector(TRANSLATION_TASKS[5]), budget=100)  # seeded, recorded
    ranked = [candidate.agent.pk for candidate in result.candidates]
    decision = decision_record_create(
        subject_ref="task:1", purpose="shortlist", result=result, chosen_agent_id=ranked[0]
    )
    # Outcomes that come later change a new ranking, never the replay of this one.
    for text in TRANSLATION_TASKS[3:]:
        record(agents[0], text, "rejected")
        record(agents[1], text, "accepted")
    decision = DecisionRecord.objects.get(pk=decision.pk)
    assert decision.parameters["seed"] == result.parameters["seed"]
    assert decision_replay(decision) == ranked
    rows = list(decision.candidates.order_by("rank"))
    assert [row.agent_id for row in rows] == ranked
    assert rows[0].inputs["evidence"]["similar_total"] >= 1


def test_an_outcome_links_to_the_decision_that_chose_its_agent(agent_factory) -> None:
    agent = agent_factory("Chosen", GENERIC, price=50)
    result = match_agents(embedding=vector(SQL_TASKS[0]), budget=100)
    decision = decision_record_create(
        subject_ref="task:77", purpose="claim", result=result, chosen_agent_id=agent.pk
    )
    outcome = outcome_record(
        agent_id=agent.pk,
        profile_id=None,
        task_ref="task:77",
        outcome="accepted",
        cost=50,
        latency_seconds=5,
        embedding=vector(SQL_TASKS[0]),
        embedding_model=embedding_model_id(),
    )
    assert outcome.decision_id == decision.pk
    assert outcome.embedding is not None and outcome.embedding_model == embedding_model_id()


def test_a_new_agent_is_tried_and_stops_being_tried_where_it_keeps_failing(agent_factory) -> None:
    veteran = agent_factory("Veteran", GENERIC, price=50)
    newcomer = agent_factory("Newcomer", GENERIC, price=50)
    # The veteran passes about two thirds of translations and of SQL work.
    for index, text in enumerate(TRANSLATION_TASKS[:6] + SQL_TASKS[:6]):
        record(veteran, text, "rejected" if index % 3 == 2 else "accepted")
    tried: list[bool] = []
    for round_number in range(80):
        text = TRANSLATION_TASKS[round_number % len(TRANSLATION_TASKS)]
        ranking = slugs(match_agents(embedding=vector(text), budget=100, seed=round_number))
        chosen = ranking[0]
        tried.append(chosen == "newcomer")
        # The newcomer fails every translation it gets; the veteran keeps its record.
        record(
            newcomer if chosen == "newcomer" else veteran,
            text,
            ("rejected" if chosen == "newcomer" or round_number % 3 == 2 else "accepted"),
        )
    assert any(tried[:30]), "a new agent gets tried"
    assert sum(tried[-30:]) <= 2, "and stops being tried where it keeps failing"
    # Its failures lowered its chance on translations below what its profile alone says; on SQL
    # work, where it has not failed, it has no similar evidence against it.
    literal = {
        kind: "[" + ",".join(f"{v:.7g}" for v in vector(text)) + "]"
        for kind, text in (("translation", TRANSLATION_TASKS[7]), ("sql", SQL_TASKS[7]))
    }
    chance = {
        kind: estimates_for_agents(
            vector_literal=value, model=embedding_model_id(), agent_ids=[newcomer.pk]
        )[newcomer.pk]
        for kind, value in literal.items()
    }
    assert chance["translation"].inputs.evidence.similar_total >= 1
    assert chance["translation"].mean < chance["translation"].prior
    assert chance["sql"].inputs.evidence.similar_total == 0


def test_the_learning_pages_plot_calibration_cost_and_regret_for_staff_and_owners(
    agent_factory, client, alice, bob, staff
) -> None:
    chosen = agent_factory("Chosen", GENERIC, price=50)
    agent_factory("Other", GENERIC, price=80)
    for number, text in enumerate(TRANSLATION_TASKS[:4]):
        result = match_agents(embedding=vector(text), budget=100, seed=number)
        decision_record_create(
            subject_ref=f"task:{500 + number}",
            purpose="claim",
            result=result,
            chosen_agent_id=chosen.pk,
        )
        outcome_record(
            agent_id=chosen.pk,
            profile_id=None,
            task_ref=f"task:{500 + number}",
            outcome="accepted" if number % 2 else "rejected",
            cost=50,
            latency_seconds=10,
            embedding=vector(text),
            embedding_model=embedding_model_id(),
        )
    client.force_login(staff)
    page = client.get("/agents/learning/")
    assert page.status_code == 200
    body = page.content.decode()
    assert body.count("<svg") == 3 and "Calibration" in body and "regret" in body
    assert page.context["report"]["outcomes"] == 4
    assert page.context["report"]["accepted"] == 2
    # Cost per accepted result: 4 outcomes at 50 for 2 accepted.
    assert page.context["report"]["charts"][1].points == [(0, 100.0)]
    client.force_login(alice)  # the owner of the agents (agent_factory's default)
    assert client.get("/agents/learning/").status_code == 403
    assert client.get(f"/agents/{chosen.slug}/learning/").status_code == 200
    client.force_login(bob)
    assert client.get(f"/agents/{chosen.slug}/learning/").status_code == 403
