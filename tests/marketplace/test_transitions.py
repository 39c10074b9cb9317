"""Every transition from every state by every actor: the right ones move the task, every other
pair is refused with a clear error and changes nothing (no row, no credit)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from agents_registry.models import Participant
from marketplace import services
from marketplace.exceptions import MarketError
from marketplace.models import Bid, Delivery, Dispute, Notification, Task, TaskEvent
from tests.marketplace.conftest import (
    available,
    current_delivery,
    escrow,
    resolve_dispute,
    walk_to,
)


def _delivery(task: Task) -> Delivery:
    # States without a delivery get an unsaved stand-in: the service must refuse on the state.
    return current_delivery(task) or Delivery(task_id=task.pk)


def _bid(task: Task) -> Bid:
    return Bid.objects.filter(task=task).order_by("-pk").first() or Bid(task_id=task.pk)


ACTIONS: dict[str, Callable[[Task, Participant], object]] = {
    "bid": lambda task, actor: services.bid_place(
        task=task, bidder=actor, price=100, eta_hours=2, plan="Quick plan."
    ),
    "claim": lambda task, actor: services.task_claim(task=task, claimant=actor),
    "award": lambda task, actor: services.bid_award(bid=_bid(task), actor=actor),
    "start": lambda task, actor: services.task_start(task=task, actor=actor),
    "deliver": lambda task, actor: services.delivery_submit(task=task, actor=actor, text="x"),
    # A hosted agent that did the work at once starts and delivers in one step.
    "start_and_deliver": lambda task, actor: services.delivery_submit(
        task=task, actor=actor, text="x", start=True
    ),
    "accept": lambda task, actor: services.delivery_accept(delivery=_delivery(task), actor=actor),
    "revise": lambda task, actor: services.revision_request(
        delivery=_delivery(task), actor=actor, message="again"
    ),
    "reject": lambda task, actor: services.delivery_reject(
        delivery=_delivery(task), actor=actor, reason="no"
    ),
    "publish": lambda task, actor: services.task_publish(task=task, actor=actor),
    "cancel": lambda task, actor: services.task_cancel(task=task, actor=actor),
    "abandon": lambda task, actor: services.task_abandon(task=task, actor=actor, reason="busy"),
}

# (state, action, role) that are allowed; every other combination must be refused.
ALLOWED = {
    ("draft", "publish", "poster"),
    ("draft", "cancel", "poster"),
    ("open", "bid", "worker"),
    ("open", "bid", "outsider"),
    ("open", "claim", "worker"),
    ("open", "claim", "outsider"),
    ("open", "award", "poster"),
    ("open", "cancel", "poster"),
    ("awarded", "start", "worker"),
    ("awarded", "cancel", "poster"),
    ("awarded", "abandon", "worker"),
    ("in_progress", "deliver", "worker"),
    ("awarded", "start_and_deliver", "worker"),
    ("in_progress", "start_and_deliver", "worker"),
    ("revision_requested", "start_and_deliver", "worker"),
    ("in_progress", "abandon", "worker"),
    ("delivered", "accept", "poster"),
    ("delivered", "revise", "poster"),
    ("delivered", "reject", "poster"),
    ("revision_requested", "start", "worker"),
    ("revision_requested", "abandon", "worker"),
}
STATES = [
    "draft",
    "open",
    "awarded",
    "in_progress",
    "delivered",
    "revision_requested",
    "accepted",
    "disputed",
    "resolved",
    "cancelled",
    "expired",
]


def _snapshot(task: Task, people: list[Participant]) -> tuple:
    row = Task.objects.filter(pk=task.pk).values(
        "state", "assignee_id", "price", "spent", "barred"
    )[0]
    return (
        row,
        list(Bid.objects.filter(task=task).order_by("pk").values_list("pk", "status")),
        list(Delivery.objects.filter(task=task).order_by("pk").values_list("pk", "status")),
        Dispute.objects.filter(task=task).count(),
        TaskEvent.objects.filter(task=task).count(),
        Notification.objects.count(),
        [available(person) for person in people],
        escrow(task),
    )


@pytest.mark.parametrize("state", STATES)
def test_every_wrong_actor_and_state_is_refused_and_changes_nothing(
    state: str, poster: Participant, worker: Participant, outsider: Participant
) -> None:
    if state == "resolved":
        task = resolve_dispute(walk_to("disputed", poster=poster, worker=worker), 300)
    else:
        task = walk_to(state, poster=poster, worker=worker)
    assert task.state == state
    if state == "open":
        # An active bid by a third party, so "award" by a wrong actor has something to try.
        services.bid_place(task=task, bidder=outsider, price=500, eta_hours=3, plan="Mine.")
    roles = {"poster": poster, "worker": worker, "outsider": outsider}
    people = list(roles.values())
    refused = 0
    for action, perform in ACTIONS.items():
        for role, actor in roles.items():
            if (state, action, role) in ALLOWED:
                continue
            before = _snapshot(task, people)
            with pytest.raises(MarketError) as caught:
                perform(Task.objects.get(pk=task.pk), actor)
            assert str(caught.value), (state, action, role)
            assert caught.value.http_status in (403, 404, 409), (state, action, role)
            assert _snapshot(task, people) == before, (state, action, role)
            refused += 1
    expected = len(ACTIONS) * len(roles) - sum(1 for item in ALLOWED if item[0] == state)
    assert refused == expected


@pytest.mark.parametrize(("state", "action", "role"), sorted(ALLOWED))
def test_every_allowed_transition_moves_the_task(
    state: str,
    action: str,
    role: str,
    poster: Participant,
    worker: Participant,
    outsider: Participant,
) -> None:
    task = walk_to(state, poster=poster, worker=worker)
    if (state, action) == ("open", "award"):
        services.bid_place(task=task, bidder=outsider, price=500, eta_hours=3, plan="Mine.")
    actor = {"poster": poster, "worker": worker, "outsider": outsider}[role]
    ACTIONS[action](Task.objects.get(pk=task.pk), actor)
    after = Task.objects.get(pk=task.pk)
    expected_state = {
        "bid": "open",
        "claim": "awarded",
        "award": "awarded",
        "start": "in_progress",
        "deliver": "delivered",
        "start_and_deliver": "delivered",
        "accept": "accepted",
        "revise": "revision_requested",
        "reject": "disputed",
        "publish": "open",
        "cancel": "cancelled",
        "abandon": "open",
    }[action]
    assert after.state == expected_state


@pytest.mark.parametrize(("state", "timeline"), [("awarded", ["started"]), ("in_progress", [])])
def test_starting_and_delivering_in_one_step_records_both_steps(
    state: str, timeline: list[str], poster: Participant, worker: Participant
) -> None:
    task = walk_to(state, poster=poster, worker=worker)
    before = list(TaskEvent.objects.filter(task=task).values_list("pk", flat=True))
    delivery = services.delivery_submit(task=task, actor=worker, text="Done.", start=True)
    events = TaskEvent.objects.filter(task=task).exclude(pk__in=before).order_by("pk")
    assert [(event.kind, event.actor_id) for event in events] == [
        *((kind, worker.pk) for kind in timeline),
        ("delivered", worker.pk),
    ]
    assert events.last().data == {"delivery": delivery.pk}
    # One notice for the poster: the delivery.
    assert list(
        Notification.objects.filter(recipient=poster, task=task)
        .order_by("-pk")
        .values_list("message", flat=True)[:1]
    ) == [f"“{task.title}” was delivered; please review it."]


def test_a_delivery_key_used_before_returns_its_delivery_whatever_the_task_became(
    poster: Participant, worker: Participant
) -> None:
    """The key is looked up only when a delivery is refused (the task moved on, or the unique
    constraint): a replay returns the first delivery; another text under the key is a conflict
    that changes nothing."""
    from marketplace.exceptions import IdempotencyConflict

    task = walk_to("in_progress", poster=poster, worker=worker)
    first = services.delivery_submit(task=task, actor=worker, text="Done.", idempotency_key="k1")
    assert (
        services.delivery_submit(task=task, actor=worker, text="Done.", idempotency_key="k1")
        == first
    )
    before = _snapshot(task, [poster, worker])
    with pytest.raises(IdempotencyConflict):
        services.delivery_submit(task=task, actor=worker, text="Other.", idempotency_key="k1")
    assert _snapshot(task, [poster, worker]) == before
    # After a revision request the task is in progress again: the key meets the constraint.
    services.revision_request(delivery=first, actor=poster, message="More.")
    services.task_start(task=task, actor=worker)
    assert (
        services.delivery_submit(task=task, actor=worker, text="Done.", idempotency_key="k1")
        == first
    )
    assert Task.objects.get(pk=task.pk).state == "in_progress"
    with pytest.raises(IdempotencyConflict):
        services.delivery_submit(task=task, actor=worker, text="Other.", idempotency_key="k1")
    assert list(Delivery.objects.filter(task=task).values_list("pk", flat=True)) == [first.pk]


def test_a_refused_delivery_leaves_the_callers_transaction_usable(
    poster: Participant, worker: Participant
) -> None:
    """``delivery_submit`` takes no savepoint: it decides a refusal before writing anything, so
    a caller may go on in the same transaction (a hosted execution records the refusal there)."""
    from django.db import connection, transaction

    from marketplace.exceptions import ChildrenOpen

    task = walk_to("in_progress", poster=poster, worker=worker)
    services.task_post(
        poster=worker, parent=task, title="Part", description="A part of it.", bounty=100
    )
    with transaction.atomic():
        with pytest.raises(ChildrenOpen):
            services.delivery_submit(task=task, actor=worker, text="Too early.")
        with pytest.raises(MarketError):
            services.delivery_submit(task=task, actor=poster, text="Not mine to deliver.")
        assert not connection.needs_rollback
        assert Task.objects.get(pk=task.pk).state == "in_progress"  # the transaction goes on
    assert not Delivery.objects.filter(task=task).exists()
