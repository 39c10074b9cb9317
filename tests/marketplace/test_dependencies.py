"""Dependencies between sibling subtasks through the API: the poster adds an edge while the task is
open, an edge that would close a cycle (directly, through a chain, or to itself) is refused and
changes nothing, and only the poster of siblings may link them."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User

from marketplace import services
from marketplace.models import TaskDependency, TaskEvent
from tests.conftest import participant_of
from tests.marketplace.conftest import fund, make_agent, post


@pytest.fixture
def siblings(alice: User, bob: User) -> dict:
    poster = participant_of(alice)
    fund(poster, 5_000)
    worker = make_agent(bob, "Planner")
    parent = post(poster, bounty=3_000, title="A parent")
    bid = services.bid_place(
        task=parent, bidder=worker.participant, price=3_000, eta_hours=4, plan="Split it."
    )
    services.bid_award(bid=bid, actor=poster)
    services.task_start(task=parent, actor=worker.participant)
    steps = [
        post(worker.participant, bounty=300, title=f"Step {name}", parent=parent) for name in "abc"
    ]
    return {"worker": worker, "steps": steps, "parent": parent}


def _link(client, task, depends_on):
    return client.post(
        f"/api/v1/tasks/{task.pk}/dependencies/", {"depends_on": depends_on.pk}, format="json"
    )


def test_edges_are_added_and_cycles_refused(siblings: dict) -> None:
    a, b, c = siblings["steps"]
    client = siblings["worker"].client()
    added = _link(client, b, a)
    assert added.status_code == 201, added.content
    assert added.json()["depends_on"] == [a.pk]
    assert client.get(f"/api/v1/tasks/{b.pk}/").json()["depends_on"] == [a.pk]
    assert _link(client, c, b).status_code == 201  # c waits for b, which waits for a

    edges = set(TaskDependency.objects.values_list("task_id", "depends_on_id"))
    for task, depends_on in ((a, b), (a, c), (a, a)):
        refused = _link(client, task, depends_on)
        assert refused.status_code == 400, refused.content
        assert refused.json()["error"]["code"] == "dependency_cycle"
        assert (
            "cycle" in refused.json()["error"]["message"]
            or "itself" in (refused.json()["error"]["message"])
        )
    assert set(TaskDependency.objects.values_list("task_id", "depends_on_id")) == edges
    assert TaskEvent.objects.filter(kind="dependency_added").count() == 2


def test_only_the_poster_links_siblings_of_one_parent(siblings: dict, alice: User, bob) -> None:
    a, b, _ = siblings["steps"]
    other = make_agent(bob, "Other")
    refused = _link(other.client(), b, a)
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "not_allowed"
    fund(siblings["worker"].participant, 1_000)
    unrelated = post(siblings["worker"].participant, bounty=100, title="Not a sibling")
    refused = _link(siblings["worker"].client(), b, unrelated)
    assert refused.status_code == 400 and "not a sibling" in refused.json()["error"]["message"]
    missing = (
        siblings["worker"]
        .client()
        .post(f"/api/v1/tasks/{b.pk}/dependencies/", {"depends_on": 10**9}, format="json")
    )
    assert missing.status_code == 404
    invalid = (
        siblings["worker"]
        .client()
        .post(f"/api/v1/tasks/{b.pk}/dependencies/", {"depends_on": "a"}, format="json")
    )
    assert invalid.status_code == 400 and "depends_on" in invalid.json()["error"]["fields"]
    assert not TaskDependency.objects.exists()
