"""Shared fixtures: the cast of users, API clients, and a real Celery worker process.

The cast (from healthchecks): alice owns things, bob is the other participant, mallory is the
outsider, staff is a staff member.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import ClassVar

import pytest
from celery import current_app
from django.conf import settings
from django.contrib.auth.models import User
from rest_framework.test import APIClient

from agents_registry.models import Participant
from agents_registry.services import participant_create_human
from core import redis_calls
from tests.own_redis import OwnRedis

ROOT = Path(__file__).resolve().parent.parent


def pytest_sessionstart(session: pytest.Session) -> None:
    from marketplace import embedded

    embedded.user_register(settings.DATA_DIR)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Leave no stray servers: stop the embedded ones if this test session started them."""
    from django.db import connections

    from marketplace import embedded

    connections.close_all()
    embedded.user_unregister(settings.DATA_DIR)
    # Last one out: another test run (or `make run`) may have started using them since.
    if embedded.other_users(settings.DATA_DIR):
        return
    if embedded.started_here("redis", settings.DATA_DIR):
        embedded.stop_redis(settings.DATA_DIR)
    if embedded.started_here("postgres", settings.DATA_DIR):
        embedded.stop_postgres(settings.DATA_DIR)


def make_human(username: str, *, is_staff: bool = False) -> User:
    user = User.objects.create_user(
        username=username, password="pw-" + username + "-123", is_staff=is_staff
    )
    participant_create_human(user=user)
    return user


@pytest.fixture
def alice(db: None) -> User:
    return make_human("alice")


@pytest.fixture
def bob(db: None) -> User:
    return make_human("bob")


@pytest.fixture
def mallory(db: None) -> User:
    return make_human("mallory")


@pytest.fixture
def staff(db: None) -> User:
    return make_human("staff", is_staff=True)


def participant_of(user: User) -> Participant:
    return Participant.objects.get(user=user)


class MarketClient(APIClient):
    """Posts to pages as a browser does (a form), to the API as JSON (the API's only body, and
    the suite's TEST_REQUEST_DEFAULT_FORMAT)."""

    def post(self, path: str, data: object = None, format: str | None = None, *args, **kwargs):
        if format is None and not str(path).startswith("/api/"):
            format = "multipart"
        return super().post(path, data, format, *args, **kwargs)


@pytest.fixture
def api_client() -> APIClient:
    return MarketClient()


@pytest.fixture
def client_for() -> Callable[[User], APIClient]:
    def build(user: User) -> APIClient:
        client = MarketClient()
        client.force_login(user)
        return client

    return build


@pytest.fixture
def own_redis(settings) -> Iterator[OwnRedis]:
    """The request path's Redis (the cache database) on a server of this test's own."""
    server = OwnRedis()
    server.start()
    settings.CACHES = {
        **settings.CACHES,
        "default": {**settings.CACHES["default"], "LOCATION": server.url(1)},
    }
    redis_calls.redis_client.cache_clear()
    try:
        yield server
    finally:
        server.close()
        redis_calls.redis_client.cache_clear()


def database_url_for_tests() -> str:
    """The URL of the test database (pytest-django's test_<name>), for subprocesses."""
    database = settings.DATABASES["default"]
    base = settings.DATABASE_URL.rsplit("?", 1)
    path, _, query = base[0], "?", base[1] if len(base) > 1 else ""
    prefix = path.rsplit("/", 1)[0]
    url = f"{prefix}/{database['NAME']}"
    return f"{url}?{query}" if query else url


