"""Races with real threads and their own connections: 50 claims give one award; deliver and
cancel racing leave a consistent state; beat tasks running twice at once settle once."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from agents_registry.models import Participant
from ledger.models import JournalEntry
from marketplace import services
from marketplace.exceptions import MarketError
from marketplace.models import Bid, Delivery, Task
from tests.conftest import make_human, participant_of
from tests.marketplace.conftest import available, escrow, post, walk_to

pytestmark = pytest.mark.django_db(transaction=True)


def run_together(functions: list[Callable[[], object]]) -> list[object]:
    """Start every function at once on its own thread (and database connection)."""
    barrier = threading.Barrier(len(functions))
    results: list[object] = [None] * len(functions)

    def runner(index: int, function: Callable[[], object]) -> None:
        try:
            barrier.wait()
            results[index] = function()
        except Exception as error:
            results[index] = error
        finally:
            connection.close()

    threads = [threading.Thread(target=runner, args=(i, f)) for i, f in enumerate(functions)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def test_fifty_concurrent_claims_give_exactly_one_award(poster: Participant) -> None:
    task = post(poster, bounty=500)
    claimants = [participant_of(make_human(f"claimer{i}")) for i in range(50)]
    results = run_together(
        [lambda c=c: services.task_claim(task=task, claimant=c) for c in claimants]
    )
    winners = [r for r in results if isinstance(r, Task)]
    refused = [r for r in results if isinstance(r, MarketError)]
    assert len(winners) == 1
    assert len(refused) == 49
    assert all(r.code == "invalid_transition" for r in refused)
    task.refresh_from_db()
    assert task.state == "awarded"
    assert task.assignee_id == winners[0].assignee_id
    assert Bid.objects.filter(task=task, status="awarded").count() == 1
    assert escrow(task) == 500


def test_deliver_and_cancel_racing_leave_a_consistent_state(
    poster: Participant, worker: Participant
) -> None:
    for _ in range(3):
        task = walk_to("awarded", poster=poster, worker=worker)
        poster_before, worker_before = available(poster), available(worker)

        def deliver(task: Task = task) -> object:
            services.task_start(task=task, actor=worker)
            return services.delivery_submit(task=task, actor=worker, text="done")

        results = run_together([deliver, lambda t=task: services.task_cancel(task=t, actor=poster)])
        task.refresh_from_db()
        assert sum(isinstance(r, MarketError) for r in results) == 1
        if task.state == "cancelled":
            assert escrow(task) == 0
            assert available(poster) == poster_before + 1000
            assert not Delivery.objects.filter(task=task).exists()
        else:
            assert task.state == "delivered"
            assert escrow(task) == 1000
            assert available(poster) == poster_before
            assert Delivery.objects.filter(task=task).count() == 1
        assert available(worker) == worker_before


def test_beat_tasks_running_twice_at_once_settle_once(
    poster: Participant, worker: Participant
) -> None:
    delivered = walk_to("delivered", poster=poster, worker=worker)
    expiring = post(poster, bounty=300, deadline=timezone.now() + timedelta(hours=1))
    Delivery.objects.filter(task=delivered).update(
        review_deadline=timezone.now() - timedelta(minutes=1)
    )
    Task.objects.filter(pk=expiring.pk).update(deadline=timezone.now() - timedelta(minutes=1))
    poster_before, worker_before = available(poster), available(worker)

    results = run_together(
        [
            services.deliveries_review_due,
            services.deliveries_review_due,
            services.tasks_expire_due,
            services.tasks_expire_due,
        ]
    )
    assert sorted(results[:2]) == [0, 1]
    assert sorted(results[2:]) == [0, 1]
    delivered.refresh_from_db()
    expiring.refresh_from_db()
    assert (delivered.state, expiring.state) == ("accepted", "expired")
    # Price 800 with a 5% fee: the worker gets 760, the poster the 200 margin and the 300 refund.
    assert available(worker) == worker_before + 760
    assert available(poster) == poster_before + 200 + 300
    assert JournalEntry.objects.filter(domain_ref=delivered.ledger_ref).count() == 2
    assert JournalEntry.objects.filter(domain_ref=expiring.ledger_ref).count() == 2
    assert services.deliveries_review_due() == 0
    assert services.tasks_expire_due() == 0
