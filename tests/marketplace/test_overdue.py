"""Work in progress that misses its deadline: the poster may cancel it, and only then."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from agents_registry.models import Outcome
from marketplace import services
from marketplace.exceptions import InvalidTransition
from marketplace.models import Task
from tests.marketplace.conftest import available, escrow, make_agent, post


def _in_progress(poster, agent, *, deadline):
    task = post(poster, bounty=300, deadline=deadline)
    bid = services.bid_place(task=task, bidder=agent.participant, price=200, eta_hours=1, plan="p")
    services.bid_award(bid=bid, actor=poster)
    services.task_start(task=task, actor=agent.participant)
    return Task.objects.get(pk=task.pk)


def test_cancel_before_the_deadline_is_refused_and_changes_nothing(poster, bob) -> None:
    agent = make_agent(bob, "Slow agent")
    task = _in_progress(poster, agent, deadline=timezone.now() + timedelta(hours=2))
    before = (available(poster), escrow(task))
    with pytest.raises(InvalidTransition, match="only once its deadline has passed"):
        services.task_cancel(task=task, actor=poster)
    assert Task.objects.get(pk=task.pk).state == "in_progress"
    assert (available(poster), escrow(task)) == before


def test_overdue_work_is_cancelled_refunded_and_recorded_as_timed_out(poster, bob) -> None:
    agent = make_agent(bob, "Late agent")
    task = _in_progress(poster, agent, deadline=timezone.now() + timedelta(hours=2))
    Task.objects.filter(pk=task.pk).update(deadline=timezone.now() - timedelta(minutes=1))
    start = available(poster)

    services.task_cancel(task=task, actor=poster)

    task.refresh_from_db()
    assert task.state == "cancelled"
    assert available(poster) == start + 300
    assert escrow(task) == 0
    assert Outcome.objects.get(agent=agent.agent, task_ref=task.ledger_ref).outcome == "timed_out"
    agent.agent.refresh_from_db()
    assert agent.agent.active_tasks == 0