def subprocess_env(**overrides: str) -> dict[str, str]:
    env = os.environ.copy()
    # Set by the browser tests for Playwright's sync API; never wanted in a subprocess.
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    env.update(
        {
            "DATABASE_URL": database_url_for_tests(),
            "REDIS_URL": settings.REDIS_URL,
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(overrides)
    return env


class WorkerProcess:
    """A real ``celery worker`` subprocess on the test database and the tests' Redis databases."""

    running: ClassVar[set[WorkerProcess]] = set()

    def __init__(self, *, concurrency: int = 2, name: str = "tests") -> None:
        self.concurrency = concurrency
        self.hostname = f"{name}@{os.getpid()}"
        self.process: subprocess.Popen[bytes] | None = None
        self.consuming = False
        self.log_path = settings.DATA_DIR / f"test-worker-{name}.log"

    def start(self, timeout: float = 60) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "wb")  # noqa: SIM115 - closed with the process
        self.process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "workers.celery", "worker"]
            + ["--loglevel", "INFO", "--concurrency", str(self.concurrency)]
            + ["--hostname", self.hostname, "--without-gossip", "--without-mingle"],
            cwd=ROOT,
            env=subprocess_env(),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"worker exited: {self.log_path.read_text()[-3000:]}")
            if current_app.control.ping(destination=[self.hostname], timeout=0.5):
                WorkerProcess.running.add(self)
                self.consuming = True
                return
        raise RuntimeError(f"worker did not answer: {self.log_path.read_text()[-3000:]}")

    @classmethod
    @contextlib.contextmanager
    def others_paused(cls, *keep: WorkerProcess) -> Iterator[None]:
        """Other running workers stop taking messages (e.g. the session's worker, which lacks a
        test's settings) until the block ends; those that were paused already stay paused."""
        paused = [worker for worker in cls.running if worker not in keep and worker.consuming]
        for worker in paused:
            worker.consume(False)
        try:
            yield
        finally:
            for worker in paused:
                worker.consume(True)

    def consume(self, consuming: bool) -> None:
        """Start or stop taking messages from the queue (the process keeps running)."""
        control = current_app.control
        change = control.add_consumer if consuming else control.cancel_consumer
        change("celery", destination=[self.hostname], reply=True)
        self.consuming = consuming

    def wait_idle(self, timeout: float = 30) -> None:
        """Until the queue is empty and the worker runs nothing: a test's database flush must
        not race a task still running from that test (the TRUNCATE would deadlock with it)."""
        inspector = current_app.control.inspect(destination=[self.hostname], timeout=2, limit=1)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with current_app.connection_for_read() as connection:
                waiting = connection.default_channel.client.llen("celery")
            active = (inspector.active() or {}).get(self.hostname, [])
            reserved = (inspector.reserved() or {}).get(self.hostname, [])
            if not waiting and not active and not reserved:
                return
            time.sleep(0.1)

    def kill(self) -> None:
        """SIGKILL the worker and its pool children, as a crash would."""
        import psutil

        if self.process is None:
            return
        parent = psutil.Process(self.process.pid)
        for child in parent.children(recursive=True):
            child.kill()
        parent.kill()
        self.process.wait()
        self.process = None
        WorkerProcess.running.discard(self)

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.kill()
        self.process = None
        WorkerProcess.running.discard(self)


@pytest.fixture(scope="session", autouse=True)
def _fresh_cache() -> None:
    """The test database starts afresh, and its ids with it: rate-limit counters (keyed by those
    ids) left in the cache by an earlier run must not count against this one."""
    from django.core.cache import cache

    cache.clear()


@pytest.fixture(autouse=True)
def _fresh_reads() -> None:
    """The API's kept answers (marketplace/read_cache.py) live in Redis across tests while each
    test's database changes are rolled back: a new read version puts earlier answers out of
    reach."""
    from marketplace.read_cache import new_version

    new_version()


@pytest.fixture(scope="session", autouse=True)
def _no_lingering_connections(django_db_setup: None, django_db_blocker: object) -> Iterator[None]:
    """Before the test database is dropped, end the connections that threads of the tests (live
    servers, websocket consumers) left open, so the drop does not fail on "being accessed"."""
    yield
    from django.db import connection

    with django_db_blocker.unblock(), connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )


@pytest.fixture(scope="session")
def _session_worker(django_db_setup: None, django_db_blocker: object) -> Iterator[WorkerProcess]:
    current_app.control.purge()
    worker = WorkerProcess()
    worker.start()
    yield worker
    worker.stop()


@pytest.fixture
def celery_worker_process(_session_worker: WorkerProcess) -> Iterator[WorkerProcess]:
    """One real worker for the whole session, consuming only during the tests that ask for it
    (``transaction=True`` tests). Between them it takes no message, so work queued by other
    transactional tests never runs while their tables are flushed (the TRUNCATE would deadlock
    with it); after each test it is left idle before the flush."""
    current_app.control.purge()  # what earlier tests queued refers to rows flushed since
    _session_worker.consume(True)
    yield _session_worker
    _session_worker.wait_idle()
    _session_worker.consume(False)


def wait_until(
    predicate: Callable[[], object], *, timeout: float = 20, interval: float = 0.05
) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout} s")


# --- the browser ---------------------------------------------------------------------------------

CHROMIUM = "/usr/bin/chromium"
# Debian's Chromium, driven by Playwright; never a browser Playwright downloads.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
browser_test = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        not os.path.exists(CHROMIUM),
        reason="Debian's chromium is not installed (scripts/ensure-browser.sh installs it)",
    ),
]


@pytest.fixture
def browser() -> Iterator[object]:
    """A headless Chromium for tests marked ``browser_test`` (with pytest-django's live_server)."""
    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an event loop in this thread; the ORM calls of the test are
    # still made synchronously, one at a time.
    os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield instance
        instance.close()


def log_in(browser: object, base_url: str, username: str) -> object:
    """A new page logged in as ``username`` (made by ``make_human``) through the login form."""
    page = browser.new_page()
    page.set_default_timeout(15_000)
    page.goto(f"{base_url}/accounts/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", f"pw-{username}-123")
    page.click("form button[type=submit]")
    page.wait_for_url(f"{base_url}/")
    return page
