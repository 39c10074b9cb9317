"""Steps of a person's journey through the market in a real browser (Playwright pages), one
function per step, so any browser test (against the test server or the processes ``make run``
starts) can chain them. Each step acts through the page only, the way a person would, and waits
for what the person would wait to see; none reads the database.

``base_url`` is the site's root without a trailing slash.
"""

from __future__ import annotations

import re
import time
from typing import Any

Page = Any  # playwright.sync_api.Page


def log_in(browser: Any, base_url: str, username: str, password: str) -> Page:
    page = browser.new_page()
    page.set_default_timeout(15_000)
    page.goto(f"{base_url}/accounts/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("form button[type=submit]")
    page.wait_for_url(f"{base_url}/")
    return page


def open_task(page: Page, base_url: str, task_id: int) -> None:
    page.goto(f"{base_url}/tasks/{task_id}/")


def wait_for(page: Page, selector: str, *, timeout: float = 30, reload: bool = True) -> Any:
    """Until ``selector`` is on the page; with ``reload``, reloading meanwhile (for a server
    without websockets; under the run command the page updates itself)."""
    deadline = time.monotonic() + timeout
    while True:
        found = page.locator(selector)
        if found.count():
            return found.first
        if time.monotonic() > deadline:
            raise AssertionError(f"{selector} did not appear within {timeout} s on {page.url}")
        if reload:
            page.wait_for_timeout(400)
            page.reload()
        else:
            page.wait_for_timeout(100)


def flash(page: Page) -> str:
    """The messages the last action left at the top of the page."""
    return page.inner_text(".messages") if page.locator(".messages").count() else ""


def award_bid(page: Page, bidder_name: str) -> None:
    row = wait_for(page, f"#bids tr:has-text('{bidder_name}')")
    row.locator("button:text('Award')").click()
    # A hosted agent may start (or deliver) before the page shows "Awarded" under load.
    page.wait_for_selector("#task-state >> text=/Awarded|In progress|Delivered, in review/")


def delivery_ids(page: Page) -> list[int]:
    ids = page.eval_on_selector_all(
        "section.delivery", "sections => sections.map(section => section.id)"
    )
    return [int(value.removeprefix("delivery-")) for value in ids]


def wait_for_delivery(page: Page, *, after: int = 0, timeout: float = 30) -> int:
    """The id of the newest delivery, once there is one newer than ``after``."""
    deadline = time.monotonic() + timeout
    while True:
        newer = [pk for pk in delivery_ids(page) if pk > after]
        if newer:
            return max(newer)
        if time.monotonic() > deadline:
            raise AssertionError(f"no delivery after #{after} within {timeout} s")
        page.wait_for_timeout(400)
        page.reload()


def delivery_text(page: Page, delivery_id: int) -> str:
    return page.inner_text(f"#delivery-{delivery_id} .deliverable")


def request_revision(page: Page, delivery_id: int, message: str) -> None:
    review = page.locator(f"#review-{delivery_id}")
    review.locator("input[name=message]").fill(message)
    review.locator("button:text('Request revision')").click()
    # Not the task's state: a built-in agent may have delivered again before the page loads.
    page.wait_for_selector(".messages >> text=Revision requested")


def runs_shown(page: Page) -> list[str]:
    """The hosted runs listed on the page, as their rows' text."""
    return page.locator(".runs tbody tr").all_inner_texts()


def reject_delivery(page: Page, delivery_id: int, reason: str) -> None:
    review = page.locator(f"#review-{delivery_id}")
    review.locator("input[name=reason]").fill(reason)
    review.locator("button:text('Reject')").click()
    page.wait_for_selector("#task-state >> text=Rejected, in dispute")


def answer_dispute(page: Page, text: str) -> None:
    page.fill("#dispute-text", text)
    page.click("#dispute-answer button")
    page.wait_for_selector(f"#dispute >> text={text}")


def resolve_in_admin(page: Page, *, assignee_share: int | str, note: str) -> str:
    """From the task page (through its link to the staff console) or the console's resolve
    page: split the escrow. Returns
    what the console said: the success message, the form's errors, or the browser's own
    refusal of a value out of range."""
    if not page.locator("#dispute-resolve-form").count():
        page.click("#resolve-link")
        page.wait_for_selector("#dispute-resolve-form")
    page.fill("#id_assignee_share", str(assignee_share))
    page.fill("#id_note", note)
    # The browser refuses a share out of the field's range before sending anything.
    refused = page.eval_on_selector("#id_assignee_share", "field => field.validationMessage")
    if refused:
        return refused
    page.click("#dispute-resolve-form input[type=submit]")
    page.wait_for_load_state()
    if page.locator("#dispute-resolve-form").count():
        return page.inner_text("#dispute-resolve-form .errorlist")
    return page.inner_text(".messagelist")


def resolve_limits(page: Page) -> dict[str, int]:
    """The escrow and the most the assignee may get, as the resolve page shows them."""
    return {
        "escrow": int(re.sub(r"\D", "", page.inner_text("#dispute-escrow"))),
        "most": int(re.sub(r"\D", "", page.inner_text("#dispute-most"))),
    }


def wallet_available(page: Page, base_url: str) -> int:
    page.goto(f"{base_url}/wallet/")
    return int(re.sub(r"\D", "", page.inner_text("#available")))


def agent_wallet_available(page: Page, base_url: str, agent_name: str) -> int:
    page.goto(f"{base_url}/wallet/")
    section = page.locator("section[aria-labelledby=agents-top-up]")
    row = section.locator(f"table tr:has(td > a:text-is('{agent_name}'))")
    return int(re.sub(r"\D", "", row.locator("td").nth(1).inner_text()))
