"""Fixtures of the ledger's tests: participants are plain references, the ledger knows no more."""

from __future__ import annotations

import itertools
import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import stripe

from ledger import services

ROOT = Path(__file__).resolve().parents[2]
_numbers = itertools.count(1)


def new_ref(kind: str = "participant") -> str:
    return f"{kind}:{900_000 + next(_numbers)}"


def funded_wallet(amount: int) -> str:
    owner = new_ref()
    services.wallet_open(owner_ref=owner)
    if amount:
        services.promo_grant(owner_ref=owner, amount=amount, idempotency_key=f"fund:{owner}")
    return owner


@pytest.fixture
def poster(db: None) -> str:
    return funded_wallet(1_000)


@pytest.fixture
def worker(db: None) -> str:
    return funded_wallet(0)


@pytest.fixture(autouse=True)
def _ledger_alone(settings: object) -> None:
    """These tests post escrows for tasks the market never saw: reconcile without its view."""
    settings.LEDGER_ESCROW_EXPECTATIONS = ""


# --- Stripe ---------------------------------------------------------------------------------------

WEBHOOK_SECRET = "whsec_ledger_tests_secret"


def signed_webhook(
    event: dict, *, secret: str = WEBHOOK_SECRET, timestamp: int | None = None
) -> tuple[bytes, str]:
    """A webhook body and its ``Stripe-Signature`` header, signed by the Stripe library itself."""
    payload = json.dumps(event)
    moment = int(time.time()) if timestamp is None else timestamp
    signature = stripe.WebhookSignature._compute_signature(f"{moment}.{payload}", secret)
    return payload.encode(), f"t={moment},v1={signature}"


def stripe_event(event_type: str, obj: dict, *, event_id: str | None = None) -> dict:
    return {
        "id": event_id or f"evt_{next(_numbers)}_{event_type}",
        "object": "event",
        "type": event_type,
        "created": int(time.time()),
        "data": {"object": obj},
    }


def free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="session")
def localstripe_url() -> Iterator[str]:
    """A real localstripe server on a free loopback port, for the whole session."""
    port = free_loopback_port()
    code = (
        "import logging, sys; from aiohttp import web; from localstripe.server import app;"
        " logging.basicConfig(level=logging.INFO, stream=sys.stdout);"
        f" web.run_app(app, host='127.0.0.1', port={port}, print=None)"
    )
    (ROOT / ".data").mkdir(exist_ok=True)
    log = open(ROOT / ".data" / "test-localstripe.log", "wb")  # noqa: SIM115 - closed below
    process = subprocess.Popen([sys.executable, "-c", code], stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise RuntimeError("localstripe did not start") from None
            time.sleep(0.1)
    yield url
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
    log.close()


@pytest.fixture
def stripe_settings(settings: object, localstripe_url: str) -> str:
    settings.STRIPE_SECRET_KEY = "sk_test_ledger"
    settings.STRIPE_PUBLISHABLE_KEY = "pk_test_ledger"
    settings.STRIPE_WEBHOOK_SECRET = WEBHOOK_SECRET
    settings.STRIPE_API_BASE = localstripe_url
    return localstripe_url
