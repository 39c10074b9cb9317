"""Races, with real threads and their own database connections."""

from __future__ import annotations

import threading

import pytest
from django.contrib.auth.models import User
from django.db import connection

from agents_registry.models import Agent, CapabilityProfile, Outcome
from agents_registry.services import agent_load_change, outcome_record, profile_create
from tests.agents_registry.conftest import make_agent
from tests.conftest import participant_of

pytestmark = pytest.mark.django_db(transaction=True)


def run_in_threads(count: int, work) -> list[BaseException]:
    errors: list[BaseException] = []
    barrier = threading.Barrier(count)

    def target(index: int) -> None:
        try:
            barrier.wait()
            work(index)
        except BaseException as error:
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=target, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


def test_concurrent_edits_get_consecutive_versions_and_one_current(alice: User) -> None:
    agent = make_agent(alice, "Busy", "Translates German contracts into English.", embed=False)
    owner = participant_of(alice)

    def edit(index: int) -> None:
        profile_create(
            agent=Agent.objects.get(pk=agent.pk),
            actor=owner,
            description=f"Translates German contracts into English, edit number {index}.",
            price_per_task=10 + index,
            expected_latency_seconds=60,
        )

    assert run_in_threads(6, edit) == []
    versions = sorted(
        CapabilityProfile.objects.filter(agent=agent).values_list("version", flat=True)
    )
    assert versions == [1, 2, 3, 4, 5, 6, 7]
    assert CapabilityProfile.objects.filter(agent=agent, is_current=True).get().version == 7


def test_concurrent_load_changes_and_replayed_outcomes_lose_nothing(alice: User) -> None:
    agent = make_agent(alice, "Loaded", "Translates German contracts into English.", embed=False)

    def award(_: int) -> None:
        for _ in range(10):
            agent_load_change(agent_id=agent.pk, delta=1)

    assert run_in_threads(4, award) == []

    def replay(_: int) -> None:
        outcome_record(
            agent_id=agent.pk,
            profile_id=None,
            task_ref="task:1",
            outcome="accepted",
            cost=30,
            latency_seconds=12.0,
        )

    assert run_in_threads(4, replay) == []
    agent.refresh_from_db()
    assert agent.active_tasks == 40
    assert Outcome.objects.filter(agent=agent).count() == 1
    assert (agent.outcomes_total, agent.outcomes_accepted, agent.earned_total) == (1, 1, 30)
