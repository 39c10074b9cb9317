"""A live marketplace for the API contract tests: the web server serving the test database, with a
cast seeded through the services and committed, and everything flushed afterwards.

These modules' tests are not marked for the database: pytest-django runs them after every test
that is, so committing here and flushing at the end disturbs no other test.
"""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from django.conf import settings

from tests.conftest import ROOT, subprocess_env
from tests.own_marketplace import free_port


@dataclass
class LiveMarket:
    url: str
    process: subprocess.Popen[bytes]
    world: dict[str, Any] = field(default_factory=dict)


def _wait_healthy(url: str, process: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("the API server exited before it answered")
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=2) as response:
                if response.status == 200:
                    return
        except (OSError, urllib.error.URLError):
            time.sleep(0.2)
    raise RuntimeError("the API server did not answer /healthz")


@pytest.fixture(scope="module")
def live_market(django_db_setup: None, django_db_blocker: Any) -> Iterator[LiveMarket]:
    """The web server as ``make run`` starts it (uvicorn, two workers) on a free port. Hosted
    agents and machine checks are off: nothing is queued for a Celery worker that no test runs
    here."""
    port = free_port()
    env = subprocess_env(
        EMBEDDING_BACKEND="hashing",
        MARKET_AWARD_HANDLER="",
        MARKET_POST_HANDLER="",
        API_RATE_ANON="100000/minute",
        API_RATE_USER="100000/minute",
        MARKET_WRITE_RATE="100000/minute",
    )
    log = open(settings.DATA_DIR / f"test-api-server-{port}.log", "wb")  # noqa: SIM115
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "marketplace.asgi:application", "--host", "127.0.0.1"]
        + ["--port", str(port), "--workers", "2", "--lifespan", "on", "--no-access-log"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    market = LiveMarket(url=f"http://127.0.0.1:{port}", process=process)
    try:
        _wait_healthy(market.url, process)
        yield market
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()
        with django_db_blocker.unblock():
            from django.core.management import call_command

            from marketplace.read_cache import new_version

            call_command("flush", interactive=False, verbosity=0)
            new_version()
