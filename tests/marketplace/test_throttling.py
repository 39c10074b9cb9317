"""Rate limits: the sliding-window counters of ``marketplace.throttling`` through the API, and the
window arithmetic with a controlled clock."""

from __future__ import annotations

import uuid

import pytest
from django.contrib.auth.models import User
from rest_framework.test import APIRequestFactory

from marketplace import throttling
from marketplace.models import Bid
from tests.conftest import participant_of
from tests.marketplace.conftest import make_agent, post


def test_writes_over_the_limit_are_refused_with_retry_after_and_change_nothing(
    alice: User, bob: User, settings
) -> None:
    settings.MARKET_WRITE_RATE = "3/minute"
    tasks = [post(participant_of(alice), title=f"Task {n}") for n in range(4)]
    agent = make_agent(bob, f"Eager {uuid.uuid4().hex[:6]}")
    client = agent.client()
    body = {"price": 10, "eta_hours": 1, "plan": "Do it."}
    for task in tasks[:3]:
        assert client.post(f"/api/v1/tasks/{task.pk}/bids/", body, format="json").status_code == 201
    refused = client.post(f"/api/v1/tasks/{tasks[3].pk}/bids/", body, format="json")
    assert refused.status_code == 429
    assert 1 <= int(refused["Retry-After"]) <= 80  # the rest of this minute and a third of the next
    assert "throttled" in refused.json()["error"]["message"]
    assert not Bid.objects.filter(task=tasks[3]).exists()
    # Reads are not writes; another agent has its own allowance.
    assert client.get("/api/v1/tasks/").status_code == 200
    other = make_agent(bob, f"Patient {uuid.uuid4().hex[:6]}").client()
    assert other.post(f"/api/v1/tasks/{tasks[3].pk}/bids/", body).status_code == 201


class _Limit(throttling.SlidingWindowThrottle):
    rate = "10/minute"

    def __init__(self, ident: str) -> None:
        super().__init__()
        self.ident = ident

    def get_cache_key(self, request, view) -> str:
        return f"test-throttle-{self.ident}"


@pytest.fixture
def clock(monkeypatch) -> list[float]:
    now = [1_800_000_000.0 - 1_800_000_000.0 % 60]  # the start of a window
    monkeypatch.setattr(throttling.time, "time", lambda: now[0])
    return now


def test_the_window_slides(clock: list[float]) -> None:
    ident = uuid.uuid4().hex
    request = APIRequestFactory().get("/")

    def allowed() -> bool:
        return _Limit(ident).allow_request(request, None)

    clock[0] += 59
    assert all(allowed() for _ in range(10))
    limit = _Limit(ident)
    assert not limit.allow_request(request, None)
    # Ten counted: the next fits once 9 of them no longer count, 6 s into the next window.
    assert limit.wait() == pytest.approx(7)
    # A second into the next window, 59/60 of the previous ten still count: 9.83 + 1 > 10.
    clock[0] += 2
    assert not allowed()
    # Half-way through it, five of them count: five more fit, then no more.
    clock[0] += 29
    assert [allowed() for _ in range(6)] == [True] * 5 + [False]
    # Two windows later, nothing remains.
    clock[0] += 120
    assert all(allowed() for _ in range(10))


def test_several_windows_count_in_one_call_and_a_refusing_one_does_not_count(
    clock: list[float], monkeypatch
) -> None:
    request = APIRequestFactory().get("/")
    tight, loose = _Limit(uuid.uuid4().hex), _Limit(uuid.uuid4().hex)
    tight.num_requests, loose.num_requests = 2, 10
    calls = []
    script = throttling._count
    monkeypatch.setattr(throttling, "_count", lambda **kw: calls.append(kw) or script(**kw))
    assert throttling.check_throttles([tight, loose], request, None) == []
    assert throttling.check_throttles([tight, loose], request, None) == []
    waits = throttling.check_throttles([tight, loose], request, None)
    assert len(calls) == 3 and len(calls[0]["keys"]) == 4  # one round trip for both windows
    assert waits == [tight.wait()] and waits[0] > 0
    # The refused request counted in the loose window only: 3 there, 2 in the tight one.
    redis = throttling.redis_client()
    number = int(clock[0] // 60)
    assert int(redis.get(f"test-throttle-{tight.ident}:{number}")) == 2
    assert int(redis.get(f"test-throttle-{loose.ident}:{number}")) == 3
