# ruff: noqa: B023 - every lambda here is called at once by act(), inside its loop turn
"""Invariant 3 after a randomised run of hundreds of operations across nested subtasks: every
escrow equals its task's open bounty minus what it delegated to open subtasks (and what closed
subtasks spent); closed tasks hold nothing; no credit is created or lost."""

from __future__ import annotations

import random

from django.contrib.auth.models import User

from agents_registry.models import Participant
from ledger import selectors as ledger_selectors
from marketplace import selectors, services
from marketplace.exceptions import MarketError
from marketplace.models import Task
from tests.conftest import make_human, participant_of
from tests.marketplace.conftest import available, current_delivery, escrow, fund, post


def _check(tasks: list[Task], people: list[Participant], total: int) -> None:
    expected = selectors.expected_escrows()
    for task in Task.objects.filter(pk__in=[t.pk for t in tasks]):
        assert escrow(task) == expected.get(task.ledger_ref, 0), (task.pk, task.state)
        if task.is_final:
            assert task.ledger_ref not in expected
    in_wallets = sum(available(p) for p in people)
    in_escrow = sum(expected.values())
    assert in_wallets + in_escrow + _fees() == total


def _fees() -> int:
    account = ledger_selectors.account_for(address="platform:fees")
    return account.balance if account is not None else 0


def test_escrows_match_open_bounties_after_a_random_run(staff: User) -> None:
    rng = random.Random(20261122)
    people = [participant_of(make_human(f"p{i}")) for i in range(5)]
    for person in people:
        fund(person, 50_000)
    total = sum(available(p) for p in people) + _fees()
    tasks: list[Task] = []
    performed: dict[str, int] = {}

    def act(name: str, function) -> None:
        try:
            function()
        except MarketError:
            return
        performed[name] = performed.get(name, 0) + 1

    for step in range(400):
        live = list(Task.objects.filter(state__in=Task.ESCROW_STATES).select_related("poster"))
        task = rng.choice(live) if live else None
        roll = rng.random()
        if task is None or roll < 0.12:
            poster = rng.choice(people)
            act("post", lambda p=poster: tasks.append(post(p, bounty=rng.randint(100, 3000))))
            continue
        others = [p for p in people if p.pk != task.poster_id]
        if task.state == "open":
            choice = rng.random()
            if choice < 0.5:
                act("claim", lambda: services.task_claim(task=task, claimant=rng.choice(others)))
            elif choice < 0.8:
                bidder = rng.choice(others)

                def bid_and_award(bidder: Participant = bidder) -> None:
                    bid = services.bid_place(
                        task=task,
                        bidder=bidder,
                        price=rng.randint(1, task.bounty),
                        eta_hours=2,
                        plan="plan",
                    )
                    services.bid_award(bid=bid, actor=task.poster)

                act("award", bid_and_award)
            else:
                act("cancel", lambda: services.task_cancel(task=task, actor=task.poster))
        elif task.state in ("awarded", "revision_requested"):
            if rng.random() < 0.85:
                act("start", lambda: services.task_start(task=task, actor=task.assignee))
            else:
                act(
                    "abandon",
                    lambda: services.task_abandon(task=task, actor=task.assignee, reason="x"),
                )
        elif task.state == "in_progress":
            capacity = selectors.task_delegation_capacity(task=task)
            if capacity > 0 and rng.random() < 0.45:
                act(
                    "subtask",
                    lambda: tasks.append(
                        services.task_post(
                            poster=task.assignee,
                            parent=task,
                            title="part",
                            description="a part of the work",
                            bounty=rng.randint(1, capacity),
                        )
                    ),
                )
            else:
                children = Task.objects.filter(parent=task, state__in=("open", "awarded"))
                child = children.first()
                if child is not None and rng.random() < 0.3:
                    act(
                        "cancel_child", lambda: services.task_cancel(task=child, actor=child.poster)
                    )
                else:
                    act(
                        "deliver",
                        lambda: services.delivery_submit(task=task, actor=task.assignee, text="d"),
                    )
        elif task.state == "delivered":
            delivery = current_delivery(task)
            choice = rng.random()
            if choice < 0.6:
                act(
                    "accept", lambda: services.delivery_accept(delivery=delivery, actor=task.poster)
                )
            elif choice < 0.8:
                act(
                    "revise",
                    lambda: services.revision_request(
                        delivery=delivery, actor=task.poster, message="m"
                    ),
                )
            else:
                act(
                    "reject",
                    lambda: services.delivery_reject(
                        delivery=delivery, actor=task.poster, reason="r"
                    ),
                )
        elif task.state == "disputed":
            most = escrow(task) - (task.bounty - task.price)
            act(
                "resolve",
                lambda: services.dispute_resolve(
                    dispute=task.dispute, staff_user=staff, assignee_share=rng.randint(0, most)
                ),
            )
        if step % 25 == 0:
            _check(tasks, people, total)
    _check(tasks, people, total)
    assert Task.objects.filter(parent__parent__isnull=False).exists(), "no grandchildren made"
    for name in ("post", "claim", "award", "subtask", "deliver", "accept", "resolve", "cancel"):
        assert performed.get(name, 0) > 0, (name, performed)
    assert sum(performed.values()) >= 300
