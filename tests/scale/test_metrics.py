"""Prometheus metrics: /metrics on the web port behind a bearer token, and the worker's and
beat's own internal ports, each answering what its role counts plus the shared state."""

from __future__ import annotations

import os
import secrets
import urllib.request

import pytest
from celery import current_app
from django.conf import settings
from django.contrib.auth.models import User
from prometheus_client.parser import text_string_to_metric_families

from ledger import tasks as ledger_tasks
from tests.conftest import database_url_for_tests, participant_of, wait_until
from tests.marketplace.conftest import fund, walk_to
from tests.scale import nodes
from tests.scale.servers import free_port
from tests.scale.test_roles import _redis_db, broker_url

TOKEN = "metrics-" + "t" * 40


def samples(text: str) -> dict[tuple[str, tuple], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def named(found: dict, name: str, **labels: str) -> float:
    return sum(
        value
        for (sample, sample_labels), value in found.items()
        if sample == name and set(labels.items()) <= set(sample_labels)
    )


@pytest.mark.django_db
def test_the_web_metrics_need_the_token_and_count_requests_and_settlements(
    client, settings, alice: User, bob: User
) -> None:
    settings.EMBEDDING_BACKEND = "hashing"
    settings.METRICS_TOKEN = ""
    assert client.get("/metrics").status_code == 404  # off unless a token is configured
    settings.METRICS_TOKEN = TOKEN
    assert client.get("/metrics").status_code == 404
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 404

    poster = participant_of(alice)
    fund(poster, 5_000)
    before = samples(client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").content.decode())
    walk_to("accepted", poster=poster, worker=participant_of(bob))
    ledger_tasks.ledger_reconcile()
    assert client.get("/healthz").status_code == 200
    answer = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert answer.status_code == 200
    after = samples(answer.content.decode())
    assert named(after, "market_http_requests_total", route="healthz", status="200") >= 1
    assert named(after, "market_http_request_seconds_count", route="healthz") >= 1
    # Settlements count on commit; this test's transaction never commits, so none counted.
    assert named(after, "market_settlements_total") == named(before, "market_settlements_total")
    assert named(after, "market_ledger_reconciliation_clean") == 1
    assert named(after, "market_ledger_reconciliation_differences") == 0
    assert ("market_executions", (("state", "queued"),)) in after
    assert ("market_queue_depth", (("queue", "celery"),)) in after


@pytest.mark.django_db(transaction=True)
def test_settlements_count_when_they_commit(client, settings, alice: User, bob: User) -> None:
    settings.EMBEDDING_BACKEND = "hashing"
    settings.METRICS_TOKEN = TOKEN
    poster = participant_of(alice)
    fund(poster, 5_000)

    def settled() -> float:
        text = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").content.decode()
        return named(samples(text), "market_settlements_total")

    before = settled()
    walk_to("accepted", poster=poster, worker=participant_of(bob), price=800)
    assert settled() == before + 1


def scrape(port: int) -> dict:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
            return samples(answer.read().decode())
    except OSError:  # not serving yet
        return {}


@pytest.mark.django_db
def test_worker_and_beat_serve_their_metrics_on_an_internal_port() -> None:
    broker = broker_url(12)
    ports = {"worker": free_port(), "beat": free_port()}
    common = {
        "DATABASE_URL": database_url_for_tests(),
        "REDIS_URL": settings.REDIS_URL,
        "BROKER_URL": broker,
        "BEAT_KEY_PREFIX": f"redbeat-metrics-{os.getpid()}",
        "BEAT_LOOP_SECONDS": "1",
    }
    worker_env = nodes.node_environment(
        settings.DATA_DIR / "scale" / "metrics-worker",
        METRICS_PORT=str(ports["worker"]),
        **common,
    )
    beat_env = nodes.node_environment(
        settings.DATA_DIR / "scale" / "metrics-beat", METRICS_PORT=str(ports["beat"]), **common
    )
    app = current_app._get_current_object()
    from celery import Celery

    client_app = Celery("metrics-client", broker=broker, set_as_current=False)
    worker = nodes.start_worker("metrics-worker", worker_env, app=client_app)
    beat = nodes.start_beat("metrics-beat", beat_env)
    try:
        token = secrets.token_hex(4)
        client_app.send_task("workers.echo", kwargs={"key": f"echo:{token}", "value": "1"})
        wait_until(
            lambda: (
                named(scrape(ports["worker"]), "market_celery_tasks_total", task="workers.echo")
                >= 1
            ),
            timeout=30,
        )
        found = scrape(ports["worker"])
        assert named(found, "market_celery_tasks_total", task="workers.echo", state="SUCCESS") >= 1
        wait_until(
            lambda: (
                named(scrape(ports["beat"]), "market_beat_sent_total", entry="events-dispatch") >= 1
            ),
            timeout=30,
        )
        assert ("market_queue_depth", (("queue", "celery"),)) in scrape(ports["beat"])
    finally:
        beat.stop()
        worker.stop()
        client_app.close()
        import redis

        redis.Redis.from_url(_redis_db(12)).flushdb()
        assert app is current_app._get_current_object()
