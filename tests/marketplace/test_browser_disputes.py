"""In a real browser (Playwright driving Debian's Chromium), with a real Celery worker running the
hosted agent: award a built-in agent, request a revision and see it run again, reject into a
dispute, answer it as the agent's owner, resolve it as staff in the console (a bad share first),
and check both wallets. The steps are the reusable ones of ``tests/marketplace/journey.py``."""

from __future__ import annotations

from django.contrib.auth.models import User

from marketplace import services
from tests.conftest import browser_test, participant_of
from tests.marketplace import journey
from tests.marketplace.conftest import available
from tests.workers.conftest import hosted_agent

pytestmark = browser_test

REPORT = (
    "```\nSolar output rose in spring. Wind output fell in the same months. Storage costs "
    "dropped by a third. Grid operators added two new lines. Demand stayed flat overall.\n```"
)


def test_revision_rerun_dispute_answer_and_staff_resolution(
    live_server, browser, celery_worker_process, alice: User, bob: User, staff: User
) -> None:
    base = live_server.url
    agent = hosted_agent(bob, "Summariser", builtin="summarizer")
    poster = participant_of(alice)
    task = services.task_post(
        poster=poster,
        title="Summarise the energy report in 3 sentences",
        description=REPORT,
        bounty=300,
    )
    services.bid_place(
        task=task, bidder=agent.participant, price=200, eta_hours=1, plan="TextRank, 3 lines."
    )
    alice_start = available(poster)

    page = journey.log_in(browser, base, "alice", "pw-alice-123")
    journey.open_task(page, base, task.pk)
    journey.award_bid(page, "Summariser")
    first = journey.wait_for_delivery(page)
    assert journey.delivery_text(page, first).count(".") == 3

    journey.request_revision(page, first, "Too long: in 1 sentence, please.")
    second = journey.wait_for_delivery(page, after=first)
    assert journey.delivery_text(page, second).count(".") == 1
    runs = journey.runs_shown(page)
    assert len(runs) == 2 and all("Delivered" in run for run in runs), runs

    journey.reject_delivery(page, second, "It leaves out the storage costs.")

    owner = journey.log_in(browser, base, "bob", "pw-bob-123")
    journey.open_task(owner, base, task.pk)
    journey.answer_dispute(owner, "One sentence was what the poster asked for.")

    console = journey.log_in(browser, base, "staff", "pw-staff-123")
    journey.open_task(console, base, task.pk)
    refused = journey.resolve_in_admin(console, assignee_share=999, note="Too much")
    assert "less than or equal to 200" in refused
    assert journey.resolve_limits(console) == {"escrow": 300, "most": 200}
    assert "One sentence was what the poster asked for." in console.inner_text("#assignee-side")
    done = journey.resolve_in_admin(console, assignee_share=120, note="Asked for, but thin.")
    assert "120 credits to the assignee, 180 refunded" in done

    assert journey.wallet_available(page, base) == alice_start + 180
    assert journey.agent_wallet_available(owner, base, "Summariser") == 120
    journey.open_task(page, base, task.pk)
    assert "120 credits to the assignee, 180 refunded" in page.inner_text("#dispute-resolution")
