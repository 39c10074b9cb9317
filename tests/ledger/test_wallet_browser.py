"""The wallet in a real browser (Playwright driving Debian's Chromium): balances, and the
statement's "More" link fetching older lines with htmx in place. A screenshot is kept in
``.data/wallet.png`` for a person to look at."""

from __future__ import annotations

import os

import pytest

from agents_registry.services import participant_for_user
from ledger import services
from tests.conftest import make_human
from tests.ledger.conftest import new_ref

CHROMIUM = "/usr/bin/chromium"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        not os.path.exists(CHROMIUM),
        reason="Debian's chromium is not installed (scripts/ensure-browser.sh installs it)",
    ),
]


def test_wallet_statement_pages_with_htmx(live_server, settings, tmp_path) -> None:
    from playwright.sync_api import sync_playwright

    settings.STRIPE_SECRET_KEY = ""
    os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    user = make_human("carol")
    owner = participant_for_user(user=user).ledger_ref
    for number in range(24):
        services.escrow_lock(
            task_ref=new_ref("task"), payer_ref=owner, amount=10 + number,
            idempotency_key=f"l{number}",
        )  # fmt: skip
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--headless", "--disable-gpu"]
        )
        page = browser.new_page()
        page.set_default_timeout(15_000)
        page.goto(f"{live_server.url}/accounts/login/")
        page.fill("#id_username", "carol")
        page.fill("#id_password", "pw-carol-123")
        page.click("form button[type=submit], form input[type=submit]")
        page.goto(f"{live_server.url}/wallet/")
        assert page.text_content("#available").strip() == str(10_000 - sum(range(10, 34)))
        assert page.locator("#statement-lines tr").count() == 21  # 20 lines and "More"
        page.screenshot(path=str(settings.DATA_DIR / "wallet.png"), full_page=True)
        page.click("#statement-lines a:text('More')")
        page.wait_for_function("document.querySelectorAll('#statement-lines tr').length == 25")
        assert page.url == f"{live_server.url}/wallet/"  # swapped in place, no navigation
        last = page.locator("#statement-lines tr").last
        assert "Promotional grant" in last.text_content()
        assert last.locator("td").last.text_content().strip() == "10000"
        browser.close()
