"""The SQL statements of every hot path, counted exactly: a lost optimisation (a join undone, a
statement compiled per row, a read repeated) fails here rather than in a benchmark.

The numbers are what the paths ran when the test was written (the savepoints of a transition
nested in the test's transaction and the row locks included); a change that moves one says why
in its commit. Every API request reads its key first (one prepared statement,
``agents_registry/authentication.py``); its last-use stamp is written before counting.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test.utils import CaptureQueriesContext

from agents_registry.models import Participant
from marketplace import services
from marketplace.models import Bid, Task
from tests.conftest import participant_of
from tests.marketplace.conftest import AgentCaller, make_agent, post
from tests.workers.conftest import hosted_agent
from workers import services as worker_services
from workers.models import Execution

pytestmark = pytest.mark.django_db


def statements(action: Callable[[], Any]) -> tuple[int, Any]:
    with CaptureQueriesContext(connection) as queries:
        result = action()
    return len(queries), result


def _bid(task: Task, bidder: Participant, price: int = 400) -> Bid:
    return services.bid_place(task=task, bidder=bidder, price=price, eta_hours=2, plan="I can.")


def test_each_transition_runs_a_fixed_number_of_statements(
    poster: Participant, mallory: User
) -> None:
    worker = participant_of(mallory)
    counted = {}
    counted["post"], task = statements(lambda: post(poster, bounty=500, checks={}))
    counted["bid"], bid = statements(lambda: _bid(task, worker))
    counted["award"], _ = statements(lambda: services.bid_award(bid=bid, actor=poster))
    counted["start"], _ = statements(lambda: services.task_start(task=task, actor=worker))
    counted["deliver"], delivery = statements(
        lambda: services.delivery_submit(task=task, actor=worker, text="Done.")
    )
    counted["revise"], _ = statements(
        lambda: services.revision_request(delivery=delivery, actor=poster, message="More.")
    )
    services.task_start(task=task, actor=worker)
    delivery = services.delivery_submit(task=task, actor=worker, text="Done again.")
    counted["accept"], _ = statements(
        lambda: services.delivery_accept(delivery=delivery, actor=poster)
    )

    other = post(poster, bounty=300, checks={})
    counted["claim"], _ = statements(lambda: services.task_claim(task=other, claimant=worker))
    services.task_start(task=other, actor=worker)
    delivery = services.delivery_submit(task=other, actor=worker, text="Done.")
    counted["reject"], _ = statements(
        lambda: services.delivery_reject(delivery=delivery, actor=poster, reason="No.")
    )
    cancelled = post(poster, bounty=200, checks={})
    counted["cancel"], _ = statements(lambda: services.task_cancel(task=cancelled, actor=poster))

    assert counted == {
        "post": 13,  # + the outbox row for hosted bidding and its relay after the commit
        "bid": 5,
        "award": 14,  # + the decision record of the award and its candidates (issue 16)
        "start": 4,
        "deliver": 3,
        "revise": 6,
        "accept": 13,  # + the outbox row for skill distillation
        "claim": 13,  # + the decision record of the claim (issue 16)
        "reject": 7,
        "cancel": 10,
    }


@pytest.mark.parametrize("at_once", [False, True], ids=["two_transactions", "at_once"])
def test_an_execution_attempt_runs_a_fixed_number_of_statements(
    poster: Participant, bob: User, at_once: bool
) -> None:
    agent = hosted_agent(bob, "Stats", builtin="text-stats")
    task = post(poster, bounty=100, checks={}, description="Solar panels last long. Cats nap.")
    services.task_claim(task=task, claimant=agent.participant)
    execution = Execution.objects.get(task_ref=task.pk)
    count, outcome = statements(
        lambda: worker_services.execution_run(
            execution_id=execution.pk, worker="tests", at_once=at_once
        )
    )
    assert outcome == "succeeded"
    assert count == {False: 16, True: 8}[at_once]


def _warm(caller: AgentCaller) -> Any:
    client = caller.client()
    for _ in range(2):  # the first request stamps the key's last use (at most once a minute)
        assert client.get("/api/v1/me/").status_code == 200
    return client


# Committed transactions: a transaction that wrote the market reads around the read cache.
@pytest.mark.django_db(transaction=True)
def test_the_api_hot_paths_run_a_fixed_number_of_statements(
    poster: Participant, bob: User, settings: Any
) -> None:
    caller = make_agent(bob, "Counter")
    client = _warm(caller)
    for index in range(5):
        post(poster, bounty=100 + index, title=f"Task {index}", checks={})
    task = post(poster, bounty=500, checks={})

    def request(method: str, path: str, body: dict | None = None, status: int = 200) -> int:
        count, response = statements(
            lambda: (
                getattr(client, method)(path, body, format="json")
                if body is not None
                else getattr(client, method)(path)
            )
        )
        assert response.status_code == status, response.content
        return count

    counted = {}
    settings.MARKET_READ_CACHE = False
    counted["list"] = request("get", "/api/v1/tasks/?limit=20")
    counted["detail"] = request("get", f"/api/v1/tasks/{task.pk}/")
    settings.MARKET_READ_CACHE = True
    request("get", "/api/v1/tasks/?limit=20")
    counted["list_kept"] = request("get", "/api/v1/tasks/?limit=20")
    request("get", f"/api/v1/tasks/{task.pk}/")
    counted["detail_kept"] = request("get", f"/api/v1/tasks/{task.pk}/")
    counted["bid"] = request(
        "post",
        f"/api/v1/tasks/{task.pk}/bids/",
        {"price": 400, "eta_hours": 2, "plan": "I can."},
        status=201,
    )
    bid = Bid.objects.get(task=task)
    services.bid_award(bid=bid, actor=poster)
    services.task_start(task=task, actor=caller.participant)
    counted["deliver"] = request(
        "post", f"/api/v1/tasks/{task.pk}/deliveries/", {"text": "Done."}, status=201
    )
    # Each begins with the key's lookup.
    assert counted == {
        "list": 2,  # with the read cache off: the answer's statement alone
        "detail": 2,
        "list_kept": 2,  # the read version (marketplace/read_cache.py)
        "detail_kept": 2,
        "bid": 6,
        "deliver": 6,
    }
