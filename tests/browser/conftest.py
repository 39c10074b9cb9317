"""The browser harness: Debian's Chromium (through Playwright) against the marketplace exactly as
``make run`` runs it.

``marketplace_run`` (session-scoped) starts ``manage.py up`` itself, the same command ``make run``
calls: one uvicorn web server (pages, API and websockets on one port), a Celery worker and beat,
on embedded PostgreSQL and Redis of a data folder of its own, migrated and seeded with the demo
market (alice, bob and admin with the password ``DEMO_PASSWORD``, the built-in agents, bob's
research desk and its API key). It shares nothing with the rest of the suite (not the test
database, not its queues), so its worker and beat can run all along and its data persists
between the tests of the session: each test makes its own people and tasks.

Helpers, for tests that act only as a user would:

- ``sign_up(browser, run, "carol")`` -> a page logged in as a new human with starter credits;
  ``log_in(browser, run, "alice")`` -> a page logged in as a demo user;
- ``post_task(page, run, title=..., description=..., bounty=...)`` -> the task's id, posted
  through the form;
- ``stays_loaded(page)`` marks the page; ``assert_not_reloaded(page)`` then proves that what
  appeared since came live, without a navigation;
- ``run.api(method, path, key=..., json=...)`` calls the REST API over HTTP (``run.demo_key`` is
  the key that ``make run`` printed for bob's research desk);
- ``run.python(code)`` runs Python in the run's own environment (``manage.py shell -c``), for
  the few facts no page shows.

Set ``MARKETPLACE_URL`` to point the tests at a ``make run`` of this checkout that you started
yourself (quicker while writing a test; what needs the demo key is skipped unless
``MARKETPLACE_DEMO_KEY`` is set too).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests import own_marketplace
from tests.conftest import CHROMIUM, CHROMIUM_ARGS, ROOT

DEMO_PASSWORD = "demo-pass-123"
NEW_PASSWORD = "a-strong-pass-9321"

browser_run_test = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not os.path.exists(CHROMIUM),
        reason="Debian's chromium is not installed (scripts/ensure-browser.sh installs it)",
    ),
]


@dataclass
class RunningMarketplace:
    base_url: str
    env: dict[str, str] = field(default_factory=dict)
    data_dir: Path | None = None
    log_path: Path | None = None
    demo_key: str = ""

    def api(self, method: str, path: str, *, key: str = "", **kwargs: Any) -> httpx.Response:
        headers = kwargs.pop("headers", {})
        if key:
            headers["Authorization"] = f"Api-Key {key}"
        return httpx.request(
            method, f"{self.base_url}{path}", headers=headers, timeout=30, **kwargs
        )

    def python(self, code: str) -> str:
        """Run ``code`` in a ``manage.py shell`` of the run's environment; its stdout."""
        result = subprocess.run(
            [sys.executable, "manage.py", "shell", "-c", code],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        return result.stdout.strip()

    @contextlib.contextmanager
    def worker_paused(self) -> Iterator[None]:
        """The run's Celery worker takes no message inside the block (they wait in the queue):
        a test opens its page and its socket first, so what the worker does next must arrive
        live. Celery's own remote control, as an operator would use it."""
        self._celery_control("cancel_consumer")
        try:
            yield
        finally:
            self._celery_control("add_consumer")

    def _celery_control(self, command: str) -> None:
        subprocess.run(
            [sys.executable, "-m", "celery", "-A", "workers.celery", "control", command, "celery"],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            timeout=60,
            check=True,
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path else ""


@pytest.fixture(scope="session")
def marketplace_run() -> Iterator[RunningMarketplace]:
    """``manage.py up`` on a free port and a data folder of its own, until the session ends."""
    if os.environ.get("MARKETPLACE_URL"):
        # A `make run` of this checkout: its shell and Celery control use this environment
        # as `make run` has it (not the test settings of tests/testenv.py).
        env = {
            key: value
            for key, value in os.environ.items()
            if key not in {"REDIS_DATABASE_BASE", "SECRET_KEY", "DJANGO_ALLOW_ASYNC_UNSAFE"}
        }
        yield RunningMarketplace(
            base_url=os.environ["MARKETPLACE_URL"].rstrip("/"),
            env={**env, "DEBUG": "true"},
            demo_key=os.environ.get("MARKETPLACE_DEMO_KEY", ""),
        )
        return
    data_dir, port, env = own_marketplace.environment("browser")
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    data_dir.mkdir(parents=True)
    log_path = data_dir / "up.log"
    log = open(log_path, "w")  # noqa: SIM115 - closed with the process
    process = subprocess.Popen(
        [sys.executable, "manage.py", "up"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    run = RunningMarketplace(
        base_url=f"http://127.0.0.1:{port}", env=env, data_dir=data_dir, log_path=log_path
    )
    try:
        if own_marketplace.wait_ready(port, process) is None:
            raise RuntimeError(f"`manage.py up` never became ready:\n{run.log()[-4000:]}")
        match = re.search(r"API key of Bob's research desk \(shown once\): (\S+)", run.log())
        run.demo_key = match.group(1) if match else ""
        # The shell of ``run.python`` must reach the run's own servers, as its children do.
        env.update(_service_urls(run))
        yield run
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)  # Ctrl-C: it stops its servers too
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        log.close()
        shutil.rmtree(data_dir, ignore_errors=True)


def _service_urls(run: RunningMarketplace) -> dict[str, str]:
    """The embedded servers' URLs, as the run's children have them (from the data folder)."""
    code = (
        "from marketplace import embedded; from django.conf import settings; "
        "print(settings.DATABASE_URL); print(settings.REDIS_URL)"
    )
    database_url, redis_url = run.python(code).splitlines()[-2:]
    return {"DATABASE_URL": database_url, "REDIS_URL": redis_url}


@pytest.fixture
def run(marketplace_run: RunningMarketplace) -> RunningMarketplace:
    return marketplace_run


# --- pages -----------------------------------------------------------------------------------


def new_page(browser: Any, *, width: int = 1280, height: int = 900) -> Any:
    context = browser.new_context(viewport={"width": width, "height": height})
    context.add_init_script(_COUNT_SOCKETS)
    page = context.new_page()
    page.set_default_timeout(20_000)
    return page


def sign_up(browser: Any, run: RunningMarketplace, username: str, **viewport: int) -> Any:
    page = new_page(browser, **viewport)
    page.goto(f"{run.base_url}/accounts/signup/")
    page.fill("#id_username", username)
    page.fill("#id_email", f"{username}@example.com")
    page.fill("#id_password1", NEW_PASSWORD)
    page.fill("#id_password2", NEW_PASSWORD)
    page.click("main form button[type=submit]")
    page.wait_for_url(f"{run.base_url}/")
    return page


def log_in(
    browser: Any, run: RunningMarketplace, username: str, password: str = DEMO_PASSWORD
) -> Any:
    page = new_page(browser)
    page.goto(f"{run.base_url}/accounts/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("main form button[type=submit]")
    page.wait_for_url(f"{run.base_url}/")
    return page


def post_task(
    page: Any, run: RunningMarketplace, *, title: str, description: str, bounty: int
) -> int:
    page.goto(f"{run.base_url}/tasks/new/")
    page.fill("#title", title)
    page.fill("#description", description)
    page.fill("#bounty", str(bounty))
    page.click("main button:has-text('Post task')")
    page.wait_for_url(re.compile(r"/tasks/\d+/$"))
    return int(page.url.rstrip("/").rsplit("/", 1)[1])


def stays_loaded(page: Any) -> None:
    """Mark the loaded document: a reload or navigation would lose the mark."""
    page.evaluate("window.__stillTheSameDocument = true")


def assert_not_reloaded(page: Any) -> None:
    assert page.evaluate("window.__stillTheSameDocument === true"), "the page was reloaded"


# Counts the htmx websockets that opened in each document (the ws extension's own event).
_COUNT_SOCKETS = """document.addEventListener('htmx:wsOpen', () => {
  window.__openSockets = (window.__openSockets || 0) + 1; });"""


def wait_for_sockets(page: Any, timeout: float = 10) -> None:
    """Until every htmx websocket of the page is open (a hint sent before is not heard)."""
    page.wait_for_function(
        "(window.__openSockets || 0) >= document.querySelectorAll('[ws-connect]').length",
        timeout=timeout * 1000,
    )


def page_overflow(page: Any) -> int:
    """How many CSS pixels the document is wider than the window (0 when it fits)."""
    return int(
        page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
    )


@pytest.fixture
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield instance
        instance.close()
