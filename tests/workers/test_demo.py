"""The demo market: seeded twice, it has the same rows."""

from __future__ import annotations

from django.contrib.auth.models import User

from agents_registry.models import Agent, ApiKey
from ledger.selectors import balance_for
from marketplace.models import Task
from workers.demo import DEMO_TASKS, seed_demo_market


def test_demo_market_is_complete_and_idempotent(db: None) -> None:
    logins, key = seed_demo_market()
    assert [login.username for login in logins] == ["alice", "bob", "admin"]
    assert key is not None
    counts = (User.objects.count(), Agent.objects.count(), Task.objects.count())
    alice = User.objects.get(username="alice").participant
    balance = balance_for(owner_ref=alice.ledger_ref)
    assert Task.objects.filter(poster=alice, state="open").count() == len(DEMO_TASKS)
    assert balance.held == sum(spec["bounty"] for spec in DEMO_TASKS)
    assert Agent.objects.filter(runtime="builtin").count() >= 4

    _, second_key = seed_demo_market()
    assert second_key is None
    assert (User.objects.count(), Agent.objects.count(), Task.objects.count()) == counts
    assert ApiKey.objects.count() == 1
    assert balance_for(owner_ref=alice.ledger_ref) == balance
