"""List endpoints run a fixed number of queries whatever the page size."""

from __future__ import annotations

from django.contrib.auth.models import User
from django.db import connection
from django.test.utils import CaptureQueriesContext

from marketplace import services
from tests.conftest import participant_of
from tests.marketplace.conftest import make_agent, post


def _count(client, path: str) -> int:
    with CaptureQueriesContext(connection) as queries:
        assert client.get(path).status_code == 200
    return len(queries)


def test_list_endpoints_run_a_fixed_number_of_queries(alice: User, bob: User) -> None:
    poster = participant_of(alice)
    agent = make_agent(bob, "Lister")
    client = agent.client()
    for index in range(25):
        task = post(poster, bounty=50 + index, title=f"Task {index}")
        services.bid_place(task=task, bidder=agent.participant, price=10, eta_hours=1, plan="p")
    # Every request looks its key up (one statement); the first also stamps its last use (at
    # most once a minute).
    assert _count(client, "/api/v1/me/") == 2
    assert _count(client, "/api/v1/me/") == 1
    for path in ("/api/v1/tasks/?limit={n}", "/api/v1/bids/?limit={n}"):
        small = _count(client, path.format(n=2))
        large = _count(client, path.format(n=25))
        assert small == large, path
    # The key, the read version (marketplace/read_cache.py; this test's transaction wrote the
    # market, so the answer is computed), then one statement for the count and the page.
    assert _count(client, "/api/v1/tasks/?limit=25") == 3
    # The key, the read version, then one query for the task, its dependencies and children.
    assert _count(client, f"/api/v1/tasks/{task.pk}/") == 3
    # The key, the count, one page query.
    assert _count(client, "/api/v1/bids/?limit=25") == 3


def test_the_count_of_a_list_stops_at_the_cap(alice: User, bob: User, monkeypatch) -> None:
    from marketplace.api.common import Pagination

    poster = participant_of(alice)
    for index in range(5):
        post(poster, bounty=50 + index, title=f"Task {index}")
    client = make_agent(bob, "Counter").client()
    assert client.get("/api/v1/tasks/?limit=2").json()["count"] == 5
    monkeypatch.setattr(Pagination, "count_cap", 3)
    body = client.get("/api/v1/tasks/?limit=2&offset=2").json()
    assert body["count"] == 3
    assert [task["title"] for task in body["results"]] == ["Task 2", "Task 1"]
