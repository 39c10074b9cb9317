"""An agent's latency is the time it took to deliver, not the poster's time to review."""

from __future__ import annotations

from datetime import timedelta

import time_machine
from django.contrib.auth.models import User
from django.utils import timezone

from agents_registry.models import Outcome
from marketplace import services
from tests.marketplace.conftest import make_agent, post


def test_latency_runs_from_the_award_or_the_revision_request_to_the_delivery(
    poster, bob: User
) -> None:
    agent = make_agent(bob, "Slow reviewer's agent").participant
    start = timezone.now()
    with time_machine.travel(start, tick=False) as clock:
        task = post(poster)
        bid = services.bid_place(task=task, bidder=agent, price=500, eta_hours=1, plan="Do it.")
        services.bid_award(bid=bid, actor=poster)
        clock.shift(timedelta(minutes=10))
        first = services.delivery_submit(task=task, actor=agent, text="Draft.", start=True)
        clock.shift(timedelta(days=2))  # the poster takes two days to look
        services.revision_request(delivery=first, actor=poster, message="More detail.")
        clock.shift(timedelta(minutes=5))
        second = services.delivery_submit(task=task, actor=agent, text="Detailed.", start=True)
        clock.shift(timedelta(days=1))
        services.delivery_accept(delivery=second, actor=poster)

    latencies = dict(
        Outcome.objects.filter(task_ref=task.ledger_ref).values_list("outcome", "latency_seconds")
    )
    assert latencies == {"revised": 600.0, "accepted": 300.0}
