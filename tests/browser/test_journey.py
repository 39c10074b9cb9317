"""The money loop in a real browser against ``make run``'s own process composition, every change
seen live: a new human posts a task, hosted agents' bids appear without a reload (task page, feed,
"My work" and its notifications), the award runs the agent and its delivery arrives without a
reload, formatted; acceptance pays the agent's wallet less the fee, the poster's statement shows
the breakdown, and the agent owner's statement shows the same line."""

from __future__ import annotations

import re
import uuid

from tests.browser.conftest import (
    RunningMarketplace,
    assert_not_reloaded,
    browser_run_test,
    log_in,
    page_overflow,
    post_task,
    sign_up,
    stays_loaded,
    wait_for_sockets,
)

pytestmark = browser_run_test

ANNOUNCEMENT = (
    "List the ten most important keywords and phrases of this announcement, with counts: "
    "Our new vector search engine indexes a million documents in minutes, answers semantic "
    "queries in milliseconds and runs on a laptop. Vector search, hybrid ranking and metadata "
    "filters come built in."
)


def _number(text: str) -> int:
    return int(re.sub(r"[^\d-]", "", text))


def test_post_bid_award_deliver_accept_all_live(browser, run: RunningMarketplace) -> None:
    name = f"carol-{uuid.uuid4().hex[:6]}"
    poster = sign_up(browser, run, name)
    poster.goto(f"{run.base_url}/wallet/")
    starting = _number(poster.inner_text("#available"))
    assert starting > 0

    # "My work" and the feed stay open in other tabs of the same session.
    dashboard = poster.context.new_page()
    dashboard.goto(f"{run.base_url}/dashboard/")
    feed = poster.context.new_page()
    feed.goto(f"{run.base_url}/")
    for page in (dashboard, feed):
        stays_loaded(page)
        wait_for_sockets(page)

    title = f"Keywords of our launch note {name}"
    with run.worker_paused():
        task_id = post_task(poster, run, title=title, description=ANNOUNCEMENT, bounty=50)
        stays_loaded(poster)
        wait_for_sockets(poster)
        assert "No bids you can see yet" in poster.inner_text("main")
    # The hosted agents bid from the worker; every open page hears of it.
    poster.wait_for_selector("#bids >> text=Text statistics")
    feed.wait_for_selector(f"text={title}")
    feed.wait_for_selector(f"article:has-text('{title}') >> text=/[12] bids?/")
    dashboard.wait_for_selector(f"#posted >> text={title}")
    dashboard.wait_for_selector("#notifications >> text=Text statistics")
    for page in (poster, dashboard, feed):
        assert_not_reloaded(page)

    with run.worker_paused():
        poster.click("#bids tr:has-text('Text statistics') >> button:has-text('Award')")
        poster.wait_for_selector("#task-state >> text=Awarded")
        stays_loaded(poster)
        wait_for_sockets(poster)
    # The award started the hosted execution: its delivery arrives on the open page.
    poster.wait_for_selector("#task-state >> text=Delivered", timeout=60_000)
    poster.wait_for_selector(".delivery pre.json")
    assert_not_reloaded(poster)
    data = poster.inner_text(".delivery pre.json")
    assert data.lstrip().startswith("{") and '\n  "' in data  # formatted JSON, not a dict repr
    assert page_overflow(poster) == 0
    dashboard.wait_for_selector(f"#posted tr:has-text('{title}') >> text=Delivered")
    assert_not_reloaded(dashboard)

    poster.click("text=Accept and pay")
    poster.wait_for_selector("#task-state >> text=Accepted and settled")
    # The built-in agents bid 10 credits; the 5% fee floors to 0 at that price (ledger rule).
    price, fee = 10, 0
    poster.goto(f"{run.base_url}/wallet/")
    assert _number(poster.inner_text("#available")) == starting - price
    breakdown = f"price {price} = {price - fee} to the assignee + {fee} platform fee"
    refund_line = poster.inner_text(f"#statement-lines tr:has-text('task #{task_id}')")
    assert f"{breakdown}; 40 of the bounty back" in refund_line
    assert "+40" in refund_line  # the bounty less the price came back

    owner = log_in(browser, run, "admin")  # the demo's built-in agents belong to admin
    owner.goto(f"{run.base_url}/wallet/")
    owner.click("section[aria-labelledby=agents-top-up] >> text=Text statistics")
    line = owner.inner_text(f"#statement-lines tr:has-text('task #{task_id}')")
    assert breakdown in line and f"+{price - fee}" in line
