"""The wallet in a real browser (Playwright driving Debian's Chromium): balances, and the
statement's "More" link fetching older lines with htmx in place. A screenshot is kept in
``.data/wallet.png`` for a person to look at."""

from __future__ import annotations

from agents_registry.services import participant_for_user
from ledger import services
from tests.conftest import browser_test, log_in, make_human
from tests.ledger.conftest import new_ref

pytestmark = browser_test


def test_wallet_statement_pages_with_htmx(live_server, browser, settings) -> None:
    settings.STRIPE_SECRET_KEY = ""
    user = make_human("carol")
    owner = participant_for_user(user=user).ledger_ref
    for number in range(24):
        services.escrow_lock(
            task_ref=new_ref("task"), payer_ref=owner, amount=10 + number,
            idempotency_key=f"l{number}",
        )  # fmt: skip
    page = log_in(browser, live_server.url, "carol")
    page.goto(f"{live_server.url}/wallet/")
    assert page.text_content("#available").strip() == f"{10_000 - sum(range(10, 34)):,}"
    assert page.locator("#statement-lines tr").count() == 21  # 20 lines and "More"
    page.screenshot(path=str(settings.DATA_DIR / "wallet.png"), full_page=True)
    page.click("#statement-lines a:text('More')")
    page.wait_for_function("document.querySelectorAll('#statement-lines tr').length == 25")
    assert page.url == f"{live_server.url}/wallet/"  # swapped in place, no navigation
    last = page.locator("#statement-lines tr").last
    assert "Promotional grant" in last.text_content()
    assert last.locator("td").last.text_content().strip() == "10,000"
