"""Prometheus metrics of every role: web requests, Celery tasks, beat's sends, settlements, and
(read at scrape time, from the shared servers) queue depth, executions by state and the last
ledger reconciliation.

Counters live in the process that counts. A web server with several workers, a Celery worker's
pool and beat each run several processes, so with ``PROMETHEUS_MULTIPROC_DIR`` set (``manage.py
up`` sets one per machine) each process writes its counters to that folder and a scrape adds
them up: one scrape per machine sees its web, worker and beat processes together.

Served at ``/metrics`` on the web port to requests bearing ``METRICS_TOKEN`` (unset: 404), and
on ``METRICS_PORT`` by workers and beat (an internal port; unset: not served).
"""

from __future__ import annotations

import hmac
import logging
import os
import time
from collections.abc import Callable, Iterator
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from ledger.metrics import RECONCILIATION_KEY, SETTLED_CREDITS, SETTLEMENTS

logger = logging.getLogger(__name__)

REQUESTS = Counter(
    "market_http_requests_total", "HTTP requests answered", ["method", "route", "status"]
)
LATENCY = Histogram(
    "market_http_request_seconds",
    "Time to answer an HTTP request",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
TASKS = Counter("market_celery_tasks_total", "Celery tasks finished", ["task", "state"])
BEAT_SENT = Counter("market_beat_sent_total", "Periodic tasks sent by the beat", ["entry"])


class MetricsMiddleware:
    """Counts and times every request by its URL pattern (never the raw path: bounded labels)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        response = self.get_response(request)
        match = getattr(request, "resolver_match", None)
        route = match.route if match is not None and match.route else "unmatched"
        LATENCY.labels(request.method, route).observe(time.perf_counter() - started)
        REQUESTS.labels(request.method, route, str(response.status_code)).inc()
        return response


class SharedStateCollector(Collector):
    """What no single process counts: read from PostgreSQL and the broker at scrape time."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        for read in (_executions, _queue_depth, _reconciliation):
            try:
                yield from read()
            except Exception as error:  # a scrape reports what it can; the rest is logged
                logger.warning("metrics: %s failed: %s", read.__name__, error)


def _executions() -> Iterator[GaugeMetricFamily]:
    from django.db import connection

    from workers.models import Execution

    family = GaugeMetricFamily("market_executions", "Hosted executions by state", labels=["state"])
    counts = dict.fromkeys(Execution.Status.values, 0)
    with connection.cursor() as cursor:
        table = connection.ops.quote_name(Execution._meta.db_table)
        cursor.execute(f"SELECT status, count(*) FROM {table} GROUP BY status")  # noqa: S608
        counts.update(dict(cursor.fetchall()))
    for state, count in sorted(counts.items()):
        family.add_metric([state], count)
    yield family


def _queue_depth() -> Iterator[GaugeMetricFamily]:
    from celery import current_app

    family = GaugeMetricFamily(
        "market_queue_depth", "Messages waiting in the broker's queue", labels=["queue"]
    )
    queue = current_app.conf.task_default_queue
    with current_app.connection_for_read() as connection:
        # A passive declare answers the message count on Redis and RabbitMQ alike; a queue
        # not declared yet (Redis: never used, or empty) is refused: none waiting.
        try:
            _name, count, _consumers = connection.default_channel.queue_declare(
                queue=queue, passive=True
            )
        except connection.channel_errors:
            count = 0
    family.add_metric([queue], count)
    yield family


def _reconciliation() -> Iterator[GaugeMetricFamily]:
    from django.core.cache import cache

    report = cache.get(RECONCILIATION_KEY)
    if report is None:
        return
    clean = GaugeMetricFamily(
        "market_ledger_reconciliation_clean", "1 when the last reconciliation found no difference"
    )
    clean.add_metric([], 1 if report["clean"] else 0)
    differences = GaugeMetricFamily(
        "market_ledger_reconciliation_differences", "Differences the last reconciliation found"
    )
    differences.add_metric([], report["differences"])
    finished = GaugeMetricFamily(
        "market_ledger_reconciliation_timestamp_seconds", "When the last reconciliation ran"
    )
    finished.add_metric([], report["at"])
    yield from (clean, differences, finished)


def registry() -> CollectorRegistry:
    """This process's counters, or (multiprocess mode) every process's on this machine, and the
    shared state."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        chosen = CollectorRegistry()
        multiprocess.MultiProcessCollector(chosen)
    else:
        chosen = CollectorRegistry()
        for collector in (REQUESTS, LATENCY, TASKS, BEAT_SENT, SETTLEMENTS, SETTLED_CREDITS):
            chosen.register(collector)
    chosen.register(SharedStateCollector())
    return chosen


def metrics_view(request: HttpRequest) -> HttpResponse:
    token = settings.METRICS_TOKEN
    offered = request.headers.get("Authorization", "").removeprefix("Bearer ")
    if not token or not hmac.compare_digest(offered.encode(), token.encode()):
        # Unset or wrong: as if there were no such page (nothing to probe).
        return HttpResponse(status=404)
    return HttpResponse(generate_latest(registry()), content_type=CONTENT_TYPE_LATEST)


def serve_on_port(port: int, host: str = "127.0.0.1") -> Any:
    """For workers and beat: the same metrics on an internal port of their own."""
    from prometheus_client import start_http_server

    return start_http_server(port, addr=host, registry=registry())
